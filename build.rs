//! Builds the static `edgemon-agent` and hands its path to the collector.
//!
//! The agent runs on hosts whose glibc we do not know, so it is linked with
//! `-C target-feature=+crt-static`. Those flags apply to a whole cargo build,
//! and the collector links OpenSSL through ssh2, so the agent is built here in
//! a nested cargo with its own target directory (`target/agent`) and an
//! explicit `--target`, which keeps the flag away from build scripts and proc
//! macros. The resulting binary is embedded in the collector
//! (`include_bytes!`), so what the collector uploads or runs locally is always
//! this static build, and it is also copied beside the collector as
//! `target/<profile>/edgemon-agent` for `ldd` and for packaging.
//!
//! Setting `EDGEMON_AGENT_BIN` to an existing file skips the nested build and
//! embeds that file instead (used by packaging to avoid building it twice).
//!
//! The Windows agent `edgemon-agent.exe` is embedded too when it can be had:
//! `EDGEMON_WINDOWS_AGENT_BIN` names a built one; otherwise, when Debian's
//! Windows toolchain is installed (`gcc-mingw-w64-x86-64`, `rustc-web`,
//! `cargo-web`, `rust-web-src`), `packaging/windows/build-agent.sh` builds it into
//! `target/agent-windows`; `EDGEMON_WINDOWS_AGENT=skip` builds without it. A
//! build without it sets no `edgemon_windows_agent` cfg, and a Windows host then
//! fails with the message of `agent_bin::WINDOWS_AGENT_MISSING`. The toolchain
//! is looked for when this script runs: after installing it, touch `build.rs`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    println!("cargo:rerun-if-env-changed=EDGEMON_AGENT_BIN");
    println!("cargo:rerun-if-env-changed=EDGEMON_WINDOWS_AGENT_BIN");
    println!("cargo:rerun-if-env-changed=EDGEMON_WINDOWS_AGENT");
    println!("cargo:rustc-check-cfg=cfg(edgemon_windows_agent)");
    for dir in [
        "agent/src",
        "agent/Cargo.toml",
        "crates/proto/src",
        "crates/proto/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={dir}");
    }
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    let agent = match env::var_os("EDGEMON_AGENT_BIN") {
        Some(path) => PathBuf::from(path),
        None => build_static_agent(&manifest_dir),
    };
    // OUT_DIR is target/<profile>/build/<pkg>-<hash>/out: the collector binary's directory
    // is three levels up.
    let profile_dir = out_dir.ancestors().nth(3);
    embed(
        &agent,
        "edgemon-agent",
        "EDGEMON_AGENT_EMBED",
        &out_dir,
        profile_dir,
    );
    if let Some(windows) = windows_agent(&manifest_dir) {
        embed(
            &windows,
            "edgemon-agent.exe",
            "EDGEMON_WINDOWS_AGENT_EMBED",
            &out_dir,
            profile_dir,
        );
        println!("cargo:rustc-cfg=edgemon_windows_agent");
    }
}

/// Copies `agent` into `OUT_DIR` as `name` for `include_bytes!` (its path in the compile-time
/// variable `env_var`) and beside the collector binary, for `ldd` and packaging.
fn embed(agent: &Path, name: &str, env_var: &str, out_dir: &Path, profile_dir: Option<&Path>) {
    let bytes =
        std::fs::read(agent).unwrap_or_else(|e| panic!("reading agent {}: {e}", agent.display()));
    let embedded = out_dir.join(name);
    std::fs::write(&embedded, &bytes)
        .unwrap_or_else(|e| panic!("writing the embedded copy {}: {e}", embedded.display()));
    println!("cargo:rustc-env={env_var}={}", embedded.display());
    if let Some(profile_dir) = profile_dir {
        copy_if_changed(agent, &profile_dir.join(name));
    }
}

/// The Windows agent to embed: `EDGEMON_WINDOWS_AGENT_BIN`, else one built with Debian's
/// Windows toolchain when it is installed, else none.
fn windows_agent(manifest_dir: &Path) -> Option<PathBuf> {
    if let Some(path) = env::var_os("EDGEMON_WINDOWS_AGENT_BIN").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        println!("cargo:rerun-if-changed={}", path.display());
        return Some(path);
    }
    if env::var("EDGEMON_WINDOWS_AGENT").is_ok_and(|v| v == "skip") {
        return None;
    }
    let script = manifest_dir.join("packaging/windows/build-agent.sh");
    let toolchain = [
        "/usr/bin/x86_64-w64-mingw32-gcc",
        "/usr/bin/rustc",
        "/usr/bin/cargo",
        "/usr/lib/rustlib/src/rust/library/std",
    ];
    if !script.exists() || !toolchain.iter().all(|p| Path::new(p).exists()) {
        return None;
    }
    println!("cargo:rerun-if-changed=packaging/windows");
    println!("cargo:rerun-if-changed=/usr/bin/rustc");
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("target"))
        .join("agent-windows");
    let mut cmd = Command::new("bash");
    cmd.current_dir(manifest_dir)
        .arg(&script)
        .arg(&target_dir)
        .stderr(std::process::Stdio::inherit());
    scrub_cargo_env(&mut cmd);
    cmd.env_remove("RUSTC")
        .env_remove("CARGO")
        .env_remove("RUSTDOC");
    let output = cmd
        .output()
        .expect("running packaging/windows/build-agent.sh for edgemon-agent.exe");
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.code() == Some(3) {
        // The toolchain is there but not the pinned one (a security update moved rustc-web):
        // a collector without the Windows agent, saying so, rather than no collector.
        println!(
            "cargo:warning=building without the Windows agent: packaging/windows/build-agent.sh found no usable toolchain (see its message above; EDGEMON_WINDOWS_RUSTC=any accepts this rustc)"
        );
        return None;
    }
    assert!(
        output.status.success(),
        "building the Windows edgemon-agent.exe failed ({}); the Windows toolchain is installed, \
         so this is an error; EDGEMON_WINDOWS_AGENT=skip builds without the Windows agent.\n{stdout}",
        output.status
    );
    let exe = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .map(|line| PathBuf::from(line.trim()))
        .expect("packaging/windows/build-agent.sh printed no path");
    assert!(
        exe.is_file(),
        "packaging/windows/build-agent.sh printed {}, which is no file",
        exe.display()
    );
    Some(exe)
}

/// Removes what the outer cargo would leak into a nested build.
fn scrub_cargo_env(cmd: &mut Command) {
    cmd.env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_PRIMARY_PACKAGE");
    for (key, _) in env::vars_os() {
        if let Some(key) = key.to_str()
            && (key.starts_with("CARGO_FEATURE_")
                || key.starts_with("CARGO_CFG_")
                || key.starts_with("DEP_"))
        {
            cmd.env_remove(key);
        }
    }
}

fn build_static_agent(manifest_dir: &Path) -> PathBuf {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("target"))
        .join("agent");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(manifest_dir)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "edgemon-agent",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // Nothing of the outer build's configuration may leak into this one.
    scrub_cargo_env(&mut cmd);
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        "-Ctarget-feature=+crt-static\u{1f}-Cstrip=symbols\u{1f}-Cpanic=abort\u{1f}-Copt-level=s",
    );
    let status = cmd
        .status()
        .expect("running the nested cargo for edgemon-agent");
    assert!(
        status.success(),
        "building the static edgemon-agent failed ({status})"
    );
    target_dir
        .join(TARGET)
        .join("release")
        .join("edgemon-agent")
}

fn copy_if_changed(from: &Path, to: &Path) {
    let same = match (std::fs::read(from), std::fs::read(to)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        let tmp = to.with_extension("tmp");
        if std::fs::copy(from, &tmp).is_ok() {
            let _ = std::fs::rename(&tmp, to);
        }
    }
}
