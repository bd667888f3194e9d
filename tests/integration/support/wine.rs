//! Wine for the Windows tests: the shared prefix (`target/wine-prefix`, or
//! `EDGEMON_WINEPREFIX`), made once by `tests/windows/wine-prefix.sh` (which also
//! installs the test-only `ProcessPrng` stand-in DLL), and the environment that
//! runs a Windows program in it. [`Wine::start`] is [`Unavailable`] when Wine or
//! the collector's embedded Windows agent is missing, so `skip_or_fail!` skips
//! (or, in CI, fails) the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use anyhow::{Context, Result, bail};

use super::Unavailable;

/// The Wine binary the tests use: Debian's `wine64` package installs only this loader (the
/// `wine` package would add `/usr/bin/wine64`); the collector finds the same one
/// (`edgemon::collect::local::DEBIAN_WINE64`).
pub const WINE: &str = "/usr/lib/wine/wine64";

/// A ready Wine prefix and the embedded Windows agent.
#[derive(Debug, Clone)]
pub struct Wine {
    prefix: PathBuf,
}

impl Wine {
    /// The shared prefix, made on first use; [`Unavailable`] without Wine or without the
    /// Windows agent in this build of the collector.
    pub fn start() -> Result<Wine> {
        if !Path::new(WINE).exists() {
            return Err(Unavailable(format!("Wine not installed ({WINE} is missing)")).into());
        }
        if edgemon::agent_bin::WINDOWS_AGENT.is_none() {
            return Err(Unavailable(
                "this build of edgemon has no Windows agent (the Windows toolchain was missing at build time)".into(),
            )
            .into());
        }
        static PREFIX: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        let prefix = PREFIX
            .get_or_init(|| make_prefix().map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(anyhow::Error::msg)?;
        Ok(Wine { prefix })
    }

    /// The prefix directory (`WINEPREFIX`).
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The prefix's `C:` drive.
    pub fn drive_c(&self) -> PathBuf {
        self.prefix.join("drive_c")
    }

    /// The environment a Windows program needs here, as (name, value) pairs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("WINEPREFIX", self.prefix.display().to_string()),
            ("WINEDEBUG", "-all".to_string()),
            // Wine's server directory inside the prefix (tests/windows/wine-prefix.sh makes
            // it): nothing is left in /tmp, and every Wine call on the prefix agrees on it.
            ("TMPDIR", self.prefix.join("tmp").display().to_string()),
        ]
    }

    /// `wine64 <program>` with [`Wine::env`].
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(WINE);
        command.arg(program).envs(self.env());
        command
    }

    /// Serializes the tests that share the prefix's user profile (`%LOCALAPPDATA%`).
    pub fn profile_lock() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn make_prefix() -> Result<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let prefix = std::env::var_os("EDGEMON_WINEPREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/wine-prefix"));
    let script = root.join("tests/windows/wine-prefix.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(&prefix)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} {} failed ({}): {}{}",
            script.display(),
            prefix.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(prefix)
}
