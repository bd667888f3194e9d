//! Sync into a three-node MariaDB Galera cluster started by the harness
//! (`support::galera`), through one node's URL (`sync.url` names one
//! server): every sample is readable on another node exactly once; a node
//! killed with SIGKILL is evicted while sync to a surviving node goes on,
//! and it rejoins by IST holding every row.
//!
//! One cluster serves every assertion: a start costs about 10 s on two
//! cores. Reads on the other nodes use `wsrep_sync_wait = 1`, so they see
//! every write the cluster committed before them (Galera applies
//! asynchronously on the other nodes).

use std::time::Duration;

use edgemon::sync::SyncTask;
use mysql::prelude::Queryable;

use crate::skip_or_fail;
use crate::support::galera::{GaleraCluster, GaleraNode};
use crate::support::{temp_dir, wait_until};
use crate::sync::{
    buffer_config, buffer_lines, central_lines_on, digest, drain, seed, sync_config, unsynced,
};

/// Generous: the machine has two cores and cargo runs tests in parallel.
const PATIENCE: Duration = Duration::from_secs(120);

/// Node `node` holds exactly the buffer's samples of `appliance` (every
/// field, each sample once) and no unexplained sequence gap.
fn assert_node_complete(node: &GaleraNode, buffer: &std::path::Path, appliance: &str, what: &str) {
    let local = digest(buffer_lines(buffer));
    let mut conn = node
        .synced_conn()
        .unwrap_or_else(|err| panic!("{what}: {err:#}"));
    let central = digest(central_lines_on(&mut conn, appliance, None));
    assert!(local.0 > 0);
    assert_eq!(central, local, "{what}: the node differs from the buffer");
    let distinct: Option<i64> = conn
        .query_first("SELECT COUNT(DISTINCT host_id, seq) - COUNT(*) FROM samples")
        .expect("count samples");
    assert_eq!(distinct, Some(0), "{what}: a sample is stored twice");
    let gaps: Vec<mysql::Row> = conn.query("SELECT * FROM sequence_gaps").expect("gap view");
    assert!(
        gaps.is_empty(),
        "{what}: unexplained sequence gaps: {gaps:?}"
    );
}

#[test]
fn sync_through_one_node_reaches_every_node_and_survives_a_killed_node() {
    let mut cluster = skip_or_fail!(GaleraCluster::start(3));
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 4, 0, 25);

    // 1. Sync through node 1; node 3 holds every sample exactly once.
    let task = SyncTask::new(
        &sync_config(&cluster.node(1).url(), 16),
        &buffer_config(&path),
        "site-g",
    );
    let report = drain(&task);
    assert_eq!(report.samples, 4 * 25 - 5);
    assert_eq!(unsynced(&path), 0);
    assert_node_complete(
        cluster.node(3),
        &path,
        "site-g",
        "node 3 after the first drain",
    );

    // 2. kill -9 node 2: the cluster evicts it, sync to node 1 goes on.
    cluster.kill(2).expect("kill node 2");
    seed(&path, 4, 25, 25);
    let report = drain(&task);
    assert_eq!(report.samples, 4 * 25 - 5);
    assert_eq!(unsynced(&path), 0);
    let evicted = wait_until(PATIENCE, || {
        cluster
            .node(1)
            .status("wsrep_cluster_size")
            .is_ok_and(|n| n == "2")
    });
    assert!(evicted, "node 1 still counts node 2:\n{}", cluster.logs());
    assert_eq!(
        cluster
            .node(1)
            .status("wsrep_cluster_status")
            .expect("status"),
        "Primary"
    );
    assert_node_complete(cluster.node(3), &path, "site-g", "node 3 without node 2");

    // 3. Node 2 rejoins by IST (not a full copy) and holds every row.
    cluster.restart(2).expect("restart node 2");
    let log = cluster.node(2).log();
    assert!(
        log.contains("Receiving IST") || log.contains("IST received"),
        "node 2 did not rejoin by IST:\n{}",
        cluster.logs()
    );
    assert_node_complete(cluster.node(2), &path, "site-g", "node 2 after its IST");
    let rejoined = wait_until(PATIENCE, || {
        cluster
            .node(1)
            .status("wsrep_cluster_size")
            .is_ok_and(|n| n == "3")
    });
    assert!(
        rejoined,
        "node 1 does not count node 2 again:\n{}",
        cluster.logs()
    );
}
