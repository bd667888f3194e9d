//! Sessions given up, killed on the server before their batch is sent again.
//!
//! A silent partition mid-batch leaves the server's side of the session alive (until its
//! `wait_timeout`) inside an open transaction, holding row locks on the batch's keys and the
//! hosts' watermark rows; the same batch sent again over a new connection would wait on them.
//! So every session of this process is identified when it opens (`CONNECTION_ID()`, the node
//! as it names itself, `@@hostname:@@port`, and when that node booted), recorded here when it
//! is dropped, and the next session opened on the same node runs `KILL CONNECTION` on each
//! recorded id before anything else: the orphan's transaction rolls back and its locks are
//! freed at once. A thread already gone (1094, the ordinary case after a clean close) is
//! fine. An id is only ever killed on the node it was taken from (a Galera node's ids are
//! its own; a proxy in front of several nodes is told apart by the node's own name) and in
//! the same boot of it (ids start again at 1 after a restart, and the orphan died with it).

use std::sync::Mutex;

use mysql::Conn;
use mysql::prelude::Queryable;

/// One session as the server knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Session {
    /// `@@hostname:@@port` of the node.
    node: String,
    /// When the node booted, Unix seconds by its clock (its `UNIX_TIMESTAMP()` less `Uptime`).
    booted: i64,
    /// `CONNECTION_ID()`.
    id: u64,
}

/// Sessions dropped by this process and not yet killed, oldest first.
static GIVEN_UP: Mutex<Vec<Session>> = Mutex::new(Vec::new());

/// At most this many given-up sessions are remembered (the oldest is forgotten first; its
/// `wait_timeout` still ends it).
const KEPT: usize = 64;

/// Two readings of a node's boot time this far apart (seconds) are the same boot.
const BOOT_SLACK: i64 = 2;

/// MySQL's "Unknown thread id": the session already ended.
const UNKNOWN_THREAD: u16 = 1094;

/// Identifies the session of `conn` and kills the sessions given up on the same node; `None`
/// when the server does not say who it is (the session is then never killed by id; its
/// `wait_timeout` ends it). Never fails the connection: what cannot be killed is logged.
pub(super) fn start(conn: &mut Conn, server: &str) -> Option<Session> {
    let me = identify(conn).map_err(|err| {
        tracing::warn!(%server, error = %err,
            "cannot read this session's CONNECTION_ID(); it cannot be killed if it is given up");
    });
    let me = me.ok()?;
    let orphans: Vec<Session> = {
        let mut given_up = GIVEN_UP.lock().unwrap_or_else(|p| p.into_inner());
        let (here, elsewhere) = given_up.drain(..).partition(|s| s.node == me.node);
        *given_up = elsewhere;
        here
    };
    for orphan in orphans {
        if (orphan.booted - me.booted).abs() > BOOT_SLACK || orphan.id == me.id {
            continue; // from an earlier boot of the node: that session died with it
        }
        match conn.query_drop(format!("KILL CONNECTION {}", orphan.id)) {
            Ok(()) => tracing::warn!(%server, node = %me.node, session = orphan.id,
                "killed a session given up after a timeout or a lost connection (it held its batch's locks)"),
            Err(mysql::Error::MySqlError(m)) if m.code == UNKNOWN_THREAD => {}
            Err(err) => tracing::warn!(%server, node = %me.node, session = orphan.id, error = %err,
                "cannot kill a session given up; it ends at its wait_timeout"),
        }
    }
    Some(me)
}

/// Records `session` as given up (its connection was dropped: after an error, or closed).
pub(super) fn give_up(session: Session) {
    let mut given_up = GIVEN_UP.lock().unwrap_or_else(|p| p.into_inner());
    given_up.push(session);
    if given_up.len() > KEPT {
        let excess = given_up.len() - KEPT;
        given_up.drain(..excess);
    }
}

fn identify(conn: &mut Conn) -> Result<Session, String> {
    let row: Option<(u64, String, i64)> = conn
        .query_first("SELECT CONNECTION_ID(), CONCAT(@@hostname, ':', @@port), UNIX_TIMESTAMP()")
        .map_err(|e| e.to_string())?;
    let uptime: Option<(String, i64)> = conn
        .query_first("SHOW GLOBAL STATUS LIKE 'Uptime'")
        .map_err(|e| e.to_string())?;
    match (row, uptime) {
        (Some((id, node, now)), Some((_, uptime))) => Ok(Session {
            node,
            booted: now - uptime,
            id,
        }),
        _ => Err("the server named no connection id, host or uptime".into()),
    }
}
