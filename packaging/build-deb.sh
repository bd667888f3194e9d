#!/usr/bin/env bash
# Builds the Debian package with cargo-deb: target/debian/edgemon_<version>_amd64.deb.
# Installs cargo-deb first when it is missing. Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deb --version >/dev/null 2>&1; then
    cargo install cargo-deb --locked
fi
# The release build also builds the static agent (build.rs, into target/agent/) and embeds it.
cargo build --release --locked --bin edgemon
agent=target/agent/x86_64-unknown-linux-gnu/release/edgemon-agent
ldd "$agent" 2>&1 | grep -q 'statically linked' || {
    echo "build-deb: $agent is not static" >&2
    exit 1
}
# With the Windows toolchain installed the release build also embeds edgemon-agent.exe and
# copies it to target/release/ (build.rs): then the package ships it too (variant "windows",
# same package name).
variant=()
if [ -f target/release/edgemon-agent.exe ]; then
    variant=(--variant windows)
fi
cargo deb --no-build --locked "${variant[@]}" --output target/debian/ >&2
ls -t target/debian/edgemon_*.deb | head -n 1
