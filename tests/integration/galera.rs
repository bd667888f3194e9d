//! Sync into a three-node MariaDB Galera cluster started by the harness
//! (`support::galera`), with all three nodes listed in `sync.urls`:
//!
//! 1. the first node listed is used, and every sample is readable on
//!    another node exactly once;
//! 2. two appliances writing through different nodes at once, while a third
//!    node keeps rewriting the watermark rows both touch, lose certification
//!    conflicts (1213), retry the whole batch, and lose nothing: both end
//!    complete, nothing quarantined;
//! 3. the node in use is killed with SIGKILL in the middle of a drain: the
//!    same pass fails over, and the cluster ends with exactly the buffer's
//!    samples, no duplicates, nothing unexplained in the completeness view;
//! 4. the killed node rejoins by IST and the next pass uses it again;
//! 5. a node cut off from the cluster (`wsrep_ready = OFF`) is skipped, by
//!    a connection open when it was cut off (error 1047) and by a new one
//!    (which asks the node's state first).
//!
//! One cluster serves every assertion: a start costs about 10 s on two
//! cores. Reads on the other nodes use `wsrep_sync_wait = 1`, so they see
//! every write the cluster committed before them (Galera applies
//! asynchronously on the other nodes).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use edgemon::buffer::StatusReader;
use edgemon::config::SyncConfig;
use edgemon::config::secret::Secret;
use edgemon::sync::SyncTask;
use mysql::prelude::Queryable;

use crate::skip_or_fail;
use crate::support::galera::{GaleraCluster, GaleraNode};
use crate::support::{Edgemon, temp_dir, wait_until};
use crate::sync::{
    buffer_config, buffer_lines, central_lines_on, digest, drain, seed, sync_config, unsynced,
};

/// Generous: the machine has two cores and cargo runs tests in parallel.
const PATIENCE: Duration = Duration::from_secs(120);

/// A sync configuration listing `nodes` of `cluster`, in that order.
fn listing(cluster: &GaleraCluster, nodes: &[usize], batch_size: usize) -> SyncConfig {
    let mut config = sync_config(&cluster.node(nodes[0]).url(), batch_size);
    config.urls = nodes
        .iter()
        .map(|&n| Secret::new(cluster.node(n).url()))
        .collect();
    config
}

/// Node `node`'s URL as sync reports it (password masked).
fn shown(node: &GaleraNode) -> String {
    node.url().replace("edgemon:edgemon@", "edgemon:****@")
}

/// Node `node` holds exactly the buffer's samples of `appliance` (every
/// field, each sample once), no unexplained sequence gap, and the
/// completeness view explains every sample of `appliance`.
fn assert_node_complete(node: &GaleraNode, buffer: &Path, appliance: &str, what: &str) {
    let local = digest(buffer_lines(buffer));
    let mut conn = node
        .synced_conn()
        .unwrap_or_else(|err| panic!("{what}: {err:#}"));
    let central = digest(central_lines_on(&mut conn, appliance, None));
    assert!(local.0 > 0);
    assert_eq!(central, local, "{what}: the node differs from the buffer");
    let distinct: Option<i64> = conn
        .query_first(
            "SELECT COUNT(DISTINCT appliance_id, epoch, host_id, seq) - COUNT(*) FROM samples",
        )
        .expect("count samples");
    assert_eq!(distinct, Some(0), "{what}: a sample is stored twice");
    let gaps: Vec<mysql::Row> = conn.query("SELECT * FROM sequence_gaps").expect("gap view");
    assert!(
        gaps.is_empty(),
        "{what}: unexplained sequence gaps: {gaps:?}"
    );
    let unexplained: Option<i64> = conn
        .exec_first(
            "SELECT CAST(COALESCE(SUM(unexplained), 0) AS SIGNED) FROM completeness WHERE appliance = ?",
            (appliance,),
        )
        .expect("completeness view");
    assert_eq!(
        unexplained,
        Some(0),
        "{what}: the completeness view shows loss"
    );
}

/// `wsrep_local_cert_failures + wsrep_local_bf_aborts` of node `node`.
fn conflicts_on(node: &GaleraNode) -> u64 {
    ["wsrep_local_cert_failures", "wsrep_local_bf_aborts"]
        .iter()
        .map(|v| {
            node.status(v)
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        })
        .sum()
}

#[test]
fn sync_into_a_listed_cluster_fails_over_retries_conflicts_and_returns_to_a_rejoined_node() {
    let mut cluster = skip_or_fail!(GaleraCluster::start(3));
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 4, 0, 25);

    // 1. All three listed: node 1 is used; node 3 holds every sample exactly once.
    let task = SyncTask::new(
        &listing(&cluster, &[1, 2, 3], 16),
        &buffer_config(&path),
        "site-g",
    );
    let report = drain(&task);
    assert_eq!(report.samples, 4 * 25 - 5);
    assert_eq!(
        report.server.as_deref(),
        Some(shown(cluster.node(1)).as_str())
    );
    assert_eq!(report.failovers, 0);
    assert_eq!(report.servers.len(), 3);
    assert_eq!(unsynced(&path), 0);
    assert_node_complete(
        cluster.node(3),
        &path,
        "site-g",
        "node 3 after the first drain",
    );

    // 2. Two appliances at once, through nodes 1 and 3, while node 2 keeps rewriting the
    // watermark rows both batches update: certification conflicts, retried, nothing lost.
    let other = dir.path().join("other.sqlite");
    seed(&path, 4, 25, 150);
    seed(&other, 4, 0, 150);
    let task_b = SyncTask::new(
        &listing(&cluster, &[3, 2, 1], 8),
        &buffer_config(&other),
        "site-h",
    );
    let before = conflicts_on(cluster.node(1)) + conflicts_on(cluster.node(3));
    let done = AtomicBool::new(false);
    let (a, b) = std::thread::scope(|s| {
        let disturber = s.spawn(|| {
            let mut conn = cluster.node(2).conn().expect("connect to node 2");
            let mut writes = 0u64;
            while !done.load(Ordering::Relaxed) {
                // Conflicts with a batch that upserts these rows on another node; losing
                // itself (1213) is fine.
                if conn
                    .query_drop("UPDATE watermarks SET updated_at = updated_at + INTERVAL 1 SECOND")
                    .is_ok()
                {
                    writes += 1;
                }
                std::thread::sleep(Duration::from_millis(30));
            }
            writes
        });
        let a = s.spawn(|| task.drain(&AtomicBool::new(false), &mut |_| {}));
        let b = s.spawn(|| task_b.drain(&AtomicBool::new(false), &mut |_| {}));
        let a = a.join().expect("appliance a");
        let b = b.join().expect("appliance b");
        done.store(true, Ordering::Relaxed);
        assert!(disturber.join().expect("disturber") > 0);
        (a, b)
    });
    let a = a.unwrap_or_else(|err| panic!("appliance a lost a batch: {err}"));
    let b = b.unwrap_or_else(|err| panic!("appliance b lost a batch: {err}"));
    assert_eq!(a.samples, 4 * 150 - 30);
    assert_eq!(b.samples, 4 * 150 - 30);
    assert_eq!((a.quarantined, b.quarantined), (0, 0));
    assert_eq!(a.server.as_deref(), Some(shown(cluster.node(1)).as_str()));
    assert_eq!(b.server.as_deref(), Some(shown(cluster.node(3)).as_str()));
    let after = conflicts_on(cluster.node(1)) + conflicts_on(cluster.node(3));
    let retried = a.conflict_retries + b.conflict_retries;
    eprintln!(
        "conflicts: {retried} batch retries; cert failures + BF aborts on nodes 1 and 3: {}",
        after - before
    );
    assert!(
        retried > 0,
        "no batch lost a certification conflict (Galera counted {})",
        after - before
    );
    assert_eq!((unsynced(&path), unsynced(&other)), (0, 0));
    assert_node_complete(cluster.node(2), &path, "site-g", "appliance a on node 2");
    assert_node_complete(cluster.node(2), &other, "site-h", "appliance b on node 2");

    // 3. kill -9 the node in use (found by its session) in the middle of a drain: the same
    // pass fails over, and the cluster ends with exactly the buffer's samples.
    seed(&path, 8, 175, 300);
    let progress = AtomicU64::new(0);
    let killed = std::thread::scope(|s| {
        let drained = s.spawn(|| {
            task.drain(&AtomicBool::new(false), &mut |p| {
                progress.store(p.done, Ordering::Relaxed)
            })
        });
        assert!(
            wait_until(PATIENCE, || progress.load(Ordering::Relaxed) >= 100),
            "the drain does not progress"
        );
        let in_use = cluster
            .node_with_session("edgemon")
            .expect("a node holds the sync session");
        let done_at_kill = progress.load(Ordering::Relaxed);
        cluster.kill(in_use).expect("kill the node in use");
        let killed_at = std::time::Instant::now();
        let report = drained
            .join()
            .expect("drain thread")
            .unwrap_or_else(|err| panic!("the drain did not fail over: {err}"));
        assert!(
            report.remaining == 0 && report.failovers >= 1,
            "the pass did not fail over: {report:?}"
        );
        // A figure for the record, not an assertion: the rest of the drain after the kill.
        eprintln!(
            "kill -9 after {done_at_kill} of {} samples: the pass failed over and finished {:?} later",
            report.samples,
            killed_at.elapsed()
        );
        assert_ne!(
            report.server.as_deref(),
            Some(shown(cluster.node(in_use)).as_str())
        );
        let dead = &report.servers[in_use - 1];
        assert!(dead.last_error.is_some() && !dead.in_use, "{dead:?}");
        in_use
    });
    assert_eq!(killed, 1, "the first node listed was not the one in use");
    // `edgemon status` reads each server's health from the buffer.
    let status = StatusReader::open(&path)
        .and_then(|r| r.status())
        .expect("read the status");
    let servers = status.sync_servers.unwrap_or_default();
    assert!(
        servers.contains(&format!("{}: failed", shown(cluster.node(1))))
            && servers.contains("(in use): ok"),
        "{servers}"
    );
    let survivor = 3;
    assert_eq!(unsynced(&path), 0);
    assert_node_complete(
        cluster.node(survivor),
        &path,
        "site-g",
        "a survivor after the killed node",
    );
    let evicted = wait_until(PATIENCE, || {
        cluster
            .node(survivor)
            .status("wsrep_cluster_size")
            .is_ok_and(|n| n == "2")
    });
    assert!(
        evicted,
        "the survivor still counts the killed node:\n{}",
        cluster.logs()
    );

    // 4. The killed node rejoins by IST, holds every row, and sync uses it again once its
    // backoff has run out (sync.max_backoff is 2 s here).
    cluster.restart(killed).expect("restart the killed node");
    let log = cluster.node(killed).log();
    assert!(
        log.contains("Receiving IST") || log.contains("IST received"),
        "the node did not rejoin by IST:\n{}",
        cluster.logs()
    );
    assert_node_complete(cluster.node(killed), &path, "site-g", "after its IST");
    std::thread::sleep(Duration::from_secs(2));
    seed(&path, 8, 475, 5);
    let report = drain(&task);
    assert_eq!(report.samples, 8 * 5 - 1);
    assert_eq!(
        report.server.as_deref(),
        Some(shown(cluster.node(1)).as_str()),
        "sync did not return to the first node listed: {:?}",
        report.servers
    );
    assert_node_complete(cluster.node(killed), &path, "site-g", "the rejoined node");

    // 5. Node 1 cut off from the cluster is not ready (wsrep_ready = OFF): skipped.
    cluster.node(1).isolate(true).expect("isolate node 1");
    let isolated = wait_until(PATIENCE, || {
        cluster
            .node(1)
            .status("wsrep_ready")
            .is_ok_and(|v| v == "OFF")
    });
    assert!(isolated, "node 1 stays ready:\n{}", cluster.logs());
    seed(&path, 8, 480, 5);
    let report = drain(&task);
    assert_eq!(report.samples, 8 * 5 - 1);
    assert_eq!(
        report.server.as_deref(),
        Some(shown(cluster.node(2)).as_str())
    );
    let skipped = report.servers[0].last_error.clone().unwrap_or_default();
    assert!(skipped.contains("not ready"), "{:?}", report.servers);
    // A new connection asks the node first (wsrep_ready, Synced) and goes on to node 2.
    let fresh = SyncTask::new(
        &listing(&cluster, &[1, 2, 3], 16),
        &buffer_config(&path),
        "site-g",
    );
    seed(&path, 8, 485, 5);
    let report = drain(&fresh);
    assert_eq!(report.samples, 8 * 5 - 1);
    assert_eq!(
        report.server.as_deref(),
        Some(shown(cluster.node(2)).as_str())
    );
    let skipped = report.servers[0].last_error.clone().unwrap_or_default();
    assert!(
        skipped.contains("wsrep_ready = OFF"),
        "{:?}",
        report.servers
    );
    drop(fresh);
    cluster.node(1).isolate(false).expect("let node 1 back");
    assert!(
        wait_until(PATIENCE, || cluster.is_synced(1)),
        "node 1 does not rejoin after isolation:\n{}",
        cluster.logs()
    );
    assert_node_complete(
        cluster.node(1),
        &path,
        "site-g",
        "node 1 after its isolation",
    );

    // 6. `edgemon sync` with the nodes one per line in url_file names the server it used and
    // each node's health, the password masked; `edgemon status` shows the health too.
    let urls = dir.path().join("sync-urls");
    let lines: Vec<String> = (1..=3).map(|n| cluster.node(n).url()).collect();
    std::fs::write(&urls, format!("# the cluster\n{}\n", lines.join("\n"))).expect("write urls");
    let config = dir.path().join("edgemon.toml");
    std::fs::write(
        &config,
        format!(
            "[appliance]\nid = \"site-g\"\ndata_dir = \"{data}\"\n\n[[hosts]]\nname = \"localhost\"\n\
             transport = \"local\"\n\n[buffer]\npath = \"{buffer}\"\n\n[sync]\nurl_file = \"{urls}\"\n\
             timeout = \"10s\"\n\n[mail]\nfrom = \"edgemon@localhost\"\n",
            data = dir.path().join("data").display(),
            buffer = path.display(),
            urls = urls.display(),
        ),
    )
    .expect("write the config");
    seed(&path, 8, 490, 5);
    let out = Edgemon::new(dir.path())
        .args(["sync", "--config"])
        .arg(&config)
        .stdout();
    assert!(
        out.contains(&format!("central server: {}", shown(cluster.node(1)))),
        "{out}"
    );
    for n in 1..=3 {
        assert!(
            out.contains(&format!("  {}", shown(cluster.node(n)))),
            "{out}"
        );
    }
    assert!(
        !out.contains("edgemon:edgemon@"),
        "the password leaked:\n{out}"
    );
    assert_eq!(unsynced(&path), 0);
    let status = Edgemon::new(dir.path())
        .args(["status", "--config"])
        .arg(&config)
        .stdout();
    assert!(
        status.contains("sync servers: ") && status.contains("(in use): ok"),
        "{status}"
    );
    assert!(
        !status.contains("edgemon:edgemon@"),
        "the password leaked:\n{status}"
    );
    assert_node_complete(cluster.node(3), &path, "site-g", "after edgemon sync");
}
