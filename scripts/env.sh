# Shared settings for the project's scripts; sourced, not run.
# shellcheck shell=bash

: "${top:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
BUILD=${BUILD:-$top/build}
TOOLS=$BUILD/tools
# DEBUG=1 selects the debug flavour of the test kernel (linux/config/debug.config).
if [[ ${DEBUG:-0} == 1 ]]; then
	KDIR=${KDIR:-$BUILD/kernel-debug}
else
	KDIR=${KDIR:-$BUILD/kernel}
fi

# The toolchain pinned in rust-toolchain.toml, passed explicitly to every rustc/cargo call
# (the kernel tree under build/ is outside rustup's directory lookup).
RUST_TOOLCHAIN=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$top/rust-toolchain.toml")
export RUSTUP_TOOLCHAIN=$RUST_TOOLCHAIN

BINDGEN_VERSION=0.73.2
BINDGEN=$TOOLS/bin/bindgen

export PATH="$HOME/.cargo/bin:$TOOLS/bin:$PATH"
