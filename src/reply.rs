// SPDX-License-Identifier: GPL-2.0

//! Building and sending ICMP messages (icmp.c: `struct icmp_bxm`, `icmp_glue_bits`,
//! `icmp_push_reply`, `icmp_reply`).
//!
//! A message is an ICMP header (plus, for timestamps, three timestamps) that we build, and a
//! payload copied from a received packet: the request itself for echo replies. As in C, the
//! control socket queues both with `ip_append_data`, the checksum is completed over the queue
//! and the packet is sent with `ip_push_pending_frames`: the IP layer builds every message.

use core::{mem::offset_of, pin::Pin};
use kernel::{
    net::{
        checksum::Wsum,
        ipv4::{
            icmp::IcmpMib,
            route::{Flowi4, Route},
            xmit::{
                fib_compute_spec_dst, FragBuf, FragSkb, GetFrag, IpOptionsData, IpcmCookie,
                XmitSock,
            },
            IcmpHdr, Ipv4RxSkBuff, IPPROTO_ICMP,
        },
        skb::SkBuffKind,
        Be32,
    },
    prelude::*,
    sync::{bh, rcu},
};
use zerocopy_derive::Immutable;

use crate::{ext::IcmpExtTail, ratelimit, rcv, stats, Icmp};

/// The header part of a message: `struct icmp_bxm.data`, laid out as it goes on the wire (8
/// bytes of header, then 12 of timestamps), so that it is sent as it is.
#[derive(Clone, Copy, Default, IntoBytes, Immutable)]
#[repr(C)]
pub(crate) struct IcmpBxmData {
    /// The ICMP header.
    pub(crate) icmph: IcmpHdr,
    /// Originate, receive and transmit timestamps (timestamp replies only).
    pub(crate) times: [Be32; 3],
}

/// How many bytes of an [`IcmpBxmData`] a message sends. An enum rather than a number, so
/// that the compiler knows the header fits in `IcmpBxmData` and holds the checksum field.
#[derive(Clone, Copy)]
#[repr(u8)]
pub(crate) enum HeadLen {
    /// The ICMP header.
    Header = IcmpHdr::LEN as u8,
    /// The ICMP header and three timestamps (timestamp replies).
    Timestamps = size_of::<IcmpBxmData>() as u8,
}
const _: () = assert!(IcmpHdr::LEN == 8 && size_of::<IcmpBxmData>() == IcmpHdr::LEN + 12);

impl HeadLen {
    /// The number of bytes.
    pub(crate) const fn len(self) -> usize {
        self as usize
    }
}

/// `struct icmp_bxm`: a message being built, and where its payload comes from.
///
/// `K` is what the packet is known to be: a received IPv4 packet for a reply, whose route,
/// options and device decide where the reply goes ([`icmp_reply`] reads them from `skb`, as C
/// reads `icmp_param->skb`); an IPv4 packet for an error ([`crate::send`]). `X` says whether
/// the message can carry an ICMP extension: only errors can ([`Option<IcmpExtTail>`]); a
/// reply's type, [`NoExt`], leaves the extension's code out of its `getfrag`.
pub(crate) struct IcmpBxm<'a, K: SkBuffKind, X: ExtSlot> {
    /// The packet the payload is copied from.
    pub(crate) skb: &'a K,
    /// Offset of the payload from `skb->data` (negative: from before it).
    pub(crate) offset: i32,
    /// Payload length (C's is an `int` too: `skb->len` at most).
    pub(crate) data_len: u32,
    /// The header.
    pub(crate) data: IcmpBxmData,
    /// Bytes of `data` that are sent.
    pub(crate) head_len: HeadLen,
    /// IP options of the message.
    pub(crate) replyopts: IpOptionsData,
    /// For an error with ICMP extensions: the payload is `skb`'s first `ext.quoted()` bytes
    /// from `offset`, then the tail (`data_len` covers both).
    pub(crate) ext: X,
}

/// Where an [`IcmpBxm`] keeps its ICMP extension, if its kind of message can have one.
pub(crate) trait ExtSlot {
    /// The extension's tail, if the message has one.
    fn tail(&self) -> Option<&IcmpExtTail>;
}

/// The extension of a message that never has one (replies): no room, no test.
pub(crate) struct NoExt;

impl ExtSlot for NoExt {
    #[inline(always)]
    fn tail(&self) -> Option<&IcmpExtTail> {
        None
    }
}

impl ExtSlot for Option<IcmpExtTail> {
    #[inline(always)]
    fn tail(&self) -> Option<&IcmpExtTail> {
        self.as_ref()
    }
}

impl<K: SkBuffKind, X: ExtSlot> IcmpBxm<'_, K, X> {
    /// Appends the payload's bytes from `offset` to `to`, filling it, and returns their
    /// checksum (C's `skb_copy_and_csum_bits` from `icmp_param->skb`, which is the extended
    /// clone of the datagram when there is an extension). `None` if they are not all in the
    /// payload.
    fn copy_and_csum(&self, offset: usize, to: &mut FragBuf<'_>) -> Option<Wsum> {
        let from = self.offset + i32::try_from(offset).ok()?;
        let Some(ext) = self.ext.tail() else {
            return to
                .put_copy_and_csum(self.skb.as_skb(), from, to.remaining())
                .ok();
        };
        if offset + to.len() > ext.len() {
            return None;
        }
        // The part quoted from the datagram, then the tail's bytes.
        let from_skb = ext.quoted().saturating_sub(offset).min(to.len());
        let mut sum = Wsum::ZERO;
        if from_skb > 0 {
            sum = to
                .put_copy_and_csum(self.skb.as_skb(), from, from_skb)
                .ok()?;
        }
        // The tail's bytes, through a small buffer.
        let mut chunk = [0u8; 64];
        let mut at = offset + from_skb;
        while to.remaining() > 0 {
            let n = to.remaining().min(chunk.len());
            for (i, b) in chunk[..n].iter_mut().enumerate() {
                *b = ext.byte(at + i);
            }
            to.put(&chunk[..n]).ok()?;
            at += n;
        }
        let tail = to.written().get(from_skb..)?;
        Some(sum.block_add(Wsum::ZERO.partial(tail), from_skb))
    }
}

/// `icmp_glue_bits`: copies payload bytes into the packet being built and adds their checksum
/// to the fragment's sum. Errors also get the conntrack entry of the packet they are about.
impl<K: SkBuffKind, X: ExtSlot> GetFrag for IcmpBxm<'_, K, X> {
    fn getfrag(
        &self,
        to: &mut FragBuf<'_>,
        offset: usize,
        odd: usize,
        mut skb: Pin<&mut FragSkb>,
    ) -> Result {
        // C: BUG() if the range is not in the packet (`data_len` was computed from it).
        let csum = self.copy_and_csum(offset, to).ok_or(EFAULT)?;
        let sum = skb.csum().block_add(csum, odd);
        skb.as_mut().set_csum(sum);
        if rcv::icmp_pointers_error(self.data.icmph.type_) {
            skb.nf_ct_attach(self.skb.as_skb());
        }
        Ok(())
    }
}

/// `icmp_push_reply`: queues the message on the locked control socket, completes the ICMP
/// checksum over header and payload, and sends it. If queueing fails, counts `OutErrors` and
/// drops what was queued.
// Inlined into each kind of message's one caller (`icmp_reply`, `__icmp_send`), with the
// control socket's methods it calls: one function, without a call's moves and frame.
#[inline(always)]
pub(crate) fn icmp_push_reply<K: SkBuffKind, X: ExtSlot>(
    icmp: &Icmp,
    sk: &mut XmitSock<'_>,
    param: &IcmpBxm<'_, K, X>,
    fl4: &mut Flowi4,
    ipc: &mut IpcmCookie<'_>,
    rt: Route,
) {
    let head_len = param.head_len.len();
    let length = param.data_len as usize + head_len;
    if sk
        .append_data(fl4, param, length, head_len, ipc, rt)
        .is_err()
    {
        // `append_data` dropped what was queued (C's `ip_flush_pending_frames()` here).
        stats::icmp_inc_stats(icmp, sk.net(), IcmpMib::OutErrors);
        return;
    }
    // The header, its checksum 0 in `param`, copied and summed as C does it (see
    // `write_transport_header_csum`), then the checksum over header and payload.
    let Some(head) = param.data.as_bytes().get(..head_len) else {
        sk.flush_pending_frames();
        return;
    };
    let Some(mut skb) = sk.first_pending() else {
        return;
    };
    let queued = skb.queue_csum();
    let written = skb.write_transport_header_csum(head);
    let Ok((head_sum, icmph)) = written else {
        // `ip_append_data` reserved `head_len` bytes there, but moves their end into the next
        // fragment when the first is shorter (an MTU smaller than IPsec's headers and 8
        // bytes). C then sends that end unwritten; nothing is sent here.
        sk.flush_pending_frames();
        return;
    };
    let checksum = offset_of!(IcmpHdr, checksum);
    let Some(field) = icmph.get_mut(checksum..checksum + 2) else {
        sk.flush_pending_frames();
        return;
    };
    field.copy_from_slice(&(head_sum + queued).fold().to_bytes());
    skb.set_checksum_none();
    // Errors of the send (no buffer, qdisc drop) are counted by the IP layer, as for C.
    // `__ip_make_skb` counts the message with `icmp_out_count` (ours with `mirror=1`).
    let _ = sk.push_pending_frames(fl4);
}

/// `icmp_reply`: answers a request with a message, to its source, from the address it was
/// sent to, with its IP options echoed, if the rate limits allow. The message's payload is
/// copied from the request (`param.skb`), whose route, options and device decide where the
/// reply goes.
pub(crate) fn icmp_reply(
    icmp: &Icmp,
    param: &mut IcmpBxm<'_, Ipv4RxSkBuff, NoExt>,
    rcu: &rcu::Guard,
) {
    let skb = param.skb;
    let net = skb.dst_dev_rcu(rcu).net(rcu);
    let iph = skb.ip_hdr();
    let mark = net.ip4_reply_mark(skb.mark());
    let (type_, code) = (
        i32::from(param.data.icmph.type_),
        i32::from(param.data.icmph.code),
    );

    if param.replyopts.echo(net, skb).is_err() {
        return;
    }

    // Needed by both icmpv4_global_allow and the xmit lock. (Not available with interrupts
    // disabled, where C's local_bh_enable() would turn them on.)
    let Some(bh) = bh::disable() else {
        return;
    };

    let Some(apply_ratelimit) = ratelimit::icmpv4_global_allow(icmp, net, type_, code) else {
        return;
    };
    let Some(mut sk) = icmp.socks.lock(net, &bh) else {
        return;
    };
    'out_unlock: {
        param.data.icmph.checksum = [0; 2];
        let param = &*param;

        let mut ipc = IpcmCookie::new();
        ipc.set_tos(iph.tos());
        ipc.set_mark(mark);
        let mut daddr = iph.saddr();
        ipc.set_addr(daddr);
        let saddr = fib_compute_spec_dst(skb, rcu);

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
        fl4.set_dscp(iph.tos());
        fl4.set_proto(IPPROTO_ICMP);
        fl4.set_oif(skb.dev(rcu).map_or(0, |dev| dev.l3mdev_master_ifindex()));
        fl4.classify_from(skb);
        let Ok(rt) = Route::output_key(net, &mut fl4) else {
            break 'out_unlock;
        };
        if !ratelimit::icmpv4_xrlim_allow(icmp, net, &rt, &fl4, apply_ratelimit, rcu) {
            break 'out_unlock;
        }
        icmp_push_reply(icmp, &mut sk, param, &mut fl4, &mut ipc, rt);
    }
    // C's `out_unlock`: every path from the lock on ends here, so that the unlock is compiled
    // in line (`XmitSock::unlock`, not the drop).
    sk.unlock();
}
