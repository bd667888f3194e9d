//! A damaged buffer file: detected, set aside for salvage, replaced by a new buffer, and
//! what can still be read copied over.
//!
//! Storage that flips bits (a cheap SD card, a power cut on a disk that lies about fsync)
//! can leave pages of `buffer.sqlite` unreadable: SQLite then answers SQLITE_CORRUPT or
//! SQLITE_NOTADB ([`super::Error::Damaged`]). The writer checks at open (`PRAGMA
//! quick_check` on files up to [`CHECK_AT_OPEN_MAX`], which reads every page once; larger
//! files rely on the errors) and on every failing round. A damaged file is renamed
//! `<buffer>.damaged-<UTC time>` together with its WAL — never deleted, never reused — a
//! new buffer is created in its place (a new file, so a new random epoch), and the unsynced
//! samples still readable from the damaged file are copied into it ([`salvage`]).
//!
//! Salvaged samples are *new samples of the new epoch*: each gets the next sequence number
//! of its host in the new file, keeping its collection and receive times and values.
//! Identities stay unique because the new epoch is fresh (no central row can carry it) and
//! the new file numbers every row once; the old epoch's identities are never reused (the
//! damaged file is not synced from). What the damaged file could not give shows centrally
//! as the old epoch's `unsent`. A sample synced but whose mark sat on a damaged page would
//! be sent once more under the new epoch (a duplicate measurement, never an overwrite).
//!
//! The event is kept in the new buffer's `kv` (`buffer.damage`, typed [`Damage`]) for
//! `edgemon status`, the status page and `/api/status`; the caller (`app.rs`) logs it and
//! queues one operator mail in the writer's transaction.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::{Buffer, Error, NewMail, Result};

/// Largest file checked page by page at open.
pub const CHECK_AT_OPEN_MAX: u64 = 256 << 20;

/// A damaged buffer set aside, as the new buffer remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damage {
    /// When it was detected, Unix ms.
    pub detected_at: i64,
    /// Where the damaged file was moved (kept for salvage by hand).
    pub set_aside: String,
    /// What SQLite or the check said.
    pub error: String,
    /// The damaged file's epoch, if it could still be read.
    pub old_epoch: Option<i64>,
    /// Unsynced samples read from the damaged file and copied into this buffer.
    pub salvaged_samples: u64,
    /// Row ranges of the damaged file that could not be read (skipped).
    pub unreadable_ranges: u64,
}

/// True for the SQLite errors that mean the file itself is damaged.
pub(crate) fn is_damage(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// `PRAGMA quick_check` of an open connection: `Err` with SQLite's first complaint.
pub(crate) fn quick_check(conn: &Connection) -> std::result::Result<(), String> {
    match conn.query_row("PRAGMA quick_check(1)", [], |r| r.get::<_, String>(0)) {
        Ok(ok) if ok == "ok" => Ok(()),
        Ok(complaint) => Err(complaint),
        Err(error) => Err(error.to_string()),
    }
}

/// Renames the buffer at `path` and its WAL and WAL index to `<path>.damaged-<time>`
/// (`-wal`, `-shm` after it, so the set-aside file opens with its WAL). Returns the new path.
pub(crate) fn set_aside(path: &Path, now_ms: i64) -> Result<PathBuf> {
    let stamp = jiff::Timestamp::from_millisecond(now_ms)
        .map(|t| t.strftime("%Y%m%dT%H%M%S%.3fZ").to_string())
        .unwrap_or_else(|_| now_ms.to_string());
    let suffixed = |p: &Path, suffix: &str| {
        let mut s = p.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    let aside = suffixed(path, &format!(".damaged-{stamp}"));
    let fail = |e: std::io::Error, from: &Path| Error::Open {
        path: path.to_path_buf(),
        source: rusqlite::Error::InvalidPath(PathBuf::from(format!(
            "setting the damaged buffer aside: renaming {}: {e}",
            from.display()
        ))),
    };
    std::fs::rename(path, &aside).map_err(|e| fail(e, path))?;
    for suffix in ["-wal", "-shm"] {
        let from = suffixed(path, suffix);
        if from.exists() {
            std::fs::rename(&from, suffixed(&aside, suffix)).map_err(|e| fail(e, &from))?;
        }
    }
    Ok(aside)
}

/// A sample row as read from a damaged file: id, host id, sync state, the copied columns.
type RawRow = (i64, i64, i64, [rusqlite::types::Value; 18]);

/// An operator mail to queue with the salvage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMail {
    /// Stable Message-ID.
    pub message_id: String,
    /// One recipient.
    pub recipient: String,
    /// Subject line.
    pub subject: String,
    /// Plain text body.
    pub body: String,
}

/// One unsynced sample read from a damaged file.
struct Salvaged {
    host: String,
    address: String,
    values: [rusqlite::types::Value; 18],
}

/// Reads the unsynced samples still readable from the damaged file at `aside`, skipping
/// what cannot be read; returns them (oldest first), its epoch and the ranges skipped.
fn read_damaged(aside: &Path) -> (Vec<Salvaged>, Option<i64>, u64) {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let Ok(conn) = Connection::open_with_flags(aside, flags) else {
        return (Vec::new(), None, 1);
    };
    let epoch = conn
        .query_row("SELECT epoch FROM buffer_identity", [], |r| r.get(0))
        .ok();
    let mut hosts = std::collections::HashMap::new();
    if let Ok(mut stmt) = conn.prepare("SELECT id, name, address FROM hosts")
        && let Ok(rows) = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
    {
        for (id, name, address) in rows.flatten() {
            hosts.insert(id, (name, address));
        }
    }
    if hosts.is_empty() {
        return (Vec::new(), epoch, 1);
    }
    let max_id: i64 = conn
        .query_row("SELECT MAX(id) FROM samples", [], |r| r.get(0))
        .unwrap_or(i64::MAX / 2);
    let mut out = Vec::new();
    let mut skipped = 0u64;
    let mut after = 0i64;
    let mut step = 1i64;
    let Ok(mut stmt) = conn.prepare(
        "SELECT id, host_id, sync_state, collected_at, received_at, clock_skewed, cpu, cores,
                mem_used, mem_total, swap_used, swap_total, uptime_s, boot_time_s, load1, load5,
                load15, hostname, os, kernel, extras
         FROM samples WHERE id > ?1 ORDER BY id LIMIT 500",
    ) else {
        return (Vec::new(), epoch, 1);
    };
    while after < max_id {
        let chunk: rusqlite::Result<Vec<RawRow>> = stmt
            .query_map([after], |r| {
                let mut values: [rusqlite::types::Value; 18] =
                    std::array::from_fn(|_| rusqlite::types::Value::Null);
                for (i, v) in values.iter_mut().enumerate() {
                    *v = r.get(i + 3)?;
                }
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, values))
            })
            .and_then(|rows| rows.collect());
        match chunk {
            Ok(rows) if rows.is_empty() => break,
            Ok(rows) => {
                step = 1;
                for (id, host_id, state, values) in rows {
                    after = id;
                    let Some((host, address)) = hosts.get(&host_id) else {
                        continue;
                    };
                    if state != 0 {
                        continue;
                    }
                    out.push(Salvaged {
                        host: host.clone(),
                        address: address.clone(),
                        values,
                    });
                }
            }
            Err(_) => {
                // A damaged page under these ids: skip ahead, further each time.
                skipped += 1;
                after = after.saturating_add(step);
                step = (step * 2).min(1 << 16);
                if skipped > 100_000 {
                    break;
                }
            }
        }
    }
    (out, epoch, skipped)
}

impl Buffer {
    /// Copies the unsynced samples still readable from the damaged file at `aside` into
    /// this (new) buffer as new samples of its epoch (see the module doc), records the
    /// [`Damage`] in `kv` and queues `mails` (the operator mail, composed by the caller
    /// from the returned note), all in one transaction.
    pub fn salvage(
        &mut self,
        aside: &Path,
        error: &str,
        now_ms: i64,
        mails: impl FnOnce(&Damage) -> Vec<QueuedMail>,
    ) -> Result<Damage> {
        let (rows, old_epoch, unreadable_ranges) = read_damaged(aside);
        let damage = Damage {
            detected_at: now_ms,
            set_aside: aside.display().to_string(),
            error: error.to_string(),
            old_epoch,
            salvaged_samples: rows.len() as u64,
            unreadable_ranges,
        };
        let queued = mails(&damage);
        let path = self.path.clone();
        let e = move |source| super::classify(&path, "salvaging a damaged buffer", source);
        let note = serde_json::to_string(&damage).unwrap_or_default();
        self.with_reserve(|buffer| {
            let tx = buffer
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&e)?;
            for row in &rows {
                super::upsert_host(&tx, &row.host, &row.address).map_err(&e)?;
                let (host_id, seq): (i64, i64) = tx
                    .query_row(
                        "SELECT id, next_seq FROM hosts WHERE name = ?1",
                        [&row.host],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .map_err(&e)?;
                let v = &row.values;
                tx.prepare_cached(
                    "INSERT INTO samples (host_id, seq, collected_at, received_at, clock_skewed, cpu,
                         cores, mem_used, mem_total, swap_used, swap_total, uptime_s, boot_time_s,
                         load1, load5, load15, hostname, os, kernel, extras)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                             ?17, ?18, ?19, ?20)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        host_id, seq, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9],
                        v[10], v[11], v[12], v[13], v[14], v[15], v[16], v[17]
                    ])
                })
                .map_err(&e)?;
                tx.execute(
                    "UPDATE hosts SET next_seq = ?2 WHERE id = ?1",
                    params![host_id, seq + 1],
                )
                .map_err(&e)?;
            }
            tx.execute(
                "INSERT INTO kv (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![super::state::key::BUFFER_DAMAGE, note],
            )
            .map_err(&e)?;
            let round = super::RoundTx {
                tx,
                path: buffer.path.clone(),
                dict: &buffer.dict,
            };
            for mail in &queued {
                round.insert_outbox(&NewMail {
                    message_id: &mail.message_id,
                    recipient: &mail.recipient,
                    subject: &mail.subject,
                    body: &mail.body,
                    created_at: now_ms,
                })?;
            }
            round.tx.commit().map_err(&e)
        })?;
        Ok(damage)
    }

    /// The damaged buffer this one replaced, if any (kept until the buffer file is replaced).
    pub fn damage(&self) -> Result<Option<Damage>> {
        read_note(self.conn()).map_err(self.err("reading the damage note"))
    }

    /// Set by a round that met a damaged file: the daemon replaces the buffer before the next.
    pub fn damage_seen(&self) -> Option<&str> {
        self.damaged.as_deref()
    }

    /// Closes the file (the handle is left on an empty in-memory database), so that it can
    /// be set aside; the handle is only good for dropping afterwards.
    pub fn close(&mut self) {
        if let Ok(empty) = Connection::open_in_memory() {
            drop(std::mem::replace(&mut self.conn, empty));
        }
    }

    /// Records that the file answered with damage (SQLITE_CORRUPT or NOTADB).
    pub fn note_damage(&mut self, error: &Error) {
        if error.is_damaged() {
            self.damaged = Some(error.to_string());
        }
    }
}

/// The damage note of `conn`'s buffer.
pub(crate) fn read_note(conn: &Connection) -> rusqlite::Result<Option<Damage>> {
    let text: Option<String> = conn
        .query_row(
            "SELECT value FROM kv WHERE key = ?1",
            [super::state::key::BUFFER_DAMAGE],
            |r| r.get(0),
        )
        .optional()?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}
