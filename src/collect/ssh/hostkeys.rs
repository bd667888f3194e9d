//! Pinned SSH host keys: edgemon's own store, a file in OpenSSH known_hosts
//! format at `<data_dir>/host-keys` (plain host names, full public keys, so
//! `edgemon hosts export` is a valid known_hosts file).
//!
//! libssh2's own known_hosts check ignores `@revoked` lines, so the decision
//! is made here: a key listed `@revoked` (in the store or in the seed file) is
//! refused; a pinned key must match exactly; an unpinned host is looked up in
//! the seed known_hosts file (when configured) and pinned from it; otherwise
//! the policy decides (`strict` refuses, `accept-new` pins on first use).
//! A changed key is never accepted here: only [`HostKeyStore::trust`], called
//! by `edgemon hosts trust NAME`, replaces a pin.
//!
//! Hashed known_hosts names (`|1|salt|hash`, as `ssh-keygen -H` and
//! `HashKnownHosts yes` write them) are honoured in the seed and the store:
//! the hash is HMAC-SHA1 of the host's known_hosts name (`[addr]:port` unless
//! the port is 22) keyed by the salt, so a hashed seed entry that contradicts
//! the presented key blocks the host exactly like a plain one.
//! `@cert-authority` lines are skipped.
//!
//! Editing the store keeps its owner and mode: the new file is written under a
//! temporary name, given the old file's owner and mode (or, for a new store,
//! the owner of its directory and 0600), then renamed into place, so
//! `edgemon hosts trust` run as root leaves a store the daemon's user can read.
//!
//! This module knows nothing about sessions: it compares key blobs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::HostKeyPolicy;

/// Why a host key was refused, or the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    /// The host presented a key other than the pinned one.
    #[error(
        "host key of {host} CHANGED: pinned {pinned}, presented {presented}; if the change is legitimate, run `edgemon hosts trust {name}`"
    )]
    Changed {
        /// The host's configured name.
        name: String,
        /// The known_hosts name (`[addr]:port`).
        host: String,
        /// Fingerprint(s) pinned, comma-separated.
        pinned: String,
        /// Fingerprint presented.
        presented: String,
    },
    /// No pin, and the policy is strict.
    #[error(
        "host key of {host} ({presented}) is not pinned and the policy is strict; check the fingerprint, then run `edgemon hosts trust {name}` or seed collect.known_hosts"
    )]
    Unknown {
        /// The host's configured name.
        name: String,
        /// The known_hosts name.
        host: String,
        /// Fingerprint presented.
        presented: String,
    },
    /// The key is listed `@revoked`.
    #[error("host key of {host} ({presented}) is marked @revoked in {source_file}")]
    Revoked {
        /// The known_hosts name.
        host: String,
        /// Fingerprint presented.
        presented: String,
        /// The file holding the revocation.
        source_file: String,
    },
    /// The store or seed file could not be read or written.
    #[error("host key store {path}: {message}")]
    Store {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// What the store decided about an accepted key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The key matched its pin.
    Known,
    /// The key was pinned now, from the seed file.
    PinnedFromSeed,
    /// The key was pinned now, trusted on first use (`accept-new`).
    PinnedNew,
}

/// One known_hosts line we understand.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    revoked: bool,
    patterns: String,
    key_type: String,
    blob: Vec<u8>,
}

impl Line {
    fn matches_host(&self, host: &str) -> bool {
        self.revoked || host_matches(&self.patterns, host)
    }

    fn to_text(&self) -> String {
        let marker = if self.revoked { "@revoked " } else { "" };
        format!(
            "{marker}{} {} {}",
            self.patterns,
            self.key_type,
            STANDARD.encode(&self.blob)
        )
    }
}

#[derive(Debug, Default)]
struct State {
    pins: Vec<Line>,
    mtime: Option<SystemTime>,
}

/// The pinned host keys of this appliance; shared by every collection task.
#[derive(Debug)]
pub struct HostKeyStore {
    path: PathBuf,
    seed: Option<PathBuf>,
    state: Mutex<State>,
}

impl HostKeyStore {
    /// The store at `path`, seeded from the known_hosts file `seed` for hosts it has no pin for.
    pub fn new(path: PathBuf, seed: Option<PathBuf>) -> HostKeyStore {
        HostKeyStore {
            path,
            seed,
            state: Mutex::new(State::default()),
        }
    }

    /// Where the pins live.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks `blob` presented by `host` (`[addr]:port` or a bare name for port 22), configured
    /// as `name`; pins it when the policy and the seed allow.
    pub fn verify(
        &self,
        name: &str,
        host: &str,
        blob: &[u8],
        policy: HostKeyPolicy,
    ) -> Result<Verdict, HostKeyError> {
        let mut state = self.lock();
        self.reload(&mut state)?;
        let presented = fingerprint(blob);
        if state.pins.iter().any(|l| l.revoked && l.blob == blob) {
            return Err(self.revoked(host, presented, &self.path));
        }
        let pinned: Vec<&Line> = state
            .pins
            .iter()
            .filter(|l| !l.revoked && host_matches(&l.patterns, host))
            .collect();
        if pinned.iter().any(|l| l.blob == blob) {
            return Ok(Verdict::Known);
        }
        if !pinned.is_empty() {
            return Err(changed(name, host, &pinned, presented));
        }
        let mut verdict = Verdict::PinnedNew;
        if let Some(seed) = &self.seed {
            let lines = read_lines(seed)?;
            let relevant: Vec<&Line> = lines.iter().filter(|l| l.matches_host(host)).collect();
            if relevant.iter().any(|l| l.revoked && l.blob == blob) {
                return Err(self.revoked(host, presented, seed));
            }
            let seeded: Vec<&Line> = relevant.into_iter().filter(|l| !l.revoked).collect();
            if seeded.iter().any(|l| l.blob == blob) {
                verdict = Verdict::PinnedFromSeed;
            } else if !seeded.is_empty() {
                return Err(changed(name, host, &seeded, presented));
            }
        }
        if verdict == Verdict::PinnedNew && policy == HostKeyPolicy::Strict {
            return Err(HostKeyError::Unknown {
                name: name.to_string(),
                host: host.to_string(),
                presented,
            });
        }
        state.pins.push(pin_line(host, blob));
        self.save(&mut state)?;
        Ok(verdict)
    }

    /// Replaces every pin of `host` by `blob` (operator's decision); refuses a revoked key.
    /// Returns the fingerprints of the pins it replaced.
    pub fn trust(&self, host: &str, blob: &[u8]) -> Result<Vec<String>, HostKeyError> {
        let mut state = self.lock();
        self.reload(&mut state)?;
        if state.pins.iter().any(|l| l.revoked && l.blob == blob) {
            return Err(self.revoked(host, fingerprint(blob), &self.path));
        }
        let replaced = state
            .pins
            .iter()
            .filter(|l| !l.revoked && host_matches(&l.patterns, host))
            .map(|l| fingerprint(&l.blob))
            .collect();
        state
            .pins
            .retain(|l| l.revoked || !host_matches(&l.patterns, host));
        state.pins.push(pin_line(host, blob));
        self.save(&mut state)?;
        Ok(replaced)
    }

    /// The store as known_hosts text (what `edgemon hosts export` prints).
    pub fn export(&self) -> Result<String, HostKeyError> {
        let mut state = self.lock();
        self.reload(&mut state)?;
        Ok(state
            .pins
            .iter()
            .map(|l| l.to_text() + "\n")
            .collect::<String>())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves whole lines only; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn revoked(&self, host: &str, presented: String, file: &Path) -> HostKeyError {
        HostKeyError::Revoked {
            host: host.to_string(),
            presented,
            source_file: file.display().to_string(),
        }
    }

    /// Re-reads the file when it changed on disk (e.g. `edgemon hosts trust` while the daemon runs).
    fn reload(&self, state: &mut State) -> Result<(), HostKeyError> {
        let mtime = match std::fs::metadata(&self.path) {
            Ok(meta) => meta.modified().ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                state.pins.clear();
                state.mtime = None;
                return Ok(());
            }
            Err(e) => return Err(store_err(&self.path, e)),
        };
        if mtime.is_none() || mtime != state.mtime {
            state.pins = read_lines(&self.path)?;
            state.mtime = mtime;
        }
        Ok(())
    }

    /// Writes the whole file to a temporary name, gives it the old file's owner and mode (a
    /// new store: its directory's owner, mode 0600) and renames it into place.
    fn save(&self, state: &mut State) -> Result<(), HostKeyError> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir).map_err(|e| store_err(&self.path, e))?;
        let (uid, gid, mode) = match std::fs::metadata(&self.path) {
            Ok(meta) => (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let meta = std::fs::metadata(dir).map_err(|e| store_err(dir, e))?;
                (meta.uid(), meta.gid(), 0o600)
            }
            Err(e) => return Err(store_err(&self.path, e)),
        };
        let tmp = self
            .path
            .with_extension(format!("tmp.{}", std::process::id()));
        let mut text = String::from(
            "# edgemon pinned SSH host keys (known_hosts format). A changed key is replaced\n\
             # only by `edgemon hosts trust NAME`; add `@revoked` lines to refuse a key.\n",
        );
        for line in &state.pins {
            text.push_str(&line.to_text());
            text.push('\n');
        }
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            // Only root may give a file away (`hosts trust` run as root on the daemon's
            // store); anyone else keeps the file as their own, which is what they can use.
            let meta = file.metadata()?;
            if meta.uid() != uid || meta.gid() != gid {
                match std::os::unix::fs::fchown(&file, Some(uid), Some(gid)) {
                    Err(e) if e.kind() != std::io::ErrorKind::PermissionDenied => return Err(e),
                    _ => {}
                }
            }
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(store_err(&self.path, e));
        }
        state.mtime = std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| m.modified().ok());
        Ok(())
    }
}

fn changed(name: &str, host: &str, pinned: &[&Line], presented: String) -> HostKeyError {
    let pinned = pinned
        .iter()
        .map(|l| fingerprint(&l.blob))
        .collect::<Vec<_>>()
        .join(", ");
    HostKeyError::Changed {
        name: name.to_string(),
        host: host.to_string(),
        pinned,
        presented,
    }
}

fn store_err(path: &Path, e: std::io::Error) -> HostKeyError {
    HostKeyError::Store {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn pin_line(host: &str, blob: &[u8]) -> Line {
    Line {
        revoked: false,
        patterns: host.to_string(),
        key_type: key_type(blob).unwrap_or("unknown").to_string(),
        blob: blob.to_vec(),
    }
}

/// The name known_hosts uses for `address:port`: bare for 22, else `[address]:port`.
pub fn known_hosts_name(address: &str, port: u16) -> String {
    if port == 22 {
        address.to_string()
    } else {
        format!("[{address}]:{port}")
    }
}

/// `SHA256:` and unpadded base64 of the key blob, as `ssh-keygen -l` prints it.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// The key type named inside an SSH public key blob (its first string).
pub fn key_type(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4usize.checked_add(len)?)?).ok()
}

fn read_lines(path: &Path) -> Result<Vec<Line>, HostKeyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(store_err(path, e)),
    };
    Ok(text.lines().filter_map(parse_line).collect())
}

/// Parses one known_hosts line; `None` for comments, blanks, `@cert-authority` and anything
/// malformed (a hashed name that does not decode is malformed).
fn parse_line(raw: &str) -> Option<Line> {
    let mut fields = raw.split_whitespace();
    let mut first = fields.next()?;
    if first.starts_with('#') {
        return None;
    }
    let revoked = first == "@revoked";
    if revoked {
        first = fields.next()?;
    } else if first.starts_with('@') {
        return None;
    }
    if first.starts_with('|') {
        hashed_name(first)?;
    }
    let key_type = fields.next()?.to_string();
    let blob = STANDARD.decode(fields.next()?).ok()?;
    if self::key_type(&blob) != Some(key_type.as_str()) {
        return None;
    }
    Some(Line {
        revoked,
        patterns: first.to_string(),
        key_type,
        blob,
    })
}

/// OpenSSH pattern-list matching: a hashed name (`|1|salt|hash`), or comma-separated globs
/// (`*`, `?`) where `!` negates.
fn host_matches(patterns: &str, host: &str) -> bool {
    if patterns.starts_with('|') {
        return hashed_name(patterns).is_some_and(|(salt, hash)| hash_host(&salt, host) == hash);
    }
    let mut matched = false;
    for pattern in patterns.split(',') {
        if let Some(negated) = pattern.strip_prefix('!') {
            if glob(negated.as_bytes(), host.as_bytes()) {
                return false;
            }
        } else if glob(pattern.as_bytes(), host.as_bytes()) {
            matched = true;
        }
    }
    matched
}

/// The salt and the hash of an OpenSSH hashed name `|1|base64(salt)|base64(hash)`; `None` when
/// it is not one (OpenSSH knows only type 1: HMAC-SHA1, a 20-byte salt and hash).
fn hashed_name(field: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut parts = field.strip_prefix("|1|")?.split('|');
    let salt = STANDARD.decode(parts.next()?).ok()?;
    let hash = STANDARD.decode(parts.next()?).ok()?;
    (parts.next().is_none() && salt.len() == 20 && hash.len() == 20).then_some((salt, hash))
}

/// HMAC-SHA1 of `host` keyed by `salt`: what a hashed known_hosts name stores.
fn hash_host(salt: &[u8], host: &str) -> Vec<u8> {
    // HMAC accepts a key of any length; this cannot fail.
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(salt) else {
        return Vec::new();
    };
    // The ssh client lowercases the name it looks up; so do we.
    mac.update(host.to_ascii_lowercase().as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text
            .split_first()
            .is_some_and(|(t, tail)| t.eq_ignore_ascii_case(c) && glob(rest, tail)),
    }
}

#[cfg(test)]
#[path = "hostkeys_tests.rs"]
mod tests;
