#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Loading and unloading rust_icmp: the takeover of inet_protos[IPPROTO_ICMP] happens on
# insmod and is undone by rmmod. Which code answers is observed, not assumed: the function
# tracer counts calls of the built-in icmp_rcv, and /proc/net/rust_icmp counts Rust's.
set -u
. "$(dirname "$0")/lib.sh"
require_vm module.sh

ktap_header "module.sh: load, takeover, unload, reload" 12

ping_lo() { ping -c 2 -i 0.2 -W 2 127.0.0.1; }

module_loaded && rmmod rust_icmp

# Built-in code before loading: the C icmp_rcv answers.
calls=$(count_calls icmp_rcv ping_lo)
if ((calls >= 2)); then ktap_ok "before insmod, the built-in icmp_rcv handles ICMP ($calls calls)"
else ktap_not_ok "before insmod, the built-in icmp_rcv handles ICMP" "icmp_rcv called $calls times"; fi

ip netns add before 2>/dev/null
dmesg -C
if out=$(insmod "$MODULE" 2>&1); then ktap_ok "insmod"; else ktap_not_ok "insmod" "$out"; fi

check "dmesg reports the takeover" grep -q "IPPROTO_ICMP taken over" <(dmesg)
check "/proc/net/rust_icmp exists" test -r /proc/net/rust_icmp
check "a namespace that existed before insmod has its counters" \
	ip netns exec before test -r /proc/net/rust_icmp
ip netns add after
check "a namespace created after insmod has its counters" \
	ip netns exec after test -r /proc/net/rust_icmp

before=$(module_counter IcmpMsgOutType0)
calls=$(count_calls icmp_rcv ping_lo)
after=$(module_counter IcmpMsgOutType0)
if ((calls == 0 && after - before == 2)); then
	ktap_ok "while loaded, Rust answers ping and the built-in icmp_rcv is not called"
else
	ktap_not_ok "while loaded, Rust answers ping and the built-in icmp_rcv is not called" \
		"icmp_rcv calls: $calls; Rust echo replies: $((after - before))"
fi

out=$(insmod "$MODULE" 2>&1)
rc=$?
if ((rc != 0)) && [[ $out == *"File exists"* ]] && [[ $(ping_lo 2>&1) == *" 0% packet loss"* ]]; then
	ktap_ok "a second insmod fails (EEXIST) and the loaded instance keeps answering"
else
	ktap_not_ok "a second insmod fails (EEXIST) and the loaded instance keeps answering" \
		"insmod rc=$rc: $out"
fi

if out=$(rmmod rust_icmp 2>&1); then ktap_ok "rmmod"; else ktap_not_ok "rmmod" "$out"; fi
check "after rmmod, /proc/net/rust_icmp is gone in every namespace" \
	bash -c '! test -e /proc/net/rust_icmp && ! ip netns exec before test -e /proc/net/rust_icmp'

calls=$(count_calls icmp_rcv ping_lo)
if ((calls >= 2)); then ktap_ok "after rmmod, the built-in icmp_rcv answers again ($calls calls)"
else ktap_not_ok "after rmmod, the built-in icmp_rcv answers again" "icmp_rcv called $calls times"; fi

# Reload: the slot is taken again, then given back again.
insmod "$MODULE"
calls=$(count_calls icmp_rcv ping_lo)
replies=$(module_counter IcmpMsgOutType0)
rmmod rust_icmp
calls_after=$(count_calls icmp_rcv ping_lo)
if ((calls == 0 && replies == 2 && calls_after >= 2)); then
	ktap_ok "insmod/rmmod/insmod/rmmod retakes and restores cleanly"
else
	ktap_not_ok "insmod/rmmod/insmod/rmmod retakes and restores cleanly" \
		"reloaded: icmp_rcv calls $calls, Rust replies $replies; unloaded: icmp_rcv calls $calls_after"
fi

ip netns del before
ip netns del after
ktap_finish
