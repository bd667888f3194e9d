//! Readiness: a read-only server (`read_only`, `super_read_only` or `innodb_read_only` ON: a
//! replica, a demoted or maintenance node) is never written to, whatever the account may do
//! there — sync and prune go to the next server; a Galera (`wsrep_on`) node must be ready,
//! `Synced` and in the primary component before this connection works on it, and then reads
//! with `wsrep_sync_wait = 1`.

use mysql::prelude::Queryable;

use super::{Central, Error, classify};

impl Central {
    /// [`Central::check_ready`] again on this open connection, at the start of a pass: a
    /// server made read-only (a primary demoted to replica) or a Galera node that left the
    /// primary component since the connection opened is not ready any more, even for an
    /// account that could still write there.
    pub fn recheck_ready(&mut self) -> Result<(), Error> {
        let server = self.server().to_string();
        self.check_ready(&server)
    }

    /// A Galera node (`wsrep_on = ON`) must be ready (`wsrep_ready = ON`), `Synced` and in the
    /// primary component; any other server is a plain MySQL or MariaDB and is fine. On a Galera
    /// node the session's reads wait until the node has applied what the cluster committed
    /// before them (`wsrep_sync_wait = 1`), so after a failover a batch committed through the
    /// dead node is seen as present, not sent as new.
    ///
    /// A read-only server is not ready either: an account with `SUPER` or `READ_ONLY ADMIN`
    /// could write to a replica (breaking its replication, and the rows would never reach the
    /// primary), and one without would fail every batch.
    pub(super) fn check_ready(&mut self, server: &str) -> Result<(), Error> {
        // MySQL has no wsrep_on, MariaDB says OFF unless it runs as a Galera node; MariaDB has
        // no super_read_only. Absent variables are simply not listed.
        let variables: Vec<(String, String)> = self
            .conn
            .query(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
                 ('wsrep_on', 'read_only', 'super_read_only', 'innodb_read_only')",
            )
            .map_err(|e| classify(server, e))?;
        let on = |name: &str| {
            variables.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case(name) && (v.eq_ignore_ascii_case("ON") || v == "1")
            })
        };
        let read_only: Vec<&str> = ["read_only", "super_read_only", "innodb_read_only"]
            .into_iter()
            .filter(|name| on(name))
            .collect();
        if !read_only.is_empty() {
            return Err(Error::NotReady {
                server: server.to_string(),
                message: format!(
                    "read-only server ({} = ON): a replica or read-only node is never written \
                     to; list the primary in sync.urls",
                    read_only.join(", ")
                ),
            });
        }
        if !on("wsrep_on") {
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
}
