// SPDX-License-Identifier: GPL-2.0

//! RFC 8335 PROBE: extended echo requests that ask about an interface of this host
//! (icmp.c: `icmp_build_probe`).
//!
//! After the ICMP header, a request carries an extension header (RFC 4884: version, reserved,
//! checksum) and one Interface Identification Object naming the interface by name, by index
//! or by address. The reply repeats the request with the interface's state in the low byte
//! of the sequence number (active, has IPv4, has IPv6), or an error code.

use kernel::{
    net::{
        dev::{NetDevice, IFNAMSIZ},
        ipv4::{
            icmp::{
                ICMPV6_EXT_ECHO_REPLY, ICMP_AFI_IP, ICMP_AFI_IP6, ICMP_EXT_CODE_MAL_QUERY,
                ICMP_EXT_CODE_NO_IF, ICMP_EXT_ECHO, ICMP_EXT_ECHOREPLY, ICMP_EXT_ECHOREPLY_ACTIVE,
                ICMP_EXT_ECHOREPLY_IPV4, ICMP_EXT_ECHOREPLY_IPV6, ICMP_EXT_ECHO_CTYPE_ADDR,
                ICMP_EXT_ECHO_CTYPE_INDEX, ICMP_EXT_ECHO_CTYPE_NAME,
            },
            IcmpHdr,
        },
        skb::SkBuff,
        Be16, Be32,
    },
    str::CStr,
    sync::aref::ARef,
    sync::rcu,
};

use crate::unreach::{EXTOBJ_HDR_LEN, EXT_HDR_LEN};

/// `sizeof(struct icmp_ext_echo_iio)`: the object header and the largest identifier (an
/// address family header and an IPv6 address).
const IIO_MAX_LEN: usize = EXTOBJ_HDR_LEN + 4 + 16;

/// The Interface Identification Object of a request, as read from the packet.
struct Iio {
    class_type: u8,
    /// The identifier: `length - 4` bytes after the object header.
    ident: [u8; IIO_MAX_LEN - EXTOBJ_HDR_LEN],
    ident_len: usize,
}

impl Iio {
    /// Reads the object that follows the extension header, checking its length field as C
    /// does: more than the object header, at most the largest object.
    fn read(skb: &SkBuff) -> Option<Self> {
        let mut hdr = [0u8; EXTOBJ_HDR_LEN];
        let hdr = skb.header_pointer(EXT_HDR_LEN as u32, &mut hdr)?;
        let length = usize::from(u16::from_be_bytes([hdr[0], hdr[1]]));
        if length <= EXTOBJ_HDR_LEN || length > IIO_MAX_LEN {
            return None;
        }
        let class_type = hdr[3];
        let mut buf = [0u8; IIO_MAX_LEN];
        let obj = skb.header_pointer(EXT_HDR_LEN as u32, &mut buf[..length])?;
        let ident_len = length - EXTOBJ_HDR_LEN;
        let mut ident = [0u8; IIO_MAX_LEN - EXTOBJ_HDR_LEN];
        ident[..ident_len].copy_from_slice(&obj[EXTOBJ_HDR_LEN..]);
        Some(Self {
            class_type,
            ident,
            ident_len,
        })
    }

    fn ident(&self) -> &[u8] {
        &self.ident[..self.ident_len]
    }
}

/// What the object asks for, or that it is malformed.
enum Lookup {
    Malformed,
    /// The identifier is valid; the device, if one matches. Without IPv6 in the kernel, an
    /// IPv6 address is malformed, as in C.
    Found(Option<ARef<NetDevice>>),
}

/// Finds the device an object identifies (C's `switch (iio->extobj_hdr.class_type)`).
fn lookup(iio: &Iio, net: &kernel::net::namespace::Net, rcu: &rcu::Guard) -> Lookup {
    let ident = iio.ident();
    match iio.class_type {
        ICMP_EXT_ECHO_CTYPE_NAME => {
            if ident.len() >= IFNAMSIZ {
                return Lookup::Malformed;
            }
            // A NUL-terminated copy; the name ends at its first NUL, as in C.
            let mut buff = [0u8; IFNAMSIZ];
            buff[..ident.len()].copy_from_slice(ident);
            let end = buff.iter().position(|b| *b == 0).unwrap_or(IFNAMSIZ - 1);
            match CStr::from_bytes_with_nul(&buff[..=end]) {
                Ok(name) => Lookup::Found(NetDevice::get_by_name(net, name)),
                Err(_) => Lookup::Malformed,
            }
        }
        ICMP_EXT_ECHO_CTYPE_INDEX => match <[u8; 4]>::try_from(ident) {
            Ok(b) => Lookup::Found(NetDevice::get_by_index(
                net,
                Be32::from_bytes(b).to_host() as i32,
            )),
            Err(_) => Lookup::Malformed,
        },
        ICMP_EXT_ECHO_CTYPE_ADDR => {
            // struct icmp_ext_echo_ctype3_hdr: afi (be16), addrlen, reserved; then the address.
            if ident.len() < 4 || ident.len() != 4 + usize::from(ident[2]) {
                return Lookup::Malformed;
            }
            let (afi, addr) = (
                Be16::from_bytes([ident[0], ident[1]]).to_host(),
                &ident[4..],
            );
            match afi {
                a if a == u16::from(ICMP_AFI_IP) => match <[u8; 4]>::try_from(addr) {
                    Ok(b) => Lookup::Found(NetDevice::get_by_ipv4_addr(net, Be32::from_bytes(b))),
                    Err(_) => Lookup::Malformed,
                },
                a if a == u16::from(ICMP_AFI_IP6) => match <[u8; 16]>::try_from(addr) {
                    Ok(b) => ipv6_lookup(net, &b, rcu),
                    Err(_) => Lookup::Malformed,
                },
                _ => Lookup::Malformed,
            }
        }
        _ => Lookup::Malformed,
    }
}

#[cfg(CONFIG_IPV6)]
fn ipv6_lookup(net: &kernel::net::namespace::Net, addr: &[u8; 16], rcu: &rcu::Guard) -> Lookup {
    Lookup::Found(NetDevice::get_by_ipv6_addr(net, addr, rcu))
}

#[cfg(not(CONFIG_IPV6))]
fn ipv6_lookup(_net: &kernel::net::namespace::Net, _addr: &[u8; 16], _rcu: &rcu::Guard) -> Lookup {
    Lookup::Malformed
}

/// `icmp_build_probe`: turns the header of an extended echo request into the reply's.
/// Returns false if the request must not be answered: PROBE is disabled
/// (`net.ipv4.icmp_echo_enable_probe`, off by default per RFC 8335), the L-bit (probe of
/// this node's interfaces) is clear.
pub(crate) fn icmp_build_probe(skb: &SkBuff, icmph: &mut IcmpHdr) -> bool {
    let rcu = rcu::read_lock();
    let Some(net) = skb.dev(&rcu).map(|d| d.net(&rcu)) else {
        return false;
    };
    if net.sysctl_icmp_echo_enable_probe() == 0 {
        return false;
    }

    // We currently only support probing interfaces on the proxy node: check the L-bit.
    let seq = icmph.echo_sequence().to_host();
    if seq & 1 == 0 {
        return false;
    }
    // Clear the status bits in the reply.
    let seq = seq & 0xff00;
    icmph.set_echo_sequence(Be16::from_host(seq));
    icmph.type_ = if icmph.type_ == ICMP_EXT_ECHO {
        ICMP_EXT_ECHOREPLY
    } else {
        ICMPV6_EXT_ECHO_REPLY
    };

    let mut ext_hdr = [0u8; EXT_HDR_LEN];
    let lookup = match (skb.header_pointer(0, &mut ext_hdr), Iio::read(skb)) {
        (Some(_), Some(iio)) => lookup(&iio, net, &rcu),
        _ => Lookup::Malformed,
    };
    let dev = match lookup {
        Lookup::Malformed => {
            icmph.code = ICMP_EXT_CODE_MAL_QUERY;
            return true;
        }
        Lookup::Found(None) => {
            icmph.code = ICMP_EXT_CODE_NO_IF;
            return true;
        }
        Lookup::Found(Some(dev)) => dev,
    };

    // Fill the state bits of the reply.
    let mut status = 0u16;
    if dev.is_up() {
        status |= u16::from(ICMP_EXT_ECHOREPLY_ACTIVE);
    }
    if dev.has_ipv4_addr(&rcu) {
        status |= u16::from(ICMP_EXT_ECHOREPLY_IPV4);
    }
    if dev.has_ipv6_addr(&rcu) {
        status |= u16::from(ICMP_EXT_ECHOREPLY_IPV6);
    }
    icmph.set_echo_sequence(Be16::from_host(seq | status));
    true
}
