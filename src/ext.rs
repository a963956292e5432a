// SPDX-License-Identifier: GPL-2.0

//! ICMP extensions of errors (icmp.c: `icmp_ext_iio_len`, `icmp_ext_max_len`,
//! `icmp_ext_iio_addr4_find`, `icmp_ext_iio_iif_append`, `icmp_ext_objs_append`,
//! `icmp_ext_append`).
//!
//! With `net.ipv4.icmp_errors_extension_mask` set, a destination unreachable, time exceeded
//! or parameter problem error carries an RFC 4884 extension structure after the quoted
//! datagram, which is then exactly 128 bytes (cut, or padded with zeros). Its one object so
//! far is RFC 5837's Interface Information Object for the interface the datagram came in on:
//! its ifIndex, an IPv4 address, its name and its MTU.
//!
//! C builds the message's payload in a clone of the datagram, trimmed, padded and extended.
//! The payload here is the same bytes without the clone: the datagram's first bytes (read
//! from it when the message is built), zeros, and the extension, built in [`IcmpExtTail`].

use kernel::{
    net::{
        checksum::Wsum,
        dev::{NetDevice, IFNAMSIZ},
        ipv4::{
            icmp::{
                ICMP_AFI_IP, ICMP_DEST_UNREACH, ICMP_ERR_EXT_IIO_IIF, ICMP_EXT_CTYPE_IIO_IFINDEX,
                ICMP_EXT_CTYPE_IIO_IPADDR, ICMP_EXT_CTYPE_IIO_MTU, ICMP_EXT_CTYPE_IIO_NAME,
                ICMP_EXT_CTYPE_IIO_ROLE_IIF, ICMP_EXT_OBJ_CLASS_IIO, ICMP_EXT_ORIG_DGRAM_MIN_LEN,
                ICMP_EXT_VERSION_2, ICMP_PARAMETERPROB, ICMP_TIME_EXCEEDED,
            },
            IcmpHdr,
        },
        namespace::Net,
        skb::SkBuff,
        Be16, Be32,
    },
    sync::rcu,
};

use crate::unreach::{EXTOBJ_HDR_LEN, EXT_HDR_LEN};

/// `IFA_F_SECONDARY`.
const IFA_F_SECONDARY: u32 = 1;
/// `RT_SCOPE_UNIVERSE`.
const RT_SCOPE_UNIVERSE: u8 = 0;
/// `sizeof(struct icmp_ext_iio_addr4_subobj)`: AFI, reserved, address.
const IIO_ADDR4_SUBOBJ_LEN: usize = 8;
/// `ALIGN(sizeof(struct icmp_ext_iio_name_subobj), 4)`: a length byte and `IFNAMSIZ` bytes of
/// name, padded to a multiple of 4.
const IIO_NAME_SUBOBJ_LEN: usize = (1 + IFNAMSIZ).next_multiple_of(4);
/// The quoted datagram's length when an extension follows it.
const ORIG_DGRAM_LEN: usize = ICMP_EXT_ORIG_DGRAM_MIN_LEN as usize;

/// `ICMP_EXT_CTYPE_IIO_ROLE(role)`: the interface role in the top two bits of the C-Type.
const fn icmp_ext_ctype_iio_role(role: u8) -> u8 {
    role << 6
}

/// `icmp_ext_iio_len`: the most an Interface Information Object takes.
const fn icmp_ext_iio_len() -> usize {
    // The object header, ifIndex, the address sub-object, the name sub-object and the MTU.
    EXTOBJ_HDR_LEN + 4 + IIO_ADDR4_SUBOBJ_LEN + IIO_NAME_SUBOBJ_LEN + 4
}

/// `icmp_ext_max_len`: the most the extension structure of `ext_objs` takes.
fn icmp_ext_max_len(ext_objs: u8) -> usize {
    let mut ext_max_len = EXT_HDR_LEN;
    if ext_objs & (1 << ICMP_ERR_EXT_IIO_IIF) != 0 {
        ext_max_len += icmp_ext_iio_len();
    }
    ext_max_len
}

/// The largest extension structure: the header and every object.
const EXT_MAX: usize = EXT_HDR_LEN + icmp_ext_iio_len();

/// What follows the quoted datagram's first bytes in an error with an extension: zeros up
/// to [`ORIG_DGRAM_LEN`], then the extension structure.
pub(crate) struct IcmpExtTail {
    /// How many bytes of the datagram are quoted (at most [`ORIG_DGRAM_LEN`]).
    quoted: usize,
    /// The extension structure.
    ext: [u8; EXT_MAX],
    /// Its length.
    ext_len: usize,
}

impl IcmpExtTail {
    /// The payload's length: the padded datagram and the extension.
    pub(crate) fn len(&self) -> usize {
        ORIG_DGRAM_LEN + self.ext_len
    }

    /// How many of the payload's first bytes are the datagram's.
    pub(crate) fn quoted(&self) -> usize {
        self.quoted
    }

    /// The payload's bytes from `quoted()` on: zeros, then the extension.
    pub(crate) fn byte(&self, at: usize) -> u8 {
        if at < ORIG_DGRAM_LEN {
            0
        } else {
            self.ext[at - ORIG_DGRAM_LEN]
        }
    }

    /// The extension structure.
    pub(crate) fn ext(&self) -> &[u8] {
        &self.ext[..self.ext_len]
    }

    /// Appends `bytes` to the extension structure (`skb_put_data`); the room is reserved by
    /// [`EXT_MAX`].
    fn put(&mut self, bytes: &[u8]) -> usize {
        let at = self.ext_len;
        self.ext[at..at + bytes.len()].copy_from_slice(bytes);
        self.ext_len += bytes.len();
        at
    }
}

/// `icmp_ext_iio_addr4_find`: the address the object reports for `dev`: its first primary,
/// global, unicast IPv4 address (RFC 5837 does not say which; C chooses so).
fn icmp_ext_iio_addr4_find(dev: &NetDevice, rcu: &rcu::Guard) -> Option<Be32> {
    dev.ipv4_addrs(rcu)
        .filter(|ifa| ifa.flags() & IFA_F_SECONDARY == 0)
        .find(|ifa| ifa.scope() == RT_SCOPE_UNIVERSE && !ifa.address().is_multicast())
        .map(|ifa| ifa.address())
}

/// `icmp_ext_iio_iif_append`: appends the Interface Information Object of interface `iif`,
/// the one the datagram came in on, in the order RFC 5837 gives its fields.
fn icmp_ext_iio_iif_append(net: &Net, tail: &mut IcmpExtTail, iif: i32) {
    if iif == 0 {
        return;
    }
    let objh = tail.put(&[0; EXTOBJ_HDR_LEN]);
    let mut class_type = icmp_ext_ctype_iio_role(ICMP_EXT_CTYPE_IIO_ROLE_IIF);
    tail.put(&Be32::from_host(iif as u32).to_bytes());
    class_type |= ICMP_EXT_CTYPE_IIO_IFINDEX;

    let rcu = rcu::read_lock();
    if let Some(dev) = NetDevice::get_by_index_rcu(net, iif, &rcu) {
        if let Some(addr) = icmp_ext_iio_addr4_find(dev, &rcu) {
            let [a0, a1] = Be16::from_host(ICMP_AFI_IP.into()).to_bytes();
            let [d0, d1, d2, d3] = addr.to_bytes();
            tail.put(&[a0, a1, 0, 0, d0, d1, d2, d3]);
            class_type |= ICMP_EXT_CTYPE_IIO_IPADDR;
        }
        let mut name = [0u8; IIO_NAME_SUBOBJ_LEN];
        name[0] = IIO_NAME_SUBOBJ_LEN as u8;
        name[1..=IFNAMSIZ].copy_from_slice(dev.copy_name().as_bytes());
        tail.put(&name);
        class_type |= ICMP_EXT_CTYPE_IIO_NAME;
        tail.put(&Be32::from_host(dev.mtu()).to_bytes());
        class_type |= ICMP_EXT_CTYPE_IIO_MTU;
    }
    drop(rcu);
    let [l0, l1] = Be16::from_host((tail.ext_len - objh) as u16).to_bytes();
    tail.ext[objh..objh + EXTOBJ_HDR_LEN].copy_from_slice(&[
        l0,
        l1,
        ICMP_EXT_OBJ_CLASS_IIO,
        class_type,
    ]);
}

/// `icmp_ext_objs_append`: appends the objects `ext_objs` asks for.
fn icmp_ext_objs_append(net: &Net, tail: &mut IcmpExtTail, ext_objs: u8, iif: i32) {
    if ext_objs & (1 << ICMP_ERR_EXT_IIO_IIF) != 0 {
        icmp_ext_iio_iif_append(net, tail, iif);
    }
}

/// `icmp_ext_append`: the tail of an error of type `icmph.type_` about `skb_in` (its payload
/// starting at `offset`, the network header) with the extensions the namespace asks for, if
/// the error may carry them and `room` allows; `None` if it gets none, or only an empty
/// extension structure. Sets the RFC 4884 length of the quoted datagram in `icmph`.
pub(crate) fn icmp_ext_append(
    net: &Net,
    skb_in: &SkBuff,
    offset: i32,
    icmph: &mut IcmpHdr,
    room: usize,
    iif: i32,
) -> Option<IcmpExtTail> {
    if !matches!(
        icmph.type_,
        ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETERPROB
    ) {
        return None;
    }
    let ext_objs = net.sysctl_icmp_errors_extension_mask();
    if ext_objs == 0 {
        return None;
    }
    if ORIG_DGRAM_LEN + icmp_ext_max_len(ext_objs) > room {
        return None;
    }
    let available = usize::try_from(i64::from(skb_in.len()) - i64::from(offset)).ok()?;
    let mut tail = IcmpExtTail {
        quoted: available.min(ORIG_DGRAM_LEN),
        ext: [0; EXT_MAX],
        ext_len: 0,
    };
    tail.put(&[ICMP_EXT_VERSION_2 << 4, 0, 0, 0]);
    icmp_ext_objs_append(net, &mut tail, ext_objs, iif);

    // Do not send an empty extension structure.
    if tail.ext_len == EXT_HDR_LEN {
        return None;
    }
    let csum = Wsum::ZERO.partial(tail.ext()).fold().to_bytes();
    tail.ext[2..4].copy_from_slice(&csum);
    // The length of the original datagram in 32-bit words (RFC 4884), in `un.reserved[1]`.
    icmph.un[1] = (ORIG_DGRAM_LEN / 4) as u8;
    Some(tail)
}
