//! The session: connecting with `sync.timeout` everywhere, the pinned session settings (UTC,
//! strict `sql_mode`, utf8mb4, READ COMMITTED, and the bounds of a session's life on the server:
//! [`session_bounds`]), the appliance and buffer registration, and the accessors the other parts
//! of sync use.

use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};

use super::super::sql;
use super::errors::CREDENTIAL_CODES;
use super::{Bulk, Central, Error, classify};
use crate::config::secret::Secret;

/// The statements that bound a session's life on the server, for a client whose read timeout
/// is `timeout` and whose connection sits unused for up to `idle` between passes:
/// - `innodb_lock_wait_timeout` half the read timeout (1 to 50 s): a batch waiting on a row
///   lock gets error 1205, retried whole as a conflict, instead of the client giving up first
///   and leaving an orphan transaction behind;
/// - `net_read_timeout` and `net_write_timeout` the read timeout: a client gone mid-statement
///   (a `LOAD DATA LOCAL` stream, a large result) ends the session;
/// - `wait_timeout` `idle` plus twice the read timeout, at least a minute more: a session whose
///   client vanished between statements (a silent partition mid-transaction) ends by itself,
///   rolling back and freeing its locks, instead of after the server's 8 hours; a connection
///   kept between passes is never ended under the task.
pub(super) fn session_bounds(timeout: Duration, idle: Duration) -> Vec<String> {
    let secs = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let read = secs(timeout).max(1);
    let lock_wait = (read / 2).clamp(1, 50);
    let wait = secs(idle) + (2 * read).max(60);
    vec![
        format!("SET SESSION innodb_lock_wait_timeout = {lock_wait}"),
        format!("SET SESSION net_read_timeout = {read}"),
        format!("SET SESSION net_write_timeout = {read}"),
        format!("SET SESSION wait_timeout = {wait}"),
    ]
}

impl Central {
    /// Connects, checks (applies, or upgrades) the schema and registers appliance `appliance`
    /// with buffer `epoch`. Warns when another buffer synced under the same appliance lately.
    /// `idle` is the longest the connection may sit unused between two passes (the server ends
    /// it some time after that: [`session_bounds`]).
    pub fn connect(
        url: &Secret,
        timeout: Duration,
        idle: Duration,
        appliance: &str,
        epoch: i64,
    ) -> Result<Central, Error> {
        let (mut central, builder, server) = Central::open(url, timeout, idle, epoch)?;
        central.check_ready(&server)?;
        central.ensure_schema(appliance, &builder)?;
        central.appliance = central.register(appliance)?;
        central.register_buffer(appliance)?;
        Ok(central)
    }

    /// Opens the session (timeouts, keepalive, character set, UTC, strict mode, READ
    /// COMMITTED) without touching the schema: the part [`Central::connect`] and
    /// [`Central::connect_maintenance`] share. Returns the builder (the schema lock needs a
    /// second session) and `host:port` for messages. Sessions given up earlier on the same
    /// node are killed first ([`super::orphans`]).
    pub(super) fn open(
        url: &Secret,
        timeout: Duration,
        idle: Duration,
        epoch: i64,
    ) -> Result<(Central, OptsBuilder, String), Error> {
        let opts = Opts::from_url(url.expose()).map_err(|e| Error::Url(e.to_string()))?;
        let server = format!("{}:{}", opts.get_ip_or_hostname(), opts.get_tcp_port());
        let user = opts.get_user().unwrap_or("").to_string();
        let database = opts.get_db_name().unwrap_or("").to_string();
        let mut init = vec![
            "SET NAMES utf8mb4".to_string(),
            "SET time_zone = '+00:00'".to_string(),
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'".to_string(),
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".to_string(),
        ];
        init.extend(session_bounds(timeout, idle));
        let builder = OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .tcp_connect_timeout(Some(timeout))
            .read_timeout(Some(timeout))
            .write_timeout(Some(timeout))
            .tcp_keepalive_time_ms(Some(30_000))
            .init(init);
        let mut conn = Conn::new(builder.clone()).map_err(|e| match &e {
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
        let session = super::orphans::start(&mut conn, &server);
        let central = Central {
            session,
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
    /// Connects for maintenance (`edgemon central prune`): the session and the schema check
    /// (apply, upgrade) of [`Central::connect`], but nothing is registered; the appliance is
    /// only looked up (`None`: it never synced to this database).
    pub fn connect_maintenance(
        url: &Secret,
        timeout: Duration,
        appliance: &str,
    ) -> Result<(Central, Option<u32>), Error> {
        let (mut central, builder, server) = Central::open(url, timeout, timeout, 0)?;
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
    pub(in crate::sync) fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// The appliance's central id and the buffer's epoch this connection writes under.
    pub(in crate::sync) fn identity(&self) -> (u32, i64) {
        (self.appliance, self.epoch)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_waits_on_locks_less_than_the_client_and_outlives_the_idle_time() {
        let s = Duration::from_secs;
        assert_eq!(
            session_bounds(s(30), s(60)),
            [
                "SET SESSION innodb_lock_wait_timeout = 15",
                "SET SESSION net_read_timeout = 30",
                "SET SESSION net_write_timeout = 30",
                "SET SESSION wait_timeout = 120",
            ]
        );
        // Sub-second and tiny timeouts still wait at least a second; lock waits stay at
        // most InnoDB's default; a long idle time keeps the connection between passes.
        let short = session_bounds(Duration::from_millis(1500), s(3600));
        assert_eq!(short[0], "SET SESSION innodb_lock_wait_timeout = 1");
        assert_eq!(short[3], "SET SESSION wait_timeout = 3660");
        let long = session_bounds(s(600), s(1));
        assert_eq!(long[0], "SET SESSION innodb_lock_wait_timeout = 50");
        assert_eq!(long[3], "SET SESSION wait_timeout = 1201");
    }
}
