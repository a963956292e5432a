# SPDX-License-Identifier: GPL-2.0
"""The differential harness: the kernel's built-in ICMP code is the oracle.

Each scenario runs in fresh namespaces (see `icmptest.Topology`) twice in the same boot:
first with the built-in handler, then with rust_icmp loaded. For each run it records

  - the IPv4 packets the dut sent to the peer (bytes, with only the fields that vary from
    run to run masked: IP ID and header checksum, plus what the scenario names, such as
    timestamps),
  - the deltas of every /proc/net/snmp and /proc/net/netstat counter in the dut namespace,
  - the drop reasons of the skb:kfree_skb tracepoint (IPv4 packets, whole system),

and the scenario passes when both runs agree. In the Rust run it also checks that the module
handled the traffic and that its own counters (/proc/net/rust_icmp) match the MIB deltas.
"""

import traceback

from icmptest import (Capture, DropTrace, Sender, Topology, delta, describe, load_module,
                      mask_ipv4, mib, module_counters, module_loaded, unload_module)

# The counters /proc/net/rust_icmp mirrors, besides IcmpMsg{In,Out}Type*.
MODULE_MIBS = ("IcmpInMsgs", "IcmpInErrors", "IcmpInCsumErrors", "IcmpOutMsgs",
               "IcmpOutErrors", "IcmpOutRateLimitGlobal", "IcmpOutRateLimitHost")


class Scenario:
    """A named piece of traffic.

    setup(topo)          configures the namespaces (sysctls, routes) before counting starts
    action(topo, send)   sends from the peer (`send` is an icmptest.Sender)
    mask                 byte ranges of the dut's packets to ignore, beyond IP ID/checksum
    c_only_counts        True if the built-in code also counts in this scenario (delegated
                         types, errors the stack generates): module counters must then be at
                         most, instead of exactly, the MIB deltas
    sanity(result)       an RFC-fixed property of the C run (guards against a harness that
                         compares two empty runs); returns an error string or None
    """

    def __init__(self, name, action, setup=None, mask=(), c_only_counts=False, sanity=None):
        self.name = name
        self.action = action
        self.setup = setup
        self.mask = mask
        self.c_only_counts = c_only_counts
        self.sanity = sanity


class Result:
    def __init__(self):
        self.packets = []
        self.raw_packets = []
        self.mib = {}
        self.module = None
        self.drops = []
        self.error = None


def run_once(sc):
    """Runs a scenario in fresh namespaces and records what the dut did."""
    r = Result()
    trace = DropTrace()
    try:
        with Topology() as topo:
            if sc.setup:
                sc.setup(topo)
            send = Sender(topo.PEER)
            cap = Capture(topo.PEER)
            before = mib(topo.DUT)
            mod_before = module_counters(topo.DUT)
            trace.start()
            try:
                sc.action(topo, send)
                cap.settle()
            finally:
                r.drops = trace.stop()
            r.mib = delta(before, mib(topo.DUT))
            mod_after = module_counters(topo.DUT)
            if mod_after is not None:
                r.module = delta(mod_before or {}, mod_after)
            r.raw_packets = list(cap.packets)
            r.packets = [mask_ipv4(p, sc.mask) for p in cap.packets]
            cap.close()
            send.close()
    except Exception:  # noqa: BLE001 - reported as the scenario's failure
        r.error = traceback.format_exc()
    return r


def _fmt_counters(d):
    return " ".join(f"{k}={v}" for k, v in sorted(d.items())) or "(none)"


def compare(sc, c, rust):
    """Returns a list of differences (empty: the runs agree)."""
    problems = []
    if c.error:
        return [f"C run raised:\n{c.error}"]
    if rust.error:
        return [f"Rust run raised:\n{rust.error}"]
    if sc.sanity:
        msg = sc.sanity(c)
        if msg:
            problems.append(f"the C run itself is not what RFC behaviour requires: {msg}")
    if c.packets != rust.packets:
        problems.append("packets sent by the dut differ:")
        problems += [f"  C:    {describe(p)}" for p in c.raw_packets] or ["  C:    (none)"]
        problems += [f"  Rust: {describe(p)}" for p in rust.raw_packets] or ["  Rust: (none)"]
        for i, (a, b) in enumerate(zip(c.packets, rust.packets)):
            if a != b:
                problems.append(f"  first difference in packet {i}:")
                problems.append(f"    C:    {a.hex()}")
                problems.append(f"    Rust: {b.hex()}")
                break
    if c.mib != rust.mib:
        keys = sorted(set(c.mib) | set(rust.mib))
        diff = {k: (c.mib.get(k, 0), rust.mib.get(k, 0)) for k in keys
                if c.mib.get(k, 0) != rust.mib.get(k, 0)}
        problems.append("MIB deltas differ (C, Rust): " +
                        " ".join(f"{k}=({a},{b})" for k, (a, b) in diff.items()))
    if c.drops != rust.drops:
        problems.append(f"drop reasons differ: C {c.drops} Rust {rust.drops}")
    problems += check_module_counters(sc, rust)
    return problems


def check_module_counters(sc, rust):
    """The module must have handled the traffic, and counted it as the MIB did."""
    m = rust.module
    if m is None:
        return ["/proc/net/rust_icmp is missing in the dut during the Rust run"]
    problems = []
    if rust.mib.get("IcmpInMsgs", 0) and not sc.c_only_counts and not m.get("IcmpInMsgs"):
        problems.append("the dut received ICMP but rust_icmp did not count it: was it loaded?")
    delegated = {k: v for k, v in m.items() if k.startswith("RustIcmpDelegated")}
    if delegated and not sc.c_only_counts:
        problems.append(f"packets were handed to the built-in handler: {delegated}")
    keys = set(MODULE_MIBS) | {k for k in set(m) | set(rust.mib) if k.startswith("IcmpMsg")}
    for k in sorted(keys):
        ours, theirs = m.get(k, 0), rust.mib.get(k, 0)
        if ours != theirs and not (sc.c_only_counts and ours <= theirs):
            problems.append(f"module counter {k}={ours} but the MIB delta is {theirs}")
    return problems


def run_differential(ktap, scenarios):
    """Runs every scenario with C, then every scenario with Rust, and reports each."""
    if module_loaded():
        unload_module()
    ktap.plan(len(scenarios))
    c_results = {sc.name: run_once(sc) for sc in scenarios}
    load_module()
    try:
        rust_results = {sc.name: run_once(sc) for sc in scenarios}
    finally:
        unload_module()
    for sc in scenarios:
        c, rust = c_results[sc.name], rust_results[sc.name]
        problems = compare(sc, c, rust)
        if not problems:
            ktap.diag(f"{sc.name}: {len(c.packets)} packets, MIB {_fmt_counters(c.mib)}"
                      f"{', drops ' + ','.join(c.drops) if c.drops else ''}")
        ktap.result(not problems, sc.name, "\n".join(problems))
