//! A throwaway MariaDB Galera cluster on 127.0.0.1.
//!
//! [`GaleraCluster::start`] follows the recipe in the shared design notes
//! (`galera-loopback.md`): node 1 gets a copy of the same template data
//! directory as [`super::mariadb::MariaDb`] (made once by
//! `mariadb-install-db`, with database and user `edgemon`) and bootstraps
//! the cluster (`--wsrep-new-cluster`); the other nodes start from an empty
//! data directory and receive their state by rsync SST, one after another.
//! Every node gets four loopback ports from the OS (SQL, gcomm, IST, SST),
//! the cluster a unique `wsrep_cluster_name`, so parallel fixtures and the
//! system server on 3306 never meet. When the tests run as root, the nodes
//! run as `nobody` (`setpriv`) in a directory chown'ed to it, because the
//! joiner's rsync daemon cannot write a root-owned data directory.
//!
//! A node is ready when `wsrep_ready = ON` and `wsrep_local_state_comment =
//! Synced`, polled every 100 ms while checking that the process has not
//! exited; a failure carries the tail of every node's `error.log`.
//! [`GaleraCluster::kill`] is SIGKILL; [`GaleraCluster::restart`] recovers
//! the node's position (`--wsrep-recover`) and rejoins with
//! `--wsrep-start-position`, so the node catches up by IST. Dropping the
//! cluster sends SIGTERM to every node, SIGKILLs what is still running
//! after 10 s, and removes the directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use mysql::Conn;
use mysql::prelude::Queryable;
use tempfile::TempDir;

use super::mariadb::{
    client_opts, copy_template, edgemon_conn, edgemon_url, root_conn, server_args, server_binary,
};
use super::{ChildGuard, Poll, Unavailable, free_ports, is_root, log_tail, require_file, run_tool};

const PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";
const SST_RSYNC: &str = "/usr/bin/wsrep_sst_rsync";
const RSYNC: &str = "/usr/bin/rsync";
/// The rsync SST helper finds its tools (rsync, ss, my_print_defaults) on
/// this PATH.
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// `nobody`: the nodes never run as root (see the module doc).
const NOBODY: u32 = 65534;
/// How long a node may take to stop after SIGTERM before it gets SIGKILL (a
/// node stuck joining ignores SIGTERM).
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The readiness poll interval.
const POLL: Duration = Duration::from_millis(100);

/// The four loopback ports of one node.
#[derive(Debug, Clone, Copy)]
pub struct NodePorts {
    /// The SQL port clients (and edgemon) connect to.
    pub sql: u16,
    /// Group communication (`gmcast.listen_addr`).
    pub gcomm: u16,
    /// Incremental state transfer (`ist.recv_addr`).
    pub ist: u16,
    /// Snapshot state transfer (`wsrep_sst_receive_address`).
    pub sst: u16,
}

/// One node of a [`GaleraCluster`]: its directory, ports and process.
#[derive(Debug)]
pub struct GaleraNode {
    /// 1-based, as in `wsrep_node_name = nN`.
    number: usize,
    dir: PathBuf,
    ports: NodePorts,
    child: Option<ChildGuard>,
}

impl GaleraNode {
    /// The node's ports.
    pub fn ports(&self) -> NodePorts {
        self.ports
    }

    /// `mysql://edgemon:edgemon@127.0.0.1:SQL/edgemon`.
    pub fn url(&self) -> String {
        edgemon_url(self.ports.sql)
    }

    /// A connection as `edgemon` to database `edgemon`.
    pub fn conn(&self) -> Result<Conn> {
        edgemon_conn(self.ports.sql).with_context(|| format!("galera node {}", self.number))
    }

    /// A connection as `edgemon` that waits, before each read, until this
    /// node has applied every write the cluster committed before it
    /// (`wsrep_sync_wait = 1`): read-your-writes across nodes.
    pub fn synced_conn(&self) -> Result<Conn> {
        let mut conn = self.conn()?;
        conn.query_drop("SET SESSION wsrep_sync_wait = 1")
            .with_context(|| format!("setting wsrep_sync_wait on galera node {}", self.number))?;
        Ok(conn)
    }

    /// A connection as the passwordless root user.
    pub fn root_conn(&self) -> Result<Conn> {
        root_conn(self.ports.sql).with_context(|| format!("galera node {}", self.number))
    }

    /// The value of a `wsrep_%` status variable, e.g. `wsrep_cluster_size`.
    pub fn status(&self, variable: &str) -> Result<String> {
        let mut conn = self.root_conn()?;
        let row: Option<(String, String)> = conn
            .exec_first("SHOW GLOBAL STATUS WHERE Variable_name = ?", (variable,))
            .with_context(|| format!("reading {variable} on galera node {}", self.number))?;
        row.map(|(_, value)| value).with_context(|| {
            format!(
                "no status variable {variable} on galera node {}",
                self.number
            )
        })
    }

    /// 1-based, as in `wsrep_node_name = nN`.
    pub fn number(&self) -> usize {
        self.number
    }

    /// How many sessions of `user` the node has (other than the asking one).
    pub fn sessions_of(&self, user: &str) -> Result<i64> {
        let mut conn = self.root_conn()?;
        let n: Option<i64> = conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.processlist \
                 WHERE user = ? AND id <> CONNECTION_ID()",
                (user,),
            )
            .with_context(|| format!("reading the processlist of galera node {}", self.number))?;
        Ok(n.unwrap_or(0))
    }

    /// Cuts the node off the cluster's group communication (`gmcast.isolate=1`) or lets it
    /// back (`0`); isolated, it leaves the primary component (`wsrep_ready = OFF`) after the
    /// suspect timeout, and rejoins by itself when let back.
    pub fn isolate(&self, isolated: bool) -> Result<()> {
        let mut conn = self.root_conn()?;
        conn.query_drop(format!(
            "SET GLOBAL wsrep_provider_options = 'gmcast.isolate={}'",
            u8::from(isolated)
        ))
        .with_context(|| format!("setting gmcast.isolate on galera node {}", self.number))
    }

    /// True while the node's process is alive.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// The node's error log so far (the SST helper writes there too).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("error.log")
    }
}

/// A running Galera cluster on loopback; every node is stopped and every
/// directory removed on drop.
#[derive(Debug)]
pub struct GaleraCluster {
    server: PathBuf,
    name: String,
    nodes: Vec<GaleraNode>,
    // Last, so the nodes are stopped before their files go.
    base: TempDir,
}

impl GaleraCluster {
    /// Starts a cluster of `size` nodes (1 to 9), node by node, and returns
    /// once every node is Synced and node 1 counts `size` members. Takes
    /// about 10 s for three nodes on two cores (state transfers run one
    /// after another).
    pub fn start(size: usize) -> Result<GaleraCluster> {
        anyhow::ensure!((1..10).contains(&size), "a cluster of {size} nodes");
        let server = server_binary()?;
        require_file(PROVIDER, "Galera (galera-4)")?;
        require_file(SST_RSYNC, "the rsync SST script (mariadb-server)")?;
        require_file(RSYNC, "rsync (for Galera's state transfer)")?;
        if !["/usr/bin/ss", "/bin/ss", "/usr/bin/lsof"]
            .iter()
            .any(|p| Path::new(p).exists())
        {
            return Err(Unavailable("ss (iproute2) or lsof, for wsrep_sst_rsync".into()).into());
        }
        if is_root() {
            require_file("/usr/bin/setpriv", "setpriv (util-linux)")?;
        }
        // /tmp explicitly: nobody must be able to reach the directory, which
        // a root-only $TMPDIR would forbid.
        let mut builder = tempfile::Builder::new();
        builder.prefix("edgemon-galera-");
        let base = if is_root() {
            builder.tempdir_in("/tmp")
        } else {
            builder.tempdir()
        }
        .context("creating the cluster's directory")?;
        let ports = free_ports(4 * size);
        let mut nodes = Vec::with_capacity(size);
        for number in 1..=size {
            let dir = base.path().join(format!("n{number}"));
            std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            if number == 1 {
                copy_template(&server, &dir)?;
            } else {
                // Joiners: an empty data directory that must exist; SST fills it.
                for sub in ["data", "tmp"] {
                    let path = dir.join(sub);
                    std::fs::create_dir(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                }
            }
            let p = &ports[4 * (number - 1)..4 * number];
            nodes.push(GaleraNode {
                number,
                dir,
                ports: NodePorts {
                    sql: p[0],
                    gcomm: p[1],
                    ist: p[2],
                    sst: p[3],
                },
                child: None,
            });
        }
        if is_root() {
            run_tool(
                Command::new("chown")
                    .arg("-R")
                    .arg(format!("{NOBODY}:{NOBODY}"))
                    .arg(base.path()),
            )
            .context("handing the cluster's directory to nobody")?;
        }
        static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "edgemon-test-{}-{}-{nanos:x}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        );
        let mut cluster = GaleraCluster {
            server,
            name,
            nodes,
            base,
        };
        for number in 1..=size {
            let start = cluster.spawn(number, number == 1, None);
            cluster.or_logs(start, &format!("starting galera node {number}"))?;
        }
        let grown = super::poll(super::START_TIMEOUT, Poll::Every(POLL), || {
            let n = cluster.node(1).status("wsrep_cluster_size").ok()?;
            (n == size.to_string()).then_some(())
        });
        if grown.is_none() {
            let err = anyhow::anyhow!("node 1 does not count {size} members");
            return cluster.or_logs(Err(err), "starting the cluster");
        }
        Ok(cluster)
    }

    /// Node `number` (1-based).
    pub fn node(&self, number: usize) -> &GaleraNode {
        &self.nodes[number - 1]
    }

    /// The number of nodes (running or not).
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// The cluster's unique `wsrep_cluster_name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SIGKILL node `number` (no chance to flush anything) and reap it.
    pub fn kill(&mut self, number: usize) -> Result<()> {
        match self.nodes[number - 1].child.take() {
            Some(mut child) => child.kill(),
            None => Ok(()),
        }
    }

    /// Starts node `number` again after [`GaleraCluster::kill`] (stopping
    /// it first if it runs): recovers its last committed position with
    /// `--wsrep-recover` and rejoins from there with
    /// `--wsrep-start-position`, so the cluster sends the missed writesets
    /// by IST (a plain restart would copy everything by SST). Returns once
    /// the node is Synced.
    pub fn restart(&mut self, number: usize) -> Result<()> {
        if let Some(mut child) = self.nodes[number - 1].child.take() {
            child.terminate(STOP_GRACE)?;
        }
        let recovered = self.recover(number);
        let position = self.or_logs(recovered, &format!("recovering galera node {number}"))?;
        let start = self.spawn(number, false, Some(&position));
        self.or_logs(start, &format!("restarting galera node {number}"))
    }

    /// The tail of every node's error log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let path = node.log_path();
            out.push_str(&format!(
                "---- node {} ({}) ----\n{}\n",
                node.number,
                path.display(),
                log_tail(&path, 3000)
            ));
        }
        out
    }

    /// Adds every node's log tail to an error.
    fn or_logs<T>(&self, result: Result<T>, what: &str) -> Result<T> {
        result.map_err(|err| anyhow::anyhow!("{what}: {err:#}\n{}", self.logs()))
    }

    /// The server's command line for node `number`, logging to `log`.
    fn command(&self, number: usize, log: &Path) -> Command {
        let node = &self.nodes[number - 1];
        let gcomm: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.ports.gcomm))
            .collect();
        let p = node.ports;
        let mut cmd = if is_root() {
            let mut cmd = Command::new("/usr/bin/setpriv");
            cmd.arg(format!("--reuid={NOBODY}"))
                .arg(format!("--regid={NOBODY}"))
                .args(["--clear-groups", "--"])
                .arg(&self.server);
            cmd
        } else {
            Command::new(&self.server)
        };
        cmd.args(server_args(&node.dir, log, p.sql))
            .args([
                "--binlog-format=ROW",
                "--innodb-autoinc-lock-mode=2",
                "--wsrep-on=ON",
            ])
            .arg(format!("--wsrep-provider={PROVIDER}"))
            .arg(format!("--wsrep-cluster-name={}", self.name))
            .arg(format!("--wsrep-node-name=n{number}"))
            .arg(format!(
                "--wsrep-cluster-address=gcomm://{}",
                gcomm.join(",")
            ))
            .arg("--wsrep-node-address=127.0.0.1")
            .arg(format!("--wsrep-node-incoming-address=127.0.0.1:{}", p.sql))
            // One argv element: the value holds ';' (no shell in between).
            // Shorter EVS timeouts evict a killed node in about 2 s instead of 6.
            .arg(format!(
                "--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:{};\
                 ist.recv_addr=127.0.0.1:{};gcache.size=32M;\
                 evs.keepalive_period=PT0.5S;evs.suspect_timeout=PT2S",
                p.gcomm, p.ist
            ))
            .arg(format!("--wsrep-sst-receive-address=127.0.0.1:{}", p.sst))
            .arg("--wsrep-sst-method=rsync")
            .env("PATH", PATH)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// Spawns node `number` and waits until it is Synced.
    fn spawn(&mut self, number: usize, bootstrap: bool, position: Option<&str>) -> Result<()> {
        let log = self.nodes[number - 1].log_path();
        let mut cmd = self.command(number, &log);
        if bootstrap {
            cmd.arg("--wsrep-new-cluster");
        }
        if let Some(position) = position {
            cmd.arg(format!("--wsrep-start-position={position}"));
        }
        let mut child = ChildGuard::spawn(&format!("galera node {number} (mariadbd)"), &mut cmd)?;
        let port = self.nodes[number - 1].ports.sql;
        child.wait_ready_polling(Poll::Every(POLL), &log, || is_synced(port))?;
        self.nodes[number - 1].child = Some(child);
        Ok(())
    }

    /// Runs node `number` with `--wsrep-recover` (the same arguments, its
    /// own log) and returns the recovered `uuid:seqno`.
    fn recover(&self, number: usize) -> Result<String> {
        let log = self.nodes[number - 1].dir.join("recover.log");
        // A fresh log each time: the position parsed must be this run's.
        let _ = std::fs::remove_file(&log);
        let mut cmd = self.command(number, &log);
        cmd.arg("--wsrep-recover");
        let mut child = ChildGuard::spawn(&format!("galera node {number} recovery"), &mut cmd)?;
        if !child.wait_exit(super::START_TIMEOUT) {
            bail!(
                "--wsrep-recover still running after {:?}:\n{}",
                super::START_TIMEOUT,
                log_tail(&log, 3000)
            );
        }
        let text =
            std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
        text.lines()
            .rev()
            .find_map(|line| line.split_once("WSREP: Recovered position: "))
            .map(|(_, position)| position.trim().to_string())
            .with_context(|| {
                format!(
                    "no recovered position in {}:\n{}",
                    log.display(),
                    log_tail(&log, 3000)
                )
            })
    }
}

impl GaleraCluster {
    /// The running node that has a session of `user` (the node a sync task uses), if one.
    pub fn node_with_session(&mut self, user: &str) -> Option<usize> {
        (1..=self.nodes.len()).find(|&n| {
            self.nodes[n - 1].is_running() && self.nodes[n - 1].sessions_of(user).unwrap_or(0) > 0
        })
    }

    /// True when node `number` answers and is ready and Synced.
    pub fn is_synced(&self, number: usize) -> bool {
        is_synced(self.nodes[number - 1].ports.sql)
    }
}

/// True when the node on 127.0.0.1:`port` answers and is ready and Synced.
/// Until its state transfer ends, a joiner refuses connections.
fn is_synced(port: u16) -> bool {
    let opts = client_opts(port, "root", None, None)
        .read_timeout(Some(Duration::from_secs(10)))
        .write_timeout(Some(Duration::from_secs(10)));
    let Ok(mut conn) = Conn::new(opts) else {
        return false;
    };
    let rows: Vec<(String, String)> = conn
        .query(
            "SHOW GLOBAL STATUS WHERE Variable_name IN \
             ('wsrep_ready', 'wsrep_local_state_comment')",
        )
        .unwrap_or_default();
    let value = |name: &str| {
        rows.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    value("wsrep_ready") == Some("ON") && value("wsrep_local_state_comment") == Some("Synced")
}

impl Drop for GaleraCluster {
    fn drop(&mut self) {
        // SIGTERM to all first, so the nodes stop in parallel; then wait
        // for each, SIGKILL after the grace time. Errors are moot here: the
        // ChildGuard kills on its own drop anyway.
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                let _ = child.signal_term();
            }
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.terminate(STOP_GRACE);
            }
        }
    }
}
