#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The benchmark of `make bench`, run inside the VM: the built-in C ICMP and rust_icmp side by
# side in one boot. tools/bench/run boots one VM per vCPU count and runs this script in each;
# tools/bench/report.py turns what it records into build/bench/report.{md,json} and a plot.
#
#   tests/bench.sh      (in the VM: qemu/run tests/bench.sh)
#
# Namespace `peer` (10.0.1.1) floods namespace `dut` (10.0.1.2) over a veth pair with
# tools/icmpflood. Each round runs every workload once with the built-in code and once with
# rust_icmp loaded; the order alternates from round to round (C, Rust, then Rust, C...), so
# that a drift of the machine's speed during the run (the host is shared) hits both alike and
# the module is loaded or unloaded only once per round. The module is loaded and unloaded
# only while no traffic flows (see "The VM" in README.md: multi-threaded TCG and live
# patching under traffic do not mix).
#
# Workloads (BENCH_WORKLOADS; default: echo56 echo1400 udp rtt alloc calls, the ones that need
# no plugin):
#   echo56, echo1400  echo requests with 56 / 1400 payload bytes, 8 identifiers, one sender
#                     thread per vCPU, for BENCH_SECONDS: the dut's IcmpOutEchoReps delta
#                     and the replies icmpflood received
#   udp               UDP datagrams to a closed port of the dut with its ICMP rate limits
#                     lifted: the dut's IcmpOutDestUnreachs delta, port unreachables received
#   rtt               BENCH_RTT_COUNT echo requests, one at a time, 2 ms apart: RTT percentiles
#   alloc             kmem tracepoint events (kmalloc, kmem_cache_alloc, mm_page_alloc) per
#                     echo reply: perf stat, system-wide, over N and 2N echo round trips (the
#                     difference leaves out icmpflood's own start and exit), and, with a stack
#                     trace per event, those made inside the ICMP code (a stack through C's
#                     icmp_rcv or through rust_icmp). Toggling tracepoints patches kernel
#                     text, so tools/bench/run asks for this only in its 1-vCPU boot.
#   calls             BENCH_CALLS_N echo round trips, one at a time, under the function_graph
#                     tracer rooted at ip_local_deliver (IRQs left out): the kernel functions
#                     entered per round trip (the request at the dut, the reply at the peer),
#                     and how many of them are rust_helper_* wrappers, the C static inlines
#                     that Rust calls out of line and C inlines. A count, not a time: the same
#                     under TCG and on hardware. Also text patching: 1-vCPU boot only.
#   insns             BENCH_INSNS_N echo round trips, one at a time, between two markers of
#                     the QEMU plugin tools/insncount, which counts the instructions each
#                     kernel block executed in between (written by QEMU to BENCH_INSNS_OUT).
#                     For the report's symbols: /proc/kallsyms once per boot, the module's
#                     symbols after each Rust run, the functions of the built-in icmp.o.
#                     tools/bench/run runs it alone, in a boot of its own with the plugin.
#   insns1400         the same with 1400-byte payloads: what copying and summing the data
#                     costs against a round trip's whole cost.
#   insnsudp          the same with 56-byte UDP datagrams to a closed port, each answered
#                     by a port unreachable (__icmp_send's path, the rate limits lifted).
#
# BENCH_STEER=1 (tools/bench/run's second plugin boot, 2 vCPUs) splits the work between the
# two CPUs: icmpflood runs on CPU 0, and RPS hands every packet the dut's veth receives to
# CPU 1 and every packet the peer's receives to CPU 0. CPU 1 then runs exactly what the dut
# does for a request (receive, answer, transmit up to the peer's backlog), and the plugin's
# count of CPU 1 is the cost of the answering host alone, which bounds the rate of a dut
# that has a CPU for the traffic and a sender fast enough to keep it busy.
#
# and, at each load of the module, the memory it takes (/proc/modules, SUnreclaim, Percpu),
# plus `size` of rust_icmp.ko once per boot.
#
# Every result is one JSON object per line in $BENCH_OUT/raw-smp<vCPUs>.jsonl; a failed run
# is a line with "error" instead, and the benchmark goes on. The exit status is 0 unless the
# setup itself failed: the numbers are not judged here.
set -u
. "$(dirname "$0")/lib.sh"
require_vm bench.sh

OUT=${BENCH_OUT:-$TOP/build/bench}
ROUNDS=${BENCH_ROUNDS:-5}
SECS=${BENCH_SECONDS:-2}
RTT_COUNT=${BENCH_RTT_COUNT:-200}
ALLOC_N=${BENCH_ALLOC_N:-500}
# Echo requests whose allocations are attributed from stack traces (each event is kept in
# the trace buffer with its stack, so fewer).
ALLOC_TRACED=${BENCH_ALLOC_TRACED:-100}
CALLS_N=${BENCH_CALLS_N:-20}
INSNS_N=${BENCH_INSNS_N:-200}
WORKLOADS=${BENCH_WORKLOADS:-echo56 echo1400 udp rtt alloc calls}
FLOOD=${ICMPFLOOD:-$TOP/build/tools/icmpflood/release/icmpflood}
VCPUS=$(nproc)
RAW=${BENCH_RAW:-$OUT/raw-smp$VCPUS.jsonl}
# The built-in ICMP's object, when the kernel's build tree is at hand.
C_OBJ=${BENCH_C_OBJ:-${RUST_ICMP_KDIR:-/nonexistent}/net/ipv4/icmp.o}
DUT=10.0.1.2
STEER=${BENCH_STEER:-0}
PIN=
[[ $STEER == 1 ]] && PIN="taskset -c 0"

mkdir -p "$OUT" || exit 1
: >"$RAW" || exit 1
[[ -x $FLOOD ]] || { echo "bench: $FLOOD missing: build tools/icmpflood first" >&2; exit 1; }

# A JSON string from any text: backslashes, quotes, control characters made harmless.
json_str() {
	local s=${1//\\/\\\\}
	s=${s//\"/\\\"}
	s=$(printf '%s' "$s" | tr '\n\t\r' '   ' | tr -d '\000-\037')
	printf '"%s"' "$s"
}

# emit FIELD...: one record, a JSON object on one line, from '"name": value' strings.
emit() {
	local f line="{\"vcpus\": $VCPUS"
	for f; do line+=", $f"; done
	echo "$line}" >>"$RAW"
}

# The dut's counters, one "Name value" a line: every Icmp and Udp MIB counter in its
# namespace, and the packets the backlogs of all CPUs dropped (softnet_stat's second
# column, in hex; not per namespace, but nothing else runs).
counters() {
	mib dut '^(Icmp(In|Out)|Udp(In|Out|No|Rcv|Snd|Ignored|Mem))'
	local drops=0 f
	while read -r -a f; do drops=$((drops + 16#${f[1]})); done </proc/net/softnet_stat
	echo "BacklogDrops $drops"
}

# counter_delta BEFORE AFTER: a JSON object of the counters that changed.
counter_delta() {
	join <(sort <<<"$1") <(sort <<<"$2") | awk '
		BEGIN { printf "{" }
		$3 != $2 { printf "%s\"%s\": %d", n++ ? ", " : "", $1, $3 - $2 }
		END { printf "}" }'
}

meminfo() { awk '$1 ~ /^(MemFree|Slab|SUnreclaim|Percpu):$/ { print substr($1, 1, length($1) - 1), $2 }' /proc/meminfo; }

# Runs icmpflood with a watchdog; its JSON on stdout, or its error on stdout and status 1.
flood() {
	local out err=/tmp/bench.err
	if out=$(timeout -k 5 $((${SECS%.*} + 120)) $PIN "$FLOOD" "$@" 2>"$err"); then
		echo "$out"
	else
		echo "icmpflood $1 failed (status $?): $(tail -n 3 "$err")"
		return 1
	fi
}

setup() {
	local k
	veth_pair $DUT || return
	if [[ $STEER == 1 ]]; then
		((VCPUS >= 2)) || { echo "BENCH_STEER=1 needs 2 vCPUs"; return 1; }
		# rps_cpus is a CPU mask: the dut's receive on CPU 1, the peer's on CPU 0.
		ip netns exec dut sh -c 'echo 2 >/sys/class/net/veth0/queues/rx-0/rps_cpus' || return
		ip netns exec peer sh -c 'echo 1 >/sys/class/net/veth0/queues/rx-0/rps_cpus' || return
	fi
	# Port unreachables are rate limited per peer (icmp_ratelimit: 1000 ms between
	# messages, after a burst of 6) and for the whole namespace (icmp_msgs_per_sec/burst:
	# 1000/s, 50): lift both, so that the udp workload measures how fast the dut builds
	# them. The checks themselves still run, in C and in Rust.
	for k in icmp_ratelimit=0 icmp_msgs_per_sec=1000000000 icmp_msgs_burst=1000000000; do
		ip netns exec dut sysctl -q -w "net.ipv4.$k" || return
	done
	# Resolve the neighbours before the first measurement, then pin them: a neighbour entry
	# that ages from REACHABLE to STALE, DELAY and PROBE sends its packets through
	# neigh_resolve_output instead of the cached header for a while (and ARP probes), at
	# whatever moment its timers say, which would land in some runs and not in others.
	ip netns exec peer ping -c 1 -W 5 $DUT >/dev/null
	local mac
	mac=$(ip -n dut -br link show veth0 | awk '{ print $3 }')
	ip -n peer neigh replace $DUT dev veth0 lladdr "$mac" nud permanent || return
	mac=$(ip -n peer -br link show veth0 | awk '{ print $3 }')
	ip -n dut neigh replace 10.0.1.1 dev veth0 lladdr "$mac" nud permanent || return
}

# The module's memory once loaded: its size in /proc/modules (code and data) and what the
# slab (SUnreclaim) and per-CPU allocators hold more than before (sockets, counters...).
# MemFree moves with everything else, so only for the record.
load_rust() {
	local before after t0 t1 modsize
	sync
	sleep 0.5
	before=$(meminfo)
	t0=$(date +%s%N)
	load_module || return
	t1=$(date +%s%N)
	sleep 0.5
	after=$(meminfo)
	modsize=$(awk '$1 == "rust_icmp" { print $2 }' /proc/modules)
	emit '"kind": "load"' "\"round\": $round" "\"load_ms\": $(((t1 - t0) / 1000000))" \
		"\"module_bytes\": ${modsize:-0}" "\"meminfo_kb\": $(counter_delta "$before" "$after")"
}

unload_rust() {
	local t0 t1
	t0=$(date +%s%N)
	unload_module || return
	t1=$(date +%s%N)
	emit '"kind": "unload"' "\"round\": $round" "\"unload_ms\": $(((t1 - t0) / 1000000))"
}

switch_to() { # c|rust
	if [[ $1 == rust ]]; then
		module_loaded || load_rust
	else
		! module_loaded || unload_rust
	fi
}

# Each workload prints the JSON fields of its record, or an error message and status 1.
run_flood() { # echo|udp SIZE
	local before after out
	before=$(counters)
	out=$(flood "$1" peer $DUT --size "$2" --flows 8 --threads "$VCPUS" --seconds "$SECS") ||
		{ echo "$out"; return 1; }
	after=$(counters)
	printf '"flood": %s, "dut": %s' "$out" "$(counter_delta "$before" "$after")"
}

run_rtt() {
	local out
	out=$(flood rtt peer $DUT --size 56 --count "$RTT_COUNT" --interval-ms 2) ||
		{ echo "$out"; return 1; }
	printf '"rtt": %s' "$out"
}

# perf stat -x, prints "count,unit,event,..." a line: the counted kmem events as JSON fields
# (an event perf could not count, "<not counted>", is left out).
perf_counts() {
	awk -F, '$3 ~ /^kmem:/ && $1 ~ /^[0-9]+$/ {
		sub(/^kmem:/, "", $3); printf "%s\"%s\": %s", (n++ ? ", " : ""), $3, $1
	}' "$1"
}

# Counts kmem events of the trace whose stack passes through the ICMP code, per event and
# per allocation site (call_site; "page" for mm_page_alloc): JSON fields.
traced_allocs() {
	awk '
		function flush() {
			if (ev != "" && icmp) { n[ev]++; site[ev ":" cs]++ }
			ev = ""; icmp = 0
		}
		/ (kmalloc|kmem_cache_alloc|mm_page_alloc): / {
			flush()
			for (i = 1; i <= NF; i++)
				if ($i ~ /^(kmalloc|kmem_cache_alloc|mm_page_alloc):$/) {
					ev = substr($i, 1, length($i) - 1); break
				}
			cs = "page"
			for (; i <= NF; i++)
				if ($i ~ /^call_site=/) { cs = substr($i, 11); sub(/\+.*/, "", cs); break }
			total++
			next
		}
		/^ => / { if ($2 == "icmp_rcv" || $2 ~ /rust_icmp/) icmp = 1; next }
		END {
			flush()
			printf "\"traced_events\": %d, \"in_icmp\": {", total
			k = 0
			for (e in n) printf "%s\"%s\": %d", k++ ? ", " : "", e, n[e]
			printf "}, \"in_icmp_sites\": {"
			k = 0
			for (s in site) printf "%s\"%s\": %d", k++ ? ", " : "", s, site[s]
			printf "}"
		}' "$TRACING/trace"
}

run_alloc() {
	local n before after out fields="" overrun e
	local events=kmem:kmalloc,kmem:kmem_cache_alloc,kmem:mm_page_alloc
	command -v perf >/dev/null || { echo "perf is not installed"; return 1; }
	for n in "$ALLOC_N" $((2 * ALLOC_N)); do
		before=$(counters)
		if ! perf stat -a -x, -e "$events" -o /tmp/bench.perf -- \
			timeout -k 5 120 "$FLOOD" rtt peer $DUT --count "$n" --interval-ms 0 \
			>/tmp/bench.out 2>/tmp/bench.err; then
			echo "perf stat failed: $(tail -n 3 /tmp/bench.err /tmp/bench.perf)"
			return 1
		fi
		after=$(counters)
		fields+=$(printf '"perf_%d": {%s}, "dut_%d": %s, ' "$n" \
			"$(perf_counts /tmp/bench.perf)" \
			"$n" "$(counter_delta "$before" "$after")")
	done
	# The same requests again with a stack trace recorded for every kmem event.
	echo 0 >"$TRACING/tracing_on"
	echo 8192 >"$TRACING/buffer_size_kb"
	echo >"$TRACING/trace"
	for e in kmalloc kmem_cache_alloc mm_page_alloc; do echo 1 >"$TRACING/events/kmem/$e/enable"; done
	echo 1 >"$TRACING/options/stacktrace"
	echo 1 >"$TRACING/tracing_on"
	before=$(counters)
	out=$(flood rtt peer $DUT --count "$ALLOC_TRACED" --interval-ms 0)
	local status=$?
	after=$(counters)
	echo 0 >"$TRACING/tracing_on"
	echo 0 >"$TRACING/options/stacktrace"
	for e in kmalloc kmem_cache_alloc mm_page_alloc; do echo 0 >"$TRACING/events/kmem/$e/enable"; done
	overrun=$(awk '$1 == "overrun:" { s += $2 } END { print s + 0 }' "$TRACING"/per_cpu/cpu*/stats)
	fields+=$(traced_allocs)
	echo >"$TRACING/trace"
	echo 1 >"$TRACING/tracing_on"
	((status == 0)) || { echo "$out"; return 1; }
	printf '"n": %d, %s, "traced_n": %d, "traced_overrun": %d, "traced_dut": %s' \
		"$ALLOC_N" "${fields%, }" "$ALLOC_TRACED" "$overrun" "$(counter_delta "$before" "$after")"
}

run_calls() {
	local out status before after overrun calls helpers t=$TRACING
	[[ -e $t/set_graph_function ]] || { echo "no function_graph tracer in this kernel"; return 1; }
	echo 0 >"$t/tracing_on"
	echo 8192 >"$t/buffer_size_kb"
	echo >"$t/trace"
	echo ip_local_deliver >"$t/set_graph_function"
	echo function_graph >"$t/current_tracer"
	echo 0 >"$t/options/funcgraph-irqs"
	before=$(counters)
	echo 1 >"$t/tracing_on"
	out=$(flood rtt peer $DUT --size 56 --count "$CALLS_N" --interval-ms 2)
	status=$?
	echo 0 >"$t/tracing_on"
	after=$(counters)
	overrun=$(awk '$1 == "overrun:" { s += $2 } END { print s + 0 }' "$t"/per_cpu/cpu*/stats)
	# An entry is a line ending in "();" (a leaf) or "() {" (a function that calls others).
	# Counted before the tracer is switched back, which empties the buffer.
	calls=$(grep -cE '\(\) \{$|\(\);$' "$t/trace")
	helpers=$(grep -cE 'rust_helper_[a-zA-Z0-9_]+\(\)' "$t/trace")
	echo 1 >"$t/options/funcgraph-irqs"
	echo nop >"$t/current_tracer"
	echo >"$t/set_graph_function"
	echo >"$t/trace"
	echo 1 >"$t/tracing_on"
	((status == 0)) || { echo "$out"; return 1; }
	printf '"n": %d, "calls": %d, "helper_calls": %d, "overrun": %d, "dut": %s' \
		"$CALLS_N" "$calls" "$helpers" "$overrun" "$(counter_delta "$before" "$after")"
}

# Each run of icmpflood --mark ends two windows of the plugin: the time since the previous
# run, then the round trips. Runs are counted in a file, as workloads run in subshells.
INSNS_RUNS=/tmp/bench.insns-runs
# The symbols each count is mapped with, per boot (KASLR): the steered boot's apart.
SYMS=$OUT/insns
[[ $STEER == 1 ]] && SYMS=$OUT/steer
run_insns() { # SIZE [icmpflood rtt flags]
	local out k syms
	[[ -n ${BENCH_INSNS_OUT:-} ]] || { echo "no plugin output (BENCH_INSNS_OUT): tools/bench/run boots with the plugin"; return 1; }
	k=$(cat "$INSNS_RUNS" 2>/dev/null || echo 0)
	if ((k == 0)); then
		echo 0 >/proc/sys/kernel/kptr_restrict
		grep -v '\[' /proc/kallsyms >"$SYMS-kallsyms.txt" || return
		[[ -f $C_OBJ ]] && nm --defined-only "$C_OBJ" | awk '$2 ~ /^[tT]$/ { print $3 }' \
			>"$SYMS-c-functions.txt"
	fi
	syms=$SYMS-modsyms-$k.txt
	grep '\[' /proc/kallsyms >"$syms"
	# Warm up first: rust_icmp was just loaded, and QEMU translates its code on first use,
	# which the window would charge to the Rust round trips' host cycles (C's code has run
	# since boot).
	flood rtt peer $DUT --size "$1" "${@:2}" --count 20 --interval-ms 0 >/dev/null || true
	out=$(flood rtt peer $DUT --size "$1" "${@:2}" --count "$INSNS_N" --interval-ms 0 --mark 1)
	local status=$?
	# A failed icmpflood stopped before its first marker (socket setup) or ran both.
	((status == 0)) || { echo "$out"; return 1; }
	echo $((k + 1)) >"$INSNS_RUNS"
	printf '"n": %d, "window": %d, "counts": "%s", "kallsyms": "%s", "modsyms": "%s", "c_functions": "%s", "rtt": %s' \
		"$INSNS_N" $((2 * k + 2)) "$BENCH_INSNS_OUT" "$SYMS-kallsyms.txt" "$syms" \
		"$SYMS-c-functions.txt" "$out"
}

run_workload() { # name
	case $1 in
	echo56) run_flood echo 56 ;;
	echo1400) run_flood echo 1400 ;;
	udp) run_flood udp 56 ;;
	rtt) run_rtt ;;
	alloc) run_alloc ;;
	calls) run_calls ;;
	insns) run_insns 56 ;;
	insns1400) run_insns 1400 ;;
	insnsudp) run_insns 56 --udp 1 ;;
	*) echo "unknown workload $1"; return 1 ;;
	esac
}

# The cost in code and data: `size` of the module and, for comparison, of the built-in
# icmp.o when the kernel's build tree is at hand.
record_size() {
	local f what
	for what in rust c; do
		f=$MODULE
		[[ $what == c ]] && f=$C_OBJ
		[[ -f $f ]] || continue
		size "$f" 2>/dev/null | awk -v impl=$what -v f="$f" -v bytes="$(stat -c %s "$f")" '
			NR == 2 { printf "\"kind\": \"size\", \"impl\": \"%s\", \"file\": \"%s\", \"file_bytes\": %d, \"text\": %d, \"data\": %d, \"bss\": %d\n", impl, f, bytes, $1, $2, $3 }' |
			while read -r line; do emit "$line"; done
	done
}

echo "bench: $VCPUS vCPUs, $ROUNDS rounds of: $WORKLOADS (${SECS}s floods), module $MODULE"
module_loaded && unload_module
setup || { echo "bench: network setup failed" >&2; exit 1; }
emit '"kind": "meta"' "\"kernel\": $(json_str "$(uname -r)")" \
	"\"accel\": $(json_str "${BENCH_ACCEL:-unknown}")" "\"rounds\": $ROUNDS" \
	"\"seconds\": $SECS" "\"workloads\": $(json_str "$WORKLOADS")" \
	"\"module\": $(json_str "$MODULE")" "\"module_params\": $(json_str "$MODULE_PARAMS")" \
	"\"date\": $(json_str "$(date -u +%FT%TZ)")" \
	"\"host_load\": $(json_str "${BENCH_HOST_LOAD:-}")"
record_size
dmesg -C

for ((round = 1; round <= ROUNDS; round++)); do
	order="c rust"
	((round % 2)) || order="rust c"
	for impl in $order; do
		if ! msg=$(switch_to "$impl" 2>&1); then
			for w in $WORKLOADS; do
				emit '"kind": "run"' "\"round\": $round" "\"impl\": \"$impl\"" "\"workload\": \"$w\"" \
					"\"error\": $(json_str "switching to $impl failed: $msg")"
			done
			echo "bench: round $round: switching to $impl failed: $msg"
			continue
		fi
		for w in $WORKLOADS; do
			t0=$SECONDS
			if out=$(run_workload "$w"); then
				emit '"kind": "run"' "\"round\": $round" "\"impl\": \"$impl\"" "\"workload\": \"$w\"" "$out"
				echo "bench: round $round $impl $w: ok ($((SECONDS - t0)) s)"
			else
				emit '"kind": "run"' "\"round\": $round" "\"impl\": \"$impl\"" "\"workload\": \"$w\"" \
					"\"error\": $(json_str "$out")"
				echo "bench: round $round $impl $w: FAILED: $out"
			fi
			sleep 0.2
		done
	done
done

module_loaded && unload_module
# A splat in the kernel log makes every number of this boot suspect: the report says so.
splats=$(dmesg | grep -E 'WARNING:|BUG:|Oops|Kernel panic|panicked at|general protection|refcount_t:|detected stall|suspicious RCU usage' | head -n 5)
emit '"kind": "kernel_log"' "\"splats\": $(json_str "$splats")"
[[ -n $splats ]] && echo "bench: kernel log: $splats"
veth_pair_del
echo "bench: $(grep -c '"error"' "$RAW") failed runs; results in $RAW"
exit 0
