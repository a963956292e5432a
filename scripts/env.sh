# Shared settings for the project's scripts; sourced, not run.
# shellcheck shell=bash
# The variables are for the scripts that source this file.
# shellcheck disable=SC2034

: "${top:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
BUILD=${BUILD:-$top/build}
TOOLS=$BUILD/tools
# The kernel: Linux 7.3, trixie-backports' linux-source-7.3 (scripts/linux-source), with the
# patch series of linux/patches-7.3, built with clang 19 and CONFIG_RUST_INLINE_HELPERS.
# KVER names it in paths and messages; 6.12 is gone (commit 156c5c8 is its last).
KVER=${KVER:-7.3}
case $KVER in
7.3) KSUFFIX=-7.3 ;;
*) echo "KVER=$KVER: rust_icmp runs on Linux 7.3 (commit 156c5c8 is the last for 6.12)" >&2; exit 1 ;;
esac
SRC=$BUILD/linux-src$KSUFFIX
# DEBUG=1 selects the debug flavour of the test kernel (linux/config/debug.config), PREEMPT=
# full or rt the preemption model (linux/config/preempt-*.config). FLAVOUR names the build
# directories of the kernel and, in the Makefile, of the module: -debug, then -preempt or -rt.
FLAVOUR=
[[ ${DEBUG:-0} == 1 ]] && FLAVOUR=-debug
case ${PREEMPT:-} in
'') ;;
full) FLAVOUR+=-preempt ;;
rt) FLAVOUR+=-rt ;;
*) echo "PREEMPT=$PREEMPT: full or rt (or nothing, for PREEMPT_LAZY)" >&2; exit 2 ;;
esac
KDIR=${KDIR:-$BUILD/kernel$FLAVOUR$KSUFFIX}

# The toolchain pinned in rust-toolchain.toml (rustc 1.86.0, whose LLVM 19.1.7 is clang-19's:
# only then does Kconfig find rustc and clang LLVM-compatible, which
# CONFIG_RUST_INLINE_HELPERS needs), passed explicitly to every rustc/cargo call: the kernel
# tree under build/ is outside rustup's directory lookup.
RUST_TOOLCHAIN=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$top/rust-toolchain.toml")
export RUSTUP_TOOLCHAIN=$RUST_TOOLCHAIN

# bindgen's libclang: the one of the clang the kernel is built with (clang-19), not the
# newest one installed, which bindgen would load.
[[ -d /usr/lib/llvm-19/lib ]] && export LIBCLANG_PATH=/usr/lib/llvm-19/lib

BINDGEN_VERSION=0.73.2
BINDGEN=$TOOLS/bin/bindgen

export PATH="$HOME/.cargo/bin:$TOOLS/bin:$PATH"

# The module the Makefile builds for a kernel image of build/kernel<FLAVOUR>-7.3, printed:
# build/module<FLAVOUR>/rust_icmp.ko (FLAVOUR as above, or -nonf: scripts/no-netfilter),
# the default kernel's at the top. Nothing for another image, whose module only its builder
# knows. There are no symbol versions: a module built for another flavour of the kernel
# would load, and corrupt memory.
module_for_kernel() {
	local image build flavour
	image=$(realpath -m "$1")
	build=$(realpath -m "$BUILD")
	case $image in
	"$build"/kernel*"$KSUFFIX"/arch/x86/boot/bzImage) ;;
	*) return 0 ;;
	esac
	flavour=${image#"$build"/kernel}
	flavour=${flavour%"$KSUFFIX"/arch/x86/boot/bzImage}
	if [[ -z $flavour ]]; then
		echo "$top/rust_icmp.ko"
	else
		echo "$BUILD/module$flavour/rust_icmp.ko"
	fi
}
