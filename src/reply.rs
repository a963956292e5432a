// SPDX-License-Identifier: GPL-2.0

//! Building and sending ICMP messages (icmp.c: `struct icmp_bxm`, `icmp_glue_bits`,
//! `icmp_push_reply`, `icmp_reply`).
//!
//! A message is an ICMP header (plus, for timestamps, three timestamps) that we build, and a
//! payload copied from a received packet: the request itself for echo replies. The control
//! socket queues both with `ip_append_data`; the checksum is completed over the queue and the
//! packet sent with `ip_push_pending_frames`.

use core::mem::MaybeUninit;
use kernel::{
    net::{
        checksum::Wsum,
        ipv4::{
            icmp::IcmpMib,
            route::{Flowi4, Route},
            xmit::{fib_compute_spec_dst, FragSkb, GetFrag, IpOptionsData, IpcmCookie, XmitSock},
            IcmpHdr, INET_DSCP_MASK, IPPROTO_ICMP,
        },
        skb::SkBuff,
        Be32,
    },
    prelude::*,
    sync::{bh, rcu},
};

use crate::{ratelimit, rcv, stats, Icmp};

/// The header part of a message: `struct icmp_bxm.data`.
#[derive(Clone, Copy, Default)]
pub(crate) struct IcmpBxmData {
    /// The ICMP header.
    pub(crate) icmph: IcmpHdr,
    /// Originate, receive and transmit timestamps (timestamp replies only).
    pub(crate) times: [Be32; 3],
}

impl IcmpBxmData {
    /// The header bytes in wire order: 8 bytes of header, then 12 of timestamps.
    fn to_bytes(self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&self.icmph.to_bytes());
        for (i, t) in self.times.iter().enumerate() {
            b[8 + 4 * i..12 + 4 * i].copy_from_slice(&t.to_bytes());
        }
        b
    }
}

/// `struct icmp_bxm`: a message being built, and where its payload comes from.
pub(crate) struct IcmpBxm<'a> {
    /// The packet the payload is copied from.
    pub(crate) skb: &'a SkBuff,
    /// Offset of the payload from `skb->data` (negative: from before it).
    pub(crate) offset: i32,
    /// Payload length.
    pub(crate) data_len: usize,
    /// The header.
    pub(crate) data: IcmpBxmData,
    /// Bytes of `data` that are sent: 8, or 20 for timestamps.
    pub(crate) head_len: usize,
    /// IP options of the message.
    pub(crate) replyopts: IpOptionsData,
}

/// `icmp_glue_bits`: copies payload bytes into the packet being built and adds their checksum
/// to the fragment's sum. Errors also get the conntrack entry of the packet they are about.
impl GetFrag for IcmpBxm<'_> {
    fn getfrag(
        &self,
        to: &mut [MaybeUninit<u8>],
        offset: usize,
        odd: usize,
        skb: &mut FragSkb,
    ) -> Result {
        let offset = i32::try_from(offset).map_err(|_| EINVAL)?;
        // C: BUG() if the range is not in the packet (`data_len` was computed from it).
        let csum = self
            .skb
            .copy_and_csum_bits(self.offset + offset, to)
            .ok_or(EFAULT)?;
        skb.set_csum(skb.csum().block_add(csum, odd));
        if rcv::icmp_pointers_error(self.data.icmph.type_) {
            skb.nf_ct_attach(self.skb);
        }
        Ok(())
    }
}

/// `icmp_push_reply`: queues the message on the locked control socket, completes the ICMP
/// checksum over header and payload, and sends it. If queueing fails, counts `OutErrors` and
/// drops what was queued.
pub(crate) fn icmp_push_reply(
    icmp: &Icmp,
    sk: &mut XmitSock<'_>,
    param: &IcmpBxm<'_>,
    fl4: &mut Flowi4,
    ipc: &mut IpcmCookie<'_>,
    rt: Route,
) {
    let net = sk.net();
    let length = param.data_len + param.head_len;
    if sk
        .append_data(fl4, param, length, param.head_len, ipc, rt)
        .is_err()
    {
        stats::icmp_inc_stats(icmp, net, IcmpMib::OutErrors);
        sk.flush_pending_frames();
        return;
    }
    let queued = sk.pending_csum();
    // The header with its checksum (0 in `param`) completed over header and payload.
    let mut head = param.data.to_bytes();
    let icmph = &mut head[..param.head_len];
    let csum = Wsum::ZERO.partial(icmph).add(queued);
    icmph[2..4].copy_from_slice(&csum.fold().to_bytes());
    let Some(mut skb) = sk.first_pending() else {
        return;
    };
    if skb.write_transport_header(icmph).is_err() {
        // `ip_append_data` reserved `head_len` bytes there; this cannot happen.
        sk.flush_pending_frames();
        return;
    }
    skb.set_checksum_none();
    // Errors of the send (no buffer, qdisc drop) are counted by the IP layer, as for C.
    let _ = sk.push_pending_frames(fl4);
}

/// `icmp_reply`: answers a request (`skb`) with the message in `param`, to its source, from
/// the address it was sent to, with its IP options echoed, if the rate limits allow.
pub(crate) fn icmp_reply(icmp: &Icmp, param: &mut IcmpBxm<'_>, skb: &SkBuff) {
    let rcu = rcu::read_lock();
    let Some(net) = skb
        .rtable(&rcu)
        .and_then(|rt| rt.dev(&rcu))
        .map(|dev| dev.net(&rcu))
    else {
        return;
    };
    let Some(iph) = skb.ip_hdr() else {
        return;
    };
    let mark = net.ip4_reply_mark(skb.mark());
    let type_ = i32::from(param.data.icmph.type_);
    let code = i32::from(param.data.icmph.code);

    if param.replyopts.echo(net, skb).is_err() {
        return;
    }

    // Needed by both icmpv4_global_allow and the xmit lock.
    let bh = bh::disable();

    let Some(apply_ratelimit) = ratelimit::icmpv4_global_allow(icmp, net, type_, code) else {
        return;
    };
    let Some(mut sk) = icmp.socks.lock(net, &bh) else {
        return;
    };

    param.data.icmph.checksum = [0; 2];
    let param = &*param;

    let mut ipc = IpcmCookie::new();
    sk.set_tos(iph.tos());
    ipc.set_mark(mark);
    let mut daddr = iph.saddr();
    ipc.set_addr(daddr);
    let Some(saddr) = fib_compute_spec_dst(skb, &rcu) else {
        return;
    };

    if param.replyopts.optlen() != 0 {
        ipc.set_opt(&param.replyopts);
        if param.replyopts.srr() != 0 {
            daddr = param.replyopts.faddr();
        }
    }
    let mut fl4 = Flowi4::new();
    fl4.set_daddr(daddr);
    fl4.set_saddr(saddr);
    fl4.set_mark(mark);
    fl4.set_uid(net.root_uid());
    fl4.set_tos(iph.tos() & INET_DSCP_MASK);
    fl4.set_proto(IPPROTO_ICMP);
    fl4.set_oif(skb.dev(&rcu).map_or(0, |dev| dev.l3mdev_master_ifindex()));
    fl4.classify_from(skb);
    let Ok(rt) = Route::output_key(net, &mut fl4) else {
        return;
    };
    if ratelimit::icmpv4_xrlim_allow(icmp, net, &rt, &fl4, apply_ratelimit) {
        icmp_push_reply(icmp, &mut sk, param, &mut fl4, &mut ipc, rt);
    }
}
