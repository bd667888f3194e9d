//! Disk space: the reserve that keeps a full filesystem from wedging the
//! buffer, the free-space bound `buffer.min_free`, and the record of samples
//! that could not be stored.
//!
//! SQLite in WAL mode needs new space for every write, even a `DELETE` or the
//! `UPDATE` that marks rows synced, and a checkpoint must grow the main file
//! before the WAL can be reused. On a full filesystem nothing can be marked or
//! deleted, so nothing is ever freed. The buffer therefore holds a *reserve*:
//! a file of a few hundred KiB to a few MiB (`<buffer>.reserve`, sized from
//! the filesystem) that is deleted when a write meets a full disk
//! ([`Buffer::with_reserve`]) or when retention finds the filesystem nearly
//! full, and re-created once there is room again. Rounds are written only
//! while the reserve is in place, so the space it frees goes to marking,
//! drop records and deletes, never to more samples. The WAL is checkpointed
//! well before it could outgrow the reserve (`wal_autocheckpoint` is sized
//! from it), and deletes in a tight spot run in small chunks, each followed by
//! a checkpoint, so each needs little new space.
//!
//! Samples a round could not store are counted per host in memory and in a
//! small state file (`<buffer>.diskstate`, allocated in full while there is
//! room and then rewritten in place, which needs no new blocks), so
//! `edgemon status` can say "disk full" and how much was lost while SQLite
//! cannot take a single row. The next round that commits records them as
//! `drops` rows, consuming their sequence numbers, so the central gap view
//! explains them like any other drop.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::{Buffer, Error, Result};
use crate::config::BufferConfig;

/// Smallest size of the state file, allocated once; its JSON is padded with spaces to the
/// file's length. Larger fleets get a larger file ([`Disk::state_capacity`]).
const STATE_CAPACITY: usize = 16 * 1024;
/// Smallest and largest reserve.
const RESERVE_MIN: u64 = 256 * 1024;
const RESERVE_MAX: u64 = 8 * 1024 * 1024;
/// SQLite's page size in the buffer (the default).
pub(crate) const PAGE: u64 = 4096;

/// Size and free space of a filesystem, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FsSpace {
    /// Size of the filesystem.
    pub total: u64,
    /// Space an unprivileged writer may still use.
    pub avail: u64,
}

/// Size and free space of the filesystem holding `path`.
pub fn fs_space(path: &Path) -> std::io::Result<FsSpace> {
    let s = rustix::fs::statvfs(path)?;
    Ok(FsSpace {
        total: s.f_blocks.saturating_mul(s.f_frsize),
        avail: s.f_bavail.saturating_mul(s.f_frsize),
    })
}

/// The reserve for a filesystem of `total` bytes: a twelfth of it, between 256 KiB and 8 MiB.
/// A twelfth leaves room for a sync batch's marking (about 170 KiB for 500 samples, measured
/// on a full 3 MiB tmpfs) on the smallest disks; 8 MiB covers the default WAL checkpoint.
pub fn reserve_size(total: u64) -> u64 {
    (total / 12).clamp(RESERVE_MIN, RESERVE_MAX) / PAGE * PAGE
}

/// What the state file holds: whether rounds are being lost to a full disk, and what was lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskFullState {
    /// The last round could not be stored for lack of space.
    pub full: bool,
    /// Since when rounds are lost (Unix ms).
    pub since: Option<i64>,
    /// Samples collected but not stored, per host, not yet recorded as drops.
    pub unstored: BTreeMap<String, u64>,
    /// Why the last round was not stored.
    pub last_error: Option<String>,
}

impl DiskFullState {
    /// Samples not stored, all hosts.
    pub fn unstored_total(&self) -> u64 {
        self.unstored.values().sum()
    }
}

/// The buffer's view of its filesystem: reserve, state file and the unstored counts.
#[derive(Debug)]
pub(crate) struct Disk {
    dir: PathBuf,
    reserve: PathBuf,
    state_path: PathBuf,
    /// Size of the reserve, bytes.
    pub(crate) reserve_size: u64,
    /// Size the state file is allocated with while there is room: enough for every host's
    /// count ([`Buffer::prepare_round`] sizes it from the hosts), so that the per-host detail
    /// never has to be folded on a full disk.
    pub(crate) state_capacity: u64,
    /// The persisted state (loaded at open).
    pub(crate) state: DiskFullState,
}

impl Disk {
    /// The disk of the buffer at `path`; reads the state file if there is one.
    pub(crate) fn new(path: &Path) -> Disk {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let total = fs_space(&dir).map(|s| s.total).unwrap_or(0);
        let suffixed = |suffix: &str| {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            PathBuf::from(p)
        };
        let state_path = suffixed(".diskstate");
        let state = read_state(&state_path);
        let state_capacity = file_len(&state_path).max(STATE_CAPACITY as u64);
        Disk {
            dir,
            reserve: suffixed(".reserve"),
            state_path,
            reserve_size: reserve_size(total),
            state_capacity,
            state,
        }
    }

    /// Space on the buffer's filesystem now, if it can be read.
    pub(crate) fn space(&self) -> Option<FsSpace> {
        fs_space(&self.dir).ok()
    }

    /// True when the reserve file is in place at its full size.
    pub(crate) fn reserve_present(&self) -> bool {
        std::fs::metadata(&self.reserve).is_ok_and(|m| m.len() >= self.reserve_size)
    }

    /// True when the filesystem is so full that the reserve should make room for retention:
    /// below an eighth of the reserve (the WAL reuses its own space after a checkpoint, so
    /// deletes need little more). Well below the headroom the reserve is re-created with.
    pub(crate) fn tight(&self, space: FsSpace) -> bool {
        space.avail < self.reserve_size / 8
    }

    /// Free space as it would be with the reserve in place (negative when it could not be).
    pub(crate) fn free_with_reserve(&self, space: FsSpace) -> i64 {
        let missing = if self.reserve_present() {
            0
        } else {
            self.reserve_size
        };
        space.avail as i64 - missing as i64
    }

    /// Deletes the reserve; true if there was one.
    pub(crate) fn release_reserve(&self) -> bool {
        match std::fs::remove_file(&self.reserve) {
            Ok(()) => {
                tracing::warn!(
                    reserve = %self.reserve.display(),
                    bytes = self.reserve_size,
                    "the buffer's filesystem is full: released the disk reserve so that sync can mark and retention can free"
                );
                true
            }
            Err(_) => false,
        }
    }

    /// Puts the reserve (and the state file) in place if they are missing and the filesystem
    /// has room for them plus `headroom`; true when the reserve is in place afterwards.
    pub(crate) fn ensure_reserve(&self, headroom: u64) -> bool {
        let state_missing = self
            .state_capacity
            .saturating_sub(file_len(&self.state_path));
        if self.reserve_present() && state_missing == 0 {
            return true;
        }
        let Some(space) = self.space() else {
            return false;
        };
        let need = self.reserve_size + state_missing + headroom;
        if !self.reserve_present() && space.avail < need {
            return false;
        }
        if state_missing > 0
            && write_state(&self.state_path, &self.state, self.state_capacity).is_err()
        {
            return false;
        }
        if self.reserve_present() {
            return true;
        }
        match create_reserve(&self.reserve, self.reserve_size) {
            Ok(()) => {
                tracing::info!(reserve = %self.reserve.display(), bytes = self.reserve_size, "disk reserve in place");
                true
            }
            Err(error) => {
                tracing::warn!(reserve = %self.reserve.display(), %error, "cannot create the disk reserve yet");
                false
            }
        }
    }

    /// Writes the state file in place (best effort: on a full disk only an allocated file works).
    pub(crate) fn save_state(&self) {
        if let Err(error) = write_state(&self.state_path, &self.state, 0) {
            tracing::debug!(path = %self.state_path.display(), %error, "cannot write the disk state file");
        }
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// State file size for hosts whose names take `name_bytes` in all: each entry is its JSON
/// string (escapes at most double it) and a count, beside room for the error text.
pub(crate) fn state_capacity(hosts: u64, name_bytes: u64) -> u64 {
    let need = 2 * name_bytes + 32 * hosts + 8 * 1024;
    need.max(STATE_CAPACITY as u64).div_ceil(PAGE) * PAGE
}

fn read_state(path: &Path) -> DiskFullState {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(bytes.trim_ascii()).ok())
        .unwrap_or_default()
}

/// Writes `state` as JSON padded to the file's length, or to `at_least` (and at least
/// [`STATE_CAPACITY`]) when that is more: within the file's length it needs no new blocks.
fn write_state(path: &Path, state: &DiskFullState, at_least: u64) -> std::io::Result<()> {
    let capacity = file_len(path).max(at_least).max(STATE_CAPACITY as u64) as usize;
    let mut text = serde_json::to_vec(state).unwrap_or_default();
    if text.len() > capacity {
        // Very many hosts: keep the totals, fold the per-host detail.
        let folded = DiskFullState {
            unstored: BTreeMap::from([("(all hosts)".to_string(), state.unstored_total())]),
            ..state.clone()
        };
        text = serde_json::to_vec(&folded).unwrap_or_default();
    }
    text.resize(capacity, b' ');
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    file.write_all_at(&text, 0)?;
    file.sync_data()
}

/// Writes the reserve under a temporary name and renames it, so a half-written one never counts.
fn create_reserve(path: &Path, size: u64) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        let chunk = vec![0u8; 64 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            file.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Whether a round may be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Room {
    /// The reserve is in place: write.
    Ok,
    /// The filesystem has no room even after shedding: the round cannot be stored.
    Full {
        /// Free bytes on the filesystem.
        avail: u64,
        /// The reserve the buffer needs back before it writes rounds again.
        reserve: u64,
    },
}

/// What [`Buffer::count_unstored`] counted for one lost round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unstored {
    /// Samples of this round that were not stored.
    pub samples: u64,
    /// Their hosts, by name.
    pub hosts: Vec<String>,
    /// Samples not stored since the disk became full, all rounds.
    pub pending: u64,
}

impl Buffer {
    /// Before a round: sheds for `buffer.min_free` when the filesystem is below it, and
    /// makes sure the reserve is in place. [`Room::Full`] means the round must not be written.
    pub fn prepare_round(&mut self, config: &BufferConfig, now_ms: i64) -> Result<Room> {
        let Some(space) = self.disk.space() else {
            return Ok(Room::Ok);
        };
        let (hosts, name_bytes): (i64, i64) = self
            .conn()
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(name AS BLOB))), 0) FROM hosts",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.err("sizing the disk state file"))?;
        self.disk.state_capacity = self
            .disk
            .state_capacity
            .max(state_capacity(hosts as u64, name_bytes as u64));
        let min_free = self.min_free_bytes(config, space.total);
        let below = self.disk.free_with_reserve(space) < min_free as i64;
        let tight = self.disk.tight(space);
        if below || tight || self.disk.state.full || !self.disk.reserve_present() {
            let report = self.enforce_retention(config, now_ms)?;
            tracing::debug!(?report, "retention before a round, for buffer.min_free");
        }
        if self.disk.ensure_reserve(self.headroom(config)) {
            return Ok(Room::Ok);
        }
        Ok(Room::Full {
            avail: self.disk.space().map_or(0, |s| s.avail),
            reserve: self.disk.reserve_size,
        })
    }

    /// `buffer.min_free` in bytes, at least a quarter of the reserve: with `min_free = "0"`
    /// retention must still make room for the reserve and a round beside it.
    pub(crate) fn min_free_bytes(&self, config: &BufferConfig, total: u64) -> u64 {
        config.min_free.bytes(total).max(self.disk.reserve_size / 4)
    }

    /// Space to leave beside the reserve before re-creating it: half of what retention keeps
    /// free, so that the room retention makes always lets the reserve back in.
    pub(crate) fn headroom(&self, config: &BufferConfig) -> u64 {
        let total = self.disk.space().map_or(0, |s| s.total);
        self.min_free_bytes(config, total) / 2
    }

    /// Counts the samples of a round that could not be stored (per host, in the state file
    /// that `edgemon status` reads); the next committed round records them as drops.
    /// `disk_full` says the cause was a full disk (status then says so).
    pub fn count_unstored(
        &mut self,
        hosts_with_samples: &[&str],
        why: &str,
        disk_full: bool,
        now_ms: i64,
    ) -> Unstored {
        let state = &mut self.disk.state;
        state.full |= disk_full;
        if disk_full {
            state.since.get_or_insert(now_ms);
        }
        state.last_error = Some(why.to_string());
        for host in hosts_with_samples {
            *state.unstored.entry((*host).to_string()).or_default() += 1;
        }
        let unstored = Unstored {
            samples: hosts_with_samples.len() as u64,
            hosts: hosts_with_samples.iter().map(|h| h.to_string()).collect(),
            pending: state.unstored_total(),
        };
        self.disk.save_state();
        unstored
    }

    /// The disk-full state as the state file has it (for `edgemon status`).
    pub fn disk_state(&self) -> &DiskFullState {
        &self.disk.state
    }

    /// Runs `write`; when it meets a full disk, releases the reserve, checkpoints and tries
    /// once more. For the writes that free space or must not be lost: marking synced,
    /// recording drops, deleting, marking mail sent.
    pub fn with_reserve<T>(&mut self, write: impl FnMut(&mut Buffer) -> Result<T>) -> Result<T> {
        through_reserve(self, |b| b, write)
    }

    /// Copies the WAL into the main file and truncates it, opportunistically (see [`checkpoint`]).
    pub(crate) fn checkpoint(&self) {
        checkpoint(self.conn(), &self.path);
    }

    /// Gives free pages back to the filesystem (`auto_vacuum = INCREMENTAL`), in steps of
    /// `step` pages (0: all at once), each followed by a checkpoint.
    pub(crate) fn release_free_pages(&self, step: u32) {
        let incremental = self
            .conn()
            .query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0))
            .is_ok_and(|v| v == 2);
        if !incremental {
            self.checkpoint();
            return;
        }
        for _ in 0..100_000 {
            let free: i64 = self
                .conn()
                .query_row("PRAGMA freelist_count", [], |r| r.get(0))
                .unwrap_or(0);
            if free == 0 {
                break;
            }
            if let Err(error) = self
                .conn()
                .execute_batch(&format!("PRAGMA incremental_vacuum({step})"))
            {
                tracing::debug!(%error, "incremental vacuum stopped");
                break;
            }
            self.checkpoint();
            if step == 0 {
                break;
            }
        }
        self.checkpoint();
    }
}

/// Copies the WAL into the main file and truncates it, opportunistically: it never waits.
///
/// A `TRUNCATE` checkpoint takes the writer lock and then waits, through the busy
/// handler, for every reader to leave the WAL, blocking every writer meanwhile: with
/// an operator's `sqlite3 .backup` or a long status read that cost whole rounds. Here
/// the busy handler is off for the checkpoint, so when the writer lock is taken or a
/// reader still needs the WAL it degrades to a passive checkpoint of what it can copy
/// and returns at once (SQLite's documented behaviour); the next one finishes the job.
/// Invariant: no reader blocks the round's writer.
pub(crate) fn checkpoint(conn: &Connection, path: &Path) {
    if let Err(error) = conn.busy_timeout(std::time::Duration::ZERO) {
        tracing::debug!(%error, "cannot turn the busy handler off for a checkpoint");
        return;
    }
    let result: rusqlite::Result<(i64, i64, i64)> =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        });
    match result {
        Ok((1, _, _)) => tracing::debug!("checkpoint incomplete: a reader holds the WAL"),
        Ok(_) => {}
        Err(error) => tracing::debug!(%error, "checkpoint failed"),
    }
    if let Err(error) = conn.busy_timeout(super::BUSY_TIMEOUT) {
        tracing::warn!(buffer = %path.display(), %error, "cannot restore the busy timeout after a checkpoint");
    }
}

/// Brings the schema and the derived bookkeeping (`counts.rs`) up to date at open, on any
/// disk: a migration meeting a full filesystem first gets the reserve's space (released,
/// then checkpointed), then, while it still does not fit, synced rows are shed — samples
/// MySQL holds, synced collection errors, sent mail: nothing that is not already central
/// or delivered — in small chunks, each checkpointed and its pages given back, and the
/// migration is tried again. Generic: it knows no migration, only SQLITE_FULL, so every
/// future migration has the same way out. Invariant: a migration never needs space the
/// reserve and synced rows cannot give; only a disk full of unsynced data can stop one,
/// and that is an error naming the file, not a loop.
pub(crate) fn migrate_with_room(
    conn: &mut Connection,
    disk: &Disk,
    path: &Path,
) -> std::result::Result<(), super::migrations::MigrateError> {
    let pending = super::migrations::pending(conn)?;
    let mut released = false;
    let mut shed = 0u64;
    loop {
        let result = super::migrations::migrate(conn).and_then(|()| {
            super::counts::ensure(conn)
                .map(drop)
                .map_err(super::migrations::MigrateError::from)
        });
        match result {
            Err(error) if error.is_disk_full() => {
                checkpoint(conn, path);
                if !released {
                    released = true;
                    tracing::warn!(buffer = %path.display(), %error, "no room to bring the buffer schema up to date; using the disk reserve");
                    if disk.release_reserve() {
                        checkpoint(conn, path);
                        continue;
                    }
                }
                let n = shed_synced_for_migration(conn, path);
                if n == 0 {
                    tracing::error!(buffer = %path.display(), %error, shed, "no room to bring the buffer schema up to date even after shedding every synced row");
                    return Err(error);
                }
                shed += n;
            }
            Err(error) => return Err(error),
            Ok(()) => {
                if pending || shed > 0 {
                    tracing::info!(buffer = %path.display(), version = super::migrations::LATEST, synced_rows_shed = shed, reserve_used = released, "buffer schema up to date");
                }
                return Ok(());
            }
        }
    }
}

/// One step of making room for a migration: deletes up to a few thousand synced rows in
/// chunks, each followed by a checkpoint and (with incremental vacuum) giving the freed
/// pages back. Only columns of schema version 1 are used, so it works at any version.
/// The newest sample is never deleted, so its rowid is never reused. Returns rows deleted.
fn shed_synced_for_migration(conn: &Connection, path: &Path) -> u64 {
    const CHUNK: i64 = 200;
    let statements = [
        "DELETE FROM samples WHERE id IN (SELECT id FROM samples WHERE sync_state = 1
             AND id < (SELECT MAX(id) FROM samples) ORDER BY id LIMIT ?1)",
        "DELETE FROM collection_errors WHERE id IN (SELECT id FROM collection_errors
             WHERE sync_state = 1 AND id < (SELECT MAX(id) FROM collection_errors) ORDER BY id LIMIT ?1)",
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state = 'sent'
             AND id < (SELECT MAX(id) FROM outbox) ORDER BY id LIMIT ?1)",
    ];
    let mut total = 0u64;
    for sql in statements {
        for _ in 0..10 {
            match conn.execute(sql, [CHUNK]) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(error) => {
                    tracing::debug!(buffer = %path.display(), %error, "shedding synced rows for a migration stopped");
                    break;
                }
            }
            let _ = conn.execute_batch("PRAGMA incremental_vacuum");
            checkpoint(conn, path);
        }
        if total > 0 {
            break;
        }
    }
    if total > 0 {
        tracing::warn!(buffer = %path.display(), rows = total, "shed synced rows to make room for a buffer migration (they are in MySQL)");
    }
    total
}

/// [`Buffer::with_reserve`] for any role of the buffer: runs `write` on `role`; when it
/// meets a full disk, releases the reserve of `core(role)`, checkpoints and tries once more.
pub(crate) fn through_reserve<R, T>(
    role: &mut R,
    core: fn(&R) -> &Buffer,
    mut write: impl FnMut(&mut R) -> Result<T>,
) -> Result<T> {
    match write(role) {
        Err(Error::DiskFull { .. }) => {
            let buffer = core(role);
            buffer.disk.release_reserve();
            buffer.checkpoint();
            write(role)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_a_twelfth_of_the_filesystem_within_bounds() {
        assert_eq!(reserve_size(3 << 20), 256 * 1024);
        assert_eq!(reserve_size(12 << 20), 1 << 20);
        assert_eq!(reserve_size(1 << 40), 8 << 20);
        assert_eq!(reserve_size(0), 256 * 1024);
    }

    /// A fleet too large for the state file's first 16 KiB: after a restart while the disk was
    /// full, every sample a round could not store must still become a drop of its host (the
    /// per-host detail used to be folded into one "(all hosts)" entry that no host matched, and
    /// the next committed round cleared it without a record).
    #[test]
    fn unstored_samples_of_a_large_fleet_survive_a_restart_as_drops() {
        use crate::collect::outcome::HostOutcome;
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.sqlite");
        let config = BufferConfig {
            path: path.clone(),
            max_size: u64::MAX,
            max_unsynced_age: Duration::from_secs(10 * 3600),
            keep_synced: Duration::from_secs(3600),
            min_free: crate::config::MinFree::Bytes(0),
        };
        let hosts: Vec<String> = (0..800)
            .map(|i| format!("host-{i:04}.rack-17.site-stockholm.example.net"))
            .collect();
        let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
        let round = |buffer: &mut Buffer| {
            let now = super::super::now_ms();
            let outcomes: Vec<HostOutcome> = names
                .iter()
                .map(|h| HostOutcome {
                    host: h.to_string(),
                    address: format!("{h}:22"),
                    started_at_ms: now,
                    duration: Duration::ZERO,
                    result: Ok(crate::buffer::tests::report(5.0, now)),
                })
                .collect();
            buffer
                .record_round(&outcomes, Duration::from_secs(300), |_, _| Ok(()))
                .unwrap();
        };
        {
            let mut buffer = Buffer::open(&path).unwrap();
            round(&mut buffer);
            assert_eq!(
                buffer
                    .prepare_round(&config, super::super::now_ms())
                    .unwrap(),
                Room::Ok
            );
            let lost = buffer.count_unstored(&names, "disk full", true, super::super::now_ms());
            assert_eq!(lost.pending, 800);
        }
        let mut buffer = Buffer::open(&path).unwrap();
        assert_eq!(buffer.disk_state().unstored_total(), 800);
        round(&mut buffer);
        let (rows, total, hosts_with_drop): (i64, i64, i64) = buffer
            .conn()
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(count), 0), COUNT(DISTINCT host_id) FROM drops",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((rows, total, hosts_with_drop), (800, 800, 800));
    }

    #[test]
    fn the_state_file_is_rewritten_in_place_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.sqlite.diskstate");
        let mut state = DiskFullState {
            full: true,
            since: Some(5),
            ..Default::default()
        };
        state.unstored.insert("a".into(), 3);
        write_state(&path, &state, 0).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            STATE_CAPACITY as u64
        );
        assert_eq!(read_state(&path), state);
        let cleared = DiskFullState::default();
        write_state(&path, &cleared, 0).unwrap();
        assert_eq!(read_state(&path), cleared);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            STATE_CAPACITY as u64
        );
    }
}
