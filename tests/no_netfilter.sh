#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The one path known to hand a packet to a protocol handler without a route, which only a
# kernel without netfilter has: an xfrm interface's receive callback drops the route of the
# packet it decrypted (xfrmi_scrub_packet), and xfrm4_transport_finish(), compiled without
# netfilter, resubmits the transport-mode packet to its protocol instead of routing it
# again. C's icmp_rcv reads rt->dst.dev there and oopses. rust_icmp's receive trampoline
# must free the packet instead (patch 16, skb_has_route_dev).
#
# Run by `make check-no-netfilter`, on the default kernel built without netfilter and with
# xfrm interfaces. It skips on a kernel with netfilter: the path does not exist there.
#
# peer 10.0.1.1 veth0 <-> veth0 10.0.1.2 dut. The peer sends its echo requests in ESP
# (transport mode, null encryption); the dut's state has if_id 7.
#   1. no xfrm interface with if_id 7: the packet keeps its route, rust_icmp answers (the
#      control: the setup delivers the decrypted request to ICMP);
#   2. an xfrm interface with if_id 7: the dut's ESP state counts the request, the
#      trampoline frees it (skb:kfree_skb, NOT_SPECIFIED, in the trampoline), no reply;
#   3. the kernel log has no splat.
set -u
. "$(dirname "$0")/lib.sh"
require_vm no_netfilter.sh
[[ -d /proc/net/netfilter ]] &&
	ktap_skip_all "no_netfilter.sh: this kernel has netfilter, which routes the packet again"
ktap_header "no_netfilter.sh: a packet an xfrm interface took the route from" 3

module_loaded && unload_module
veth_pair || exit $KSFT_FAIL

key=0x$(printf '%02x' $(seq 1 32) | tr -d '\n')
crypto=(enc 'ecb(cipher_null)' '' auth-trunc 'hmac(sha256)' "$key" 128)
sa=(src 10.0.1.1 dst 10.0.1.2 proto esp spi 0x100 mode transport)
ip -n peer xfrm state add "${sa[@]}" "${crypto[@]}"
ip -n peer xfrm policy add src 10.0.1.1/32 dst 10.0.1.2/32 proto icmp dir out \
	tmpl proto esp mode transport
ip -n dut xfrm state add "${sa[@]}" "${crypto[@]}" if_id 7

# Packets the dut's ESP state decrypted.
esp_packets() {
	ip -n dut -s xfrm state |
		awk '/lifetime current:/ { getline; sub(/\(packets\).*/, ""); print $NF; exit }'
}

load_module || { ktap_not_ok "insmod" "insmod $MODULE failed"; ktap_finish; }

before=$(esp_packets)
if ip netns exec peer ping -c 1 -W 2 -q 10.0.1.2 >/dev/null &&
	(($(esp_packets) == before + 1)); then
	ktap_ok "without an xfrm interface, the request comes in ESP and rust_icmp answers"
else
	ktap_not_ok "without an xfrm interface, the request comes in ESP and rust_icmp answers" \
		"ping failed, or the dut's ESP state counted $before then $(esp_packets) packets"
fi

ip -n dut link add ipsec1 type xfrm dev veth0 if_id 7
ip -n dut link set ipsec1 up
inst=$TRACING/instances/rust_icmp_no_netfilter
rmdir "$inst" 2>/dev/null
mkdir "$inst"
echo 'protocol == 2048' >"$inst/events/skb/kfree_skb/filter"
echo 1 >"$inst/events/skb/kfree_skb/enable"
before=$(esp_packets)
replied=0
ip netns exec peer ping -c 1 -W 2 -q 10.0.1.2 >/dev/null && replied=1
echo 0 >"$inst/events/skb/kfree_skb/enable"
drops=$(grep -cE 'location=.*(handler_callback|drop_without_route).*\[rust_icmp\] reason: NOT_SPECIFIED' "$inst/trace")
trace=$(grep kfree_skb "$inst/trace" | tail -n 5)
rmdir "$inst"
if ((!replied && $(esp_packets) == before + 1 && drops == 1)); then
	ktap_ok "with an xfrm interface, the trampoline frees the request without a route"
else
	ktap_not_ok "with an xfrm interface, the trampoline frees the request without a route" \
		"replied $replied, ESP packets $before then $(esp_packets), drops in the trampoline $drops; $trace"
fi

splats=$(dmesg | grep -E 'BUG:|Oops|WARNING:|general protection' || true)
if [[ -z $splats ]]; then
	ktap_ok "no splat in the kernel log"
else
	ktap_not_ok "no splat in the kernel log" "$splats"
fi

unload_module
veth_pair_del
ktap_finish
