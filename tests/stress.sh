#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The robustness run (make stress; a shorter one in make check), meant for the debug kernel
# (KASAN, UBSAN, lockdep, PROVE_RCU, kmemleak, fault injection: make kernel DEBUG=1):
#
#   fuzz.sh        random and malformed ICMP into the dut: volume with rust_icmp, and the
#                  same seeded sequence to the built-in code and to rust_icmp, compared
#   hotswap.py     load/unload cycles while echo requests (each accounted) and datagrams
#                  to a closed port flow; every request answered exactly once
#   failures.sh    each allocation of insmod's init failed in turn; nothing left behind
#   faults.py      allocations failed while the dut builds ICMP errors: the same errors
#                  lost and counted as by the built-in code (differential)
#   rcv_*.py, send_errors.py, ipv6_callers.py, xfrm.py (the full run only)
#                  the differential suites: built-in C vs rust_icmp, each scenario compared
#   hooks.py log_flood_remote_errors
#                  60 ICMP errors whose handling C logs with net_dbg_ratelimited: debug
#                  messages are compiled in here, and they must stay within the rate limit
#
# run through run_all.sh, which fails a test on any splat in the kernel log. Then a last
# kmemleak scan over the whole run, and a summary:
#   packets fuzzed, splats, leaks, swap cycles, requests, replies, lost replies,
#   insmod failures injected
# The exit status is non-zero on any failed test, splat, leak, or loss beyond the built-in
# code's under the same load.
#
#   tests/stress.sh [short|short:1|short:2] [TEST...]
#       short: make check's variant (CI's time budget), here in one VM
#       short:1, short:2: its two halves (fuzz.sh and hotswap.py; then failures.sh,
#              faults.py and the log flood), which make check runs in two VMs side by side
#              (scripts/stress-check); each has its own summary and kmemleak scan
#       TEST:  run only these (e.g. hotswap.py), to measure one part at full size
set -u
. "$(dirname "$0")/lib.sh"
require_vm stress.sh

short=0 half=
case ${1:-} in
short) short=1; shift ;;
short:[12]) short=1 half=${1#short:}; shift ;;
esac
tests=("$@")
if ((${#tests[@]} == 0)); then
	first=(fuzz.sh hotswap.py) second=(failures.sh faults.py "hooks.py log_flood_remote_errors")
	case $half in
	1) tests=("${first[@]}") ;;
	2) tests=("${second[@]}") ;;
	*) tests=("${first[@]}" "${second[@]}") ;;
	esac
	# The full run also puts the differential suites under KASAN, lockdep and kmemleak.
	((short)) || tests=(rcv_echo.py rcv_probe.py rcv_errors.py rcv_paths.py send_errors.py
		ipv6_callers.py xfrm.py "${tests[@]}")
fi
if ((short)); then
	# About 20 minutes under TCG: the debug kernel fuzzes about 200 frames/s, and each fuzz
	# run, insmod or hot swap costs it 10 to 90 s of setup. It ends make check: CI at
	# b736e32 waited 621 s for it after the test suite, 80 of them for 2 of its 5 hot swaps
	# (3 since). The stride of failed allocations stays: at 27, 7 of init's 189 fail, 3 to
	# 5 of them make insmod fail, and failures.sh needs at least one.
	export FUZZ_COUNT=${FUZZ_COUNT:-5000} FUZZ_DIFF_COUNT=${FUZZ_DIFF_COUNT:-1000}
	export HOTSWAP_CYCLES=${HOTSWAP_CYCLES:-3} FAILURES_STRIDE=${FAILURES_STRIDE:-27}
else
	export FUZZ_COUNT=${FUZZ_COUNT:-1000000} FUZZ_DIFF_COUNT=${FUZZ_DIFF_COUNT:-20000}
	export HOTSWAP_CYCLES=${HOTSWAP_CYCLES:-200}
	# At full size, fuzz.sh and hotswap.py each take an hour or more on the debug kernel,
	# past run_all.sh's default limit of 30 minutes a test. The VM's own limit (4 hours,
	# the Makefile's QEMU_TIMEOUT) still bounds the run.
	export RUN_ALL_TIMEOUT=${RUN_ALL_TIMEOUT:-14400}
fi
kmemleak=/sys/kernel/debug/kmemleak
[[ -w $kmemleak ]] && echo clear >"$kmemleak"

# The tests' output is shown as it comes and kept for the summary. (PIPESTATUS inside a
# command substitution is lost to the caller: the run's status must be taken here.)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$TESTS_DIR/run_all.sh" "${tests[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
out=$(cat "$log")

# "# stress: key=value" lines of the tests, nested once by run_all.sh.
figure() { sed -n "s/^# # stress: $1=\([0-9]*\).*/\1/p" <<<"$out" | awk '{ s += $1 } END { print s + 0 }'; }
splats=$(grep -c '^# .*: kernel splat:' <<<"$out")
leaks=0
if [[ -w $kmemleak ]]; then
	sleep 6
	echo scan >"$kmemleak"
	sleep 1
	echo scan >"$kmemleak"
	leaks=$(grep -c '^unreferenced object' "$kmemleak")
	((leaks)) && head -n 60 "$kmemleak" | sed 's/^/# kmemleak: /'
else
	leaks="n/a (no kmemleak in this kernel)"
fi
lost=$(figure lost)
echo "# stress summary ($(uname -r), $(nproc) CPUs):"
printf '#   %-24s %s\n' "packets fuzzed" "$(figure fuzzed)" "splats" "$splats" "leaks" "$leaks" \
	"swap cycles" "$(figure cycles)" "echo requests" "$(figure requests)" \
	"echo replies" "$(figure replies)" "lost replies" "$lost (allowed: $(figure allowed))" \
	"insmod failures injected" "$(figure injected)"
tail -n 1 <<<"$out"
[[ $leaks =~ ^[0-9]+$ ]] && ((leaks)) && rc=1
((splats)) && rc=1
exit "$rc"
