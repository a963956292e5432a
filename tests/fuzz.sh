#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Fuzzing rust_icmp with tools/icmpfuzz: seeded random and malformed ICMP (random
# type/code/length, bad checksums, truncated headers, errors quoting bad inner headers,
# PROBE objects with bad lengths, IP options, fragments, broadcast and multicast) sent from
# namespace peer to namespace dut as Ethernet frames.
#
#   tests/fuzz.sh [--mode diff|volume|both] [--seed S] [--count N] [--diff-count N]
#                 [--rate FPS] [--volume-rate FPS] [--batch B] [--control 1]
#
# Without flags, the environment gives the defaults (for tests/run_all.sh, which passes
# none): FUZZ_MODE, FUZZ_SEED, FUZZ_COUNT, FUZZ_DIFF_COUNT, FUZZ_CONTROL.
#
# diff    the same sequence (default 20,000 triggers) goes to the built-in C code, then to
#         rust_icmp, in the same boot, each in fresh namespaces; the runs must agree on the
#         packets the dut sends (a multiset, IP ID, timestamps and the checksums covering
#         them masked), every /proc/net/snmp and /proc/net/netstat delta in the dut, the
#         drop reasons (skb:kfree_skb), the icmp:icmp_send events and the ICMP errors
#         queued on a UDP socket of the dut (IP_RECVERR, RFC 4884); in both runs
#         IcmpInMsgs counts exactly the triggers that reach icmp_rcv (the generator knows
#         which), and in the Rust run the module's counters equal the MIB deltas.
#         --control 1: the second run is the built-in C code again, not rust_icmp. What
#         such a run reports is the kernel differing from itself (timing, randomness), not
#         the module; its messages still say "Rust" for the second run.
# volume  rust_icmp loaded, 1,000,000 triggers by default: afterwards IcmpInMsgs is still the
#         number of triggers that reach icmp_rcv, the module's counters equal the MIB
#         deltas, and the dut answers ping.
# both    (default) diff, then volume; --count sets the volume count, --diff-count the
#         differential one. With one mode, --count sets that mode's count.
#
# Both modes check that no queue dropped a packet (the capture socket, the CPU backlogs of
# /proc/net/softnet_stat, the veth pair), which would make the counts meaningless, and
# that the capture holds every packet the dut transmitted (IpOutTransmits): the sender is
# paced (--rate, frames per second) below what the VM handles. FUZZ_KEEP=1 keeps the
# captures, counters and traces in build/fuzz (a failing run always does). A difference
# in the packets names the trigger; `icmpfuzz --seed S --dump I` shows it.
set -u
. "$(dirname "$0")/lib.sh"
require_vm fuzz.sh

FUZZ=$TOP/build/tools/icmpfuzz/release/icmpfuzz
MODE=${FUZZ_MODE:-both} SEED=${FUZZ_SEED:-1} COUNT=${FUZZ_COUNT:-}
DIFF_COUNT=${FUZZ_DIFF_COUNT:-20000} BATCH=32 CONTROL=${FUZZ_CONTROL:-0}
# Pacing, in frames per second. Measured under TCG on 2 vCPUs, unpaced: about 10,000
# frames/s in a volume run, 4,500 to 7,000 in a differential run (which traces every drop),
# and no queue dropped a packet: veth queues each frame on the backlog of the sending CPU,
# whose softirq handles it (and the dut's answer) when the send re-enables bottom halves,
# so the sender rarely gets ahead. The caps keep a faster machine (KVM) in that regime.
DIFF_RATE=5000 VOLUME_RATE=10000
usage() {
	echo "usage: $0 [--mode diff|volume|both] [--seed S] [--count N] [--diff-count N]" \
		"[--rate FPS] [--volume-rate FPS] [--batch B] [--control 1]" >&2
	exit 2
}
while (($#)); do
	(($# >= 2)) || usage
	case $1 in
	--mode) MODE=$2 ;;
	--seed) SEED=$2 ;;
	--count) COUNT=$2 ;;
	--diff-count) DIFF_COUNT=$2 ;;
	--rate) DIFF_RATE=$2 VOLUME_RATE=$2 ;;
	--volume-rate) VOLUME_RATE=$2 ;;
	--batch) BATCH=$2 ;;
	--control) CONTROL=$2 ;;
	*) usage ;;
	esac
	shift 2
done
case $MODE in
diff) DIFF_COUNT=${COUNT:-$DIFF_COUNT} VOLUME_COUNT=0 plan=11 ;;
volume) VOLUME_COUNT=${COUNT:-1000000} DIFF_COUNT=0 plan=6 ;;
both) VOLUME_COUNT=${COUNT:-1000000} plan=16 ;;
*) usage ;;
esac

if [[ ! -x $FUZZ ]]; then
	ktap_skip_all "fuzz.sh: $FUZZ is missing; build it on the host with cargo build \
--release --manifest-path tools/icmpfuzz/Cargo.toml --target-dir build/tools/icmpfuzz"
fi

[[ $CONTROL == [01] ]] || usage
# A control run has no module whose counters could be compared.
((CONTROL)) && plan=$((plan - 1))
ktap_header "fuzz.sh: seed $SEED, mode $MODE$( ((CONTROL)) && echo ", control: C against C")" $plan
WORK=$(mktemp -d /tmp/fuzz.XXXXXX)
# On failure (or with FUZZ_KEEP=1) the captures and counters are kept here.
KEEP=$TOP/build/fuzz
PEER_MAC=02:00:00:00:01:01 DUT_MAC=02:00:00:00:01:02
TRACE=$TRACING/instances/rust_icmp_fuzz
# The kernel log from here on must stay free of splats (run_all.sh checks this too; this
# makes a standalone run, e.g. on the debug kernel, say so as well).
dmesg_start=$(dmesg | wc -l)

# Fresh namespaces peer 10.0.1.1 -- veth -- dut 10.0.1.2 with fixed MACs (the fuzzer
# writes the Ethernet headers) and static neighbours (no ARP in the captures, no packet
# queued behind resolution). IPv6 stays off on the veth pair (no autoconfiguration
# traffic) but on in the dut's lo, so that a PROBE for ::1 or fd00::2 finds an interface.
# The peer's stack has no address while the fuzzer runs (it needs none: it sends and
# captures on AF_PACKET sockets): otherwise it would answer some of the dut's packets
# itself, e.g. a parameter problem for an echo reply whose echoed timestamp option it
# finds overflowed, and those answers would count in the dut's IcmpInMsgs too. Without an
# address it has no route back to the dut, so it drops the dut's packets silently.
topo_up() {
	# Few commands: on the debug kernel under TCG each one costs one to three seconds.
	topo_down
	ip -b - <<-EOF || return
		netns add peer
		netns add dut
	EOF
	local ns
	for ns in peer dut; do
		ip netns exec $ns sysctl -qw net.ipv6.conf.default.disable_ipv6=1 || return
	done
	ip link add veth0 netns peer address $PEER_MAC type veth \
		peer name veth0 netns dut address $DUT_MAC || return
	# dummy0: down, without addresses, so that a PROBE by name sees its state bits clear.
	# 10.0.1.77 is nobody: the dut sends it to the peer, whose stack drops it.
	ip -n dut -b - <<-EOF || return
		addr add 10.0.1.2/24 brd + dev veth0
		addr add fd00::2/128 dev lo
		link add dummy0 type dummy
		link set lo up
		link set veth0 up
		neigh replace 10.0.1.1 lladdr $PEER_MAC dev veth0 nud permanent
		neigh replace 10.0.1.77 lladdr $PEER_MAC dev veth0 nud permanent
	EOF
	ip -n peer -b - <<-EOF || return
		link set lo up
		link set veth0 up
		neigh replace 10.0.1.2 lladdr $DUT_MAC dev veth0 nud permanent
	EOF
	# Every trigger answered (no rate limits), PROBE and broadcast echo answered, source
	# routes refused, no reverse-path filter (off-link sources are accepted but cannot be
	# answered), and incomplete fragment queues timed out quickly, so that their time
	# exceeded messages arrive before the capture ends.
	ip netns exec dut sysctl -qw net.ipv4.icmp_ratelimit=0 net.ipv4.icmp_msgs_per_sec=1000000 \
		net.ipv4.icmp_msgs_burst=1000000 net.ipv4.icmp_echo_enable_probe=1 \
		net.ipv4.icmp_echo_ignore_broadcasts=0 net.ipv4.ipfrag_time=$FRAG_TIME \
		net.ipv4.conf.all.accept_source_route=0 net.ipv4.conf.all.rp_filter=0 \
		net.ipv4.conf.veth0.rp_filter=0
}
FRAG_TIME=2

topo_down() {
	ip -force -b - <<-EOF 2>/dev/null
		netns del peer
		netns del dut
	EOF
}

module_snapshot() { # ns
	ip netns exec "$1" cat /proc/net/rust_icmp 2>/dev/null
}

# Non-zero differences between two "Name value" snapshots, sorted by name.
delta() { # before after
	awk 'NR == FNR { b[$1] = $2; next }
		{ d = $2 - b[$1]; delete b[$1]; if (d) print $1, d }
		END { for (k in b) if (b[k]) print k, -b[k] }' "$1" "$2" | sort
}

# Packets dropped by queues the traffic passes: the per-CPU backlogs (second column of
# softnet_stat, hexadecimal) and the veth devices of both namespaces.
queue_drops() {
	local total=0 d ns
	while read -r _ d _; do total=$((total + 16#$d)); done </proc/net/softnet_stat
	for ns in peer dut; do
		for d in $(ip netns exec $ns cat /sys/class/net/veth0/statistics/{rx,tx}_dropped); do
			total=$((total + d))
		done
	done
	echo $total
}

json() { # key file: a number or string of the fuzzer's JSON line
	sed -n "s/.*\"$1\": \"\{0,1\}\([^,\"}]*\).*/\1/p" "$2"
}

# Tracing of drop reasons and icmp_send events, in an instance of its own with a buffer
# large enough for a differential run (checked: an overrun makes the comparison void).
trace_start() {
	[[ -d $TRACING/events/skb/kfree_skb ]] || return 0
	mkdir -p $TRACE
	echo 16384 >$TRACE/buffer_size_kb
	echo >$TRACE/trace
	echo 1 >$TRACE/events/skb/kfree_skb/enable
	[[ -d $TRACE/events/icmp/icmp_send ]] && echo 1 >$TRACE/events/icmp/icmp_send/enable
	return 0
}

trace_stop() { # out-prefix: writes .drops (reason histogram), .sends (sorted), .overrun
	local p=$1
	: >"$p.drops"
	: >"$p.sends"
	echo 0 >"$p.overrun"
	[[ -d $TRACE ]] || return 0
	echo 0 >$TRACE/events/skb/kfree_skb/enable
	[[ -d $TRACE/events/icmp/icmp_send ]] && echo 0 >$TRACE/events/icmp/icmp_send/enable
	awk '/kfree_skb:/ && /protocol=2048/ { sub(/.*reason: /, ""); print }' $TRACE/trace |
		sort | uniq -c | awk '{ print $2, $1 }' >"$p.drops"
	awk '/icmp_send:/ { sub(/.*icmp_send: /, ""); sub(/ skbaddr=.*/, ""); print }' \
		$TRACE/trace | sort >"$p.sends"
	cat $TRACE/per_cpu/cpu*/stats | awk '/^overrun:/ { s += $2 } END { print s + 0 }' \
		>"$p.overrun"
	echo >$TRACE/trace
}

# One run of the fuzzer against fresh namespaces. Leaves in $WORK/NAME.*: the fuzzer's
# JSON (.json), its capture (.cap, sorted), MIB and module deltas (.mib, .mod), queue drops
# (.qdrops), and the trace (.drops, .sends, .overrun).
fuzz_run() { # name mode count rate [trace]
	local mode=$2 count=$3 rate=$4 tr=${5:-} p=$WORK/$1 q0 rc
	topo_up || return
	mib dut >"$p.mib0"
	module_snapshot dut >"$p.mod0"
	q0=$(queue_drops)
	[[ -n $tr ]] && trace_start
	# Volume runs count the dut's packets without keeping them.
	local cap=()
	[[ $mode == diff ]] && cap=(--capture "$p.cap.raw" --errqueue "$p.errq")
	# The fuzzer's progress (stderr) goes to the log as it comes; its JSON to a file.
	"$FUZZ" --mode "$mode" --seed "$SEED" --count "$count" --rate "$rate" --batch "$BATCH" \
		--settle $((FRAG_TIME + 2)) "${cap[@]}" --peer-mac $PEER_MAC --dut-mac $DUT_MAC \
		2>&1 >"$p.json" | sed -u 's/^/# /'
	rc=${PIPESTATUS[0]}
	[[ -n $tr ]] && trace_stop "$p"
	echo $(($(queue_drops) - q0)) >"$p.qdrops"
	mib dut >"$p.mib1"
	module_snapshot dut >"$p.mod1"
	delta "$p.mib0" "$p.mib1" >"$p.mib"
	delta "$p.mod0" "$p.mod1" >"$p.mod"
	[[ -f $p.cap.raw ]] && sort "$p.cap.raw" >"$p.cap"
	return "$rc"
}

# A one-line summary of a run for the log.
summary() { # name
	local p=$WORK/$1
	echo "$(json triggers "$p.json") triggers, $(json frames "$p.json") frames in" \
		"$(json seconds "$p.json") s ($(json frames_per_sec "$p.json") frames/s)," \
		"$(json to_icmp "$p.json") reach icmp_rcv, the dut sent $(json captured "$p.json")" \
		"packets back"
}

# ok if the fuzzer sent every frame and no queue dropped one.
check_run() { # name rc label
	local p=$WORK/$1 rc=$2 label=$3 problems=""
	if ((rc != 0)) || [[ ! -s $p.json ]]; then
		ktap_not_ok "$label" "icmpfuzz failed (exit $rc)"
		return 1
	fi
	ktap_diag "$label: $(summary "$1") [at ${SECONDS}s]"
	# For tests/stress.sh's summary (packets fuzzed: frames, summed over the runs).
	ktap_diag "stress: fuzzed=$(json frames "$p.json")"
	ktap_diag "kinds: $(sed -n 's/.*"kinds": {\(.*\)}}/\1/p' "$p.json" | tr -d '"')"
	[[ $(json refused "$p.json") == 0 ]] ||
		problems+="the kernel refused $(json refused "$p.json") frames ($(json last_error "$p.json")); "
	local cd qd
	cd=$(json capture_drops "$p.json") qd=$(cat "$p.qdrops")
	((cd <= 0)) || problems+="the capture socket dropped $cd packets; "
	((qd == 0)) || problems+="queues dropped $qd packets (softnet_stat, veth); pace slower (--rate); "
	# Everything the dut's IP layer transmitted arrived in the capture, and nothing else.
	local tx
	tx=$(counter IpOutTransmits "$p.mib")
	[[ $tx == "$(json captured "$p.json")" ]] ||
		problems+="the dut transmitted $tx packets (IpOutTransmits) but $(json captured "$p.json") were captured; "
	if [[ -z $problems ]]; then
		ktap_ok "$label: every frame sent, none dropped by a queue, every answer captured"
	else
		ktap_not_ok "$label" "$problems"
	fi
}

counter() { # name file
	awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }' "$2"
}

# IcmpInMsgs must count exactly the triggers that reach icmp_rcv.
check_inmsgs() { # label name...
	local label=$1 n msg="" ok=1 p want got
	shift
	for n in "$@"; do
		p=$WORK/$n
		want=$(json to_icmp "$p.json") got=$(counter IcmpInMsgs "$p.mib")
		msg+="$n: IcmpInMsgs +$got, triggers reaching icmp_rcv $want; "
		[[ $want == "$got" ]] || ok=0
	done
	if ((ok)); then ktap_diag "${msg%; }"; ktap_ok "$label"
	else ktap_not_ok "$label" "${msg%; }"; return 1; fi
}

# The module counts what the MIB counts: every line of /proc/net/rust_icmp (apart from its
# own RustIcmp* drop counters) equals the MIB delta, every IcmpMsg delta of the MIB has its
# line, and IcmpInErrors may be larger in the MIB only: UDP's and TCP's error handlers count
# it too for an error quoting a datagram no socket sent (README, "Counters").
check_module() { # name label
	local p=$WORK/$1 label=$2 out
	out=$(awk 'NR == FNR { if ($1 !~ /^RustIcmp/) m[$1] = $2; next }
		$1 ~ /^Icmp/ { mib[$1] = $2 }
		END {
			for (k in m) {
				v = mib[k] + 0
				if (k == "IcmpInErrors" ? m[k] > v : m[k] != v)
					printf "module %s=%d but the MIB delta is %d\n", k, m[k], v
			}
			for (k in mib)
				if (k ~ /^IcmpMsg/ && !(k in m))
					printf "MIB %s=%d but the module has no such line\n", k, mib[k]
		}' "$p.mod" "$p.mib")
	if [[ ! -s $p.mod ]]; then
		ktap_not_ok "$label" "/proc/net/rust_icmp did not change in the dut: was the module loaded?"
		return 1
	elif [[ -z $out ]]; then
		ktap_diag "module counters: $(grep -v '^RustIcmpDrop' "$p.mod" | tr '\n' ' ')"
		ktap_diag "module drops: $(grep '^RustIcmpDrop' "$p.mod" | sed 's/RustIcmpDrop_//' | tr '\n' ' ')"
		ktap_ok "$label"
	else
		local lines
		mapfile -t lines <<<"$out"
		ktap_diag "${lines[@]}"
		ktap_not_ok "$label"
		return 1
	fi
}

# Differences between two "Name value" files as "Name=(C,Rust)".
compare_counts() { # c rust
	awk 'NR == FNR { c[$1] = $2; next } { r[$1] = $2 }
		END {
			for (k in c) if (c[k] != r[k] + 0) printf "%s=(%d,%d) ", k, c[k], r[k]
			for (k in r) if (!(k in c)) printf "%s=(0,%d) ", k, r[k]
		}' "$1" "$2"
}

keep_artifacts() {
	mkdir -p "$KEEP"
	cp "$WORK"/* "$KEEP"/ 2>/dev/null
	ktap_diag "captures, counters and traces kept in $KEEP"
}

run_diff() {
	local rc_c rc_r c=$WORK/c r=$WORK/rust out failed=0
	module_loaded && unload_module
	fuzz_run c diff "$DIFF_COUNT" "$DIFF_RATE" trace
	rc_c=$?
	check_run c $rc_c "differential: the built-in C code took the sequence" || failed=1
	# A control run sends the sequence to the built-in code again.
	local label="differential: rust_icmp took the sequence"
	((CONTROL)) && label="differential (control): the built-in C code took the sequence again"
	if ((!CONTROL)) && ! load_module; then
		ktap_not_ok "differential: load rust_icmp" "insmod $MODULE failed"
		return 1
	fi
	fuzz_run rust diff "$DIFF_COUNT" "$DIFF_RATE" trace
	rc_r=$?
	check_run rust $rc_r "$label" || failed=1
	if ((!CONTROL)); then
		check_module rust "differential: rust_icmp's counters equal the MIB deltas" || failed=1
		unload_module
	fi

	check_inmsgs "differential: IcmpInMsgs counts the triggers that reach icmp_rcv" c rust ||
		failed=1

	# The packets the dut sent, as multisets (sorted capture files).
	if cmp -s "$c.cap" "$r.cap" && [[ -s $c.cap ]]; then
		ktap_ok "differential: the dut sent the same $(wc -l <"$c.cap") packets"
	else
		ktap_not_ok "differential: the dut sent the same packets" \
			"C sent $(wc -l <"$c.cap") packets, Rust $(wc -l <"$r.cap"); differences (TAG = trigger index mod 65536; < C only, > Rust only):"
		diff "$c.cap" "$r.cap" | grep '^[<>]' | head -n 12 | cut -c 1-220 | sed 's/^/# /'
		local tag
		for tag in $(diff "$c.cap" "$r.cap" | awk '/^[<>]/ && $2 != "-" { print $2 }' |
			sort -un | head -n 3); do
			"$FUZZ" --seed "$SEED" --dump "$tag" | cut -c 1-220 | sed 's/^/# /'
		done
		failed=1
	fi

	# The errors queued on the dut's UDP socket: same contents, same order.
	if cmp -s "$c.errq" "$r.errq"; then
		ktap_ok "differential: the same $(wc -l <"$c.errq") ICMP errors queued on a UDP socket (IP_RECVERR, RFC 4884)"
	else
		ktap_not_ok "differential: the same ICMP errors queued on a UDP socket" \
			"C queued $(wc -l <"$c.errq"), Rust $(wc -l <"$r.errq"); first difference:"
		diff "$c.errq" "$r.errq" | grep '^[<>]' | head -n 4 | cut -c 1-300 | sed 's/^/# /'
		failed=1
	fi

	# Every counter of /proc/net/snmp and /proc/net/netstat, ICMP first.
	grep '^Icmp' "$c.mib" >"$c.icmp"
	grep '^Icmp' "$r.mib" >"$r.icmp"
	out=$(compare_counts "$c.icmp" "$r.icmp")
	if [[ -z $out ]]; then
		ktap_diag "Icmp/IcmpMsg deltas: $(tr '\n' ' ' <"$c.icmp")"
		ktap_ok "differential: equal Icmp and IcmpMsg deltas"
	else
		ktap_not_ok "differential: equal Icmp and IcmpMsg deltas" "(C,Rust): $out"
		failed=1
	fi
	grep -v '^Icmp' "$c.mib" >"$c.other"
	grep -v '^Icmp' "$r.mib" >"$r.other"
	out=$(compare_counts "$c.other" "$r.other")
	if [[ -z $out ]]; then
		ktap_diag "other deltas: $(tr '\n' ' ' <"$c.other")"
		ktap_ok "differential: equal deltas of every other snmp and netstat counter"
	else
		ktap_not_ok "differential: equal deltas of every other snmp and netstat counter" \
			"(C,Rust): $out"
		failed=1
	fi

	if [[ ! -d $TRACE ]]; then
		ktap_skip "differential: equal drop reasons" "no skb:kfree_skb tracepoint"
		ktap_skip "differential: equal icmp_send events" "no skb:kfree_skb tracepoint"
	elif (($(cat "$c.overrun") + $(cat "$r.overrun"))); then
		ktap_not_ok "differential: equal drop reasons" "the trace buffer overran"
		ktap_not_ok "differential: equal icmp_send events" "the trace buffer overran"
		failed=1
	else
		out=$(compare_counts "$c.drops" "$r.drops")
		if [[ -z $out ]]; then
			ktap_diag "drop reasons: $(tr '\n' ' ' <"$c.drops")"
			ktap_ok "differential: equal drop reasons (skb:kfree_skb)"
		else
			ktap_not_ok "differential: equal drop reasons (skb:kfree_skb)" "(C,Rust): $out"
			failed=1
		fi
		if cmp -s "$c.sends" "$r.sends"; then
			ktap_ok "differential: the same $(wc -l <"$c.sends") icmp:icmp_send events"
		else
			ktap_not_ok "differential: the same icmp:icmp_send events" \
				"C $(wc -l <"$c.sends"), Rust $(wc -l <"$r.sends"):"
			diff "$c.sends" "$r.sends" | grep '^[<>]' | head -n 10 | sed 's/^/# /'
			failed=1
		fi
	fi
	topo_down
	((failed || ${FUZZ_KEEP:-0})) && keep_artifacts
	return 0
}

run_volume() {
	local rc n0 n1 out failed=0
	module_loaded || load_module || {
		ktap_not_ok "volume: load rust_icmp" "insmod $MODULE failed"
		return 1
	}
	fuzz_run vol volume "$VOLUME_COUNT" "$VOLUME_RATE"
	rc=$?
	check_run vol $rc "volume: rust_icmp took $VOLUME_COUNT triggers" || failed=1
	check_inmsgs "volume: IcmpInMsgs counts the triggers that reach icmp_rcv" vol || failed=1
	check_module vol "volume: rust_icmp's counters equal the MIB deltas" || failed=1
	# Still answering, and still rust_icmp answering.
	ip -n peer addr add 10.0.1.1/24 brd + dev veth0
	n0=$(module_counter IcmpMsgOutType0 dut)
	if out=$(ip netns exec peer ping -c 3 -i 0.2 -W 2 10.0.1.2 2>&1); then
		n1=$(module_counter IcmpMsgOutType0 dut)
		if ((n1 - n0 >= 3)); then
			ktap_ok "volume: afterwards the dut answers ping (rust_icmp: $((n1 - n0)) echo replies)"
		else
			ktap_not_ok "volume: afterwards rust_icmp answers ping" \
				"ping worked but the module counted $((n1 - n0)) echo replies"
		fi
	else
		ktap_not_ok "volume: afterwards the dut answers ping" "$out"
	fi
	topo_down
	check "volume: scripts/unload afterwards" unload_module
	((failed || ${FUZZ_KEEP:-0})) && keep_artifacts
	return 0
}

((DIFF_COUNT)) && run_diff
((VOLUME_COUNT)) && run_volume

SPLATS='WARNING:|BUG:|Oops|Kernel panic|panicked at|general protection fault|KASAN|UBSAN'
SPLATS+='|possible circular locking|suspicious RCU usage|refcount_t:|kmemleak'
if splat=$(dmesg | tail -n +$((dmesg_start + 1)) | grep -E "$SPLATS"); then
	ktap_not_ok "the kernel log stays clean" "$(head -n 5 <<<"$splat")"
else
	ktap_ok "the kernel log stays clean"
fi
rm -rf "$WORK"
[[ -d $TRACE ]] && rmdir $TRACE
ktap_finish
