//! The buffer side of sync: read the oldest unsynced rows in order, mark rows
//! synced (only ever called after the central COMMIT), quarantine samples the
//! central database refused for their content.
//!
//! Sync state lives on every row (`sync_state` 0 unsynced, 1 synced,
//! 2 quarantined or rejected, 3 collided), never in a "last id sent" cursor: a cursor
//! loses a row whose lower id commits after a higher one. Nothing here talks
//! to MySQL; `sync` decides what to send and when to mark. All of it is [`SyncQueue`], the
//! sync loop's role of the buffer (its own connection on the same WAL file).

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use std::path::Path;

use super::{Buffer, Result, RetentionReport, SyncStatus};
use crate::config::BufferConfig;

/// One unsynced sample with everything the central database stores about it.
///
/// Its stable identity is (appliance id, buffer epoch, `host`, `seq`).
#[derive(Debug, Clone, PartialEq)]
pub struct SyncSample {
    /// Local row id (for marking).
    pub id: i64,
    /// The host's configured name.
    pub host: String,
    /// The host's address as shown to operators.
    pub address: String,
    /// Per-host sequence number.
    pub seq: i64,
    /// Agent clock, Unix ms.
    pub collected_at: i64,
    /// Appliance clock, Unix ms.
    pub received_at: i64,
    /// The agent clock was outside the allowed skew.
    pub clock_skewed: bool,
    /// Total CPU %.
    pub cpu: f64,
    /// Per-core CPU %, core 0 first; `Err` when the stored text does not parse.
    pub cores: std::result::Result<Vec<f64>, String>,
    /// Memory in use, bytes.
    pub mem_used: i64,
    /// Memory installed, bytes.
    pub mem_total: i64,
    /// Swap in use, bytes.
    pub swap_used: i64,
    /// Swap configured, bytes.
    pub swap_total: i64,
    /// Seconds since boot.
    pub uptime_s: i64,
    /// Boot time, Unix seconds.
    pub boot_time_s: Option<i64>,
    /// Load averages.
    pub load: [Option<f64>; 3],
    /// The host's own name.
    pub hostname: Option<String>,
    /// Operating system.
    pub os: Option<String>,
    /// Kernel version.
    pub kernel: Option<String>,
    /// JSON object of further report elements.
    pub extras: Option<String>,
    /// The metric family sections (empty: the report carried none, an agent of format 1.0).
    pub sections: Vec<crate::report::family::Section>,
}

/// The small tables synced beside samples, each row identified by (appliance id, buffer epoch,
/// local id); local ids come from AUTOINCREMENT and are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    /// `collection_errors`.
    CollectionErrors,
    /// `drops`: samples shed by retention or quarantined, so the central gap view can explain them.
    Drops,
    /// `alert_events`.
    AlertEvents,
}

impl Journal {
    /// Every journal, in the order a pass syncs them.
    pub const ALL: [Journal; 3] = [
        Journal::Drops,
        Journal::CollectionErrors,
        Journal::AlertEvents,
    ];

    /// The table's name, locally and centrally.
    pub fn table(self) -> &'static str {
        match self {
            Journal::CollectionErrors => "collection_errors",
            Journal::Drops => "drops",
            Journal::AlertEvents => "alert_events",
        }
    }
}

/// One unsynced row of a [`Journal`].
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRow {
    /// Local row id: the central identity together with the appliance id and the epoch.
    pub id: i64,
    /// The host's configured name.
    pub host: String,
    /// The host's address as shown to operators.
    pub address: String,
    /// The columns of the row's table.
    pub fields: JournalFields,
}

/// The columns particular to each journal.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalFields {
    /// A failed collection attempt.
    CollectionError {
        /// Attempt time, Unix ms.
        at: i64,
        /// Error class (`timeout`, ...).
        class: String,
        /// Message.
        message: String,
    },
    /// Samples dropped before they reached MySQL.
    Drop {
        /// First dropped sequence number.
        first_seq: i64,
        /// Last dropped sequence number.
        last_seq: i64,
        /// Samples dropped in that range.
        count: i64,
        /// Why.
        reason: String,
        /// When, Unix ms.
        at: i64,
    },
    /// An alert transition.
    AlertEvent {
        /// Rule name.
        rule: String,
        /// firing | reminder | resolved | flapping | stale.
        kind: String,
        /// Value that caused it.
        value: Option<f64>,
        /// Limit in force.
        threshold: Option<f64>,
        /// When, Unix ms.
        at: i64,
        /// Text of the event.
        message: String,
    },
}

/// Sync state of a row that MySQL refused for its content.
const REJECTED: i64 = 2;
/// Sync state of a row whose central identity holds different values (see `collisions`).
pub const COLLIDED: i64 = 3;

/// What the buffer knows of one host's sequence, sent with every batch for the central
/// watermarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostMark {
    /// The host's first sequence number under this buffer's epoch.
    pub first_seq: i64,
    /// The newest sequence number the buffer gave the host (0: none yet).
    pub last_seq: i64,
}

/// One host of the buffer with its [`HostMark`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedHost {
    /// Configured name.
    pub name: String,
    /// Address as shown to operators.
    pub address: String,
    /// Its sequence bounds.
    pub mark: HostMark,
}

/// A row whose identity the central database already holds with different values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    /// The buffer's row id.
    pub local_id: i64,
    /// The host's name.
    pub host: String,
    /// The sample's sequence number (samples only).
    pub seq: Option<i64>,
    /// Checksum of the row as the buffer holds it.
    pub local_checksum: u64,
    /// Checksum of the central row (`None`: a row without one).
    pub central_checksum: Option<u64>,
}

/// The sync loop's handle on the buffer: reads the queue in order, marks rows synced (only
/// after the central COMMIT), quarantines, records collisions, re-queues what MySQL lost,
/// runs retention and records the outcome of each pass ([`SyncStatus`]).
pub struct SyncQueue {
    core: Buffer,
}

impl SyncQueue {
    /// Opens (creating and migrating if needed) the buffer at `path` for the sync loop.
    pub fn open(path: &Path) -> Result<SyncQueue> {
        Ok(SyncQueue {
            core: Buffer::open(path)?,
        })
    }

    /// The SQLite file.
    pub fn path(&self) -> &Path {
        self.core.path()
    }

    /// This buffer file's epoch: drawn at random when the file was created (or migrated to
    /// schema 2), part of every central identity.
    pub fn epoch(&self) -> Result<i64> {
        self.core.read_epoch()
    }

    /// Runs `write`; on a full disk releases the reserve, checkpoints and tries once more
    /// (see [`Buffer::with_reserve`]). Marking synced goes through it: rows committed
    /// centrally must be marked, full disk or not.
    pub fn with_reserve<T>(&mut self, write: impl FnMut(&mut SyncQueue) -> Result<T>) -> Result<T> {
        super::disk::through_reserve(self, |q| &q.core, write)
    }

    /// One retention pass (see `retention.rs`), run by the sync loop every cycle.
    pub fn enforce_retention(
        &mut self,
        config: &BufferConfig,
        now_ms: i64,
    ) -> Result<RetentionReport> {
        if let Err(error) = self.core.check_clock(now_ms) {
            tracing::debug!(%error, "cannot check the wall clock this time");
        }
        self.core.enforce_retention(config, now_ms)
    }

    /// Records the outcome of a pass: `Ok` at `now_ms`, or the failure's message.
    pub fn note_pass(&self, outcome: Result<(), &str>, now_ms: i64) -> Result<()> {
        match outcome {
            Ok(()) => self.core.note_sync_success(now_ms),
            Err(message) => self.core.note_sync_failure(message),
        }
    }

    /// Records each listed central server's health after a pass, for `edgemon status`.
    pub fn note_servers(&self, health: &str) -> Result<()> {
        self.core.note_sync_servers(health)
    }

    /// Records the rows per second of a pass that sent samples (shown by `edgemon status`).
    pub fn note_drain_rate(&self, rows_per_s: f64) -> Result<()> {
        self.core.note_drain_rate(rows_per_s)
    }

    /// Records that `sync.schedule` holds sync until `opens_at` (Unix ms), or (`None`) not.
    pub fn note_paused(&self, opens_at: Option<i64>) -> Result<()> {
        self.core.note_paused(opens_at)
    }

    /// Where live batches opened a new stream of a host's samples ahead of its backlog, per
    /// host name, ascending. Each stream (from one split to the next) reaches MySQL in
    /// ascending order, so after a central restore the part of it MySQL lacks is its top: the
    /// re-queue on a new connection checks the newest central seq below each split.
    pub fn stream_splits(&self) -> Result<std::collections::BTreeMap<String, Vec<i64>>> {
        self.core.stream_splits()
    }

    /// Records new stream splits (host, first seq of the live batch): call before sending it.
    pub fn add_stream_splits(&self, new: &[(String, i64)]) -> Result<()> {
        let mut splits = self.core.stream_splits()?;
        for (host, seq) in new {
            let list = splits.entry(host.clone()).or_default();
            if let Err(at) = list.binary_search(seq) {
                list.insert(at, *seq);
            }
        }
        self.core.set_stream_splits(&splits)
    }

    /// Forgets splits at or below the lowest seq the buffer still holds for their host (nothing
    /// below them is left to re-queue) and those of hosts the buffer no longer holds.
    pub fn prune_stream_splits(&self) -> Result<()> {
        let mut splits = self.core.stream_splits()?;
        if splits.is_empty() {
            return Ok(());
        }
        let lowest = self.lowest_seqs()?;
        let before = splits.values().map(Vec::len).sum::<usize>();
        splits.retain(|host, list| {
            let low = lowest.get(host).copied().unwrap_or(i64::MAX);
            list.retain(|&s| s > low);
            !list.is_empty()
        });
        if splits.values().map(Vec::len).sum::<usize>() != before {
            self.core.set_stream_splits(&splits)?;
        }
        Ok(())
    }

    /// The outcome of the passes so far, as [`SyncQueue::note_pass`] recorded it.
    pub fn sync_status(&self) -> Result<SyncStatus> {
        self.core.sync_status()
    }

    fn conn(&self) -> &rusqlite::Connection {
        self.core.conn()
    }

    fn conn_mut(&mut self) -> &mut rusqlite::Connection {
        self.core.conn_mut()
    }

    /// Puts synced samples back in the queue that the central database no longer holds: those
    /// of this epoch above the newest sequence number `present` there for their host (a host
    /// missing from `present` has none). Run on every new connection, so a central database
    /// restored from an older backup gets back what the buffer still keeps. Returns the count
    /// per host re-queued.
    pub fn requeue_missing_samples(
        &mut self,
        present: &std::collections::HashMap<String, i64>,
    ) -> Result<Vec<(String, u64)>> {
        let hosts = self.marked_hosts()?;
        let path = self.core.path().to_path_buf();
        let e = move |source| super::classify(&path, "re-queueing samples", source);
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        let mut requeued = Vec::new();
        for host in hosts {
            let above = present
                .get(host.name.trim_end_matches(' '))
                .copied()
                .unwrap_or(0)
                .max(host.mark.first_seq - 1);
            let n = tx
                .execute(
                    "UPDATE samples SET sync_state = 0, synced_at = NULL
                     WHERE host_id = (SELECT id FROM hosts WHERE name = ?1) AND sync_state = 1 AND seq > ?2",
                    params![host.name, above],
                )
                .map_err(&e)?;
            if n > 0 {
                requeued.push((host.name, n as u64));
            }
        }
        tx.commit().map_err(&e)?;
        Ok(requeued)
    }

    /// Like [`SyncQueue::requeue_missing_samples`] for a journal: synced rows of this epoch above
    /// `present`, the newest local id the central table holds for this epoch.
    pub fn requeue_missing_journal(&mut self, journal: Journal, present: i64) -> Result<u64> {
        let table = journal.table();
        let floor: i64 = self
            .conn()
            .query_row(
                &format!("SELECT {table}_floor FROM buffer_identity WHERE id = 1"),
                [],
                |r| r.get(0),
            )
            .map_err(self.core.err("reading the journal floor"))?;
        self.core
            .conn()
            .execute(
                &format!("UPDATE {table} SET sync_state = 0 WHERE sync_state = 1 AND id > ?1"),
                [present.max(floor)],
            )
            .map(|n| n as u64)
            .map_err(self.core.err("re-queueing journal rows"))
    }

    /// Every host of the buffer with its sequence bounds under this epoch.
    pub fn marked_hosts(&self) -> Result<Vec<MarkedHost>> {
        let e = self.core.err("reading host sequence bounds");
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT name, address, epoch_first_seq, next_seq - 1 FROM hosts ORDER BY name",
            )
            .map_err(&e)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(MarkedHost {
                    name: r.get(0)?,
                    address: r.get(1)?,
                    mark: HostMark {
                        first_seq: r.get(2)?,
                        last_seq: r.get(3)?,
                    },
                })
            })
            .map_err(&e)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&e)
    }

    /// Records rows of `table` (`samples` or a [`Journal`]'s table) whose central identity holds
    /// different values: they leave the queue (state 3) and stay in the buffer, a `collisions`
    /// row keeps both checksums, and a colliding sample also gets a `drops` row (reason
    /// `collision: ...`) so the central completeness view explains its absence.
    pub fn record_collisions(
        &mut self,
        table: &'static str,
        collisions: &[Collision],
        epoch: i64,
        now_ms: i64,
    ) -> Result<()> {
        let path = self.core.path().to_path_buf();
        let e = move |source| super::classify(&path, "recording collisions", source);
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        for c in collisions {
            let central = c
                .central_checksum
                .map_or_else(|| "none".to_string(), |v| format!("{v:016x}"));
            tx.execute(
                "INSERT INTO collisions (kind, local_id, host, seq, at, local_checksum, central_checksum)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (kind, local_id) DO NOTHING",
                params![
                    table,
                    c.local_id,
                    c.host,
                    c.seq,
                    now_ms,
                    format!("{:016x}", c.local_checksum),
                    c.central_checksum.map(|v| format!("{v:016x}"))
                ],
            )
            .map_err(&e)?;
            tx.execute(
                &format!("UPDATE {table} SET sync_state = ?2 WHERE id = ?1"),
                params![c.local_id, COLLIDED],
            )
            .map_err(&e)?;
            if table == "samples" {
                let reason = format!(
                    "collision: the central row of epoch {epoch} holds other values (checksum {central}, this buffer's {:016x}); kept in the buffer's collisions table",
                    c.local_checksum
                );
                tx.execute(
                    "INSERT INTO drops (host_id, first_seq, last_seq, count, reason, at)
                     SELECT host_id, seq, seq, 1, ?2, ?3 FROM samples WHERE id = ?1",
                    params![c.local_id, reason, now_ms],
                )
                .map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)
    }

    /// The oldest `limit` unsynced samples, in buffer order (row id), with host and per-core values.
    pub fn unsynced_samples(&self, limit: usize) -> Result<Vec<SyncSample>> {
        self.unsynced_samples_from(0, limit)
    }

    /// The `limit` unsynced samples of lowest row id at or above `from_id`, in buffer order:
    /// the live rows a pass sends before the backfill. One range of the partial index
    /// `samples_unsynced`, however large the backlog below `from_id`.
    pub fn unsynced_samples_from(&self, from_id: i64, limit: usize) -> Result<Vec<SyncSample>> {
        let rows = read_unsynced(self.conn(), from_id, limit)
            .map_err(self.core.err("reading unsynced samples"))?;
        Ok(self.with_sections(rows))
    }

    /// The samples with their sections decoded (a blob that does not decode is logged and
    /// read as none: only the buffer writes them).
    fn with_sections(&self, rows: Vec<(SyncSample, Option<Vec<u8>>)>) -> Vec<SyncSample> {
        rows.into_iter()
            .map(|(mut sample, blob)| {
                sample.sections =
                    self.core
                        .sections_or_log(blob.as_deref(), &sample.host, sample.seq);
                sample
            })
            .collect()
    }

    /// [`SyncQueue::unsynced_samples_from`] for a batch about to be sent: in the same write
    /// transaction, records the batch's row-id range as in flight (`kv`), so that retention,
    /// on whichever connection, never sheds one of its rows while MySQL may be committing it.
    /// Each claim replaces the previous one: a batch is marked (or abandoned) before the next
    /// is claimed. Call it through [`SyncQueue::with_reserve`].
    pub fn claim_unsynced(&mut self, from_id: i64, limit: usize) -> Result<Vec<SyncSample>> {
        let path = self.core.path().to_path_buf();
        let e = move |source| super::classify(&path, "claiming a batch of samples", source);
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        let rows = read_unsynced(&tx, from_id, limit).map_err(&e)?;
        let (lo, hi) = match (rows.first(), rows.last()) {
            (Some((first, _)), Some((last, _))) => (first.id, last.id),
            _ => (1, 0),
        };
        tx.execute(
            "INSERT INTO kv (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![super::state::key::SYNC_IN_FLIGHT, format!("{lo},{hi}")],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(self.with_sections(rows))
    }
}

/// The row-id range of the samples batch in flight (`lo > hi`: none), as claimed by
/// [`SyncQueue::claim_unsynced`]. Retention reads it inside its own write transaction.
pub(crate) fn in_flight(conn: &rusqlite::Connection) -> rusqlite::Result<(i64, i64)> {
    let text: Option<String> = conn
        .query_row(
            "SELECT value FROM kv WHERE key = ?1",
            [super::state::key::SYNC_IN_FLIGHT],
            |r| r.get(0),
        )
        .optional()?;
    let parsed = text.as_deref().and_then(|t| {
        let (lo, hi) = t.split_once(',')?;
        Some((lo.trim().parse().ok()?, hi.trim().parse().ok()?))
    });
    Ok(parsed.unwrap_or((1, 0)))
}

/// The `limit` unsynced samples of lowest row id at or above `from_id`.
/// Each row comes with its sections blob, decoded by [`SyncQueue::with_sections`] once the
/// read (or the claim's transaction) is over.
fn read_unsynced(
    conn: &rusqlite::Connection,
    from_id: i64,
    limit: usize,
) -> rusqlite::Result<Vec<(SyncSample, Option<Vec<u8>>)>> {
    {
        let mut stmt = conn
            .prepare_cached(
                "SELECT s.id, h.name, h.address, s.seq, s.collected_at, s.received_at, s.clock_skewed,
                        s.cpu, s.cores, s.mem_used, s.mem_total, s.swap_used, s.swap_total, s.uptime_s,
                        s.boot_time_s, s.load1, s.load5, s.load15, s.hostname, s.os, s.kernel, s.extras,
                        s.sections
                 FROM samples s JOIN hosts h ON h.id = s.host_id
                 WHERE s.sync_state = 0 AND s.id >= ?2 ORDER BY s.id LIMIT ?1",
            )?;
        let rows = stmt.query_map(params![limit as i64, from_id], |r| {
            let blob: Option<Vec<u8>> = r.get(22)?;
            let sample = SyncSample {
                id: r.get(0)?,
                host: r.get(1)?,
                address: r.get(2)?,
                seq: r.get(3)?,
                collected_at: r.get(4)?,
                received_at: r.get(5)?,
                clock_skewed: r.get(6)?,
                cpu: r.get(7)?,
                cores: parse_cores(&r.get::<_, String>(8)?),
                mem_used: r.get(9)?,
                mem_total: r.get(10)?,
                swap_used: r.get(11)?,
                swap_total: r.get(12)?,
                uptime_s: r.get(13)?,
                boot_time_s: r.get(14)?,
                load: [r.get(15)?, r.get(16)?, r.get(17)?],
                hostname: r.get(18)?,
                os: r.get(19)?,
                kernel: r.get(20)?,
                extras: r.get(21)?,
                sections: Vec::new(),
            };
            Ok((sample, blob))
        })?;
        rows.collect::<rusqlite::Result<_>>()
    }
}

impl SyncQueue {
    /// The row id of the newest unsynced sample (`None`: the queue is empty). One step at the
    /// end of the partial index `samples_unsynced`.
    pub fn newest_unsynced_id(&self) -> Result<Option<i64>> {
        self.conn()
            .query_row(
                "SELECT id FROM samples WHERE sync_state = 0 ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.core.err("reading the newest unsynced sample"))
    }

    /// The lowest row id of the newest run of unsynced samples received at or after
    /// `cutoff_ms` (the live rounds), walking the queue from its newest end and stopping at
    /// the first older row: it reads the live rows only, never the backlog below them.
    /// `None` when the newest unsynced sample is older than `cutoff_ms`.
    pub fn live_floor(&self, cutoff_ms: i64) -> Result<Option<i64>> {
        let e = self.core.err("finding the live samples");
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT id, received_at FROM samples WHERE sync_state = 0 ORDER BY id DESC",
            )
            .map_err(&e)?;
        let mut rows = stmt.query([]).map_err(&e)?;
        let mut floor = None;
        while let Some(row) = rows.next().map_err(&e)? {
            let (id, received_at): (i64, i64) = (row.get(0).map_err(&e)?, row.get(1).map_err(&e)?);
            if received_at < cutoff_ms {
                break;
            }
            floor = Some(id);
        }
        Ok(floor)
    }

    /// Whether `host`'s sample `seq` is in the queue (unsynced): a live batch starting at
    /// `seq + 1` then opens a new stream of that host (see [`SyncQueue::add_stream_splits`]).
    pub fn is_unsynced(&self, host: &str, seq: i64) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM samples WHERE host_id = (SELECT id FROM hosts WHERE name = ?1)
                                AND seq = ?2 AND sync_state = 0)",
                params![host, seq],
                |r| r.get(0),
            )
            .map_err(self.core.err("reading a sample's sync state"))
    }

    /// Puts back in the queue `host`'s synced samples with `above < seq < below`: the part of
    /// a stream (see [`SyncQueue::add_stream_splits`]) that the central database no longer holds.
    pub fn requeue_missing_between(&mut self, host: &str, above: i64, below: i64) -> Result<u64> {
        self.core
            .conn()
            .execute(
                "UPDATE samples SET sync_state = 0, synced_at = NULL
                 WHERE host_id = (SELECT id FROM hosts WHERE name = ?1) AND sync_state = 1
                   AND seq > ?2 AND seq < ?3",
                params![host, above, below],
            )
            .map(|n| n as u64)
            .map_err(self.core.err("re-queueing samples"))
    }

    /// The lowest sequence number the buffer still holds per host name.
    pub fn lowest_seqs(&self) -> Result<std::collections::HashMap<String, i64>> {
        let e = self.core.err("reading the lowest sequence numbers");
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT h.name, (SELECT MIN(s.seq) FROM samples s WHERE s.host_id = h.id) FROM hosts h",
            )
            .map_err(&e)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
            })
            .map_err(&e)?;
        let mut out = std::collections::HashMap::new();
        for row in rows {
            let (name, seq) = row.map_err(&e)?;
            if let Some(seq) = seq {
                out.insert(name, seq);
            }
        }
        Ok(out)
    }

    /// Unsynced samples and the receive time of the oldest (Unix ms).
    pub fn unsynced_depth(&self) -> Result<(u64, Option<i64>)> {
        self.core.unsynced_depth()
    }

    /// Marks samples synced, each named by its identity (host name, seq), never by row id.
    /// Call only after the central COMMIT that holds them.
    pub fn mark_samples_synced<S: AsRef<str>>(
        &mut self,
        samples: &[(S, i64)],
        now_ms: i64,
    ) -> Result<()> {
        let path = self.core.path().to_path_buf();
        let e = move |source| super::classify(&path, "marking samples synced", source);
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE samples SET sync_state = 1, synced_at = ?3
                     WHERE host_id = (SELECT id FROM hosts WHERE name = ?1) AND seq = ?2
                       AND sync_state IN (0, 1)",
                )
                .map_err(&e)?;
            for (host, seq) in samples {
                stmt.execute(params![host.as_ref(), seq, now_ms])
                    .map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)
    }

    /// Quarantines samples MySQL refused for their content: they leave the queue, keep
    /// MySQL's message, and a `drops` row (reason `quarantined: ...`) tells the central
    /// database why their sequence numbers are missing.
    pub fn quarantine_samples(&mut self, rejected: &[(i64, String)], now_ms: i64) -> Result<()> {
        let path = self.core.path().to_path_buf();
        let e = move |source| super::classify(&path, "quarantining samples", source);
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        for (id, reason) in rejected {
            let reason = format!("quarantined: {reason}");
            tx.execute(
                "INSERT INTO quarantine (sample_id, at, reason) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sample_id) DO UPDATE SET at = excluded.at, reason = excluded.reason",
                params![id, now_ms, reason],
            )
            .map_err(&e)?;
            tx.execute(
                "UPDATE samples SET sync_state = 2 WHERE id = ?1",
                params![id],
            )
            .map_err(&e)?;
            tx.execute(
                "INSERT INTO drops (host_id, first_seq, last_seq, count, reason, at)
                 SELECT host_id, seq, seq, 1, ?2, ?3 FROM samples WHERE id = ?1",
                params![id, reason, now_ms],
            )
            .map_err(&e)?;
        }
        tx.commit().map_err(&e)
    }

    /// The oldest `limit` unsynced rows of `journal`, in row-id order.
    pub fn unsynced_journal(&self, journal: Journal, limit: usize) -> Result<Vec<JournalRow>> {
        let e = self.core.err("reading unsynced journal rows");
        let sql = match journal {
            Journal::CollectionErrors => {
                "SELECT j.id, h.name, h.address, j.at, j.class, j.message
                 FROM collection_errors j JOIN hosts h ON h.id = j.host_id
                 WHERE j.sync_state = 0 ORDER BY j.id LIMIT ?1"
            }
            Journal::Drops => {
                "SELECT j.id, h.name, h.address, j.first_seq, j.last_seq, j.count, j.reason, j.at
                 FROM drops j JOIN hosts h ON h.id = j.host_id
                 WHERE j.sync_state = 0 ORDER BY j.id LIMIT ?1"
            }
            Journal::AlertEvents => {
                "SELECT j.id, h.name, h.address, j.rule, j.kind, j.value, j.threshold, j.at, j.message
                 FROM alert_events j JOIN hosts h ON h.id = j.host_id
                 WHERE j.sync_state = 0 ORDER BY j.id LIMIT ?1"
            }
        };
        let mut stmt = self.core.conn().prepare_cached(sql).map_err(&e)?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                let fields = match journal {
                    Journal::CollectionErrors => JournalFields::CollectionError {
                        at: r.get(3)?,
                        class: r.get(4)?,
                        message: r.get(5)?,
                    },
                    Journal::Drops => JournalFields::Drop {
                        first_seq: r.get(3)?,
                        last_seq: r.get(4)?,
                        count: r.get(5)?,
                        reason: r.get(6)?,
                        at: r.get(7)?,
                    },
                    Journal::AlertEvents => JournalFields::AlertEvent {
                        rule: r.get(3)?,
                        kind: r.get(4)?,
                        value: r.get(5)?,
                        threshold: r.get(6)?,
                        at: r.get(7)?,
                        message: r.get(8)?,
                    },
                };
                Ok(JournalRow {
                    id: r.get(0)?,
                    host: r.get(1)?,
                    address: r.get(2)?,
                    fields,
                })
            })
            .map_err(&e)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&e)
    }

    /// Marks journal rows synced. Call only after the central COMMIT that holds them.
    pub fn mark_journal_synced(&mut self, journal: Journal, ids: &[i64]) -> Result<()> {
        self.set_state(journal.table(), ids, 1, None, "marking journal rows synced")
    }

    /// Takes journal rows MySQL refused for their content out of the queue (state 2);
    /// the caller logs MySQL's message.
    pub fn reject_journal(&mut self, journal: Journal, ids: &[i64]) -> Result<()> {
        self.set_state(
            journal.table(),
            ids,
            REJECTED,
            None,
            "rejecting journal rows",
        )
    }

    fn set_state(
        &mut self,
        table: &'static str,
        ids: &[i64],
        state: i64,
        synced_at: Option<i64>,
        doing: &'static str,
    ) -> Result<()> {
        let path = self.core.path().to_path_buf();
        let e = move |source| super::classify(&path, doing, source);
        // IMMEDIATE: the collector writes through another connection; taking the write lock
        // up front lets the busy timeout wait for it instead of failing on upgrade.
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        {
            let sql = if synced_at.is_some() {
                format!("UPDATE {table} SET sync_state = ?2, synced_at = ?3 WHERE id = ?1")
            } else {
                format!("UPDATE {table} SET sync_state = ?2 WHERE id = ?1")
            };
            let mut stmt = tx.prepare_cached(&sql).map_err(&e)?;
            for id in ids {
                match synced_at {
                    Some(at) => stmt.execute(params![id, state, at]),
                    None => stmt.execute(params![id, state]),
                }
                .map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)
    }
}

/// Parses the buffer's comma-separated per-core values.
fn parse_cores(text: &str) -> std::result::Result<Vec<f64>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .map_err(|_| format!("per-core value {v:?} in the buffer is not a number"))
        })
        .collect()
}

impl Buffer {
    /// Unsynced samples and the receive time of the oldest (Unix ms); retention reads it too.
    pub(crate) fn unsynced_depth(&self) -> Result<(u64, Option<i64>)> {
        self.conn()
            .query_row(
                "SELECT COUNT(*), MIN(received_at) FROM samples WHERE sync_state = 0",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .map_err(self.err("counting unsynced samples"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_values_parse_and_garbage_is_named() {
        assert_eq!(parse_cores(""), Ok(vec![]));
        assert_eq!(parse_cores("1.50,2.00"), Ok(vec![1.5, 2.0]));
        let err = parse_cores("1.0,x").unwrap_err();
        assert!(err.contains("\"x\""), "{err}");
    }
}
