#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Which functions call the given kernel functions, how often per round trip, built-in C
against rust_icmp: from the instruction-counting boot of `make bench` (build/bench).

    callers.py --vmlinux F [--module F] [--bench DIR] [--workload W] [--all] FUNC...

--vmlinux is the booted kernel's vmlinux, --module the rust_icmp.ko the run loaded (default:
the one its records name). For example, after `make bench PREEMPT=full`:

    tools/bench/callers.py --vmlinux build/kernel-preempt-7.3/vmlinux \
        __rcu_read_lock __rcu_read_unlock

says which functions enter the RCU read-side sections that one implementation enters and the
other does not. The plugin counts how often each translated block ran; a block runs its instructions
in a row, so a call or tail jump to one of the functions ran as often as the blocks that
contain it. Call sites are read off `objdump -d` of vmlinux and of the module (whose
relocations name the callee); the module's addresses are placed by its symbols as loaded in
the run (insns-modsyms-N.txt). Calls through a pointer are not seen. Prints per round trip,
for the first round of each implementation: C, Rust, callee and caller, only the pairs that
differ unless --all, then each callee's total.
"""

import argparse
import bisect
import collections
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402

INSN = re.compile(r"^\s*([0-9a-f]+):\t(?!R_X86)(\S+)(?:\s+(\S+)\s+<([^>+]+)(?:\+0x[0-9a-f]+)?>)?")
RELOC = re.compile(r"^\s*[0-9a-f]+: R_X86_64_PLT32\s+(\S+)-0x4$")
FUNC = re.compile(r"^([0-9a-f]+) <(.*)>:$")


def disassemble(path, callees, relocated):
    """The calls and tail jumps to one of callees in path's code, as (address, function,
    callee), and each function's instruction addresses; a function is (name, start address).
    In a module (relocated: not linked), an instruction's target is its relocation, on the
    next line."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn"] + (["-r"] if relocated else [])
                         + [path], capture_output=True, text=True, check=True).stdout
    sites, insns, fn, branch = [], collections.defaultdict(list), None, None
    for line in out.splitlines():
        m = FUNC.match(line)
        if m:
            fn = (m.group(2), int(m.group(1), 16))
            continue
        m = RELOC.match(line)
        if m:
            if branch is not None and m.group(1) in callees:
                sites.append((branch, fn, m.group(1)))
            branch = None
            continue
        m = INSN.match(line)
        if not m:
            continue
        addr = int(m.group(1), 16)
        insns[fn].append(addr)
        branch = None
        if m.group(2) in ("call", "jmp"):
            if relocated:
                branch = addr
            elif m.group(4) in callees:
                sites.append((addr, fn, m.group(4)))
    return sites, insns


def counts(record, vmlinux, module):
    """Per round trip, how often each (callee, caller) site ran: the entries of the blocks
    whose instructions include it."""
    win = report.InsnCounts().window(record["counts"], record["window"])
    if win is None:
        raise SystemExit(f"window {record['window']} missing from {record['counts']}")
    # Every site, and the instructions of the functions that have one, at the addresses of
    # the run: the module's moved by where its functions were loaded (modsyms).
    loaded = {}
    with open(record["modsyms"], encoding="utf-8") as f:
        for line in f:
            w = line.split()
            if len(w) >= 3 and w[1] in "tT":
                loaded[w[2]] = int(w[0], 16)
    sites, funcs = [], {}
    for (fsites, finsns), in_module in ((vmlinux, False), (module, True)):
        for addr, fn, callee in fsites:
            name, start = fn
            d = 0
            if in_module:
                if name not in loaded:
                    continue
                d = loaded[name] - start
                name += " [rust_icmp]"
            sites.append((addr + d, name, callee))
            funcs[start + d] = [a + d for a in finsns[fn]]
    # How often each of those instructions ran: each block runs its instructions in a row.
    starts = sorted(funcs)
    ran = collections.Counter()
    for vaddr, ninsns, count, *_ in win["blocks"]:
        i = bisect.bisect_right(starts, vaddr) - 1
        if i < 0:
            continue
        fn_insns = funcs[starts[i]]
        k = bisect.bisect_left(fn_insns, vaddr)
        if k < len(fn_insns) and fn_insns[k] == vaddr:
            for a in fn_insns[k:k + ninsns]:
                ran[a] += count
    per = collections.Counter()
    for addr, caller, callee in sites:
        if ran[addr]:
            per[(callee, caller)] += ran[addr] / record["n"]
    return per


def main():
    build = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", default=os.path.join(build, "bench"))
    ap.add_argument("--workload", default="insns", help="insns, insns1400 or insnsudp")
    ap.add_argument("--vmlinux", required=True, help="the booted kernel's vmlinux")
    ap.add_argument("--module", help="rust_icmp.ko as the run loaded it (default: the "
                    "records' module)")
    ap.add_argument("--all", action="store_true", help="also the pairs that do not differ")
    ap.add_argument("callees", nargs="+", metavar="FUNC")
    a = ap.parse_args()
    records, module = [], a.module
    with open(os.path.join(a.bench, "raw-insns.jsonl"), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind") == "meta" and not module:
                module = r.get("module")
            if r.get("workload") == a.workload and "counts" in r:
                records.append(r)
    first = {}
    for r in records:
        first.setdefault(r["impl"], r)
    if set(first) != {"c", "rust"}:
        raise SystemExit(f"no {a.workload} run of both implementations in {a.bench}")
    if not module:
        raise SystemExit("the records name no module: give --module")
    callees = set(a.callees)
    vmlinux = disassemble(a.vmlinux, callees, False)
    mod = disassemble(module, callees, True)
    per = {impl: counts(first[impl], vmlinux, mod) for impl in ("c", "rust")}
    names = sorted(set(per["c"]) | set(per["rust"]))
    shown = report.demangle(caller for _, caller in names)
    print(f"calls per round trip ({a.workload}), round 1: C, Rust, callee, caller")
    for callee, caller in names:
        c, r = per["c"][(callee, caller)], per["rust"][(callee, caller)]
        if a.all or abs(c - r) >= 0.01:
            print(f"{c:8.2f} {r:8.2f}  {callee}  {shown[caller]}")
    for callee in sorted(callees):
        c = sum(v for (ce, _), v in per["c"].items() if ce == callee)
        r = sum(v for (ce, _), v in per["rust"].items() if ce == callee)
        print(f"{c:8.2f} {r:8.2f}  {callee}  (all callers)")


if __name__ == "__main__":
    main()
