#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Prints, for each differential suite, how many scenarios it has and how each proves that
the Rust run did the work: rust_icmp's own counters (or a drop in the module), or a
live-patched C function's calls (proof=); and how many are controls that reach no ICMP code
(proof= with only False: the module must do nothing there either). Also how many expect no
ICMP from the dut (quiet=, in any of those) and how many compare on invariants (bounds=)
instead of exactly. Runs anywhere (no VM).

    tests/lib/inventory.py [--markdown]
"""

import importlib
import os
import sys

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [TESTS, os.path.join(TESTS, "lib")]

SUITES = ("rcv_echo", "rcv_probe", "rcv_errors", "rcv_paths", "send_errors", "hooks",
          "ipv6_callers", "xfrm", "faults")


def main():
    md = "--markdown" in sys.argv[1:]
    rows = []
    for name in SUITES:
        scs = importlib.import_module(name).scenarios()
        proof = sum(1 for s in scs if s.proof and any(s.proof.values()))
        control = sum(1 for s in scs if s.proof and not any(s.proof.values()))
        quiet = sum(1 for s in scs if s.quiet)
        bounds = sum(1 for s in scs if s.bounds)
        rows.append((f"{name}.py", len(scs), len(scs) - proof - control, proof, control, quiet,
                     bounds))
    total = ("total",) + tuple(sum(r[i] for r in rows) for i in range(1, 7))
    head = ("suite", "scenarios", "module counters", "proof (live patch)", "control", "quiet",
            "bounds")
    if md:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows + [total]:
            print("| " + " | ".join(str(x) for x in r) + " |")
    else:
        for r in [head] + rows + [total]:
            print(f"{r[0]:<18}" + "".join(f"{x!s:>20}" for x in r[1:]))


if __name__ == "__main__":
    main()
