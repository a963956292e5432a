#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Differential tests of the ICMP errors the host generates (__icmp_send and everything
around it): port and protocol unreachable, TTL exceeded and fragmentation needed while
forwarding, reassembly timeout, netfilter REJECT, tunnels (icmp_ndo_send), the rules about
when not to send (broadcast, later fragments, errors about errors), source address
selection, IP options, rate limits, VRF. Built-in C vs rust_icmp, same boot.

Topology: peer 10.0.1.1 -- 10.0.1.2 dut 10.0.2.2 -- 10.0.2.1 far, the dut forwarding.
The peer sends hand-built IP packets (fixed IP ID, so quotes are comparable)."""

import collections
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from difftest import Scenario, first_problem, in_order, run_differential, select  # noqa: E402
from icmptest import (InNetns, Ktap, RoutedTopology, checksum, echo, icmp, ipv4,  # noqa: E402
                      pattern, require_vm, sh, sysctl, vrf_setup)

T = RoutedTopology
IP_DF, IP_MF = 0x4000, 0x2000
SO_RCVBUFFORCE = 33
RECORD_ROUTE = bytes([7, 11, 4]) + bytes(8) + b"\0"
TIMESTAMP = bytes([68, 12, 5, 0]) + bytes(8)      # timestamps only, room for two
# Scenario.proof of a quiet scenario: __icmp_send is called (the live patch, in the Rust run)
# and the dut sends nothing, or no ICMP code is reached at all (a control: the module, loaded
# and patched, sends nothing either).
CALLS_ICMP_SEND = {"__icmp_send": True}
NO_ICMP_CODE = {"__icmp_send": False}


def udp(sport, dport, payload):
    """A UDP header (checksum 0: none) and payload."""
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def send_ip(build, count=1):
    """Sends `count` hand-built packets from the peer."""
    def action(t, send):
        for i in range(count):
            send.ip(build(t, i))
    return action


def udp_to(dst, size=56, ttl=64, frag=0, options=b"", dport=9, ident=0x4242):
    def build(t, i):
        return ipv4(t.PEER_ADDR, dst(t), 17, udp(40000 + i, dport, pattern(size)), ttl=ttl,
                    frag=frag, options=options, ident=ident + i)
    return build


dut = lambda t: t.DUT_ADDR         # noqa: E731
far = lambda t: t.FAR_ADDR         # noqa: E731


def error(type_, code, n=1, info=None):
    """Sanity of the C run: `n` ICMP messages of type/code from the dut (or routers)."""
    def check(r):
        icmps = [p for p in r.raw_packets if p[9] == 1]
        if len(icmps) != n:
            return f"expected {n} ICMP {type_}/{code}, got {len(icmps)} of {len(r.raw_packets)} packets"
        for p in icmps:
            h = (p[0] & 15) * 4
            if (p[h], p[h + 1]) != (type_, code):
                return f"expected ICMP {type_}/{code}, got {p[h]}/{p[h + 1]}"
            if len(p) > 576:
                return f"an error of {len(p)} bytes exceeds 576 (RFC 1812 4.3.2.3)"
            if info is not None and p[h + 4:h + 8] != struct.pack("!I", info):
                return f"expected info {info}, got {p[h + 4:h + 8].hex()}"
        return None
    return check


def rfc5837(quoted, objects=True):
    """Sanity of the C run: every error quotes exactly 128 bytes of the datagram (RFC 4884
    length 32 in the header's sixth byte), `quoted` of them from the datagram and the rest
    zeros, followed by an extension structure (version 2) holding the incoming interface's
    Interface Information Object if `objects`."""
    def check(r):
        for i, p in enumerate(q for q in r.raw_packets if q[9] == 1):
            h = (p[0] & 15) * 4 + 8
            if p[h - 3] != 32:
                return f"error {i}: RFC 4884 length {p[h - 3]}, expected 32"
            if len(p) < h + 128 + 4 or p[h + 128] != 0x20:
                return f"error {i}: no extension structure after 128 bytes"
            if any(p[h + quoted:h + 128]):
                return f"error {i}: the quoted datagram is not padded with zeros after {quoted}"
            if checksum(p[h + 128:]) != 0:
                return f"error {i}: the extension structure's checksum is wrong"
            has_iio = len(p) > h + 132 and p[h + 134] == 2
            if has_iio != objects:
                return f"error {i}: Interface Information Object {'missing' if objects else 'present'}"
        return None
    return check


def far_mtu(mtu):
    def setup(t):
        sh(f"ip -n {t.DUT} link set veth1 mtu {mtu}")
        sh(f"ip -n {t.FAR} link set veth0 mtu {mtu}")
    return setup


def set_dut(**kv):
    def setup(t):
        for k, v in kv.items():
            sysctl(t.DUT, "net.ipv4." + k.replace("__", "."), v)
    return setup


def reassembly_timeout(t, send):
    send.ip(ipv4(t.PEER_ADDR, t.DUT_ADDR, 17, udp(40000, 9, pattern(64)), frag=IP_MF))
    time.sleep(2.5)   # ipfrag_time is 1 s in the setup; the timer sends the error


def nft_reject(kind):
    def setup(t):
        sh(f"ip netns exec {t.DUT} nft -f -", input=f"""
table ip rust_icmp_test {{
  chain input {{
    type filter hook input priority 0;
    udp dport 7777 reject with icmp type {kind}
  }}
}}
""")
    return setup


def inbound_ifaddr(on):
    """The dut routes back to the peer's subnet with a preferred source on another
    interface: locally chosen errors use it, errors_use_inbound_ifaddr uses veth0's."""
    def setup(t):
        sysctl(t.DUT, "net.ipv4.icmp_errors_use_inbound_ifaddr", on)
        sh(f"ip -n {t.DUT} addr add 10.0.9.9/32 dev lo")
        sh(f"ip -n {t.DUT} route replace 10.0.1.0/24 dev veth0 src 10.0.9.9")
    return setup


def tunnel_setup(t):
    """An IPIP tunnel from the dut to far carries 10.0.8.0/24; its MTU (1280) is below what
    the peer sends with DF, so the tunnel driver answers with icmp_ndo_send."""
    sh(f"ip -n {t.DUT} link add ipip1 type ipip local {t.DUT_FAR_ADDR} remote {t.FAR_ADDR} pmtudisc")
    sh(f"ip -n {t.DUT} link set ipip1 mtu 1280 up")
    sh(f"ip -n {t.DUT} route add 10.0.8.0/24 dev ipip1")
    sh(f"ip -n {t.PEER} route add 10.0.8.0/24 via {t.DUT_ADDR}")


def error_routes(t):
    """Routes of the dut's that end in ip_error instead of forwarding: unreachable (host
    unreachable), prohibit (administratively filtered), blackhole (silence); 10.0.4.0/24 has
    no route at all (network unreachable). The peer sends all of 10.0.4.0/22 to the dut."""
    for kind, net in (("unreachable", "10.0.5.0/24"), ("prohibit", "10.0.6.0/24"),
                      ("blackhole", "10.0.7.0/24")):
        sh(f"ip -n {t.DUT} route add {kind} {net}")
    sh(f"ip -n {t.PEER} route add 10.0.4.0/22 via {t.DUT_ADDR}")


def lsrr(hop, strict=False):
    """A loose (or strict) source route option whose hops are all used up: the packet is at
    its last hop, and a reply goes back by the reversed route, first to `hop`."""
    return bytes([137 if strict else 131, 7, 8]) + socket.inet_aton(hop) + b"\0"


def accept_source_route(t):
    for conf in ("all", "veth0"):
        sysctl(t.DUT, f"net.ipv4.conf.{conf}.accept_source_route", 1)


def mtu_552(t):
    """The route back to the peer has an MTU below 576: the error quotes less."""
    sh(f"ip -n {t.DUT} link set veth0 mtu 552")
    sh(f"ip -n {t.PEER} link set veth0 mtu 552")


def mark_errors(reflect):
    """The dut marks the datagrams it receives (prerouting) and counts, at OUTPUT, the errors
    that carry that mark: fwmark_reflect gives an error the mark of what it is about."""
    def setup(t):
        sysctl(t.DUT, "net.ipv4.fwmark_reflect", reflect)
        sh(f"ip netns exec {t.DUT} nft -f -", input="""
table ip rust_icmp_mark {
  chain pre { type filter hook prerouting priority 0; udp dport 9 meta mark set 7; }
  chain out { type filter hook output priority 0; icmp type destination-unreachable meta mark 7 counter; }
}
""")
    return setup


def redirect_route(send_redirects):
    """The dut's route to 10.0.9.0/24 goes back out of veth0 to the ghost, on the peer's own
    link: forwarding it, the dut tells the peer about the better first hop (ICMP redirect,
    ip_rt_send_redirect), if send_redirects allows."""
    def setup(t):
        for conf in ("all", "veth0"):
            sysctl(t.DUT, f"net.ipv4.conf.{conf}.send_redirects", send_redirects)
        sh(f"ip -n {t.DUT} route add 10.0.9.0/24 via {t.GHOST}")
        sh(f"ip -n {t.PEER} route add 10.0.9.0/24 via {t.DUT_ADDR}")
    return setup


def unresolved_next_hop(t):
    """The dut's route to 10.0.9.0/24 goes through 10.0.1.99, which nobody answers ARP for;
    one ARP request, 100 ms to answer it, then the queued packet fails (arp_error_report ->
    ipv4_link_failure: host unreachable). (No redirect: the next hop is on the sender's link.)"""
    for conf in ("all", "veth0"):
        sysctl(t.DUT, f"net.ipv4.conf.{conf}.send_redirects", 0)
    for k, v in (("mcast_solicit", 1), ("ucast_solicit", 0), ("app_solicit", 0),
                 ("retrans_time_ms", 100)):
        sysctl(t.DUT, f"net.ipv4.neigh.veth0.{k}", v)
    sh(f"ip -n {t.DUT} route add 10.0.9.0/24 via 10.0.1.99")
    sh(f"ip -n {t.PEER} route add 10.0.9.0/24 via {t.DUT_ADDR}")


def after(action, seconds):
    def run(t, send):
        action(t, send)
        time.sleep(seconds)
    return run


def gre_packet(t, i):
    """GRE (RFC 2784, no options) carrying an IPv4 packet, to the dut, which has no tunnel
    for it (its fallback gre0 is down): gre_rcv answers port unreachable."""
    inner = ipv4("10.0.3.1", "10.0.3.2", 17, udp(1, 2, pattern(16)))
    return ipv4(t.PEER_ADDR, t.DUT_ADDR, 47, struct.pack("!HH", 0, 0x0800) + inner)


def esp_packet(t, i):
    """ESP (RFC 4303) with an SPI the dut has no state for: dropped without an error."""
    return ipv4(t.PEER_ADDR, t.DUT_ADDR, 50, struct.pack("!II", 0x1234, 1) + pattern(32))


def from_two_cpus(n):
    """Two processes of the peer, pinned to CPUs 0 and 1, send at once: one `n` echo
    requests, the other `n` datagrams to a closed port. veth hands each packet to the dut's
    stack on the sender's CPU, so the dut answers on both CPUs together, each through its
    own CPU's control socket (and the echo replies alongside errors)."""
    def action(t, send):
        # Room for all the answers while the senders run (rmem_max caps SO_RCVBUF).
        t.cap.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        before = softnet_processed()
        kids = []
        for cpu in (0, 1):
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    os.sched_setaffinity(0, {cpu})
                    for i in range(n):
                        if cpu == 0:
                            send.ip(ipv4(t.PEER_ADDR, t.DUT_ADDR, 1, echo(0x99, i, pattern(40)),
                                         ident=0x1000 + i))
                        else:
                            send.ip(udp_to(dut)(t, i))
                except BaseException:   # noqa: BLE001 - the parent sees the exit status
                    code = 1
                os._exit(code)
            kids.append(pid)
        for pid in kids:
            _, status = os.waitpid(pid, 0)
            if status:
                raise AssertionError("a sender process failed")
        t.obs["packets processed per CPU"] = [
            b - a for a, b in zip(before, softnet_processed())]
    return action


def softnet_processed():
    """Packets each CPU's receive softirq processed so far (/proc/net/softnet_stat)."""
    with open("/proc/net/softnet_stat") as f:
        return [int(line.split()[0], 16) for line in f]


def on_both_cpus(n):
    def check(r):
        per_cpu = r.obs.get("packets processed per CPU", [])
        if len(per_cpu) < 2 or min(per_cpu[:2]) < n:
            return f"expected both CPUs to process {n} packets or more, got {per_cpu}"
        return None
    return check


def same_in_any_order(c, rust):
    """For traffic answered on two CPUs at once: the order in which the two CPUs' packets
    interleave varies; everything else must be equal."""
    problems = []
    if sorted(c.packets) != sorted(rust.packets):
        only_c = len(set(c.packets) - set(rust.packets))
        only_r = len(set(rust.packets) - set(c.packets))
        problems.append(f"packets differ: {len(c.packets)} in C, {len(rust.packets)} in Rust; "
                        f"{only_c} only in C, {only_r} only in Rust")
    if c.mib != rust.mib:
        keys = sorted(set(c.mib) | set(rust.mib))
        problems.append("MIB deltas differ (C, Rust): " + " ".join(
            f"{k}=({c.mib.get(k, 0)},{rust.mib.get(k, 0)})" for k in keys
            if c.mib.get(k, 0) != rust.mib.get(k, 0)))
    if c.drops != rust.drops:
        problems.append("drop reasons differ: " + counts_differ(c.drops, rust.drops))
    if c.sends != rust.sends:
        problems.append("icmp:icmp_send events differ: " + counts_differ(c.sends, rust.sends))
    return problems


def counts_differ(c, rust):
    """What occurs a different number of times in the two lists, as `item=(C, Rust)`."""
    c, rust = collections.Counter(c), collections.Counter(rust)
    return " ".join(f"{k}=({c[k]},{rust[k]})" for k in sorted(set(c) | set(rust))
                    if c[k] != rust[k])


def marked_errors(t):
    out = sh(f"ip netns exec {t.DUT} nft list chain ip rust_icmp_mark out")
    return {"marked errors at OUTPUT": out.split("counter packets ")[1].split()[0]}


def udp_to_loopback(n):
    """The dut sends `n` datagrams to a closed port of its own over lo: neither the per-peer
    nor (lo being the incoming device) the global limit applies to the errors."""
    def action(t, send):
        with InNetns(t.DUT):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t.keep.append(s)
        s.bind(("127.0.0.1", 42000))     # the icmp_send tracepoint shows the port
        for _ in range(n):
            s.sendto(pattern(16), ("127.0.0.1", 9))
    return action


def counted(counter, n):
    def check(r):
        got = r.mib.get(counter, 0)
        return None if got == n else f"expected {counter} {n}, got {got}"
    return check


def unreachs(n):
    def check(r):
        got = r.mib.get("IcmpOutDestUnreachs", 0)
        return None if got == n else f"expected {n} destination unreachables, got {got}"
    return check


class DutIcmp:
    """The dut's ICMP counters and its global-limit sysctls, through files opened once in its
    namespace (a rate-limit trial reads and writes them hundreds of times)."""

    def __init__(self, t):
        with InNetns(t.DUT):
            self.snmp = open("/proc/self/net/snmp")
            self.per_sec = open("/proc/sys/net/ipv4/icmp_msgs_per_sec", "w")
            self.burst = open("/proc/sys/net/ipv4/icmp_msgs_burst", "w")

    def counts(self):
        """(OutDestUnreachs, OutRateLimitGlobal, OutRateLimitHost)."""
        self.snmp.seek(0)
        lines = [line.split() for line in self.snmp if line.startswith("Icmp:")]
        c = dict(zip(lines[0][1:], map(int, lines[1][1:])))
        return c["OutDestUnreachs"], c["OutRateLimitGlobal"], c["OutRateLimitHost"]

    def set_limit(self, per_sec, burst=None):
        for f, v in ((self.burst, burst), (self.per_sec, per_sec)):
            if v is not None:
                f.seek(0)
                f.write(str(v))
                f.flush()

    def trigger(self, t, send, i, timeout=3.0):
        """Sends datagram `i` to a closed port of the dut and returns True if the dut
        answered it, False if the global limit refused it (any other outcome raises)."""
        sent, glob, host = self.counts()
        t.cap._drain()   # hundreds of errors: keep the capture's queue from overflowing
        send.ip(udp_to(dut)(t, i))
        deadline = time.monotonic() + timeout
        while True:
            s, g, h = self.counts()
            if h != host:
                raise AssertionError("the per-peer limit refused an error (icmp_ratelimit is 0)")
            if s + g > sent + glob:
                return s > sent
            if time.monotonic() > deadline:
                raise TimeoutError(f"datagram {i} neither answered nor limited in {timeout} s")
            time.sleep(0.002)

    def close(self):
        for f in (self.snmp, self.per_sec, self.burst):
            f.close()


# Counters that grow with each error the dut sends (the rest must not depend on how many the
# random draws let through).
PER_ERROR = ("IcmpOutMsgs", "IcmpOutDestUnreachs", "IcmpMsgOutType3", "IpOutRequests",
             "IpOutTransmits")


def global_credit(credit, triggers):
    """The global bucket with a known credit and no refill. The first datagram finds the
    fresh namespace's bucket empty, so icmp_global_allow refills it to min(per second,
    burst) = `credit`; then icmp_msgs_per_sec goes to 0, which stops any further refill
    whatever the time the burst takes. Each error sent takes 0, 1 or 2 tokens at random
    (icmp_global_consume) and errors go out while the credit is above 0: the first n
    datagrams are answered, the last of them the one that exhausted the credit, where n is
    at least credit/2 (all draws 2) and anything up to all of them (all draws 0)."""
    def action(t, send):
        d = DutIcmp(t)
        try:
            d.set_limit(credit, credit)
            if not d.trigger(t, send, 0):
                raise AssertionError("the first datagram, on a full bucket, was not answered")
            d.set_limit(0)
            answered = 1 + sum(d.trigger(t, send, i) for i in range(1, triggers))
        finally:
            d.close()
        t.obs["answered"] = answered
    return action


def global_credit_bounds(credit, triggers):
    """Compares a global_credit() burst. Everything that does not depend on the number of
    errors the random draws let through must be equal (drop reasons, the other counters);
    what does must be consistent with it: each run answered the first n datagrams, n within
    its real range, counted each error once and each refusal as OutRateLimitGlobal, and its
    errors are the other run's, datagram by datagram."""
    lo = (credit + 1) // 2

    def check(c, rust):
        problems = []
        for name, r in (("C", c), ("Rust", rust)):
            n = r.obs.get("answered", 0)
            if not lo <= n <= triggers:
                problems.append(f"{name}: {n} answered, outside {lo}..{triggers}")
            for k in PER_ERROR:
                if r.mib.get(k, 0) != n:
                    problems.append(f"{name}: {k} is {r.mib.get(k, 0)}, not {n}")
            if r.mib.get("IcmpOutRateLimitGlobal", 0) != triggers - n:
                problems.append(f"{name}: OutRateLimitGlobal {r.mib.get('IcmpOutRateLimitGlobal', 0)}"
                                f" != {triggers} - {n}")
            if r.mib.get("IpExtOutOctets", 0) != sum(len(p) for p in r.raw_packets):
                problems.append(f"{name}: IpExtOutOctets differs from the errors captured")
            sports = [struct.unpack("!H", p[48:50])[0] for p in r.raw_packets]
            if sports != [40000 + i for i in range(n)]:
                problems.append(f"{name}: the errors are not about the first {n} datagrams "
                                f"in order: source ports {sports}")
            if len(r.sends) != n:
                problems.append(f"{name}: {len(r.sends)} icmp_send events for {n} errors")
        skip = set(PER_ERROR) | {"IcmpOutRateLimitGlobal", "IpExtOutOctets"}
        for k in sorted((set(c.mib) | set(rust.mib)) - skip):
            if c.mib.get(k, 0) != rust.mib.get(k, 0):
                problems.append(f"counter {k} differs: C {c.mib.get(k, 0)} Rust {rust.mib.get(k, 0)}")
        if c.drops != rust.drops:
            problems.append(f"drop reasons differ: C {c.drops} Rust {rust.drops}")
        n = min(len(c.packets), len(rust.packets))
        if c.packets[:n] != rust.packets[:n]:
            problems.append("the errors both runs sent differ")
        short, long_ = sorted((c.sends, rust.sends), key=len)
        if not set(short) <= set(long_):
            problems.append(f"icmp_send events differ: {sorted(set(short) - set(long_))} "
                            "only in the run that answered fewer")
        return problems
    return check


def draw_law(credit, longest, nmax=200):
    """[P(1), ..., P(longest - 1), P(>= longest)] of the number of errors sent from a
    credit of `credit`, if each error takes 0, 1 or 2 tokens with probability 1/3 each and
    errors go out while the credit is positive."""
    p = {}   # p[c][n]: probability that exactly n errors go out from credit c
    for c in range(1, credit + 1):
        row = [0.0] * (nmax + 1)
        for n in range(1, nmax + 1):
            q = row[n - 1] / 3                     # drew 0: the same credit, one error more
            for take in (1, 2):
                left = c - take
                q += (n == 1) / 3 if left <= 0 else p[left][n - 1] / 3
            row[n] = q
        p[c] = row
    law = p[credit][1:longest]
    return law + [1 - sum(law)]


def draw_trials(trials, credits=(1, 2)):
    """The distribution of icmp_global_consume's random draw, through the only thing that
    shows it: how many errors a known credit lets through. Each trial refills the bucket to
    exactly `credit` tokens (icmp_msgs_burst = credit and a per-second rate so high that
    any refill fills it; the last trial left it at 0 or below, and 20 ms have passed, so
    the first datagram refills it), stops refilling (icmp_msgs_per_sec 0), and sends
    datagrams until one is refused. From a credit of 1 the count is 1 + the number of
    leading 0 draws; from 2 it also depends on how often 2 is drawn: the two together fix
    the three probabilities."""
    def action(t, send):
        d = DutIcmp(t)
        hist = {c: {} for c in credits}   # credit -> {errors in a trial: trials}
        retries = 0
        i = 0
        try:
            for trial in range(trials):
                credit = credits[trial % len(credits)]
                d.set_limit(1000000, credit)
                time.sleep(0.025)
                if not d.trigger(t, send, i % 200):
                    # On a loaded host the guest's jiffies can trail the clock its sleep
                    # ran on, so that less than the 20 ms refill window has passed: one
                    # more try, well after it (a refused datagram takes no token).
                    retries += 1
                    i += 1
                    time.sleep(0.1)
                    if not d.trigger(t, send, i % 200):
                        raise AssertionError(f"trial {trial}: a refilled bucket refused "
                                             "twice, 25 and 125 ms after the refill")
                i += 1
                d.set_limit(0)
                n = 1
                while d.trigger(t, send, i % 200):
                    i += 1
                    n += 1
                i += 1
                hist[credit][n] = hist[credit].get(n, 0) + 1
        finally:
            d.close()
        t.obs["errors per trial"] = hist
        t.obs["refills retried"] = retries
    return action


# Chi-square critical values for a false failure rate of 1e-5, by degrees of freedom.
CHI2_1E5 = {1: 19.51, 2: 23.03, 3: 25.90, 4: 28.47}


def draw_bounds(c, rust):
    """Each run's counts per trial must fit the law of a uniform draw in {0, 1, 2}: a
    chi-square test over the bins 1, 2, 3 and >= 4 errors per trial, failing falsely once in
    100,000 runs. A draw that never gives 0 or 2, or that gives 0 half the time, fails it
    with 100 trials per credit."""
    problems = []
    for name, r in (("C", c), ("Rust", rust)):
        hist = r.obs.get("errors per trial", {})
        if not hist:
            problems.append(f"{name}: no trials")
        for credit, counts in sorted(hist.items()):
            law = draw_law(credit, 4)
            trials = sum(counts.values())
            seen = [counts.get(k, 0) for k in (1, 2, 3)]
            seen.append(trials - sum(seen))
            expected = [q * trials for q in law]
            chi2 = sum((o - e) ** 2 / e for o, e in zip(seen, expected))
            if chi2 > CHI2_1E5[len(law) - 1]:
                problems.append(f"{name}: from a credit of {credit}, errors per trial "
                                f"1/2/3/4+ were {seen}, expected about "
                                f"{[round(e, 1) for e in expected]} (chi-square {chi2:.1f})")
        answered = sum(n * k for v in hist.values() for n, k in v.items())
        if r.mib.get("IcmpOutDestUnreachs", 0) != answered:
            problems.append(f"{name}: {r.mib.get('IcmpOutDestUnreachs', 0)} errors counted, "
                            f"{answered} seen by the trials")
        trials = sum(sum(v.values()) for v in hist.values())
        retried = r.obs.get("refills retried", 0)
        if retried > trials // 10:
            problems.append(f"{name}: {retried} of {trials} refills needed a second try: "
                            "the bucket is not refilled after 20 ms")
        refused = trials + retried
        if r.mib.get("IcmpOutRateLimitGlobal", 0) != refused:
            problems.append(f"{name}: OutRateLimitGlobal is not one per trial and retry")
    return problems


def scenarios():
    s = []
    # Port unreachable (udp.c), quoting as much as fits 576 bytes.
    s.append(Scenario("udp_closed_port_56", send_ip(udp_to(dut)), topology=T,
                      sanity=error(3, 3)))
    s.append(Scenario("udp_closed_port_1400", send_ip(udp_to(dut, 1400)), topology=T,
                      sanity=error(3, 3)))
    s.append(Scenario("udp_closed_port_broadcast", send_ip(udp_to(lambda t: t.BCAST)),
                      topology=T, quiet="no error about a datagram to a broadcast address",
                      proof=NO_ICMP_CODE))
    s.append(Scenario("udp_closed_port_record_route", send_ip(udp_to(dut, options=RECORD_ROUTE)),
                      topology=T, sanity=error(3, 3)))
    # (The dut stamps its clock into the option of the packet it received, quoted, and of the
    # error: those bytes and the ICMP checksum vary.)
    s.append(Scenario("udp_closed_port_timestamp_option", send_ip(udp_to(dut, options=TIMESTAMP)),
                      topology=T, sanity=error(3, 3), mask=((24, 32), (34, 36), (64, 68))))
    s.append(Scenario("unknown_protocol", send_ip(lambda t, i: ipv4(
        t.PEER_ADDR, t.DUT_ADDR, 253, pattern(40))), topology=T, sanity=error(3, 2)))

    # Forwarding: TTL exceeded and fragmentation needed (ip_forward).
    s.append(Scenario("ttl_1_udp", send_ip(udp_to(far, ttl=1)), topology=T, sanity=error(11, 0)))
    s.append(Scenario("ttl_1_echo", send_ip(lambda t, i: ipv4(
        t.PEER_ADDR, t.FAR_ADDR, 1, echo(1, 1, pattern(32)), ttl=1)), topology=T,
        sanity=error(11, 0)))
    s.append(Scenario("ttl_1_icmp_error_no_error", send_ip(lambda t, i: ipv4(
        t.PEER_ADDR, t.FAR_ADDR, 1, icmp(3, 1, b"\0" * 4, pattern(28)), ttl=1)), topology=T,
        quiet="no ICMP error about an ICMP error",
        proof=CALLS_ICMP_SEND))
    s.append(Scenario("ttl_1_unknown_icmp_type_no_error", send_ip(lambda t, i: ipv4(
        t.PEER_ADDR, t.FAR_ADDR, 1, icmp(44, 0, b"\0" * 4, pattern(8)), ttl=1)), topology=T,
        quiet="an unknown ICMP type counts as an error: no error about it",
        proof=CALLS_ICMP_SEND))
    s.append(Scenario("ttl_1_first_fragment", send_ip(udp_to(far, 64, ttl=1, frag=IP_MF)),
                      topology=T, sanity=error(11, 0)))
    s.append(Scenario("ttl_1_later_fragment_no_error", send_ip(udp_to(far, 64, ttl=1, frag=10)),
                      topology=T, quiet="errors only about fragment 0",
                      proof=CALLS_ICMP_SEND))
    s.append(Scenario("frag_needed_udp_1400_over_1280", send_ip(udp_to(far, 1400, frag=IP_DF)),
                      setup=far_mtu(1280), topology=T, sanity=error(3, 4, info=1280)))
    s.append(Scenario("frag_needed_ping_df_1400_over_1280", send_ip(lambda t, i: ipv4(
        t.PEER_ADDR, t.FAR_ADDR, 1, echo(2, 1, pattern(1400)), frag=IP_DF)),
        setup=far_mtu(1280), topology=T, sanity=error(3, 4, info=1280)))
    s.append(Scenario("forwarded_ok_no_error", send_ip(udp_to(far, ttl=2, dport=7)), topology=T,
                      quiet="forwarded with TTL 2: nothing to report",
                      # far's port unreachable, which the dut forwards to the peer
                      proof=CALLS_ICMP_SEND))

    # A traceroute: TTL 1 dies at the dut, TTL 2 reaches far's closed port.
    s.append(Scenario("traceroute", send_ip(lambda t, i: ipv4(
        t.PEER_ADDR, t.FAR_ADDR, 17, udp(33000, 33434 + i, pattern(32)), ttl=1 + i, ident=0x100 + i),
        count=3), topology=T))

    # Reassembly timeout (ip_expire), with the first fragment received.
    s.append(Scenario("reassembly_timeout", reassembly_timeout, topology=T,
                      setup=set_dut(ipfrag_time=1), sanity=error(11, 1)))

    # Netfilter REJECT (nf_send_unreach -> icmp_send).
    for kind, code in (("port-unreachable", 3), ("host-unreachable", 1), ("admin-prohibited", 13)):
        s.append(Scenario(f"nft_reject_{kind}", send_ip(udp_to(dut, dport=7777)), topology=T,
                          setup=nft_reject(kind), sanity=error(3, code)))

    # Tunnels: too big for the IPIP tunnel's MTU -> icmp_ndo_send.
    s.append(Scenario("tunnel_frag_needed", send_ip(lambda t, i: ipv4(
        t.PEER_ADDR, "10.0.8.1", 17, udp(40000, 9, pattern(1400)), frag=IP_DF)),
        setup=tunnel_setup, topology=T, sanity=error(3, 4)))

    # Source address of errors about forwarded packets.
    for on in (0, 1):
        s.append(Scenario(f"errors_use_inbound_ifaddr_{on}", send_ip(udp_to(far, ttl=1)),
                          setup=inbound_ifaddr(on), topology=T, sanity=error(11, 0)))

    # RFC 5837 extensions (7.3's net.ipv4.icmp_errors_extension_mask): destination
    # unreachable, time exceeded and parameter problem errors quote 128 bytes, padded, and
    # add the incoming interface's index, address, name and MTU. Other errors, a mask of 0
    # and a locally generated error (no incoming interface) carry none.
    ext = set_dut(icmp_errors_extension_mask=1)
    s.append(Scenario("extension_port_unreach_short", send_ip(udp_to(dut)), topology=T,
                      setup=ext, sanity=first_problem(error(3, 3), rfc5837(84))))
    s.append(Scenario("extension_port_unreach_cut", send_ip(udp_to(dut, 1400)), topology=T,
                      setup=ext, sanity=first_problem(error(3, 3), rfc5837(128))))
    s.append(Scenario("extension_ttl_1_forwarded", send_ip(udp_to(far, ttl=1)), topology=T,
                      setup=ext, sanity=first_problem(error(11, 0), rfc5837(84))))
    s.append(Scenario("extension_frag_needed", send_ip(udp_to(far, 1400, frag=IP_DF)),
                      topology=T, setup=in_order(ext, far_mtu(1280)),
                      sanity=first_problem(error(3, 4), rfc5837(128))))
    s.append(Scenario("extension_mask_0", send_ip(udp_to(dut)), topology=T,
                      setup=set_dut(icmp_errors_extension_mask=0), sanity=error(3, 3)))

    # VRF: the error is routed in the table of the device the packet came in on.
    s.append(Scenario("vrf_udp_closed_port", send_ip(udp_to(dut)), setup=vrf_setup,
                      sanity=error(3, 3)))

    # Rate limits. The per-peer bucket (icmp_ratelimit) is deterministic: a new peer starts
    # with 60 s worth of tokens, capped at 6 messages' worth; at 10 s a token, a burst of 20
    # gets exactly 6 errors however long the VM takes to send it (at the default 1 s, a slow
    # burst earns a seventh). The global bucket takes 0, 1 or 2 random tokens per message
    # (against the SADDNS side channel): compared on what the draws cannot change, and on
    # the draws' distribution.
    s.append(Scenario("ratelimit_per_peer_burst_20", send_ip(udp_to(dut), count=20),
                      topology=T, setup=set_dut(icmp_ratelimit=10000),
                      sanity=first_problem(error(3, 3, n=6), counted("IcmpOutRateLimitHost", 14))))
    s.append(Scenario("ratelimit_global_credit_10", global_credit(10, 30), topology=T,
                      setup=set_dut(icmp_ratelimit=0), bounds=global_credit_bounds(10, 30)))
    s.append(Scenario("ratelimit_global_draw_distribution", draw_trials(200), topology=T,
                      setup=set_dut(icmp_ratelimit=0), bounds=draw_bounds))
    s.append(Scenario("ratelimit_off_burst_20", send_ip(udp_to(dut), count=20), topology=T,
                      setup=set_dut(icmp_ratelimit=0, icmp_msgs_per_sec=100000,
                                    icmp_msgs_burst=100000), sanity=error(3, 3, n=20)))
    s.append(Scenario("ratemask_excludes_port_unreach", send_ip(udp_to(dut), count=20),
                      topology=T, setup=set_dut(icmp_ratemask=0x1810),
                      sanity=error(3, 3, n=20)))

    # Routes that end in ip_error (route.c), not in icmp.c's callers.
    for name, dst, sanity in (("no_route", "10.0.4.1", error(3, 0)),
                              ("unreachable_route", "10.0.5.1", error(3, 1)),
                              ("prohibit_route", "10.0.6.1", error(3, 13))):
        s.append(Scenario(f"ip_error_{name}", send_ip(udp_to(lambda t, d=dst: d)), topology=T,
                          setup=error_routes, sanity=sanity))
    s.append(Scenario("ip_error_blackhole_route", send_ip(udp_to(lambda t: "10.0.7.1")),
                      topology=T, setup=error_routes, quiet="a blackhole route drops silently",
                      proof=NO_ICMP_CODE))

    # Source routes: the error goes back by the reversed route, to its first hop (faddr).
    for strict in (False, True):
        s.append(Scenario(f"udp_closed_port_{'strict' if strict else 'loose'}_source_route",
                          send_ip(udp_to(dut, options=lsrr(T.GHOST, strict))), topology=T,
                          setup=accept_source_route, sanity=error(3, 3)))

    # The quoted length follows a route MTU below 576.
    s.append(Scenario("udp_closed_port_route_mtu_552", send_ip(udp_to(dut, 500)), topology=T,
                      setup=mtu_552, sanity=error(3, 3)))

    # fwmark_reflect: the error carries the mark of the packet it is about.
    for reflect in (0, 1):
        s.append(Scenario(f"fwmark_reflect_{reflect}_error", send_ip(udp_to(dut)), topology=T,
                          setup=mark_errors(reflect), observe=marked_errors,
                          sanity=error(3, 3)))

    # Errors generated outside icmp.c's callers above: redirects while forwarding, a next
    # hop that does not answer ARP, a GRE packet no tunnel takes; an ESP packet without
    # state gets no error.
    s.append(Scenario("redirect_sent", send_ip(udp_to(lambda t: "10.0.9.1")), topology=T,
                      setup=redirect_route(1), sanity=error(5, 1, info=0x0A00014D)))
    s.append(Scenario("redirect_send_redirects_0", send_ip(udp_to(lambda t: "10.0.9.1")),
                      topology=T, setup=redirect_route(0),
                      quiet="send_redirects is 0: forwarded without a redirect",
                      proof=NO_ICMP_CODE))
    for name, opts in (("", b""), ("_record_route", RECORD_ROUTE)):
        s.append(Scenario(f"arp_failure_host_unreach{name}",
                          after(send_ip(udp_to(lambda t: "10.0.9.1", options=opts)), 1.0),
                          topology=T, setup=unresolved_next_hop, sanity=error(3, 1)))
    s.append(Scenario("gre_without_tunnel", send_ip(gre_packet), topology=T,
                      sanity=error(3, 3)))
    s.append(Scenario("esp_unknown_spi_no_error", send_ip(esp_packet), topology=T,
                      quiet="xfrm drops ESP without state silently",
                      proof=NO_ICMP_CODE))

    # Both CPUs answering at once, each through its own control socket.
    s.append(Scenario("two_cpus_echo_and_errors", from_two_cpus(200), topology=T,
                      setup=set_dut(icmp_ratelimit=0, icmp_msgs_per_sec=100000,
                                    icmp_msgs_burst=100000),
                      sanity=first_problem(counted("IcmpOutEchoReps", 200),
                                           counted("IcmpOutDestUnreachs", 200)),
                      verify=on_both_cpus(200), bounds=same_in_any_order))

    # Rate-limit exemptions with an empty global bucket: "fragmentation needed" is never
    # limited, and errors about packets that came in on lo are not (nor, going out on lo,
    # by the per-peer limit).
    no_global = set_dut(icmp_msgs_per_sec=0, icmp_msgs_burst=0)
    s.append(Scenario("frag_needed_global_limit_0", send_ip(udp_to(far, 1400, frag=IP_DF)),
                      setup=in_order(far_mtu(1280), no_global), topology=T,
                      sanity=error(3, 4, info=1280)))
    s.append(Scenario("loopback_exempt_from_limits", udp_to_loopback(10), topology=T,
                      setup=no_global, sanity=unreachs(10)))
    return s


def main():
    require_vm("send_errors")
    ktap = Ktap("send_errors: ICMP errors the host sends, built-in C vs rust_icmp")
    run_differential(ktap, select(scenarios(), sys.argv[1:]), both=True)
    ktap.finish()


if __name__ == "__main__":
    main()
