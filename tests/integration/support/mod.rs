//! The integration-test harness: real servers on ephemeral loopback ports,
//! each in its own temporary directory, each killed when its guard drops.
//!
//! This module owns the shared plumbing: free ports, the skip-or-fail rule
//! for missing server binaries (`EDGEMON_REQUIRE_SERVERS=1` turns a skip into
//! a failure, as CI wants), polling readiness, a guard for child processes,
//! and [`Edgemon`], which runs the real `edgemon` binary and prints the
//! command, cwd, stdout and stderr when an assertion about it fails (after
//! ripgrep's `tests/util.rs`). The servers live in [`sshd`], [`mariadb`] and
//! [`smtp`]; [`netns`] builds whole hosts in network namespaces. Nothing here
//! talks to anything but 127.0.0.1 and the namespace hosts' 198.18.0.0/15
//! addresses, and nothing here ever touches the system MariaDB on port 3306.

// Each test uses a different part of the harness; the parts a given build of
// the test binary does not reach yet are still part of the harness's API.
#![allow(dead_code)]

pub mod daemon;
pub mod galera;
pub mod mariadb;
pub mod netns;
pub mod relay;
pub mod smtp;
pub mod sshd;
pub mod tmpfs;
pub mod windows_sshd;
pub mod wine;

use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a server may take to become ready before its start fails. Far
/// above the measured start times (well under two seconds), because the
/// build machine has two cores and cargo runs tests in parallel.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The error a `start()` returns when a server binary (or the privilege to
/// use it) is missing on this machine. [`skip_or_fail!`] turns it into a
/// skip, unless [`require_servers`] says CI wants a failure instead. Any
/// other start error is always a failure.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for Unavailable {}

/// Returns an [`Unavailable`] error unless `path` exists.
pub fn require_file(path: &str, what: &str) -> Result<()> {
    if Path::new(path).exists() {
        Ok(())
    } else {
        Err(Unavailable(format!("{what} not installed ({path} is missing)")).into())
    }
}

/// Unwraps the result of a server's `start()`. On an [`Unavailable`] error
/// the test prints `SKIPPED: <why>` and returns, unless
/// `EDGEMON_REQUIRE_SERVERS=1`, in which case (and on any other error) the
/// test panics with the full error chain.
#[macro_export]
macro_rules! skip_or_fail {
    ($start:expr) => {
        match $start {
            Ok(server) => server,
            Err(err) => {
                if $crate::support::should_skip(&err) {
                    eprintln!("SKIPPED: {err:#}");
                    return;
                }
                panic!("server start failed: {err:#}");
            }
        }
    };
}

/// True when `err` means a server is unavailable and the run allows skips.
pub fn should_skip(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Unavailable>().is_some() && !require_servers()
}

/// True when `EDGEMON_REQUIRE_SERVERS=1`: a missing server fails the test.
pub fn require_servers() -> bool {
    std::env::var("EDGEMON_REQUIRE_SERVERS").is_ok_and(|v| v == "1")
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0,
/// then released). Servers started on it fail loudly if someone raced us.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

/// `n` distinct TCP ports on 127.0.0.1 that were free a moment ago: all
/// `n` listeners are held at once, so the OS cannot hand out one twice.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .expect("local_addr of a bound listener")
                .port()
        })
        .collect()
}

/// Calls `start` with a free port, and again with a new one (three tries
/// in all) when the server failed because someone took the port between
/// [`free_port`] and the server's own bind.
pub fn with_free_port<T>(mut start: impl FnMut(u16) -> Result<T>) -> Result<T> {
    let mut tries = 1;
    loop {
        match start(free_port()) {
            Err(err) if tries < 3 && port_was_taken(&err) => tries += 1,
            result => return result,
        }
    }
}

fn port_was_taken(err: &anyhow::Error) -> bool {
    format!("{err:#}")
        .to_ascii_lowercase()
        .contains("address already in use")
}

/// Polls `ready` until it returns true or `timeout` passes; returns whether
/// it became true. Starts at 10 ms between polls, backing off to 200 ms.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    wait_for(timeout, || ready().then_some(())).is_some()
}

/// Polls `probe` until it returns `Some`, or `timeout` passes (then `None`).
pub fn wait_for<T>(timeout: Duration, probe: impl FnMut() -> Option<T>) -> Option<T> {
    poll(timeout, Poll::Backoff, probe)
}

/// How often [`poll`] asks.
#[derive(Debug, Clone, Copy)]
pub enum Poll {
    /// 10 ms at first, doubling up to 200 ms: for servers that are usually
    /// ready at once.
    Backoff,
    /// A fixed pause, e.g. 100 ms for a Galera node whose state transfer
    /// takes seconds.
    Every(Duration),
}

/// Polls `probe` on `schedule` until it returns `Some`, or `timeout`
/// passes (then `None`).
pub fn poll<T>(
    timeout: Duration,
    schedule: Poll,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = match schedule {
        Poll::Backoff => Duration::from_millis(10),
        Poll::Every(every) => every,
    };
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(pause);
        if let Poll::Backoff = schedule {
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}

/// A new temporary directory, removed on drop.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("edgemon-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// The current user's name, as `id -un` prints it.
pub fn current_user() -> Result<String> {
    let out = run_tool(Command::new("id").arg("-un"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// True when the tests run as root (uid 0).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Runs a helper tool to completion; an error (with its stderr) unless it
/// exits 0.
pub fn run_tool(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// The last `max` bytes of a log file, for error messages.
pub fn log_tail(path: &Path, max: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(max);
    String::from_utf8_lossy(&text[start..]).into_owned()
}

/// Reads from 127.0.0.1:`port` until `greeting` appears in what the server
/// sends first; true if it did. Used as a readiness probe.
pub fn greets_with(port: u16, greeting: &str) -> bool {
    greets_at(std::net::SocketAddr::from(([127, 0, 0, 1], port)), greeting)
}

/// [`greets_with`] for any address (a namespace host's 198.18.x.y).
pub fn greets_at(address: std::net::SocketAddr, greeting: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(5)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .is_err()
    {
        return false;
    }
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while seen.len() < 4096 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if String::from_utf8_lossy(&seen).contains(greeting) {
            return true;
        }
    }
    false
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed; `name` appears in error messages.
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<ChildGuard> {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {name}: {cmd:?}"))?;
        Ok(ChildGuard {
            name: name.to_string(),
            child,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Polls until the process exits, at most `timeout`; true if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        wait_until(timeout, || !self.is_running())
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) -> Result<()> {
        if self.is_running() {
            self.child
                .kill()
                .with_context(|| format!("killing {}", self.name))?;
        }
        self.child
            .wait()
            .with_context(|| format!("reaping {}", self.name))?;
        Ok(())
    }

    /// Sends SIGTERM and waits up to `grace` for the process to exit; then
    /// SIGKILL. Reaps the process either way.
    pub fn terminate(&mut self, grace: Duration) -> Result<()> {
        if self.is_running() {
            self.signal_term()?;
            self.wait_exit(grace);
        }
        self.kill()
    }

    /// Sends SIGTERM without waiting (see [`ChildGuard::terminate`]).
    pub fn signal_term(&mut self) -> Result<()> {
        if self.is_running() {
            run_tool(Command::new("kill").args(["-s", "TERM", &self.pid().to_string()]))
                .with_context(|| format!("sending SIGTERM to {}", self.name))?;
        }
        Ok(())
    }

    /// Polls until `ready()` holds. Fails early if the process exits, and
    /// after [`START_TIMEOUT`]; the error includes the tail of `log`.
    pub fn wait_ready(&mut self, log: &Path, ready: impl FnMut() -> bool) -> Result<()> {
        self.wait_ready_polling(Poll::Backoff, log, ready)
    }

    /// [`ChildGuard::wait_ready`] with a given polling schedule.
    pub fn wait_ready_polling(
        &mut self,
        schedule: Poll,
        log: &Path,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        let mut exited = None;
        let became_ready = poll(START_TIMEOUT, schedule, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                exited = Some(status);
                return Some(());
            }
            ready().then_some(())
        })
        .is_some();
        if let Some(status) = exited {
            bail!(
                "{} exited during start ({status}); log {}:\n{}",
                self.name,
                log.display(),
                log_tail(log, 4000)
            );
        }
        if !became_ready {
            bail!(
                "{} not ready after {START_TIMEOUT:?}; log {}:\n{}",
                self.name,
                log.display(),
                log_tail(log, 4000)
            );
        }
        Ok(())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Nothing sensible to do with an error while dropping: the process
        // is gone already or the kernel will reap it with the test binary.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the real `edgemon` binary built by cargo. Assertion helpers print
/// the command, cwd, stdout and stderr when they fail.
#[derive(Debug)]
pub struct Edgemon {
    cmd: Command,
    cwd: PathBuf,
}

impl Edgemon {
    /// A command for the `edgemon` binary running in `cwd`, with
    /// `EDGEMON_*` variables from the test's environment removed so they
    /// cannot leak into the run.
    pub fn new(cwd: &Path) -> Edgemon {
        Edgemon::binary(Path::new(env!("CARGO_BIN_EXE_edgemon")), cwd)
    }

    /// Like [`Edgemon::new`], for another build of `edgemon` at `binary` (such as the
    /// collector built without the Windows agent that `tests/run.sh` leaves in
    /// `EDGEMON_LINUX_ONLY_BIN`).
    pub fn binary(binary: &Path, cwd: &Path) -> Edgemon {
        let mut cmd = Command::new(binary);
        cmd.current_dir(cwd).stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("EDGEMON_") {
                cmd.env_remove(key);
            }
        }
        Edgemon {
            cmd,
            cwd: cwd.to_path_buf(),
        }
    }

    /// Adds one argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Edgemon {
        self.cmd.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Edgemon
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Sets an environment variable for the run.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Edgemon {
        self.cmd.env(key, value);
        self
    }

    /// Runs to completion and returns the output, asserting nothing.
    pub fn output(&mut self) -> Output {
        match self.cmd.output() {
            Ok(out) => out,
            Err(err) => panic!(
                "could not run {:?} in {}: {err}",
                self.cmd,
                self.cwd.display()
            ),
        }
    }

    /// Runs, asserts exit code 0, returns stdout.
    pub fn stdout(&mut self) -> String {
        let out = self.output();
        if !out.status.success() {
            self.fail("expected success", &out);
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs, asserts the exit code is `code`, returns the output.
    pub fn assert_exit_code(&mut self, code: i32) -> Output {
        let out = self.output();
        if out.status.code() != Some(code) {
            self.fail(&format!("expected exit code {code}"), &out);
        }
        out
    }

    /// Runs, asserts a non-zero exit, returns the output.
    pub fn assert_err(&mut self) -> Output {
        let out = self.output();
        if out.status.success() {
            self.fail("expected failure", &out);
        }
        out
    }

    /// Panics with everything needed to reproduce the run.
    pub fn fail(&self, why: &str, out: &Output) -> ! {
        panic!(
            "\n\n==========\n{why}, got {}\ncommand: {:?}\ncwd: {}\n\
             ---- stdout ----\n{}\n---- stderr ----\n{}\n==========\n",
            out.status,
            self.cmd,
            self.cwd.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}
