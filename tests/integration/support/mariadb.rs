//! A throwaway MariaDB server on 127.0.0.1.
//!
//! [`MariaDb::start`] copies a fresh data directory into a temporary
//! directory and runs `mariadbd` on a free port with a small buffer pool.
//! The data directory comes from a template made once with
//! `mariadb-install-db` (cached in cargo's target tmpdir), holding database
//! `edgemon` and user `edgemon`/`edgemon` with all privileges on it. The guard can stop the
//! server cleanly, SIGKILL it (to test durability of committed rows) and
//! restart it on the same port and data directory. It never touches the
//! system instance on port 3306, and it knows nothing about edgemon's schema.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};
use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};
use tempfile::TempDir;

use super::{ChildGuard, Unavailable, require_file, run_tool, with_free_port};

const INSTALL_DB: &str = "/usr/bin/mariadb-install-db";
const SERVER_BINARIES: [&str; 2] = ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"];

/// How long a clean shutdown may take before it counts as failed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running MariaDB server; killed on drop.
#[derive(Debug)]
pub struct MariaDb {
    port: u16,
    server: PathBuf,
    child: Option<ChildGuard>,
    // Last, so the server is killed before its files go.
    dir: TempDir,
}

impl MariaDb {
    /// Copies a fresh data directory (with the `edgemon` database and
    /// user) from the template, starts the server, and returns once it
    /// accepts logins.
    pub fn start() -> Result<MariaDb> {
        let server = server_binary()?;
        let dir = super::temp_dir();
        copy_template(&server, dir.path())?;
        let mut db = MariaDb {
            port: 0,
            server,
            child: None,
            dir,
        };
        with_free_port(|port| {
            db.port = port;
            db.spawn()
        })?;
        Ok(db)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mysql://edgemon:edgemon@127.0.0.1:PORT/edgemon`.
    pub fn url(&self) -> String {
        edgemon_url(self.port)
    }

    /// A connection as the passwordless root user, over TCP.
    pub fn root_conn(&self) -> Result<Conn> {
        root_conn(self.port)
    }

    /// A connection as `edgemon` to database `edgemon`, over TCP.
    pub fn conn(&self) -> Result<Conn> {
        edgemon_conn(self.port)
    }

    /// Applies the SQL script `tests/fixtures/NAME` (statements ending in `;` at the end of a
    /// line, `--` comment lines) to the `edgemon` database: an older schema to upgrade from.
    pub fn apply_fixture(&self, name: &str) -> Result<()> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let script = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut conn = self.conn()?;
        for statement in script
            .split(";\n")
            .map(|s| {
                s.lines()
                    .filter(|l| !l.trim_start().starts_with("--"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .filter(|s| !s.trim().is_empty())
        {
            conn.query_drop(&statement)
                .with_context(|| format!("{name}: {statement}"))?;
        }
        Ok(())
    }

    /// True while the server process is alive.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// Clean shutdown (SQL `SHUTDOWN`); waits until the process exits.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.is_running() {
            self.root_conn()?
                .query_drop("SHUTDOWN")
                .context("sending SHUTDOWN")?;
            anyhow::ensure!(
                child.wait_exit(STOP_TIMEOUT),
                "MariaDB on port {} still running {STOP_TIMEOUT:?} after SHUTDOWN",
                self.port
            );
        }
        child.kill()
    }

    /// SIGKILL, no chance to flush anything; waits until the process exits.
    pub fn kill9(&mut self) -> Result<()> {
        match self.child.take() {
            Some(mut child) => child.kill(),
            None => Ok(()),
        }
    }

    /// Starts the server again on the same port and data directory (stops
    /// it first if it is running); waits until it accepts logins.
    pub fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            self.stop()?;
        }
        self.spawn()
    }

    /// The number of rows in the central `samples` table, `None` while the server cannot be
    /// reached (tests poll it across restarts and kills).
    pub fn sample_count(&self) -> Option<i64> {
        let mut conn = self.conn().ok()?;
        conn.query_first::<i64, _>("SELECT COUNT(*) FROM samples")
            .ok()
            .flatten()
    }

    /// The server's error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The server's temporary directory (data, socket, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("err.log")
    }

    fn spawn(&mut self) -> Result<()> {
        let dir = self.dir.path();
        let log = self.log_path();
        let mut cmd = Command::new(&self.server);
        cmd.args(server_args(dir, &log, self.port))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if super::is_root() {
            cmd.arg("--user=root");
        }
        let mut child = ChildGuard::spawn("mariadbd", &mut cmd)?;
        let port = self.port;
        let probe = client_opts(port, "root", None, None);
        child
            .wait_ready(&log, || Conn::new(probe.clone()).is_ok())
            .with_context(|| format!("starting MariaDB on 127.0.0.1:{port}"))?;
        self.child = Some(child);
        Ok(())
    }
}

/// The MariaDB server binary of this machine (`mariadbd`, or `mysqld` on
/// older packages); [`Unavailable`] when it or `mariadb-install-db` is
/// missing.
pub fn server_binary() -> Result<PathBuf> {
    require_file(INSTALL_DB, "MariaDB (mariadb-install-db)")?;
    SERVER_BINARIES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .ok_or_else(|| {
            Unavailable("MariaDB server (/usr/sbin/mariadbd) not installed".into()).into()
        })
}

/// Gives `dir` what [`server_args`] expects: `dir/data`, a copy of the
/// template data directory (database `edgemon`, user `edgemon`/`edgemon`,
/// passwordless root), and an empty `dir/tmp`.
pub fn copy_template(server: &Path, dir: &Path) -> Result<()> {
    let template = template(server)?;
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    run_tool(
        Command::new("cp")
            .arg("-a")
            .arg(&template)
            .arg(dir.join("data")),
    )
    .context("copying the MariaDB template data directory")?;
    Ok(())
}

/// The command line every test server shares (after the binary): no option
/// files, everything inside `dir` (`data/`, `tmp/`, `sock`, `mariadbd.pid`),
/// the error log at `log`, TCP on 127.0.0.1:`port` only, small buffers.
/// `--no-defaults` comes first, as the server requires.
pub fn server_args(dir: &Path, log: &Path, port: u16) -> Vec<String> {
    let mut args = vec![
        "--no-defaults".to_string(),
        format!("--datadir={}", dir.join("data").display()),
        format!("--socket={}", dir.join("sock").display()),
        format!("--tmpdir={}", dir.join("tmp").display()),
        format!("--pid-file={}", dir.join("mariadbd.pid").display()),
        format!("--log-error={}", log.display()),
        format!("--port={port}"),
    ];
    args.extend(
        [
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--max-connections=500",
            "--skip-log-bin",
        ]
        .map(String::from),
    );
    args.extend(small_server_options().map(String::from));
    args
}

/// Client options for 127.0.0.1:`port` over TCP, with connect and read
/// timeouts so that a wedged server fails a probe instead of hanging it.
pub fn client_opts(port: u16, user: &str, password: Option<&str>, db: Option<&str>) -> OptsBuilder {
    OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(port)
        .user(Some(user))
        .pass(password)
        .db_name(db)
        // Stay on TCP: the crate would otherwise switch to the socket.
        .prefer_socket(false)
        .tcp_connect_timeout(Some(Duration::from_secs(10)))
}

/// A connection to 127.0.0.1:`port` as the passwordless root user.
pub fn root_conn(port: u16) -> Result<Conn> {
    Conn::new(client_opts(port, "root", None, None))
        .with_context(|| format!("connecting to MariaDB on 127.0.0.1:{port} as root"))
}

/// A connection to 127.0.0.1:`port` as `edgemon` to database `edgemon`.
pub fn edgemon_conn(port: u16) -> Result<Conn> {
    Conn::new(client_opts(
        port,
        "edgemon",
        Some("edgemon"),
        Some("edgemon"),
    ))
    .with_context(|| format!("connecting to MariaDB on 127.0.0.1:{port} as edgemon"))
}

/// `mysql://edgemon:edgemon@127.0.0.1:PORT/edgemon`.
pub fn edgemon_url(port: u16) -> String {
    format!("mysql://edgemon:edgemon@127.0.0.1:{port}/edgemon")
}

/// SQL run once on the template server.
const SETUP_SQL: &str = "CREATE DATABASE edgemon;
CREATE USER 'edgemon'@'%' IDENTIFIED BY 'edgemon';
GRANT ALL PRIVILEGES ON edgemon.* TO 'edgemon'@'%';
";

/// The template data directory, made once per server version and options:
/// `mariadb-install-db` costs about a second on an idle machine and several
/// under a parallel build, while copying the result takes milliseconds. It
/// lives in cargo's target tmpdir and is reused by later runs; concurrent
/// makers build privately and rename into place, so the first one wins.
fn template(server: &Path) -> Result<PathBuf> {
    static TEMPLATE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| make_template(server).map_err(|err| format!("{err:#}")))
        .clone()
        .map_err(|err| anyhow::anyhow!("making the MariaDB template data directory: {err}"))
}

fn make_template(server: &Path) -> Result<PathBuf> {
    let version = run_tool(Command::new(server).arg("--version"))?;
    let mut hasher = DefaultHasher::new();
    version.stdout.hash(&mut hasher);
    SETUP_SQL.hash(&mut hasher);
    small_server_options().hash(&mut hasher);
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let template = root.join(format!("mariadb-template-{:016x}", hasher.finish()));
    if template.join("mysql").is_dir() {
        return Ok(template);
    }
    let work = tempfile::Builder::new()
        .prefix("mariadb-template-work-")
        .tempdir_in(root)
        .with_context(|| format!("creating a directory in {}", root.display()))?;
    let data = work.path().join("data");
    // A private tmpdir: concurrent bootstraps sharing /tmp collide on
    // temporary table names.
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut install = Command::new(INSTALL_DB);
    install
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ])
        .args(small_server_options());
    if super::is_root() {
        install.arg("--user=root");
    }
    run_tool(&mut install).context("initialising a MariaDB data directory")?;
    // The bootstrap runs without grant tables, so users are made by a real
    // server, which then shuts down cleanly and leaves a copyable datadir.
    let mut db = MariaDb {
        port: 0,
        server: server.to_path_buf(),
        child: None,
        dir: work,
    };
    with_free_port(|port| {
        db.port = port;
        db.spawn()
    })?;
    db.root_conn()?
        .query_drop(SETUP_SQL)
        .context("creating the edgemon database and user")?;
    db.stop()?;
    if let Err(err) = std::fs::rename(&data, &template) {
        // Another test process made it first; theirs is as good as ours.
        if !template.join("mysql").is_dir() {
            return Err(err).with_context(|| format!("renaming into {}", template.display()));
        }
    }
    Ok(template)
}

/// Options that keep a test server small and quick to start.
fn small_server_options() -> [&'static str; 4] {
    [
        "--innodb-buffer-pool-size=32M",
        "--innodb-log-file-size=8M",
        "--performance-schema=OFF",
        "--skip-innodb-buffer-pool-load-at-startup",
    ]
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // The ChildGuard kills the server; nothing else to clean up beyond
        // the temporary directory. Spelled out so the order is explicit.
        self.child.take();
    }
}
