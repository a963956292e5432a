#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Differential tests of the receive path: echo and the other queries, malformed messages,
broadcast/multicast rules and the echo sysctls. Built-in C vs rust_icmp, same boot."""

import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from difftest import Scenario, run_differential, select  # noqa: E402
import socket  # noqa: E402

from icmptest import (InNetns, Ktap, Topology, checksum, echo, icmp, ipv4,  # noqa: E402
                      pattern, require_vm, sh, sysctl, vrf_setup)

# Offsets in a reply without IP options (IHL 5).
ICMP_CSUM = (22, 24)
TS_RECV_XMIT = (32, 40)


def replies(n, type_=0):
    """Sanity check: the C run sent `n` packets, the first of ICMP type `type_`."""
    def check(r):
        if len(r.raw_packets) != n:
            return f"expected {n} packets from the dut, got {len(r.raw_packets)}"
        first = r.raw_packets[0] if n else b""
        if n and first[(first[0] & 15) * 4] != type_:
            return f"expected ICMP type {type_}, got {first[(first[0] & 15) * 4]}"
        return None
    return check


def no_reply(r):
    return f"expected no packet from the dut, got {len(r.raw_packets)}" if r.raw_packets else None


def ping(size, seq=1):
    def action(t, send):
        send.icmp(t.DUT_ADDR, echo(0x4d2, seq, pattern(size)))
    return action


def set_dut(name, value):
    def setup(t):
        sysctl(t.DUT, name, value)
    return setup


def raw_ip(build):
    """Sends a hand-built IPv4 packet from the peer to the dut."""
    def action(t, send):
        send.ip(build(t))
    return action


RECORD_ROUTE = bytes([7, 11, 4]) + bytes(8) + b"\0"   # RR with room for two addresses, EOL


def scenarios():
    s = []
    # Echo with the payload sizes of `ping -s`: 0, 56, the largest unfragmented on a 1500
    # MTU, fragmented, and the largest an IPv4 datagram can carry.
    for size in (0, 56, 1472, 8000, 65000, 65507):
        fragments = -(-(size + 8) // 1480)   # 1480 bytes of IP payload per fragment
        s.append(Scenario(f"echo_{size}", ping(size), sanity=replies(fragments)))
    s.append(Scenario("echo_burst_32", lambda t, send: [
        send.icmp(t.DUT_ADDR, echo(0x99, seq, pattern(64))) for seq in range(32)],
        sanity=replies(32)))
    # Replies whose 16-bit words add up to zero: C's checksum is then what the kernel's
    # checksum code makes of it, 0 on the test kernel (x86-64's copy starts its sum from ~0),
    # 0xffff on the debug one (the generic copy of a KASAN kernel starts from 0); the
    # differential run compares whichever it is. Without and with IP options.
    s.append(Scenario("echo_reply_all_zeros", lambda t, send: send.icmp(
        t.DUT_ADDR, echo(0, 0, bytes(8))), sanity=replies(1)))
    s.append(Scenario("echo_reply_words_sum_ffff", lambda t, send: send.icmp(
        t.DUT_ADDR, echo(0xffff, 0, bytes(8))), sanity=replies(1)))
    s.append(Scenario("echo_reply_all_zeros_copied", lambda t, send: send.icmp(
        t.DUT_ADDR, echo(0, 0, b""), options=RECORD_ROUTE), sanity=replies(1)))
    s.append(Scenario("echo_reply_words_sum_ffff_copied", lambda t, send: send.icmp(
        t.DUT_ADDR, echo(0xffff, 0, bytes(8)), options=RECORD_ROUTE), sanity=replies(1)))
    s.append(Scenario("echo_ignore_all", ping(56),
                      setup=set_dut("net.ipv4.icmp_echo_ignore_all", 1), sanity=no_reply))
    s.append(Scenario("echo_record_route", lambda t, send: send.icmp(
        t.DUT_ADDR, echo(7, 7, pattern(24)), options=RECORD_ROUTE), sanity=replies(1)))

    # Broadcast and multicast destinations (RFC 1122 3.2.2.6, 3.2.2.8).
    def bcast(t, send):
        send.icmp(t.BCAST, echo(1, 1, pattern(32)))
    s.append(Scenario("echo_broadcast_ignored", bcast,
                      setup=set_dut("net.ipv4.icmp_echo_ignore_broadcasts", 1), sanity=no_reply))
    s.append(Scenario("echo_broadcast_answered", bcast,
                      setup=set_dut("net.ipv4.icmp_echo_ignore_broadcasts", 0),
                      sanity=replies(1)))

    def mcast_setup(ignore):
        def setup(t):
            sh(f"ip -n {t.PEER} route add 224.0.0.0/4 dev veth0")
            sysctl(t.DUT, "net.ipv4.icmp_echo_ignore_broadcasts", ignore)
        return setup

    def mcast(t, send):
        send.icmp("224.0.0.1", echo(2, 2, pattern(32)), ttl=1)
    s.append(Scenario("echo_multicast_ignored", mcast, setup=mcast_setup(1), sanity=no_reply))
    s.append(Scenario("echo_multicast_answered", mcast, setup=mcast_setup(0),
                      sanity=replies(1)))
    s.append(Scenario("timestamp_broadcast_ignored", lambda t, send: send.icmp(
        t.BCAST, icmp(13, 0, struct.pack("!HH", 5, 5), bytes(12))),
        setup=set_dut("net.ipv4.icmp_echo_ignore_broadcasts", 1), sanity=no_reply))
    s.append(Scenario("info_request_broadcast", lambda t, send: send.icmp(
        t.BCAST, icmp(15, 0, struct.pack("!HH", 5, 5))),
        setup=set_dut("net.ipv4.icmp_echo_ignore_broadcasts", 0), sanity=no_reply))
    s.append(Scenario("address_mask_broadcast", lambda t, send: send.icmp(
        t.BCAST, icmp(17, 0, struct.pack("!HH", 5, 5), bytes(4))), sanity=no_reply))
    # Echo replies and extended echo replies (type 43) to a broadcast are dropped as invalid
    # (INVALID_PROTO, InErrors); since 7.3 icmp_rcv gives ping_rcv replies only after the
    # broadcast check.
    for name, type_ in (("echo_reply", 0), ("ext_echo_reply", 43)):
        s.append(Scenario(f"{name}_broadcast", lambda t, send, ty=type_: send.icmp(
            t.BCAST, icmp(ty, 0, struct.pack("!HH", 9, 9), pattern(16))), sanity=no_reply))

    # Timestamps: the reply carries our clock, masked (with the checksum it changes, which is
    # verified first), after a check that it is the time of the run.
    def clock_of_run(r):
        """Receive and transmit timestamps: milliseconds since midnight UTC, within the
        time the run's action took (100 ms of slack for the clocks' granularity)."""
        lo, hi = ((int(x * 1000) - d) % 86400000 for x, d in ((r.start, 100), (r.end, -100)))
        for p in r.raw_packets:
            for ts in struct.unpack("!II", p[TS_RECV_XMIT[0]:TS_RECV_XMIT[1]]):
                inside = lo <= ts <= hi if lo <= hi else (ts >= lo or ts <= hi)
                if not inside:
                    return f"timestamp {ts} ms is not within the run ({lo}..{hi} ms)"
        return None

    s.append(Scenario("timestamp", lambda t, send: send.icmp(
        t.DUT_ADDR, icmp(13, 0, struct.pack("!HH", 0x77, 1), struct.pack("!III", 1000, 0, 0))),
        mask=(ICMP_CSUM, TS_RECV_XMIT), sanity=replies(1, type_=14), verify=clock_of_run))
    s.append(Scenario("timestamp_short", lambda t, send: send.icmp(
        t.DUT_ADDR, icmp(13, 0, struct.pack("!HH", 0x77, 2), b"\x01\x02")), sanity=no_reply))

    # Types the host takes in silently, and echo replies nobody waits for.
    for type_ in (1, 2, 6, 7, 9, 10, 14, 15, 16, 17, 18):
        s.append(Scenario(f"discard_type_{type_}", lambda t, send, ty=type_: send.icmp(
            t.DUT_ADDR, icmp(ty, 0, struct.pack("!HH", 9, 9), pattern(12))), sanity=no_reply))
    s.append(Scenario("echo_reply_no_socket", lambda t, send: send.icmp(
        t.DUT_ADDR, echo(0x4321, 1, pattern(8), type_=0)), sanity=no_reply))

    # Echo replies for a ping socket of the dut (ping_rcv), which exists only if its group is
    # in net.ipv4.ping_group_range; without one, the reply the peer sends finds no socket.
    def ping_socket(t, send):
        try:
            with InNetns(t.DUT):
                s_ = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        except OSError as e:
            t.obs["socket"] = e.errno
            send.icmp(t.DUT_ADDR, echo(0x321, 7, pattern(24), type_=0))
            return
        t.keep.append(s_)
        s_.bind((t.DUT_ADDR, 0x321))
        s_.settimeout(2)
        s_.sendto(echo(0, 7, pattern(24)), (t.PEER_ADDR, 0))
        try:
            t.obs["reply"] = s_.recv(100).hex()   # the peer's kernel answers
        except socket.timeout:
            t.obs["reply"] = None

    def got_reply(r):
        return None if r.obs.get("reply") else "the ping socket got no echo reply"

    def no_socket(r):
        return None if r.obs.get("socket") else "a ping socket was created outside the range"

    for group, check in (("0 2147483647", got_reply), ("1 0", no_socket)):
        s.append(Scenario(f"ping_socket_reply_group_{group.replace(' ', '_')}", ping_socket,
                          setup=set_dut("net.ipv4.ping_group_range", group), sanity=check))

    # Echo with a source route whose hops are used up: the reply goes back by the reversed
    # route, first to the hop (faddr), whose neighbour entry is the peer's MAC.
    def source_routed(strict):
        opt = bytes([137 if strict else 131, 7, 8]) + socket.inet_aton(Topology.GHOST) + b"\0"
        return raw_ip(lambda t: ipv4(t.PEER_ADDR, t.DUT_ADDR, 1, echo(0x52, 1, pattern(24)),
                                     options=opt))

    def accept_source_route(t):
        for conf in ("all", "veth0"):
            sysctl(t.DUT, f"net.ipv4.conf.{conf}.accept_source_route", 1)

    for strict in (False, True):
        s.append(Scenario(f"echo_{'strict' if strict else 'loose'}_source_route",
                          source_routed(strict), setup=accept_source_route,
                          sanity=replies(1)))

    # Echo inside a VRF: the reply is routed in the VRF's table.
    s.append(Scenario("echo_in_vrf", ping(56), setup=vrf_setup, sanity=replies(1)))

    # icmp_ratemask with echo replies in it: the per-peer limit (a burst of 6) applies.
    def pings(n):
        def action(t, send):
            for i in range(n):
                send.icmp(t.DUT_ADDR, echo(0x4d2, i + 1, pattern(16)))
        return action

    s.append(Scenario("echo_replies_in_ratemask_burst_20", pings(20),
                      setup=set_dut("net.ipv4.icmp_ratemask", 0x1819), sanity=replies(6)))

    # Malformed messages.
    s.append(Scenario("bad_checksum", lambda t, send: send.icmp(
        t.DUT_ADDR, icmp(8, 0, struct.pack("!HH", 1, 1), pattern(16), csum=0xdead)),
        sanity=no_reply))
    s.append(Scenario("truncated_header", raw_ip(lambda t: ipv4(
        t.PEER_ADDR, t.DUT_ADDR, 1, bytes([8, 0]) + struct.pack("!H", checksum(bytes([8, 0]))))),
        sanity=no_reply))
    s.append(Scenario("empty_icmp", raw_ip(lambda t: ipv4(t.PEER_ADDR, t.DUT_ADDR, 1, b"")),
                      sanity=no_reply))
    s.append(Scenario("unknown_type_44", lambda t, send: send.icmp(
        t.DUT_ADDR, icmp(44, 0, bytes(4), pattern(8))), sanity=no_reply))
    s.append(Scenario("unknown_type_255", lambda t, send: send.icmp(
        t.DUT_ADDR, icmp(255, 3, bytes(4))), sanity=no_reply))
    return s


def main():
    require_vm("rcv_echo")
    ktap = Ktap("rcv_echo: receive path, built-in C vs rust_icmp")
    run_differential(ktap, select(scenarios(), sys.argv[1:]), both=True)
    ktap.finish()


if __name__ == "__main__":
    main()
