#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""The report of `make bench`: build/bench/report.md, report.json and rounds.png from the
records tests/bench.sh wrote, one JSON object a line, in each boot.

    report.py --out DIR --boot VCPUS:STATUS:RAW.jsonl [--boot ...]

VCPUS is a vCPU count, `insns` for the 1-vCPU boot with the instruction-counting QEMU
plugin (tools/insncount), whose runs this script maps to kernel functions, or `steer` for
the 2-vCPU plugin boot where one vCPU sends and the other answers (tests/bench.sh,
BENCH_STEER), whose counts it splits by vCPU. STATUS is the
boot's exit status (qemu/run's): a boot that failed is reported as failed,
with whatever it recorded before. Every metric is reported per vCPU count as the median of
its rounds for C and for Rust, their ratio (Rust/C), the spread of each ((max - min) /
median) and the range of the per-round ratios: C and Rust of one round ran back to back, so
their ratio is the least disturbed by a host whose speed drifts. A run that failed is listed
with its error and left out of the medians; the report is written whatever failed.

Needs Debian's python3 with python3-matplotlib for the plot (without it, no plot and a note).
"""

import argparse
import bisect
import collections
import json
import math
import os
import re
import statistics
import subprocess
import sys

IMPLS = ("c", "rust")
ALLOC_EVENTS = ("kmalloc", "kmem_cache_alloc", "mm_page_alloc")


def dget(d, *keys, default=None):
    """d[k1][k2]..., or default where a level is missing."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


# Each measured metric: (id, group, title, unit, higher-is-better, workload, extractor).
# An extractor maps one run record to a number, or None if the record lacks it.
def _rate(counter):
    def f(r):
        n, secs = dget(r, "dut", counter, default=0), dget(r, "flood", "seconds")
        return n / secs if secs else None
    return f


def _per_busy(counter):
    """Messages per second of busy vCPU time (icmpflood's cpu_busy_pct over its send window).
    The guest's accounting is tick based: a vCPU the host did not run loses its ticks, so
    this rate shrugs off most of what a busy host takes away, which the plain rate does not."""
    def f(r):
        n, secs = dget(r, "dut", counter, default=0), dget(r, "flood", "seconds")
        busy = dget(r, "flood", "cpu_busy_pct")
        if not secs or not busy or sum(busy) <= 0:
            return None
        return n / (sum(busy) / 100 * secs)
    return f


def _per_speed(counter):
    """Messages per second at the boot's median host speed: the rate over the time the
    senders did not spend in their calibration spins (icmpflood --calibrate), times the
    boot's median spin rate over this flood's. Under TCG the guest runs as fast as the host
    runs QEMU, and on this machine that swings by a factor of two from one second to the
    next; the spins, interleaved with the packets in the same thread, measure it."""
    def f(r):
        n = dget(r, "dut", counter, default=0)
        work, rate = dget(r, "flood", "work_seconds"), dget(r, "flood", "spin_per_sec")
        ref = r.get("spin_ref")
        if not work or not rate or not ref or work <= 0:
            return None
        return n / work * ref / rate
    return f


def _rx_rate(r):
    return dget(r, "flood", "received_per_sec")


def _rtt(field):
    def f(r):
        if dget(r, "rtt", "answered", default=0) == 0:
            return None
        return dget(r, "rtt", field)
    return f


def _rtt_speed(field):
    """An RTT percentile at the boot's median host speed: icmpflood gives it at its run's
    median speed (each round trip scaled by the speed of a calibration spin just after it);
    this scales that to the boot's."""
    def f(r):
        v, rate, ref = dget(r, "rtt", field), dget(r, "rtt", "spin_per_sec"), r.get("spin_ref")
        if dget(r, "rtt", "answered", default=0) == 0 or not v or not rate or not ref:
            return None
        return v * rate / ref
    return f


def _alloc_per_reply(events):
    """kmem events per echo reply: counts over 2N round trips minus those over N, divided
    by the replies in between (what icmpflood's start and exit cost cancels out)."""
    def f(r):
        n = r.get("n")
        if not n:
            return None
        small, big = r.get(f"perf_{n}"), r.get(f"perf_{2 * n}")
        replies = (dget(r, f"dut_{2 * n}", "IcmpOutEchoReps", default=0)
                   - dget(r, f"dut_{n}", "IcmpOutEchoReps", default=0))
        if not small or not big or replies <= 0 or any(e not in small or e not in big
                                                       for e in events):
            return None
        return sum(big[e] - small[e] for e in events) / replies
    return f


def _alloc_in_icmp(r):
    replies = dget(r, "traced_dut", "IcmpOutEchoReps", default=0)
    if replies <= 0 or "in_icmp" not in r or r.get("traced_overrun", 0):
        return None
    return sum(r["in_icmp"].values()) / replies


def _calls(field):
    """Kernel functions entered per echo round trip (function_graph), or those of them that
    are rust_helper_* wrappers."""
    def f(r):
        n = dget(r, "dut", "IcmpOutEchoReps", default=0)
        if n <= 0 or r.get("overrun", 0) or field not in r:
            return None
        return r[field] / n
    return f


METRICS = [
    ("echo56", "Echo-reply throughput", "echo replies/s, 56 B payload (dut IcmpOutEchoReps)",
     "/s", True, "echo56", _rate("IcmpOutEchoReps")),
    ("echo56_busy", "Echo-reply throughput",
     "echo replies per busy vCPU-second, 56 B (corrects for host contention)", "/s", True,
     "echo56", _per_busy("IcmpOutEchoReps")),
    ("echo56_speed", "Echo-reply throughput",
     "echo replies/s, 56 B, at the boot's median host speed (calibrated, see below)", "/s",
     True, "echo56", _per_speed("IcmpOutEchoReps")),
    ("echo56_rx", "Echo-reply throughput", "echo replies/s, 56 B, received by the sender",
     "/s", True, "echo56", _rx_rate),
    ("echo1400", "Echo-reply throughput",
     "echo replies/s, 1400 B payload (dut IcmpOutEchoReps)", "/s", True, "echo1400",
     _rate("IcmpOutEchoReps")),
    ("echo1400_busy", "Echo-reply throughput",
     "echo replies per busy vCPU-second, 1400 B (corrects for host contention)", "/s", True,
     "echo1400", _per_busy("IcmpOutEchoReps")),
    ("echo1400_speed", "Echo-reply throughput",
     "echo replies/s, 1400 B, at the boot's median host speed (calibrated)", "/s", True,
     "echo1400", _per_speed("IcmpOutEchoReps")),
    ("echo1400_rx", "Echo-reply throughput", "echo replies/s, 1400 B, received by the sender",
     "/s", True, "echo1400", _rx_rate),
    ("unreach", "Error-generation throughput",
     "port unreachables/s (dut IcmpOutDestUnreachs), rate limits lifted", "/s", True, "udp",
     _rate("IcmpOutDestUnreachs")),
    ("unreach_busy", "Error-generation throughput",
     "port unreachables per busy vCPU-second (corrects for host contention)", "/s", True,
     "udp", _per_busy("IcmpOutDestUnreachs")),
    ("unreach_speed", "Error-generation throughput",
     "port unreachables/s at the boot's median host speed (calibrated)", "/s", True, "udp",
     _per_speed("IcmpOutDestUnreachs")),
    ("unreach_rx", "Error-generation throughput", "port unreachables/s received by the sender",
     "/s", True, "udp", _rx_rate),
    ("rtt_p50", "Latency", "echo RTT p50, one request at a time, 2 ms apart", "µs", False,
     "rtt", _rtt("p50_us")),
    ("rtt_p99", "Latency", "echo RTT p99", "µs", False, "rtt", _rtt("p99_us")),
    ("rtt_p50_speed", "Latency", "echo RTT p50 at the boot's median host speed (calibrated)",
     "µs", False, "rtt", _rtt_speed("p50_us_at_median_speed")),
    ("rtt_p99_speed", "Latency", "echo RTT p99 at the boot's median host speed (calibrated)",
     "µs", False, "rtt", _rtt_speed("p99_us_at_median_speed")),
    ("alloc_total", "Allocations per echo reply",
     "all kmem events, system-wide (request, reply, both namespaces)", "/reply", False,
     "alloc", _alloc_per_reply(ALLOC_EVENTS)),
] + [
    (f"alloc_{e}", "Allocations per echo reply", f"kmem:{e}, system-wide", "/reply", False,
     "alloc", _alloc_per_reply((e,)))
    for e in ALLOC_EVENTS
] + [
    ("alloc_in_icmp", "Allocations per echo reply",
     "kmem events inside the ICMP code (stack through icmp_rcv or rust_icmp)", "/reply", False,
     "alloc", _alloc_in_icmp),
    ("calls", "Kernel function calls per echo round trip",
     "functions entered below ip_local_deliver (function_graph, IRQs left out; request at "
     "the dut and reply at the peer)", "/round trip", False, "calls", _calls("calls")),
    ("helper_calls", "Kernel function calls per echo round trip",
     "of which rust_helper_* wrappers (C static inlines Rust calls out of line)",
     "/round trip", False, "calls", _calls("helper_calls")),
]


def _insns(field):
    """A per-round-trip figure of the instruction count (see insns_analysis)."""
    return lambda r: dget(r, "insns", field)


INSNS_GROUP = "Instructions per echo round trip"
STEER_GROUP = "Instructions on the answering CPU"
METRICS += [
    ("insns_kernel", INSNS_GROUP, "kernel instructions (the request sent, answered, the reply "
     "received: both namespaces, one vCPU)", "/round trip", False, "insns",
     _insns("kernel")),
    ("insns_icmp", INSNS_GROUP, "of which in the ICMP code (C: net/ipv4/icmp.o; Rust: "
     "rust_icmp.ko, the kernel crate, rust_helper_*)", "/round trip", False, "insns",
     _insns("icmp")),
    ("insns_rest", INSNS_GROUP, "of which in the rest of the kernel", "/round trip", False,
     "insns", _insns("rest")),
    ("insns_user", INSNS_GROUP, "user-space instructions (icmpflood; the same code both ways)",
     "/round trip", False, "insns", _insns("user")),
    ("insns_blocks", INSNS_GROUP, "kernel blocks entered (QEMU translation blocks)",
     "/round trip", False, "insns", _insns("blocks")),
    ("insns_lookups", INSNS_GROUP, "block entries QEMU cannot chain (from another page, after "
     "a return or an indirect call): a lookup each under TCG", "/round trip", False, "insns",
     _insns("lookups")),
    ("insns_lookups_icmp", INSNS_GROUP, "of which into the ICMP code", "/round trip", False,
     "insns", _insns("lookups_icmp")),
    ("insns_tsc", INSNS_GROUP, "host cycles QEMU spent in the kernel (a time: TCG's, and "
     "noisy; see below)", "/round trip", False, "insns", _insns("tsc")),
    ("insns_tsc_icmp", INSNS_GROUP, "of which in the ICMP code", "/round trip", False, "insns",
     _insns("tsc_icmp")),
    ("insns_tsc_rest", INSNS_GROUP, "of which in the rest of the kernel", "/round trip", False,
     "insns", _insns("tsc_rest")),
    ("insns1400_kernel", INSNS_GROUP, "1400 B payload: kernel instructions", "/round trip",
     False, "insns1400", _insns("kernel")),
    ("insns1400_icmp", INSNS_GROUP, "1400 B: of which in the ICMP code", "/round trip", False,
     "insns1400", _insns("icmp")),
    ("insns1400_lookups", INSNS_GROUP, "1400 B: block entries QEMU cannot chain",
     "/round trip", False, "insns1400", _insns("lookups")),
    ("insns1400_tsc", INSNS_GROUP, "1400 B: host cycles QEMU spent in the kernel",
     "/round trip", False, "insns1400", _insns("tsc")),
    ("insnsudp_kernel", INSNS_GROUP, "UDP datagram to a closed port and its port unreachable: "
     "kernel instructions", "/round trip", False, "insnsudp", _insns("kernel")),
    ("insnsudp_icmp", INSNS_GROUP, "port unreachable: of which in the ICMP code",
     "/round trip", False, "insnsudp", _insns("icmp")),
    ("insnsudp_lookups", INSNS_GROUP, "port unreachable: block entries QEMU cannot chain",
     "/round trip", False, "insnsudp", _insns("lookups")),
    ("insnsudp_lookups_icmp", INSNS_GROUP, "port unreachable: of which into the ICMP code",
     "/round trip", False, "insnsudp", _insns("lookups_icmp")),
    ("insnsudp_tsc", INSNS_GROUP, "port unreachable: host cycles QEMU spent in the kernel",
     "/round trip", False, "insnsudp", _insns("tsc")),
    ("steer_dut", STEER_GROUP, "56 B echo: kernel instructions on the dut's CPU (receive the "
     "request, answer, transmit the reply)", "/round trip", False, "insns", _insns("dut")),
    ("steer_dut_icmp", STEER_GROUP, "56 B echo: of which in the ICMP code", "/round trip", False,
     "insns", _insns("dut_icmp")),
    ("steer1400_dut", STEER_GROUP, "1400 B echo: kernel instructions on the dut's CPU",
     "/round trip", False, "insns1400", _insns("dut")),
    ("steer1400_dut_icmp", STEER_GROUP, "1400 B echo: of which in the ICMP code", "/round trip",
     False, "insns1400", _insns("dut_icmp")),
    ("steerudp_dut", STEER_GROUP, "port unreachable: kernel instructions on the dut's CPU "
     "(receive the datagram, find no socket, build and send the error)", "/round trip", False,
     "insnsudp", _insns("dut")),
    ("steerudp_dut_icmp", STEER_GROUP, "port unreachable: of which in the ICMP code",
     "/round trip", False, "insnsudp", _insns("dut_icmp")),
    ("steer_sender", STEER_GROUP, "56 B echo: kernel instructions on the sender's CPU (send, "
     "receive the reply: C's code both ways but for the reply's icmp_rcv, and with "
     "mirror=1 the live patch's trampoline on icmp_out_count)",
     "/round trip", False, "insns", _insns("sender")),
    ("steer_sender_icmp", STEER_GROUP, "56 B echo: of which in the ICMP code (the reply's "
     "icmp_rcv, icmp_out_count)", "/round trip", False, "insns", _insns("sender_icmp")),
    ("steer1400_sender", STEER_GROUP, "1400 B echo: kernel instructions on the sender's CPU",
     "/round trip", False, "insns1400", _insns("sender")),
    ("steerudp_sender", STEER_GROUP, "port unreachable: kernel instructions on the sender's "
     "CPU", "/round trip", False, "insnsudp", _insns("sender")),
]


class InsnCounts:
    """The output of tools/insncount (one file per boot) and the symbols the guest saved,
    read once each."""

    def __init__(self):
        self.windows = {}
        self.symbols = {}
        self.functions = {}

    def window(self, path, n):
        if path not in self.windows:
            wins, cur = {}, None
            with open(path, encoding="utf-8") as f:
                for line in f:
                    w = line.split()
                    if not w:
                        continue
                    if w[0] == "window":
                        cur = {"user": 0, "blocks": []}
                        wins[int(w[1])] = cur
                    elif w[0] == "user":
                        cur["user"] = int(w[1])
                    elif w[0] != "end" and cur is not None:
                        # Several vCPUs: the count split by vCPU follows.
                        cur["blocks"].append((int(w[0], 16), *map(int, w[1:5]),
                                              tuple(map(int, w[5:]))))
            self.windows[path] = wins
        return self.windows[path].get(n)

    def symtab(self, kallsyms, modsyms):
        """Sorted (address, name) of kernel text, vmlinux's and the modules' of the run."""
        key = (kallsyms, modsyms)
        if key not in self.symbols:
            syms = []
            for path in (kallsyms, modsyms):
                with open(path, encoding="utf-8") as f:
                    for line in f:
                        w = line.split()
                        if len(w) >= 3 and w[1] in "tTwW":
                            syms.append((int(w[0], 16), " ".join(w[2:4])))
            syms.sort()
            self.symbols[key] = ([a for a, _ in syms], [n for _, n in syms])
        return self.symbols[key]

    def c_functions(self, path):
        if path not in self.functions:
            try:
                with open(path, encoding="utf-8") as f:
                    self.functions[path] = set(f.read().split())
            except OSError:
                self.functions[path] = set()
        return self.functions[path]


def is_icmp_code(name, c_functions):
    """The ICMP code of either implementation: the functions of the built-in icmp.o, or
    rust_icmp's (the module, the kernel crate's Rust in vmlinux, the rust_helper_* wrappers).
    Nothing calls the Rust ones while the built-in code runs, nor icmp.o's while rust_icmp
    does, but icmp_out_count: the live patch takes it only with mirror=1 (then its entry
    runs), and without the mirror C's counts for both."""
    return (name in c_functions or name.endswith("[rust_icmp]") or name.startswith("_R")
            or name.startswith("rust_helper_"))


def insns_analysis(r, counts):
    """Per echo round trip, from the plugin's window of run r: instructions (kernel, user, in
    the ICMP code and out of it), blocks entered, entries QEMU cannot chain, and the same by
    kernel function. In a boot with BENCH_STEER, vCPU 1 answers and vCPU 0 sends: their
    kernel instructions apart, and the answering vCPU's by function."""
    win = counts.window(r["counts"], r["window"])
    if win is None:
        raise ValueError(f"window {r['window']} missing from {r['counts']}")
    n = r["n"]
    addrs, names = counts.symtab(r["kallsyms"], r["modsyms"])
    cf = counts.c_functions(r["c_functions"])
    per_fn = collections.defaultdict(lambda: [0, 0, 0])
    tot = {"kernel": 0, "icmp": 0, "blocks": 0, "lookups": 0, "lookups_icmp": 0,
           "tsc": 0, "tsc_icmp": 0}
    steer = r.get("steer", False)
    per_vcpu = collections.Counter()
    dut_fn = collections.Counter()
    sender_fn = collections.Counter()
    for vaddr, ninsns, count, lookups, tsc, vcpus in win["blocks"]:
        i = bisect.bisect_right(addrs, vaddr) - 1
        name = names[i] if i >= 0 else "?"
        per_fn[name][0] += ninsns * count
        per_fn[name][1] += lookups
        per_fn[name][2] += tsc
        tot["kernel"] += ninsns * count
        tot["blocks"] += count
        tot["lookups"] += lookups
        tot["tsc"] += tsc
        icmp = is_icmp_code(name, cf)
        if icmp:
            tot["icmp"] += ninsns * count
            tot["lookups_icmp"] += lookups
            tot["tsc_icmp"] += tsc
        if steer:
            if len(vcpus) < 2:
                raise ValueError("a steered run's counts are not split by vCPU")
            per_vcpu["sender"] += ninsns * vcpus[0]
            per_vcpu["dut"] += ninsns * vcpus[1]
            if icmp:
                per_vcpu["dut_icmp"] += ninsns * vcpus[1]
                per_vcpu["sender_icmp"] += ninsns * vcpus[0]
            dut_fn[name] += ninsns * vcpus[1]
            sender_fn[name] += ninsns * vcpus[0]
    out = {k: v / n for k, v in tot.items()}
    if steer:
        out.update({k: per_vcpu[k] / n for k in ("sender", "sender_icmp", "dut", "dut_icmp")})
        out["dut_functions"] = {k: v / n for k, v in dut_fn.items() if v}
        out["sender_functions"] = {k: v / n for k, v in sender_fn.items() if v}
    out["rest"] = (tot["kernel"] - tot["icmp"]) / n
    out["tsc_rest"] = (tot["tsc"] - tot["tsc_icmp"]) / n
    out["user"] = win["user"] / n
    out["functions"] = {k: [v[0] / n, v[1] / n, v[2] / n] for k, v in per_fn.items()}
    return out


def load_boot(spec):
    """--boot VCPUS:STATUS:PATH -> dict with the boot's records."""
    vcpus, status, path = spec.split(":", 2)
    steer = vcpus == "steer"
    plugin = vcpus == "insns" or steer
    boot = {"vcpus": 2 if steer else 1 if plugin else int(vcpus), "plugin": plugin,
            "steer": steer, "status": int(status),
            "path": path, "meta": {}, "records": [], "problems": [],
            "console": f"console-{vcpus if plugin else 'smp' + vcpus}.log",
            "name": "instruction-count boot, 2 vCPUs, one sends and one answers" if steer
            else "instruction-count boot (1 vCPU)" if plugin else f"{vcpus} vCPU(s)"}
    try:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    boot["records"].append(json.loads(line))
                except json.JSONDecodeError as e:
                    boot["problems"].append(f"{path}:{i}: unreadable record ({e})")
    except OSError as e:
        boot["problems"].append(f"no results from this boot: {e}")
    for r in boot["records"]:
        if r.get("kind") == "meta":
            boot["meta"] = r
    if boot["status"] != 0:
        boot["problems"].append(f"the VM exited with status {boot['status']} "
                                f"(see {boot['console']})")
    # The host's speed during each flood, by icmpflood's calibration spins: the boot's
    # median is the reference the "at median host speed" rates are scaled to.
    spins = [dget(r, w, "spin_per_sec") for r in boot["records"] for w in ("flood", "rtt")
             if r.get("kind") == "run" and "error" not in r]
    spins = [v for v in spins if v]
    if spins:
        ref = statistics.median(spins)
        for r in boot["records"]:
            r["spin_ref"] = ref
        boot["spin_range"] = (min(spins) / ref, max(spins) / ref)
    counts = InsnCounts()
    for r in boot["records"]:
        if r.get("workload") in ("insns", "insns1400", "insnsudp") and "error" not in r:
            r["steer"] = steer
            try:
                r["insns"] = insns_analysis(r, counts)
            except (OSError, ValueError, KeyError) as e:
                r["error"] = f"instruction count unreadable: {e}"
    splats = next((r.get("splats", "").strip() for r in boot["records"]
                   if r.get("kind") == "kernel_log"), None)
    if splats:
        boot["problems"].append(f"kernel log: {splats}")
    elif splats is None and boot["records"]:
        boot["problems"].append("the run did not finish (no final kernel-log record)")
    return boot


def summarize(values):
    """Median, min, max and relative spread of the numbers in values (None: failed)."""
    ok = [v for v in values if v is not None and math.isfinite(v)]
    if not ok:
        return {"median": None, "min": None, "max": None, "spread_pct": None, "n": 0}
    med = statistics.median(ok)
    spread = (max(ok) - min(ok)) / abs(med) * 100 if med else None
    return {"median": med, "min": min(ok), "max": max(ok), "spread_pct": spread, "n": len(ok)}


def ratio(a, b):
    """a / b, for positive numbers only: a ratio of counts that came out zero or negative (a
    difference of two noisy counts) means nothing."""
    return a / b if a is not None and b is not None and a >= 0 and b > 0 else None


def busy(r):
    """Per vCPU, how busy it was while icmpflood's senders ran, in %: [cpu0, cpu1...]."""
    return dget(r, "flood", "cpu_busy_pct")


def busy_summary(boots):
    """Markdown: the median busy share of each vCPU during the floods, C and Rust."""
    parts = []
    for b in boots:
        per_impl = {}
        for impl in IMPLS:
            rows = [busy(r) for r in b["records"]
                    if r.get("kind") == "run" and r.get("impl") == impl and "error" not in r
                    and r.get("workload") in ("echo56", "echo1400", "udp")]
            rows = [x for x in rows if x]
            if rows:
                per_impl[impl] = [statistics.median(col) for col in zip(*rows)]
        if per_impl:
            parts.append(f"{b['name']}: " + ", ".join(
                f"{'C' if impl == 'c' else 'Rust'} " + "/".join(f"{v:.0f}%" for v in vals)
                for impl, vals in per_impl.items()))
    if not parts:
        return []
    speeds = [f"{b['name']}: {b['spin_range'][0]:.2f}–{b['spin_range'][1]:.2f}× its median"
              for b in boots if "spin_range" in b]
    out = ["How busy each vCPU was during the floods (median over floods, per vCPU): "
           + "; ".join(parts) + ". The senders keep every vCPU busy, so a vCPU well below "
           "100% is one the host did not run (other work on the host): that is what the "
           "rows \"per busy vCPU-second\" correct for.", ""]
    if speeds:
        out += ["How fast the host ran the guest during each flood and RTT run, by "
                "icmpflood's calibration (a fixed loop the senders run after each sendmmsg, "
                "a few % of their time; the RTT probe after each reply): "
                + "; ".join(speeds) + ". A busy vCPU can still run slowly: the host we run on "
                "shares its CPUs with other machines, and under TCG the guest's rates follow "
                "its speed. The rows \"at the boot's median host speed\" scale each flood's "
                "rate, or each round trip's time, by the boot's median speed over its own.",
                ""]
    return out


def measured_metrics(boot, failures):
    runs = [r for r in boot["records"] if r.get("kind") == "run"]
    rounds = sorted({r["round"] for r in runs})
    out = []
    for mid, group, title, unit, higher, workload, extract in METRICS:
        # The steered boot's counts are split by vCPU: its own table, and only there.
        if (group == STEER_GROUP) != boot.get("steer", False):
            continue
        per_impl = {impl: {} for impl in IMPLS}
        for r in runs:
            if r.get("workload") != workload or r.get("impl") not in IMPLS:
                continue
            v = None if "error" in r else extract(r)
            per_impl[r["impl"]][r["round"]] = v
        if not any(per_impl[i] for i in IMPLS):
            continue  # not run in this boot
        c = [per_impl["c"].get(k) for k in rounds]
        rust = [per_impl["rust"].get(k) for k in rounds]
        sc, sr = summarize(c), summarize(rust)
        paired = [ratio(b, a) for a, b in zip(c, rust)]
        sp = summarize(paired)
        out.append({
            "metric": mid, "group": group, "title": title, "unit": unit,
            "vcpus": boot["vcpus"], "better": "higher" if higher else "lower",
            "c": sc["median"], "rust": sr["median"], "ratio": ratio(sr["median"], sc["median"]),
            "c_min": sc["min"], "c_max": sc["max"], "c_spread_pct": sc["spread_pct"],
            "rust_min": sr["min"], "rust_max": sr["max"], "rust_spread_pct": sr["spread_pct"],
            "paired_ratio_min": sp["min"], "paired_ratio_max": sp["max"],
            "rounds": rounds, "c_rounds": c, "rust_rounds": rust,
            "c_ok": sc["n"], "rust_ok": sr["n"],
        })
    for r in runs:
        if "error" in r:
            failures.append(f"{boot['name']}, round {r['round']}, {r.get('impl')}, "
                            f"{r.get('workload')}: {r['error']}")
    return out


def scaling_metrics(metrics):
    """Throughput with the most vCPUs over throughput with 1, for C and for Rust."""
    out = []
    by = {(m["metric"], m["vcpus"]): m for m in metrics}
    counts = sorted({m["vcpus"] for m in metrics})
    if 1 not in counts or len(counts) < 2:
        return out
    top = counts[-1]
    for mid in ("echo56", "echo1400", "unreach"):
        one, many = by.get((mid, 1)), by.get((mid, top))
        if not one or not many:
            continue
        c, rust = ratio(many["c"], one["c"]), ratio(many["rust"], one["rust"])
        out.append({
            "metric": f"{mid}_scaling", "group": "Scaling",
            "title": f"{many['title'].split(' (')[0]}: {top} vCPUs / 1 vCPU",
            "unit": "x", "vcpus": top, "better": "higher", "c": c, "rust": rust,
            "ratio": ratio(rust, c),
        })
    return out


def cost_metrics(boots):
    """What the module costs in code and memory (from the first boot that measured it)."""
    out = []
    sizes, loads = {}, []
    for b in boots:
        for r in b["records"]:
            if r.get("kind") == "size":
                sizes.setdefault(r["impl"], r)
            elif r.get("kind") in ("load", "unload") and not b["plugin"]:
                loads.append(r)
    c_obj = sizes.get("c", {}).get("file")
    for field in ("text", "data", "bss"):
        if "rust" in sizes:
            c = sizes.get("c", {}).get(field)
            out.append({
                "metric": f"size_{field}", "group": "Cost",
                "title": f"{field} bytes (size(1)): rust_icmp.ko"
                         + (" vs the built-in net/ipv4/icmp.o" if c_obj else ""),
                "unit": "B", "better": "lower", "c": c, "rust": sizes["rust"][field],
                "ratio": ratio(sizes["rust"][field], c),
                "note": None if c_obj else "the kernel's build tree (icmp.o) was not at hand",
            })
    def at_load(get):
        return lambda r: get(r) if r.get("kind") == "load" else None

    mem = [
        ("module_bytes", "memory of the loaded module (/proc/modules: code and data)",
         at_load(lambda r: r.get("module_bytes")), "B"),
        ("slab_kb", "slab memory the module holds (SUnreclaim delta at load)",
         at_load(lambda r: dget(r, "meminfo_kb", "SUnreclaim", default=0)), "kB"),
        ("percpu_kb", "per-CPU memory the module holds (Percpu delta at load)",
         at_load(lambda r: dget(r, "meminfo_kb", "Percpu", default=0)), "kB"),
        ("load_ms", "insmod until the live patch transition completed",
         at_load(lambda r: r.get("load_ms")), "ms"),
        ("unload_ms", "scripts/unload (patch disabled, transition, rmmod)",
         lambda r: r.get("unload_ms") if r.get("kind") == "unload" else None, "ms"),
    ]
    vcpu_counts = sorted({b["vcpus"] for b in boots})
    for mid, title, get, unit in mem:
        for n in vcpu_counts:
            vals = [get(r) for r in loads if r["vcpus"] == n and get(r) is not None]
            if not vals:
                continue
            s = summarize(vals)
            out.append({
                "metric": mid, "group": "Cost", "title": title, "unit": unit, "vcpus": n,
                "better": "lower", "c": None, "rust": s["median"], "ratio": None,
                "rust_min": s["min"], "rust_max": s["max"], "rust_rounds": vals,
                "note": "C is built into vmlinux: nothing to load",
            })
    return out


def fmt(v, unit=""):
    if v is None:
        return "—"
    if isinstance(v, float) and abs(v) < 0.005:
        v = 0.0  # no "-0.00"
    if unit == "/s" or (isinstance(v, (int, float)) and abs(v) >= 1000):
        return f"{v:,.0f}"
    if unit in ("/reply", "x"):
        return f"{v:.2f}"
    if isinstance(v, int) or float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.1f}"


def fmt_ratio(v):
    return "—" if v is None else f"{v:.3f}"


def fmt_spread(m, impl):
    s = m.get(f"{impl}_spread_pct")
    if m.get(f"{impl}_min") is None:
        return "—"
    rng = f"{fmt(m[f'{impl}_min'], m['unit'])}–{fmt(m[f'{impl}_max'], m['unit'])}"
    # Relative to a median near zero (a difference of two noisy counts), a percentage is
    # noise: the range alone says it.
    if s is None or s > 200:
        return f"({rng})"
    return f"±{s / 2:.1f}% ({rng})"


def markdown(boots, metrics, failures, no_plot):
    lines = ["# rust_icmp benchmark: built-in C ICMP vs rust_icmp", ""]
    meta = next((b["meta"] for b in boots if b["meta"]), {})
    lines += [
        f"Kernel {meta.get('kernel', '?')}, {meta.get('date', '?')}; "
        f"{meta.get('rounds', '?')} rounds per boot, {meta.get('seconds', '?')} s per flood; "
        "one boot per vCPU count: " + ", ".join(
            f"{b['name']} ({b['meta'].get('accel', '?')}"
            + (", FAILED" if b["status"] else "") + ")" for b in boots) + ".",
        "",
    ]
    params = meta.get("module_params")
    lines += ["rust_icmp loaded with " + (f"`{params}`" if params else "its defaults (no `mirror`)")
              + ".", ""]
    loads = [f"{b['name']}: {b['meta']['host_load']}" for b in boots
             if b["meta"].get("host_load")]
    if loads:
        lines += ["Host at the start of each boot: " + "; ".join(loads) + ".", ""]
    lines += [
        "Each round runs every workload with the built-in C code and with rust_icmp loaded, "
        "back to back, alternating which goes first. **C** and **Rust** are medians over "
        "the rounds; **Rust/C** is the ratio of the medians (above 1 means Rust is higher: "
        "better for rates, worse for latency and costs); **spread** is ±half the range "
        "around the median (min–max); **paired** is the range of the Rust/C ratios of the "
        "single rounds. Traffic: namespace `peer` floods namespace `dut` over veth with "
        "tools/icmpflood, one sender thread per vCPU, 8 flows (echo identifiers, UDP source "
        "ports).",
        "",
    ]
    if any("tcg" in b["meta"].get("accel", "tcg") for b in boots):
        lines += [
            "> Under TCG (emulation) absolute rates and times say little about real hardware, "
            "and other work on the host adds noise: compare C with Rust within one boot "
            "(the ratios), not with other machines or runs. `QEMU_ACCEL=kvm make bench` measures on "
            "KVM where KVM works.",
            "",
        ]
    order = ["Echo-reply throughput", "Error-generation throughput", "Scaling", "Latency",
             "Allocations per echo reply", "Kernel function calls per echo round trip",
             INSNS_GROUP, STEER_GROUP, "Cost"]
    groups = [g for g in order if any(m["group"] == g for m in metrics)]
    # Notes that follow a table: the busy vCPUs after the last throughput table, the
    # allocation sites after the allocations.
    last_rate = [g for g in groups if g in order[:3]][-1:]
    notes = {g: busy_summary(boots) for g in last_rate}
    sites = alloc_sites(boots)
    if sites:
        notes["Allocations per echo reply"] = [
            "Allocations inside the ICMP code by event and call site, per echo reply (all "
            "rounds): " + "; ".join(
                f"{'C' if impl == 'c' else 'Rust'}: "
                + ", ".join(f"{k} {v:.2f}" for k, v in sorted(s.items()))
                for impl, s in sites.items()) + ".", ""]
    notes[INSNS_GROUP] = insns_notes(boots)
    notes[STEER_GROUP] = steer_notes(boots, metrics)
    for g in groups:
        lines += [f"## {g}", ""]
        ms = [m for m in metrics if m["group"] == g]
        if g in ("Scaling",):
            lines += ["| metric | C | Rust | Rust/C |", "|---|---:|---:|---:|"]
            for m in ms:
                lines.append(f"| {m['title']} | {fmt(m['c'], 'x')} | {fmt(m['rust'], 'x')} | "
                             f"{fmt_ratio(m['ratio'])} |")
        elif g == "Cost":
            lines += ["| metric | vCPUs | C | Rust | Rust/C | Rust range |",
                      "|---|---:|---:|---:|---:|---:|"]
            for m in ms:
                rng = ("—" if m.get("rust_min") is None else
                       f"{fmt(m['rust_min'])}–{fmt(m['rust_max'])}")
                c = fmt(m["c"]) if m["c"] is not None else (
                    "built in" if m["metric"].endswith(("_bytes", "_kb", "_ms")) else "—")
                lines.append(f"| {m['title']} ({m['unit']}) | {m.get('vcpus', '—')} | {c} | "
                             f"{fmt(m['rust'])} | {fmt_ratio(m['ratio'])} | {rng} |")
        else:
            lines += ["| metric | vCPUs | C | Rust | Rust/C | paired Rust/C | C spread | "
                      "Rust spread | rounds ok C/Rust |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for m in ms:
                paired = ("—" if m["paired_ratio_min"] is None else
                          f"{m['paired_ratio_min']:.3f}–{m['paired_ratio_max']:.3f}")
                lines.append(
                    f"| {m['title']} ({m['unit']}) | {m['vcpus']} | {fmt(m['c'], m['unit'])} | "
                    f"{fmt(m['rust'], m['unit'])} | {fmt_ratio(m['ratio'])} | {paired} | "
                    f"{fmt_spread(m, 'c')} | {fmt_spread(m, 'rust')} | "
                    f"{m['c_ok']}/{m['rust_ok']} of {len(m['rounds'])} |")
        lines.append("")
        lines += notes.get(g, [])
    lines += ["## Problems", ""]
    problems = [f"{b['name']}: {p}" for b in boots for p in b["problems"]] + failures
    lines += [f"- {p}" for p in problems] if problems else ["None: every run completed."]
    lines.append("")
    if no_plot:
        lines += [f"No plot: {no_plot}.", ""]
    else:
        lines += ["Every round: ![rounds](rounds.png)", ""]
    lines += ["Raw records: " + ", ".join(f"`{os.path.basename(b['path'])}`" for b in boots)
              + " (one JSON object a line, written by tests/bench.sh).", ""]
    return "\n".join(lines)


def demangle(names):
    """Rust symbols as paths (binutils' c++filt reads Rust's v0 mangling), without the crate
    hashes; any other name as it is."""
    names = list(names)
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True,
                             text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        out = names
    if len(out) < len(names):
        out = names
    return {n: re.sub(r"\[[0-9a-f]{16}\]", "", d) for n, d in zip(names, out)}


def insns_notes(boots, top=12):
    """Markdown after the instruction counts: what they are, and the kernel functions whose
    instructions, then whose host cycles, per round trip differ most between C and Rust
    (instructions: mean over the rounds; cycles: median, they are noisy)."""
    per_impl = {}
    for b in boots:
        if b.get("steer"):
            continue  # two vCPUs: steer_notes
        for r in b["records"]:
            f = dget(r, "insns", "functions")
            # The 56-byte round trips; the 1400-byte ones are in the table only.
            if f is not None and r.get("impl") in IMPLS and r.get("workload") == "insns":
                per_impl.setdefault(r["impl"], []).append(f)
    if len(per_impl) < 2:
        return []

    def agg(runs):
        names = set().union(*runs)
        return {k: (statistics.mean(r.get(k, (0, 0, 0))[0] for r in runs),
                    statistics.mean(r.get(k, (0, 0, 0))[1] for r in runs),
                    statistics.median(r.get(k, (0, 0, 0))[2] for r in runs)) for k in names}

    mean = {impl: agg(runs) for impl, runs in per_impl.items()}
    names = set(mean["c"]) | set(mean["rust"])
    get = lambda impl, k, i: mean[impl].get(k, (0.0, 0.0, 0.0))[i]
    lines = [
        "Counted by the QEMU plugin tools/insncount in a boot of its own: every instruction "
        "the vCPU executed between two markers icmpflood runs before its first echo request "
        "and after its last reply (one request at a time, no pause), divided by the round "
        "trips. Instructions are counts: they do not depend on how fast the host ran the "
        "guest, and an x86 CPU executes the same. The blocks and lookups are TCG's own cost: "
        "QEMU jumps from a translated block straight to the next only when the jump is direct "
        "and stays on the block's 4 KiB page; every other entry looks the next block up in "
        "QEMU's tables. The host cycles are a time: the host's time stamp counter at each "
        "kernel block entry, charged to the block that ran until then (a gap over 50,000 "
        "cycles, the host running something else, left out). They include the plugin's own "
        "callback, the same per block both ways, and say where TCG spends its time, not "
        "where a CPU would.",
        "",
    ]
    for col, what in ((0, "instructions"), (2, "host cycles")):
        diff = sorted(names, key=lambda k: -abs(get("rust", k, col) - get("c", k, col)))[:top]
        pretty = demangle(diff)
        lines += [
            f"The {top} kernel functions whose {what} per round trip differ most (lookups: "
            "block entries QEMU could not chain):",
            "",
            "| function | C insns | Rust insns | C lookups | Rust lookups | C cycles | "
            "Rust cycles |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for k in diff:
            lines.append(f"| `{pretty[k]}` | {get('c', k, 0):,.0f} | {get('rust', k, 0):,.0f} | "
                         f"{get('c', k, 1):.0f} | {get('rust', k, 1):.0f} | "
                         f"{get('c', k, 2):,.0f} | {get('rust', k, 2):,.0f} |")
        lines.append("")
    return lines


def steer_notes(boots, metrics, top=12):
    """Markdown after the answering CPU's counts: how they were taken, what they bound, and
    the kernel functions whose instructions on that CPU differ most at 1400 bytes."""
    by = {m["metric"]: m for m in metrics if m["group"] == STEER_GROUP}
    if not by:
        return []
    lines = [
        "Counted by the same plugin in a boot of its own with 2 vCPUs under single-threaded "
        "TCG (the vCPUs take turns on one host thread, so its counters stay exact): "
        "icmpflood runs on CPU 0, and RPS hands what the dut's veth receives to CPU 1 and "
        "what the peer's receives to CPU 0 (tests/bench.sh, BENCH_STEER). CPU 1 then runs "
        "the dut's whole answer: the request from the backlog through IP and ICMP, the reply "
        "built and routed, and its transmission up to the peer's backlog on CPU 0. Both "
        "CPUs also wake from idle for every packet (the IPI that RPS sends, the same code "
        "both ways), which a flooded dut would not do per packet. Where the answering CPU is "
        "the bottleneck, as on a server whose traffic comes from outside, its rate follows "
        "these counts: C's count over Rust's is the rate an instruction-bound dut would "
        "answer at, relative to C.",
        "",
    ]
    implied = [f"{what} {by[k]['c'] / by[k]['rust']:.2f}×" for k, what in
               (("steer_dut", "56-byte echoes"), ("steer1400_dut", "1400-byte echoes"),
                ("steerudp_dut", "port unreachables"))
               if k in by and by[k]["c"] and by[k]["rust"]]
    if implied:
        lines += ["C's instructions on the answering CPU over Rust's: " + ", ".join(implied)
                  + ".", ""]
    for key, cpu in (("dut_functions", "the answering CPU"), ("sender_functions",
                                                               "the sender's CPU")):
        lines += top_functions(boots, key, cpu, top)
    return lines


def top_functions(boots, key, cpu, top):
    """The `top` kernel functions whose instructions on one CPU of the steered boot differ
    most between C and Rust per 1400-byte echo round trip, as markdown."""
    per_impl = {}
    for b in boots:
        for r in b["records"]:
            f = dget(r, "insns", key)
            if f is not None and r.get("impl") in IMPLS and r.get("workload") == "insns1400":
                per_impl.setdefault(r["impl"], []).append(f)
    if len(per_impl) < 2:
        return []
    mean = {impl: {k: statistics.mean(r.get(k, 0) for r in runs) for k in set().union(*runs)}
            for impl, runs in per_impl.items()}
    names = set(mean["c"]) | set(mean["rust"])
    diff = sorted(names, key=lambda k: -abs(mean["rust"].get(k, 0) - mean["c"].get(k, 0)))
    pretty = demangle(diff[:top])
    lines = [f"The {top} kernel functions whose instructions on {cpu} differ most per "
             "1400-byte echo round trip:", "", "| function | C insns | Rust insns |",
             "|---|---:|---:|"]
    lines += [f"| `{pretty[k]}` | {mean['c'].get(k, 0):,.0f} | {mean['rust'].get(k, 0):,.0f} |"
              for k in diff[:top]]
    lines.append("")
    return lines


def alloc_sites(boots):
    """Mean allocations per echo reply inside the ICMP code, by event:call site."""
    out = {}
    for b in boots:
        for impl in IMPLS:
            tot, replies = {}, 0
            for r in b["records"]:
                if (r.get("kind") != "run" or r.get("workload") != "alloc" or "error" in r
                        or r.get("impl") != impl or r.get("traced_overrun", 0)):
                    continue
                replies += dget(r, "traced_dut", "IcmpOutEchoReps", default=0)
                for k, v in r.get("in_icmp_sites", {}).items():
                    tot[k] = tot.get(k, 0) + v
            if replies and impl not in out:
                out[impl] = {k: v / replies for k, v in tot.items()}
    return out


def plot_rounds(boots, metrics, path):
    """Draws every round of the main metrics; None, or why there is no plot."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "python3-matplotlib is not installed"
    shown = ["echo56", "echo1400", "unreach", "echo56_speed", "echo1400_speed",
             "unreach_speed", "rtt_p50_speed", "rtt_p99_speed", "alloc_total"]
    shown = [s for s in shown
             if any(m["metric"] == s and (m["c"] is not None or m["rust"] is not None)
                    for m in metrics)]
    if not shown:
        return "nothing was measured"
    cols = 3
    rows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    colors = {"c": "tab:blue", "rust": "tab:orange"}
    styles = ["-", "--", ":", "-."]
    vcpus = sorted({m["vcpus"] for m in metrics if "rounds" in m})
    for ax, mid in zip(axes.flat, shown):
        title = None
        for m in metrics:
            if m["metric"] != mid or "rounds" not in m:
                continue
            title = m["title"]
            ls = styles[vcpus.index(m["vcpus"]) % len(styles)]
            for impl in IMPLS:
                pts = [(k, v) for k, v in zip(m["rounds"], m[f"{impl}_rounds"]) if v is not None]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], ls, marker="o",
                            color=colors[impl], label=f"{'C' if impl == 'c' else 'Rust'}, "
                            f"{m['vcpus']} vCPU{'s' if m['vcpus'] > 1 else ''}")
                fails = [k for k, v in zip(m["rounds"], m[f"{impl}_rounds"]) if v is None]
                for k in fails:
                    ax.axvline(k, color=colors[impl], alpha=0.3, linewidth=3)
            unit = m["unit"]
        ax.set_title(title or mid, fontsize=9)
        ax.set_xlabel("round")
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(shown):]:
        ax.set_visible(False)
    accel = ", ".join(sorted({b["meta"].get("accel", "?") for b in boots if b["meta"]}))
    fig.suptitle(f"built-in C vs rust_icmp, every round ({accel}; a shaded round failed)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def clean(o):
    """JSON-safe: NaN and infinities become null."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: clean(v) for k, v in o.items()}
    if isinstance(o, list):
        return [clean(v) for v in o]
    return o


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory for report.md/json, rounds.png")
    ap.add_argument("--boot", action="append", default=[], required=True,
                    help="VCPUS:STATUS:RAW.jsonl of one boot (repeat)")
    args = ap.parse_args()
    boots = sorted((load_boot(s) for s in args.boot), key=lambda b: b["vcpus"])
    failures = []
    metrics = []
    for b in boots:
        metrics += measured_metrics(b, failures)
    # Grouped by metric, the vCPU counts next to each other.
    order = {m[0]: i for i, m in enumerate(METRICS)}
    metrics.sort(key=lambda m: (order[m["metric"]], m["vcpus"]))
    metrics += scaling_metrics(metrics) + cost_metrics(boots)
    os.makedirs(args.out, exist_ok=True)
    no_plot = plot_rounds(boots, metrics, os.path.join(args.out, "rounds.png"))
    with open(os.path.join(args.out, "report.md"), "w", encoding="utf-8") as f:
        f.write(markdown(boots, metrics, failures, no_plot))
    report = {
        "boots": [{"vcpus": b["vcpus"], "name": b["name"], "status": b["status"], "raw": b["path"],
                   "meta": b["meta"], "problems": b["problems"]} for b in boots],
        "metrics": metrics,
        "failures": failures,
        "alloc_sites_per_reply": alloc_sites(boots),
    }
    with open(os.path.join(args.out, "report.json"), "w", encoding="utf-8") as f:
        json.dump(clean(report), f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
