// SPDX-License-Identifier: GPL-2.0

//! Receiving ICMP messages (icmp.c: `icmp_rcv`, `icmp_pointers[]`, `icmp_discard`).

use core::pin::Pin;
use kernel::{
    net::{
        ipv4::{
            icmp::{
                self, IcmpMib, ICMP_ADDRESS, ICMP_ADDRESSREPLY, ICMP_ECHO, ICMP_ECHOREPLY,
                ICMP_EXT_ECHO, ICMP_EXT_ECHOREPLY, ICMP_TIMESTAMP, NR_ICMP_TYPES,
            },
            route::{RTCF_BROADCAST, RTCF_MULTICAST},
            IcmpHdr, IpHdr, Ipv4RxSkBuff, XFRM_STATE_ICMP,
        },
        namespace::Net,
        protocol::{NET_RX_DROP, NET_RX_SUCCESS},
        skb::{DropReason, OwnedSkBuff, SkBuffKind},
    },
    sync::rcu,
};

use crate::{echo, stats::Mibs, unreach, Icmp};
use Handler::Borrows;

/// What every handler gets besides the packet: the protocol state and the namespace the
/// packet arrived in (C handlers recompute `net` from the skb's route each time).
pub(crate) struct Ctx<'a> {
    pub(crate) icmp: &'a Icmp,
    /// The RCU read-side critical section `icmp_rcv` runs in (as C's callers guarantee).
    pub(crate) rcu: &'a rcu::Guard,
    /// The counters of the namespace on this CPU (softirq context: the packet stays on it).
    pub(crate) mibs: Mibs<'a>,
}

impl<'a> Ctx<'a> {
    /// The namespace the packet arrived in (that of its route's device).
    pub(crate) fn net(&self) -> &'a Net {
        self.mibs.net()
    }
}

/// A handler of the table (C's return value `SKB_NOT_DROPPED_YET` is `Ok(())`). Besides the
/// packet it gets the ICMP header `icmp_rcv` read, which C's handlers read again with
/// `icmp_hdr(skb)`: the same bytes, which no handler changes in the packet.
#[derive(Clone, Copy)]
pub(crate) enum Handler {
    /// Looks at the packet, which `icmp_rcv` then consumes, or drops for the reason returned.
    Borrows(fn(&Ctx<'_>, Pin<&mut Ipv4RxSkBuff>, IcmpHdr) -> Result<(), DropReason>),
    /// `ping_rcv` (ping.c), which takes the packet and queues it on the ping socket whose
    /// identifier it carries. As in C, `icmp_rcv` hands echo replies to it before it looks at
    /// the table, so this entry is never used.
    PingRcv,
}

/// What `icmp_rcv` does with the packet once it passed its checks.
enum Next {
    Consume,
    /// An echo reply or extended echo reply, for `ping_rcv`, which consumes or frees it.
    PingRcv,
}

/// `struct icmp_control`: an entry of [`ICMP_POINTERS`].
pub(crate) struct IcmpControl {
    /// The handler.
    handler: Handler,
    /// The type is an error message (ICMP must never answer an error with an error).
    error: bool,
}

const fn entry(handler: Handler, error: bool) -> IcmpControl {
    IcmpControl { handler, error }
}

/// `icmp_pointers[]`: how each type 0..=18 is handled (icmp.c's table, same order).
pub(crate) static ICMP_POINTERS: [IcmpControl; NR_ICMP_TYPES as usize + 1] = [
    /* ICMP_ECHOREPLY */ entry(Handler::PingRcv, false),
    /* 1 */ entry(Borrows(icmp_discard), true),
    /* 2 */ entry(Borrows(icmp_discard), true),
    /* ICMP_DEST_UNREACH */ entry(Borrows(unreach::icmp_unreach), true),
    /* ICMP_SOURCE_QUENCH */ entry(Borrows(unreach::icmp_unreach), true),
    /* ICMP_REDIRECT */ entry(Borrows(unreach::icmp_redirect), true),
    /* 6 */ entry(Borrows(icmp_discard), true),
    /* 7 */ entry(Borrows(icmp_discard), true),
    /* ICMP_ECHO */ entry(Borrows(echo::icmp_echo), false),
    /* 9 */ entry(Borrows(icmp_discard), true),
    /* 10 */ entry(Borrows(icmp_discard), true),
    /* ICMP_TIME_EXCEEDED */ entry(Borrows(unreach::icmp_unreach), true),
    /* ICMP_PARAMETERPROB */ entry(Borrows(unreach::icmp_unreach), true),
    /* ICMP_TIMESTAMP */ entry(Borrows(echo::icmp_timestamp), false),
    /* ICMP_TIMESTAMPREPLY */ entry(Borrows(icmp_discard), false),
    /* ICMP_INFO_REQUEST */ entry(Borrows(icmp_discard), false),
    /* ICMP_INFO_REPLY */ entry(Borrows(icmp_discard), false),
    /* ICMP_ADDRESS */ entry(Borrows(icmp_discard), false),
    /* ICMP_ADDRESSREPLY */ entry(Borrows(icmp_discard), false),
];

/// `icmp_pointers[type].error` for any type (types above 18 are not errors).
pub(crate) fn icmp_pointers_error(type_: u8) -> bool {
    ICMP_POINTERS
        .get(usize::from(type_))
        .is_some_and(|c| c.error)
}

/// `icmp_discard`: types the host accepts and ignores (address mask, information,
/// timestamp replies, obsolete types).
fn icmp_discard(
    _ctx: &Ctx<'_>,
    _skb: Pin<&mut Ipv4RxSkBuff>,
    _icmph: IcmpHdr,
) -> Result<(), DropReason> {
    // Pretend it was a success.
    Ok(())
}

/// `icmp_rcv`: the entry point for every ICMP message delivered to this host.
// Inlined into the protocol trampoline, its one caller.
#[inline]
pub(crate) fn icmp_rcv(icmp: &Icmp, skb: OwnedSkBuff<Ipv4RxSkBuff>, rcu: &rcu::Guard) -> i32 {
    let rt_flags = skb.route(rcu).flags();
    let net = skb.dst_dev_rcu(rcu).net(rcu);

    // Two copies of the receive path: without `mirror=1` (the module's default) the mirror's
    // absence is tested once, here, and that copy's counters do not test it again.
    if icmp.stats.is_none() {
        icmp_rcv_counted(icmp, rcu, Mibs::unmirrored(net), skb, rt_flags)
    } else {
        icmp_rcv_counted(icmp, rcu, Mibs::new(icmp, net, rcu), skb, rt_flags)
    }
}

/// [`icmp_rcv`] once it knows the counters the packet updates.
#[inline(always)]
fn icmp_rcv_counted<'a>(
    icmp: &'a Icmp,
    rcu: &'a rcu::Guard,
    mibs: Mibs<'a>,
    mut skb: OwnedSkBuff<Ipv4RxSkBuff>,
    rt_flags: u32,
) -> i32 {
    match icmp_rcv_reason(icmp, rcu, mibs, skb.as_mut(), rt_flags) {
        Ok(Next::Consume) => {
            skb.consume();
            NET_RX_SUCCESS
        }
        Ok(Next::PingRcv) => match icmp::ping_rcv(skb, rcu) {
            Ok(()) => NET_RX_SUCCESS,
            Err(_) => NET_RX_DROP,
        },
        Err(reason) => {
            mibs.count_drop(reason);
            skb.drop_reason(reason);
            NET_RX_DROP
        }
    }
}

/// The IPsec input policy refused the packet. An ICMP error that arrived through a state
/// flagged `XFRM_STATE_ICMP` is still accepted if the packet it quotes matches the policy in
/// the reverse direction (so errors from routers inside a tunnel reach the host). Drops are
/// not counted, as in C.
fn icmp_xfrm_reverse_check(mut skb: Pin<&mut Ipv4RxSkBuff>) -> Result<(), DropReason> {
    if skb.sec_path_last_flags() & XFRM_STATE_ICMP == 0 {
        return Err(DropReason::XFRM_POLICY);
    }
    if !skb
        .as_mut()
        .as_skb_mut()
        .may_pull((IcmpHdr::LEN + IpHdr::LEN) as u32)
    {
        return Err(DropReason::NOT_SPECIFIED);
    }
    // The quoted packet is checked as if it were the packet: its header as the network
    // header for the call.
    let admitted = skb
        .xfrm4_policy_check_reverse_at(IcmpHdr::LEN as i32)
        .ok_or(DropReason::NOT_SPECIFIED)?;
    if admitted {
        Ok(())
    } else {
        Err(DropReason::XFRM_POLICY)
    }
}

/// `icmp_rcv` up to the point where it frees the packet: validation, counters, dispatch.
/// The handlers' [`Ctx`] is made only where a handler is called: an echo reply, for
/// `ping_rcv`, needs none.
#[inline(always)]
fn icmp_rcv_reason<'a>(
    icmp: &'a Icmp,
    rcu: &'a rcu::Guard,
    mibs: Mibs<'a>,
    mut skb: Pin<&mut Ipv4RxSkBuff>,
    rt_flags: u32,
) -> Result<Next, DropReason> {
    let net = mibs.net();
    let ctx = || Ctx { icmp, rcu, mibs };

    if !skb.as_mut().xfrm4_policy_check_in() {
        icmp_xfrm_reverse_check(skb.as_mut())?;
    }

    mibs.icmp_inc_stats(IcmpMib::InMsgs);

    if !skb.as_mut().as_skb_mut().checksum_simple_validate() {
        mibs.icmp_inc_stats(IcmpMib::CsumErrors);
        mibs.icmp_inc_stats(IcmpMib::InErrors);
        return Err(DropReason::ICMP_CSUM);
    }

    // C: pskb_pull(skb, sizeof(*icmph)), then icmph = icmp_hdr(skb): the bytes pulled, as
    // the transport header of a delivered packet starts at `data`.
    let Some(icmph) = skb.as_mut().as_skb_mut().pull_header::<IcmpHdr>() else {
        mibs.icmp_inc_stats(IcmpMib::InErrors);
        return Err(DropReason::NOT_SPECIFIED);
    };
    let type_ = icmph.type_;

    mibs.icmpmsg_in_inc_stats(type_);

    // ICMP Extended Echo (PROBE) messages are outside the table, which ends at type 18.
    if type_ == ICMP_EXT_ECHO {
        return echo::icmp_echo(&ctx(), skb, icmph).map(|()| Next::Consume);
    }

    if rt_flags & (RTCF_BROADCAST | RTCF_MULTICAST) != 0 {
        // RFC 1122: 3.2.2.6 An ICMP_ECHO to broadcast MAY be silently ignored (we let the
        // user decide with a sysctl).
        // RFC 1122: 3.2.2.8 An ICMP_TIMESTAMP MAY be silently discarded if to
        // broadcast/multicast.
        let query = type_ == ICMP_ECHO || type_ == ICMP_TIMESTAMP;
        if (query && net.sysctl_icmp_echo_ignore_broadcasts() != 0)
            || (!query && type_ != ICMP_ADDRESS && type_ != ICMP_ADDRESSREPLY)
        {
            mibs.icmp_inc_stats(IcmpMib::InErrors);
            return Err(DropReason::INVALID_PROTO);
        }
    }

    if type_ == ICMP_EXT_ECHOREPLY || type_ == ICMP_ECHOREPLY {
        return Ok(Next::PingRcv);
    }

    // 18 is the highest 'known' ICMP type. Anything else is a mystery.
    // RFC 1122: 3.2.2 Unknown ICMP messages types MUST be silently discarded.
    let Some(control) = ICMP_POINTERS.get(usize::from(type_)) else {
        mibs.icmp_inc_stats(IcmpMib::InErrors);
        return Err(DropReason::UNHANDLED_PROTO);
    };

    match control.handler {
        Borrows(handler) => handler(&ctx(), skb, icmph).map(|()| Next::Consume),
        Handler::PingRcv => Ok(Next::PingRcv),
    }
}
