//! The central MySQL database: the only module that knows MySQL.
//!
//! It connects with the timeouts of `sync.timeout` (connect, read and write, so
//! a killed server never hangs the task), pins the session (UTC, strict
//! `sql_mode`, utf8mb4), applies `schema/mysql.sql` when it is missing,
//! upgrades an older one in place (`schema/mysql-v2.sql` .. `mysql-v4.sql`) under the
//! lock `edgemon.schema`, refuses a database whose schema is newer than this
//! build, and writes one slice of rows per transaction under the buffer's
//! epoch. Each transaction looks up (and re-registers) its hosts, reads which
//! of its identities are already there, inserts only the absent rows, checks
//! the affected-row count (a sample's family child rows, `families.rs`, go with it in
//! the same transaction), and adds what it really inserted to the hosts'
//! watermarks. A present identity with the same checksum is a re-send (no-op);
//! with another checksum it is a [`Collision`], returned to the caller and
//! never written over. The absent samples go as `LOAD DATA LOCAL INFILE` from
//! memory (`bulk.rs`) when the server allows `local_infile`, a large batch split
//! by host over [`BULK_CONNECTIONS`] connections; as multi-row INSERT otherwise,
//! or when a LOAD raised a warning (a value the server would refuse). It
//! classifies MySQL's errors into what the caller branches on:
//! [`Error::Content`] (split the batch and quarantine the bad rows) versus
//! everything else (drop the connection and back off).
//!
//! On a Galera node (`wsrep_on`) it refuses to work unless the node is ready
//! and Synced ([`Error::NotReady`]; error 1047 later means the same), and
//! reads with `wsrep_sync_wait = 1`. A transaction that loses a conflict
//! (1213, 1205) is retried whole with jitter, a bounded number of times.
//!
//! Every session bounds its own life on the server: lock waits end (1205, retried as a
//! conflict) well before the client's read timeout, and `wait_timeout`, `net_read_timeout`
//! and `net_write_timeout` end a session whose client vanished. A session given up (dropped
//! after a timeout or a lost connection) is killed on the server before its batch is sent
//! again (`orphans.rs`), so a partition mid-batch leaves no transaction holding its locks.
//!
//! It does not read the buffer, decide batch sizes, choose servers or retry
//! anything else.
//!
//! One job per file: `session.rs` (connect, register), `ready.rs` (Galera readiness),
//! `schema.rs` (apply, upgrade, refuse), `batch.rs` (the batch transaction and its retries),
//! `samples.rs` and `journal.rs` (the two kinds of batch), `load.rs` (`LOAD DATA LOCAL
//! INFILE`), `errors.rs` ([`Error`] and the classes of MySQL's codes), `orphans.rs` (sessions given up, killed).

mod batch;
mod errors;
mod journal;
mod load;
mod orphans;
mod ready;
mod samples;
mod schema;
mod session;

use mysql::{Conn, OptsBuilder};

pub use crate::buffer::{Collision, HostMark};
pub use errors::Error;
pub(super) use errors::{classify, conflict_pause, is_conflict};
pub use schema::SCHEMA_VERSION;

/// What one committed write did with its rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Local ids of the rows inserted.
    pub inserted: Vec<i64>,
    /// Local ids of rows already there with the same values (a re-send): a no-op.
    pub identical: Vec<i64>,
    /// Rows whose identity holds different values centrally: not written.
    pub collisions: Vec<Collision>,
}

impl Written {
    /// Local ids that are now in the central database as the buffer holds them.
    pub fn stored(&self) -> impl Iterator<Item = i64> + '_ {
        self.inserted.iter().chain(&self.identical).copied()
    }
}

/// A connection to the central database, registered as one appliance and one buffer epoch.
pub struct Central {
    conn: Conn,
    server: String,
    appliance: u32,
    epoch: i64,
    /// Transactions tried again after a conflict, since the last [`Central::take_conflict_retries`].
    conflict_retries: u64,
    /// The bulk path on this connection: allowed or not, and sibling connections.
    bulk: Bulk,
    /// This session as the server knows it, recorded as given up when it is dropped
    /// ([`orphans`]); `None` when the server did not say.
    session: Option<orphans::Session>,
}

impl Drop for Central {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            orphans::give_up(session);
        }
    }
}

/// Transactions in flight at once for one large batch on the bulk path (this connection
/// and siblings), each over its own hosts. Measured in BENCHMARKS.md ("Sync drain").
const BULK_CONNECTIONS: usize = 2;

/// Batches smaller than this go in one transaction whatever the path.
const BULK_SPLIT_MIN_ROWS: usize = 2_000;

/// The bulk path's state on one connection.
struct Bulk {
    /// Whether batches go as `LOAD DATA LOCAL INFILE` ([`Central::bulk_allowed`]); `None`
    /// until asked on this connection.
    allowed: Option<bool>,
    /// The options of this connection, to open siblings with (`None` on a sibling).
    opts: Option<OptsBuilder>,
    /// Sibling connections to the same server, opened on first need, dropped on an error.
    siblings: Vec<Central>,
}

impl Bulk {
    fn new(opts: &OptsBuilder) -> Bulk {
        Bulk {
            allowed: None,
            opts: Some(opts.clone()),
            siblings: Vec::new(),
        }
    }
}
