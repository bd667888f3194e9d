//! The agent binaries embedded in the collector at build time (see build.rs): a statically
//! linked Linux `edgemon-agent`, always, and the Windows `edgemon-agent.exe` when the collector
//! was built on a machine with the Windows toolchain, so what is uploaded or run locally is
//! always the build that matches this collector.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The static Linux `edgemon-agent` executable.
pub static AGENT: &[u8] = include_bytes!(env!("EDGEMON_AGENT_EMBED"));

/// The Windows `edgemon-agent.exe` (x86_64-pc-windows-gnu), when this collector was built with
/// the Windows toolchain; see [`windows`].
#[cfg(edgemon_windows_agent)]
pub static WINDOWS_AGENT: Option<&[u8]> = Some(include_bytes!(env!("EDGEMON_WINDOWS_AGENT_EMBED")));

/// The Windows `edgemon-agent.exe`: this collector was built without the Windows toolchain.
#[cfg(not(edgemon_windows_agent))]
pub static WINDOWS_AGENT: Option<&[u8]> = None;

/// What a Windows host gets from a collector built without the Windows agent.
pub const WINDOWS_AGENT_MISSING: &str = "this edgemon was built without the Windows agent \
(edgemon-agent.exe): install Debian's rustc-web, cargo-web, rust-web-src and \
gcc-mingw-w64-x86-64 (tests/run.sh does) and rebuild, or build with \
EDGEMON_WINDOWS_AGENT_BIN=/path/to/edgemon-agent.exe; the Debian package ships it";

/// The collector has no Windows agent to give a Windows host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{WINDOWS_AGENT_MISSING}")]
pub struct WindowsAgentMissing;

/// The embedded Windows agent, or why there is none.
pub fn windows() -> Result<&'static [u8], WindowsAgentMissing> {
    WINDOWS_AGENT.ok_or(WindowsAgentMissing)
}

/// Lowercase hex SHA-256 of [`AGENT`], computed once.
pub fn sha256_hex() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hex::encode(Sha256::digest(AGENT)))
}

/// Lowercase hex SHA-256 of the embedded Windows agent, computed once; `None` without one.
pub fn windows_sha256_hex() -> Option<&'static str> {
    static HASH: OnceLock<Option<String>> = OnceLock::new();
    HASH.get_or_init(|| WINDOWS_AGENT.map(|bytes| hex::encode(Sha256::digest(bytes))))
        .as_deref()
}

/// Writes the embedded Linux agent to `<data_dir>/agent/edgemon-agent-<hash>` (mode 0700)
/// unless that file is already there, and returns its path. The name carries the hash, so an
/// upgraded collector never runs a stale agent; the write goes to a temporary name first
/// and is renamed into place, so a concurrent or interrupted install never leaves half a file.
pub fn install_local(data_dir: &Path) -> std::io::Result<PathBuf> {
    install(data_dir, AGENT, sha256_hex(), "")
}

/// Writes the embedded Windows agent to `<data_dir>/agent/edgemon-agent-<hash>.exe` like
/// [`install_local`], for a local Windows host run under Wine; `Ok(None)` without one.
pub fn install_local_windows(data_dir: &Path) -> std::io::Result<Option<PathBuf>> {
    match (WINDOWS_AGENT, windows_sha256_hex()) {
        (Some(bytes), Some(hash)) => install(data_dir, bytes, hash, ".exe").map(Some),
        _ => Ok(None),
    }
}

fn install(data_dir: &Path, bytes: &[u8], hash: &str, suffix: &str) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    let dir = data_dir.join("agent");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("edgemon-agent-{}{suffix}", &hash[..16]));
    if std::fs::metadata(&path)
        .map(|m| m.len() == bytes.len() as u64)
        .unwrap_or(false)
    {
        return Ok(path);
    }
    let tmp = dir.join(format!(".edgemon-agent{suffix}.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o700)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_windows_agent_says_how_to_get_one() {
        let message = WindowsAgentMissing.to_string();
        assert!(
            message.contains("built without the Windows agent"),
            "{message}"
        );
        assert!(message.contains("gcc-mingw-w64-x86-64"), "{message}");
        assert!(message.contains("EDGEMON_WINDOWS_AGENT_BIN"), "{message}");
        assert_eq!(windows().is_ok(), WINDOWS_AGENT.is_some());
        assert_eq!(windows_sha256_hex().is_some(), WINDOWS_AGENT.is_some());
    }
}
