// SPDX-License-Identifier: GPL-2.0
//! Packet bytes: the Internet checksum, IPv4 headers (valid or deliberately broken), a model
//! of the kernel's receive-side IP option check, and the masking of what legitimately
//! differs between two runs in the packets the dut sends.

/// The Internet checksum (RFC 1071) of `data`, as the 16-bit value to store.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Stores the checksum of `msg` at `msg[at..at + 2]` (which must be zero on entry).
pub fn put_checksum(msg: &mut [u8], at: usize) {
    let c = checksum(msg);
    msg[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Makes the checksum at `msg[at..at + 2]` wrong: another value that does not verify (0 and
/// 0xffff are the same number in ones' complement, so a plain change is not enough).
pub fn break_checksum(msg: &mut [u8], at: usize, noise: u16) {
    let mut n = noise | 1;
    loop {
        let c = u16::from_be_bytes([msg[at], msg[at + 1]]) ^ n;
        msg[at..at + 2].copy_from_slice(&c.to_be_bytes());
        if checksum(msg) != 0 {
            return;
        }
        n = n.rotate_left(3) | 1;
    }
}

pub const IP_DF: u16 = 0x4000;
pub const IP_MF: u16 = 0x2000;

/// An IPv4 header to build. `ihl`, `tot_len` and `version` override the computed values;
/// `bad_csum` stores a wrong header checksum.
#[derive(Clone)]
pub struct Ipv4 {
    pub tos: u8,
    pub id: u16,
    pub frag: u16,
    pub ttl: u8,
    pub proto: u8,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub options: Vec<u8>,
    pub version: u8,
    pub ihl: Option<u8>,
    pub tot_len: Option<u16>,
    pub bad_csum: bool,
}

impl Ipv4 {
    pub fn new(proto: u8, src: [u8; 4], dst: [u8; 4], id: u16) -> Ipv4 {
        Ipv4 {
            tos: 0,
            id,
            frag: 0,
            ttl: 64,
            proto,
            src,
            dst,
            options: Vec::new(),
            version: 4,
            ihl: None,
            tot_len: None,
            bad_csum: false,
        }
    }

    /// Header (with options, padded to 32 bits with end-of-list) followed by `payload`.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let mut opts = self.options.clone();
        while opts.len() % 4 != 0 {
            opts.push(0);
        }
        let hl = 20 + opts.len();
        let ihl = self.ihl.unwrap_or((hl / 4) as u8);
        let tot = self.tot_len.unwrap_or((hl + payload.len()) as u16);
        let mut p = Vec::with_capacity(hl + payload.len());
        p.push((self.version << 4) | (ihl & 15));
        p.push(self.tos);
        p.extend_from_slice(&tot.to_be_bytes());
        p.extend_from_slice(&self.id.to_be_bytes());
        p.extend_from_slice(&self.frag.to_be_bytes());
        p.push(self.ttl);
        p.push(self.proto);
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&self.src);
        p.extend_from_slice(&self.dst);
        p.extend_from_slice(&opts);
        // The checksum covers what the receiver will treat as the header: ihl words, or the
        // built header if ihl claims more than there is (such a packet is dropped anyway).
        let cover = (usize::from(ihl & 15) * 4).clamp(20, hl);
        let c = checksum(&p[..cover]);
        let c = if self.bad_csum { c ^ 0x5a5a } else { c };
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }
}

/// What `__ip_options_compile` (net/ipv4/ip_options.c, with an skb: the receive side) and
/// then `ip_rcv_options` decide about a received header's options.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OptVerdict {
    /// Accepted.
    Ok,
    /// Well formed but a source route: dropped, as accept_source_route is 0 in the dut.
    SourceRoute,
    /// Malformed: dropped (with a parameter problem if the packet may be answered).
    Bad,
}

/// The model of the option walk. It decides only which packets the kernel's IP layer passes
/// on to ICMP, so that the fuzzer can predict IcmpInMsgs; the test checks the prediction.
pub fn options_verdict(o: &[u8]) -> OptVerdict {
    use OptVerdict::*;
    let (mut srr, mut rr, mut ts, mut cipso) = (false, false, false, false);
    let mut i = 0;
    while i < o.len() {
        let l = o.len() - i;
        match o[i] {
            0 => break,
            1 => {
                i += 1;
                continue;
            }
            _ => {}
        }
        if l < 2 {
            return Bad;
        }
        let optlen = usize::from(o[i + 1]);
        if optlen < 2 || optlen > l {
            return Bad;
        }
        let p = &o[i..i + optlen];
        match p[0] {
            // IPOPT_LSRR, IPOPT_SSRR
            131 | 137 => {
                if optlen < 3 || p[2] < 4 || srr {
                    return Bad;
                }
                srr = true;
            }
            // IPOPT_RR
            7 => {
                if rr || optlen < 3 || p[2] < 4 {
                    return Bad;
                }
                let ptr = usize::from(p[2]);
                if ptr <= optlen && ptr + 3 > optlen {
                    return Bad;
                }
                rr = true;
            }
            // IPOPT_TIMESTAMP
            68 => {
                if ts || optlen < 4 || p[2] < 5 {
                    return Bad;
                }
                let ptr = usize::from(p[2]);
                let flag = p[3] & 15;
                if ptr <= optlen {
                    if ptr + 3 > optlen {
                        return Bad;
                    }
                    if (flag == 1 || flag == 3) && ptr + 7 > optlen {
                        return Bad;
                    }
                } else if flag != 3 && p[3] >> 4 == 15 {
                    return Bad;
                }
                ts = true;
            }
            // IPOPT_RA
            148 if optlen < 4 => return Bad,
            // IPOPT_CIPSO, validated by the !CONFIG_NETLABEL inline cipso_v4_validate.
            134 => {
                if cipso || optlen < 8 || p[2..6] == [0, 0, 0, 0] {
                    return Bad;
                }
                cipso = true;
                let mut t = 6;
                while t < optlen {
                    if t + 1 == optlen {
                        return Bad;
                    }
                    let tag_len = usize::from(p[t + 1]);
                    if tag_len == 0 || tag_len > optlen - t {
                        return Bad;
                    }
                    t += tag_len;
                }
            }
            _ => {}
        }
        i += optlen;
    }
    if srr {
        SourceRoute
    } else {
        Ok
    }
}

/// Zeroes the data of every timestamp option (type 68) in `opts`, walking them the way the
/// kernel does: these hold the dut's clock (written on receive by the option check, and on
/// output when an option is echoed), which differs from run to run.
fn mask_timestamp_options(opts: &mut [u8]) {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return,
            1 => {
                i += 1;
                continue;
            }
            _ => {}
        }
        if i + 1 >= opts.len() {
            return;
        }
        let len = usize::from(opts[i + 1]);
        if len < 2 || i + len > opts.len() {
            return;
        }
        if opts[i] == 68 && len > 4 {
            opts[i + 4..i + len].fill(0);
        }
        i += len;
    }
}

/// The fields of a packet sent by the dut that differ between two runs of the same
/// sequence, masked: IP ID, the header checksum (if it verifies; a wrong one is kept, so it
/// shows as a difference), timestamps (in timestamp replies and in timestamp options, of
/// the packet itself and of the header an ICMP error quotes) and the ICMP checksum that
/// covers them (again only if it verifies). Returns a 16-bit tag naming the trigger (the
/// echo sequence number or the quoted IP ID, which the generator sets from the trigger's
/// index), for diagnostics.
pub fn mask(p: &mut [u8]) -> Option<u16> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 15) * 4;
    if ihl < 20 || ihl > p.len() {
        return None;
    }
    if checksum(&p[..ihl]) == 0 {
        p[10..12].fill(0);
    }
    p[4..6].fill(0);
    mask_timestamp_options(&mut p[20..ihl]);
    let tot = usize::from(u16::from_be_bytes([p[2], p[3]])).min(p.len());
    let frag = u16::from_be_bytes([p[6], p[7]]);
    if p[9] != 1 || frag & 0x1fff != 0 || tot < ihl + 8 {
        return None;
    }
    let whole = frag & IP_MF == 0;
    let icmp = &mut p[ihl..tot];
    let verifies = whole && checksum(icmp) == 0;
    let mut tag = None;
    match icmp[0] {
        // Echo reply, extended echo reply: the sequence number / identifier.
        0 => tag = Some(u16::from_be_bytes([icmp[6], icmp[7]])),
        43 => tag = Some(u16::from_be_bytes([icmp[4], icmp[5]])),
        // Timestamp reply: receive and transmit timestamps are the dut's clock.
        14 => {
            tag = Some(u16::from_be_bytes([icmp[6], icmp[7]]));
            let end = icmp.len().min(20);
            if end > 12 {
                icmp[12..end].fill(0);
            }
        }
        // Errors: the quoted header's IP ID and timestamp options.
        3 | 4 | 5 | 11 | 12 => {
            let q = &mut icmp[8..];
            if q.len() >= 6 {
                tag = Some(u16::from_be_bytes([q[4], q[5]]));
            }
            if q.len() > 20 {
                let qhl = (usize::from(q[0] & 15) * 4).min(q.len());
                if qhl > 20 {
                    mask_timestamp_options(&mut q[20..qhl]);
                }
            }
        }
        _ => {}
    }
    if verifies {
        icmp[2..4].fill(0);
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_verifies() {
        let mut m = vec![8, 0, 0, 0, 1, 2, 3, 4, 5];
        put_checksum(&mut m, 2);
        assert_eq!(checksum(&m), 0);
        break_checksum(&mut m, 2, 0x1234);
        assert_ne!(checksum(&m), 0);
    }

    #[test]
    fn header_checksum() {
        let h = Ipv4::new(1, [10, 0, 1, 1], [10, 0, 1, 2], 7).build(&[]);
        assert_eq!(checksum(&h[..20]), 0);
    }

    #[test]
    fn option_model() {
        use OptVerdict::*;
        assert_eq!(options_verdict(&[]), Ok);
        assert_eq!(options_verdict(&[1, 1, 1, 0]), Ok);
        assert_eq!(options_verdict(&[7, 7, 4, 0, 0, 0, 0, 0]), Ok);
        assert_eq!(options_verdict(&[7, 7, 8, 0, 0, 0, 0, 0]), Ok); // full: ptr > len
        assert_eq!(options_verdict(&[7, 7, 5, 0, 0, 0, 0, 0]), Bad); // ptr + 3 > len
        assert_eq!(options_verdict(&[7, 2]), Bad);
        assert_eq!(options_verdict(&[68, 8, 5, 0, 0, 0, 0, 0]), Ok);
        assert_eq!(options_verdict(&[68, 8, 5, 1, 0, 0, 0, 0]), Bad); // no room for a pair
        assert_eq!(options_verdict(&[68, 8, 9, 0xf0, 0, 0, 0, 0]), Bad); // overflow 15
        assert_eq!(options_verdict(&[131, 3, 4, 0]), SourceRoute);
        assert_eq!(options_verdict(&[148, 4, 0, 0]), Ok);
        assert_eq!(options_verdict(&[200]), Bad);
        assert_eq!(options_verdict(&[200, 3, 0, 0]), Ok);
        assert_eq!(options_verdict(&[0, 200]), Ok); // after end of list
    }
}
