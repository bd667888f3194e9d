//! `edgemon run` as a child process of a test: the real daemon binary, its log
//! (stderr, `EDGEMON_LOG=info`) in a file of the test's directory, signals by
//! name, a clean stop, and a kill on drop so that no daemon outlives its test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::wait_until;

/// How long a daemon may take to exit after SIGTERM: it finishes its round,
/// batch or mail first, and the machine is loaded while tests run.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `edgemon run --config CONFIG`, killed on drop.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts the daemon in `dir` on `config`; its log goes to `dir/edgemon.log`.
    pub fn start(dir: &Path, config: &Path) -> Daemon {
        Daemon::start_with_env(dir, config, &[])
    }

    /// [`Daemon::start`] with extra environment variables (e.g. libfaketime's).
    pub fn start_with_env(dir: &Path, config: &Path, env: &[(&str, String)]) -> Daemon {
        let log = dir.join("edgemon.log");
        let file = std::fs::File::create(&log).expect("create the daemon log");
        let child = Command::new(env!("CARGO_BIN_EXE_edgemon"))
            .args(["run", "--config"])
            .arg(config)
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("EDGEMON_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start edgemon run");
        Daemon { child, log }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How often `needle` appears in the log so far (e.g. `"round recorded"`).
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// Sends signal `name` (`TERM`, `HUP`, ...); the test fails if `kill` does.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -s {name} failed");
    }

    /// Waits up to `timeout` for the daemon to exit; its status (`None`: still running) and log.
    pub fn wait(&mut self, timeout: Duration) -> (Option<ExitStatus>, String) {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        (status, self.log())
    }

    /// SIGTERM, then waits for the exit; the test fails if the daemon does not stop.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal("TERM");
        match self.wait(STOP_TIMEOUT) {
            (Some(status), _) => status,
            (None, log) => panic!("edgemon run did not stop after SIGTERM; log:\n{log}"),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
