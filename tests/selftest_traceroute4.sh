#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The IPv4 part of tools/testing/selftests/net/traceroute.sh, with a check that can fail.
#
# Written for 6.12, whose traceroute.sh called check_err and require_command without its
# lib.sh defining them, so it printed [ OK ] whatever traceroute did (7.3's lib.sh defines
# them, and make selftests runs traceroute.sh's IPv4 cases as well). This builds the same
# topology,
#   h1 1.0.1.3 -- eth1 1.0.1.1 (primary 1.0.3.1) router eth2 1.0.2.1 -- 1.0.2.4 h2
# with the router's net.ipv4.icmp_errors_use_inbound_ifaddr=1, and asserts on traceroute's
# output: hop 1 must be 1.0.1.1 and hop 2 the target. To make hop 1 depend on that
# sysctl (and so on __icmp_send's source selection, inet_select_addr on the inbound device),
# the router's route back to h1 prefers 1.0.3.1 as source: without the sysctl, hop 1 would
# be 1.0.3.1. Prints "TEST: ... [ OK ]" / "[FAIL]" lines like the kernel's selftests.
set -u
ns_h1=tr4-h1-$$ ns_r=tr4-r-$$ ns_h2=tr4-h2-$$
cleanup() { for n in $ns_h1 $ns_r $ns_h2; do ip netns del "$n" 2>/dev/null; done; }
trap cleanup EXIT

command -v traceroute >/dev/null || { echo "SKIP: traceroute not installed"; exit 4; }
for n in $ns_h1 $ns_r $ns_h2; do
	ip netns add "$n"
	ip -n "$n" link set lo up
	ip netns exec "$n" sysctl -qw net.ipv4.ip_forward=1
done
ip link add eth0 netns "$ns_h1" type veth peer name eth1 netns "$ns_r"
ip link add eth0 netns "$ns_h2" type veth peer name eth2 netns "$ns_r"
ip -n "$ns_r" addr add 1.0.3.1/24 dev eth1
ip -n "$ns_r" addr add 1.0.1.1/24 dev eth1
ip -n "$ns_r" addr add 1.0.2.1/24 dev eth2
ip -n "$ns_h1" addr add 1.0.1.3/24 dev eth0
ip -n "$ns_h2" addr add 1.0.2.4/24 dev eth0
for pair in "$ns_h1 eth0" "$ns_r eth1" "$ns_r eth2" "$ns_h2 eth0"; do
	set -- $pair
	ip -n "$1" link set "$2" up
done
ip -n "$ns_h1" route add default via 1.0.1.1
ip -n "$ns_h2" route add default via 1.0.2.1
ip -n "$ns_r" route replace 1.0.1.0/24 dev eth1 src 1.0.3.1
ip netns exec "$ns_r" sysctl -qw net.ipv4.icmp_errors_use_inbound_ifaddr=1
ip netns exec "$ns_h1" ping -c 2 -w 5 1.0.2.4 >/dev/null

out=$(ip netns exec "$ns_h1" traceroute -n -q 1 -w 2 -m 5 1.0.2.4 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
hops=$(awk 'NR > 1 { print $1 ":" $2 }' <<<"$out" | tr '\n' ' ')
result=0
check() { # name condition...
	local name=$1
	shift
	if "$@"; then printf 'TEST: %-60s [ OK ]\n' "$name"
	else printf 'TEST: %-60s [FAIL]\n' "$name"; result=1; fi
}
check "IPv4 traceroute exits 0" test "$rc" -eq 0
check "IPv4 traceroute hop 1 is the inbound address 1.0.1.1" test "${hops%% *}" = "1:1.0.1.1"
check "IPv4 traceroute hop 2 is the target 1.0.2.4, and last" test "$hops" = "1:1.0.1.1 2:1.0.2.4 "
exit $result
