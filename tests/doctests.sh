#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The patch series' doc examples, run as KUnit tests. The test kernel builds the kernel
# crate's examples as the suite rust_doctests_kernel (CONFIG_RUST_KERNEL_DOCTESTS, in
# linux/config/doctests.config) without running them at boot; this runs the suite through
# debugfs and checks that every example of the files below ran and passed: as many as the
# source has (an example that was not built fails as well as one that fails). Upstream's
# examples run in the same suite; their results are listed, not counted. Then it runs the
# suite rust_atomics (CONFIG_RUST_ATOMICS_KUNIT_TEST), whose types the series extends
# (u8), and the series' own KUnit suites (`#[kunit_tests]`, built with CONFIG_KUNIT): every
# one of their tests must pass, and each of the series' suites must run all its tests.
#
#   tests/doctests.sh
set -u
. "$(dirname "$0")/lib.sh"
require_vm doctests.sh

SUITE=/sys/kernel/debug/kunit/rust_doctests_kernel
SRC=$TOP/build/linux-src-7.3
# The series' files with examples; KUnit names an example after its file, with the path's
# '/' and '.' as '_', and its number in the file: ..._net_checksum_rs_0.
FILES=(rust/kernel/percpu.rs rust/kernel/sync/bh.rs rust/kernel/sync/rcu.rs rust/kernel/net/mod.rs
	rust/kernel/net/namespace.rs rust/kernel/net/checksum.rs rust/kernel/net/ipv4/hdr.rs)
# The series' KUnit suites (`#[kunit_tests(name)]`), as name:file.
SUITES=(rust_net_skb:rust/kernel/net/skb.rs rust_net_ipv4_xmit:rust/kernel/net/ipv4/xmit.rs)

ktap_header "doctests.sh: the series' doc examples as KUnit tests" \
	$((${#FILES[@]} + ${#SUITES[@]} + 2))

# The examples rustdoc runs in a file: code blocks of doc comments, less `ignore` and
# `compile_fail` ones.
examples() {
	awk '/^[[:space:]]*\/\/[\/!][[:space:]]*```/ {
		if (!open) { open = 1; if ($0 !~ /```.*(ignore|compile_fail)/) n++ } else open = 0
	} END { print n + 0 }' "$1"
}

if [[ ! -w $SUITE/run ]]; then
	ktap_not_ok "the kernel has the suite rust_doctests_kernel" \
		"no $SUITE/run: build the test kernel with linux/config/doctests.config"
	for f in "${FILES[@]}"; do ktap_not_ok "${f#rust/kernel/}: examples pass" "not run"; done
	ktap_finish
fi
dmesg_start=$(dmesg | wc -l)
echo 1 >"$SUITE/run"
# "    ok 12 rust_doctest_kernel_..._net_checksum_rs_0" (or "not ok"), one per example.
results=$(grep -E '^[[:space:]]*(not )?ok [0-9]+ rust_doctest_kernel_' "$SUITE/results")
total=$(grep -c . <<<"$results")
failed=$(grep -E '^[[:space:]]*not ok ' <<<"$results")
if ((total > 0)); then
	ktap_ok "the suite rust_doctests_kernel ran: $total examples"
else
	ktap_not_ok "the suite rust_doctests_kernel ran" "$(head -n 20 "$SUITE/results")"
fi

for f in "${FILES[@]}"; do
	want=$(examples "$SRC/$f")
	name=${f%.rs}
	pattern="_${name#rust/kernel/}_rs_[0-9]+\$"
	pattern=${pattern//\//_}
	mine=$(grep -E "$pattern" <<<"$results")
	ran=$(grep -c . <<<"$mine")
	bad=$(grep -E '^[[:space:]]*not ok ' <<<"$mine")
	if ((want == 0)); then
		ktap_not_ok "${f#rust/kernel/}: examples pass" "the source has no example"
	elif ((ran == want)) && [[ -z $bad ]]; then
		ktap_ok "${f#rust/kernel/}: $ran of $want examples pass"
	else
		ktap_not_ok "${f#rust/kernel/}: $want examples pass" \
			"$ran ran; failed: ${bad:-none}"
		dmesg | tail -n +$((dmesg_start + 1)) | grep -B2 -A8 -E "${pattern%\$}" | head -n 40 |
			sed 's/^/#   /'
	fi
done
[[ -n $failed ]] && ktap_diag "examples that fail, the series' and upstream's:" &&
	sed 's/^[[:space:]]*/#   /' <<<"$failed"

# KUnit suites that run through debugfs: kernel::sync::atomic's own (rust_atomics), which
# covers every atomic type, u8 included, and the series' (`#[kunit_tests]` modules), each of
# whose `#[test]` functions must have run and passed.
run_suite() { # name, tests expected (0: any number), where they are
	local dir=/sys/kernel/debug/kunit/$1 cases ran bad
	if [[ ! -w $dir/run ]]; then
		ktap_not_ok "the suite $1 passes" \
			"no $dir/run: build the test kernel with linux/config/doctests.config"
		return
	fi
	echo 1 >"$dir/run"
	cases=$(grep -E '^[[:space:]]+(not )?ok [0-9]+ ' "$dir/results")
	ran=$(grep -c . <<<"$cases")
	bad=$(grep -E '^[[:space:]]*not ok ' <<<"$cases")
	if ((ran > 0)) && { (($2 == 0)) || ((ran == $2)); } && [[ -z $bad ]]; then
		ktap_ok "the suite $1 passes: $ran tests${3:+ of $3}"
	else
		ktap_not_ok "the suite $1 passes${3:+ (${2} tests of $3)}" "$ran ran; failed: ${bad:-none}"
		head -n 30 "$dir/results" | sed 's/^/#   /'
	fi
}
run_suite rust_atomics 0
for s in "${SUITES[@]}"; do
	f=${s#*:}
	run_suite "${s%%:*}" "$(grep -c '^[[:space:]]*#\[test\]' "$SRC/$f")" "$f"
done
ktap_finish
