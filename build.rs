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

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    println!("cargo:rerun-if-env-changed=EDGEMON_AGENT_BIN");
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
    let bytes =
        std::fs::read(&agent).unwrap_or_else(|e| panic!("reading agent {}: {e}", agent.display()));
    let embedded = out_dir.join("edgemon-agent");
    std::fs::write(&embedded, &bytes).expect("writing embedded agent copy");
    println!("cargo:rustc-env=EDGEMON_AGENT_EMBED={}", embedded.display());

    // Copy beside the collector binary: OUT_DIR is target/<profile>/build/<pkg>-<hash>/out.
    if let Some(profile_dir) = out_dir.ancestors().nth(3) {
        copy_if_changed(&agent, &profile_dir.join("edgemon-agent"));
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
        .args(["build", "--release", "--locked", "-p", "edgemon-agent", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        // Nothing of the outer build's configuration may leak into this one.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_PRIMARY_PACKAGE")
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static\u{1f}-Cstrip=symbols\u{1f}-Cpanic=abort\u{1f}-Copt-level=s");
    for (key, _) in env::vars_os() {
        if let Some(key) = key.to_str()
            && (key.starts_with("CARGO_FEATURE_")
                || key.starts_with("CARGO_CFG_")
                || key.starts_with("DEP_"))
        {
            cmd.env_remove(key);
        }
    }
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
