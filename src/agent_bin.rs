//! The agent binary embedded in the collector at build time (see build.rs):
//! a statically linked `edgemon-agent`, so what is uploaded or run locally is
//! always the static build that matches this collector.

use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The static `edgemon-agent` executable.
pub static AGENT: &[u8] = include_bytes!(env!("EDGEMON_AGENT_EMBED"));

/// Lowercase hex SHA-256 of [`AGENT`], computed once.
pub fn sha256_hex() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hex::encode(Sha256::digest(AGENT)))
}

/// Writes the embedded agent to `<data_dir>/agent/edgemon-agent-<hash>` (mode 0700) unless
/// that file is already there, and returns its path. The name carries the hash, so an
/// upgraded collector never runs a stale agent; the write goes to a temporary name first
/// and is renamed into place, so a concurrent or interrupted install never leaves half a file.
pub fn install_local(data_dir: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    let dir = data_dir.join("agent");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("edgemon-agent-{}", &sha256_hex()[..16]));
    if std::fs::metadata(&path)
        .map(|m| m.len() == AGENT.len() as u64)
        .unwrap_or(false)
    {
        return Ok(path);
    }
    let tmp = dir.join(format!(".edgemon-agent.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o700)
        .open(&tmp)?;
    file.write_all(AGENT)?;
    file.sync_all()?;
    drop(file);
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}
