#!/usr/bin/env bash
# Runs a Windows program under Wine: the cargo `runner` of x86_64-pc-windows-gnu
# (.cargo/config.toml), so `cargo test --target x86_64-pc-windows-gnu` runs the tests here.
#
#   tests/windows/wine-runner.sh PROGRAM.exe [ARGS...]
#
# WINEPREFIX defaults to <repo>/target/wine-prefix, made on first use by wine-prefix.sh
# (later calls only check it); WINEDEBUG defaults to -all. The program's exit code and its
# stdin, stdout and stderr are Wine's, which passes them through.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export WINEPREFIX=${WINEPREFIX:-$root/target/wine-prefix}
export WINEDEBUG=${WINEDEBUG:--all}
wine=${WINE:-/usr/lib/wine/wine64}
[[ -x $wine ]] || wine=$(command -v wine64 || echo /usr/lib/wine/wine64)
"$root/tests/windows/wine-prefix.sh" "$WINEPREFIX"
# Wine's server directory inside the prefix, as wine-prefix.sh has it: nothing left in /tmp.
export TMPDIR=$WINEPREFIX/tmp
exec "$wine" "$@"
