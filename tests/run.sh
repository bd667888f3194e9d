#!/usr/bin/env bash
# Runs every test of the workspace against real servers.
#
# Installs the server packages the integration tests start (sshd, MariaDB,
# a three-node MariaDB Galera cluster, aiosmtpd, Chromium for the browser test) when one is missing
# and we may (root, or passwordless sudo), then
# runs the package test (tests/package_test.sh) and
# `cargo test --workspace --all-targets --locked "$@"`. Tests start their own
# throwaway servers on free 127.0.0.1 ports; this script never starts or
# stops the system MariaDB on port 3306. With EDGEMON_REQUIRE_SERVERS=1 (CI),
# a server still missing after installation is a failure, and so is a test
# that would otherwise print "SKIPPED".
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# libssl-dev and pkg-config: ssh2 and the TLS of mysql/lettre link the system OpenSSL.
# chromium: the status page's browser test (tests/integration/web.rs), headless.
# iproute2 and nftables: the namespace test hosts (tests/integration/support/netns.rs);
# sshfs: a FUSE mount whose daemon is stopped, for the hung-mount test (tests/integration/families.rs).
# galera-4, rsync and iproute2 (ss): the Galera cluster's provider and its rsync state transfer
# (wsrep_sst_rsync finds rsync and ss on PATH); util-linux gives setpriv, which drops the
# nodes to nobody when the tests run as root.
PACKAGES=(openssh-server openssh-client mariadb-server galera-4 rsync iproute2 util-linux
          python3-aiosmtpd passwd libssl-dev pkg-config chromium nftables faketime libfaketime
          sshfs)
# The Windows agent (issue 20): Debian's Rust 1.96 with its library source (for -Z build-std),
# the MinGW linker, and Wine for its tests. Installed in an apt-get call of their own without
# recommends: wine64's recommends pull in a desktop.
WINDOWS_PACKAGES=(rustc-web cargo-web rust-web-src gcc-mingw-w64-x86-64 wine64)

# True when Debian's Rust for the Windows agent is installed (not Debian's older rustc).
windows_rust() {
    [[ -x /usr/bin/rustc && -x /usr/bin/cargo ]] &&
        [[ $(dpkg-query -W -f='${db:Status-Status} ' rustc-web cargo-web rust-web-src 2>/dev/null) == "installed installed installed " ]]
}

# Prints one line per missing server component; prints nothing if all are there.
missing_servers() {
    pkg-config --exists openssl 2>/dev/null || echo "OpenSSL headers for the build (libssl-dev, pkg-config)"
    [[ -x /usr/sbin/sshd ]] || echo "OpenSSH server (/usr/sbin/sshd)"
    [[ -x /usr/bin/ssh && -x /usr/bin/ssh-keygen ]] || echo "OpenSSH client (/usr/bin/ssh, ssh-keygen)"
    [[ -x /usr/sbin/mariadbd || -x /usr/sbin/mysqld ]] || echo "MariaDB server (/usr/sbin/mariadbd)"
    [[ -x /usr/bin/mariadb-install-db ]] || echo "MariaDB (/usr/bin/mariadb-install-db)"
    [[ -x /usr/bin/chromium ]] || echo "Chromium for the status page's browser test (/usr/bin/chromium)"
    compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || echo "libfaketime for the clock-step tests (libfaketime)"
    [[ -x /usr/sbin/ip ]] || echo "iproute2 for namespace test hosts (/usr/sbin/ip)"
    [[ -x /usr/sbin/nft ]] || echo "nftables for namespace test hosts (/usr/sbin/nft)"
    [[ -x /usr/bin/sshfs ]] || echo "sshfs for the hung-mount test (/usr/bin/sshfs)"
    [[ -f /usr/lib/galera/libgalera_smm.so ]] || echo "Galera provider (galera-4: /usr/lib/galera/libgalera_smm.so)"
    [[ -x /usr/bin/wsrep_sst_rsync ]] || echo "Galera rsync SST script (mariadb-server: /usr/bin/wsrep_sst_rsync)"
    [[ -x /usr/bin/rsync ]] || echo "rsync (/usr/bin/rsync, Galera state transfer)"
    [[ -x /usr/bin/ss || -x /bin/ss ]] || echo "iproute2 (ss, Galera state transfer)"
    [[ -x /usr/bin/setpriv ]] || echo "util-linux (/usr/bin/setpriv)"
    if ! [[ -x /usr/bin/python3 ]] || ! /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null; then
        echo "aiosmtpd for /usr/bin/python3 (python3-aiosmtpd)"
    fi
    windows_rust || echo "Debian's Rust for the Windows agent (rustc-web cargo-web rust-web-src)"
    [[ -x /usr/bin/x86_64-w64-mingw32-gcc ]] || echo "MinGW linker for the Windows agent (gcc-mingw-w64-x86-64)"
    [[ -x /usr/lib/wine/wine64 ]] || echo "Wine for the Windows agent's tests (wine64: /usr/lib/wine/wine64)"
}

# Runs a command as root: directly, through passwordless sudo, or not at all.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}

missing=$(missing_servers)
if [[ -n $missing ]]; then
    echo "run.sh: missing, trying to install ${PACKAGES[*]} ${WINDOWS_PACKAGES[*]}:" >&2
    echo "$missing" | sed 's/^/  /' >&2
    # Installing mariadb-server may start the system service; tests never use it.
    if as_root apt-get update -q \
        && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PACKAGES[@]}" \
        && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${WINDOWS_PACKAGES[@]}"; then
        missing=$(missing_servers)
    else
        echo "run.sh: could not install packages (need root or passwordless sudo)" >&2
    fi
fi

if [[ -n $missing ]]; then
    if [[ ${EDGEMON_REQUIRE_SERVERS:-} == 1 ]]; then
        echo "run.sh: EDGEMON_REQUIRE_SERVERS=1 but these are missing:" >&2
        echo "$missing" | sed 's/^/  /' >&2
        exit 1
    fi
    echo "run.sh: tests that need these will print SKIPPED:" >&2
    echo "$missing" | sed 's/^/  /' >&2
fi

# The Debian package: build it, install it here, check it, purge it (needs root).
tests/package_test.sh

# A collector built without the Windows agent, as a plain `cargo build` makes it on a machine
# without the Windows toolchain: the tests check that it still works and explains a Windows
# host (tests/integration/windows_local.rs, windows_ssh.rs). Same target directory, so only
# the edgemon crate is built twice (build.rs reruns when EDGEMON_WINDOWS_AGENT changes).
EDGEMON_WINDOWS_AGENT=skip cargo build --locked --bin edgemon
mkdir -p target/linux-only
cp target/debug/edgemon target/linux-only/edgemon
EDGEMON_LINUX_ONLY_BIN=$PWD/target/linux-only/edgemon
export EDGEMON_LINUX_ONLY_BIN

# The Windows agent: its Wine prefix, its tests under Wine, and the exe that
# agent/tests/windows_exe.rs drives from here: the build that build.rs embeds, into the same
# target directory (target/agent-windows), so build.rs finds it built.
if windows_rust && [[ -x /usr/bin/x86_64-w64-mingw32-gcc && -x /usr/lib/wine/wine64 ]]; then
    tests/windows/wine-prefix.sh target/wine-prefix
    tests/windows/agent-tests.sh
    EDGEMON_WINDOWS_AGENT_EXE=$(packaging/windows/build-agent.sh target/agent-windows | tail -n 1)
    export EDGEMON_WINDOWS_AGENT_EXE
else
    echo "run.sh: no Windows toolchain or Wine: the Windows agent's tests print SKIPPED" >&2
fi

exec cargo test --workspace --all-targets --locked "$@"
