// SPDX-License-Identifier: GPL-2.0

//! ICMP messages the host generates about packets it received or forwards (icmp.c:
//! `__icmp_send`, `icmp_route_lookup`, `icmp_get_route_lookup_dev`).
//!
//! The rest of the kernel calls `__icmp_send` (through the inline `icmp_send`) when UDP finds
//! no socket, `ip_forward` a TTL running out or a packet too big, `ip_protocol_deliver_rcu`
//! an unknown protocol, `ip_expire` a reassembly timeout, netfilter's REJECT, and tunnels
//! through `icmp_ndo_send`. While rust_icmp is loaded a live patch sends those calls here.
//!
//! RFC 1122 3.2.2: an error MUST quote the IP header and 8 bytes, MAY quote more (we quote up
//! to 576 bytes in all), MUST NOT be sent about a multicast/broadcast datagram or an ICMP
//! error, and MUST be sent only about the first fragment.

use kernel::{
    net::{
        dev::NetDevice,
        ipv4::{
            icmp::{inet_addr_type_dev_table, IcmpSendSkb, NR_ICMP_TYPES},
            route::{
                xfrm_decode_session_reverse, Flowi4, Route, Rtable, FLOWI_FLAG_ANYSRC,
                RTCF_BROADCAST, RTCF_LOCAL, RTCF_MULTICAST, RTN_LOCAL, RTN_UNREACHABLE,
                XFRM_LOOKUP_ICMP,
            },
            xmit::{InetSkbParm, IpOptionsData, IpcmCookie},
            IcmpHdr, IpHdr, Ipv4SkBuff, INET_DSCP_MASK, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
        },
        namespace::Net,
        skb::PACKET_HOST,
        Be32,
    },
    net_warn_ratelimited,
    prelude::*,
    sync::{bh, rcu},
};

use crate::{
    ext, ratelimit, rcv,
    reply::{icmp_push_reply, HeadLen, IcmpBxm, IcmpBxmData},
    Icmp,
};

/// `IPTOS_TOS_MASK` (what `RT_TOS` keeps of the TOS byte).
const IPTOS_TOS_MASK: u8 = 0x1e;
/// `IPTOS_PREC_INTERNETCONTROL`: precedence of ICMP errors (RFC 1812 4.3.2.5).
const IPTOS_PREC_INTERNETCONTROL: u8 = 0xc0;
/// `RT_SCOPE_LINK`.
const RT_SCOPE_LINK: u8 = 253;
/// `IPPROTO_SCTP` and `IPPROTO_DCCP`: protocols with ports, like TCP and UDP.
const IPPROTO_SCTP: u8 = 132;
const IPPROTO_DCCP: u8 = 33;
/// The size an error may not exceed (RFC 1812 4.3.2.3).
const MAX_ERROR_LEN: i32 = 576;

/// `icmp_get_route_lookup_dev`: the device whose routing table (VRF) an error is routed in:
/// the device the packet came in on if any, else the device of its route.
fn icmp_get_route_lookup_dev<'g>(skb: &Ipv4SkBuff, rcu: &'g rcu::Guard) -> Option<&'g NetDevice> {
    skb.dev(rcu)
        .or_else(|| skb.rtable(rcu).and_then(|rt| rt.dev(rcu)))
}

/// `icmp_route_lookup`: the route of an error about `skb_in`, to the quoted packet's source
/// (or the first hop of its source route). With IPsec, if the plain route is not protected
/// by a policy, the error is routed like the reverse of the quoted flow, so that it follows
/// the same tunnel back. `lent` is `skb_in` with its route and control block, which the
/// lookup of the input route borrows.
#[allow(clippy::too_many_arguments)]
fn icmp_route_lookup(
    net: &Net,
    fl4: &mut Flowi4,
    lent: &mut IcmpSendSkb<'_>,
    iph: &IpHdr,
    saddr: Be32,
    dscp: u8,
    mark: u32,
    type_: u8,
    code: u8,
    replyopts: &IpOptionsData,
    rcu: &rcu::Guard,
) -> Result<Route> {
    let skb_in = lent.skb();
    *fl4 = Flowi4::new();
    fl4.set_daddr(if replyopts.srr() != 0 {
        replyopts.faddr()
    } else {
        iph.saddr()
    });
    fl4.set_saddr(saddr);
    fl4.set_mark(mark);
    fl4.set_uid(net.root_uid());
    fl4.set_dscp(dscp);
    fl4.set_proto(IPPROTO_ICMP);
    fl4.set_icmp_type_code(type_, code);
    let route_lookup_dev = icmp_get_route_lookup_dev(skb_in, rcu);
    fl4.set_oif(route_lookup_dev.map_or(0, |d| d.l3mdev_master_ifindex()));

    fl4.classify_from(skb_in);
    let rt = Route::output_key_hash(net, fl4, Some(skb_in))?;

    // No need to clone since we're just using its address.
    let plain: *const Rtable = &*rt;

    let mut rt = match rt.xfrm_lookup(net, fl4, 0) {
        Ok(rt) => {
            if !core::ptr::eq(&*rt, plain) {
                return Ok(rt);
            }
            if inet_addr_type_dev_table(net, route_lookup_dev, fl4.daddr()) == RTN_LOCAL {
                return Ok(rt);
            }
            Some(rt)
        }
        Err(e) if e == EPERM => None,
        Err(e) => return Err(e),
    };

    let relookup_failed = |rt: Option<Route>, err: Error| rt.ok_or(err);

    let mut fl4_dec = Flowi4::new();
    if let Err(e) = xfrm_decode_session_reverse(net, skb_in, &mut fl4_dec) {
        return relookup_failed(rt, e);
    }

    let rt2 = if inet_addr_type_dev_table(net, route_lookup_dev, fl4_dec.saddr()) == RTN_LOCAL {
        Route::output_key_hash(net, &mut fl4_dec, None)
    } else {
        let mut fl4_2 = fl4_dec.clone();
        fl4_2.swap_addrs();
        if matches!(
            fl4_2.proto(),
            IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_DCCP
        ) {
            fl4_2.swap_ports();
        }
        fl4_2.set_oif(route_lookup_dev.map_or(0, |d| d.l3mdev_master_ifindex()));
        fl4_2.add_flags(FLOWI_FLAG_ANYSRC);

        let out = match Route::output_key_hash(net, &mut fl4_2, None) {
            Ok(r) => r,
            Err(e) => return relookup_failed(rt.take(), e),
        };
        let Some(dev) = out.dev(rcu) else {
            return relookup_failed(rt.take(), EINVAL);
        };
        // "Ugh!": the input route the quoted packet would have had, computed on skb_in.
        let input = lent.input_route(fl4_dec.daddr(), fl4_dec.saddr(), dscp, dev);
        drop(out);
        match input {
            Ok(Some(rt2)) => {
                // fl4_dec.daddr is not expected to be local here, but it can be added to an
                // interface concurrently, in which case ip_route_input() returns a LOCAL
                // route. It can also fail to build a forwarding route towards fl4_dec.daddr,
                // for example when forwarding is disabled, and return an UNREACHABLE route.
                // Both cases result in a route with dst.output=ip_rt_bug, which must not be
                // used for output.
                if rt2.rt_type() == RTN_LOCAL {
                    net_warn_ratelimited!(
                        "detected local route for {} during ICMP sending, src {}\n",
                        fl4_dec.daddr(),
                        fl4_dec.saddr()
                    );
                }
                if rt2.rt_type() == RTN_LOCAL || rt2.rt_type() == RTN_UNREACHABLE {
                    Err(EINVAL)
                } else {
                    Ok(rt2)
                }
            }
            Ok(None) => Err(EINVAL),
            Err(e) => Err(e),
        }
    };
    let rt2 = match rt2 {
        Ok(r) => r,
        Err(e) => return relookup_failed(rt, e),
    };

    match rt2.xfrm_lookup(net, &mut fl4_dec, XFRM_LOOKUP_ICMP) {
        Ok(rt2) => {
            drop(rt);
            Ok(rt2)
        }
        Err(e) if e == EPERM => {
            drop(rt);
            Err(e)
        }
        Err(e) => relookup_failed(rt, e),
    }
}

/// `__icmp_send`: sends an ICMP message of `type_`/`code` about `skb_in` with `info` in the
/// header's second word; `parm` is `skb_in`'s IP control block: its options, whose record
/// route, timestamp and source route the message echoes, and the interface it came in on.
/// `lent` is `skb_in` with its route and control block, lent by the caller for the call.
pub(crate) fn __icmp_send(
    icmp: &Icmp,
    mut lent: IcmpSendSkb<'_>,
    type_: i32,
    code: i32,
    info: Be32,
    parm: &InetSkbParm,
) {
    let skb_in = lent.skb();
    let rcu = rcu::read_lock();
    let Some((rt_flags, rt_is_input, rt_dev)) = skb_in
        .rtable(&rcu)
        .map(|rt| (rt.flags(), rt.is_input_route(), rt.dev(&rcu)))
    else {
        return;
    };
    let net = match rt_dev.or_else(|| skb_in.dev(&rcu)) {
        Some(dev) => dev.net(&rcu),
        None => return,
    };

    // Find the original header. It is expected to be valid, of course. Check this,
    // icmp_send is called from the most obscure devices sometimes.
    let Some(iph) = skb_in.ip_hdr() else {
        return;
    };

    // No replies to physical multicast/broadcast.
    if skb_in.pkt_type() != PACKET_HOST {
        return;
    }
    // Now check at the protocol level.
    if rt_flags & (RTCF_BROADCAST | RTCF_MULTICAST) != 0 {
        return;
    }
    // Only reply to fragment 0.
    if iph.is_later_fragment() {
        return;
    }

    let is_error = u8::try_from(type_).is_ok_and(rcv::icmp_pointers_error);
    // If we send an ICMP error to an ICMP error a mess would result.
    if is_error && iph.protocol() == IPPROTO_ICMP {
        let offset = skb_in.network_offset() + iph.header_len() as i32;
        let mut inner_type = [0u8; 1];
        let Some(&[itp]) = skb_in.header_pointer_at(offset, &mut inner_type) else {
            return;
        };
        // Assume any unknown ICMP type is an error. This isn't specified by the RFC, but
        // think about it.
        if itp > NR_ICMP_TYPES || rcv::icmp_pointers_error(itp) {
            return;
        }
    }

    // Needed by both icmpv4_global_allow and the xmit lock. (Not available with interrupts
    // disabled, where C's local_bh_enable() would turn them on.)
    let Some(bh) = bh::disable() else {
        return;
    };

    // Check the global icmp_msgs_per_sec rate limit, unless the incoming device is loopback.
    // If the outgoing device turns out not to be loopback, the peer rate limit still works
    // (in icmpv4_xrlim_allow).
    let mut apply_ratelimit = false;
    if !skb_in.dev(&rcu).is_some_and(|d| d.is_loopback()) {
        match ratelimit::icmpv4_global_allow(icmp, net, type_, code) {
            Some(apply) => apply_ratelimit = apply,
            None => return,
        }
    }

    let Some(mut sk) = icmp.socks.lock(net, &bh) else {
        return;
    };
    'out_unlock: {
        // Construct source address and options.
        let mut saddr = iph.daddr();
        if rt_flags & RTCF_LOCAL == 0 {
            let dev = if rt_is_input && net.sysctl_icmp_errors_use_inbound_ifaddr() != 0 {
                let iif = match parm.iif() {
                    0 => skb_in.inet_iif(),
                    iif => iif,
                };
                NetDevice::get_by_index_rcu(net, iif, &rcu)
            } else {
                None
            };
            saddr = dev.map_or(Be32::ZERO, |d| {
                d.inet_select_addr(iph.saddr(), RT_SCOPE_LINK)
            });
        }

        let tos = if is_error {
            (iph.tos() & IPTOS_TOS_MASK) | IPTOS_PREC_INTERNETCONTROL
        } else {
            iph.tos()
        };
        let mark = net.ip4_reply_mark(skb_in.mark());

        let mut replyopts = IpOptionsData::new();
        if replyopts.echo_from(net, skb_in, parm.opt()).is_err() {
            break 'out_unlock;
        }

        // Prepare data for the ICMP header.
        let mut icmph = IcmpHdr {
            type_: type_ as u8,
            code: code as u8,
            ..Default::default()
        };
        icmph.set_gateway(info);

        let mut fl4 = Flowi4::new();
        let Ok(rt) = icmp_route_lookup(
            net,
            &mut fl4,
            &mut lent,
            &iph,
            saddr,
            tos & INET_DSCP_MASK,
            mark,
            type_ as u8,
            code as u8,
            &replyopts,
            &rcu,
        ) else {
            break 'out_unlock;
        };

        if rt.flags() & (RTCF_BROADCAST | RTCF_MULTICAST) != 0 {
            break 'out_unlock;
        }

        // Peer icmp_ratelimit.
        if !ratelimit::icmpv4_xrlim_allow(icmp, net, &rt, &fl4, apply_ratelimit, &rcu) {
            break 'out_unlock;
        }

        // RFC says return as much as we can without exceeding 576 bytes.
        let mut room = (rt.mtu() as i32).min(MAX_ERROR_LEN);
        room -= IpHdr::LEN as i32 + i32::from(replyopts.optlen());
        room -= IcmpHdr::LEN as i32;
        // Guard against tiny mtu. We need to include at least one IP network header for this
        // message to make any sense.
        if room <= IpHdr::LEN as i32 {
            break 'out_unlock;
        }

        let offset = skb_in.network_offset();
        let ext = ext::icmp_ext_append(net, skb_in, offset, &mut icmph, room as usize, parm.iif());
        let data_len = match &ext {
            Some(ext) => ext.len() as i64,
            None => i64::from(skb_in.len()) - i64::from(offset),
        }
        .min(i64::from(room));

        // If we don't have a source address at this point, fall back to the dummy address
        // instead of sending out a packet with a source address of 0.0.0.0.
        if fl4.saddr() == Be32::ZERO {
            fl4.set_saddr(Be32::INADDR_DUMMY);
        }

        skb_in.trace_icmp_send(type_, code);

        let param = IcmpBxm {
            skb: skb_in,
            offset,
            data_len: u32::try_from(data_len).unwrap_or(0),
            data: IcmpBxmData {
                icmph,
                times: [Be32::ZERO; 3],
            },
            head_len: HeadLen::Header,
            replyopts,
            ext,
        };
        let mut ipc = IpcmCookie::new();
        ipc.set_tos(tos);
        ipc.set_addr(iph.saddr());
        ipc.set_opt(&param.replyopts);
        ipc.set_mark(mark);

        icmp_push_reply(icmp, &mut sk, &param, &mut fl4, &mut ipc, rt);
    }
    // C's `out_unlock`: every path from the lock on ends here, so that the unlock is compiled
    // in line (`XmitSock::unlock`, not the drop).
    sk.unlock();
}
