//! A stand-in for a Windows OpenSSH server: a loopback [`Sshd`] whose commands
//! run in Wine's `cmd.exe` and whose SFTP sees the Wine prefix's `C:` drive.
//!
//! - The banner: `VersionAddendum OpenSSH_for_Windows_9.5`, so it reads
//!   `SSH-2.0-OpenSSH_<debian version> OpenSSH_for_Windows_9.5` (emulated: the
//!   rest of the server is Debian's OpenSSH).
//! - Commands: `ForceCommand` runs a wrapper script that logs the command
//!   ([`WindowsSshd::commands`]) and starts a small Windows launcher under
//!   `wine64`, built here with mingw from [`LAUNCHER_C`]; the launcher runs
//!   `cmd.exe /c "<command>"` with `CreateProcessW` and the session's
//!   stdin/stdout/stderr, exactly the command line Windows OpenSSH gives
//!   `cmd.exe` (`wine64 cmd /c ...` from Linux would re-quote the command's
//!   double quotes as `\"`). Its exit status is the command's.
//! - SFTP: the sftp subsystem request reaches the wrapper too (as
//!   `internal-sftp`), which runs OpenSSH's `sftp-server` in a private mount
//!   namespace (`unshare -m`), chrooted into a rig directory where `/C:` is a
//!   bind mount of the prefix's `drive_c` and `/usr`, `/etc`, `/dev` are bind
//!   mounts of the real ones: `/C:/users/root/AppData/Local/...` is
//!   `%LOCALAPPDATA%\...` of the Wine user. The mounts exist only in that
//!   namespace and vanish with the sftp-server.
//!
//! Needs root (mount namespaces, chroot), Wine, mingw and the collector's
//! embedded Windows agent, else [`Unavailable`]. A Wine process with no output
//! (`Anchor`) keeps Wine's services up while the rig lives, so that none is
//! started from a session and holds its channel open. The rig holds
//! [`Wine::profile_lock`] while it lives and removes
//! `drive_c/users/*/AppData/Local/edgemon` when it starts and when it stops.
//! On drop it stops
//! sshd and kills every process left from its sessions (wine processes
//! included, the prefix's shared `wineserver` excepted: it exits by itself a
//! few seconds after its last client), then removes its directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::MutexGuard;

use anyhow::{Context, Result};
use tempfile::TempDir;

use super::sshd::Sshd;
use super::wine::{WINE, Wine};
use super::{Unavailable, is_root, require_file, run_tool, temp_dir};

/// What the banner carries after Debian's version.
pub const VERSION_ADDENDUM: &str = "OpenSSH_for_Windows_9.5";

/// The launcher: runs `cmd.exe /c "%SSH_ORIGINAL_COMMAND%"` as Windows OpenSSH does, with the
/// standard handles inherited, and exits with the command's status.
pub const LAUNCHER_C: &str = r#"#include <windows.h>
#include <wchar.h>
int main(void) {
    static wchar_t command[32768], line[32800];
    DWORD n = GetEnvironmentVariableW(L"SSH_ORIGINAL_COMMAND", command, 32768);
    if (n == 0 || n >= 32768) return 254;
    swprintf(line, 32800, L"cmd.exe /c \"%ls\"", command);
    STARTUPINFOW si;
    PROCESS_INFORMATION pi;
    ZeroMemory(&si, sizeof si);
    si.cb = sizeof si;
    si.dwFlags = STARTF_USESTDHANDLES;
    si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
    si.hStdOutput = GetStdHandle(STD_OUTPUT_HANDLE);
    si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
    if (!CreateProcessW(L"C:\\windows\\system32\\cmd.exe", line, NULL, NULL, TRUE, 0, NULL,
                        NULL, &si, &pi))
        return 255;
    WaitForSingleObject(pi.hProcess, INFINITE);
    DWORD code = 255;
    GetExitCodeProcess(pi.hProcess, &code);
    return (int)code;
}
"#;

const MINGW_GCC: &str = "/usr/bin/x86_64-w64-mingw32-gcc";
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

/// A running Windows OpenSSH stand-in; see the module doc.
pub struct WindowsSshd {
    sshd: Option<Sshd>,
    anchor: Option<Anchor>,
    wine: Wine,
    dir: Option<TempDir>,
    // Last: released once everything else is gone.
    _profile: MutexGuard<'static, ()>,
}

impl WindowsSshd {
    /// Takes the profile lock, cleans the profile's `edgemon` directories, builds the launcher,
    /// writes the wrapper and starts sshd.
    pub fn start() -> Result<WindowsSshd> {
        let wine = Wine::start()?;
        if !is_root() {
            return Err(
                Unavailable("the Windows SSH rig needs root (unshare -m, chroot)".into()).into(),
            );
        }
        require_file(MINGW_GCC, "mingw-w64 (gcc-mingw-w64-x86-64)")?;
        require_file(SFTP_SERVER, "OpenSSH's sftp-server")?;
        require_file("/usr/bin/unshare", "unshare (util-linux)")?;
        require_file("/usr/sbin/chroot", "chroot (coreutils)")?;
        let profile = Wine::profile_lock();
        clean_profiles(&wine.drive_c())?;
        let dir = temp_dir();
        let rig = dir.path();
        std::fs::write(rig.join("launcher.c"), LAUNCHER_C).context("writing launcher.c")?;
        run_tool(
            Command::new(MINGW_GCC)
                .arg("-O2")
                .arg("-o")
                .arg(rig.join("launcher.exe"))
                .arg(rig.join("launcher.c")),
        )
        .context("building the rig's launcher with mingw")?;
        let root = rig.join("root");
        for sub in ["usr", "etc", "dev", "C:"] {
            std::fs::create_dir_all(root.join(sub))
                .with_context(|| format!("creating {}", root.join(sub).display()))?;
        }
        for (link, target) in [
            ("bin", "usr/bin"),
            ("sbin", "usr/sbin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
        ] {
            std::os::unix::fs::symlink(target, root.join(link))
                .with_context(|| format!("linking {link} in the rig root"))?;
        }
        let anchor = Anchor::start(&wine)?;
        let wrapper = rig.join("wrapper.sh");
        std::fs::write(&wrapper, wrapper_text(rig, &root, &wine)).context("writing wrapper.sh")?;
        run_tool(Command::new("chmod").arg("755").arg(&wrapper))?;
        let sshd = Sshd::builder()
            .force_command(&wrapper.display().to_string())
            .config_line(&format!("VersionAddendum {VERSION_ADDENDUM}"))
            .start()?;
        Ok(WindowsSshd {
            sshd: Some(sshd),
            anchor: Some(anchor),
            wine,
            dir: Some(dir),
            _profile: profile,
        })
    }

    /// The sshd (port, user, keys).
    pub fn sshd(&self) -> &Sshd {
        self.sshd.as_ref().expect("running until dropped")
    }

    /// The Wine prefix the commands run in.
    pub fn wine(&self) -> &Wine {
        &self.wine
    }

    /// `%LOCALAPPDATA%` of the login user (the Wine user named like the Linux one) on the Linux
    /// side: `drive_c/users/<user>/AppData/Local`.
    pub fn local_app_data(&self) -> PathBuf {
        self.wine
            .drive_c()
            .join("users")
            .join(self.sshd().user())
            .join("AppData")
            .join("Local")
    }

    /// Where edgemon puts the agent: `%LOCALAPPDATA%\edgemon`.
    pub fn agent_dir(&self) -> PathBuf {
        self.local_app_data().join("edgemon")
    }

    /// Every command the sessions ran so far, in order (the sftp subsystem is `internal-sftp`).
    pub fn commands(&self) -> Vec<String> {
        let log = self.rig().join("commands.log");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn rig(&self) -> &Path {
        self.dir.as_ref().expect("kept until dropped").path()
    }
}

impl Drop for WindowsSshd {
    fn drop(&mut self) {
        drop(self.sshd.take());
        let sessions = std::fs::read_to_string(self.rig().join("sessions")).unwrap_or_default();
        let sessions: Vec<&str> = sessions.split_whitespace().collect();
        kill_sessions(&sessions);
        let _ = clean_profiles(&self.wine.drive_c());
        drop(self.anchor.take());
        drop(self.dir.take());
    }
}

/// A Wine `cmd.exe` reading a pipe the rig holds, with no output, kept running while the rig
/// lives. The first Wine process of a prefix starts Wine's own services (`services.exe`,
/// `explorer.exe`, `winedevice.exe`, ...), which inherit its stdout and stderr and keep them
/// open until Wine shuts down: started from a session, they would hold its channel open (no
/// EOF, so a command's output could never be read to its end). The anchor makes sure they
/// run, and stay up, with output to /dev/null; closing its pipe lets Wine shut down.
struct Anchor {
    child: std::process::Child,
}

impl Anchor {
    fn start(wine: &Wine) -> Result<Anchor> {
        use std::process::Stdio;
        let child = wine
            .command("cmd")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the rig's Wine anchor (wine64 cmd)")?;
        let anchor = Anchor { child };
        // Wait until Wine is up (services included), with no output attached either.
        // Not `output()`: Wine's services may inherit the pipes and hold them open.
        let status = wine
            .command("cmd")
            .args(["/c", "exit"])
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("starting Wine in the rig's prefix")?;
        anyhow::ensure!(
            status.success(),
            "wine64 cmd /c exit in the rig's prefix: {status}"
        );
        Ok(anchor)
    }
}

impl Drop for Anchor {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        if !super::wait_until(std::time::Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten().is_some()
        }) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The ForceCommand script: logs the command and the session id, runs SFTP chrooted onto the
/// prefix's `C:` drive, and anything else through the launcher in Wine.
fn wrapper_text(rig: &Path, root: &Path, wine: &Wine) -> String {
    let env: String = wine
        .env()
        .iter()
        .map(|(k, v)| format!("export {k}='{v}'\n"))
        .collect();
    format!(
        r#"#!/bin/sh
# One session of the Windows OpenSSH rig (tests/integration/support/windows_sshd.rs).
rig='{rig}'
printf '%s\n' "$SSH_ORIGINAL_COMMAND" >> "$rig/commands.log"
read -r _ _ _ _ _ sid _ < /proc/$$/stat
echo "$sid" >> "$rig/sessions"
case $SSH_ORIGINAL_COMMAND in
internal-sftp|*/sftp-server)
    exec /usr/bin/unshare -m --propagation private /bin/sh -c '
        mount --bind /usr "$1/usr" && mount --bind /etc "$1/etc" && mount --bind /dev "$1/dev" &&
        mount --bind "$2" "$1/C:" && exec /usr/sbin/chroot "$1" {sftp}' sh '{root}' '{drive_c}'
    ;;
esac
{env}export WINEDLLOVERRIDES='mscoree,mshtml='
exec {wine_bin} "$rig/launcher.exe"
"#,
        rig = rig.display(),
        root = root.display(),
        drive_c = wine.drive_c().display(),
        sftp = SFTP_SERVER,
        wine_bin = WINE,
    )
}

/// Removes `drive_c/users/*/AppData/Local/edgemon` (what an earlier test left).
fn clean_profiles(drive_c: &Path) -> Result<()> {
    let users = drive_c.join("users");
    let Ok(entries) = std::fs::read_dir(&users) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let dir = entry.path().join("AppData").join("Local").join("edgemon");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    Ok(())
}

/// Kills (SIGKILL) every process whose session id is in `sessions`, except `wineserver`.
fn kill_sessions(sessions: &[&str]) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp session ...": comm may hold spaces, so split after ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map(|(_, c)| c).unwrap_or_default();
        let sid = rest.split_whitespace().nth(3).unwrap_or_default();
        if sessions.contains(&sid) && !comm.starts_with("wineserver") {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
}
