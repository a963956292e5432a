#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Differential tests of the IPv6 callers of rust_icmp's live-patched C functions, built-in C
vs rust_icmp, same boot:

  - ICMPv6 errors (icmp6_send) and echo replies with the global limit: net/ipv6/icmp.c calls
    icmp_global_allow and icmp_global_consume, governed by the IPv4 sysctls
    net.ipv4.icmp_msgs_per_sec / icmp_msgs_burst, and counts a limited message in the IPv4
    MIB (IcmpOutRateLimitGlobal). Limits off (every trigger answered, compared exactly),
    the global bucket empty (every one limited), a finite credit that is never refilled
    (compared on invariants: the credits consumed are random), and the errors exempt from
    the global limit (Packet Too Big, types outside net.ipv6.icmp.ratemask, errors about
    packets that came in on lo), which must not reach icmp_global_allow at all.
  - ICMPv6 PROBE (RFC 8335 extended echo, types 160/161), answered through
    icmp_build_probe when net.ipv4.icmp_echo_enable_probe is set: interfaces named by name,
    index, IPv4 and IPv6 address; unknown and malformed; L-bit clear; disabled.

No counter of rust_icmp shows this traffic (they mirror IPv4 MIBs), so each scenario proves
instead (Scenario.proof) that it called the patched C entry points while the live patch was
enabled with its transition complete, i.e. that Rust ran them.

Topology (icmptest.Topology6): peer fd00:1::1 -- fd00:1::2 dut fd00:2::2 -- fd00:2::1 far, the
dut forwarding; the peer sends hand-built IPv6 packets, so quotes are comparable."""

import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from difftest import Scenario, in_order, run_differential, select  # noqa: E402
from icmptest import (InNetns, Ktap, Topology6, ipv6, pattern, require_vm, sh,  # noqa: E402
                      sysctl, udp6)
from rcv_probe import by_addr, by_index, by_name, iio, probe  # noqa: E402

T = Topology6
ALLOW, CONSUME, PROBE = "icmp_global_allow", "icmp_global_consume", "icmp_build_probe"
# Both global-limit functions called: a message was allowed and consumed credits.
SENT = {ALLOW: True, CONSUME: True}
# icmp_global_allow said no: nothing to consume.
LIMITED = {ALLOW: True, CONSUME: False}
# Exempt from the global limit: neither is reached.
EXEMPT = {ALLOW: False, CONSUME: False}
SPORT = 40000
FINITE_CREDIT, FINITE_TRIGGERS = 5, 30


# ---------------------------------------------------------------------------------------
# Traffic

def udp_to(dst, size=56, hlim=64, count=1):
    """`count` UDP datagrams from the peer to port 9 of `dst(t)` (source ports SPORT + i)."""
    def action(t, send):
        for i in range(count):
            d = dst(t)
            send.ip6(ipv6(t.PEER6, d, 17, udp6(t.PEER6, d, SPORT + i, 9, pattern(size)),
                          hlim=hlim))
    return action


dut = lambda t: t.DUT6         # noqa: E731
far = lambda t: t.FAR6         # noqa: E731


def raw_to_dut(nh, payload):
    def action(t, send):
        send.ip6(ipv6(t.PEER6, t.DUT6, nh, payload))
    return action


def first_fragment(t, send):
    """The first fragment of a UDP datagram whose rest never comes: when the dut's
    reassembly times out it sends Time Exceeded (fragment reassembly)."""
    frag = struct.pack("!BBHI", 17, 0, 1, 0x4242)        # offset 0, M=1
    body = udp6(t.PEER6, t.DUT6, SPORT, 9, pattern(96))[:64]
    send.ip6(ipv6(t.PEER6, t.DUT6, 44, frag + body))
    time.sleep(2.5)                                      # ip6frag_time is 1 s (setup)


def echo6(t, send):
    send.icmp6(t.DUT6, struct.pack("!BBHHH", 128, 0, 0, 0x4242, 1) + pattern(32))


def finite_credit(t, send):
    """The first trigger makes icmp_global_allow fill the fresh bucket to FINITE_CREDIT;
    with icmp_msgs_per_sec then 0 it is never refilled, so the answered triggers are the
    first ones, until the random 0..2 credits each consumed used it up."""
    udp_to(dut)(t, send)
    t.cap.wait_for(lambda p: p[0] >> 4 == 6)
    sysctl(t.DUT, "net.ipv4.icmp_msgs_per_sec", 0)
    for i in range(1, FINITE_TRIGGERS):
        send.ip6(ipv6(t.PEER6, t.DUT6, 17, udp6(t.PEER6, t.DUT6, SPORT + i, 9, pattern(56))))


def udp_over_loopback(n):
    """The dut sends `n` datagrams to a closed port of its own over lo."""
    def action(t, send):
        with InNetns(t.DUT):
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        t.keep.append(s)
        s.bind(("::1", 42000))
        for _ in range(n):
            s.sendto(pattern(16), ("::1", 9))
    return action


def send_probe(msg):
    def action(t, send):
        send.icmp6(t.DUT6, msg)
    return action


def probe6(obj, **kw):
    """rcv_probe's extended echo request as ICMPv6 type 160 (the kernel computes the
    checksum over the pseudo-header)."""
    m = probe(obj, **kw)
    return b"\xa0" + m[1:2] + b"\0\0" + m[4:]


def probe_dut_index(dev):
    """A probe of the dut's `dev` by its ifindex (the same in both runs: same topology)."""
    def action(t, send):
        index = int(sh(f"ip -n {t.DUT} -o link show {dev}").split(":", 1)[0])
        send.icmp6(t.DUT6, probe6(by_index(index)))
    return action


# ---------------------------------------------------------------------------------------
# Setups

def dut_sysctls(**kv):
    """net.ipv4.* and (names starting ipv6_) net.ipv6.* sysctls of the dut; `__` is a dot."""
    def setup(t):
        for k, v in kv.items():
            name = k.replace("__", ".")
            if name.startswith("ipv6_"):
                name = "ipv6." + name[5:]
            else:
                name = "ipv4." + name
            sysctl(t.DUT, "net." + name, v)
    return setup


LIMITS_OFF = dict(icmp_msgs_per_sec=100000, icmp_msgs_burst=100000, ipv6_icmp__ratelimit=0)
GLOBAL_0 = dict(icmp_msgs_per_sec=0, icmp_msgs_burst=0, ipv6_icmp__ratelimit=0)


def far_mtu_1280(t):
    sh(f"ip -n {t.DUT} link set veth1 mtu 1280")
    sh(f"ip -n {t.FAR} link set veth0 mtu 1280")


# ---------------------------------------------------------------------------------------
# Sanity of the C run

def icmp6s(r):
    return [p for p in r.raw_packets if p[0] >> 4 == 6 and p[6] == 58]


def error6(type_, code, n=1, info=None):
    """`n` ICMPv6 messages type/code from the dut, within the minimum MTU (RFC 4443 2.4(c))."""
    def check(r):
        got = icmp6s(r)
        if len(got) != n or len(r.raw_packets) != n:
            return (f"expected {n} ICMPv6 {type_}/{code}, got {len(got)} of "
                    f"{len(r.raw_packets)} packets")
        for p in got:
            if (p[40], p[41]) != (type_, code):
                return f"expected ICMPv6 {type_}/{code}, got {p[40]}/{p[41]}"
            if len(p) > 1280:
                return f"an error of {len(p)} bytes exceeds the IPv6 minimum MTU"
            if info is not None and p[44:48] != struct.pack("!I", info):
                return f"expected info/pointer {info}, got {p[44:48].hex()}"
        return None
    return check


def all_limited(n):
    """No ICMPv6 from the dut; each of the `n` triggers counted in IcmpOutRateLimitGlobal,
    the (IPv4) MIB that icmpv6_global_allow counts in."""
    def check(r):
        if r.raw_packets:
            return f"expected no packet, got {len(r.raw_packets)}"
        got = r.mib.get("IcmpOutRateLimitGlobal", 0)
        if got != n:
            return f"expected IcmpOutRateLimitGlobal {n}, got {got}"
        return None
    return check


def loopback_unreachs(n):
    def check(r):
        got = r.mib.get("Icmp6OutDestUnreachs", 0)
        if got != n or r.mib.get("IcmpOutRateLimitGlobal", 0):
            return (f"expected {n} port unreachables over lo, none limited, got {got} and "
                    f"IcmpOutRateLimitGlobal {r.mib.get('IcmpOutRateLimitGlobal', 0)}")
        return None
    return check


def reply6(code):
    """One extended echo reply (161) with `code` (RFC 8335: 0 no error, 1 malformed query,
    2 no such interface)."""
    def check(r):
        got = icmp6s(r)
        if len(got) != 1 or len(r.raw_packets) != 1:
            return f"expected one reply, got {len(r.raw_packets)} packets"
        p = got[0]
        return None if (p[40], p[41]) == (161, code) else \
            f"expected ICMPv6 161 code {code}, got {p[40]}/{p[41]}"
    return check


def no_reply(r):
    if r.raw_packets:
        return f"expected no reply, got {len(r.raw_packets)} packets"
    if not r.mib.get("Icmp6InMsgs", 0):
        return "the request did not reach the dut's ICMPv6 (Icmp6InMsgs 0)"
    return None


def finite_sanity(r):
    sent = r.mib.get("Icmp6OutDestUnreachs", 0)
    low = (FINITE_CREDIT + 1) // 2
    return None if sent >= low else f"expected at least {low} errors, got {sent}"


def finite_bounds(c, rust):
    """Each run: every trigger answered or counted as limited; at least ceil(credit / 2)
    answered (each consumes at most 2 credits); the answered ones are the first triggers,
    in order (the credit is never refilled); each trigger called icmp_global_allow, each
    answered one icmp_global_consume."""
    problems = []
    low = (FINITE_CREDIT + 1) // 2
    for name, r in (("C", c), ("Rust", rust)):
        sent = r.mib.get("Icmp6OutDestUnreachs", 0)
        limited = r.mib.get("IcmpOutRateLimitGlobal", 0)
        if sent + limited != FINITE_TRIGGERS:
            problems.append(f"{name}: {sent} sent + {limited} IcmpOutRateLimitGlobal != "
                            f"{FINITE_TRIGGERS} triggers")
        if not low <= sent <= FINITE_TRIGGERS:
            problems.append(f"{name}: {sent} errors sent, expected {low}..{FINITE_TRIGGERS}")
        errs = icmp6s(r)
        if len(errs) != sent or len(r.raw_packets) != sent:
            problems.append(f"{name}: captured {len(errs)} errors of {len(r.raw_packets)} "
                            f"packets, but Icmp6OutDestUnreachs is {sent}")
        # The quoted UDP header: error 40 + 8, quoted IPv6 header 40.
        ports = [struct.unpack("!H", p[88:90])[0] for p in errs]
        if ports != list(range(SPORT, SPORT + len(errs))):
            problems.append(f"{name}: the answered triggers are not the first ones: "
                            f"source ports {ports}")
        if any((p[40], p[41]) != (1, 4) for p in errs):
            problems.append(f"{name}: not all errors are port unreachable")
        # Every trigger asked icmp_global_allow; only the answered ones consumed credits.
        calls = (r.calls.get(ALLOW), r.calls.get(CONSUME))
        if calls != (FINITE_TRIGGERS, sent):
            problems.append(f"{name}: {ALLOW}, {CONSUME} called {calls} times, expected "
                            f"{(FINITE_TRIGGERS, sent)}")
    return problems


# ---------------------------------------------------------------------------------------

def scenarios():
    s = []

    def add(name, action, sanity, proof, **kw):
        s.append(Scenario(name, action, topology=T, sanity=sanity, proof=proof, **kw))

    # ICMPv6 errors through the global limit (icmpv6_global_allow, icmpv6_xrlim_allow).
    add("udp6_closed_port_56", udp_to(dut), error6(1, 4), SENT)
    add("udp6_closed_port_1400", udp_to(dut, 1400), error6(1, 4), SENT)
    add("udp6_closed_port_burst_20_limits_off", udp_to(dut, count=20), error6(1, 4, n=20),
        SENT, setup=dut_sysctls(**LIMITS_OFF))
    add("unknown_next_header", raw_to_dut(253, pattern(40)), error6(4, 1, info=6), SENT)
    add("dstopt_unknown_option_discard_icmp", raw_to_dut(
        60, bytes([59, 0, 0x85, 4]) + pattern(4)), error6(4, 2, info=42), SENT)
    add("hop_limit_1_forwarded", udp_to(far, hlim=1), error6(3, 0), SENT)
    add("reassembly_timeout", first_fragment, error6(3, 1), SENT,
        setup=dut_sysctls(ipv6_ip6frag_time=1))
    add("echo_reply_in_ratemask_limits_off", echo6, error6(129, 0), SENT,
        setup=dut_sysctls(ipv6_icmp__ratemask="0-1,3-127,129", **LIMITS_OFF))

    # The global bucket empty: every message limited, counted in the IPv4 MIB by the C
    # caller (so the module's own IcmpOutRateLimitGlobal stays below it: shared_counts).
    add("udp6_closed_port_global_limit_0", udp_to(dut, count=10), all_limited(10), LIMITED,
        setup=dut_sysctls(**GLOBAL_0), shared_counts=True)
    add("hop_limit_1_global_limit_0", udp_to(far, hlim=1, count=5), all_limited(5), LIMITED,
        setup=dut_sysctls(**GLOBAL_0), shared_counts=True)
    add("echo_reply_in_ratemask_global_limit_0", echo6, all_limited(1), LIMITED,
        setup=dut_sysctls(ipv6_icmp__ratemask="0-1,3-127,129", **GLOBAL_0),
        shared_counts=True)

    # A finite credit, never refilled: random consumption, compared on invariants.
    add(f"udp6_global_credit_{FINITE_CREDIT}_never_refilled_{FINITE_TRIGGERS}_triggers",
        finite_credit, finite_sanity, SENT, shared_counts=True, bounds=finite_bounds,
        setup=dut_sysctls(icmp_msgs_per_sec=FINITE_CREDIT, icmp_msgs_burst=FINITE_CREDIT,
                          ipv6_icmp__ratelimit=0))

    # Exempt from the global limit even with an empty bucket: the C callers must not reach
    # icmp_global_allow (and the Rust module, loaded, must change nothing).
    add("pkt_too_big_global_limit_0", udp_to(far, 1400), error6(2, 0, info=1280), EXEMPT,
        setup=in_order(far_mtu_1280, dut_sysctls(**GLOBAL_0)))
    add("ratemask_excludes_dest_unreach_global_limit_0", udp_to(dut, count=5),
        error6(1, 4, n=5), EXEMPT,
        setup=dut_sysctls(ipv6_icmp__ratemask="0,3-127", **GLOBAL_0))
    add("loopback_exempt_global_limit_0", udp_over_loopback(10), loopback_unreachs(10),
        EXEMPT, setup=dut_sysctls(**GLOBAL_0))

    # ICMPv6 PROBE (icmpv6_echo_reply -> icmp_build_probe).
    probe_on = dut_sysctls(icmp_echo_enable_probe=1)
    v6 = lambda a: socket.inet_pton(socket.AF_INET6, a)      # noqa: E731
    cases = [
        ("name_veth0", by_name(b"veth0"), 0),
        ("name_lo", by_name(b"lo"), 0),
        ("name_unknown", by_name(b"nope0"), 2),
        ("index_1", by_index(1), 0),
        ("index_unknown", by_index(999), 2),
        ("addr_ipv4_own", by_addr(1, socket.inet_aton(T.DUT_ADDR)), 0),
        ("addr_ipv4_other_interface", by_addr(1, socket.inet_aton(T.DUT_FAR_ADDR)), 0),
        ("addr_ipv6_own", by_addr(2, v6(T.DUT6)), 0),
        ("addr_ipv6_other_interface", by_addr(2, v6(T.DUT_FAR6)), 0),
        ("addr_ipv6_loopback", by_addr(2, v6("::1")), 0),
        ("addr_ipv6_unknown", by_addr(2, v6("fd00:9::9")), 2),
        ("mal_name_16_bytes", by_name(b"abcdefghijklmnop"), 1),
        ("mal_index_3_bytes", by_index(1, width=3), 1),
        ("mal_addr_ipv6_len_4", by_addr(2, v6(T.DUT6)[:4]), 1),
        ("mal_addr_ipv6_addrlen_4", by_addr(2, v6(T.DUT6), addrlen=4), 1),
        ("mal_ctype_9", iio(9, b"abcd"), 1),
    ]
    for name, obj, code in cases:
        add(f"probe6_{name}", send_probe(probe6(obj)), reply6(code), {PROBE: True},
            setup=probe_on)
    add("probe6_index_veth0", probe_dut_index("veth0"), reply6(0), {PROBE: True},
        setup=probe_on)
    add("probe6_no_extension", send_probe(b"\xa0\0\0\0" + struct.pack("!HBB", 1, 5, 1)),
        reply6(1), {PROBE: True}, setup=probe_on)
    add("probe6_l_bit_clear", send_probe(probe6(by_name(b"lo"), l_bit=False)), no_reply,
        {PROBE: True}, setup=probe_on)
    add("probe6_disabled", send_probe(probe6(by_name(b"lo"))), no_reply, {PROBE: False},
        setup=dut_sysctls(icmp_echo_enable_probe=0))
    return s


def main():
    require_vm("ipv6_callers")
    ktap = Ktap("ipv6_callers: ICMPv6 global limit and PROBE, built-in C vs rust_icmp")
    run_differential(ktap, select(scenarios(), sys.argv[1:]))
    ktap.finish()


if __name__ == "__main__":
    main()
