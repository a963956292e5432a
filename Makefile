# SPDX-License-Identifier: GPL-2.0
#
# rust_icmp: IPv4 ICMP as a Rust-for-Linux module. See README.md.
#
#   make            build the custom kernel (incremental) and rust_icmp.ko
#   make run        ... then boot it, load the module, ping through it, open a shell
#   make check      ... then run every test in the VM (what CI runs)
#   make selftests  ... then the kernel's own ICMP selftests, built-in vs rust_icmp
#   make stress     ... the robustness run on the debug kernel: fuzzing, hot swap, failures
#   make bench      ... the benchmark, built-in vs rust_icmp (build/bench/report.md)
#   make check-no-netfilter  ... tests/no_netfilter.sh on the kernel rebuilt without
#                   netfilter (build/kernel-nonf-7.3): the one path to the protocol handler
#                   without a route, which the test kernels cannot take
#   make lint       rustfmt --check, clippy and rustdoc (warnings are errors) on the module
#                   and the kernel crate with the patch series; checkpatch --strict on
#                   each patch; the tools' cargo test; shellcheck; pyflakes on tests/
#   make fuzz       the fuzzer alone (FUZZ_ARGS="--mode diff --seed 7 --count 5000")
#   make kernel     only the kernel (build/kernel-7.3)
#   make module     the kernel if needed, then rust_icmp.ko (what plain make does)
#   make tools      the tests' user-space tools (icmpfuzz, icmpflood) in build/tools
#   make selftest-tools  nettest, the selftests' socket helper, from the kernel tree
#   make fmt        rustfmt the module's sources
#   make rust-analyzer  rust-project.json at the top: src/ and the kernel crate
#   DEBUG=1         (with make, kernel, module, fuzz, bench) the debug kernel instead:
#                   KASAN, UBSAN, lockdep, kmemleak... in build/kernel-debug-7.3, and the
#                   module built against it in build/module-debug/rust_icmp.ko (make check
#                   builds and uses both kernels itself, and refuses DEBUG=1)
#   PREEMPT=full    (with all but make check) full preemption and preemptible RCU, as
#                   distributions' kernels have, instead of PREEMPT_LAZY: the kernel in
#                   build/kernel-preempt-7.3 (build/kernel-debug-preempt-7.3 with DEBUG=1),
#                   the module in build/module-preempt/ (build/module-debug-preempt/)
#   PREEMPT=rt      the same with PREEMPT_RT (-rt): not supported (README, "Limits")
#
# The kernel is Linux 7.3 (Debian trixie-backports' linux-source-7.3, fetched into build/apt
# without touching apt's configuration) with the patch series of linux/patches-7.3, built
# with clang-19 and rustc 1.86.0 and CONFIG_RUST_INLINE_HELPERS.
#   make setup      install every prerequisite (Debian 12); each target above installs
#                   only its own first (scripts/setup TIER)
#   make clean      remove the module's build products (not the kernel)
#   make distclean  remove build/ entirely

SHELL := /bin/bash
TOP := $(CURDIR)
DEBUG ?= 0
export DEBUG
KVER ?= 7.3
export KVER
ifneq ($(KVER),7.3)
$(error KVER=$(KVER): rust_icmp runs on Linux 7.3; commit 156c5c8 is the last one for 6.12)
endif
# PREEMPT=full or rt: the kernels' preemption model (linux/config/preempt-*.config) instead
# of PREEMPT_LAZY, each in build directories of their own (kernel and module): for make
# kernel, module, run, bench, fuzz, selftests and stress, not for make check.
PREEMPT ?=
export PREEMPT
ifneq ($(filter-out full rt,$(PREEMPT)),)
$(error PREEMPT=$(PREEMPT): full or rt, or nothing for the default PREEMPT_LAZY)
endif
PSUFFIX := $(if $(PREEMPT),-$(if $(filter full,$(PREEMPT)),preempt,rt))
SRC := $(TOP)/build/linux-src-7.3
KDIR_DEBUG := $(TOP)/build/kernel-debug$(PSUFFIX)-7.3
MOD_DEBUG := $(TOP)/build/module-debug$(PSUFFIX)
ifeq ($(DEBUG),1)
KDIR ?= $(KDIR_DEBUG)
MOD := $(MOD_DEBUG)
KO := $(MOD)/rust_icmp.ko
else
KDIR ?= $(TOP)/build/kernel$(PSUFFIX)-7.3
MOD := $(TOP)/build/module$(PSUFFIX)
# The default flavour's module is also copied to the top directory.
KO := $(if $(PREEMPT),$(MOD),$(TOP))/rust_icmp.ko
endif
# clang-19 and rustc 1.86.0 share LLVM 19: rust/helpers inline into the module too.
KLLVM := LLVM=-19
# Kbuild's MO=: the module's objects go to $(MOD), src/ holds only what is committed, and
# rustc's diagnostics name the files in src/.
KMOD := M=$(TOP) MO=$(MOD)
ENV := source $(TOP)/scripts/env.sh &&
# Runs a command in the VM booted on $(KDIR)'s kernel, with the module built for it.
VM := KERNEL=$(KDIR)/arch/x86/boot/bzImage qemu/run env RUST_ICMP_MODULE=$(KO)

.PHONY: all module kernel setup run check check-no-netfilter lint selftests selftest-tools stress stress-build stress-run bench fuzz tools \
	clean distclean fmt rust-analyzer

all: module

# Each target installs what it needs first (scripts/setup TIER: the tiers are listed there).
setup:
	@scripts/setup all

kernel:
	@scripts/setup build
	@scripts/kernel

module: kernel
	@# Sources left in $(MOD) by the old mirror would shadow src/.
	@mkdir -p $(MOD) && rm -f $(MOD)/Kbuild $(MOD)/src/*.rs
	@$(ENV) $(MAKE) -s -C $(KDIR) $(KMOD) $(KLLVM) modules
	@[ $(MOD)/rust_icmp.ko -ef $(KO) ] || cp -p $(MOD)/rust_icmp.ko $(KO)
	@echo "built $(KO)"

run: module
	@scripts/setup run
	@QEMU_SHELL=1 qemu/run tests/demo.sh

# make check: every test on the test kernel (the robustness tests at CI's size: 100,000
# fuzzed packets, 20 hot swaps, and the quick selftests), and the short stress run on the
# debug kernel. The debug kernel builds meanwhile at the lowest priority, in a session of
# its own so that a failed step can stop it. It starts as soon as the patched source is
# there: it takes the CPU the test kernel's build leaves idle (its serial phases: bindgen,
# the Rust crates, the links), then the host CPU the tests' VM leaves (TCG runs
# single-threaded). A new session is a new autogroup of the scheduler, where nice only
# ranks the group's own tasks: the group itself is made nice 19 too (else the two builds
# share the CPUs evenly and the test kernel, which the test suite waits for, takes twice as
# long). One after the other, the two would not fit in CI's 90 minutes on 2 CPUs.
# The short stress run (scripts/stress-check) starts as soon as the debug kernel is built,
# in a session of its own at normal priority: its first half in the CPU the test suite's VM
# leaves idle, its second half in a second VM once the test suite is over (or the first
# half is). Its output is printed after the test suite's (build/logs/stress-check.log).
# Run after the test suite, it took CI's fresh clone to 5,266 s of the 90 minutes; in one
# VM beside the test suite, to 4,885 s, 621 s of them after the test suite.
check:
	@scripts/setup check
	@[ "$(DEBUG)" != 1 ] || \
		{ echo "make check builds both kernels itself: run it without DEBUG=1" >&2; exit 2; }
	@[ -z "$(PREEMPT)" ] || \
		{ echo "make check runs on the default kernels only, not PREEMPT=$(PREEMPT)" >&2; exit 2; }
	@t0=$$SECONDS; scripts/kernel patch; echo "check: source and patches: $$((SECONDS - t0)) s"
	@mkdir -p build/logs; rm -f build/kernel-debug.rc build/stress-check.rc build/suite.done; \
	echo "kernel (DEBUG=1): building in the background, log in build/kernel-debug.log"; \
	setsid bash -c '{ echo 19 >/proc/self/autogroup; } 2>/dev/null; \
		DEBUG=1 nice -n 19 scripts/kernel >build/kernel-debug.log 2>&1; \
		echo $$? >build/kernel-debug.rc' & bg=$$!; \
	MAKE="$(MAKE)" setsid scripts/stress-check & st=$$!; \
	t0=$$SECONDS; \
	{ $(MAKE) -s lint module tools selftest-tools && \
		echo "check: test kernel, lint, module and tools: $$((SECONDS - t0)) s" && \
		t0=$$SECONDS && set -o pipefail && \
		$(VM) FUZZ_COUNT=100000 FUZZ_DIFF_COUNT=10000 HOTSWAP_CYCLES=20 tests/run_all.sh \
			2>&1 | tee build/logs/run_all.log && \
		echo "check: test suite: $$((SECONDS - t0)) s (log: build/logs/run_all.log)"; } || \
		{ rc=$$?; kill -- -$$bg -$$st 2>/dev/null; exit $$rc; }; \
	touch build/suite.done; \
	t0=$$SECONDS; wait $$bg; tail -n 1 build/kernel-debug.log; \
	echo "check: waited $$((SECONDS - t0)) s for the debug kernel"; \
	[ "$$(cat build/kernel-debug.rc 2>/dev/null)" = 0 ] || \
		{ kill -- -$$st 2>/dev/null || true; tail -n 30 build/kernel-debug.log; \
		echo "the debug kernel did not build" >&2; exit 1; }; \
	t0=$$SECONDS; wait $$st; \
	echo "check: waited $$((SECONDS - t0)) s for the short stress run"; \
	cat build/logs/stress-check.log; \
	[ "$$(cat build/stress-check.rc 2>/dev/null)" = 0 ] || \
		{ echo "the short stress run failed" >&2; exit 1; }

# The user-space tools of the tests, built on the host (the VM sees build/): icmpfuzz, the
# packet generator of tests/fuzz.sh, and icmpflood, the traffic generator of make bench.
CARGO = $(ENV) cargo build --release --quiet
tools:
	@$(CARGO) --manifest-path tools/icmpfuzz/Cargo.toml --target-dir build/tools/icmpfuzz
	@$(CARGO) --manifest-path tools/icmpflood/Cargo.toml --target-dir build/tools/icmpflood

# make fuzz [FUZZ_ARGS="--mode diff --seed 7"]: the fuzzer alone, on the kernel of $(KDIR).
fuzz: module tools
	@scripts/setup check
	@$(VM) tests/fuzz.sh $(FUZZ_ARGS)

# The robustness run on the debug kernel (KASAN, lockdep, kmemleak, fault injection):
# 1,000,000 fuzzed packets, 200 hot swaps under traffic, every init failure.
# STRESS=short: the variant make check runs. The full run boots 4 vCPUs (more concurrency
# for lockdep to see), the short one 2: under single-threaded TCG, 4 made the debug kernel
# about half as fast (98 fuzzed frames/s against 196). STRESS_SMP=N overrides.
STRESS ?=
STRESS_SMP ?= $(if $(STRESS),2,4)
# The short run is bounded at 45 minutes (it takes about 20 alone, more beside make check's
# test suite), the full one at 4 hours. stress-build and stress-run are its two steps
# (scripts/stress-check runs two VMs on one build; STRESS_LOG keeps their logs apart).
STRESS_LOG ?= build/logs/stress.log
stress:
	@scripts/setup check
	@$(MAKE) -s stress-build
	@$(MAKE) -s stress-run
stress-build:
	@$(MAKE) -s DEBUG=1 KDIR=$(KDIR_DEBUG) module tools
stress-run:
	@mkdir -p build/logs; set -o pipefail; \
	QEMU_SMP=$(STRESS_SMP) QEMU_TIMEOUT=$(if $(STRESS),2700,14400) \
		KERNEL=$(KDIR_DEBUG)/arch/x86/boot/bzImage qemu/run \
		env RUST_ICMP_MODULE=$(MOD_DEBUG)/rust_icmp.ko tests/stress.sh $(STRESS) \
		2>&1 | tee $(STRESS_LOG)

# A kernel without netfilter has a path to the protocol handlers that the test kernels lack
# (tests/no_netfilter.sh); scripts/no-netfilter builds it and the module, and runs the test.
check-no-netfilter: kernel
	@scripts/setup check
	@scripts/no-netfilter

# The benchmark (tools/bench/run): built-in C and rust_icmp alternating in one boot per vCPU
# count; writes build/bench/report.md, report.json and rounds.png.
bench: module tools
	@scripts/setup bench
	@KERNEL=$(KDIR)/arch/x86/boot/bzImage RUST_ICMP_MODULE=$(KO) tools/bench/run

# nettest, the socket helper of the kernel's selftests, built from the kernel tree.
SELFTEST_SRC := $(SRC)/tools/testing/selftests/net
selftest-tools: kernel
	@mkdir -p build/selftests
	@gcc -O2 -Wall -o build/selftests/nettest $(SELFTEST_SRC)/nettest.c

selftests: module selftest-tools
	@scripts/setup selftests
	@QEMU_TIMEOUT=14400 $(VM) tests/selftests.sh

# The patch series (without its cover letter) and the Rust files it adds or changes.
SERIES = $(filter-out %/0000-cover-letter.patch,$(wildcard linux/patches-7.3/*.patch))
PATCHED_RS = $(shell sed -n 's|^+++ b/\(rust/.*\.rs\)$$|\1|p' $(SERIES) | sort -u)
RUSTFMT = $(ENV) "$$(rustup which rustfmt)" --edition 2021 \
	--config-path $(SRC)/.rustfmt.toml

SHELL_SCRIPTS := .ci/run qemu/run qemu/init tools/bench/run $(wildcard tests/*.sh) \
	$(addprefix scripts/,bindings-layout clippy-series env.sh kernel linux-source \
		rust-warnings series no-netfilter setup stress-check unload)
lint: kernel
	@scripts/setup lint
	@$(RUSTFMT) --check src/rust_icmp.rs
	@# The patch series as netdev's checks read it: checkpatch --strict, every patch on its
	@# own. New files without a MAINTAINERS entry are the one warning let through (the series
	@# adds files under rust/, which a submission's cover letter assigns). Debian's python3
	@# first in PATH: spdxcheck needs python3-ply and python3-git.
	@cd $(SRC) && for p in $(addprefix $(TOP)/,$(SERIES)); do \
		PATH=/usr/bin:$$PATH perl scripts/checkpatch.pl --strict --quiet --no-summary \
			--terse --ignore FILE_PATH_CHANGES "$$p" || \
			{ echo "lint: checkpatch complains about $${p##*/}" >&2; exit 1; }; \
	done
	@cd $(SRC) && $(RUSTFMT) --check $(PATCHED_RS)
	@# The crates the series changes: clippy (scripts/clippy-series: each crate checked with
	@# the command line it was built with, the build tree untouched), then rustdoc (always
	@# run). A warning in a file the series adds or changes fails (scripts/rust-warnings);
	@# the rest of the kernel crate is upstream's.
	@[ -z "$(filter-out rust/kernel/% rust/macros/%,$(PATCHED_RS))" ] || \
		{ echo "lint: the series changes a crate scripts/clippy-series does not check:" \
			"$(filter-out rust/kernel/% rust/macros/%,$(PATCHED_RS))" >&2; exit 1; }
	@out=$$($(ENV) scripts/clippy-series $(SRC) $(KDIR) 2>&1) || { printf '%s\n' "$$out"; exit 1; }; \
	printf '%s\n' "$$out" | scripts/rust-warnings $(PATCHED_RS) || \
		{ echo "lint: clippy warns on the series" >&2; exit 1; }
	@out=$$($(ENV) $(MAKE) -s -C $(SRC) O=$(KDIR) BINDGEN=$$BINDGEN $(KLLVM) rustdoc 2>&1) || \
		{ printf '%s\n' "$$out"; exit 1; }; \
	printf '%s\n' "$$out" | scripts/rust-warnings $(PATCHED_RS) || \
		{ echo "lint: rustdoc warns on the series" >&2; exit 1; }
	@mkdir -p $(MOD) && rm -f $(MOD)/src/rust_icmp.o
	@$(ENV) $(MAKE) -s -C $(KDIR) $(KMOD) $(KLLVM) CLIPPY=1 KRUSTFLAGS=-Dwarnings modules
	@rm -f $(MOD)/src/rust_icmp.o
	@for t in icmpfuzz icmpflood; do \
		$(ENV) cargo fmt --check --manifest-path tools/$$t/Cargo.toml && \
		$(ENV) cargo clippy --release --quiet --manifest-path tools/$$t/Cargo.toml \
			--target-dir build/tools/$$t -- -D warnings && \
		$(ENV) cargo test --release --quiet --manifest-path tools/$$t/Cargo.toml \
			--target-dir build/tools/$$t || exit 1; \
	done
	@# The shell scripts (warnings and errors; -x follows what they source) and the Python
	@# of the tests and the benchmark.
	@shellcheck -x -S warning $(SHELL_SCRIPTS)
	@/usr/bin/python3 -m pyflakes tests tools/bench scripts/rust-analyzer
	@echo "lint: rustfmt, rustdoc, clippy, checkpatch, cargo test, shellcheck and pyflakes clean"

fmt:
	@$(RUSTFMT) src/rust_icmp.rs

# rust-project.json at the top, for rust-analyzer: the kernel's crates (Kbuild's own
# rust-analyzer target) and the module's (scripts/rust-analyzer adds it; see there why).
rust-analyzer: kernel
	@mkdir -p $(MOD)
	@$(ENV) $(MAKE) -s -C $(KDIR) $(KMOD) $(KLLVM) rust-analyzer
	@scripts/rust-analyzer $(MOD)/rust-project.json rust-project.json $(TOP)

clean:
	@rm -rf $(MOD) rust_icmp.ko

distclean:
	rm -rf build rust_icmp.ko
