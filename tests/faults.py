#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Differential tests of allocation failures on the packet path: the ICMP errors the dut
sends when the buffer for the error cannot be allocated. Built-in C vs rust_icmp, same boot.

failslab and fail_page_alloc fail the allocations whose call chain passes through
sock_alloc_send_pskb (their stack-trace filter, require-start/require-end): that is where
both C (ip_append_data) and Rust (a new buffer, or ip_append_data) get the buffer for an
error from the control socket. C counts each error it could not build as OutErrors (and
IP's OutDiscards) and sends nothing; so must Rust, and leak nothing (make stress runs this
on the debug kernel, whose kmemleak is then checked). Allocations that only C makes (its
struct icmp_bxm) or only Rust are not failed: the accounting differs there by design.

Every sender uses sock_alloc_send_pskb too, so nothing may send while the faults are on:
the triggers are sent before, and their errors come from timers (reassembly timeouts) or
from the peer kernel's own TCP SYNs (which it allocates otherwise).

Needs the debug kernel (make kernel DEBUG=1: CONFIG_FAULT_INJECTION_STACKTRACE_FILTER); on
other kernels each scenario is an environment skip.

Echo replies are not tested here: rust_icmp answers most echo requests in place, in the
request's own buffer, so it allocates nothing where C's icmp_reply allocates the reply (see
README, "The in-place echo reply"); an allocation failure there is a difference by design."""

import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from difftest import Scenario, first_problem, run_differential, select  # noqa: E402
from icmptest import InNetns, Ktap, ipv4, mib, pattern, require_vm, sysctl  # noqa: E402
from send_errors import IP_MF, T, error, set_dut, udp  # noqa: E402

DBG = "/sys/kernel/debug"
FAULTS = ("failslab", "fail_page_alloc")


_ranges = {}


def text_range(names):
    """[start, end) of the first of `names` found in /proc/kallsyms: from its address to the
    next text symbol's. (Reading kallsyms takes seconds on the debug kernel: done once.)"""
    if names not in _ranges:
        _ranges[names] = _text_range(names)
    return _ranges[names]


def _text_range(names):
    text = []
    with open("/proc/kallsyms") as f:
        for line in f:
            addr, kind, name = line.split()[:3]
            if kind in "tT":
                text.append((int(addr, 16), name))
    text.sort()
    for want in names:
        for i, (addr, name) in enumerate(text):
            if name == want and addr:
                return addr, next(a for a, _ in text[i + 1:] if a > addr)
    raise LookupError(f"none of {names} in /proc/kallsyms (is kptr_restrict hiding them?)")


def write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


class SendBufferFaults:
    """`with SendBufferFaults(times):` fails the next `times` allocations (-1: all) made
    under sock_alloc_send_pskb while the block runs."""

    def __init__(self, times=-1):
        self.times = times
        self.start, self.end = text_range(("sock_alloc_send_pskb",))
        # A page allocation there happens only when a slab refills, at times the runs do
        # not share: fail pages only where everything fails anyway.
        self.faults = FAULTS if times == -1 else ("failslab",)

    def __enter__(self):
        for f in self.faults:
            d = f"{DBG}/{f}"
            write(f"{d}/verbose", 0)
            write(f"{d}/ignore-gfp-wait", "N")
            write(f"{d}/stacktrace-depth", 32)
            write(f"{d}/require-start", self.start)
            write(f"{d}/require-end", self.end)
            write(f"{d}/interval", 1)
            write(f"{d}/times", self.times)
            write(f"{d}/probability", 100)
        if "fail_page_alloc" in self.faults:
            write(f"{DBG}/fail_page_alloc/ignore-gfp-highmem", "N")
            write(f"{DBG}/fail_page_alloc/min-order", 0)
        return self

    def __exit__(self, *exc):
        for f in self.faults:
            write(f"{DBG}/{f}/probability", 0)
            write(f"{DBG}/{f}/require-end", 0)
        return False


def reassembly_timeouts(n, times=-1):
    """The peer sends the first fragments of `n` datagrams (IDs 0x4242...), 0.3 s apart, then
    the faults go on; two seconds after each fragment the dut's reassembly timer expires and
    sends "fragment reassembly time exceeded" (ip_expire), from timer context, in the order
    the fragments came (0.3 s is more than the timer wheel's granularity there)."""
    def action(t, send):
        faults = SendBufferFaults(times)
        for i in range(n):
            if i:
                time.sleep(0.3)
            send.ip(ipv4(t.PEER_ADDR, t.DUT_ADDR, 17, udp(40000 + i, 9, pattern(64)),
                         frag=IP_MF, ident=0x4242 + i))
        with faults:
            time.sleep(2.5 + 0.3 * n)
    return action


def syns_with_ttl_1(n, times=-1):
    """With the faults on, the peer's kernel sends `n` TCP SYNs to far with TTL 1 (TCP
    allocates its segments without sock_alloc_send_pskb); the dut's time exceeded errors
    need a buffer each. The connects are non-blocking and abandoned, so no SYN is sent
    again."""
    def action(t, send):
        faults = SendBufferFaults(times)
        socks = []
        for i in range(n):
            with InNetns(t.PEER):
                s_ = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s_.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
            s_.setblocking(False)
            s_.bind((t.PEER_ADDR, 41000 + i))
            socks.append(s_)
        before = mib(t.DUT)["IpInReceives"]
        try:
            with faults:
                for i, s_ in enumerate(socks):
                    s_.connect_ex((t.FAR_ADDR, 80))
                deadline = time.monotonic() + 5
                while mib(t.DUT)["IpInReceives"] - before < n:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the SYNs did not reach the dut")
                    time.sleep(0.02)
        finally:
            for s_ in socks:
                s_.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s_.close()
    return action


def peer_tcp(t):
    """No TCP timestamps in the peer's SYNs: fewer bytes vary between runs."""
    sysctl(t.PEER, "net.ipv4.tcp_timestamps", 0)


# In a time exceeded about a SYN: the ICMP checksum (verified first), the quoted IP ID and
# header checksum, the SYN's sequence number and TCP checksum.
SYN_ERROR_MASK = ((22, 24), (32, 34), (38, 40), (52, 56), (64, 66))


def out_errors(n, sent):
    """Sanity of the C run: `n` errors counted as OutErrors, `sent` sent."""
    def check(r):
        got = (r.mib.get("IcmpOutErrors", 0), len(r.raw_packets))
        return None if got == (n, sent) else \
            f"expected {n} OutErrors and {sent} packets, got {got[0]} and {got[1]}"
    return check


def scenarios():
    s = []
    frag_time = set_dut(ipfrag_time=2)
    s.append(Scenario("reassembly_timeouts_all_allocations_fail", reassembly_timeouts(3),
                      topology=T, setup=frag_time, sanity=out_errors(3, 0)))
    s.append(Scenario("reassembly_timeouts_first_allocation_fails",
                      reassembly_timeouts(3, times=1), topology=T, setup=frag_time,
                      sanity=first_problem(out_errors(1, 2), error(11, 1, n=2))))
    s.append(Scenario("ttl_exceeded_all_allocations_fail", syns_with_ttl_1(3), topology=T,
                      setup=peer_tcp, mask=SYN_ERROR_MASK, sanity=out_errors(3, 0)))
    s.append(Scenario("ttl_exceeded_first_allocation_fails", syns_with_ttl_1(3, times=1),
                      topology=T, setup=peer_tcp, mask=SYN_ERROR_MASK,
                      sanity=first_problem(out_errors(1, 2), error(11, 0, n=2))))
    return s


def main():
    require_vm("faults")
    ktap = Ktap("faults: allocation failures while building ICMP errors, built-in C vs rust_icmp")
    if not os.path.exists(f"{DBG}/failslab/require-start"):
        ktap.plan(len(scenarios()))
        for sc in scenarios():
            ktap.skip(sc.name, "environment: this kernel has no failslab stack-trace filter "
                      "(the debug kernel of make stress has one)")
        ktap.finish()
        return
    run_differential(ktap, select(scenarios(), sys.argv[1:]))
    ktap.finish()


if __name__ == "__main__":
    main()
