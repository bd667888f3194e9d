#!/usr/bin/env bash
# Builds the Debian package with cargo-deb: target/debian/edgemon_<version>_amd64.deb.
# Installs cargo-deb first when it is missing. Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deb --version >/dev/null 2>&1; then
    cargo install cargo-deb --locked
fi
# The release build also builds the static agent (build.rs) and copies it to target/release/edgemon-agent.
cargo build --release --locked --bin edgemon
ldd target/release/edgemon-agent 2>&1 | grep -q 'statically linked' || {
    echo "build-deb: target/release/edgemon-agent is not static" >&2
    exit 1
}
cargo deb --no-build --locked --output target/debian/ >&2
ls -t target/debian/edgemon_*.deb | head -n 1
