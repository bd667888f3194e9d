//! Deploying and starting the Windows agent over Windows' own OpenSSH.
//!
//! A host is Windows when configured `os = "windows"`, or, under `os = "auto"`, when the SSH
//! server's banner names `OpenSSH_for_Windows` ([`detect`]). A Windows session is then probed
//! once, with one exec through the account's default shell ([`PROBE`], read by
//! [`parse_probe`]): the answer says whether that shell is `cmd.exe` or PowerShell (an
//! administrator can switch it machine-wide) and gives the login user's name, domain,
//! `%USERPROFILE%` and `%LOCALAPPDATA%`. The link keeps the answer for as long as the session
//! lives.
//!
//! The agent lives in `%LOCALAPPDATA%\edgemon\edgemon-agent-<sha256 prefix>.exe`
//! ([`AgentPaths`]); `collect.agent_dir` is for Linux hosts only. A directory outside the
//! login user's own profile is refused, never used. It is uploaded by SFTP: to a unique
//! temporary name, read back and checked (size and SHA-256), then renamed into place. A
//! running `.exe` cannot be overwritten on Windows, and the name carries the hash, so a new
//! collector build uploads beside a running agent and never touches it. The directory's ACL is
//! set at every upload with `icacls` ([`acl_command`]): inheritance off, full control for the
//! login user, SYSTEM and Administrators, nobody else.
//!
//! Before every start of the agent (a new session, or a resident agent that idle-timed out),
//! the file is read back over SFTP and its SHA-256 compared with the build's; a mismatch is
//! `agent-untrusted`, with the size and hash found, and the file is neither run nor replaced
//! (a file at the hash's name with other bytes was written by someone else: the operator looks
//! at it and deletes it, then the next round uploads a fresh copy). Then the agent is started
//! resident on the session's exec channel ([`start_command`], quoted for the shell the probe
//! found) and answers requests exactly as on Linux. This module does not read replies.
//!
//! Trust. Windows gives no POSIX owner and mode to check over SFTP, so "nothing is executed
//! that another account could have written" rests on: (1) `%LOCALAPPDATA%` being inside the
//! login user's own profile, whose default ACL lets only the user, SYSTEM and Administrators
//! write; (2) the `icacls` at upload, which removes inherited entries from the agent directory
//! in case the profile's ACL was widened (set, not read back: its output is localized);
//! (3) the SHA-256 read back over SFTP before every start, which catches bytes written by
//! anyone; the moment between that check and `CreateProcess` is open only to accounts that can
//! write the directory (the user, SYSTEM, Administrators: trusted like root on Linux), and a
//! running image cannot be written at all. The command names the file by absolute path, so no
//! search path is involved.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sha2::{Digest, Sha256};
use ssh2::{OpenFlags, OpenType, Session, Sftp};

use super::session::{Phase, Watch, limit};
use super::{Failure, Link, Shared, deploy, exchange, fail, settle};
use crate::collect::outcome::{CollectError, ErrorClass};
use crate::config::HostOs;
use crate::report::Report;

/// What an `OpenSSH_for_Windows` server puts in its banner.
pub const WINDOWS_BANNER: &str = "OpenSSH_for_Windows";

/// The probe, run once per session through the default shell. One double-quoted argument, so
/// both shells print it on one line: `cmd.exe` expands the `%NAME%` forms (and prints the
/// quotes), PowerShell the `${env:NAME}` forms. Windows forbids `|` in user names and paths.
pub const PROBE: &str = "echo \"edgemon-probe|%OS%|${env:OS}|%USERNAME%|${env:USERNAME}|\
%USERDOMAIN%|${env:USERDOMAIN}|%USERPROFILE%|${env:USERPROFILE}|%LOCALAPPDATA%|${env:LOCALAPPDATA}|end\"";

/// SFTP status codes of a missing file (libssh2_sftp.h).
const LIBSSH2_FX_NO_SUCH_FILE: i32 = 2;
const LIBSSH2_FX_NO_SUCH_PATH: i32 = 10;

/// The default shell of a Windows account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// `cmd.exe`, Windows OpenSSH's default: it runs `cmd.exe /c "<command>"`.
    Cmd,
    /// Windows PowerShell or PowerShell 7 (`DefaultShell` in the registry): `-c <command>`.
    PowerShell,
}

impl Shell {
    /// Its name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Shell::Cmd => "cmd.exe",
            Shell::PowerShell => "PowerShell",
        }
    }
}

/// What the probe found about the login account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The default shell.
    pub shell: Shell,
    /// `%USERNAME%`.
    pub user: String,
    /// `%USERDOMAIN%` (the computer name for a local account).
    pub domain: String,
    /// `%USERPROFILE%`, e.g. `C:\Users\name`.
    pub home: String,
    /// `%LOCALAPPDATA%`, e.g. `C:\Users\name\AppData\Local`.
    pub local_app_data: String,
}

/// A Windows session's state: why it is Windows and what the probe found.
#[derive(Debug, Clone)]
pub struct Host {
    /// How the host was found to be Windows, for messages.
    pub why: String,
    /// The probe's answer.
    pub profile: Profile,
}

/// Whether a session is Windows: `Some(why)` when it is. `banner` is the server's SSH banner.
pub fn detect(os: HostOs, banner: Option<&str>) -> Option<String> {
    match os {
        HostOs::Linux => None,
        HostOs::Windows => Some("configured os = \"windows\"".to_string()),
        HostOs::Auto => banner.filter(|b| b.contains(WINDOWS_BANNER)).map(|b| {
            format!(
                "detected as Windows: its SSH banner \"{}\" names {WINDOWS_BANNER}",
                crate::text::sanitize(b.trim())
            )
        }),
    }
}

/// The Windows agent and its hash, or the `agent-failed` error of a build without one: it
/// names how the host was found to be Windows (`why`) and how to get the agent.
pub fn agent_for(
    why: &str,
    agent: Option<(&'static [u8], &'static str)>,
) -> Result<(&'static [u8], &'static str), CollectError> {
    agent.ok_or_else(|| {
        fail(
            ErrorClass::AgentFailed,
            format!(
                "the host is Windows ({why}) but {}",
                crate::agent_bin::WindowsAgentMissing
            ),
        )
    })
}

/// Reads the probe's output (`stdout`): which shell answered and the account's paths. An
/// answer that is neither shell's is an error quoting what came back.
pub fn parse_probe(stdout: &str) -> Result<Profile, String> {
    let unknown = || {
        let shown: String = stdout.trim().chars().take(300).collect();
        format!(
            "the probe was answered neither by cmd.exe nor by PowerShell; it printed {:?}",
            crate::text::sanitize(&shown)
        )
    };
    let start = stdout.find("edgemon-probe|").ok_or_else(unknown)?;
    let line = stdout[start..].lines().next().unwrap_or_default();
    let line = line.trim_end().trim_end_matches('"');
    let fields: Vec<&str> = line.split('|').collect();
    if fields.len() != 12 || fields[11] != "end" {
        return Err(unknown());
    }
    // Field pairs: (cmd's expansion, PowerShell's), for OS, USERNAME, USERDOMAIN,
    // USERPROFILE, LOCALAPPDATA.
    let pair = |i: usize| (fields[1 + 2 * i], fields[2 + 2 * i]);
    let shell = match pair(0) {
        ("Windows_NT", "${env:OS}") => Shell::Cmd,
        ("%OS%", "Windows_NT") => Shell::PowerShell,
        _ => return Err(unknown()),
    };
    const NAMES: [&str; 5] = [
        "OS",
        "USERNAME",
        "USERDOMAIN",
        "USERPROFILE",
        "LOCALAPPDATA",
    ];
    let value = |i: usize| -> Result<String, String> {
        let (cmd, ps) = pair(i);
        let name = NAMES[i];
        let got = match shell {
            Shell::Cmd if cmd == format!("%{name}%") => "",
            Shell::Cmd => cmd,
            Shell::PowerShell => ps,
        };
        if got.trim().is_empty() {
            return Err(format!(
                "%{name}% is not set in the login session ({} answered the probe)",
                shell.name()
            ));
        }
        Ok(got.to_string())
    };
    Ok(Profile {
        shell,
        user: value(1)?,
        domain: value(2)?,
        home: value(3)?,
        local_app_data: value(4)?,
    })
}

/// Where the agent goes on a Windows host, as Windows paths and as SFTP paths
/// (`/C:/Users/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPaths {
    /// `%LOCALAPPDATA%\edgemon`.
    pub dir: String,
    /// `%LOCALAPPDATA%\edgemon\edgemon-agent-<hash prefix>.exe`.
    pub file: String,
    /// `%LOCALAPPDATA%` as an SFTP path.
    pub sftp_parent: String,
    /// The directory as an SFTP path.
    pub sftp_dir: String,
    /// The file as an SFTP path.
    pub sftp_file: String,
    /// The file's name.
    pub name: String,
}

/// A Windows path `X:\...` as Windows OpenSSH's SFTP server names it: `/X:/...`.
pub fn sftp_path(windows: &str) -> String {
    format!("/{}", windows.replace('\\', "/"))
}

/// The agent's paths for `profile` and the build `hash`. Refused (with why): a
/// `%LOCALAPPDATA%` that is not a local drive path inside the login user's own profile, a
/// shared profile (`Public`, `Default`, `All Users`), `..` components, and characters the
/// shells would interpret inside quotes (`%`, `"`, control characters).
pub fn agent_paths(profile: &Profile, hash: &str) -> Result<AgentPaths, String> {
    let local = profile.local_app_data.trim_end_matches('\\');
    let home = profile.home.trim_end_matches('\\');
    let refuse = |why: &str| {
        Err(format!(
            "refusing agent directory {local}\\edgemon: {why} (%USERPROFILE% is {home})"
        ))
    };
    let drive = |p: &str| {
        let b = p.as_bytes();
        b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\'
    };
    if !drive(local) || !drive(home) {
        return refuse("%LOCALAPPDATA% is not on a local drive (X:\\...)");
    }
    if let Some(c) = local
        .chars()
        .chain(home.chars())
        .find(|c| matches!(c, '%' | '"' | '/') || c.is_control())
    {
        return refuse(&format!("the path contains {c:?}"));
    }
    if local.split('\\').any(|part| part == ".." || part == ".") {
        return refuse("the path has . or .. components");
    }
    // Windows paths compare without case.
    let (lower_local, lower_home) = (local.to_lowercase(), home.to_lowercase());
    if !lower_local.starts_with(&format!("{lower_home}\\")) {
        return refuse("it is not inside the login user's profile");
    }
    let last = lower_home.rsplit('\\').next().unwrap_or_default();
    if home.matches('\\').count() < 2 || ["public", "default", "all users"].contains(&last) {
        return refuse("the profile is not a user's own");
    }
    let name = format!("edgemon-agent-{}.exe", &hash[..16.min(hash.len())]);
    let dir = format!("{local}\\edgemon");
    let file = format!("{dir}\\{name}");
    Ok(AgentPaths {
        sftp_parent: sftp_path(local),
        sftp_dir: sftp_path(&dir),
        sftp_file: sftp_path(&file),
        dir,
        file,
        name,
    })
}

/// `word` as one PowerShell single-quoted string: quote characters (PowerShell also takes the
/// typographic single quotes for quotes) are doubled; nothing else is special inside.
fn ps_quote(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A command line for `shell`: `program` and `args`. cmd.exe: the program double-quoted and
/// the arguments bare (the callers' arguments are options, numbers, hex and paths free of `%`
/// and `"`, quoted by the caller where they may hold spaces); PowerShell: the call operator
/// and every word single-quoted, so nothing is parsed as an operator, number or variable.
fn command_line(shell: Shell, program: &str, args: &[String]) -> String {
    match shell {
        Shell::Cmd => {
            let mut line = format!("\"{program}\"");
            for arg in args {
                line.push(' ');
                line.push_str(arg);
            }
            line
        }
        Shell::PowerShell => {
            let mut line = format!("& {}", ps_quote(program));
            for arg in args {
                line.push(' ');
                line.push_str(&ps_quote(arg.trim_matches('"')));
            }
            line
        }
    }
}

/// The command that runs the agent at `file` (a Windows path from [`agent_paths`]) for
/// `shell`, with `--idle-timeout` and the options token (`--options TOKEN`; a token that is
/// not hex is left out, as on Linux, so it needs no quoting in either shell).
pub fn start_command(
    shell: Shell,
    file: &str,
    idle_timeout_s: Option<u64>,
    options: Option<&str>,
) -> String {
    let mut args = Vec::new();
    if let Some(s) = idle_timeout_s {
        args.extend(["--idle-timeout".to_string(), s.to_string()]);
    }
    if let Some(token) =
        options.filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        args.extend(["--options".to_string(), token.to_string()]);
    }
    command_line(shell, file, &args)
}

/// The `icacls` command that makes the agent directory private: inherited entries removed,
/// full control (inherited by files and subdirectories) for the login user, SYSTEM
/// (`S-1-5-18`) and Administrators (`S-1-5-32-544`), given by SID so that localized group
/// names do not matter.
pub fn acl_command(shell: Shell, profile: &Profile, dir: &str) -> String {
    let grant = |who: &str| format!("\"{who}:(OI)(CI)F\"");
    let args = vec![
        format!("\"{dir}\""),
        "/inheritance:r".to_string(),
        "/grant:r".to_string(),
        grant(&format!("{}\\{}", profile.domain, profile.user)),
        grant("*S-1-5-18"),
        grant("*S-1-5-32-544"),
    ];
    match shell {
        Shell::Cmd => format!("icacls {}", args.join(" ")),
        Shell::PowerShell => command_line(shell, "icacls.exe", &args),
    }
}

/// Runs the probe on `session` and parses its answer.
pub fn probe(session: &Session, until: Instant) -> Result<Profile, CollectError> {
    let (status, stdout, stderr) = run(session, PROBE, until)
        .map_err(|e| fail(ErrorClass::AgentFailed, format!("probing the shell: {e}")))?;
    parse_probe(&stdout).map_err(|why| {
        fail(
            ErrorClass::AgentFailed,
            format!(
                "probing the Windows shell: {why} (exit status {status}{})",
                deploy::said(&stderr)
            ),
        )
    })
}

/// Runs `command` on a fresh channel with no input; its exit status, stdout and stderr.
fn run(session: &Session, command: &str, until: Instant) -> Result<(i32, String, String), String> {
    limit(session, until);
    let mut channel = session
        .channel_session()
        .map_err(|e| format!("cannot open a channel: {e}"))?;
    channel
        .exec(command)
        .map_err(|e| format!("cannot exec: {e}"))?;
    let _ = channel.send_eof();
    let (stdout, stderr) = deploy::drain(&mut channel);
    let status = deploy::finish(&mut channel)?;
    Ok((status, stdout, stderr))
}

/// What is at the agent's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No such file.
    Missing,
    /// The file holds exactly the build's bytes.
    Good,
    /// Something else: its size and SHA-256 (hex).
    Other {
        /// Its size in bytes.
        size: u64,
        /// The SHA-256 of its bytes, when it has the build's size (larger files are not read).
        hash: Option<String>,
    },
}

/// Reads `path` back over SFTP and compares it with `agent` (whose SHA-256 is `hash`). A file
/// of another size is not read (a planted file may be huge); at most one byte past the
/// build's size is read in any case.
pub fn check(sftp: &Sftp, path: &str, agent: &[u8], hash: &str) -> Result<Found, String> {
    let mut file = match sftp.open(Path::new(path)) {
        Ok(file) => file,
        Err(e)
            if matches!(
                e.code(),
                ssh2::ErrorCode::SFTP(LIBSSH2_FX_NO_SUCH_FILE | LIBSSH2_FX_NO_SUCH_PATH)
            ) =>
        {
            return Ok(Found::Missing);
        }
        Err(e) => return Err(format!("cannot open {path} over SFTP: {e}")),
    };
    let want = agent.len() as u64;
    let size = file
        .stat()
        .map_err(|e| format!("cannot stat {path} over SFTP: {e}"))?
        .size
        .unwrap_or(want);
    if size != want {
        return Ok(Found::Other { size, hash: None });
    }
    let mut digest = Sha256::new();
    let mut read = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    let mut limited = Read::by_ref(&mut file).take(want + 1);
    loop {
        let n = limited
            .read(&mut buf)
            .map_err(|e| format!("reading {path} back over SFTP: {e}"))?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
        read += n as u64;
    }
    let found = hex::encode(digest.finalize());
    if read == want && found == hash {
        Ok(Found::Good)
    } else {
        Ok(Found::Other {
            size: read,
            hash: (read == want).then_some(found),
        })
    }
}

/// The `agent-untrusted` error for a file at the agent's name that is not the build.
pub fn untrusted(paths: &AgentPaths, found: &Found, agent: &[u8], hash: &str) -> CollectError {
    let what = match found {
        Found::Other {
            size,
            hash: Some(got),
        } => format!("{size} bytes with SHA-256 {}...", &got[..16.min(got.len())]),
        Found::Other { size, hash: None } => format!("{size} bytes"),
        Found::Missing => "no file".to_string(),
        Found::Good => "the expected bytes".to_string(),
    };
    fail(
        ErrorClass::AgentUntrusted,
        format!(
            "agent {} holds {what}, expected {} bytes with SHA-256 {}...; the agent was not run \
             (delete the file to let edgemon upload a fresh copy)",
            paths.file,
            agent.len(),
            &hash[..16.min(hash.len())]
        ),
    )
}

/// Makes a unique temporary file name in the agent directory.
fn temp_name(paths: &AgentPaths) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}/.{}.{}-{}-{nanos}.tmp",
        paths.sftp_dir,
        paths.name,
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Uploads `agent` to `paths` over `sftp`: creates the directory when missing, sets its ACL
/// (one exec of [`acl_command`]), writes a temporary file, reads it back, renames it into
/// place. A rename that fails because another upload got there first is fine when the file in
/// place is the build.
pub fn upload(
    session: &Session,
    sftp: &Sftp,
    profile: &Profile,
    paths: &AgentPaths,
    agent: &[u8],
    hash: &str,
    until: Instant,
) -> Result<(), CollectError> {
    let failed = |what: String| {
        fail(
            ErrorClass::AgentFailed,
            format!("uploading the agent to {}: {what}", paths.dir),
        )
    };
    limit(session, until);
    match sftp.stat(Path::new(&paths.sftp_parent)) {
        Ok(stat) if stat.is_dir() => {}
        Ok(_) => return Err(failed(format!("{} is not a directory", paths.sftp_parent))),
        Err(e) => {
            return Err(failed(format!(
                "%LOCALAPPDATA% ({}): {e}",
                paths.sftp_parent
            )));
        }
    }
    match sftp.lstat(Path::new(&paths.sftp_dir)) {
        Ok(stat) if stat.is_dir() => {}
        Ok(stat) => {
            return Err(fail(
                ErrorClass::AgentUntrusted,
                format!(
                    "agent directory {} is not a directory (a {}); nothing was uploaded",
                    paths.dir,
                    if stat.file_type().is_symlink() {
                        "symbolic link or junction"
                    } else {
                        "file"
                    }
                ),
            ));
        }
        Err(_) => sftp
            .mkdir(Path::new(&paths.sftp_dir), 0o700)
            .map_err(|e| failed(format!("creating {}: {e}", paths.sftp_dir)))?,
    }
    let acl = acl_command(profile.shell, profile, &paths.dir);
    let (status, stdout, stderr) =
        run(session, &acl, until).map_err(|e| failed(format!("icacls: {e}")))?;
    if status != 0 {
        return Err(failed(format!(
            "making the directory private failed: `{acl}` exited with status {status}{}{}",
            deploy::said(&stdout),
            deploy::said(&stderr)
        )));
    }
    let temp = temp_name(paths);
    let written = (|| {
        let mut file = sftp
            .open_mode(
                Path::new(&temp),
                OpenFlags::WRITE | OpenFlags::EXCLUSIVE,
                0o700,
                OpenType::File,
            )
            .map_err(|e| format!("creating {temp}: {e}"))?;
        file.write_all(agent)
            .map_err(|e| format!("writing {} bytes to {temp}: {e}", agent.len()))?;
        file.close().map_err(|e| format!("closing {temp}: {e}"))?;
        drop(file);
        match check(sftp, &temp, agent, hash)? {
            Found::Good => Ok(()),
            other => Err(format!(
                "the uploaded copy {temp} reads back as {other:?}, not the build"
            )),
        }
    })();
    if let Err(why) = written {
        let _ = sftp.unlink(Path::new(&temp));
        return Err(failed(why));
    }
    if let Err(e) = sftp.rename(Path::new(&temp), Path::new(&paths.sftp_file), None) {
        let _ = sftp.unlink(Path::new(&temp));
        // Another entry on this box may have put the same build there meanwhile.
        if check(sftp, &paths.sftp_file, agent, hash).map_err(failed)? != Found::Good {
            return Err(failed(format!(
                "renaming {temp} to {}: {e}",
                paths.sftp_file
            )));
        }
    }
    Ok(())
}

/// Checks (and when missing, uploads) the Windows agent on `link` and starts it for `host`,
/// then has it answer one request; with `resident_agent` the link keeps its channel.
pub(super) fn start(
    link: &mut Link,
    host: &Host,
    options: Option<&str>,
    shared: &Shared,
    watch: &Watch,
    reused: bool,
    until: Instant,
) -> Result<Report, Failure> {
    let (agent, hash) = agent_for(&host.why, shared.windows_agent)?;
    let paths = agent_paths(&host.profile, hash).map_err(|why| {
        fail(
            ErrorClass::AgentUntrusted,
            format!("{why}; the agent was not uploaded or run"),
        )
    })?;
    let session = &link.session;
    let failed = |what: String| settle(session, reused, fail(ErrorClass::AgentFailed, what));
    watch.enter(Phase::Deploy);
    limit(session, until);
    let sftp = session
        .sftp()
        .map_err(|e| failed(format!("cannot start SFTP: {e}")))?;
    // What runs must be a plain file in a plain directory: a link could point anywhere.
    for (path, shown, dir) in [
        (&paths.sftp_dir, &paths.dir, true),
        (&paths.sftp_file, &paths.file, false),
    ] {
        if let Ok(stat) = sftp.lstat(Path::new(path)) {
            let kind = stat.file_type();
            if kind.is_symlink() || (dir && !kind.is_dir()) || (!dir && !kind.is_file()) {
                return Err(fail(
                    ErrorClass::AgentUntrusted,
                    format!(
                        "{shown} is not a plain {}; the agent was not run",
                        if dir { "directory" } else { "file" }
                    ),
                )
                .into());
            }
        }
    }
    let mut found = check(&sftp, &paths.sftp_file, agent, hash).map_err(failed)?;
    if found == Found::Missing {
        // Entries on one box take turns; the one that waited finds the file in place.
        let slot = shared.deployments.slot(&link.destination);
        let mut uploads = slot.lock().unwrap_or_else(|p| p.into_inner());
        found = check(&sftp, &paths.sftp_file, agent, hash).map_err(failed)?;
        if found == Found::Missing {
            upload(session, &sftp, &host.profile, &paths, agent, hash, until)
                .map_err(|e| settle(session, reused, e))?;
            *uploads += 1;
            found = check(&sftp, &paths.sftp_file, agent, hash).map_err(failed)?;
        }
    }
    if found != Found::Good {
        return Err(untrusted(&paths, &found, agent, hash).into());
    }
    drop(sftp);

    let resident = shared.settings.resident_agent;
    let idle = resident.then(|| shared.settings.agent_idle_timeout.as_secs().max(1));
    let command = start_command(host.profile.shell, &paths.file, idle, options);
    watch.enter(Phase::Reply);
    limit(session, until);
    let mut channel = session
        .channel_session()
        .map_err(|e| failed(format!("cannot open a channel: {e}")))?;
    channel
        .exec(&command)
        .map_err(|e| failed(format!("cannot exec the agent: {e}")))?;
    match exchange(&mut channel, session, shared, resident, until) {
        Ok(report) => {
            if resident {
                link.resident = Some(channel);
            }
            Ok(report)
        }
        Err(Failure::Ended(_)) => {
            let (stdout, stderr) = deploy::drain(&mut channel);
            let status = deploy::finish(&mut channel).map_err(|e| failed(format!("agent: {e}")))?;
            Err(fail(
                ErrorClass::AgentFailed,
                format!(
                    "the agent {} exited with status {status} without a reply{}{}",
                    paths.file,
                    deploy::said(&stderr),
                    deploy::stray(&stdout)
                ),
            )
            .into())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd_answer(local: &str) -> String {
        format!(
            "\"edgemon-probe|Windows_NT|${{env:OS}}|Ann Lee|${{env:USERNAME}}|WS01|${{env:USERDOMAIN}}|\
             C:\\Users\\Ann Lee|${{env:USERPROFILE}}|{local}|${{env:LOCALAPPDATA}}|end\"\r\n"
        )
    }

    fn profile(shell: Shell, home: &str, local: &str) -> Profile {
        Profile {
            shell,
            user: "Ann Lee".into(),
            domain: "WS01".into(),
            home: home.into(),
            local_app_data: local.into(),
        }
    }

    #[test]
    fn cmd_answers_the_probe_with_quotes_and_expanded_percent_names() {
        let got = parse_probe(&cmd_answer("C:\\Users\\Ann Lee\\AppData\\Local")).unwrap();
        assert_eq!(
            got,
            profile(
                Shell::Cmd,
                "C:\\Users\\Ann Lee",
                "C:\\Users\\Ann Lee\\AppData\\Local"
            )
        );
    }

    #[test]
    fn powershell_answers_the_probe_with_env_names_and_crlf() {
        let out = "edgemon-probe|%OS%|Windows_NT|%USERNAME%|O'Neil|%USERDOMAIN%|CORP|\
                   %USERPROFILE%|C:\\Users\\O'Neil|%LOCALAPPDATA%|C:\\Users\\O'Neil\\AppData\\Local|end\r\n";
        let got = parse_probe(out).unwrap();
        assert_eq!(got.shell, Shell::PowerShell);
        assert_eq!(got.user, "O'Neil");
        assert_eq!(got.domain, "CORP");
        assert_eq!(got.local_app_data, "C:\\Users\\O'Neil\\AppData\\Local");
    }

    #[test]
    fn an_unknown_answer_says_what_came_back() {
        for out in [
            "",
            "sh: 1: Bad substitution\n",
            "edgemon-probe|%OS%|${env:OS}|x|y|z|w|a|b|c|d|end\n",
            "edgemon-probe|Windows_NT|${env:OS}|short\n",
        ] {
            let err = parse_probe(out).unwrap_err();
            assert!(
                err.contains("neither by cmd.exe nor by PowerShell"),
                "{err}"
            );
        }
        let err = parse_probe("\u{1b}[31mred").unwrap_err();
        assert!(!err.contains('\u{1b}'), "{err}");
    }

    #[test]
    fn an_unset_local_app_data_is_named() {
        let err = parse_probe(&cmd_answer("%LOCALAPPDATA%")).unwrap_err();
        assert!(err.contains("%LOCALAPPDATA% is not set"), "{err}");
    }

    #[test]
    fn the_agent_goes_into_the_users_local_app_data_by_hash_name() {
        let p = profile(
            Shell::Cmd,
            "C:\\Users\\Ann Lee",
            "C:\\Users\\Ann Lee\\AppData\\Local",
        );
        let paths = agent_paths(&p, &"ab12".repeat(16)).unwrap();
        assert_eq!(paths.dir, "C:\\Users\\Ann Lee\\AppData\\Local\\edgemon");
        assert_eq!(
            paths.file,
            "C:\\Users\\Ann Lee\\AppData\\Local\\edgemon\\edgemon-agent-ab12ab12ab12ab12.exe"
        );
        assert_eq!(
            paths.sftp_file,
            "/C:/Users/Ann Lee/AppData/Local/edgemon/edgemon-agent-ab12ab12ab12ab12.exe"
        );
        assert_eq!(paths.sftp_parent, "/C:/Users/Ann Lee/AppData/Local");
        // Case does not matter on Windows.
        let p = profile(
            Shell::Cmd,
            "c:\\users\\ann",
            "C:\\Users\\ANN\\AppData\\Local",
        );
        assert!(agent_paths(&p, "00").is_ok());
    }

    #[test]
    fn a_directory_outside_the_users_own_profile_is_refused() {
        for (home, local) in [
            ("C:\\Users\\ann", "C:\\ProgramData"),
            ("C:\\Users\\ann", "C:\\Users\\annex\\AppData\\Local"),
            ("C:\\Users\\Public", "C:\\Users\\Public\\AppData\\Local"),
            ("C:\\Users\\Default", "C:\\Users\\Default\\AppData\\Local"),
            ("C:\\", "C:\\AppData"),
            ("\\\\server\\share\\ann", "\\\\server\\share\\ann\\Local"),
            ("C:\\Users\\ann", "C:\\Users\\ann\\..\\Public\\Local"),
            ("C:\\Users\\ann", "C:\\Users\\ann\\%TEMP%"),
        ] {
            let err = agent_paths(&profile(Shell::Cmd, home, local), "00").unwrap_err();
            assert!(err.starts_with("refusing agent directory"), "{err}");
        }
    }

    #[test]
    fn the_start_command_is_quoted_for_cmd() {
        let file = "C:\\Users\\Ann Lee\\AppData\\Local\\edgemon\\edgemon-agent-0123.exe";
        assert_eq!(
            start_command(Shell::Cmd, file, Some(300), Some("0a1b")),
            "\"C:\\Users\\Ann Lee\\AppData\\Local\\edgemon\\edgemon-agent-0123.exe\" \
             --idle-timeout 300 --options 0a1b"
        );
        assert_eq!(
            start_command(Shell::Cmd, file, None, None),
            format!("\"{file}\"")
        );
        // A token that is not hex never reaches the shell.
        assert_eq!(
            start_command(Shell::Cmd, file, None, Some("0a & del x")),
            format!("\"{file}\"")
        );
    }

    #[test]
    fn the_start_command_is_quoted_for_powershell() {
        let file = "C:\\Users\\O'Neil\u{2019}s\\AppData\\Local\\edgemon\\edgemon-agent-0123.exe";
        assert_eq!(
            start_command(Shell::PowerShell, file, Some(60), Some("ff")),
            "& 'C:\\Users\\O''Neil\u{2019}\u{2019}s\\AppData\\Local\\edgemon\\edgemon-agent-0123.exe' \
             '--idle-timeout' '60' '--options' 'ff'"
        );
    }

    #[test]
    fn the_acl_command_grants_the_user_system_and_administrators_only() {
        let p = profile(Shell::Cmd, "C:\\Users\\Ann Lee", "x");
        assert_eq!(
            acl_command(
                Shell::Cmd,
                &p,
                "C:\\Users\\Ann Lee\\AppData\\Local\\edgemon"
            ),
            "icacls \"C:\\Users\\Ann Lee\\AppData\\Local\\edgemon\" /inheritance:r /grant:r \
             \"WS01\\Ann Lee:(OI)(CI)F\" \"*S-1-5-18:(OI)(CI)F\" \"*S-1-5-32-544:(OI)(CI)F\""
        );
        assert_eq!(
            acl_command(Shell::PowerShell, &p, "C:\\d"),
            "& 'icacls.exe' 'C:\\d' '/inheritance:r' '/grant:r' 'WS01\\Ann Lee:(OI)(CI)F' \
             '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F'"
        );
    }

    #[test]
    fn detection_follows_the_banner_only_under_auto() {
        let windows = Some("SSH-2.0-OpenSSH_for_Windows_9.5");
        let linux = Some("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3");
        assert!(detect(HostOs::Auto, windows).is_some_and(|w| w.contains("OpenSSH_for_Windows")));
        assert_eq!(detect(HostOs::Auto, linux), None);
        assert_eq!(detect(HostOs::Auto, None), None);
        assert_eq!(detect(HostOs::Linux, windows), None);
        assert!(detect(HostOs::Windows, linux).is_some_and(|w| w.contains("configured")));
    }

    #[test]
    fn a_build_without_the_windows_agent_fails_a_windows_host_saying_why() {
        let why = detect(HostOs::Auto, Some("SSH-2.0-OpenSSH_for_Windows_9.5")).unwrap();
        let err = agent_for(&why, None).unwrap_err();
        assert_eq!(err.class, ErrorClass::AgentFailed);
        assert!(err.message.contains("OpenSSH_for_Windows_9.5"), "{err}");
        assert!(
            err.message
                .contains(&crate::agent_bin::WindowsAgentMissing.to_string()),
            "{err}"
        );
        let agent: &'static [u8] = b"MZ";
        assert!(agent_for(&why, Some((agent, "00"))).is_ok());
    }
}
