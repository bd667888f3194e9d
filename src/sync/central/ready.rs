//! Galera readiness: a `wsrep_on` node must be ready, `Synced` and in the primary component
//! before this connection works on it, and then reads with `wsrep_sync_wait = 1`.

use mysql::prelude::Queryable;

use super::{Central, Error, classify};

impl Central {
    /// A Galera node (`wsrep_on = ON`) must be ready (`wsrep_ready = ON`), `Synced` and in the
    /// primary component; any other server is a plain MySQL or MariaDB and is fine. On a Galera
    /// node the session's reads wait until the node has applied what the cluster committed
    /// before them (`wsrep_sync_wait = 1`), so after a failover a batch committed through the
    /// dead node is seen as present, not sent as new.
    pub(super) fn check_ready(&mut self, server: &str) -> Result<(), Error> {
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
}
