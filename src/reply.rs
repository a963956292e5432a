// SPDX-License-Identifier: GPL-2.0

//! Building and sending ICMP messages (icmp.c: `struct icmp_bxm`, `icmp_glue_bits`,
//! `icmp_push_reply`, `icmp_reply`).
//!
//! A message is an ICMP header (plus, for timestamps, three timestamps) that we build, and a
//! payload copied from a received packet: the request itself for echo replies. C's control
//! socket queues both with `ip_append_data`, completes the checksum over the queue and sends
//! the packet with `ip_push_pending_frames`. A message without IP options that fits in one
//! buffer (every error does) is built here in a new buffer directly, allocated and sent as
//! those functions would ([`XmitSock::new_message`]); the others still go through them.
//!
//! An echo reply differs from its request only in the IP header, the ICMP type and the
//! checksum, so where the control socket would send the copy as is (no IP options, no
//! fragmentation, no IPsec, ...), the request's own buffer goes back instead, rewritten: no
//! allocation, no copy, no checksum over the data. The bytes on the wire are the same.

use kernel::{
    net::{
        checksum::{Sum16, Wsum},
        ipv4::{
            icmp::IcmpMib,
            route::{Flowi4, Route},
            xmit::{
                fib_compute_spec_dst, FragSkb, GetFrag, IpOptionsData, IpcmCookie, NewMessage,
                Reused, XmitSock,
            },
            IcmpHdr, Ipv4RxSkBuff, IPPROTO_ICMP,
        },
        skb::{OwnedSkBuff, SkBuffKind},
        Be16, Be32,
    },
    prelude::*,
    sync::{bh, rcu},
};

use crate::{ext::IcmpExtTail, ratelimit, rcv, stats, Icmp};

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
    ///
    /// Element by element: `copy_from_slice` into subslices is a call out of line into core
    /// and `memcpy`, on every message's path.
    #[inline]
    fn to_bytes(self) -> [u8; 20] {
        let h = self.icmph.to_bytes();
        let [t0, t1, t2] = self.times.map(Be32::to_bytes);
        [
            h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], t0[0], t0[1], t0[2], t0[3], t1[0],
            t1[1], t1[2], t1[3], t2[0], t2[1], t2[2], t2[3],
        ]
    }
}

/// `struct icmp_bxm`: a message being built, and where its payload comes from.
///
/// `K` is what the packet is known to be: a received IPv4 packet for a reply, whose route,
/// options and device decide where the reply goes ([`icmp_reply`] reads them from `skb`, as C
/// reads `icmp_param->skb`); an IPv4 packet for an error ([`crate::send`]).
pub(crate) struct IcmpBxm<'a, K: SkBuffKind> {
    /// The packet the payload is copied from.
    pub(crate) skb: &'a K,
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
    /// For an error with ICMP extensions: the payload is `skb`'s first `ext.quoted()` bytes
    /// from `offset`, then the tail (`data_len` covers both).
    pub(crate) ext: Option<IcmpExtTail>,
}

impl<K: SkBuffKind> IcmpBxm<'_, K> {
    /// Copies the payload's bytes from `offset` into `to` and returns their checksum (C's
    /// `skb_copy_and_csum_bits` from `icmp_param->skb`, which is the extended clone of the
    /// datagram when there is an extension). `None` if they are not all in the payload.
    fn copy_and_csum(&self, offset: usize, to: &mut [u8]) -> Option<Wsum> {
        let Some(ext) = &self.ext else {
            return self
                .skb
                .as_skb()
                .copy_and_csum_bits_into(self.offset + i32::try_from(offset).ok()?, to);
        };
        if offset + to.len() > ext.len() {
            return None;
        }
        // The part quoted from the datagram, then the tail's bytes.
        let from_skb = ext.quoted().saturating_sub(offset).min(to.len());
        let (head, rest) = to.split_at_mut(from_skb);
        let mut sum = Wsum::ZERO;
        if !head.is_empty() {
            sum = self
                .skb
                .as_skb()
                .copy_and_csum_bits_into(self.offset + i32::try_from(offset).ok()?, head)?;
        }
        for (i, b) in rest.iter_mut().enumerate() {
            *b = ext.byte(offset + from_skb + i);
        }
        Some(sum.block_add(Wsum::ZERO.partial(rest), from_skb))
    }
}

/// `icmp_glue_bits`: copies payload bytes into the packet being built and adds their checksum
/// to the fragment's sum. Errors also get the conntrack entry of the packet they are about.
impl<K: SkBuffKind> GetFrag for IcmpBxm<'_, K> {
    fn getfrag(&self, to: &mut [u8], offset: usize, odd: usize, skb: &mut FragSkb) -> Result {
        // C: BUG() if the range is not in the packet (`data_len` was computed from it).
        let csum = self.copy_and_csum(offset, to).ok_or(EFAULT)?;
        skb.set_csum(skb.csum().block_add(csum, odd));
        if rcv::icmp_pointers_error(self.data.icmph.type_) {
            skb.nf_ct_attach(self.skb.as_skb());
        }
        Ok(())
    }
}

/// `icmp_push_reply`: queues the message on the locked control socket, completes the ICMP
/// checksum over header and payload, and sends it. If queueing fails, counts `OutErrors` and
/// drops what was queued. Where [`XmitSock::new_message`] can build the same packet in one
/// new buffer, it does that instead ([`icmp_build_message`]).
pub(crate) fn icmp_push_reply<K: SkBuffKind>(
    icmp: &Icmp,
    sk: &mut XmitSock<'_>,
    param: &IcmpBxm<'_, K>,
    fl4: &mut Flowi4,
    ipc: &mut IpcmCookie<'_>,
    rt: Route,
) {
    let net = sk.net();
    let length = param.data_len + param.head_len;
    if param.replyopts.optlen() == 0 {
        let Ok(new) = sk.new_message(length, &rt) else {
            // No memory for the buffer: `ip_append_data` failed (it counted `OutDiscards`).
            stats::icmp_inc_stats(icmp, net, IcmpMib::OutErrors);
            return;
        };
        if let Some(mut m) = new {
            if icmp_build_message(&mut m, param).is_err() {
                // As when `icmp_glue_bits` fails in `ip_append_data`.
                stats::icmp_inc_stats(icmp, net, IcmpMib::OutErrors);
                return;
            }
            // `__ip_make_skb` would count it by `fl4_icmp_type` (a raw socket's flow is never
            // `FLOWI_FLAG_KNOWN_NH` here): the error's type, or 0 for replies, whose flow
            // nothing gave a type.
            stats::icmp_out_count(icmp, net, fl4.icmp_type());
            // Errors of the send are counted by the IP layer, as for C.
            let _ = sk.push_message(m, fl4, ipc, rt);
            return;
        }
    }
    if sk
        .append_data(fl4, param, length, param.head_len, ipc, rt)
        .is_err()
    {
        stats::icmp_inc_stats(icmp, net, IcmpMib::OutErrors);
        sk.flush_pending_frames();
        return;
    }
    let queued = sk.pending_csum();
    // The header, its checksum 0 in `param`, copied and summed as C does it (see
    // `write_transport_header_csum`), then the checksum over header and payload.
    let head = param.data.to_bytes();
    let icmph = &head[..param.head_len];
    let Some(mut skb) = sk.first_pending() else {
        return;
    };
    let Ok(head_sum) = skb.write_transport_header_csum(icmph) else {
        // `ip_append_data` reserved `head_len` bytes there; this cannot happen.
        sk.flush_pending_frames();
        return;
    };
    let [c0, c1] = (head_sum + queued).fold().to_bytes();
    if skb
        .write_transport_header(&[icmph[0], icmph[1], c0, c1])
        .is_err()
    {
        sk.flush_pending_frames();
        return;
    }
    skb.set_checksum_none();
    // Errors of the send (no buffer, qdisc drop) are counted by the IP layer, as for C.
    // `__ip_make_skb` counts the message with `icmp_out_count` (ours, live-patched).
    let _ = sk.push_pending_frames(fl4);
}

/// The message of [`icmp_push_reply`] built in one new buffer, without options (see
/// [`XmitSock::new_message`]): the bytes and the checksum `ip_append_data`, `icmp_glue_bits`
/// and `icmp_push_reply` give it. The header is copied and summed first, then the payload,
/// whose sum `icmp_glue_bits` would keep in `skb->csum` (only if there is payload; so is the
/// conntrack entry attached); the header's checksum is then the fold of both.
fn icmp_build_message<K: SkBuffKind>(m: &mut NewMessage, param: &IcmpBxm<'_, K>) -> Result {
    let skb = param.skb.as_skb();
    let head = param.data.to_bytes();
    let icmph = &head[..param.head_len];
    let head_sum = m.put_csum(icmph)?;
    let mut data_sum = Wsum::ZERO;
    if let Some(ext) = &param.ext {
        // The extended datagram: its first bytes, zeros, the extension structure.
        let quoted = ext.quoted();
        data_sum = m.put_copy_and_csum(skb, param.offset, quoted)?;
        m.put_csum(&[0; 128][..ext.padding()])?;
        data_sum = data_sum.block_add(m.put_csum(ext.ext())?, quoted + ext.padding());
        m.nf_ct_attach(skb);
    } else if param.data_len > 0 {
        data_sum = data_sum.block_add(m.put_copy_and_csum(skb, param.offset, param.data_len)?, 0);
        if rcv::icmp_pointers_error(param.data.icmph.type_) {
            m.nf_ct_attach(skb);
        }
    }
    let [c0, c1] = (head_sum + data_sum).fold().to_bytes();
    m.write_transport_header(&[icmph[0], icmph[1], c0, c1])
}

/// An echo request that the caller owns and hands to [`icmp_reply`], which sends it back as
/// the reply if it can, else copies it; either way it is consumed (`consume_skb`), as
/// `icmp_rcv` consumes the request after `icmp_echo`.
pub(crate) struct Request(Option<OwnedSkBuff<Ipv4RxSkBuff>>);

impl Request {
    pub(crate) fn new(skb: OwnedSkBuff<Ipv4RxSkBuff>) -> Self {
        Self(Some(skb))
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(skb) = self.0.take() {
            skb.consume();
        }
    }
}

/// What [`icmp_reply`] sends.
pub(crate) enum Reply<'r, 'a> {
    /// A new message: `data` (headers), then `data_len` bytes copied from the request
    /// (`skb`, whose route, options and device decide where the reply goes).
    Copy(&'r mut IcmpBxm<'a, Ipv4RxSkBuff>),
    /// An echo request without IP options, turned into its reply in its own buffer: same
    /// identifier, sequence number and data; only the type (to `icmph.type_`) and the
    /// checksum change.
    InPlace(Request, IcmpHdr),
}

/// Turns the echo request in `r` into its reply: the ICMP type, and the checksum updated
/// for it (`csum_replace2`, RFC 1624), so that the payload is neither copied nor summed.
///
/// The update gives the checksum `icmp_push_reply` computes from scratch, bit for bit,
/// except for a reply whose 16-bit words add up to zero (all zeros, or summing to 0xffff):
/// the update gives 0 there, and C gives 0 or 0xffff depending on where the kernel's
/// `csum_partial_copy_nocheck` starts its sum (from `~0` on x86-64, where a reply of zeros
/// only goes out with a checksum its receiver rejects; from 0 with the generic code of a
/// KASAN kernel). Such a reply is left to the copy, which sums as C does: false, and nothing
/// changed, as when the header is not there.
// Always inline (LLVM's threshold declines): on the echo path, and under TCG a call and its
// return are two block entries QEMU cannot chain.
#[inline(always)]
fn icmp_echo_in_place(r: &mut Reused, icmph: &IcmpHdr) -> bool {
    // The header as a fixed-size array: plain loads and stores, where `copy_from_slice` on
    // slices calls out of line.
    let Some(hdr) = r
        .transport_header_mut(IcmpHdr::LEN)
        .and_then(|hdr| <&mut [u8; IcmpHdr::LEN]>::try_from(hdr).ok())
    else {
        return false;
    };
    let mut csum = Sum16::from_bytes([hdr[2], hdr[3]]);
    csum.replace2(
        Be16::from_bytes([hdr[0], hdr[1]]),
        Be16::from_bytes([icmph.type_, icmph.code]),
    );
    if csum.to_raw() == 0 {
        return false;
    }
    [hdr[0], hdr[1]] = [icmph.type_, icmph.code];
    [hdr[2], hdr[3]] = csum.to_bytes();
    true
}

/// `icmp_reply`: answers a request with a message, to its source, from the address it was
/// sent to, with its IP options echoed, if the rate limits allow.
///
/// An echo reply goes back in the request's own buffer ([`Reply::InPlace`]) when the control
/// socket can send it exactly as it would send the copy ([`XmitSock::reuse`] says when); else
/// it is copied, as C always does.
pub(crate) fn icmp_reply(icmp: &Icmp, reply: Reply<'_, '_>, rcu: &rcu::Guard) {
    let (mut param, mut request, icmph) = match reply {
        Reply::Copy(param) => {
            let icmph = param.data.icmph;
            (Some(param), Request(None), icmph)
        }
        Reply::InPlace(request, icmph) => (None, request, icmph),
    };
    let Some(skb) = param.as_ref().map(|p| p.skb).or(request.0.as_deref()) else {
        return;
    };
    let Some(net) = skb
        .rtable(rcu)
        .and_then(|rt| rt.dev(rcu))
        .map(|dev| dev.net(rcu))
    else {
        return;
    };
    let Some(iph) = skb.ip_hdr() else {
        return;
    };
    let mark = net.ip4_reply_mark(skb.mark());
    let (type_, code) = (i32::from(icmph.type_), i32::from(icmph.code));

    // An in-place reply has no options to echo (`icmp_echo` checked): for it,
    // `__ip_options_echo` would only clear the options and succeed.
    if let Some(p) = param.as_mut() {
        if p.replyopts.echo(net, skb).is_err() {
            return;
        }
    }

    // Needed by both icmpv4_global_allow and the xmit lock.
    let bh = bh::disable();

    let Some(apply_ratelimit) = ratelimit::icmpv4_global_allow(icmp, net, type_, code) else {
        return;
    };
    let Some(mut sk) = icmp.socks.lock(net, &bh) else {
        return;
    };
    if let Some(p) = param.as_mut() {
        p.data.icmph.checksum = [0; 2];
    }
    let param = param.map(|p| &*p);
    let opts = param.map(|p| &p.replyopts).filter(|o| o.optlen() != 0);

    let mut ipc = IpcmCookie::new();
    ipc.set_tos(iph.tos());
    ipc.set_mark(mark);
    let mut daddr = iph.saddr();
    ipc.set_addr(daddr);
    let Some(saddr) = fib_compute_spec_dst(skb, rcu) else {
        return;
    };

    if let Some(opts) = opts {
        ipc.set_opt(opts);
        if opts.srr() != 0 {
            daddr = opts.faddr();
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
        return;
    };
    if !ratelimit::icmpv4_xrlim_allow(icmp, net, &rt, &fl4, apply_ratelimit, rcu) {
        return;
    }
    if let Some(param) = param {
        icmp_push_reply(icmp, &mut sk, param, &mut fl4, &mut ipc, rt);
        return;
    }
    let Some(skb) = request.0.take() else {
        return;
    };
    match sk.reuse(skb, &rt) {
        Ok(mut r) => {
            if icmp_echo_in_place(&mut r, &icmph) {
                // `__ip_make_skb` would count it, by `fl4_icmp_type`, which nothing set.
                stats::icmp_out_count(icmp, net, fl4.icmp_type());
                // Errors of the send are counted by the IP layer, as for C.
                let _ = sk.push_reused(r, &fl4, &ipc, rt);
                return;
            }
            request = Request::new(r.into_skb());
        }
        Err(skb) => request = Request::new(skb),
    }
    // Copy it after all.
    let Some(skb) = request.0.as_deref() else {
        return;
    };
    let mut data = IcmpBxmData {
        icmph,
        times: [Be32::ZERO; 3],
    };
    data.icmph.checksum = [0; 2];
    let param = IcmpBxm {
        skb,
        offset: 0,
        data_len: skb.len() as usize,
        data,
        head_len: IcmpHdr::LEN,
        replyopts: IpOptionsData::new(),
        ext: None,
    };
    icmp_push_reply(icmp, &mut sk, &param, &mut fl4, &mut ipc, rt);
}
