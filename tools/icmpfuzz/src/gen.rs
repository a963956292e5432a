// SPDX-License-Identifier: GPL-2.0
//! The triggers: trigger `i` of a seed is one ICMP message (or, for a few, a datagram
//! that makes the dut send an ICMP error), wrapped in IPv4 and Ethernet, sometimes broken on
//! purpose, sometimes cut into fragments; one or more Ethernet frames in all.
//!
//! Each trigger also says whether it reaches the dut's `icmp_rcv` (`to_icmp`): a valid
//! outer header, addressed to the dut (its address, the subnet or limited broadcast, or the
//! all-hosts group), from a source the dut accepts, options the IP layer accepts
//! ([`options_verdict`]), and whole (its fragments reassemble). The sum over a run is what
//! IcmpInMsgs must count.

use crate::rng::Rng;
use crate::wire::{break_checksum, options_verdict, put_checksum, Ipv4, OptVerdict, IP_DF, IP_MF};

// The topology of tests/fuzz.sh: peer veth0 10.0.1.1 <-> dut veth0 10.0.1.2, /24.
pub const PEER: [u8; 4] = [10, 0, 1, 1];
pub const DUT: [u8; 4] = [10, 0, 1, 2];
/// On the link, unused: the dut's static neighbour entry sends it to the peer's MAC.
pub const GHOST: [u8; 4] = [10, 0, 1, 77];
/// Not on the link and not routed by the dut: it accepts the packet (rp_filter 0) but
/// cannot answer.
pub const OFFNET: [u8; 4] = [198, 51, 100, 7];
const SUBNET_BCAST: [u8; 4] = [10, 0, 1, 255];
const LIMITED_BCAST: [u8; 4] = [255, 255, 255, 255];
/// Joined by every interface with IPv4 multicast.
const ALL_HOSTS: [u8; 4] = [224, 0, 0, 1];
/// A group the dut has not joined.
const MDNS: [u8; 4] = [224, 0, 0, 251];
const LOOPBACK: [u8; 4] = [127, 0, 0, 1];
const BCAST_MAC: [u8; 6] = [0xff; 6];
/// The port of the dut's UDP socket with IP_RECVERR (`--errqueue`): errors quote datagrams
/// from it now and then.
pub const UDP_PORT: u16 = 33000;

pub struct Macs {
    pub peer: [u8; 6],
    pub dut: [u8; 6],
}

/// The kinds of trigger, for the statistics and for `--dump`.
#[derive(Clone, Copy)]
pub enum Kind {
    Echo,
    Timestamp,
    Probe,
    Error,
    Discard,
    RandomType,
    Truncated,
    OtherProto,
    BadOuter,
}

pub const KINDS: [(Kind, &str, u32); 9] = [
    (Kind::Echo, "echo", 18),
    (Kind::Timestamp, "timestamp", 8),
    (Kind::Probe, "probe", 14),
    (Kind::Error, "error", 26),
    (Kind::Discard, "discard", 6),
    (Kind::RandomType, "random_type", 10),
    (Kind::Truncated, "truncated", 4),
    (Kind::OtherProto, "other_proto", 6),
    (Kind::BadOuter, "bad_outer", 4),
];

pub struct Trigger {
    pub frames: Vec<Vec<u8>>,
    pub kind: usize,
    pub to_icmp: bool,
    /// What was chosen, for `--dump`.
    pub notes: Vec<String>,
}

/// Trigger `index` of `seed`.
pub fn trigger(seed: u64, index: u64, macs: &Macs) -> Trigger {
    let mut r = Rng::for_trigger(seed, index);
    let weights: Vec<u32> = KINDS.iter().map(|k| k.2).collect();
    let kind = r.weighted(&weights);
    let mut notes = vec![format!("kind {}", KINDS[kind].1)];
    // Echo identifiers and sequence numbers, and every IP ID, come from the index, so that
    // each packet the dut sends back names its trigger (see wire::mask).
    let id = index as u16;
    let (proto, mut msg) = match KINDS[kind].0 {
        Kind::Echo => (1, echo(&mut r, index, &mut notes)),
        Kind::Timestamp => (1, timestamp(&mut r, index, &mut notes)),
        Kind::Probe => (1, probe(&mut r, index, &mut notes)),
        Kind::Error => (1, error(&mut r, &mut notes)),
        Kind::Discard => (1, discard(&mut r, &mut notes)),
        Kind::RandomType => (1, random_type(&mut r, &mut notes)),
        Kind::Truncated => (1, truncated(&mut r, &mut notes)),
        Kind::OtherProto => other_proto(&mut r, &mut notes),
        Kind::BadOuter => {
            let mut m = echo(&mut r, index, &mut notes);
            // One frame, whatever echo chose.
            m.truncate(1400);
            (1, m)
        }
    };
    // A wrong ICMP checksum on any message (truncated and random ones decide themselves).
    if proto == 1
        && msg.len() >= 4
        && !matches!(KINDS[kind].0, Kind::Truncated | Kind::RandomType)
        && r.chance(7)
    {
        break_checksum(&mut msg, 2, r.u16());
        notes.push("bad ICMP checksum".into());
    }

    let mut ip = Ipv4::new(proto, PEER, DUT, id);
    ip.src = match r.weighted(&[84, 8, 8]) {
        0 => PEER,
        1 => GHOST,
        _ => OFFNET,
    };
    let (dst, local) = match r.weighted(&[80, 6, 4, 6, 2, 1, 1]) {
        0 => (DUT, true),
        1 => (SUBNET_BCAST, true),
        2 => (LIMITED_BCAST, true),
        3 => (ALL_HOSTS, true),
        4 => (MDNS, false),
        // Not ours: the dut does not forward.
        5 => (PEER, false),
        // A martian destination.
        _ => (LOOPBACK, false),
    };
    ip.dst = dst;
    if r.chance(10) {
        ip.tos = r.u8();
    }
    ip.ttl = if r.chance(10) { r.u8() } else { 64 };
    let mut dst_mac = match dst {
        SUBNET_BCAST | LIMITED_BCAST => BCAST_MAC,
        [a, b, c, d] if a >> 4 == 14 => [0x01, 0x00, 0x5e, b & 0x7f, c, d],
        _ => macs.dut,
    };
    // The IP layer does not care which kind of link-layer address brought the packet
    // (drop_unicast_in_l2_multicast is 0): mix them up now and then.
    if r.chance(3) {
        dst_mac = r.pick(&[macs.dut, BCAST_MAC, [0x01, 0x00, 0x5e, 0, 0, 1]]);
    }

    // Outer IP options.
    let mut opt_verdict = OptVerdict::Ok;
    if r.chance(12) {
        ip.options = outer_options(&mut r);
        // The header carries them padded with end-of-list bytes to 32 bits; the kernel
        // walks the padded bytes.
        ip.options.resize(ip.options.len().div_ceil(4) * 4, 0);
        opt_verdict = options_verdict(&ip.options);
        notes.push(format!(
            "outer options {} ({:?})",
            hex(&ip.options),
            opt_verdict
        ));
    }

    let hl = 20 + ip.options.len().div_ceil(4) * 4;
    let too_big = hl + msg.len() > 1500;
    let mut reaches_ip = true;
    let frames: Vec<Vec<u8>>;
    if matches!(KINDS[kind].0, Kind::BadOuter) {
        let (frame, note) = bad_outer(&mut r, &ip, &msg, macs);
        notes.push(note);
        frames = vec![frame];
        reaches_ip = false;
    } else if too_big || (msg.len() >= 16 && r.chance(6)) {
        // Fragments carry no options: each fragment's options would be checked on its own.
        if !ip.options.is_empty() {
            notes.push("outer options left out: fragmented".into());
        }
        ip.options.clear();
        opt_verdict = OptVerdict::Ok;
        let (packets, whole, note) = fragments(&mut r, &ip, &msg);
        notes.push(note);
        reaches_ip = whole;
        frames = packets
            .iter()
            .map(|p| ether(dst_mac, macs.peer, p))
            .collect();
    } else {
        if r.chance(30) {
            ip.frag = IP_DF;
        } else if r.chance(1) {
            // The reserved ("evil") bit.
            ip.frag = 0x8000;
        }
        let mut p = ip.build(&msg);
        // Bytes after the datagram (tot_len < frame): the IP layer trims them.
        let n = r.range(1, 30);
        if r.chance(3) && p.len() + n <= 1500 {
            p.extend(r.bytes(n));
            notes.push(format!("{n} bytes of trailer"));
        }
        frames = vec![ether(dst_mac, macs.peer, &p)];
    }
    let to_icmp = proto == 1 && local && reaches_ip && opt_verdict == OptVerdict::Ok;
    notes.push(format!(
        "{} -> {} proto {} len {}{}",
        dotted(ip.src),
        dotted(dst),
        proto,
        msg.len(),
        if to_icmp { ", reaches icmp_rcv" } else { "" }
    ));
    Trigger {
        frames,
        kind,
        to_icmp,
        notes,
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn dotted(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

fn ether(dst: [u8; 6], src: [u8; 6], ip: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + ip.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(ip);
    f
}

/// An ICMP message: type, code, the 4 bytes after the checksum, body; checksum computed.
fn icmp(ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(body);
    put_checksum(&mut m, 2);
    m
}

/// Payload lengths: mostly small, some up to a full frame, a few that need fragments.
fn payload_len(r: &mut Rng) -> usize {
    match r.weighted(&[50, 35, 3, 12]) {
        0 => r.range(0, 64),
        1 => r.range(65, 1472),
        2 => r.range(1473, 6000),
        _ => r.pick(&[0, 1, 4, 8, 12, 56, 1464, 1472]),
    }
}

fn pattern_or_random(r: &mut Rng, n: usize) -> Vec<u8> {
    if r.chance(50) {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    } else {
        r.bytes(n)
    }
}

fn echo(r: &mut Rng, index: u64, notes: &mut Vec<String>) -> Vec<u8> {
    let code = if r.chance(90) { 0 } else { r.u8() };
    let n = payload_len(r);
    let id = ((index >> 16) as u16).to_be_bytes();
    let seq = (index as u16).to_be_bytes();
    let body = pattern_or_random(r, n);
    notes.push(format!("echo request code {code}, {n} bytes of data"));
    icmp(8, code, [id[0], id[1], seq[0], seq[1]], &body)
}

fn timestamp(r: &mut Rng, index: u64, notes: &mut Vec<String>) -> Vec<u8> {
    let code = if r.chance(90) { 0 } else { r.u8() };
    // 12 bytes of originate/receive/transmit timestamps, or fewer (icmp_timestamp needs the
    // first 4), or more.
    let n = match r.weighted(&[80, 12, 8]) {
        0 => 12,
        1 => r.range(0, 11),
        _ => r.range(13, 40),
    };
    let mut body = r.bytes(n);
    if n >= 12 && r.chance(50) {
        body[4..12].fill(0);
    }
    let id = ((index >> 16) as u16).to_be_bytes();
    let seq = (index as u16).to_be_bytes();
    notes.push(format!("timestamp request code {code}, {n} bytes of data"));
    icmp(13, code, [id[0], id[1], seq[0], seq[1]], &body)
}

/// RFC 8335 extended echo request (PROBE): an extension header, then an Interface
/// Identification Object naming an interface by name, index or address; lengths right and
/// wrong, objects cut short, the L-bit set or not.
fn probe(r: &mut Rng, index: u64, notes: &mut Vec<String>) -> Vec<u8> {
    let code = if r.chance(90) { 0 } else { r.u8() };
    let id = (index as u16).to_be_bytes();
    let seq = r.u8();
    let lbit = match r.weighted(&[85, 10, 5]) {
        0 => 1,
        1 => 0,
        _ => r.u8(),
    };
    let ctype = match r.weighted(&[30, 25, 35, 10]) {
        0 => 1,
        1 => 2,
        2 => 3,
        _ => r.u8(),
    };
    let ident: Vec<u8> = match ctype {
        1 => {
            let mut name: Vec<u8> = match r.weighted(&[25, 25, 15, 10, 25]) {
                0 => b"lo".to_vec(),
                1 => b"veth0".to_vec(),
                2 => b"dummy0".to_vec(),
                3 => b"nosuchif".to_vec(),
                _ => {
                    let n = r.range(0, 20);
                    r.bytes(n)
                }
            };
            // RFC 8335 pads names with NULs to 32 bits; the kernel takes up to 15 bytes.
            if r.chance(50) {
                while name.len() % 4 != 0 {
                    name.push(0);
                }
            }
            name
        }
        2 => {
            let any = r.u32();
            let ifindex = r.pick(&[0u32, 1, 2, 3, 4, 99, any]);
            let mut b = ifindex.to_be_bytes().to_vec();
            if r.chance(15) {
                b.resize(r.range(0, 8), 0);
            }
            b
        }
        3 => {
            let (afi, addr): (u16, Vec<u8>) = match r.weighted(&[55, 30, 15]) {
                0 => (
                    1,
                    {
                        let any = [r.u8(), 1, 2, 3];
                        r.pick(&[DUT, PEER, LOOPBACK, [0, 0, 0, 0], any])
                    }
                    .to_vec(),
                ),
                1 => {
                    let mut a = [0u8; 16];
                    match r.below(3) {
                        0 => a[15] = 1,                          // ::1, on the dut's lo
                        1 => a[..2].copy_from_slice(&[0xfd, 0]), // fd00::..
                        _ => a.iter_mut().for_each(|b| *b = r.u8()),
                    }
                    if r.chance(50) {
                        a[15] = 2; // fd00::2
                    }
                    (2, a.to_vec())
                }
                _ => {
                    let n = r.range(0, 20);
                    (r.u16(), r.bytes(n))
                }
            };
            let addrlen = if r.chance(85) {
                addr.len() as u8
            } else {
                r.u8()
            };
            let mut b = afi.to_be_bytes().to_vec();
            b.push(addrlen);
            b.push(if r.chance(90) { 0 } else { r.u8() });
            b.extend(addr);
            if r.chance(10) {
                b.truncate(r.range(0, b.len()));
            }
            b
        }
        _ => {
            let n = r.range(0, 24);
            r.bytes(n)
        }
    };
    let class = if r.chance(92) { 3 } else { r.u8() };
    let objlen = match r.weighted(&[80, 10, 10]) {
        0 => (4 + ident.len()) as u16,
        1 => r.range(0, 8) as u16,
        _ => r.u16(),
    };
    // Extension header: version 2, then a checksum of the extension (0: none).
    let mut body = vec![0x20, 0, 0, 0];
    if r.chance(10) {
        body[0] = r.u8();
    }
    body.extend(objlen.to_be_bytes());
    body.push(class);
    body.push(ctype);
    body.extend(&ident);
    if r.chance(15) {
        let ext_csum = crate::wire::checksum(&body);
        body[2..4].copy_from_slice(&ext_csum.to_be_bytes());
    }
    match r.weighted(&[85, 10, 5]) {
        0 => {}
        1 => body.truncate(r.range(0, body.len())),
        _ => {
            let n = r.range(1, 16);
            body.extend(r.bytes(n));
        }
    }
    notes.push(format!(
        "PROBE code {code} L-byte {lbit} class {class} ctype {ctype} object length {objlen}, \
         body {}",
        hex(&body)
    ));
    icmp(42, code, [id[0], id[1], seq, lbit], &body)
}

/// Options for a quoted or outer header: well-formed ones (record route, timestamps in its
/// three forms, router alert, no-ops, unknown types), or random bytes, or a source route.
fn outer_options(r: &mut Rng) -> Vec<u8> {
    let mut o = Vec::new();
    match r.weighted(&[60, 30, 5, 5]) {
        0 => {
            let n = r.range(1, 3);
            for _ in 0..n {
                let room = 40 - o.len();
                if room < 4 {
                    break;
                }
                let opt = well_formed_option(r, room);
                o.extend(opt);
            }
        }
        1 => {
            let n = r.range(1, 40);
            o = r.bytes(n);
        }
        2 => {
            // Loose or strict source route: dropped by the dut (accept_source_route 0).
            let ty = r.pick(&[131u8, 137]);
            o.extend([ty, 7, 4]);
            o.extend(GHOST);
        }
        _ => {
            o = well_formed_option(r, 40);
            let n = r.range(1, 40 - o.len().min(39));
            o.extend(r.bytes(n));
        }
    }
    o.truncate(40);
    o
}

fn well_formed_option(r: &mut Rng, room: usize) -> Vec<u8> {
    match r.weighted(&[30, 35, 10, 10, 10, 5]) {
        0 => {
            // Record route with 1..9 slots, some filled, sometimes full.
            let slots = r.range(1, ((room - 3) / 4).clamp(1, 9));
            let filled = r.range(0, slots);
            let mut o = vec![7, (3 + 4 * slots) as u8, (4 + 4 * filled) as u8];
            for i in 0..slots {
                if i < filled {
                    o.extend(r.pick(&[PEER, GHOST, OFFNET]));
                } else {
                    o.extend([0; 4]);
                }
            }
            o
        }
        1 => {
            // Timestamps: only times (flag 0), address and time (1), prespecified (3); some
            // full, with the overflow counter at any value.
            let any = r.u8() & 15;
            let flag = r.pick(&[0u8, 1, 3, 0, 1, any]);
            let slot = if flag == 0 { 4 } else { 8 };
            let slots = r.range(1, ((room - 4) / slot).clamp(1, 9));
            let filled = r.range(0, slots);
            let overflow = if r.chance(70) { 0 } else { r.u8() >> 4 };
            let mut o = vec![
                68,
                (4 + slot * slots) as u8,
                (5 + slot * filled) as u8,
                (overflow << 4) | flag,
            ];
            for _ in 0..slots {
                if slot == 8 {
                    o.extend(r.pick(&[DUT, PEER, GHOST, [0; 4]]));
                }
                o.extend(r.u32().to_be_bytes());
            }
            o
        }
        2 => vec![148, 4, 0, if r.chance(80) { 0 } else { r.u8() }],
        3 => vec![1, 1, 1, 1],
        4 => {
            // Unknown types, security (130), stream id (136): accepted as they are.
            let any = r.u8() | 0x10;
            let ty = r.pick(&[130u8, 136, 0x9e, 0x5e, any]);
            let ty = if matches!(ty, 7 | 68 | 131 | 137 | 148 | 134) {
                130
            } else {
                ty
            };
            let len = r.range(2, room.min(12));
            let mut o = vec![ty, len as u8];
            o.extend(r.bytes(len - 2));
            o
        }
        _ => vec![0],
    }
}

/// Source, destination, protocol and payload of the header an ICMP error quotes, mostly as
/// if the dut had sent it to the peer, and the transport bytes behind it.
fn quoted(r: &mut Rng, notes: &mut Vec<String>) -> Vec<u8> {
    let proto = match r.weighted(&[25, 15, 30, 4, 4, 4, 3, 15]) {
        0 => 17,
        1 => 6,
        2 => 1,
        3 => 255,
        4 => 4,
        5 => 47,
        6 => 41,
        _ => r.u8(),
    };
    let src = match r.weighted(&[75, 10, 5, 10]) {
        0 => DUT,
        1 => PEER,
        2 => GHOST,
        _ => [r.u8(), r.u8(), r.u8(), r.u8()],
    };
    let dst = match r.weighted(&[35, 15, 10, 5, 3, 4, 3, 5, 20]) {
        0 => PEER,
        1 => GHOST,
        2 => OFFNET,
        3 => SUBNET_BCAST,
        4 => LIMITED_BCAST,
        5 => ALL_HOSTS,
        6 => [239, 1, 2, 3],
        7 => DUT,
        _ => [r.u8(), r.u8(), r.u8(), r.u8()],
    };
    let tlen = match r.weighted(&[8, 12, 25, 40, 15]) {
        0 => 0,
        1 => r.range(1, 7),
        2 => 8,
        3 => r.range(9, 64),
        _ => r.range(65, 548),
    };
    let mut t = r.bytes(tlen);
    match proto {
        17 if tlen >= 8 => {
            let (a, b) = (r.u16(), r.u16());
            t[0..2].copy_from_slice(&r.pick(&[UDP_PORT, UDP_PORT, UDP_PORT, 53, a]).to_be_bytes());
            t[2..4].copy_from_slice(&r.pick(&[33434u16, 9, 53, b]).to_be_bytes());
            t[4..6].copy_from_slice(&(tlen as u16).to_be_bytes());
        }
        1 if tlen >= 1 => {
            let any = r.u8();
            t[0] = r.pick(&[8u8, 0, 13, 42, 3, 11, 5, 12, any]);
            if tlen >= 2 && r.chance(70) {
                t[1] = 0;
            }
        }
        _ => {}
    }
    let mut ip = Ipv4::new(proto, src, dst, r.u16());
    ip.ttl = r.u8();
    if r.chance(15) {
        ip.options = outer_options(r);
    }
    match r.weighted(&[85, 5, 5, 5]) {
        0 => {}
        1 => ip.frag = IP_DF,
        2 => ip.frag = IP_MF,
        _ => ip.frag = r.u16(),
    }
    // Mangled headers: IHL below 5 or beyond what is quoted, another version, a total
    // length that does not match.
    match r.weighted(&[75, 7, 5, 3, 10]) {
        0 => {}
        1 => ip.ihl = Some(r.range(0, 4) as u8),
        2 => ip.ihl = Some(r.range(6, 15) as u8),
        3 => ip.version = r.u8() & 15,
        _ => ip.tot_len = Some(r.u16()),
    }
    if r.chance(5) {
        ip.bad_csum = true;
    }
    let mut q = ip.build(&t);
    // Quotes cut anywhere, even inside the header.
    if r.chance(6) {
        q.truncate(r.range(0, q.len()));
    }
    notes.push(format!(
        "quoting proto {proto} {} -> {}, {} bytes: {}",
        dotted(src),
        dotted(dst),
        q.len(),
        hex(&q[..q.len().min(48)])
    ));
    q
}

/// RFC 4884: the quoted datagram padded to 128 bytes, then an extension structure (version
/// 2, checksum right, wrong or absent) with objects of right and wrong lengths.
fn rfc4884(r: &mut Rng, mut q: Vec<u8>) -> (Vec<u8>, u8) {
    q.resize(q.len().max(128).div_ceil(4) * 4, 0);
    let words = (q.len() / 4) as u8;
    let mut ext = vec![if r.chance(85) { 0x20 } else { r.u8() }, 0, 0, 0];
    for _ in 0..r.range(0, 3) {
        let n = r.range(0, 12);
        let len = if r.chance(80) {
            (4 + n) as u16
        } else {
            r.u16()
        };
        ext.extend(len.to_be_bytes());
        ext.push(r.u8());
        ext.push(r.u8());
        ext.extend(r.bytes(n));
    }
    match r.weighted(&[60, 20, 20]) {
        0 => {
            let c = crate::wire::checksum(&ext);
            ext[2..4].copy_from_slice(&c.to_be_bytes());
        }
        1 => {}
        _ => ext[2..4].copy_from_slice(&r.u16().to_be_bytes()),
    }
    q.extend(ext);
    let len = if r.chance(85) { words } else { r.u8() };
    (q, len)
}

/// ICMP errors (destination unreachable in all codes, source quench, redirect, time
/// exceeded, parameter problem) quoting headers good and bad.
fn error(r: &mut Rng, notes: &mut Vec<String>) -> Vec<u8> {
    let ty = r.pick(&[3u8, 3, 3, 3, 3, 3, 11, 11, 11, 12, 12, 4, 5, 5, 5]);
    let code = if r.chance(90) {
        match ty {
            3 => r.range(0, 15) as u8,
            5 => r.range(0, 3) as u8,
            11 => r.range(0, 1) as u8,
            12 => r.range(0, 2) as u8,
            _ => 0,
        }
    } else {
        r.u8()
    };
    let mut q = quoted(r, notes);
    let mut rest = [0u8; 4];
    match ty {
        3 if code == 4 => {
            let any = r.u16();
            let mtu = r.pick(&[
                0, 67, 68, 100, 551, 552, 576, 1000, 1280, 1400, 1499, 1500, any,
            ]);
            rest[2..4].copy_from_slice(&mtu.to_be_bytes());
        }
        5 => {
            let any = r.u32().to_be_bytes();
            rest = r.pick(&[PEER, GHOST, DUT, OFFNET, [0; 4], any]);
        }
        12 => rest[0] = r.u8(),
        _ => {
            if r.chance(10) {
                rest = r.u32().to_be_bytes();
            }
        }
    }
    if matches!(ty, 3 | 11 | 12) && r.chance(12) {
        let (ext, len) = rfc4884(r, q);
        q = ext;
        rest[1] = len;
    }
    notes.push(format!("error type {ty} code {code} rest {}", hex(&rest)));
    icmp(ty, code, rest, &q)
}

/// Informational types the dut discards or hands to ping sockets (there are none): echo
/// reply, timestamp reply, information request/reply, address mask request/reply, the
/// obsolete and unassigned types below 19, extended echo reply.
fn discard(r: &mut Rng, notes: &mut Vec<String>) -> Vec<u8> {
    let ty = r.pick(&[0u8, 14, 15, 16, 17, 18, 6, 9, 10, 1, 2, 7, 43]);
    let code = if r.chance(85) { 0 } else { r.u8() };
    let n = if ty == 17 || ty == 18 {
        r.pick(&[4, 0, 8])
    } else {
        r.range(0, 64)
    };
    let body = r.bytes(n);
    notes.push(format!("type {ty} code {code}, {n} bytes"));
    icmp(ty, code, [r.u8(), r.u8(), r.u8(), r.u8()], &body)
}

fn random_type(r: &mut Rng, notes: &mut Vec<String>) -> Vec<u8> {
    let ty = r.u8();
    let code = r.u8();
    let n = r.range(0, 200);
    let rest = [r.u8(), r.u8(), r.u8(), r.u8()];
    let body = r.bytes(n);
    let mut m = icmp(ty, code, rest, &body);
    if r.chance(50) {
        break_checksum(&mut m, 2, r.u16());
    }
    notes.push(format!(
        "random type {ty} code {code}, {n} bytes after the header"
    ));
    m
}

/// Fewer than 8 bytes of ICMP: no complete header.
fn truncated(r: &mut Rng, notes: &mut Vec<String>) -> Vec<u8> {
    let n = r.range(0, 7);
    let mut m = r.bytes(n);
    if n >= 1 && r.chance(60) {
        m[0] = r.pick(&[8u8, 13, 42, 3, 0]);
    }
    // A checksum that verifies over what there is, half of the time.
    if n >= 4 && r.chance(50) {
        m[2..4].fill(0);
        put_checksum(&mut m, 2);
    }
    notes.push(format!("truncated ICMP: {}", hex(&m)));
    m
}

/// Not ICMP: a UDP datagram to a closed port (port unreachable) or an unknown protocol
/// (protocol unreachable), so that __icmp_send runs, with the options of the outer header
/// echoed.
fn other_proto(r: &mut Rng, notes: &mut Vec<String>) -> (u8, Vec<u8>) {
    if r.chance(70) {
        let n = r.range(0, 300);
        let mut u = vec![0u8; 8];
        u[0..2].copy_from_slice(&r.u16().to_be_bytes());
        let any = r.u16();
        u[2..4].copy_from_slice(&r.pick(&[9u16, 33434, 7, any]).to_be_bytes());
        u[4..6].copy_from_slice(&((8 + n) as u16).to_be_bytes());
        u.extend(r.bytes(n));
        // Checksum 0: none (the pseudo header would tie it to the addresses chosen later).
        notes.push(format!(
            "UDP to port {}, {n} bytes",
            u16::from_be_bytes([u[2], u[3]])
        ));
        (17, u)
    } else {
        let proto = r.pick(&[253u8, 254, 143, 200]);
        let n = r.range(0, 100);
        notes.push(format!("protocol {proto}, {n} bytes"));
        (proto, r.bytes(n))
    }
}

/// A frame the IP layer drops before ICMP: a header checksum, version, IHL or total length
/// that is wrong, or a link-layer destination that is another host's.
fn bad_outer(r: &mut Rng, ip: &Ipv4, msg: &[u8], macs: &Macs) -> (Vec<u8>, String) {
    let mut ip = ip.clone();
    ip.options.clear();
    let mut dst_mac = macs.dut;
    let what = match r.below(6) {
        0 => {
            ip.bad_csum = true;
            "bad header checksum"
        }
        1 => {
            ip.version = r.pick(&[0u8, 5, 6, 15]);
            "bad version"
        }
        2 => {
            ip.ihl = Some(r.range(0, 4) as u8);
            "IHL below 5"
        }
        3 => {
            ip.tot_len = Some((20 + msg.len() + r.range(1, 100)) as u16);
            "total length beyond the frame"
        }
        4 => {
            ip.tot_len = Some(r.range(0, 19) as u16);
            "total length below the header"
        }
        _ => {
            dst_mac = [0x02, 0, 0, 0, 0x99, 0x99];
            "another host's MAC address"
        }
    };
    (
        ether(dst_mac, macs.peer, &ip.build(msg)),
        format!("outer: {what}"),
    )
}

/// Cuts `msg` into fragments of `ip` and decides the order they go in: complete in order,
/// complete in any order, complete with a duplicate, one missing (the dut then times the
/// queue out and, if it holds the first fragment, sends time exceeded), or a last fragment
/// overlapping the others (the queue is discarded). Returns the IP packets and whether they
/// reassemble.
fn fragments(r: &mut Rng, ip: &Ipv4, msg: &[u8]) -> (Vec<Vec<u8>>, bool, String) {
    let mode = r.weighted(&[35, 30, 15, 12, 8]);
    // Piece size: a multiple of 8, at most 1480, and at most 16 pieces. A datagram that is
    // never reassembled makes the dut send time exceeded when its queue times out, which
    // happens while later triggers arrive, some of which lower the path MTU back to the
    // peer (frag needed quoting ICMP): that error must not depend on the moment, so its
    // first fragment (which it quotes) is kept short enough to be quoted whole under any
    // path MTU (at least 552 bytes, less 28 of headers: 524 = 20 + 504).
    let max_piece = if mode >= 3 { 504 } else { 1480 };
    let min_piece = msg.len().div_ceil(16).div_ceil(8) * 8;
    let piece = (r.range(1, max_piece / 8) * 8).clamp(min_piece.max(8), max_piece);
    let mut pieces: Vec<(usize, usize)> = (0..msg.len())
        .step_by(piece)
        .map(|off| (off, (off + piece).min(msg.len())))
        .collect();
    if pieces.len() < 2 {
        // Always at least two: cut the single piece at a multiple of 8.
        let cut = r.range(1, ((msg.len() - 1) / 8).min(max_piece / 8)) * 8;
        pieces = vec![(0, cut), (cut, msg.len())];
    }
    let n = pieces.len();
    let build = |&(lo, hi): &(usize, usize)| {
        let mut f = ip.clone();
        f.frag = ((lo / 8) as u16) | if hi < msg.len() { IP_MF } else { 0 };
        f.build(&msg[lo..hi])
    };
    let mut order: Vec<usize> = (0..n).collect();
    let (list, whole, what): (Vec<Vec<u8>>, bool, &str) = match mode {
        0 => (
            order.iter().map(|&i| build(&pieces[i])).collect(),
            true,
            "in order",
        ),
        1 => {
            r.shuffle(&mut order);
            (
                order.iter().map(|&i| build(&pieces[i])).collect(),
                true,
                "shuffled",
            )
        }
        2 => {
            // A copy of a piece other than the one that completes the datagram, before it:
            // a duplicate of a fragment still queued is ignored. (After the datagram is
            // complete it would start a new, never completed queue.)
            r.shuffle(&mut order);
            let last = order[n - 1];
            let dup = order[r.range(0, n - 2)];
            let pos = order.iter().position(|&i| i == dup).unwrap_or(0);
            let at = r.range(pos + 1, n - 1);
            order.insert(at, dup);
            debug_assert_eq!(*order.last().unwrap_or(&0), last);
            (
                order.iter().map(|&i| build(&pieces[i])).collect(),
                true,
                "with a duplicate",
            )
        }
        3 => {
            let gone = r.range(0, n - 1);
            order.remove(gone);
            r.shuffle(&mut order);
            (
                order.iter().map(|&i| build(&pieces[i])).collect(),
                false,
                "one missing",
            )
        }
        _ => {
            // All but the last in order, then, instead of the last, a fragment starting 8
            // bytes early. It keeps "more fragments" set: starting at offset 0 without it, it
            // would be a whole datagram. The queue is discarded as overlapping (or, if the
            // kernel trims it to 8 bytes already queued, ignored as a duplicate and later
            // timed out): never reassembled.
            let mut l: Vec<Vec<u8>> = order[..n - 1].iter().map(|&i| build(&pieces[i])).collect();
            let (lo, hi) = pieces[n - 1];
            let mut f = ip.clone();
            f.frag = (((lo - 8) / 8) as u16) | IP_MF;
            l.push(f.build(&msg[lo - 8..hi]));
            (l, false, "the last replaced by an overlapping one")
        }
    };
    let note = format!("{} fragments of {} bytes, {what}", n, piece.min(msg.len()));
    (list, whole, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACS: Macs = Macs {
        peer: [2, 0, 0, 0, 1, 1],
        dut: [2, 0, 0, 0, 1, 2],
    };

    #[test]
    fn deterministic_and_bounded() {
        for i in 0..20000 {
            let a = trigger(42, i, &MACS);
            let b = trigger(42, i, &MACS);
            assert_eq!(a.frames, b.frames);
            for f in &a.frames {
                assert!(f.len() <= 1514, "trigger {i}: frame of {} bytes", f.len());
                assert!(f.len() >= 14);
            }
        }
    }

    #[test]
    fn fragments_reassemble() {
        let mut r = Rng::for_trigger(1, 1);
        for len in [16usize, 17, 100, 1481, 6000] {
            let msg: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for _ in 0..50 {
                let ip = Ipv4::new(1, PEER, DUT, 1);
                let (list, whole, _) = fragments(&mut r, &ip, &msg);
                if !whole {
                    // What a time exceeded would quote fits under any path MTU.
                    for p in &list {
                        if u16::from_be_bytes([p[6], p[7]]) & 0x1fff == 0 {
                            assert!(p.len() <= 524);
                        }
                    }
                    continue;
                }
                let mut got = vec![None; len];
                for p in &list {
                    let off = usize::from(u16::from_be_bytes([p[6], p[7]]) & 0x1fff) * 8;
                    for (k, b) in p[20..].iter().enumerate() {
                        got[off + k] = Some(*b);
                    }
                }
                assert!(got.iter().enumerate().all(|(i, b)| *b == Some(i as u8)));
            }
        }
    }
}
