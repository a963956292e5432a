# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
# Shared helpers of rust_icmp's shell tests: KTAP output with kselftest exit codes
# (0 pass, 1 fail, 4 skip), kselftest's "# Totals:" line, and a last line
# "N passed, N failed[, N skipped]" (tests/run_all.sh reads it).

TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$TESTS_DIR/.." && pwd)
# The module under test: the default build, or the one built for the kernel that runs.
MODULE=${RUST_ICMP_MODULE:-$TOP/rust_icmp.ko}
# The tests load the module with its counters in /proc/net/rust_icmp (off by default), which
# they read as proof that Rust code handled a message.
MODULE_PARAMS=${RUST_ICMP_PARAMS-mirror=1}
TRACING=/sys/kernel/tracing

KSFT_PASS=0
KSFT_FAIL=1
KSFT_SKIP=4

ktap_n=0
ktap_pass=0
ktap_fail=0
ktap_skip=0

ktap_header() { # name planned-count
	echo "TAP version 13"
	echo "# $1"
	echo "1..$2"
}

ktap_diag() { printf '# %s\n' "$@"; }

ktap_ok() { # name
	ktap_n=$((ktap_n + 1)) ktap_pass=$((ktap_pass + 1))
	echo "ok $ktap_n $1"
}

ktap_not_ok() { # name reason
	ktap_n=$((ktap_n + 1)) ktap_fail=$((ktap_fail + 1))
	[[ -n ${2:-} ]] && ktap_diag "$2"
	echo "not ok $ktap_n $1"
}

ktap_skip() { # name reason
	ktap_n=$((ktap_n + 1)) ktap_skip=$((ktap_skip + 1))
	echo "ok $ktap_n $1 # SKIP $2"
}

# check NAME CMD...: runs CMD; ok if it succeeds, else not ok with its output.
check() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		ktap_ok "$name"
	else
		ktap_not_ok "$name" "$out"
	fi
}

# ktap_totals PASS FAIL SKIP: kselftest's "# Totals:" line, then "N passed, N failed[, N
# skipped]", the last line of every test's output.
ktap_totals() {
	echo "# Totals: pass:$1 fail:$2 xfail:0 xpass:0 skip:$3 error:0"
	local line="$1 passed, $2 failed"
	(($3)) && line+=", $3 skipped"
	echo "$line"
}

# ktap_skip_all REASON: the whole test is skipped, before its header; exits.
ktap_skip_all() {
	echo "TAP version 13"
	echo "1..0 # SKIP $1"
	ktap_totals 0 0 1
	exit $KSFT_SKIP
}

ktap_finish() {
	ktap_totals "$ktap_pass" "$ktap_fail" "$ktap_skip"
	((ktap_fail)) && exit $KSFT_FAIL
	((ktap_skip && !ktap_pass)) && exit $KSFT_SKIP
	exit $KSFT_PASS
}

require_vm() { # test-name
	[[ ${RUST_ICMP_VM:-} == 1 || ${RUST_ICMP_FORCE:-} == 1 ]] ||
		ktap_skip_all "$1: run it in the test VM (qemu/run), or set RUST_ICMP_FORCE=1"
}

# mib NS [REGEX]: the counters of namespace NS as iproute2's nstat reads and names them
# (IcmpInMsgs, IcmpMsgOutType0, IpExtInOctets...; absolute values, zeros included, its
# history file left alone), one "Name value" a line: those of /proc/net/snmp and
# /proc/net/netstat, or those whose name matches the extended REGEX.
mib() {
	ip netns exec "$1" nstat -asz | awk -v re="${2:-}" '
		/^#/ { next }
		re == "" && $1 ~ /^(Ip6|Icmp6|Udp6|UdpLite6|Sctp)/ { next }
		re == "" || $1 ~ re { print $1, $2 }'
}

module_loaded() { [[ -d /sys/module/rust_icmp ]]; }

LIVEPATCH=/sys/kernel/livepatch/rust_icmp

# insmod, then wait until the live patch reached every task.
load_module() {
	# shellcheck disable=SC2086 # one word per parameter
	insmod "$MODULE" $MODULE_PARAMS || return
	local i
	for ((i = 0; i < 600; i++)); do
		[[ $(cat "$LIVEPATCH/transition" 2>/dev/null || echo 0) == 0 ]] && return 0
		sleep 0.1
	done
	echo "live patch transition did not complete" >&2
	return 1
}

# The documented way to unload: disable the live patch, wait, rmmod.
unload_module() { "$TOP/scripts/unload"; }

# Counts the calls of a kernel function while CMD runs (function tracer).
count_calls() { # function cmd...
	local fn=$1 n
	shift
	echo "$fn" >"$TRACING/set_ftrace_filter"
	echo >"$TRACING/trace"
	echo function >"$TRACING/current_tracer"
	"$@" >/dev/null 2>&1
	n=$(grep -c " $fn <-" "$TRACING/trace" || true)
	# Switching the tracer clears the buffer: count first.
	echo nop >"$TRACING/current_tracer"
	echo >"$TRACING/set_ftrace_filter"
	echo "$n"
}

# A value from /proc/net/rust_icmp (0 if absent).
module_counter() { # name [netns]
	local file=/proc/net/rust_icmp
	if [[ -n ${2:-} ]]; then
		ip netns exec "$2" awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' $file
	else
		awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' $file
	fi
}

# The two namespaces most tests use: "peer" (10.0.1.1) and "dut" (10.0.1.2 unless given),
# each with its loopback up, joined by a veth pair named veth0 on both sides. Namespaces
# left by an earlier run are replaced. Fails if the pair cannot be made.
PEER=10.0.1.1
veth_pair() { # [dut-address]
	local ns
	for ns in peer dut; do
		ip netns del $ns 2>/dev/null || true
		ip netns add $ns || return
		ip -n $ns link set lo up || return
	done
	ip link add veth0 netns peer type veth peer name veth0 netns dut || return
	ip -n peer addr add $PEER/24 dev veth0 || return
	ip -n dut addr add "${1:-10.0.1.2}/24" dev veth0 || return
	for ns in peer dut; do ip -n $ns link set veth0 up || return; done
}

veth_pair_del() { ip netns del peer; ip netns del dut; }
