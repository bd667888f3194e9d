//! A throwaway MariaDB for the benchmarks: its own datadir under a temp dir, a free
//! loopback port, killed on drop. Benches cannot use the integration tests' harness
//! (`tests/integration/support/mariadb.rs`), so the benches that need a server share this
//! one through `#[path]`.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};

/// A throwaway mariadbd on a free loopback port, killed on drop.
pub struct Server {
    /// Its SQL port on 127.0.0.1.
    pub port: u16,
    child: Child,
}

impl Server {
    /// Installs a datadir under `dir` and starts the server with `tuning` (InnoDB sizes and
    /// the like) on a free port; creates the database `edgemon`.
    pub fn start(dir: &Path, tuning: &[&str]) -> Result<Server> {
        let data = dir.join("data");
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        let root = Command::new("id").arg("-u").output()?.stdout == b"0\n";
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]);
        if root {
            install.arg("--user=root");
        }
        let out = install
            .stdout(Stdio::null())
            .output()
            .context("running mariadb-install-db")?;
        if !out.status.success() {
            bail!(
                "mariadb-install-db failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut cmd = Command::new("mariadbd");
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--log-error={}", dir.join("err.log").display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
            ])
            .arg(format!("--secure-file-priv={}", dir.display()))
            .args(tuning)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if root {
            cmd.arg("--user=root");
        }
        let child = cmd.spawn().context("starting mariadbd")?;
        let server = Server { port, child };
        let deadline = Instant::now() + Duration::from_secs(120);
        while server.root().is_err() {
            if Instant::now() > deadline {
                bail!(
                    "mariadbd did not start; see {}",
                    dir.join("err.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        server.root()?.query_drop("CREATE DATABASE edgemon")?;
        Ok(server)
    }

    /// A connection as root, without a default database.
    pub fn root(&self) -> Result<Conn> {
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(self.port)
            .user(Some("root"))
            .prefer_socket(false);
        Ok(Conn::new(opts)?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
