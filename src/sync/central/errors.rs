//! The classes of MySQL's errors that the sync loop branches on: content (bisect and
//! quarantine), unavailable (another server), schema, credentials, conflicts (retry the whole
//! transaction with jitter) and the rest (back off).

use std::time::Duration;

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
pub(super) const FOREIGN_KEY_CODE: u16 = 1452;

/// Codes that mean the schema was altered under us.
const SCHEMA_CODES: &[u16] = &[1146, 1054, 1356];

/// Codes of refused credentials or database access.
pub(super) const CREDENTIAL_CODES: &[u16] = &[1044, 1045, 1049, 1698];

/// Codes of a transaction that lost a conflict and was rolled back: a Galera certification
/// conflict or brute-force abort (1213, also at COMMIT) or a lock wait timeout (1205). The whole
/// transaction is tried again; neither the rows nor the server are at fault.
pub(super) const CONFLICT_CODES: &[u16] = &[1213, 1205];

/// Attempts of one transaction that keeps losing conflicts before it is a server error.
pub(super) const CONFLICT_ATTEMPTS: u32 = 6;

/// The first retry after a conflict waits up to this long (with jitter), doubling each time.
const CONFLICT_PAUSE: Duration = Duration::from_millis(20);

/// Whether `error` is a lost conflict ([`CONFLICT_CODES`]): the whole transaction may be
/// tried again after [`conflict_pause`]. Shared by the batches and `prune.rs`.
pub(in crate::sync) fn is_conflict(error: &mysql::Error) -> bool {
    matches!(error, mysql::Error::MySqlError(m) if CONFLICT_CODES.contains(&m.code))
}

/// The pause before the `conflicts`-th retry of a transaction that lost a conflict: random
/// (so two writers that collided do not collide again in step) below [`CONFLICT_PAUSE`],
/// doubling with each retry.
pub(in crate::sync) fn conflict_pause(conflicts: u32) -> Duration {
    let ceiling = CONFLICT_PAUSE * (1 << conflicts.saturating_sub(1).min(10));
    ceiling.mul_f64(rand::random::<f64>())
}

/// Codes that mean the server cannot serve this connection now, so another node should:
/// 1047 (a Galera node not in the primary component or not synced), 1053 (server shutdown in
/// progress), 1927 (connection killed, e.g. by a shutdown), 1040 (too many connections).
const UNAVAILABLE_CODES: &[u16] = &[1047, 1053, 1927, 1040];

/// Maps a driver error to [`Error`].
pub(in crate::sync) fn classify(server: &str, error: mysql::Error) -> Error {
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

#[cfg(test)]
mod tests {
    use super::*;

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
