#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Loading and unloading rust_icmp. insmod takes over inet_protos[IPPROTO_ICMP] and
# live-patches __icmp_send and friends; scripts/unload disables the patch and rmmod gives
# the handler back. Which code runs is observed, not assumed, with the function tracer:
# the built-in icmp_rcv is called for every ICMP message C receives, and C's icmp_glue_bits
# (the payload callback of ip_append_data, only ever called through a pointer) for every
# message C sends; /proc/net/rust_icmp (with the module parameter mirror=1, which the tests
# set) counts what Rust does.
set -u
. "$(dirname "$0")/lib.sh"
require_vm module.sh

ktap_header "module.sh: load, takeover, live patch, unload, reload" 16

ping_lo() { ping -c 2 -i 0.2 -W 2 127.0.0.1; }
# A datagram to a closed UDP port: __icmp_send answers with a port unreachable.
udp_closed() { for _ in 1 2; do echo x >/dev/udp/127.0.0.1/9; done; sleep 0.2; }

module_loaded && unload_module

# Built-in code before loading.
rcv=$(count_calls icmp_rcv ping_lo)
glue=$(count_calls icmp_glue_bits udp_closed)
if ((rcv >= 2 && glue >= 2)); then
	ktap_ok "before insmod, C receives (icmp_rcv: $rcv) and sends (icmp_glue_bits: $glue)"
else
	ktap_not_ok "before insmod, C receives and sends ICMP" "icmp_rcv $rcv, icmp_glue_bits $glue calls"
fi

ip netns add before 2>/dev/null
dmesg -C
if out=$(load_module 2>&1); then ktap_ok "insmod, live patch transition completed"
else ktap_not_ok "insmod, live patch transition completed" "$out"; fi

check "dmesg reports the takeover and the patch" \
	grep -qz "IPPROTO_ICMP taken over.*rust_icmp: live patch enabled" <(dmesg)
# With mirror=1 the patch takes icmp_out_count too: the mirror counts every ICMP message sent.
check "the live patch is enabled, with icmp_out_count (mirror=1)" \
	bash -c "grep -qx 1 $LIVEPATCH/enabled && test -d $LIVEPATCH/vmlinux/__icmp_send,1 &&
		test -d $LIVEPATCH/vmlinux/icmp_out_count,1"
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

before=$(module_counter IcmpMsgOutType3)
glue=$(count_calls icmp_glue_bits udp_closed)
after=$(module_counter IcmpMsgOutType3)
if ((glue == 0 && after - before == 2)); then
	ktap_ok "while loaded, Rust sends port unreachables and C's icmp_glue_bits is not called"
else
	ktap_not_ok "while loaded, Rust sends port unreachables" \
		"icmp_glue_bits calls: $glue; Rust port unreachables: $((after - before))"
fi

out=$(rmmod rust_icmp 2>&1)
rc=$?
if ((rc != 0)) && module_loaded && [[ $(ping_lo 2>&1) == *" 0% packet loss"* ]]; then
	ktap_ok "plain rmmod is refused while the live patch is enabled, nothing changes"
else
	ktap_not_ok "plain rmmod is refused while the live patch is enabled" "rmmod rc=$rc: $out"
fi

out=$(insmod "$MODULE" 2>&1)
rc=$?
if ((rc != 0)) && [[ $out == *"File exists"* ]] && [[ $(ping_lo 2>&1) == *" 0% packet loss"* ]]; then
	ktap_ok "a second insmod fails (EEXIST) and the loaded instance keeps answering"
else
	ktap_not_ok "a second insmod fails (EEXIST) and the loaded instance keeps answering" \
		"insmod rc=$rc: $out"
fi

if out=$(unload_module 2>&1); then ktap_ok "scripts/unload"; else ktap_not_ok "scripts/unload" "$out"; fi
check "after unload, no live patch and no /proc/net/rust_icmp in any namespace" \
	bash -c '! test -e /sys/kernel/livepatch/rust_icmp && ! test -e /proc/net/rust_icmp &&
		! ip netns exec before test -e /proc/net/rust_icmp'

rcv=$(count_calls icmp_rcv ping_lo)
glue=$(count_calls icmp_glue_bits udp_closed)
if ((rcv >= 2 && glue >= 2)); then
	ktap_ok "after unload, C receives (icmp_rcv: $rcv) and sends (icmp_glue_bits: $glue) again"
else
	ktap_not_ok "after unload, C receives and sends again" "icmp_rcv $rcv, icmp_glue_bits $glue calls"
fi

# Reload: taken over again, then given back again.
load_module
rcv=$(count_calls icmp_rcv ping_lo)
glue=$(count_calls icmp_glue_bits udp_closed)
replies=$(module_counter IcmpMsgOutType0)
unload_module
rcv_after=$(count_calls icmp_rcv ping_lo)
if ((rcv == 0 && glue == 0 && replies == 2 && rcv_after >= 2)); then
	ktap_ok "load/unload/load/unload retakes and restores cleanly"
else
	ktap_not_ok "load/unload/load/unload retakes and restores cleanly" \
		"reloaded: icmp_rcv $rcv, icmp_glue_bits $glue, Rust replies $replies; unloaded: icmp_rcv $rcv_after"
fi

# Loaded as a user would, without mirror=1: Rust handles ICMP all the same and counts in
# the MIB, and nothing in /proc/net shows that it is loaded. icmp_out_count, which would
# count what C's counts, stays C's: the patch leaves it out.
snmp() { nstat -asz "$1" | awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }'; }
MODULE_PARAMS='' load_module
patched=0 send_patched=0
[[ -d $LIVEPATCH/vmlinux/icmp_out_count,1 ]] && patched=1
[[ -d $LIVEPATCH/vmlinux/__icmp_send,1 ]] && send_patched=1
replies=$(snmp IcmpMsgOutType0) unreach=$(snmp IcmpMsgOutType3)
rcv=$(count_calls icmp_rcv ping_lo)
glue=$(count_calls icmp_glue_bits udp_closed)
replies=$(($(snmp IcmpMsgOutType0) - replies)) unreach=$(($(snmp IcmpMsgOutType3) - unreach))
files=$(find /proc/net/ /proc/self/net/ -maxdepth 1 -name 'rust*' | wc -l)
unload_module
name="without mirror=1, Rust answers and counts in the MIB, with no /proc/net/rust_icmp and C's icmp_out_count"
if ((rcv == 0 && glue == 0 && replies == 2 && unreach == 2 && files == 0 &&
	patched == 0 && send_patched == 1)); then
	ktap_ok "$name"
else
	ktap_not_ok "$name" "icmp_rcv $rcv, icmp_glue_bits $glue calls; MIB: $replies echo replies, $unreach unreachables; $files files; patched: icmp_out_count $patched, __icmp_send $send_patched"
fi

ip netns del before
ip netns del after
ktap_finish
