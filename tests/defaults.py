#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""defaults: the differential suites with rust_icmp loaded as its users load it.

Every other suite loads the module with mirror=1 (RUST_ICMP_PARAMS, tests/lib.sh), whose
counters in /proc/net/rust_icmp prove that the Rust code handled each scenario. A user loads
it without parameters: no mirror, and counting code that only tests for the mirror's absence.
This suite runs the scenarios of the receive, PROBE, error, path, send and IPsec suites once
more, compared with C as there, with the module inserted with no parameters. The proof that
Rust handled a scenario is then that icmp.c's own receive handler and getfrag callback ran
in the C run and never in the Rust run (difftest.check_builtin_calls), and no
/proc/net/rust_icmp may appear.

  tests/defaults.py [PATTERN...]   scenarios named SUITE.SCENARIO ('rcv_echo.*')
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

import difftest  # noqa: E402
import icmptest  # noqa: E402
from icmptest import Ktap, require_vm  # noqa: E402

import rcv_echo  # noqa: E402
import rcv_errors  # noqa: E402
import rcv_paths  # noqa: E402
import rcv_probe  # noqa: E402
import send_errors  # noqa: E402
import xfrm  # noqa: E402

SUITES = (rcv_echo, rcv_probe, rcv_errors, rcv_paths, send_errors, xfrm)


def scenarios():
    """Every scenario of `SUITES`, named SUITE.SCENARIO."""
    out = []
    for suite in SUITES:
        for sc in suite.scenarios():
            sc.name = f"{suite.__name__}.{sc.name}"
            out.append(sc)
    return out


def main():
    require_vm("defaults")
    # What `insmod rust_icmp.ko` does: the mirror is off.
    icmptest.MODULE_PARAMS = ""
    ktap = Ktap("defaults: the differential suites, rust_icmp loaded without parameters")
    todo, skipped = difftest.select(scenarios(), sys.argv[1:]), []
    reason = rcv_paths.bpf_unavailable()
    if reason:
        skipped = [(sc.name, reason) for sc in todo if ".csum_unnecessary" in sc.name]
        todo = [sc for sc in todo if ".csum_unnecessary" not in sc.name]
    difftest.run_differential(ktap, todo, skipped)
    ktap.finish()


if __name__ == "__main__":
    main()
