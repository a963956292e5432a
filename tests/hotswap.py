#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Hot swap under load: rust_icmp is loaded and unloaded CYCLES times (default 20; make
stress runs 200) while the peer sends echo requests at a steady rate, each with a serial
number, plus datagrams to a closed UDP port of the dut (port unreachables come from
__icmp_send, C or Rust depending on the moment) and, unaccounted, a flood of both from a
second process. Every echo request must be answered exactly once.

What the built-in code itself loses under the same load is the only loss allowed: a
baseline phase of the same traffic with the built-in code and no swaps measures it first,
and the swap phase may not lose a larger share of its requests than the baseline did (with
a baseline of no loss, it may lose none). Duplicated replies are never allowed. The kernel
log is scanned for splats by run_all.sh / stress.sh after the test.

    tests/hotswap.py [CYCLES]        env: HOTSWAP_CYCLES (when no argument), HOTSWAP_RATE (echo requests/s, default 200),
                                          HOTSWAP_BASELINE (seconds, default 15)
"""

import json
import os
import random
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from icmptest import (Ktap, Topology, load_module, module_counters,  # noqa: E402
                      module_loaded, require_vm, sysctl, unload_module)

LIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")
RATE = float(os.environ.get("HOTSWAP_RATE", "200"))
BASELINE = float(os.environ.get("HOTSWAP_BASELINE", "15"))


class Traffic:
    """The accounted echo stream and the unaccounted flood, for the duration of a block."""

    def __init__(self, topo):
        self.topo = topo

    def __enter__(self):
        t = self.topo
        self.account = subprocess.Popen(
            [sys.executable, os.path.join(LIB, "echo_account.py"), t.PEER, t.DUT_ADDR,
             str(RATE), "4"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        # The phase starts when the accounted stream does: a fixed pause is not enough where
        # starting Python takes longer than the phase (4 vCPUs of the debug kernel on one
        # host thread measured a 15 s baseline as 0.1 s of traffic).
        ready, _, _ = select.select([self.account.stdout], [], [], 600)
        line = self.account.stdout.readline().strip() if ready else ""
        if line != "sending":
            self.account.kill()
            self.account.wait()
            raise RuntimeError(f"echo_account.py did not start sending ({line or 'no output'})")
        self.flood = subprocess.Popen(
            [sys.executable, os.path.join(LIB, "flood.py"), t.PEER, t.DUT_ADDR, "100000"],
            stdout=subprocess.DEVNULL)
        time.sleep(1)
        return self

    def __exit__(self, *exc):
        self.flood.kill()
        self.flood.wait()
        try:
            out, _ = self.account.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # Killed, so that it does not hold the output pipe of run_all.sh open.
            self.account.kill()
            self.account.wait()
            raise RuntimeError("echo_account.py did not report within 60 s of being told to stop")
        self.result = json.loads(out)
        return False


def mib_out(ns, name):
    out = subprocess.run(["ip", "netns", "exec", ns, "nstat", "-az", name],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == name:
            return int(f[1])
    return 0


def softnet_dropped():
    """Packets the input queues dropped, all CPUs (/proc/net/softnet_stat, second column):
    lost before any protocol handler saw them."""
    with open("/proc/net/softnet_stat", encoding="ascii") as f:
        return sum(int(line.split()[1], 16) for line in f if line.strip())


class Where:
    """Where a phase's losses can have happened: the input queues' drops, and the echo
    requests that reached the dut's ICMP code (C's or Rust's, which count the same MIB)
    against the replies it sent."""

    def __init__(self, topo):
        self.topo = topo

    def __enter__(self):
        self.start = self.now()
        return self

    def now(self):
        return (softnet_dropped(), mib_out(self.topo.DUT, "IcmpInEchos"),
                mib_out(self.topo.DUT, "IcmpOutEchoReps"))

    def __exit__(self, *exc):
        end = self.now()
        self.dropped, self.in_echos, self.out_reps = (e - s for e, s in zip(end, self.start))
        return False

    def describe(self):
        return (f"input queues dropped {self.dropped} packets; the dut's ICMP code got "
                f"{self.in_echos} echo requests (flood included) and sent {self.out_reps} "
                "replies")


def describe(r):
    return (f"{r['requests']} requests in {r['seconds']} s, {r['answered_once']} answered "
            f"once, {r['lost']} lost{' ' + str(r['first_lost']) if r['lost'] else ''}, "
            f"{r['duplicates']} duplicates, {r['port_unreachables']} port unreachables "
            f"for {r['udp_sent']} datagrams; the receiving socket ({r['rcvbuf']} bytes) "
            f"dropped {r['socket_drops']} packets, flood included")


def main():
    require_vm("hotswap.py")
    cycles = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("HOTSWAP_CYCLES", 20))
    ktap = Ktap(f"hotswap.py: {cycles} load/unload cycles under traffic")
    ktap.plan(6)
    if module_loaded():
        unload_module()
    rng = random.Random(cycles)

    with Topology() as topo:
        # No rate limit: every trigger is answered, by C or by Rust.
        for k, v in (("icmp_ratelimit", 0), ("icmp_msgs_per_sec", 1000000),
                     ("icmp_msgs_burst", 1000000)):
            sysctl(topo.DUT, f"net.ipv4.{k}", v)

        with Where(topo) as base_where, Traffic(topo) as base:
            time.sleep(BASELINE)
        b = base.result
        ktap.result(b["requests"] > 0 and b["duplicates"] == 0,
                    f"baseline, built-in code, no swaps: {describe(b)}")
        ktap.diag(f"baseline: {base_where.describe()}")

        failure, done = None, 0
        rust_in = rust_out = 0    # what rust_icmp's own counters saw, summed over the loads
        swaps_start = time.monotonic()
        with Where(topo) as swap_where, Traffic(topo) as swap:
            for i in range(cycles):
                try:
                    load_module()
                    time.sleep(rng.uniform(0, 0.3))
                    m = module_counters(topo.DUT) or {}
                    rust_in += m.get("IcmpInMsgs", 0)
                    rust_out += m.get("IcmpOutMsgs", 0)
                    unload_module()
                    time.sleep(rng.uniform(0, 0.3))
                    done += 1
                except Exception as e:  # noqa: BLE001 - reported below
                    failure = f"cycle {i + 1}: {e}"
                    break
        swap_secs = time.monotonic() - swaps_start
        s = swap.result
        ktap.result(failure is None and not module_loaded(),
                    f"{cycles} cycles of insmod + scripts/unload in {swap_secs:.0f} s "
                    f"({swap_secs / max(cycles, 1):.2f} s per cycle)", failure)
        ktap.result(rust_in > 0 and rust_out > 0,
                    f"rust_icmp handled traffic while loaded: {rust_in} messages in, {rust_out} "
                    "out (its own counters, read before each unload)")
        ktap.diag(f"swap phase: {describe(s)}")
        ktap.diag(f"swap phase: {swap_where.describe()}")
        ktap.result(s["duplicates"] == 0, "no echo request was answered twice",
                    f"{s['duplicates']} duplicate replies")
        # The share of requests C lost in the baseline, applied to the swap phase's requests.
        allowed = b["lost"] * s["requests"] // max(b["requests"], 1)
        ktap.result(s["lost"] <= allowed,
                    f"echo requests lost while swapping: {s['lost']} (allowed, from the "
                    f"built-in code's baseline loss rate: {allowed})",
                    f"lost serials (first 10): {s['first_lost']}")
        # Figures for stress.sh's summary.
        ktap.diag(f"stress: cycles={done}")
        ktap.diag(f"stress: requests={s['requests']}")
        ktap.diag(f"stress: replies={s['answered_once'] + s['duplicates']}")
        ktap.diag(f"stress: lost={s['lost']}")
        ktap.diag(f"stress: allowed={allowed}")
        replies = mib_out(topo.DUT, "IcmpOutEchoReps")
        ok = subprocess.run(["ip", "netns", "exec", topo.PEER, "ping", "-c", "2", "-i", "0.2",
                             "-W", "2", topo.DUT_ADDR], capture_output=True).returncode == 0
        ktap.result(ok, f"after the last unload the built-in code answers ping "
                    f"(the dut sent {replies} echo replies in all)")
    ktap.finish()


if __name__ == "__main__":
    main()
