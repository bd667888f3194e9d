//! The central MySQL database: the only module that knows MySQL.
//!
//! It connects with the timeouts of `sync.timeout` (connect, read and write, so
//! a killed server never hangs the task), pins the session (UTC, strict
//! `sql_mode`, utf8mb4), applies `schema/mysql.sql` when it is missing and
//! refuses a database whose schema is newer than this build, and writes one
//! slice of rows per transaction. It classifies MySQL's errors into what the
//! caller branches on: [`Error::Content`] (split the batch and quarantine the
//! bad rows) versus everything else (drop the connection and back off).
//!
//! It does not read the buffer, decide batch sizes or retry.

use std::collections::HashMap;
use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, TxOpts};

use super::sql;
use crate::buffer::{JournalRow, SyncSample};
use crate::config::secret::Secret;

/// The central schema version this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Tables the schema must hold.
const TABLES: [&str; 8] = [
    "schema_version",
    "appliances",
    "hosts",
    "samples",
    "sample_cores",
    "collection_errors",
    "alert_events",
    "drops",
];

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

/// MySQL error codes that mean "these values", so bisecting can isolate the rows.
const CONTENT_CODES: &[u16] = &[
    1048, // column cannot be null
    1264, // out of range value
    1265, // data truncated
    1292, // incorrect datetime value
    1300, // invalid character string
    1366, // incorrect value for column
    1367, // illegal value during parsing
    1406, // data too long
    1452, // foreign key fails
    1690, // value out of range in an expression
    3140, // invalid JSON (MySQL)
    3819, // check constraint violated (MySQL)
    4025, // check constraint failed (MariaDB: JSON_VALID on JSON columns)
];

/// Codes that mean the schema was altered under us.
const SCHEMA_CODES: &[u16] = &[1146, 1054, 1356];

/// Codes of refused credentials or database access.
const CREDENTIAL_CODES: &[u16] = &[1044, 1045, 1049, 1698];

/// A connection to the central database, registered as one appliance.
pub struct Central {
    conn: Conn,
    server: String,
    appliance: u32,
    /// Central ids of host names, filled only after the COMMIT that created them.
    hosts: HashMap<String, u32>,
}

impl Central {
    /// Connects, checks (or applies) the schema and registers appliance `appliance`.
    pub fn connect(url: &Secret, timeout: Duration, appliance: &str) -> Result<Central, Error> {
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
        let conn = Conn::new(builder).map_err(|e| match &e {
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
        let mut central = Central {
            conn,
            server: format!("{server}/{database}"),
            appliance: 0,
            hosts: HashMap::new(),
        };
        central.ensure_schema(appliance)?;
        central.appliance = central.register(appliance)?;
        Ok(central)
    }

    /// `host:port/database`, for messages.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Applies the schema when missing; refuses a newer or incomplete one.
    fn ensure_schema(&mut self, appliance: &str) -> Result<(), Error> {
        let server = self.server.clone();
        let e = |err| classify(&server, err);
        let found = self.schema_version()?;
        if found.is_some_and(|v| v > SCHEMA_VERSION) {
            return Err(Error::Schema {
                server,
                message: format!(
                    "version {} is newer than this edgemon supports ({SCHEMA_VERSION}); upgrade edgemon",
                    found.unwrap_or_default()
                ),
            });
        }
        if found.is_none() {
            // Serialise appliances that find the database empty at the same moment.
            let locked: Option<i64> = self
                .conn
                .query_first("SELECT GET_LOCK('edgemon.schema', 60)")
                .map_err(e)?;
            if locked != Some(1) {
                return Err(Error::Schema {
                    server,
                    message: "could not take the schema lock 'edgemon.schema' within 60 s".into(),
                });
            }
            let applied = self.apply_schema(appliance);
            let _ = self.conn.query_drop("DO RELEASE_LOCK('edgemon.schema')");
            applied?;
            tracing::info!(server = %self.server, version = SCHEMA_VERSION, "applied the central schema");
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
                    found.unwrap_or(SCHEMA_VERSION)
                ),
            });
        }
        Ok(())
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

    fn apply_schema(&mut self, appliance: &str) -> Result<(), Error> {
        let server = self.server.clone();
        let mut set = String::from("SET @edgemon_appliance = ");
        sql::push_str(&mut set, appliance);
        self.conn
            .query_drop(set)
            .map_err(|e| classify(&server, e))?;
        for statement in statements(crate::schema::MYSQL) {
            self.conn
                .query_drop(&statement)
                .map_err(|e| Error::Schema {
                    server: server.clone(),
                    message: format!(
                        "applying schema/mysql.sql failed: {e} (statement: {})",
                        first_line(&statement)
                    ),
                })?;
        }
        Ok(())
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

    /// Writes samples (with hosts and per-core values) in one transaction and commits.
    pub fn write_samples(&mut self, rows: &[SyncSample]) -> Result<(), Error> {
        let hosts: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.host.as_str(), r.address.as_str()))
            .collect();
        self.write(&hosts, |appliance, ids| {
            sql::sample_inserts(appliance, ids, rows)
        })
    }

    /// Writes journal rows of one kind in one transaction and commits.
    pub fn write_journal(&mut self, rows: &[JournalRow]) -> Result<(), Error> {
        let hosts: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.host.as_str(), r.address.as_str()))
            .collect();
        self.write(&hosts, |appliance, ids| {
            sql::journal_inserts(appliance, ids, rows)
        })
    }

    /// Records the time of this appliance's last successful pass.
    pub fn touch(&mut self) -> Result<(), Error> {
        let server = self.server.clone();
        self.conn
            .query_drop(format!(
                "UPDATE appliances SET last_sync_at = CURRENT_TIMESTAMP(3) WHERE id = {}",
                self.appliance
            ))
            .map_err(|e| classify(&server, e))
    }

    fn write(
        &mut self,
        hosts: &[(&str, &str)],
        statements: impl FnOnce(u32, &HashMap<String, u32>) -> Vec<String>,
    ) -> Result<(), Error> {
        let server = self.server.clone();
        let e = |err| classify(&server, err);
        let mut new: Vec<(&str, &str)> = hosts
            .iter()
            .copied()
            .filter(|(h, _)| !self.hosts.contains_key(*h))
            .collect();
        new.sort_unstable();
        new.dedup_by_key(|(h, _)| *h);
        let mut ids = self.hosts.clone();
        let mut tx = self.conn.start_transaction(TxOpts::default()).map_err(e)?;
        if !new.is_empty() {
            for statement in sql::hosts_upsert(self.appliance, &new) {
                tx.query_drop(statement).map_err(e)?;
            }
            let mut select = format!(
                "SELECT id, CAST(name AS CHAR) FROM hosts WHERE appliance_id = {} AND name IN (",
                self.appliance
            );
            for (i, (name, _)) in new.iter().enumerate() {
                if i > 0 {
                    select.push(',');
                }
                sql::push_str(&mut select, name);
            }
            select.push(')');
            let found: Vec<(u32, String)> = tx.query(select).map_err(e)?;
            ids.extend(found.into_iter().map(|(id, name)| (name, id)));
        }
        for statement in statements(self.appliance, &ids) {
            tx.query_drop(statement).map_err(e)?;
        }
        tx.commit().map_err(e)?;
        self.hosts = ids;
        Ok(())
    }
}

/// Maps a driver error to [`Error`].
fn classify(server: &str, error: mysql::Error) -> Error {
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
        let io = mysql::Error::IoError(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let err = classify("h:1/db", io);
        assert!(matches!(err, Error::Unreachable { .. }));
        assert!(
            err.to_string().starts_with("cannot reach MySQL at h:1:"),
            "{err}"
        );
    }
}
