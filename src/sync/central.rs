//! The central MySQL database: the only module that knows MySQL.
//!
//! It connects with the timeouts of `sync.timeout` (connect, read and write, so
//! a killed server never hangs the task), pins the session (UTC, strict
//! `sql_mode`, utf8mb4), applies `schema/mysql.sql` when it is missing,
//! upgrades a version 1 database in place (`schema/mysql-v2.sql`) under the
//! lock `edgemon.schema`, refuses a database whose schema is newer than this
//! build, and writes one slice of rows per transaction under the buffer's
//! epoch. Each transaction looks up (and re-registers) its hosts, reads which
//! of its identities are already there, inserts only the absent rows, checks
//! the affected-row count, and adds what it really inserted to the hosts'
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
//! It does not read the buffer, decide batch sizes, choose servers or retry
//! anything else.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, LocalInfileHandler, Opts, OptsBuilder, TxOpts};

use super::{bulk, sql};
pub use crate::buffer::{Collision, HostMark};
use crate::buffer::{JournalFields, JournalRow, SyncSample};
use crate::config::secret::Secret;

/// The central schema version this build writes.
pub const SCHEMA_VERSION: u32 = 3;

/// Tables the schema must hold.
const TABLES: [&str; 11] = [
    "schema_version",
    "appliances",
    "buffers",
    "hosts",
    "samples",
    "sample_cores",
    "collection_errors",
    "alert_events",
    "drops",
    "watermarks",
    "prune_horizons",
];

/// The lock that serialises schema changes between appliances.
const SCHEMA_LOCK: &str = "edgemon.schema";

/// Read and write timeout of the connection that creates or upgrades the schema (an upgrade
/// rebuilds every table); half of it bounds the wait for [`SCHEMA_LOCK`].
const SCHEMA_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// Errors towards the central database; the caller branches on [`Error::Content`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `sync.url` does not parse.
    #[error("sync.url is not a valid mysql:// URL: {0}")]
    Url(String),
    /// The server cannot be reached, or the connection broke.
    #[error("cannot reach MySQL at {server}: {message}")]
    Unreachable {
        /// `host:port`.
        server: String,
        /// The cause.
        message: String,
    },
    /// The server refused the credentials or the database.
    #[error("MySQL at {server} refused user '{user}': {message}")]
    Credentials {
        /// `host:port`.
        server: String,
        /// The user of `sync.url`.
        user: String,
        /// MySQL's message.
        message: String,
    },
    /// The central schema is newer than this build, or incomplete.
    #[error("central schema at {server}: {message}")]
    Schema {
        /// `host:port/database`.
        server: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A Galera node that is not ready for clients (`wsrep_ready` OFF, not Synced, or not in
    /// the primary component): the caller tries another server.
    #[error("MySQL at {server} is a Galera node not ready for clients: {message}")]
    NotReady {
        /// `host:port`.
        server: String,
        /// The node's state.
        message: String,
    },
    /// MySQL refused the rows themselves (too long, out of range, invalid JSON, ...).
    #[error("MySQL refused the rows: {0}")]
    Content(String),
    /// Any other error the server reported.
    #[error("MySQL at {server}: {message}")]
    Server {
        /// `host:port`.
        server: String,
        /// MySQL's message.
        message: String,
    },
}

impl Error {
    /// The server cannot serve now (unreachable, connection lost, a Galera node not ready):
    /// another server of the list may, and the batch is sent there again.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unreachable { .. } | Error::NotReady { .. })
    }
}

/// MySQL error codes that mean "these values", so bisecting can isolate the rows.
/// Not 1452 (foreign key): that means a central host row vanished, which re-registering fixes.
const CONTENT_CODES: &[u16] = &[
    1048, // column cannot be null
    1264, // out of range value
    1265, // data truncated
    1292, // incorrect datetime value
    1300, // invalid character string
    1366, // incorrect value for column
    1367, // illegal value during parsing
    1406, // data too long
    1690, // value out of range in an expression
    3140, // invalid JSON (MySQL)
    3819, // check constraint violated (MySQL)
    4025, // check constraint failed (MariaDB: JSON_VALID on JSON columns)
];

/// A child row refers to a parent that is not there: a central host row vanished.
const FOREIGN_KEY_CODE: u16 = 1452;

/// Codes that mean the schema was altered under us.
const SCHEMA_CODES: &[u16] = &[1146, 1054, 1356];

/// Codes of refused credentials or database access.
const CREDENTIAL_CODES: &[u16] = &[1044, 1045, 1049, 1698];

/// Codes of a transaction that lost a conflict and was rolled back: a Galera certification
/// conflict or brute-force abort (1213, also at COMMIT) or a lock wait timeout (1205). The whole
/// transaction is tried again; neither the rows nor the server are at fault.
const CONFLICT_CODES: &[u16] = &[1213, 1205];

/// Attempts of one transaction that keeps losing conflicts before it is a server error.
const CONFLICT_ATTEMPTS: u32 = 6;

/// The first retry after a conflict waits up to this long (with jitter), doubling each time.
const CONFLICT_PAUSE: Duration = Duration::from_millis(20);

/// Whether `error` is a lost conflict ([`CONFLICT_CODES`]): the whole transaction may be
/// tried again after [`conflict_pause`]. Shared by the batches and `prune.rs`.
pub(super) fn is_conflict(error: &mysql::Error) -> bool {
    matches!(error, mysql::Error::MySqlError(m) if CONFLICT_CODES.contains(&m.code))
}

/// The pause before the `conflicts`-th retry of a transaction that lost a conflict: random
/// (so two writers that collided do not collide again in step) below [`CONFLICT_PAUSE`],
/// doubling with each retry.
pub(super) fn conflict_pause(conflicts: u32) -> Duration {
    let ceiling = CONFLICT_PAUSE * (1 << conflicts.saturating_sub(1).min(10));
    ceiling.mul_f64(rand::random::<f64>())
}

/// Codes that mean the server cannot serve this connection now, so another node should:
/// 1047 (a Galera node not in the primary component or not synced), 1053 (server shutdown in
/// progress), 1927 (connection killed, e.g. by a shutdown), 1040 (too many connections).
const UNAVAILABLE_CODES: &[u16] = &[1047, 1053, 1927, 1040];

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

impl Central {
    /// Connects, checks (applies, or upgrades) the schema and registers appliance `appliance`
    /// with buffer `epoch`. Warns when another buffer synced under the same appliance lately.
    pub fn connect(
        url: &Secret,
        timeout: Duration,
        appliance: &str,
        epoch: i64,
    ) -> Result<Central, Error> {
        let (mut central, builder, server) = Central::open(url, timeout, epoch)?;
        central.check_ready(&server)?;
        central.ensure_schema(appliance, &builder)?;
        central.appliance = central.register(appliance)?;
        central.register_buffer(appliance)?;
        Ok(central)
    }

    /// Opens the session (timeouts, keepalive, character set, UTC, strict mode, READ
    /// COMMITTED) without touching the schema: the part [`Central::connect`] and
    /// [`Central::connect_maintenance`] share. Returns the builder (the schema lock needs a
    /// second session) and `host:port` for messages.
    fn open(
        url: &Secret,
        timeout: Duration,
        epoch: i64,
    ) -> Result<(Central, OptsBuilder, String), Error> {
        let opts = Opts::from_url(url.expose()).map_err(|e| Error::Url(e.to_string()))?;
        let server = format!("{}:{}", opts.get_ip_or_hostname(), opts.get_tcp_port());
        let user = opts.get_user().unwrap_or("").to_string();
        let database = opts.get_db_name().unwrap_or("").to_string();
        let builder = OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .tcp_connect_timeout(Some(timeout))
            .read_timeout(Some(timeout))
            .write_timeout(Some(timeout))
            .tcp_keepalive_time_ms(Some(30_000))
            .init(vec![
                "SET NAMES utf8mb4",
                "SET time_zone = '+00:00'",
                "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'",
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            ]);
        let conn = Conn::new(builder.clone()).map_err(|e| match &e {
            mysql::Error::MySqlError(m) if CREDENTIAL_CODES.contains(&m.code) => {
                Error::Credentials {
                    server: server.clone(),
                    user: user.clone(),
                    message: m.message.clone(),
                }
            }
            _ => classify(&server, e),
        })?;
        if database.is_empty() {
            return Err(Error::Schema {
                server,
                message: "sync.url names no database (mysql://user:pass@host:port/DATABASE)".into(),
            });
        }
        let central = Central {
            conn,
            server: format!("{server}/{database}"),
            appliance: 0,
            epoch,
            conflict_retries: 0,
            bulk: Bulk::new(&builder),
        };
        Ok((central, builder, server))
    }

    /// `host:port/database`, for messages.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Transactions tried again after a conflict (1213, 1205) since the last call.
    pub fn take_conflict_retries(&mut self) -> u64 {
        std::mem::take(&mut self.conflict_retries)
    }

    /// A Galera node (`wsrep_on = ON`) must be ready (`wsrep_ready = ON`), `Synced` and in the
    /// primary component; any other server is a plain MySQL or MariaDB and is fine. On a Galera
    /// node the session's reads wait until the node has applied what the cluster committed
    /// before them (`wsrep_sync_wait = 1`), so after a failover a batch committed through the
    /// dead node is seen as present, not sent as new.
    fn check_ready(&mut self, server: &str) -> Result<(), Error> {
        // MySQL has no such variable, MariaDB says OFF unless it runs as a Galera node.
        let wsrep: Vec<(String, String)> = self
            .conn
            .query("SHOW GLOBAL VARIABLES WHERE Variable_name = 'wsrep_on'")
            .map_err(|e| classify(server, e))?;
        if !wsrep.iter().any(|(_, v)| v.eq_ignore_ascii_case("ON")) {
            return Ok(());
        }
        let rows: Vec<(String, String)> = self
            .conn
            .query(
                "SHOW GLOBAL STATUS WHERE Variable_name IN \
                 ('wsrep_ready', 'wsrep_local_state_comment', 'wsrep_cluster_status')",
            )
            .map_err(|e| classify(server, e))?;
        let value = |name: &str| {
            rows.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map_or("", |(_, v)| v.as_str())
        };
        let (ready, state, cluster) = (
            value("wsrep_ready"),
            value("wsrep_local_state_comment"),
            value("wsrep_cluster_status"),
        );
        if !ready.eq_ignore_ascii_case("ON")
            || state != "Synced"
            || !(cluster.is_empty() || cluster == "Primary")
        {
            return Err(Error::NotReady {
                server: server.to_string(),
                message: format!(
                    "wsrep_ready = {ready}, wsrep_local_state_comment = {state}, wsrep_cluster_status = {cluster}"
                ),
            });
        }
        self.conn
            .query_drop("SET SESSION wsrep_sync_wait = 1")
            .map_err(|e| classify(server, e))
    }

    /// Connects for maintenance (`edgemon central prune`): the session and the schema check
    /// (apply, upgrade) of [`Central::connect`], but nothing is registered; the appliance is
    /// only looked up (`None`: it never synced to this database).
    pub fn connect_maintenance(
        url: &Secret,
        timeout: Duration,
        appliance: &str,
    ) -> Result<(Central, Option<u32>), Error> {
        let (mut central, builder, server) = Central::open(url, timeout, 0)?;
        central.check_ready(&server)?;
        central.ensure_schema(appliance, &builder)?;
        let mut select = String::from("SELECT id FROM appliances WHERE name = ");
        sql::push_str(&mut select, appliance);
        let server = central.server.clone();
        let id: Option<u32> = central
            .conn
            .query_first(select)
            .map_err(|e| classify(&server, e))?;
        central.appliance = id.unwrap_or(0);
        Ok((central, id))
    }

    /// The session, for the maintenance module ([`super::prune`]).
    pub(super) fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// The appliance's central id and the buffer's epoch this connection writes under.
    pub(super) fn identity(&self) -> (u32, i64) {
        (self.appliance, self.epoch)
    }

    /// Applies the schema when missing, upgrades version 1 in place; refuses a newer or
    /// incomplete one.
    fn ensure_schema(&mut self, appliance: &str, builder: &OptsBuilder) -> Result<(), Error> {
        let server = self.server.clone();
        let e = |err| classify(&server, err);
        let found = self.schema_version()?;
        self.refuse_newer(found)?;
        if found != Some(SCHEMA_VERSION) {
            // Waiting for the lock and rebuilding large tables take far longer than
            // sync.timeout, and a client that gives up kills its ALTER: a connection of its own.
            let long = builder
                .clone()
                .read_timeout(Some(SCHEMA_TIMEOUT))
                .write_timeout(Some(SCHEMA_TIMEOUT));
            let schema_conn = Conn::new(long).map_err(e)?;
            let normal = std::mem::replace(&mut self.conn, schema_conn);
            let applied = self.apply_schema_under_lock(appliance);
            self.conn = normal;
            applied?;
        }
        let present: Vec<String> = self
            .conn
            .query(
                "SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE()",
            )
            .map_err(e)?;
        let missing: Vec<&str> = TABLES
            .iter()
            .copied()
            .filter(|t| !present.iter().any(|p| p == t))
            .collect();
        if !missing.is_empty() {
            return Err(Error::Schema {
                server,
                message: format!(
                    "table(s) {} missing although schema version {} is recorded; restore them from a backup, \
                     or, to start empty, drop the edgemon tables and schema_version so that edgemon re-creates them",
                    missing.join(", "),
                    SCHEMA_VERSION
                ),
            });
        }
        Ok(())
    }

    /// Serialises appliances that find the database empty or old at the same moment.
    fn apply_schema_under_lock(&mut self, appliance: &str) -> Result<(), Error> {
        let server = self.server.clone();
        let locked: Option<i64> = self
            .conn
            .query_first(format!(
                "SELECT GET_LOCK('{SCHEMA_LOCK}', {})",
                SCHEMA_TIMEOUT.as_secs() / 2
            ))
            .map_err(|err| classify(&server, err))?;
        if locked != Some(1) {
            return Err(Error::Schema {
                server,
                message: format!(
                    "could not take the schema lock '{SCHEMA_LOCK}' within {} s (another appliance is \
                     creating or upgrading the schema)",
                    SCHEMA_TIMEOUT.as_secs() / 2
                ),
            });
        }
        let applied = self.apply_schema_locked(appliance);
        let _ = self
            .conn
            .query_drop(format!("DO RELEASE_LOCK('{SCHEMA_LOCK}')"));
        applied
    }

    fn refuse_newer(&self, found: Option<u32>) -> Result<(), Error> {
        match found {
            Some(v) if v > SCHEMA_VERSION => Err(Error::Schema {
                server: self.server.clone(),
                message: format!(
                    "version {v} is newer than this edgemon supports ({SCHEMA_VERSION}); upgrade edgemon"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Under the schema lock: looks again (another appliance may have just done it), then
    /// creates version 2 or upgrades version 1.
    fn apply_schema_locked(&mut self, appliance: &str) -> Result<(), Error> {
        let found = self.schema_version()?;
        self.refuse_newer(found)?;
        match found {
            Some(SCHEMA_VERSION) => return Ok(()),
            Some(1) => {
                tracing::warn!(server = %self.server, "upgrading the central schema from version 1 to 2 in place");
                self.set_applied_by(appliance)?;
                let upgrade = statements(crate::schema::MYSQL_V1_TO_V2);
                let (alters, after): (Vec<_>, Vec<_>) = upgrade
                    .into_iter()
                    .partition(|s| s.starts_with("ALTER TABLE"));
                for alter in &alters {
                    let table = alter
                        .split_whitespace()
                        .nth(2)
                        .unwrap_or_default()
                        .to_string();
                    if !self.has_column(&table, "epoch")? {
                        self.run_schema_statement(alter, "schema/mysql-v2.sql")?;
                    }
                }
                // A v1 upgrade cut short by an older build may have created watermarks already.
                if self.has_column("watermarks", "first_seq")? {
                    self.upgrade_watermarks_v3()?;
                }
                let (version, create): (Vec<_>, Vec<_>) = statements(crate::schema::MYSQL)
                    .into_iter()
                    .partition(|s| s.starts_with("INSERT INTO schema_version"));
                for statement in create.iter().chain(&after).chain(&version) {
                    self.run_schema_statement(statement, "the schema")?;
                }
            }
            Some(2) => {
                tracing::warn!(server = %self.server, "upgrading the central schema from version 2 to 3 in place (prune horizons)");
                self.set_applied_by(appliance)?;
                self.upgrade_watermarks_v3()?;
                for statement in statements(crate::schema::MYSQL) {
                    self.run_schema_statement(&statement, "schema/mysql.sql")?;
                }
            }
            _ => {
                self.set_applied_by(appliance)?;
                for statement in statements(crate::schema::MYSQL) {
                    self.run_schema_statement(&statement, "schema/mysql.sql")?;
                }
            }
        }
        tracing::info!(server = %self.server, version = SCHEMA_VERSION, "applied the central schema");
        Ok(())
    }

    /// Version 3's columns of `watermarks` (`schema/mysql-v3.sql`), unless already there: a
    /// small table (one row per host and buffer), so the ALTER is quick even where the samples
    /// are huge.
    fn upgrade_watermarks_v3(&mut self) -> Result<(), Error> {
        if !self.has_column("watermarks", "pruned_through_seq")? {
            for alter in statements(crate::schema::MYSQL_V2_TO_V3) {
                self.run_schema_statement(&alter, "schema/mysql-v3.sql")?;
            }
        }
        Ok(())
    }

    fn set_applied_by(&mut self, appliance: &str) -> Result<(), Error> {
        let server = self.server.clone();
        let mut set = String::from("SET @edgemon_appliance = ");
        sql::push_str(&mut set, appliance);
        self.conn.query_drop(set).map_err(|e| classify(&server, e))
    }

    fn run_schema_statement(&mut self, statement: &str, file: &str) -> Result<(), Error> {
        self.conn.query_drop(statement).map_err(|e| Error::Schema {
            server: self.server.clone(),
            message: format!(
                "applying {file} failed: {e} (statement: {})",
                first_line(statement)
            ),
        })
    }

    fn has_column(&mut self, table: &str, column: &str) -> Result<bool, Error> {
        let server = self.server.clone();
        let mut query = String::from(
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ",
        );
        sql::push_str(&mut query, table);
        query.push_str(" AND column_name = ");
        sql::push_str(&mut query, column);
        let n: Option<i64> = self
            .conn
            .query_first(query)
            .map_err(|e| classify(&server, e))?;
        Ok(n.unwrap_or(0) > 0)
    }

    fn schema_version(&mut self) -> Result<Option<u32>, Error> {
        let server = self.server.clone();
        let exists: Option<i64> = self
            .conn
            .query_first(
                "SELECT COUNT(*) FROM information_schema.tables
                 WHERE table_schema = DATABASE() AND table_name = 'schema_version'",
            )
            .map_err(|e| classify(&server, e))?;
        if exists.unwrap_or(0) == 0 {
            return Ok(None);
        }
        let version: Option<Option<u32>> = self
            .conn
            .query_first("SELECT MAX(version) FROM schema_version")
            .map_err(|e| classify(&server, e))?;
        Ok(version.flatten())
    }

    fn register(&mut self, appliance: &str) -> Result<u32, Error> {
        let server = self.server.clone();
        let mut insert = String::from("INSERT INTO appliances (name) VALUES (");
        sql::push_str(&mut insert, appliance);
        insert.push_str(") ON DUPLICATE KEY UPDATE name = name");
        self.conn
            .query_drop(insert)
            .map_err(|e| classify(&server, e))?;
        let mut select = String::from("SELECT id FROM appliances WHERE name = ");
        sql::push_str(&mut select, appliance);
        let id: Option<u32> = self
            .conn
            .query_first(select)
            .map_err(|e| classify(&server, e))?;
        id.ok_or_else(|| Error::Schema {
            server,
            message: format!("appliance '{appliance}' vanished from table appliances"),
        })
    }

    /// Registers this buffer's epoch; warns about other buffers that synced under the same
    /// appliance in the last day (a replaced buffer file, or two boxes sharing one id).
    fn register_buffer(&mut self, appliance: &str) -> Result<(), Error> {
        let server = self.server.clone();
        let e = |err| classify(&server, err);
        self.conn
            .query_drop(format!(
                "INSERT INTO buffers (appliance_id, epoch) VALUES ({}, {}) ON DUPLICATE KEY UPDATE epoch = epoch",
                self.appliance, self.epoch
            ))
            .map_err(e)?;
        let others: Vec<(i64, String)> = self
            .conn
            .query(format!(
                "SELECT epoch, CAST(last_sync_at AS CHAR) FROM buffers
                 WHERE appliance_id = {} AND epoch <> {} AND epoch <> 0
                   AND last_sync_at > CURRENT_TIMESTAMP(3) - INTERVAL 1 DAY",
                self.appliance, self.epoch
            ))
            .map_err(e)?;
        for (epoch, at) in others {
            tracing::warn!(
                appliance,
                epoch = self.epoch,
                other_epoch = epoch,
                other_last_sync = %at,
                "another buffer synced as this appliance within the last day: a replaced buffer file, \
                 or two boxes sharing appliance.id; their rows are kept apart by epoch (view appliance_buffers). \
                 Give each box its own appliance.id (or remove it to use the machine's)"
            );
        }
        Ok(())
    }

    /// The newest sequence number present per host name (trailing spaces removed, as the
    /// central collation compares), for this appliance and epoch (hosts without rows are
    /// absent). One index dive per host.
    pub fn present_samples(&mut self) -> Result<HashMap<String, i64>, Error> {
        let server = self.server.clone();
        let rows: Vec<(String, Option<i64>)> = self
            .conn
            .query(format!(
                "SELECT CAST(h.name AS CHAR),
                        (SELECT s.seq FROM samples s
                          WHERE s.appliance_id = {a} AND s.epoch = {e} AND s.host_id = h.id
                          ORDER BY s.seq DESC LIMIT 1)
                 FROM hosts h WHERE h.appliance_id = {a}",
                a = self.appliance,
                e = self.epoch
            ))
            .map_err(|e| classify(&server, e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(name, seq)| seq.map(|s| (pad_key(&name).to_string(), s)))
            .collect())
    }

    /// The newest sequence number of `host` in `from..below` (this appliance and epoch), if
    /// any: one index dive on the primary key. The re-queue reads it per stream of a host's
    /// samples (see `SyncQueue::stream_splits`).
    pub fn present_between(
        &mut self,
        host: &str,
        from: i64,
        below: i64,
    ) -> Result<Option<i64>, Error> {
        let server = self.server.clone();
        let max: Option<Option<i64>> = self
            .conn
            .exec_first(
                "SELECT MAX(s.seq) FROM samples s JOIN hosts h ON h.id = s.host_id
                 WHERE h.appliance_id = ? AND h.name = ? AND s.appliance_id = ? AND s.epoch = ?
                   AND s.seq >= ? AND s.seq < ?",
                (
                    self.appliance,
                    host,
                    self.appliance,
                    self.epoch,
                    from,
                    below,
                ),
            )
            .map_err(|e| classify(&server, e))?;
        Ok(max.flatten())
    }

    /// The newest local id `table` holds for this appliance and epoch (0: none).
    pub fn present_journal(&mut self, table: &str) -> Result<i64, Error> {
        let server = self.server.clone();
        let max: Option<Option<i64>> = self
            .conn
            .query_first(format!(
                "SELECT MAX(local_id) FROM {table} WHERE appliance_id = {} AND epoch = {}",
                self.appliance, self.epoch
            ))
            .map_err(|e| classify(&server, e))?;
        Ok(max.flatten().unwrap_or(0))
    }

    /// Writes samples (with per-core values and the hosts' watermarks) and commits. Rows
    /// already there with the same values are skipped (a re-send); rows whose identity holds
    /// different values are returned as collisions, not written.
    ///
    /// On the bulk path a large batch is split by host into up to [`BULK_CONNECTIONS`] parts
    /// written at once, each in its own transaction on its own connection (this one and
    /// siblings). Nothing is returned, so nothing is marked, unless every part committed; a
    /// part that committed beside one that failed is found there identical when re-sent.
    pub fn write_samples(
        &mut self,
        rows: &[SyncSample],
        marks: &HashMap<String, HostMark>,
    ) -> Result<Written, Error> {
        let parts = if rows.len() >= BULK_SPLIT_MIN_ROWS && self.bulk_allowed() {
            self.open_siblings(BULK_CONNECTIONS - 1);
            split_by_host(rows, self.bulk.siblings.len() + 1)
        } else {
            vec![rows.iter().collect()]
        };
        let Some((mine, theirs)) = parts.split_first() else {
            return Ok(Written::default());
        };
        if theirs.is_empty() {
            return self.write_samples_one(mine, marks);
        }
        let mut siblings = std::mem::take(&mut self.bulk.siblings);
        let (own, others) = std::thread::scope(|scope| {
            let others: Vec<_> = siblings
                .iter_mut()
                .zip(theirs)
                .map(|(sibling, part)| scope.spawn(move || sibling.write_samples_one(part, marks)))
                .collect();
            let own = self.write_samples_one(mine, marks);
            let others: Vec<Result<Written, Error>> = others
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Server {
                            server: self.server.clone(),
                            message: "a sibling connection's writer panicked".into(),
                        })
                    })
                })
                .collect();
            (own, others)
        });
        // A connection or server error outranks a content error: the caller drops the
        // connection (the parts that failed for their content are bisected next time).
        let mut written = Written::default();
        let (mut fatal, mut content) = (None, None);
        for result in std::iter::once(own).chain(others) {
            match result {
                Ok(part) => {
                    written.inserted.extend(part.inserted);
                    written.identical.extend(part.identical);
                    written.collisions.extend(part.collisions);
                }
                Err(err @ Error::Content(_)) => {
                    content.get_or_insert(err);
                }
                Err(err) => {
                    fatal.get_or_insert(err);
                }
            }
        }
        for sibling in &mut siblings {
            self.conflict_retries += sibling.take_conflict_retries();
        }
        if fatal.is_none() {
            self.bulk.siblings = siblings;
        }
        match fatal.or(content) {
            Some(err) => Err(err),
            None => Ok(written),
        }
    }

    /// Opens sibling connections up to `wanted` with this connection's options; one that
    /// cannot be opened is done without (logged).
    fn open_siblings(&mut self, wanted: usize) {
        let Some(opts) = self.bulk.opts.clone() else {
            return;
        };
        while self.bulk.siblings.len() < wanted {
            let mut sibling = match Conn::new(opts.clone()) {
                Ok(conn) => Central {
                    conn,
                    server: self.server.clone(),
                    appliance: self.appliance,
                    epoch: self.epoch,
                    conflict_retries: 0,
                    bulk: Bulk {
                        allowed: Some(true),
                        opts: None,
                        siblings: Vec::new(),
                    },
                },
                Err(err) => {
                    tracing::warn!(server = %self.server, error = %err,
                        "cannot open a second connection for parallel batches; writing over one");
                    return;
                }
            };
            // The same checks and session as this connection: on a Galera node, reads that
            // wait for what the cluster committed (the identity read after a failover).
            let server = self.server.clone();
            if let Err(err) = sibling.check_ready(&server) {
                tracing::warn!(server = %self.server, error = %err,
                    "a second connection for parallel batches is not ready; writing over one");
                return;
            }
            self.bulk.siblings.push(sibling);
        }
    }

    /// [`Central::write_samples`] in one transaction on this connection.
    fn write_samples_one(
        &mut self,
        rows: &[&SyncSample],
        marks: &HashMap<String, HostMark>,
    ) -> Result<Written, Error> {
        let hosts: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.host.as_str(), r.address.as_str()))
            .collect();
        let (appliance, epoch) = (self.appliance, self.epoch);
        let mut bulk = self.bulk_allowed();
        let result = self.transaction(&hosts, |tx, ids| {
            let prepared: Vec<sql::PreparedSample<'_>> = rows
                .iter()
                .map(|r| Ok(sql::PreparedSample::new(r, host_id(ids, &r.host)?)))
                .collect::<Result<_, TxError>>()?;
            let existing: HashMap<(u32, i64), Option<u64>> = if prepared.is_empty() {
                HashMap::new()
            } else {
                let found: Vec<(u32, i64, Option<u64>)> =
                    tx.query(sql::existing_samples(appliance, epoch, &prepared))?;
                found
                    .into_iter()
                    .map(|(h, seq, sum)| ((h, seq), sum))
                    .collect()
            };
            let mut written = Written::default();
            let mut new = Vec::with_capacity(prepared.len());
            let mut deltas: HashMap<u32, sql::WatermarkDelta> = HashMap::new();
            for p in &prepared {
                let delta = deltas
                    .entry(p.host_id)
                    .or_insert_with(|| watermark_seed(marks, &p.row.host));
                delta.last_seq = delta.last_seq.max(p.row.seq);
                match existing.get(&(p.host_id, p.row.seq)) {
                    None => {
                        delta.stored += 1;
                        delta.stored_last_seq = delta.stored_last_seq.max(p.row.seq);
                        written.inserted.push(p.row.id);
                        new.push(p);
                    }
                    // A row of schema version 1 has no checksum; it cannot share an epoch with
                    // a buffer, so this is only reachable by hand: treat it as the same row.
                    Some(central) if central.is_none_or(|c| c == p.checksum) => {
                        written.identical.push(p.row.id);
                    }
                    Some(central) => written.collisions.push(Collision {
                        local_id: p.row.id,
                        host: p.row.host.clone(),
                        seq: Some(p.row.seq),
                        local_checksum: p.checksum,
                        central_checksum: *central,
                    }),
                }
            }
            let loaded = if bulk && !new.is_empty() {
                load_samples(tx, appliance, epoch, &new, &mut bulk)?
            } else {
                None
            };
            let inserted = match loaded {
                Some(inserted) => inserted,
                None => insert_samples(tx, appliance, epoch, &new)?,
            };
            check_inserted(inserted, new.len(), "samples", epoch)?;
            for statement in sql::watermark_upserts(appliance, epoch, &deltas) {
                tx.query_drop(statement)?;
            }
            Ok(written)
        });
        if !bulk && self.bulk.allowed == Some(true) {
            tracing::warn!(server = %self.server,
                "MySQL refused LOAD DATA LOCAL INFILE (local_infile turned off?); this connection sends INSERT statements");
            self.bulk.allowed = Some(false);
        }
        result
    }

    /// Whether this connection sends batches as `LOAD DATA LOCAL INFILE` (asked once per
    /// connection): the server allows `local_infile`, and is not a Galera node that splits
    /// `LOAD DATA` into several commits (`wsrep_load_data_splitting`), which would break "one
    /// batch, one transaction". The driver always offers the client capability
    /// (`CLIENT_LOCAL_FILES`) and answers only with the batch in memory, never with a file.
    /// A failed question means no (the INSERT path), asked again with the next batch.
    fn bulk_allowed(&mut self) -> bool {
        if let Some(bulk) = self.bulk.allowed {
            return bulk;
        }
        let found: Result<Vec<(String, String)>, _> = self.conn.query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('local_infile', 'wsrep_load_data_splitting')",
        );
        let Ok(found) = found else {
            return false;
        };
        let on = |name: &str| {
            found
                .iter()
                .any(|(n, v)| n == name && (v == "ON" || v == "1"))
        };
        let bulk = on("local_infile") && !on("wsrep_load_data_splitting");
        tracing::debug!(server = %self.server, bulk, "sync sends batches as LOAD DATA LOCAL INFILE when bulk is true, INSERT statements otherwise");
        self.bulk.allowed = Some(bulk);
        bulk
    }

    /// Writes journal rows of one kind in one transaction and commits, like
    /// [`Central::write_samples`]; inserted drops add to their hosts' watermarks.
    pub fn write_journal(
        &mut self,
        rows: &[JournalRow],
        marks: &HashMap<String, HostMark>,
    ) -> Result<Written, Error> {
        let hosts: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.host.as_str(), r.address.as_str()))
            .collect();
        let (appliance, epoch) = (self.appliance, self.epoch);
        self.transaction(&hosts, |tx, ids| {
            let Some(first) = rows.first() else {
                return Ok(Written::default());
            };
            let table = sql::journal_table(&first.fields);
            let prepared: Vec<sql::PreparedJournal<'_>> = rows
                .iter()
                .map(|r| Ok(sql::PreparedJournal::new(r, host_id(ids, &r.host)?)))
                .collect::<Result<_, TxError>>()?;
            let found: Vec<(i64, Option<u64>)> =
                tx.query(sql::existing_journal(table, appliance, epoch, &prepared))?;
            let existing: HashMap<i64, Option<u64>> = found.into_iter().collect();
            let mut written = Written::default();
            let mut new = Vec::with_capacity(prepared.len());
            let mut deltas: HashMap<u32, sql::WatermarkDelta> = HashMap::new();
            for p in &prepared {
                match existing.get(&p.row.id) {
                    None => {
                        if let JournalFields::Drop {
                            count, last_seq, ..
                        } = &p.row.fields
                        {
                            let delta = deltas
                                .entry(p.host_id)
                                .or_insert_with(|| watermark_seed(marks, &p.row.host));
                            delta.dropped += count;
                            delta.last_seq = delta.last_seq.max(*last_seq);
                        }
                        written.inserted.push(p.row.id);
                        new.push(p);
                    }
                    Some(central) if central.is_none_or(|c| c == p.checksum) => {
                        written.identical.push(p.row.id);
                    }
                    Some(central) => written.collisions.push(Collision {
                        local_id: p.row.id,
                        host: p.row.host.clone(),
                        seq: None,
                        local_checksum: p.checksum,
                        central_checksum: *central,
                    }),
                }
            }
            let mut inserted = 0;
            for statement in sql::journal_inserts(appliance, epoch, &new) {
                tx.query_drop(statement)?;
                inserted += tx.affected_rows();
            }
            check_inserted(inserted, new.len(), &format!("{table} rows"), epoch)?;
            for statement in sql::watermark_upserts(appliance, epoch, &deltas) {
                tx.query_drop(statement)?;
            }
            Ok(written)
        })
    }

    /// Records the end of a successful pass: the appliance's and the buffer's last sync, and
    /// the watermark of every host of the buffer (so a host whose samples never arrive shows
    /// in the completeness view).
    pub fn touch(
        &mut self,
        hosts: &[(String, String)],
        marks: &HashMap<String, HostMark>,
    ) -> Result<(), Error> {
        let refs: Vec<(&str, &str)> = hosts
            .iter()
            .map(|(h, a)| (h.as_str(), a.as_str()))
            .collect();
        let (appliance, epoch) = (self.appliance, self.epoch);
        self.transaction(&refs, |tx, ids| {
            let mut deltas = HashMap::new();
            for (name, _) in hosts {
                deltas.insert(host_id(ids, name)?, watermark_seed(marks, name));
            }
            for statement in sql::watermark_upserts(appliance, epoch, &deltas) {
                tx.query_drop(statement)?;
            }
            tx.query_drop(format!(
                "UPDATE appliances SET last_sync_at = CURRENT_TIMESTAMP(3) WHERE id = {appliance}"
            ))?;
            tx.query_drop(format!(
                "UPDATE buffers SET last_sync_at = CURRENT_TIMESTAMP(3) WHERE appliance_id = {appliance} AND epoch = {epoch}"
            ))?;
            Ok(())
        })
    }

    /// Runs `body` in one transaction after making sure every host of `hosts` has a central
    /// row (looked up in the same transaction, registered when missing: a central host row
    /// deleted by hand or lost in a restore is registered again, never an id 0). A foreign-key
    /// failure (error 1452: a host row vanished during the batch) retries the whole
    /// transaction once; if it fails again it is a server error, retried after backoff, never
    /// a content error that would quarantine the rows. A conflict (1213: a Galera certification
    /// conflict or brute-force abort, at COMMIT or at any statement; 1205: lock wait timeout)
    /// rolls back and retries the whole transaction after a short pause with jitter, up to
    /// [`CONFLICT_ATTEMPTS`] times; then it is a server error. Nothing of a rolled-back attempt
    /// is returned, so nothing of it is marked synced.
    fn transaction<T>(
        &mut self,
        hosts: &[(&str, &str)],
        mut body: impl FnMut(&mut mysql::Transaction<'_>, &HashMap<String, u32>) -> Result<T, TxError>,
    ) -> Result<T, Error> {
        let server = self.server.clone();
        let mut wanted: Vec<(&str, &str)> = hosts.to_vec();
        wanted.sort_unstable();
        wanted.dedup_by_key(|(h, _)| *h);
        let mut host_retried = false;
        let mut conflicts = 0u32;
        loop {
            let result = (|| -> Result<T, TxError> {
                let mut tx = self.conn.start_transaction(TxOpts::default())?;
                let ids = ensure_hosts(&mut tx, self.appliance, &wanted)?;
                let out = body(&mut tx, &ids)?;
                tx.commit()?;
                Ok(out)
            })();
            match result {
                Ok(out) => return Ok(out),
                Err(TxError::Mysql(mysql::Error::MySqlError(m)))
                    if CONFLICT_CODES.contains(&m.code) && conflicts + 1 < CONFLICT_ATTEMPTS =>
                {
                    conflicts += 1;
                    self.conflict_retries += 1;
                    let pause = conflict_pause(conflicts);
                    tracing::info!(server = %server, code = m.code, attempt = conflicts, retry_in = ?pause,
                        "a conflicting write elsewhere in the cluster rolled back the batch; retrying it whole");
                    std::thread::sleep(pause);
                }
                Err(TxError::Mysql(mysql::Error::MySqlError(m)))
                    if CONFLICT_CODES.contains(&m.code) =>
                {
                    return Err(Error::Server {
                        server,
                        message: format!(
                            "ERROR {} ({}): {}; the batch lost {CONFLICT_ATTEMPTS} conflicts in a row and was rolled back",
                            m.code, m.state, m.message
                        ),
                    });
                }
                Err(TxError::Mysql(mysql::Error::MySqlError(m)))
                    if m.code == FOREIGN_KEY_CODE && !host_retried =>
                {
                    host_retried = true;
                    tracing::warn!(server = %server, error = %m.message,
                        "a central host row vanished during a batch; registering the hosts again and retrying");
                }
                Err(TxError::Mysql(mysql::Error::MySqlError(m))) if m.code == FOREIGN_KEY_CODE => {
                    return Err(Error::Server {
                        server,
                        message: format!(
                            "ERROR {} ({}): {}; a central host row keeps vanishing under the batch",
                            m.code, m.state, m.message
                        ),
                    });
                }
                Err(TxError::Mysql(err)) => return Err(classify(&server, err)),
                Err(TxError::Raced(message)) => return Err(Error::Server { server, message }),
                Err(TxError::MissingHost(host)) => {
                    return Err(Error::Schema {
                        server,
                        message: format!(
                            "host '{host}' has no row in table hosts right after registering it"
                        ),
                    });
                }
            }
        }
    }
}

/// Failures inside one write transaction.
enum TxError {
    Mysql(mysql::Error),
    /// Fewer rows inserted than were absent: someone else wrote under this epoch meanwhile.
    Raced(String),
    /// A host had no id after registration (never expected).
    MissingHost(String),
}

impl From<mysql::Error> for TxError {
    fn from(err: mysql::Error) -> TxError {
        TxError::Mysql(err)
    }
}

fn host_id(ids: &HashMap<String, u32>, host: &str) -> Result<u32, TxError> {
    ids.get(pad_key(host))
        .copied()
        .ok_or_else(|| TxError::MissingHost(host.to_string()))
}

/// A host name as the central `utf8mb4_bin` (PAD SPACE) compares it: trailing spaces do not
/// count, so `'box '` (a name version 1 stored untrimmed) is the row of `'box'`.
fn pad_key(name: &str) -> &str {
    name.trim_end_matches(' ')
}

/// The central ids of `hosts` (sorted, unique), registering the ones that have no row; keyed
/// by [`pad_key`].
fn ensure_hosts(
    tx: &mut mysql::Transaction<'_>,
    appliance: u32,
    hosts: &[(&str, &str)],
) -> Result<HashMap<String, u32>, TxError> {
    let select = |names: &[(&str, &str)]| {
        let mut select = format!(
            "SELECT id, CAST(name AS CHAR) FROM hosts WHERE appliance_id = {appliance} AND name IN ("
        );
        for (i, (name, _)) in names.iter().enumerate() {
            if i > 0 {
                select.push(',');
            }
            sql::push_str(&mut select, name);
        }
        select.push(')');
        select
    };
    let mut ids: HashMap<String, u32> = HashMap::new();
    if hosts.is_empty() {
        return Ok(ids);
    }
    let found: Vec<(u32, String)> = tx.query(select(hosts))?;
    ids.extend(
        found
            .into_iter()
            .map(|(id, name)| (pad_key(&name).to_string(), id)),
    );
    let missing: Vec<(&str, &str)> = hosts
        .iter()
        .copied()
        .filter(|(h, _)| !ids.contains_key(pad_key(h)))
        .collect();
    if !missing.is_empty() {
        for statement in sql::hosts_upsert(appliance, &missing) {
            tx.query_drop(statement)?;
        }
        let found: Vec<(u32, String)> = tx.query(select(&missing))?;
        ids.extend(
            found
                .into_iter()
                .map(|(id, name)| (pad_key(&name).to_string(), id)),
        );
    }
    Ok(ids)
}

/// A host's watermark change for one transaction, starting from what the buffer holds for it.
fn watermark_seed(marks: &HashMap<String, HostMark>, host: &str) -> sql::WatermarkDelta {
    let mark = marks.get(host).copied().unwrap_or_default();
    sql::WatermarkDelta {
        first_seq: mark.first_seq.max(1),
        last_seq: mark.last_seq,
        ..Default::default()
    }
}

/// `rows` cut into at most `parts` groups of whole hosts (in name order) of about equal size.
fn split_by_host(rows: &[SyncSample], parts: usize) -> Vec<Vec<&SyncSample>> {
    let mut by_host: std::collections::BTreeMap<&str, Vec<&SyncSample>> = Default::default();
    for row in rows {
        by_host.entry(pad_key(&row.host)).or_default().push(row);
    }
    // Each host goes to the part its middle row falls in: parts of whole hosts, in name
    // order, of about rows.len() / parts rows each.
    let parts = parts.max(1);
    let mut out: Vec<Vec<&SyncSample>> = vec![Vec::new(); parts];
    let mut before = 0;
    for (_, host_rows) in by_host {
        let middle = before + host_rows.len() / 2;
        let part = (middle * parts / rows.len().max(1)).min(parts - 1);
        before += host_rows.len();
        out[part].extend(host_rows);
    }
    out.retain(|part| !part.is_empty());
    out
}

/// Multi-row INSERT of the absent samples and their cores; the samples inserted.
fn insert_samples(
    tx: &mut mysql::Transaction<'_>,
    appliance: u32,
    epoch: i64,
    new: &[&sql::PreparedSample<'_>],
) -> Result<u64, TxError> {
    let statements = sql::sample_inserts(appliance, epoch, new);
    let samples_statements = statements
        .iter()
        .filter(|s| s.starts_with("INSERT INTO samples"))
        .count();
    let mut inserted = 0;
    for (i, statement) in statements.iter().enumerate() {
        tx.query_drop(statement)?;
        if i < samples_statements {
            inserted += tx.affected_rows();
        }
    }
    Ok(inserted)
}

/// MySQL refused `LOAD DATA LOCAL INFILE` itself: 1148 (command not allowed), 4166
/// (MariaDB: local infile capability disabled), 3948 (MySQL: loading local data disabled).
const LOCAL_INFILE_REFUSED: &[u16] = &[1148, 3948, 4166];

/// `LOAD DATA LOCAL INFILE` of the absent samples and their cores, streamed from memory,
/// behind a savepoint; the samples inserted. With `LOCAL` the server cannot stop the
/// transfer, so it treats every row error as `IGNORE` would: a duplicate key or a value it
/// refuses (too long, out of range, NULL in a NOT NULL column, invalid JSON) becomes a
/// warning and the row is skipped or adjusted. So any warning, or a per-core count short of
/// what was sent, rolls back to the savepoint and returns `None`: the caller sends the batch
/// as INSERT, which reports the refusal as the error it is (split, quarantined) or the race
/// as a short count. A server that refuses the command clears `bulk` and returns `None`.
fn load_samples(
    tx: &mut mysql::Transaction<'_>,
    appliance: u32,
    epoch: i64,
    new: &[&sql::PreparedSample<'_>],
    bulk: &mut bool,
) -> Result<Option<u64>, TxError> {
    let files = bulk::samples(appliance, epoch, new);
    tx.query_drop("SAVEPOINT edgemon_bulk")?;
    let samples = match load(tx, "samples", bulk::SAMPLE_COLUMNS, files.samples) {
        Err(mysql::Error::MySqlError(m)) if LOCAL_INFILE_REFUSED.contains(&m.code) => {
            *bulk = false;
            tx.query_drop("ROLLBACK TO SAVEPOINT edgemon_bulk")?;
            return Ok(None);
        }
        other => other?,
    };
    let cores = match (samples.warnings, files.core_rows) {
        (0, 0) => Loaded::default(),
        (0, _) => load(tx, "sample_cores", bulk::CORE_COLUMNS, files.cores)?,
        _ => Loaded::default(),
    };
    if samples.warnings == 0 && cores.warnings == 0 && cores.affected == files.core_rows {
        return Ok(Some(samples.affected));
    }
    let warning: Option<(String, u32, String)> = tx.query_first("SHOW WARNINGS LIMIT 1")?;
    tracing::debug!(
        warning = ?warning,
        samples_warnings = samples.warnings,
        cores_warnings = cores.warnings,
        "LOAD DATA of a batch raised warnings; sending it as INSERT statements instead"
    );
    tx.query_drop("ROLLBACK TO SAVEPOINT edgemon_bulk")?;
    Ok(None)
}

/// What one `LOAD DATA` reported.
#[derive(Debug, Default, Clone, Copy)]
struct Loaded {
    affected: u64,
    warnings: u16,
}

/// Streams `data` as `LOAD DATA LOCAL INFILE` into `table`'s `columns`. The handler answers
/// the server's request with `data`, whatever file name it asks for, and is removed after.
fn load(
    tx: &mut mysql::Transaction<'_>,
    table: &str,
    columns: &str,
    data: Vec<u8>,
) -> Result<Loaded, mysql::Error> {
    let mut data = Some(data);
    tx.set_local_infile_handler(Some(LocalInfileHandler::new(move |_, out| {
        match data.take() {
            Some(data) => out.write_all(&data),
            None => Ok(()),
        }
    })));
    let result = tx.query_drop(bulk::load_statement(table, columns));
    tx.set_local_infile_handler(None);
    result?;
    Ok(Loaded {
        affected: tx.affected_rows(),
        warnings: tx.warnings(),
    })
}

/// The batch inserted every row it found absent, or another writer raced it under this epoch.
fn check_inserted(inserted: u64, new: usize, what: &str, epoch: i64) -> Result<(), TxError> {
    if inserted == new as u64 {
        return Ok(());
    }
    Err(TxError::Raced(format!(
        "inserted {inserted} of {new} new {what}: another writer holds this appliance's epoch {epoch}; \
         the batch was rolled back"
    )))
}

/// Maps a driver error to [`Error`].
pub(super) fn classify(server: &str, error: mysql::Error) -> Error {
    match error {
        mysql::Error::MySqlError(m) if CONTENT_CODES.contains(&m.code) => {
            Error::Content(format!("ERROR {} ({}): {}", m.code, m.state, m.message))
        }
        mysql::Error::MySqlError(m) if SCHEMA_CODES.contains(&m.code) => Error::Schema {
            server: server.to_string(),
            message: format!(
                "ERROR {}: {}; the central schema was altered (a dropped table or column?): restore it",
                m.code, m.message
            ),
        },
        mysql::Error::MySqlError(m) if UNAVAILABLE_CODES.contains(&m.code) => Error::NotReady {
            server: server.split('/').next().unwrap_or(server).to_string(),
            message: format!("ERROR {} ({}): {}", m.code, m.state, m.message),
        },
        mysql::Error::MySqlError(m) => Error::Server {
            server: server.to_string(),
            message: format!("ERROR {} ({}): {}", m.code, m.state, m.message),
        },
        other => Error::Unreachable {
            server: server.split('/').next().unwrap_or(server).to_string(),
            message: other.to_string(),
        },
    }
}

/// The statements of a schema file: `--` comment lines removed, split at `;` ending a line.
fn statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        if line.trim_start().starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            let statement = current.trim().trim_end_matches(';').trim().to_string();
            if !statement.is_empty() {
                out.push(statement);
            }
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

fn first_line(statement: &str) -> &str {
    statement.lines().next().unwrap_or(statement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_splits_into_its_statements() {
        let all = statements(crate::schema::MYSQL);
        let creates = all
            .iter()
            .filter(|s| s.starts_with("CREATE TABLE IF NOT EXISTS"))
            .count();
        assert_eq!(creates, TABLES.len());
        assert!(
            all.iter()
                .any(|s| s.starts_with("CREATE OR REPLACE VIEW sequence_gaps"))
        );
        assert!(
            all.last()
                .is_some_and(|s| s.starts_with("INSERT INTO schema_version"))
        );
        assert!(all.iter().all(|s| !s.ends_with(';') && !s.contains("\n--")));
    }

    #[test]
    fn a_batch_splits_into_parts_of_whole_hosts_of_about_equal_size() {
        let row = |host: &str, seq: i64| SyncSample {
            id: seq,
            host: host.into(),
            address: "a".into(),
            seq,
            collected_at: 0,
            received_at: 0,
            clock_skewed: false,
            cpu: 0.0,
            cores: Ok(Vec::new()),
            mem_used: 0,
            mem_total: 0,
            swap_used: 0,
            swap_total: 0,
            uptime_s: 0,
            boot_time_s: None,
            load: [None; 3],
            hostname: None,
            os: None,
            kernel: None,
            extras: None,
        };
        // Arrival order interleaves the hosts; "c " is host "c" as the central collation sees it.
        let mut rows = Vec::new();
        for seq in 0..10 {
            for host in ["a", "b", "c", "d"] {
                rows.push(row(host, seq));
            }
        }
        rows.push(row("c ", 10));
        let parts = split_by_host(&rows, 2);
        assert_eq!(parts.len(), 2);
        fn hosts(part: &[&SyncSample]) -> Vec<String> {
            let mut h: Vec<String> = part.iter().map(|r| pad_key(&r.host).to_string()).collect();
            h.dedup();
            h
        }
        assert_eq!(hosts(&parts[0]), ["a", "b"]);
        assert_eq!(hosts(&parts[1]), ["c", "d"]);
        assert_eq!(parts[0].len() + parts[1].len(), rows.len());
        assert_eq!(split_by_host(&rows[..1], 2).len(), 1, "one host: one part");
        assert_eq!(
            split_by_host(&rows, 8).len(),
            4,
            "never more parts than hosts"
        );
    }

    #[test]
    fn content_errors_are_told_apart_from_the_rest() {
        let mysql = |code| {
            mysql::Error::MySqlError(mysql::MySqlError {
                state: "22001".into(),
                message: "Data too long for column 'hostname' at row 3".into(),
                code,
            })
        };
        assert!(
            matches!(classify("h:1/db", mysql(1406)), Error::Content(m) if m.contains("hostname"))
        );
        assert!(matches!(
            classify("h:1/db", mysql(1146)),
            Error::Schema { .. }
        ));
        assert!(matches!(
            classify("h:1/db", mysql(1205)),
            Error::Server { .. }
        ));
        // A Galera node out of the primary component: another node should serve.
        let not_ready = classify("h:1/db", mysql(1047));
        assert!(not_ready.is_unavailable(), "{not_ready}");
        assert!(
            not_ready.to_string().starts_with("MySQL at h:1 "),
            "{not_ready}"
        );
        // A lost certification conflict is neither content nor a reason to fail over (the
        // transaction retries it before it ever gets here).
        assert!(CONFLICT_CODES.contains(&1213) && CONFLICT_CODES.contains(&1205));
        assert!(!CONTENT_CODES.iter().any(|c| CONFLICT_CODES.contains(c)));
        assert!(!classify("h:1/db", mysql(1213)).is_unavailable());
        let io = mysql::Error::IoError(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let err = classify("h:1/db", io);
        assert!(matches!(err, Error::Unreachable { .. }));
        assert!(
            err.to_string().starts_with("cannot reach MySQL at h:1:"),
            "{err}"
        );
    }
}
