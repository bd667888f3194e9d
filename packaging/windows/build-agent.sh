#!/usr/bin/env bash
# Builds the Windows agent, edgemon-agent.exe (x86_64-pc-windows-gnu, release, static CRT,
# stripped, panic=abort, size-optimised), into TARGET_DIR and prints the exe's path as the
# LAST line of stdout (cargo's own output goes to stderr). Exits non-zero with a message
# saying what is missing or what failed:
#
#   3  the toolchain is missing or not the pinned version (a caller may go on without the
#      Windows agent, saying so);
#   1  the build itself failed, or the exe imports a DLL that is not Windows' own;
#   2  bad usage.
#
#   packaging/windows/build-agent.sh TARGET_DIR     (build.rs passes <repo>/target/agent-windows)
#
# Toolchain (Debian 12): rustc-web, cargo-web, rust-web-src (Rust 1.96 with the library
# source, bookworm-security) and gcc-mingw-w64-x86-64 (the linker). Rustup's std has no
# Windows target here, so std is built from Debian's source with the unstable
# `-Z build-std` (RUSTC_BOOTSTRAP=1), by Debian's cargo and rustc (/usr/bin; rustup's come
# first on PATH, hence the explicit paths).
#
# PINNED, and why: rustc-web moves forward inside Debian security updates (1.96.0 when this
# was written, checked below), and build-std is unstable, so a security update can change
# or break this build. The version is checked against EDGEMON_WINDOWS_RUSTC (default the
# one below); set EDGEMON_WINDOWS_RUSTC=any to build with another one knowingly.
set -euo pipefail

PINNED_RUSTC=${EDGEMON_WINDOWS_RUSTC:-1.96.0}
WIN_TARGET=x86_64-pc-windows-gnu
RUSTC=/usr/bin/rustc
CARGO=/usr/bin/cargo
LINKER=/usr/bin/x86_64-w64-mingw32-gcc

fail() {
    echo "build-agent.sh: $*" >&2
    exit 1
}
no_toolchain() {
    echo "build-agent.sh: $*" >&2
    exit 3
}

[[ $# -eq 1 ]] || { echo "usage: $0 TARGET_DIR" >&2; exit 2; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p "$1" || fail "cannot create the target directory $1"
target_dir=$(cd "$1" && pwd)

[[ -x $RUSTC && -x $CARGO ]] ||
    no_toolchain "Debian's rustc and cargo are missing ($RUSTC, $CARGO): apt-get install --no-install-recommends rustc-web cargo-web rust-web-src"
[[ -x $LINKER ]] || no_toolchain "the MinGW linker is missing ($LINKER): apt-get install --no-install-recommends gcc-mingw-w64-x86-64"
sysroot=$("$RUSTC" --print sysroot) || no_toolchain "$RUSTC --print sysroot failed"
[[ -f $sysroot/lib/rustlib/src/rust/library/Cargo.lock ]] ||
    no_toolchain "the Rust library source is missing ($sysroot/lib/rustlib/src/rust/library): apt-get install --no-install-recommends rust-web-src"
version=$("$RUSTC" --version | cut -d' ' -f2)
if [[ $PINNED_RUSTC != any && $version != "$PINNED_RUSTC" ]]; then
    no_toolchain "$RUSTC is $version, this build is pinned to $PINNED_RUSTC (rustc-web moves inside security updates and -Z build-std is unstable); check the Windows agent with it and update the pin, or set EDGEMON_WINDOWS_RUSTC=any"
fi

# Nothing of an outer cargo (this runs from the collector's build.rs) may leak in: its
# flags, target, target directory, wrappers, features and build-script variables are the
# outer build's, not this one's. Its jobserver (CARGO_MAKEFLAGS) is kept, as the Linux
# agent's nested build keeps it: the two builds then share the outer -j instead of
# oversubscribing the cores.
unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_TARGET_DIR \
    CARGO_BUILD_TARGET CARGO_BUILD_TARGET_DIR RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER \
    CARGO_BUILD_RUSTC_WRAPPER CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER CARGO_PRIMARY_PACKAGE \
    RUSTDOCFLAGS CARGO_ENCODED_RUSTDOCFLAGS CARGO_MANIFEST_DIR CARGO_MANIFEST_PATH OUT_DIR \
    TARGET HOST NUM_JOBS OPT_LEVEL PROFILE DEBUG RUSTC_LINKER \
    CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUSTFLAGS CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER
for name in $(compgen -e); do
    case $name in
        CARGO_FEATURE_* | CARGO_CFG_* | DEP_* | CARGO_PKG_*) unset "$name" ;;
    esac
done

sep=$'\x1f'
export RUSTC_BOOTSTRAP=1 RUSTC=$RUSTC
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=$LINKER
# No link time in the PE header: the same source gives the same exe, so the same hash (the
# collector uploads agents by hash) after a rebuild.
export CARGO_ENCODED_RUSTFLAGS="-Ctarget-feature=+crt-static${sep}-Cstrip=symbols${sep}-Cpanic=abort${sep}-Copt-level=s${sep}-Clink-arg=-Wl,--no-insert-timestamp"
# rustc runs MinGW's dlltool for each raw-dylib import (windows-sys), and dlltool leaves two
# empty temporary files behind per run: they go to the target directory, not to /tmp.
mkdir -p "$target_dir/tmp"
export TMPDIR=$target_dir/tmp
cd "$root"
"$CARGO" build --release --locked -p edgemon-agent --target "$WIN_TARGET" \
    -Z build-std=std,panic_abort --target-dir "$target_dir" >&2 ||
    fail "cargo build of edgemon-agent for $WIN_TARGET failed (see above)"

exe=$target_dir/$WIN_TARGET/release/edgemon-agent.exe
[[ -f $exe ]] || fail "the build succeeded but $exe is missing"
# The exe must need nothing but Windows' own DLLs (no libgcc_s, libwinpthread, ...).
if command -v x86_64-w64-mingw32-objdump >/dev/null; then
    foreign=$(x86_64-w64-mingw32-objdump -p "$exe" | sed -n 's/^\s*DLL Name: //p' |
        grep -viE '^(kernel32|ntdll|advapi32|bcrypt|bcryptprimitives|msvcrt|iphlpapi|psapi|ws2_32|userenv|api-ms-win-[a-z0-9-]+)\.dll$' || true)
    [[ -z $foreign ]] || fail "$exe imports non-system DLLs: $foreign"
fi
echo "$exe"
