// SPDX-License-Identifier: GPL-2.0

//! ICMP errors the host receives (icmp.c: `icmp_unreach`, `icmp_tag_validation`,
//! `icmp_socket_deliver`, `icmp_redirect`, `icmp_err`).
//!
//! An error quotes the IP header and the first bytes of the packet it is about. It is handed
//! to the raw sockets of that packet's protocol and to the protocol's `err_handler` (UDP,
//! TCP, ping, tunnels, ... and ICMP itself, [`icmp_err`]), which find the socket, report the
//! error (`IP_RECVERR`) and update the route cache (path MTU, redirects). Sockets that ask
//! for RFC 4884 extensions have them located by [`ip_icmp_error_rfc4884`].

use kernel::{
    c_str,
    net::{
        ipv4::{
            icmp::{
                self, inet_addr_type_dev_table, IcmpMib, QuotedError, Rfc4884, ICMP_DEST_UNREACH,
                ICMP_ECHOREPLY, ICMP_EXC_FRAGTIME, ICMP_FRAG_NEEDED, ICMP_HOST_UNREACH,
                ICMP_NET_UNREACH, ICMP_PARAMETERPROB, ICMP_PORT_UNREACH, ICMP_PROT_UNREACH,
                ICMP_REDIRECT, ICMP_SR_FAILED, ICMP_TIME_EXCEEDED, NR_ICMP_UNREACH,
                SO_EE_RFC4884_FLAG_INVALID,
            },
            route::RTN_BROADCAST,
            IcmpHdr, IpHdr, Ipv4ErrSkBuff, Ipv4RxSkBuff, IPPROTO_ICMP, IPPROTO_RAW,
        },
        namespace::Net,
        protocol,
        skb::{DropReason, SkBuff, SkBuffKind},
    },
    net_dbg_ratelimited, net_warn_ratelimited,
    prelude::*,
    sync::rcu,
};

use crate::{rcv::Ctx, Icmp};

/// `icmp_socket_deliver`: passes an error to the raw sockets and the `err_handler` of the
/// protocol of the quoted packet (`skb->data` at its IP header).
fn icmp_socket_deliver(ctx: &Ctx<'_>, mut skb: Pin<&mut Ipv4RxSkBuff>, info: u32) {
    // The caller made the fixed IP header linear.
    let Some(iph) = IpHdr::from_bytes(skb.data()) else {
        return;
    };
    let protocol = iph.protocol();

    // Checkin full IP header plus 8 bytes of protocol to avoid additional coding at protocol
    // handlers. IPPROTO_RAW sockets are not supposed to receive anything.
    let pulled = skb
        .as_mut()
        .as_skb_mut()
        .may_pull(iph.header_len() as u32 + 8);
    if !pulled || protocol == IPPROTO_RAW {
        ctx.mibs.icmp_inc_stats(IcmpMib::InErrors);
        return;
    }

    // The layout the receivers read, checked once for both (nothing is delivered without it;
    // the checks above leave only the ICMP and IP headers to check).
    let Some(err) = QuotedError::new(skb.as_err(), ctx.rcu) else {
        return;
    };
    icmp::raw_icmp_error(&err, protocol, info);

    icmp::deliver_err(protocol, err, info);
}

/// `icmp_tag_validation`: whether the quoted packet's protocol validates ICMP errors
/// strictly enough that `ip_no_pmtu_disc = 3` may trust the MTU of a "fragmentation needed".
fn icmp_tag_validation(protocol: u8, rcu: &rcu::Guard) -> bool {
    protocol::icmp_strict_tag_validation(protocol, rcu)
}

/// `icmp_unreach`: handles destination unreachable, source quench, time exceeded and
/// parameter problem.
pub(crate) fn icmp_unreach(
    ctx: &Ctx<'_>,
    mut skb: Pin<&mut Ipv4RxSkBuff>,
    icmph: IcmpHdr,
) -> Result<(), DropReason> {
    let net = ctx.net();
    let out_err = |reason| {
        ctx.mibs.icmp_inc_stats(IcmpMib::InErrors);
        Err(reason)
    };

    // Incomplete header? Only checks for the IP header; upper levels check longer headers.
    if !skb.as_mut().as_skb_mut().may_pull(IpHdr::LEN as u32) {
        return out_err(DropReason::NOT_SPECIFIED);
    }
    let Some(iph) = IpHdr::from_bytes(skb.data()) else {
        return out_err(DropReason::NOT_SPECIFIED);
    };
    if iph.ihl() < 5 {
        // Mangled header, drop.
        return out_err(DropReason::IP_INHDR);
    }

    let mut info = 0u32;
    match icmph.type_ {
        ICMP_DEST_UNREACH => {
            match icmph.code & 15 {
                ICMP_NET_UNREACH | ICMP_HOST_UNREACH | ICMP_PROT_UNREACH | ICMP_PORT_UNREACH => {}
                ICMP_FRAG_NEEDED => {
                    // For the values of ip_no_pmtu_disc see
                    // Documentation/networking/ip-sysctl.rst.
                    match net.sysctl_ip_no_pmtu_disc() {
                        0 => info = icmph.frag_mtu().to_host().into(),
                        2 => return Ok(()),
                        3 => {
                            if !icmp_tag_validation(iph.protocol(), ctx.rcu) {
                                return Ok(());
                            }
                            info = icmph.frag_mtu().to_host().into();
                        }
                        _ => {
                            net_dbg_ratelimited!(
                                "{}: fragmentation needed and DF set\n",
                                iph.daddr()
                            );
                        }
                    }
                }
                ICMP_SR_FAILED => {
                    net_dbg_ratelimited!("{}: Source Route Failed\n", iph.daddr());
                }
                _ => {}
            }
            if icmph.code > NR_ICMP_UNREACH {
                return Ok(());
            }
        }
        ICMP_PARAMETERPROB => info = icmph.gateway().to_host() >> 24,
        ICMP_TIME_EXCEEDED => {
            ctx.mibs.icmp_inc_stats(IcmpMib::InTimeExcds);
            if icmph.code == ICMP_EXC_FRAGTIME {
                return Ok(());
            }
        }
        _ => {}
    }

    // RFC 1122: 3.2.2 MUST extract the protocol ID from the passed header.
    // RFC 1122: 3.2.2.1 MUST pass ICMP unreach messages to the transport layer.
    // RFC 1122: 3.2.2.2 MUST pass ICMP time expired messages to transport layer.
    //
    // Check the other end isn't violating RFC 1122: some routers send bogus responses to
    // broadcast frames. If you see this message first check your netmask matches at both
    // ends, if it does then get the other vendor to fix their kit.
    if net.sysctl_icmp_ignore_bogus_error_responses() == 0 {
        let dev = skb.dev(ctx.rcu);
        if inet_addr_type_dev_table(net, dev, iph.daddr()) == RTN_BROADCAST {
            let name = dev.map(|d| d.copy_name());
            net_warn_ratelimited!(
                "{} sent an invalid ICMP type {}, code {} error to a broadcast: {} on {}\n",
                skb.ip_hdr().saddr(),
                icmph.type_,
                icmph.code,
                iph.daddr(),
                name.as_ref().map_or(c_str!("?"), |n| n.as_cstr())
            );
            return Ok(());
        }
    }

    icmp_socket_deliver(ctx, skb, info);
    Ok(())
}

/// `icmp_redirect`: hands a redirect to the protocol of the quoted packet, whose error
/// handler applies it to the route cache (`ipv4_redirect`, subject to the accept_redirects,
/// secure_redirects and shared_media settings).
pub(crate) fn icmp_redirect(
    ctx: &Ctx<'_>,
    mut skb: Pin<&mut Ipv4RxSkBuff>,
    icmph: IcmpHdr,
) -> Result<(), DropReason> {
    if skb.len() < IpHdr::LEN as u32 {
        ctx.mibs.icmp_inc_stats(IcmpMib::InErrors);
        return Err(DropReason::PKT_TOO_SMALL);
    }
    if !skb.as_mut().as_skb_mut().may_pull(IpHdr::LEN as u32) {
        // There ought to be a stat.
        return Err(DropReason::NOMEM);
    }
    let gateway = icmph.gateway().to_host();
    icmp_socket_deliver(ctx, skb, gateway);
    Ok(())
}

/// `icmp_err`: the `err_handler` of ICMP itself, for errors about ICMP messages this host
/// sent. Errors about echo requests go to the ping socket that sent them (`ping_err`); for
/// an echo reply the kernel sent, a "fragmentation needed" updates the path MTU and a
/// redirect the route, as for any other protocol.
pub(crate) fn icmp_err(_icmp: &Icmp, skb: Pin<&mut Ipv4ErrSkBuff>, info: u32) -> Result {
    let data = skb.data();
    let Some(iph) = IpHdr::from_bytes(data) else {
        return Ok(());
    };
    let offset = iph.header_len();
    // The caller (icmp_socket_deliver) made the IP header and 8 bytes after it linear.
    let Some(inner) = data.get(offset..).and_then(IcmpHdr::from_bytes) else {
        return Ok(());
    };
    let Some(outer) = skb.icmp_hdr() else {
        return Ok(());
    };

    let rcu = rcu::read_lock();
    // Use ping_err to handle all icmp errors except those triggered by ICMP_ECHOREPLY which
    // are sent from the kernel.
    if inner.type_ != ICMP_ECHOREPLY {
        icmp::ping_err(skb, offset, info, &rcu);
        return Ok(());
    }

    let Some(net) = skb.dev(&rcu).map(|dev| dev.net(&rcu)) else {
        return Ok(());
    };
    let net: &Net = net;
    if outer.type_ == ICMP_DEST_UNREACH && outer.code == ICMP_FRAG_NEEDED {
        icmp::ipv4_update_pmtu(skb.as_skb_mut(), net, info, 0, IPPROTO_ICMP);
    } else if outer.type_ == ICMP_REDIRECT {
        icmp::ipv4_redirect(skb.as_skb_mut(), net, 0, IPPROTO_ICMP, &rcu);
    }
    Ok(())
}

/// `sizeof(struct icmp_ext_hdr)` (RFC 4884): version, reserved bits, checksum.
pub(crate) const EXT_HDR_LEN: usize = 4;
/// `sizeof(struct icmp_extobj_hdr)`: length, class number, class type.
pub(crate) const EXTOBJ_HDR_LEN: usize = 4;

/// `ip_icmp_error_rfc4884_validate`: whether the RFC 4884 extension structure at `off`
/// (after `skb->data`) is well formed: version 2, a correct checksum if there is one, and
/// objects whose lengths tile the rest of the packet. Other versions are not checked.
fn ip_icmp_error_rfc4884_validate(skb: &SkBuff, mut off: u32) -> bool {
    let mut buf = [0u8; EXT_HDR_LEN];
    let Some(exth) = skb.header_pointer(off, &mut buf) else {
        return false;
    };
    // struct icmp_ext_hdr: version in the high nibble of the first byte, then a reserved byte
    // and the checksum.
    if exth[0] >> 4 != 2 {
        return true;
    }
    if exth[2..4] != [0, 0] {
        match skb.checksum(off, skb.len() - off) {
            Some(sum) if sum.fold().to_raw() == 0 => {}
            _ => return false,
        }
    }
    off += EXT_HDR_LEN as u32;
    while off < skb.len() {
        let mut buf = [0u8; EXTOBJ_HDR_LEN];
        let Some(objh) = skb.header_pointer(off, &mut buf) else {
            return false;
        };
        let olen = u32::from(u16::from_be_bytes([objh[0], objh[1]]));
        if olen < EXTOBJ_HDR_LEN as u32 {
            return false;
        }
        off += olen;
        if off > skb.len() {
            return false;
        }
    }
    true
}

/// `ip_icmp_error_rfc4884`: for a socket with `IP_RECVERR_RFC4884`, locates the extension
/// structure of an ICMP error (`skb->data` at the quoted payload, after `thlen` bytes of its
/// transport header): `off` is where the error's length field says the quoted datagram ends,
/// at least 128 bytes (RFC 4884 section 4). Reports its offset in the payload, flagged
/// invalid if it is malformed.
pub(crate) fn ip_icmp_error_rfc4884(skb: &SkBuff, out: &mut Rfc4884, thlen: i32, off: i32) {
    // Original datagram headers: from the end of the ICMP header to the payload (skb->data).
    let hlen = -skb.transport_offset() - thlen;

    // Per RFC 4884: minimal datagram length of 128 bytes.
    if off < 128 || off < hlen {
        return;
    }
    // The kernel has stripped the headers: the payload offset in bytes.
    let off = off - hlen;
    if i64::from(off) + EXT_HDR_LEN as i64 > i64::from(skb.len()) {
        return;
    }
    out.len = off as u16;
    if !ip_icmp_error_rfc4884_validate(skb, off as u32) {
        out.flags |= SO_EE_RFC4884_FLAG_INVALID;
    }
}
