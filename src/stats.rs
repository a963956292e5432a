// SPDX-License-Identifier: GPL-2.0

//! Counters: the kernel's ICMP MIB, updated exactly where icmp.c updates it, and, with the
//! module parameter `mirror=1`, this module's own per-namespace counters of what the Rust
//! code did.
//!
//! `/proc/net/rust_icmp` (one per network namespace, only with `mirror=1`) prints the module's
//! counters under the names `nstat` gives the MIB (`IcmpInMsgs`, `IcmpMsgInType8`, ...), so the
//! deltas of `nstat` and of this file can be compared line by line: each line counts the events
//! of that MIB counter that Rust code caused (output is counted by `icmp_out_count`, which
//! `ip_output.c` calls for every ICMP message, also those of user sockets). Lines starting
//! `RustIcmp` have no MIB twin: drops by `icmp_rcv` per reason (`RustIcmpDrop_<REASON>`).

use kernel::{
    c_str,
    net::{ipv4::icmp::IcmpMib, namespace::Net, skb::DropReason},
    percpu::PerCpuCounters,
    prelude::*,
    seq_file::{seq_print, SeqFile},
    sync::rcu,
};

/// The MIB counters icmp.c touches, with their `nstat` names.
const MIBS: [(IcmpMib, &str); 7] = [
    (IcmpMib::InMsgs, "IcmpInMsgs"),
    (IcmpMib::InErrors, "IcmpInErrors"),
    (IcmpMib::CsumErrors, "IcmpInCsumErrors"),
    (IcmpMib::OutMsgs, "IcmpOutMsgs"),
    (IcmpMib::OutErrors, "IcmpOutErrors"),
    (IcmpMib::RateLimitGlobal, "IcmpOutRateLimitGlobal"),
    (IcmpMib::RateLimitHost, "IcmpOutRateLimitHost"),
];

/// Slots for drop reasons: the core reasons, and one for any other.
const DROP_SLOTS: usize = 128;
const _: () = assert!((DropReason::CORE_MAX as usize) < DROP_SLOTS);

/// Where each kind of counter starts in [`NetStats`]: the mirrored MIB counters, then those
/// of received and sent messages per ICMP type, then drops per reason.
const MIB: usize = 0;
const IN_TYPE: usize = MIB + MIBS.len();
const OUT_TYPE: usize = IN_TYPE + 256;
const DROPS: usize = OUT_TYPE + 256;
const COUNTERS: usize = DROPS + DROP_SLOTS;

/// The counters of one network namespace, per CPU, as C keeps the MIB.
pub(crate) struct NetStats {
    cpus: PerCpuCounters<COUNTERS>,
}

impl NetStats {
    /// The mirror of `net`: `None` without `mirror=1`, and while the module's per-namespace
    /// data is being set up or torn down.
    fn of<'a>(icmp: &'a crate::Icmp, net: &'a Net, rcu: &'a rcu::Guard) -> Option<&'a Self> {
        icmp.stats.as_ref().and_then(|stats| stats.get(net, rcu))
    }

    fn bump(&self, i: usize) {
        self.cpus.add(i, 1);
    }

    /// Counts an event of `mib`, if it is mirrored.
    fn bump_mib(&self, mib: IcmpMib) {
        if let Some(i) = slot(mib) {
            self.bump(MIB + i);
        }
    }
}

kernel::pernet_data! {
impl PernetData for NetStats {
    const PROC_NAME: Option<&'static CStr> = Some(c_str!("rust_icmp"));

    fn init(_net: &Net) -> Result<Self> {
        Ok(Self {
            cpus: PerCpuCounters::new()?,
        })
    }

    fn show(&self, m: &SeqFile) {
        let sum = |i| self.cpus.sum(i);
        for (i, (_, name)) in MIBS.iter().enumerate() {
            seq_print!(m, "{name} {}\n", sum(MIB + i));
        }
        for t in 0..256 {
            let n = sum(IN_TYPE + t);
            if n != 0 {
                seq_print!(m, "IcmpMsgInType{t} {n}\n");
            }
        }
        for t in 0..256 {
            let n = sum(OUT_TYPE + t);
            if n != 0 {
                seq_print!(m, "IcmpMsgOutType{t} {n}\n");
            }
        }
        for r in 0..DROP_SLOTS {
            let n = sum(DROPS + r);
            if n == 0 {
                continue;
            }
            match DropReason::from_raw(r as u32)
                .err()
                .and_then(DropReason::name)
            {
                Some(name) if r < DROP_SLOTS - 1 => {
                    seq_print!(m, "RustIcmpDrop_{} {n}\n", name.to_str().unwrap_or("?"))
                }
                _ => seq_print!(m, "RustIcmpDrop_OTHER {n}\n"),
            }
        }
    }
}
}

/// Where `mib` is mirrored, after [`MIB`] (`InTimeExcds` is not: /proc/net/snmp does not
/// show it).
const fn slot(mib: IcmpMib) -> Option<usize> {
    Some(match mib {
        IcmpMib::InMsgs => 0,
        IcmpMib::InErrors => 1,
        IcmpMib::CsumErrors => 2,
        IcmpMib::OutMsgs => 3,
        IcmpMib::OutErrors => 4,
        IcmpMib::RateLimitGlobal => 5,
        IcmpMib::RateLimitHost => 6,
        IcmpMib::InTimeExcds => return None,
    })
}
const _: () = {
    let mut i = 0;
    while i < MIBS.len() {
        assert!(matches!(slot(MIBS[i].0), Some(s) if s == i));
        i += 1;
    }
};

/// The counters an event updates: the namespace's MIB, and this module's mirror of it.
/// Finding the mirror takes a lookup in the namespace's generic pointers, so code that counts
/// several events of one packet makes one `Mibs` for it, in the RCU read-side critical
/// section that keeps the mirror alive.
#[derive(Clone, Copy)]
pub(crate) struct Mibs<'a> {
    net: &'a Net,
    /// See [`NetStats::of`].
    mine: Option<&'a NetStats>,
}

impl<'a> Mibs<'a> {
    pub(crate) fn new(icmp: &'a crate::Icmp, net: &'a Net, rcu: &'a rcu::Guard) -> Self {
        Self {
            net,
            mine: NetStats::of(icmp, net, rcu),
        }
    }

    /// The counters of a module loaded without `mirror=1`: the MIB only.
    pub(crate) fn unmirrored(net: &'a Net) -> Self {
        Self { net, mine: None }
    }

    /// The namespace whose counters these are.
    pub(crate) fn net(&self) -> &'a Net {
        self.net
    }

    /// `__ICMP_INC_STATS` / `ICMP_INC_STATS`.
    pub(crate) fn icmp_inc_stats(&self, mib: IcmpMib) {
        self.net.icmp_inc_stats(mib);
        if let Some(c) = self.mine {
            c.bump_mib(mib);
        }
    }

    /// `ICMPMSGIN_INC_STATS`.
    pub(crate) fn icmpmsg_in_inc_stats(&self, type_: u8) {
        self.net.icmpmsg_in_inc_stats(type_);
        if let Some(c) = self.mine {
            c.bump(IN_TYPE + usize::from(type_));
        }
    }

    /// Counts a packet dropped by `icmp_rcv` (no MIB twin).
    pub(crate) fn count_drop(&self, reason: DropReason) {
        if let Some(c) = self.mine {
            let r = (reason.to_raw() as usize).min(DROP_SLOTS - 1);
            c.bump(DROPS + r);
        }
    }
}

/// `__ICMP_INC_STATS` / `ICMP_INC_STATS`, for code that counts one event.
pub(crate) fn icmp_inc_stats(icmp: &crate::Icmp, net: &Net, mib: IcmpMib) {
    let rcu = rcu::read_lock();
    Mibs::new(icmp, net, &rcu).icmp_inc_stats(mib);
}

/// `icmp_out_count`: counts an ICMP message leaving the host (`OutMsgs`, `OutType<type>`).
/// `ip_output.c` calls it (through the live patch) when it builds an ICMP message on a raw
/// socket: ours, whose replies carry `fl4_icmp_type` (0 for `icmp_reply`), and user space's.
/// Patched only with `mirror=1`: without the mirror it would count what C's counts, and the
/// live patch's redirection would cost every ICMP message sent about 80 instructions.
// Inlined into its one caller, the live patch's hook: on every ICMP message's path.
#[inline(always)]
pub(crate) fn icmp_out_count(icmp: &crate::Icmp, net: &Net, type_: u8, rcu: &rcu::Guard) {
    net.icmpmsg_out_inc_stats(type_);
    net.icmp_inc_stats(IcmpMib::OutMsgs);
    // The mirror's two counters under one test of whether there is a mirror.
    if let Some(c) = NetStats::of(icmp, net, rcu) {
        c.bump_mib(IcmpMib::OutMsgs);
        c.bump(OUT_TYPE + usize::from(type_));
    }
}
