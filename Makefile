# SPDX-License-Identifier: GPL-2.0
#
# rust_icmp: IPv4 ICMP as a Rust-for-Linux module. See README.md.
#
#   make            build the custom kernel (incremental) and rust_icmp.ko
#   make run        ... then boot it, load the module, ping through it, open a shell
#   make check      ... then run every test in the VM (what CI runs)
#   make lint       rustfmt --check and clippy (warnings are errors) on the module and the
#                   kernel-crate files of the patch series
#   make kernel     only the kernel (build/kernel)
#   make setup      install the prerequisites (Debian 12)
#   make clean      remove the module's build products (not the kernel)
#   make distclean  remove build/ entirely

SHELL := /bin/bash
TOP := $(CURDIR)
KDIR ?= $(TOP)/build/kernel
ENV := source $(TOP)/scripts/env.sh &&

.PHONY: all module kernel setup run check lint clean distclean fmt

all: module

setup:
	@scripts/setup

kernel: setup
	@scripts/kernel

# Kbuild writes objects next to the sources; build from a mirror under build/module so that
# src/ holds only what is committed (cp -p keeps mtimes, so rebuilds stay incremental).
MOD := $(TOP)/build/module

module: kernel
	@mkdir -p $(MOD)/src
	@cp -p Kbuild $(MOD)/
	@for f in $(MOD)/src/*.rs; do [ -e "src/$${f##*/}" ] || rm -f "$$f"; done
	@cp -p src/*.rs $(MOD)/src/
	@$(ENV) $(MAKE) -s -C $(KDIR) M=$(MOD) modules
	@cp -p $(MOD)/rust_icmp.ko $(TOP)/rust_icmp.ko
	@echo "built $(TOP)/rust_icmp.ko"

run: module
	@QEMU_SHELL=1 qemu/run tests/demo.sh

check: lint module
	@qemu/run tests/run_all.sh

# The Rust files the patch series adds or changes in the kernel tree.
PATCHED_RS = $(shell sed -n 's|^+++ b/\(rust/.*\.rs\)$$|\1|p' linux/patches/*.patch | sort -u)
RUSTFMT = $(ENV) "$$(rustup which rustfmt)" --edition 2021 \
	--config-path $(TOP)/build/linux-src/.rustfmt.toml

lint: kernel
	@$(RUSTFMT) --check src/rust_icmp.rs
	@cd build/linux-src && $(RUSTFMT) --check $(PATCHED_RS)
	@mkdir -p $(MOD)/src && cp -p Kbuild $(MOD)/ && cp -p src/*.rs $(MOD)/src/
	@touch $(MOD)/src/rust_icmp.rs
	@$(ENV) $(MAKE) -s -C $(KDIR) M=$(MOD) CLIPPY=1 KRUSTFLAGS=-Dwarnings modules
	@touch $(MOD)/src/rust_icmp.rs
	@echo "lint: rustfmt and clippy clean"

fmt:
	@$(RUSTFMT) src/rust_icmp.rs

clean:
	@rm -rf $(MOD) rust_icmp.ko

distclean:
	rm -rf build rust_icmp.ko
