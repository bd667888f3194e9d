#!/usr/bin/env bash
# Runs edgemon-agent's tests built for x86_64-pc-windows-gnu under Wine: the Windows modules'
# unit tests (pure parts, and smoke tests that call the real APIs under Wine), the shared
# request loop's, and agent/tests/agent.rs against the Windows agent binary.
#
#   tests/windows/agent-tests.sh [CARGO TEST ARGS...]
#
# Debian's cargo and rustc with -Z build-std (see packaging/windows/build-agent.sh for the
# toolchain and why it is pinned), target directory target/agent-test, the Wine runner
# tests/windows/wine-runner.sh, prefix WINEPREFIX or target/wine-prefix (made if missing).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
for tool in /usr/bin/cargo /usr/bin/rustc /usr/bin/x86_64-w64-mingw32-gcc; do
    if [[ ! -x $tool ]]; then
        echo "agent-tests.sh: $tool is missing (rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64)" >&2
        exit 1
    fi
done
# An outer cargo's settings are not this build's.
unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_TARGET_DIR \
    CARGO_BUILD_TARGET RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER CARGO_MAKEFLAGS MAKEFLAGS MFLAGS

export WINEPREFIX=${WINEPREFIX:-$root/target/wine-prefix}
tests/windows/wine-prefix.sh "$WINEPREFIX"
export RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=/usr/bin/x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=$root/tests/windows/wine-runner.sh
# Static CRT as in the shipped build: the prefix has no MinGW runtime DLLs.
export CARGO_ENCODED_RUSTFLAGS=-Ctarget-feature=+crt-static
# rustc runs MinGW's dlltool for each raw-dylib import (windows-sys), and dlltool leaves two
# empty temporary files behind per run: in the target directory, not in /tmp.
mkdir -p "$root/target/agent-test/tmp"
export TMPDIR=$root/target/agent-test/tmp
exec nice /usr/bin/cargo test --locked -p edgemon-agent --target x86_64-pc-windows-gnu \
    -Z build-std --target-dir "$root/target/agent-test" "$@"
