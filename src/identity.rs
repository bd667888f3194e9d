//! The appliance's identity: the name every central row carries.
//!
//! `appliance.id` from the configuration when set. Otherwise it is derived
//! from the machine: `m-` and the first 16 hex digits of SHA-256 over a fixed
//! prefix and `/etc/machine-id` (so the machine id itself never leaves the
//! box, and a reinstall of the same system keeps its id). Without a machine
//! id, one is generated once (`g-` and 16 random hex digits) and persisted as
//! `<data_dir>/appliance-id`, written atomically and never over another (two
//! first runs at once agree on one id). A persisted id wins over the machine
//! id, so a machine id that appears later does not change the appliance. No shipped or imported
//! configuration carries a shared placeholder, so two sites that keep the
//! defaults never write under one name. Together with the buffer's epoch
//! (`buffer::SyncQueue::epoch`) this is the identity of a buffer centrally.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::config::ApplianceConfig;

/// Where the machine's id is read from.
pub const MACHINE_ID: &str = "/etc/machine-id";

/// The file under the data directory that keeps a generated id.
pub const ID_FILE: &str = "appliance-id";

/// The appliance id of `appliance`: configured, derived from `/etc/machine-id`, or generated
/// once and persisted in the data directory.
pub fn appliance_id(appliance: &ApplianceConfig) -> anyhow::Result<String> {
    resolve(
        appliance.id.as_deref(),
        Path::new(MACHINE_ID),
        &appliance.data_dir,
    )
}

/// [`appliance_id`] with an explicit machine-id file (tests).
pub fn resolve(
    configured: Option<&str>,
    machine_id: &Path,
    data_dir: &Path,
) -> anyhow::Result<String> {
    if let Some(id) = configured {
        return Ok(id.to_string());
    }
    let file = data_dir.join(ID_FILE);
    if file.exists() {
        return persisted(&file);
    }
    if let Some(derived) = std::fs::read_to_string(machine_id)
        .ok()
        .and_then(|text| from_machine_id(&text))
    {
        return Ok(derived);
    }
    persisted(&file)
}

/// `m-` and 16 hex digits of SHA-256 over the machine id; `None` when it is not a machine id.
fn from_machine_id(text: &str) -> Option<String> {
    let id = text.trim();
    if id.len() < 16 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let digest = Sha256::new()
        .chain_update(b"edgemon appliance id\0")
        .chain_update(id.to_ascii_lowercase().as_bytes())
        .finalize();
    Some(format!("m-{}", &hex::encode(digest)[..16]))
}

/// Reads the generated id at `path`, or generates and writes it (a temporary file of this
/// process, fsync, then a hard link to `path`, which fails rather than replace an id another
/// process wrote first; then the directory is fsynced).
fn persisted(path: &Path) -> anyhow::Result<String> {
    if let Some(id) = read_persisted(path)? {
        return Ok(id);
    }
    let id = format!("g-{:016x}", rand::random::<u64>());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let tmp = PathBuf::from(format!(
        "{}.tmp.{}.{:x}",
        path.display(),
        std::process::id(),
        rand::random::<u32>()
    ));
    let write = || -> std::io::Result<bool> {
        let mut file = std::fs::File::create(&tmp)?;
        writeln!(file, "{id}")?;
        file.sync_all()?;
        let linked = match std::fs::hard_link(&tmp, path) {
            Ok(()) => true,
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(err) => return Err(err),
        };
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(linked)
    };
    let written = write();
    let _ = std::fs::remove_file(&tmp);
    let linked = written.with_context(|| {
        format!(
            "no {MACHINE_ID} and cannot persist a generated appliance id in {}: set appliance.id",
            path.display()
        )
    })?;
    if !linked {
        // Another process generated one first: use it.
        return read_persisted(path)?
            .with_context(|| format!("{} vanished while it was being read", path.display()));
    }
    tracing::info!(id = %id, file = %path.display(), "generated the appliance id (no {MACHINE_ID})");
    Ok(id)
}

/// The id persisted at `path`, `None` when there is no such file.
fn read_persisted(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let id = text.trim();
            anyhow::ensure!(
                valid(id),
                "{} holds {id:?}, not an appliance id (1-64 letters, digits, '.', '_' or '-'); \
                 remove it to generate a new one, or set appliance.id",
                path.display()
            );
            Ok(Some(id.to_string()))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

/// What `appliance.id` accepts.
fn valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_shipped_configuration_carries_a_shared_id() {
        for (file, text) in [
            (
                "config/edgemon.toml",
                include_str!("../config/edgemon.toml"),
            ),
            (
                "packaging/etc/edgemon.toml",
                include_str!("../packaging/etc/edgemon.toml"),
            ),
        ] {
            let table: toml::Table = toml::from_str(text).unwrap();
            assert!(
                table["appliance"].get("id").is_none(),
                "{file} ships an appliance id every box would share"
            );
        }
    }

    #[test]
    fn a_configured_id_wins() {
        let dir = tempfile::tempdir().unwrap();
        let id = resolve(Some("site-a"), Path::new("/nonexistent"), dir.path()).unwrap();
        assert_eq!(id, "site-a");
    }

    #[test]
    fn the_machine_id_gives_a_stable_id_that_does_not_reveal_it() {
        let dir = tempfile::tempdir().unwrap();
        let machine = dir.path().join("machine-id");
        std::fs::write(&machine, "0123456789abcdef0123456789abcdef\n").unwrap();
        let id = resolve(None, &machine, dir.path()).unwrap();
        assert!(id.starts_with("m-") && id.len() == 18, "{id}");
        assert!(!id.contains("0123456789abcdef"));
        assert!(valid(&id));
        assert_eq!(resolve(None, &machine, dir.path()).unwrap(), id);
        std::fs::write(&machine, "fedcba9876543210fedcba9876543210\n").unwrap();
        assert_ne!(resolve(None, &machine, dir.path()).unwrap(), id);
        assert!(!dir.path().join(ID_FILE).exists());
    }

    #[test]
    fn a_generated_id_is_kept_when_a_machine_id_appears_later() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let machine = dir.path().join("machine-id");
        let first = resolve(None, &machine, &data).unwrap();
        assert!(first.starts_with("g-"), "{first}");
        // A container given a machine id later (bind mount, systemd-machine-id-setup).
        std::fs::write(&machine, "0123456789abcdef0123456789abcdef\n").unwrap();
        assert_eq!(resolve(None, &machine, &data).unwrap(), first);
    }

    #[test]
    fn first_runs_at_once_agree_on_one_generated_id() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let machine = dir.path().join("missing");
            let barrier = std::sync::Barrier::new(8);
            let ids: Vec<String> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            resolve(None, &machine, &data).unwrap()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let kept = std::fs::read_to_string(data.join(ID_FILE)).unwrap();
            for id in &ids {
                assert_eq!(id, kept.trim(), "{ids:?}");
            }
        }
    }

    #[test]
    fn without_a_machine_id_one_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let machine = dir.path().join("missing");
        let first = resolve(None, &machine, &data).unwrap();
        assert!(first.starts_with("g-") && valid(&first), "{first}");
        assert_eq!(resolve(None, &machine, &data).unwrap(), first);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(resolve(None, &machine, other.path()).unwrap(), first);
        std::fs::write(data.join(ID_FILE), "not valid!\n").unwrap();
        let err = resolve(None, &machine, &data).unwrap_err().to_string();
        assert!(err.contains("not an appliance id"), "{err}");
    }
}
