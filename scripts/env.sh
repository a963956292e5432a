# Shared settings for the project's scripts; sourced, not run.
# shellcheck shell=bash

: "${top:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
BUILD=${BUILD:-$top/build}
TOOLS=$BUILD/tools
# KVER selects the kernel series. 6.12 (the default) is Debian 12's linux-source-6.12 with
# the patch series of linux/patches: what rust_icmp and its tests run on today. 7.3 is
# trixie-backports' linux-source-7.3 (scripts/linux-source), built with clang 19 and
# CONFIG_RUST_INLINE_HELPERS; the port is under way and its series (linux/patches-7.3) does
# not carry the module's abstractions yet, so only the kernel builds there.
KVER=${KVER:-6.12}
case $KVER in
6.12) KSUFFIX= ;;
7.3) KSUFFIX=-7.3 ;;
*) echo "KVER=$KVER: the kernels are 6.12 (default) and 7.3" >&2; exit 1 ;;
esac
SRC=$BUILD/linux-src$KSUFFIX
# DEBUG=1 selects the debug flavour of the test kernel (linux/config/debug.config).
if [[ ${DEBUG:-0} == 1 ]]; then
	KDIR=${KDIR:-$BUILD/kernel-debug$KSUFFIX}
else
	KDIR=${KDIR:-$BUILD/kernel$KSUFFIX}
fi

# The toolchain pinned in rust-toolchain.toml, passed explicitly to every rustc/cargo call
# (the kernel tree under build/ is outside rustup's directory lookup). 7.3 uses rustc 1.86.0
# instead, whose LLVM (19.1.7) is clang-19's: only then does Kconfig find rustc and clang
# LLVM-compatible (RUSTC_CLANG_LLVM_COMPATIBLE), which CONFIG_RUST_INLINE_HELPERS needs.
if [[ $KVER == 7.3 ]]; then
	RUST_TOOLCHAIN=1.86.0
else
	RUST_TOOLCHAIN=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$top/rust-toolchain.toml")
fi
export RUSTUP_TOOLCHAIN=$RUST_TOOLCHAIN

# bindgen's libclang: the one of the clang the kernel is built with (clang-19 for 7.3,
# Debian 12's clang 14 for 6.12), not the newest one installed, which bindgen would load.
if [[ $KVER == 7.3 ]]; then
	clang_major=19
else
	clang_major=$(clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9]*\).*/\1/p')
fi
[[ -n ${clang_major:-} && -d /usr/lib/llvm-$clang_major/lib ]] &&
	export LIBCLANG_PATH=/usr/lib/llvm-$clang_major/lib

BINDGEN_VERSION=0.73.2
BINDGEN=$TOOLS/bin/bindgen

export PATH="$HOME/.cargo/bin:$TOOLS/bin:$PATH"
