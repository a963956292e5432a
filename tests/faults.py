#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Differential tests of allocation failures on the packet path: the ICMP errors and echo
replies the dut sends when the buffer for the message cannot be allocated. Built-in C vs
rust_icmp, same boot.

failslab and fail_page_alloc fail the allocations whose call chain passes through
sock_alloc_send_pskb (their stack-trace filter, require-start/require-end): that is where
both C and Rust (ip_append_data, from the control socket) get the buffer for a message. C
counts each message it could not build as OutErrors (and IP's OutDiscards) and sends
nothing; so must Rust, and leak nothing (make stress runs this on the debug kernel, whose
kmemleak is then checked). Allocations that only C makes (its struct icmp_bxm) or only Rust
are not failed: the accounting differs there by design.

Every sender uses sock_alloc_send_pskb too, so while all of its allocations fail nothing
may send: the fragments whose reassembly times out are sent before the faults are on.
TTL-expiring datagrams and echo requests are sent while the faults are on, from an
IP_HDRINCL raw socket, whose buffer does not come through ip_append_data: there the faults
are limited to allocations under ip_append_data, which only the dut's message makes.

Needs the debug kernel (make kernel DEBUG=1: CONFIG_FAULT_INJECTION_STACKTRACE_FILTER); on
other kernels each scenario is an environment skip."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from difftest import Scenario, first_problem, run_differential, select  # noqa: E402
from icmptest import Ktap, echo, ipv4, pattern, require_vm  # noqa: E402
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
    under sock_alloc_send_pskb (or the function of `within`) while the block runs."""

    def __init__(self, times=-1, within=("sock_alloc_send_pskb",)):
        self.times = times
        self.start, self.end = text_range(within)
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


def paced_under_faults(n, times, packet):
    """With the faults on, limited to allocations under ip_append_data (which the peer's
    IP_HDRINCL socket does not pass through), the peer sends `packet(t, i)` for each i below
    `n`, 0.2 s apart, then gives the dut 0.5 s to answer the last."""
    def action(t, send):
        with SendBufferFaults(times, within=("ip_append_data",)):
            for i in range(n):
                if i:
                    time.sleep(0.2)
                send.ip(packet(t, i))
            time.sleep(0.5)
    return action


def ttl_1_datagrams(n, times=-1):
    """`n` UDP datagrams to far with TTL 1: the dut's time exceeded errors need a buffer each.
    (Until the faults could be limited to ip_append_data, TCP SYNs carried the TTL, and a slow
    guest retransmitted them after the faults were off.)"""
    return paced_under_faults(n, times, lambda t, i: ipv4(
        t.PEER_ADDR, t.FAR_ADDR, 17, udp(41000 + i, 9, pattern(32)), ttl=1, ident=0x4343 + i))


def echo_requests(n, times=-1):
    """`n` echo requests to the dut: its replies need a buffer each."""
    return paced_under_faults(n, times, lambda t, i: ipv4(
        t.PEER_ADDR, t.DUT_ADDR, 1, echo(0x4242, i + 1, pattern(56))))


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
    s.append(Scenario("ttl_exceeded_all_allocations_fail", ttl_1_datagrams(3), topology=T,
                      sanity=out_errors(3, 0)))
    s.append(Scenario("ttl_exceeded_first_allocation_fails", ttl_1_datagrams(3, times=1),
                      topology=T, sanity=first_problem(out_errors(1, 2), error(11, 0, n=2))))
    s.append(Scenario("echo_replies_all_allocations_fail", echo_requests(3), topology=T,
                      sanity=out_errors(3, 0)))
    s.append(Scenario("echo_replies_first_allocation_fails", echo_requests(3, times=1),
                      topology=T, sanity=first_problem(out_errors(1, 2), error(0, 0, n=2))))
    return s


def main():
    require_vm("faults")
    ktap = Ktap("faults: allocation failures while building ICMP errors and echo replies, "
                "built-in C vs rust_icmp")
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
