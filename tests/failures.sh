#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Clean failures of insmod: whatever step of the module's initialisation fails, insmod must
# report an error and leave nothing behind (no module, no live patch, no counter files, the
# built-in handler in inet_protos), and the host must keep working.
#
# Every allocation made under the module's code is failed in turn: failslab and
# fail_page_alloc are limited by their stack-trace filter to call chains that pass through
# the module area (where the module's init code runs; nothing else is loaded), and
# /proc/thread-self/fail-nth makes the n-th such allocation of the loading thread fail, for
# n = 1, 2, ... until the n-th never comes (tests/lib/failnth_insmod.py). That reaches each
# step of the init in turn: the per-CPU control sockets (inet_ctl_sock_create), the
# per-namespace counters, the takeover of inet_protos, then the live patch
# (klp_enable_patch). A second instance, which finds the slot taken, is the last case.
# Needs the debug kernel (make kernel DEBUG=1: CONFIG_FAULT_INJECTION_STACKTRACE_FILTER);
# kmemleak, when present, must find no leak afterwards.
set -u
. "$(dirname "$0")/lib.sh"
require_vm failures.sh

DBG=/sys/kernel/debug
MAX=${FAILURES_MAX:-1000}
# Fail every STRIDE-th allocation only (the short run of make check: each insmod takes
# about 12 s on the debug kernel under TCG, and there are 270 to 300).
STRIDE=${FAILURES_STRIDE:-1}
# x86-64's module area: MODULES_VADDR (0xffffffffa0000000 or, with a 1 GiB kernel image,
# 0xffffffffc0000000) to MODULES_END; the kernel image itself lies below it.
MOD_START=0xffffffffa0000000
MOD_END=0xffffffffff000000

if [[ ! -e $DBG/failslab/require-start ]]; then
	ktap_header "failures.sh: every allocation of insmod's init fails once, cleanly" 1
	ktap_skip "fault injection" "environment: this kernel has no failslab stack-trace filter (the debug kernel of make stress has one)"
	ktap_finish
fi
ktap_header "failures.sh: every allocation of insmod's init fails once, cleanly" 5
module_loaded && unload_module

for f in failslab fail_page_alloc; do
	echo N >"$DBG/$f/ignore-gfp-wait"
	echo 0 >"$DBG/$f/verbose"
	echo -1 >"$DBG/$f/times"
	echo 32 >"$DBG/$f/stacktrace-depth"
	echo $MOD_START >"$DBG/$f/require-start"
	echo $MOD_END >"$DBG/$f/require-end"
done
echo N >"$DBG/fail_page_alloc/ignore-gfp-highmem"
echo 0 >"$DBG/fail_page_alloc/min-order"
kmemleak=$DBG/kmemleak
[[ -w $kmemleak ]] && echo clear >"$kmemleak"

# What must hold after a failed insmod; prints what does not.
leftovers() {
	local bad=()
	module_loaded && bad+=("the module is loaded")
	[[ -e $LIVEPATCH ]] && bad+=("the live patch is registered")
	[[ -e /proc/net/rust_icmp ]] && bad+=("/proc/net/rust_icmp exists")
	# The built-in icmp_rcv answers (the slot holds it again).
	(($(count_calls icmp_rcv ping -c 1 -W 2 127.0.0.1) >= 1)) || bad+=("the built-in icmp_rcv does not answer ping")
	((${#bad[@]})) && printf '%s; ' "${bad[@]}"
}

declare -A steps=()
failed=0 tolerated=0 unclean=() total=0 errnos=""
for ((n = 1; n <= MAX; n += STRIDE)); do
	dmesg -C
	# The load runs in the thread that set fail-nth (no fork or exec in between); the tool
	# prints the outcome and what is left of fail-nth: 0 if the n-th allocation came.
	# shellcheck disable=SC2086 # one word per parameter
	read -r result left < <("$TESTS_DIR/lib/failnth_insmod.py" "$MODULE" "$n" $MODULE_PARAMS)
	if [[ $result == ok ]]; then
		unload_module >/dev/null 2>&1
		if [[ $left != 0 ]]; then
			total=$((n - 1)) # at most: the n-th did not come
			break
		fi
		# The allocation failed and the module loaded anyway: a caller with a fallback
		# (kvmalloc tries kmalloc, then vmalloc).
		tolerated=$((tolerated + 1))
		continue
	fi
	failed=$((failed + 1))
	why=$(dmesg | sed -n 's/.*rust_icmp: \(.*\)/\1/p' | tail -n 1)
	why=${why:-(no message from the module: failed before its init ran)}
	# Group by message, without the error the message carries.
	steps["${why%% (*}"]=$((${steps["${why%% (*}"]:-0} + 1))
	[[ $errnos == *"$result"* ]] || errnos+="${errnos:+, }$result"
	if left=$(leftovers); [[ -n $left ]]; then
		unclean+=("n=$n ($why): $left")
		module_loaded && unload_module >/dev/null 2>&1
	fi
done

if ((total)); then
	ktap_ok "$(( (total + STRIDE - 1) / STRIDE )) of the $total allocations under insmod's init failed once (every ${STRIDE}.): $failed insmod failures, $tolerated failures the kernel recovered from"
else
	ktap_not_ok "insmod succeeds after each allocation failed once" "still failing after $MAX"
fi
ktap_diag "stress: injected=$failed"
for s in "${!steps[@]}"; do ktap_diag "  ${steps[$s]} x: $s"; done
ktap_diag "insmod's errors: $errnos"
# The full sweep must reach several steps of init; a strided one (make check) at least one.
min_failed=5 min_steps=3
((STRIDE > 1)) && min_failed=1 min_steps=1
if ((failed >= min_failed && ${#steps[@]} >= min_steps)); then
	ktap_ok "the failures reached $failed allocations in ${#steps[@]} steps of init"
else
	ktap_not_ok "the failures reached the steps of init" "only $failed allocations in ${#steps[@]} steps: is the stack-trace filter working?"
fi
if ((${#unclean[@]} == 0)); then
	ktap_ok "every failed insmod left nothing registered and the built-in code answering"
else
	ktap_not_ok "every failed insmod left nothing registered" "$(printf '%s\n' "${unclean[@]}")"
fi
for f in failslab fail_page_alloc; do echo 0 >"$DBG/$f/require-end"; done

# A loaded instance works; a second one finds the slot taken and changes nothing.
load_module
before=$(module_counter IcmpMsgOutType0)
ping -c 2 -i 0.2 -W 2 127.0.0.1 >/dev/null
after=$(module_counter IcmpMsgOutType0)
out=$(insmod "$MODULE" 2>&1)
rc=$?
if ((after - before == 2 && rc != 0)) && [[ $out == *"File exists"* ]] &&
	[[ $(ping -c 2 -i 0.2 -W 2 127.0.0.1 2>&1) == *" 0% packet loss"* ]]; then
	ktap_ok "the loaded instance answers; a second insmod fails with EEXIST and changes nothing"
else
	ktap_not_ok "a second insmod fails cleanly" "Rust replies $((after - before)), insmod rc=$rc: $out"
fi
unload_module

if [[ -w $kmemleak ]]; then
	# kmemleak reports objects unreferenced for 5 s, found by two scans.
	sleep 6
	echo scan >"$kmemleak"
	sleep 1
	echo scan >"$kmemleak"
	leaks=$(grep -c '^unreferenced object' "$kmemleak")
	if ((leaks == 0)); then
		ktap_ok "kmemleak: no leak after $(( (total + STRIDE - 1) / STRIDE )) insmods with a failed allocation"
	else
		ktap_not_ok "kmemleak: no leak" "$(head -n 40 "$kmemleak")"
	fi
else
	ktap_skip "kmemleak" "environment: no kmemleak in this kernel"
fi
ktap_finish
