#!/usr/bin/env bash
# Makes the Wine prefix DIR in which the Windows agent and its tests run, once: safe to call
# before every run and from several processes at a time (flock on DIR/.edgemon-lock; a ready
# prefix is left alone and the call returns at once).
#
#   tests/windows/wine-prefix.sh DIR      (the shared one is <repo>/target/wine-prefix)
#
# The prefix is `wineboot --init` with Mono and Gecko declined (WINEDLLOVERRIDES
# mscoree,mshtml= during the boot only), plus a stand-in bcryptprimitives.dll built from
# tests/windows/bcryptprimitives.c into its system32, with the `bcryptprimitives` override
# set to native in the prefix's own registry (HKCU\Software\Wine\DllOverrides); and the
# demand-start service `edgemon-test-failing` (tests/windows/failing-service.c, installed as
# C:\edgemon-test\failing-service.exe), which stops at once with exit code 42, for the units
# family's tests to start. So running
# the agent needs no environment beyond WINEPREFIX (and WINEDEBUG=-all for quiet; the tests
# also set TMPDIR=DIR/tmp, so Wine's server directory stays out of /tmp):
#
#   WINEPREFIX=DIR WINEDEBUG=-all TMPDIR=DIR/tmp /usr/lib/wine/wine64 edgemon-agent.exe --version
#
# Needs wine64 (Debian's puts it at /usr/lib/wine/wine64) and x86_64-w64-mingw32-gcc.
# Makes the prefix again when bcryptprimitives.c, failing-service.c or this script changes.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
wine=${WINE:-/usr/lib/wine/wine64}
[[ -x $wine ]] || wine=$(command -v wine64 || true)
if [[ -z $wine || ! -x $wine ]]; then
    echo "wine-prefix.sh: wine64 not found (/usr/lib/wine/wine64; install wine64)" >&2
    exit 1
fi
wineserver=$(dirname "$wine")/wineserver
[[ -x $wineserver ]] || wineserver=$(command -v wineserver || true)
if ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
    echo "wine-prefix.sh: x86_64-w64-mingw32-gcc not found (install gcc-mingw-w64-x86-64)" >&2
    exit 1
fi

mkdir -p "$1"
dir=$(cd "$1" && pwd)
# Wine puts its server's socket directory under TMPDIR (wine-XXXXXX): inside the prefix, so
# that nothing is left in /tmp. Every Wine call on a prefix must agree on it (else a second
# wineserver); tests/integration/support/wine.rs, wine-runner.sh and the bench do the same.
mkdir -p "$dir/tmp"
export TMPDIR=$dir/tmp
exec 9>"$dir/.edgemon-lock"
flock 9

source_sum=$(cat "$here/bcryptprimitives.c" "$here/failing-service.c" "$0" | sha256sum | cut -d' ' -f1)
stamp=$dir/.edgemon-ready
if [[ -f $stamp && $(cat "$stamp") == "$source_sum" && -f $dir/system.reg ]]; then
    exit 0
fi

export WINEPREFIX=$dir WINEDEBUG=-all
echo "wine-prefix.sh: making the Wine prefix $dir" >&2
WINEDLLOVERRIDES="mscoree,mshtml=" "$wine" wineboot --init
system32=$dir/drive_c/windows/system32
if [[ ! -d $system32 ]]; then
    echo "wine-prefix.sh: wineboot made no $system32" >&2
    exit 1
fi
x86_64-w64-mingw32-gcc -O2 -shared -s -o "$system32/bcryptprimitives.dll" \
    "$here/bcryptprimitives.c" -lbcrypt
"$wine" reg add 'HKCU\Software\Wine\DllOverrides' /v bcryptprimitives /d native /f >/dev/null
mkdir -p "$dir/drive_c/edgemon-test"
x86_64-w64-mingw32-gcc -O2 -s -o "$dir/drive_c/edgemon-test/failing-service.exe" \
    "$here/failing-service.c"
"$wine" sc delete edgemon-test-failing >/dev/null 2>&1 || true
"$wine" sc create edgemon-test-failing binpath= 'C:\edgemon-test\failing-service.exe' \
    start= demand >/dev/null
# The registry reaches the files when the wineserver exits.
[[ -n $wineserver ]] && "$wineserver" -w
if ! grep -q '"bcryptprimitives"="native"' "$dir/user.reg"; then
    echo "wine-prefix.sh: the bcryptprimitives override did not reach $dir/user.reg" >&2
    exit 1
fi
if ! grep -qi 'Services\\\\edgemon-test-failing\]' "$dir/system.reg"; then
    echo "wine-prefix.sh: the service edgemon-test-failing did not reach $dir/system.reg" >&2
    exit 1
fi
echo "$source_sum" >"$stamp"
