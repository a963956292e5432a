#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Runs rust_icmp's tests in the VM (make check: qemu/run tests/run_all.sh).
#
#   tests/run_all.sh [TEST...]     default: every test listed below; a TEST may carry
#                                  arguments ("selftests.sh --quick")
#
# Prints one KTAP stream: each test's own output nested as "# " lines, then "ok N test" or
# "not ok N test". A test fails when it exits non-zero, when its summary line counts a
# failure (whatever its exit code), when it reports a skip whose reason does not start with
# "environment:" (a missing tool, tracepoint or helper is a failure; the environment skips a
# test may declare are a short list in the test itself), when it runs past its time limit
# (RUN_ALL_TIMEOUT seconds, default 1800: its stack traces and the kernel log are shown and
# the next test runs), or when the kernel log shows a splat afterwards (WARN, BUG, oops,
# Rust panics, lockdep, RCU, KASAN/UBSAN reports). The last lines list the environment
# skips with their reasons and sum the test cases of all tests: "N passed, N failed[, N
# skipped]", and kselftest's "# Totals:" line.
set -u
. "$(dirname "$0")/lib.sh"
require_vm run_all.sh

# The order matters only for reading the log: the cheapest tests first.
TESTS=(module.sh doctests.sh rcv_echo.py rcv_probe.py rcv_errors.py rcv_paths.py send_errors.py
	ipv6_callers.py xfrm.py hooks.py unload_traffic.sh hotswap.py failures.sh
	faults.py fuzz.sh "selftests.sh --quick")
(($#)) && TESTS=("$@")
LIMIT=${RUN_ALL_TIMEOUT:-1800}

SPLATS='WARNING:|BUG:|Oops|Kernel panic|panicked at|general protection fault|KASAN|UBSAN'
SPLATS+='|possible circular locking|suspicious RCU usage|rcu_sched self-detected|refcount_t:'
SPLATS+='|sleeping function called from invalid context|kmemleak|list_add corruption'

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "TAP version 13"
echo "1..${#TESTS[@]}"
pass=0 fail=0 skip=0 n=0 bad=0
env_skips=()
for t in "${TESTS[@]}"; do
	n=$((n + 1))
	dmesg -C
	start=$SECONDS
	read -ra argv <<<"$t"
	# The test's output is shown as it comes (a long test on the debug kernel runs for
	# minutes), and kept for its summary line.
	timeout -k 30 "$LIMIT" "$TESTS_DIR/${argv[0]}" "${argv[@]:1}" 2>&1 | tee "$log" |
		sed -u 's/^/# /'
	rc=${PIPESTATUS[0]}
	out=$(<"$log")
	secs=$((SECONDS - start))
	if ((rc == 124 || rc == 137)); then
		echo "# $t: still running after ${LIMIT}s, killed; the tasks' stacks:"
		echo t >/proc/sysrq-trigger
		dmesg | tail -n 120 | sed 's/^/#   /'
		rc=$KSFT_FAIL
	fi
	last=$(tail -n 1 <<<"$out")
	if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
		pass=$((pass + BASH_REMATCH[1])) fail=$((fail + BASH_REMATCH[2]))
		skip=$((skip + ${BASH_REMATCH[4]:-0}))
		((BASH_REMATCH[2])) && rc=$KSFT_FAIL
	else
		fail=$((fail + 1))
		echo "# $t: no summary line (crashed?)"
		rc=$KSFT_FAIL
	fi
	# Skips: each must be an environment skip the test declares.
	while IFS= read -r line; do
		reason=${line#* # SKIP }
		if [[ $reason == environment:* ]]; then
			env_skips+=("$t: ${line%% # SKIP *}: ${reason#environment: }")
		else
			echo "# $t: an undeclared skip is a failure: $line"
			fail=$((fail + 1))
			rc=$KSFT_FAIL
		fi
	done < <(grep -E '^(ok [0-9]+ .*|1\.\.0) # SKIP ' <<<"$out")
	if splat=$(dmesg | grep -E "$SPLATS"); then
		echo "# kernel log after $t:"
		dmesg | sed 's/^/#   /' | tail -n 60
		echo "# $t: kernel splat: $(head -n 1 <<<"$splat")"
		fail=$((fail + 1))
		rc=$KSFT_FAIL
	fi
	case $rc in
	"$KSFT_PASS") echo "ok $n $t # ${secs}s" ;;
	"$KSFT_SKIP") echo "ok $n $t # SKIP" ;;
	*) echo "not ok $n $t # ${secs}s"; bad=1 ;;
	esac
done
((${#env_skips[@]})) && printf '# environment skip: %s\n' "${env_skips[@]}"
ktap_totals "$pass" "$fail" "$skip"
((bad)) && exit $KSFT_FAIL
exit $KSFT_PASS
