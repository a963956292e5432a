// SPDX-License-Identifier: GPL-2.0

//! Queries the host answers (icmp.c: `icmp_echo`, `icmp_timestamp`).

use kernel::net::{
    ipv4::{
        icmp::{inet_current_timestamp, ICMP_ECHO, ICMP_ECHOREPLY, ICMP_TIMESTAMPREPLY},
        xmit::IpOptionsData,
        IcmpHdr, Ipv4RxSkBuff,
    },
    skb::DropReason,
    Be32,
};

use crate::{
    probe,
    rcv::Ctx,
    reply::{icmp_reply, HeadLen, IcmpBxm, IcmpBxmData, NoExt},
};
use core::pin::Pin;
use kernel::net::ipv4::icmp::IcmpMib;

/// `icmp_echo`: answers an echo request with an echo reply carrying the same identifier,
/// sequence number and data (RFC 792; RFC 1122 3.2.2.6), and an extended echo request
/// (RFC 8335 PROBE) with the state of the interface it names, unless
/// `net.ipv4.icmp_echo_ignore_all` is set. The request is consumed by `icmp_rcv` in every
/// case (C returns `SKB_NOT_DROPPED_YET`).
pub(crate) fn icmp_echo(
    ctx: &Ctx<'_>,
    skb: Pin<&mut Ipv4RxSkBuff>,
    mut icmph: IcmpHdr,
) -> Result<(), DropReason> {
    // Should there be an ICMP stat for ignored echos? C has none.
    if ctx.net().sysctl_icmp_echo_ignore_all() != 0 {
        return Ok(());
    }
    if icmph.type_ == ICMP_ECHO {
        icmph.type_ = ICMP_ECHOREPLY;
    } else if !probe::icmp_build_probe(&skb, &mut icmph) {
        return Ok(());
    }
    let mut param = IcmpBxm {
        skb: &*skb,
        offset: 0,
        data_len: skb.len(),
        data: IcmpBxmData {
            icmph,
            times: [Be32::ZERO; 3],
        },
        head_len: HeadLen::Header,
        replyopts: IpOptionsData::new(),
        ext: NoExt,
    };
    icmp_reply(ctx.icmp, &mut param, ctx.rcu);
    Ok(())
}

/// `icmp_timestamp`: answers a timestamp request (RFC 792) with our receive and transmit
/// times in milliseconds since midnight UTC. Requests shorter than the originate timestamp
/// are errors.
pub(crate) fn icmp_timestamp(
    ctx: &Ctx<'_>,
    skb: Pin<&mut Ipv4RxSkBuff>,
    mut icmph: IcmpHdr,
) -> Result<(), DropReason> {
    // Too short.
    if skb.len() < 4 {
        ctx.mibs.icmp_inc_stats(IcmpMib::InErrors);
        return Err(DropReason::PKT_TOO_SMALL);
    }
    let now = inet_current_timestamp();
    let mut originate = [0u8; 4];
    // C: BUG_ON(skb_copy_bits(skb, 0, &times[0], 4)) after checking skb->len >= 4.
    if skb.copy_bits(0, &mut originate).is_err() {
        return Err(DropReason::PKT_TOO_SMALL);
    }
    icmph.type_ = ICMP_TIMESTAMPREPLY;
    icmph.code = 0;
    let skb = &*skb;
    let mut param = IcmpBxm {
        skb,
        offset: 0,
        data_len: 0,
        data: IcmpBxmData {
            icmph,
            times: [Be32::from_bytes(originate), now, now],
        },
        head_len: HeadLen::Timestamps,
        replyopts: IpOptionsData::new(),
        ext: NoExt,
    };
    icmp_reply(ctx.icmp, &mut param, ctx.rcu);
    Ok(())
}
