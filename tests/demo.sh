#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# make run: load rust_icmp, ping from one namespace to another through it, and print the
# module's counters next to the kernel's MIB deltas (nstat) in the namespace that answered.
set -eu
. "$(dirname "$0")/lib.sh"
require_vm demo.sh

module_loaded || insmod "$MODULE" mirror=1
dmesg | grep rust_icmp | tail -n 1

veth_pair

export NSTAT_HISTORY=/tmp/nstat.dut
ip netns exec dut nstat -n
declare -A before
while read -r k v; do before[$k]=$v; done < <(ip netns exec dut cat /proc/net/rust_icmp)

echo
echo "$ ip netns exec peer ping -c 3 10.0.1.2      # answered by rust_icmp in 'dut'"
ip netns exec peer ping -c 3 -i 0.2 10.0.1.2
echo

declare -A mibdelta
while read -r k v _; do mibdelta[$k]=$v; done < <(ip netns exec dut nstat -a 'Icmp*' | tail -n +2)
printf '%-28s %18s %18s\n' "counter (dut namespace)" "/proc/net/snmp" "/proc/net/rust_icmp"
while read -r k v; do
	d=$((v - ${before[$k]:-0}))
	m=${mibdelta[$k]:-0}
	[[ $d == 0 && $m == 0 ]] && continue
	printf '%-28s %18s %18s\n' "$k" "$m" "$d"
done < <(ip netns exec dut cat /proc/net/rust_icmp)
echo
echo "The namespaces 'peer' (10.0.1.1) and 'dut' (10.0.1.2) stay up; rust_icmp stays loaded."
echo "Try: ip netns exec peer ping 10.0.1.2; ip netns exec dut cat /proc/net/rust_icmp; scripts/unload"
