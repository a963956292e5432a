// SPDX-License-Identifier: GPL-2.0

//! Rate limits on the ICMP messages the host sends (icmp.c: `icmp_global_allow`,
//! `icmp_global_consume`, `icmpv4_mask_allow`, `icmpv4_global_allow`, `icmpv4_xrlim_allow`).
//!
//! Two buckets apply to the types selected by `net.ipv4.icmp_ratemask`: a global one per
//! namespace (`icmp_msgs_per_sec`, `icmp_msgs_burst`) and one per destination in the
//! inet_peer cache (`icmp_ratelimit`).

use kernel::{
    net::{
        ipv4::{
            icmp::{IcmpMib, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, NR_ICMP_TYPES},
            route::{Flowi4, Rtable},
        },
        namespace::Net,
    },
    random::get_random_u32_below,
    sync::{
        atomic::{Full, Relaxed},
        rcu,
    },
    time::{jiffies, HZ},
};

use crate::{stats, Icmp};

/// `icmp_global_allow`: whether the namespace's global token bucket allows one more message.
///
/// Tokens are added when a fiftieth of a second or more has passed, `icmp_msgs_per_sec` per
/// second up to `icmp_msgs_burst`; [`icmp_global_consume`] takes them. Several CPUs may find
/// credit and overspend a little; C accepts that race too.
pub(crate) fn icmp_global_allow(net: &Net) -> bool {
    let credit = net.icmp_global_credit();
    if credit.load(Relaxed) > 0 {
        return true;
    }
    let now = jiffies() as u32;
    let stamp = net.icmp_global_stamp();
    let oldstamp = stamp.load(Relaxed);
    let delta = now.wrapping_sub(oldstamp).min(HZ);
    if delta < HZ / 50 {
        return false;
    }
    let incr = net.sysctl_icmp_msgs_per_sec();
    let incr = ((i64::from(incr) * i64::from(delta)) / i64::from(HZ)) as i32;
    if incr == 0 {
        return false;
    }
    if stamp.cmpxchg(oldstamp, now, Full).is_ok() {
        let mut old = credit.load(Relaxed);
        loop {
            let new = old.wrapping_add(incr).min(net.sysctl_icmp_msgs_burst());
            match credit.cmpxchg(old, new, Full) {
                Ok(_) => break,
                Err(cur) => old = cur,
            }
        }
    }
    true
}

/// `icmp_global_consume`: takes 0, 1 or 2 tokens, at random (1 on average), so that an
/// attacker cannot learn the exact credit from the replies it gets (the SADDNS side channel).
/// The credit may go negative.
pub(crate) fn icmp_global_consume(net: &Net) {
    let credits = get_random_u32_below(3);
    if credits != 0 {
        // `atomic_sub`: unordered, as `add` with `Relaxed` is.
        net.icmp_global_credit().add(-(credits as i32), Relaxed);
    }
}

/// `icmpv4_mask_allow`: true if `type_`/`code` is exempt from rate limiting: unknown types,
/// "fragmentation needed" (PMTU discovery must not be limited), and types outside
/// `icmp_ratemask`.
#[inline(always)]
fn icmpv4_mask_allow(net: &Net, type_: i32, code: i32) -> bool {
    if type_ > i32::from(NR_ICMP_TYPES) {
        return true;
    }
    if type_ == i32::from(ICMP_DEST_UNREACH) && code == i32::from(ICMP_FRAG_NEEDED) {
        return true;
    }
    (1 << type_) & net.sysctl_icmp_ratemask() == 0
}

/// `icmpv4_global_allow`: `None` if the global limit forbids the message (counted as
/// `OutRateLimitGlobal`), else `Some(apply_ratelimit)`, whether the per-peer limit
/// ([`icmpv4_xrlim_allow`]) still applies (C's `*apply_ratelimit` out-parameter).
// Inlined into its two callers (`icmp_reply`, `__icmp_send`), like the next: on every
// message's path.
#[inline(always)]
pub(crate) fn icmpv4_global_allow(icmp: &Icmp, net: &Net, type_: i32, code: i32) -> Option<bool> {
    if icmpv4_mask_allow(net, type_, code) {
        return Some(false);
    }
    if icmp_global_allow(net) {
        return Some(true);
    }
    stats::icmp_inc_stats(icmp, net, IcmpMib::RateLimitGlobal);
    None
}

/// `icmpv4_xrlim_allow`: the per-destination limit (`icmp_ratelimit` jiffies per token),
/// except on loopback. Counts `OutRateLimitHost` when it refuses, and consumes global credit
/// when it allows.
#[inline(always)]
pub(crate) fn icmpv4_xrlim_allow(
    icmp: &Icmp,
    net: &Net,
    rt: &Rtable,
    fl4: &Flowi4,
    apply_ratelimit: bool,
    rcu: &rcu::Guard,
) -> bool {
    if !apply_ratelimit {
        return true;
    }
    let peer_timeout = net.sysctl_icmp_ratelimit();
    let rc = match rt.dev(rcu) {
        // A timeout of 0 turns the per-peer limit off: no peer entry is looked up or made.
        _ if peer_timeout == 0 => true,
        // No rate limit on loopback.
        Some(dev) if dev.is_loopback() => true,
        dev => {
            let vif = dev.map_or(0, |d| d.l3mdev_master_ifindex_rcu(rcu));
            net.inet_peer_xrlim_allow(rcu, fl4.daddr(), vif, peer_timeout)
        }
    };
    if rc {
        icmp_global_consume(net);
    } else {
        stats::icmp_inc_stats(icmp, net, IcmpMib::RateLimitHost);
    }
    rc
}
