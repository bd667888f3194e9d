//! Putting the agent on a host, and refusing to run one that anybody but the
//! login user could have written. The remote copy is
//! `<agent_dir>/edgemon-agent-<sha256 prefix>`, so its name says which build
//! it is and "its SHA-256 differs" is "that file does not exist".
//!
//! Trust is checked on the host, by the command that starts the agent,
//! every time it starts (so once per resident agent, not per round): the
//! directory and the file must belong to the login user, be writable by
//! nobody else (group and other write bits off) and not be symbolic links;
//! the directory's parent must belong to the user or root and, if others may
//! write to it, carry the sticky bit; and the file's SHA-256 must be the
//! expected one. Anything else exits [`UNTRUSTED`] with what was found (owner
//! uid, mode, hash prefix) on stderr and never runs the file. An absent file
//! exits [`MISSING`]; only then is the agent uploaded.
//!
//! Upload is one exec of `mkdir -p` (umask 077, so a new directory and its
//! parents are 0700), the same ownership checks on the directory (a shared
//! directory such as a world-writable `/tmp/shared` is refused, not used),
//! then `cat > tmp.$$`, a SHA-256 check and `mv tmp.$$ final`: the rename is
//! atomic, so several host entries on one machine uploading at once cannot
//! leave a corrupt agent. Within this process, entries that share
//! `user@address:port` take turns ([`Deployments`]); what they remember is
//! only a count of uploads, never "the file is there", so an agent that
//! vanished (a reboot wiping `/tmp`) is uploaded again. This module does not
//! read the agent's reply.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ssh2::Session;

use super::fail;
use super::session::limit;
use crate::collect::outcome::{CollectError, ErrorClass};

/// Exit status of the start command when the agent file is absent.
pub const MISSING: i32 = 97;

/// Exit status of the start and upload commands when the directory or the file fails the
/// ownership, mode or SHA-256 checks; the finding is on stderr.
pub const UNTRUSTED: i32 = 96;

/// Largest stderr or stray stdout kept for messages.
const KEEP_TEXT: u64 = 4096;

/// Uploads done by this process, counted per destination, so that entries on one box upload
/// once per disappearance of the agent instead of once each.
#[derive(Debug, Default)]
pub struct Deployments {
    by_destination: Mutex<HashMap<String, Arc<Mutex<u64>>>>,
}

impl Deployments {
    /// Blocks while another entry uploads to `destination`, so that this one execs once, after
    /// the upload, instead of finding the agent missing and exec'ing twice. Returns the number
    /// of uploads to `destination` so far, for [`ensure_uploaded`].
    pub fn settled(&self, destination: &str) -> u64 {
        let slot = self.slot(destination);
        *slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The upload count of `destination`; holding its lock is holding the turn to upload there.
    pub(super) fn slot(&self, destination: &str) -> Arc<Mutex<u64>> {
        let mut map = self
            .by_destination
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(destination.to_string()).or_default().clone()
    }
}

/// The remote agent's path as a shell word: `~/` becomes `$HOME/`, the rest is double-quoted
/// (so `$USER` and `$HOME` expand, and nothing else is interpreted: any other `$`, such as
/// `$(...)` or `${...}`, is kept literally).
pub fn remote_path(agent_dir: &str, hash: &str) -> (String, String) {
    let dir = agent_dir.trim_end_matches('/');
    let (prefix, rest) = match dir.strip_prefix("~/") {
        Some(rest) => ("$HOME/", rest),
        None if dir == "~" => ("$HOME", ""),
        None => ("", dir),
    };
    let mut quoted = String::with_capacity(rest.len() + 2);
    for (i, c) in rest.char_indices() {
        let expands = |name: &str| {
            rest[i + 1..].strip_prefix(name).is_some_and(|after| {
                !after.starts_with(|n: char| n.is_ascii_alphanumeric() || n == '_')
            })
        };
        match c {
            '$' if expands("USER") || expands("HOME") => quoted.push(c),
            '"' | '\\' | '`' | '$' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c => quoted.push(c),
        }
    }
    let dir = format!("\"{prefix}{quoted}\"");
    let file = format!("{dir}/edgemon-agent-{}", &hash[..16.min(hash.len())]);
    (dir, file)
}

/// Shell functions shared by the start and upload commands (POSIX sh, `ls -ldn` for owner and
/// mode, so no GNU `stat` is needed):
/// - `o PATH WHAT TYPE [NAME]`: PATH is of TYPE (`d` or `-`), not a symlink, owned by `$u`, and
///   has no group or other write bit (messages call it NAME, PATH by default);
/// - `p DIR [NAME]`: DIR's parent is owned by `$u` or root, and sticky if others may write to it;
/// - `s FILE`: FILE's SHA-256 in hex (sha256sum, shasum or openssl), empty if none exists.
const CHECKS: &str = r#"set -f; u=$(id -u)
o() { n=${4:-$1}; l=$(LC_ALL=C ls -ldn -- "$1" 2>/dev/null) || { echo "$2 $n cannot be examined" >&2; return 1; }
 set -- "$1" "$2" "$3" $l
 case $4 in l*) echo "$2 $n is a symbolic link (owner uid $6)" >&2; return 1;; "$3"*) ;; *) echo "$2 $n is not a $( [ "$3" = d ] && echo directory || echo regular file) (mode $4, owner uid $6)" >&2; return 1;; esac
 [ "$6" = "$u" ] || { echo "$2 $n is owned by uid $6, not by the login user (uid $u); mode $4" >&2; return 1; }
 case $4 in ?????w*|????????w*) echo "$2 $n is writable by others (mode $4, owner uid $6)" >&2; return 1;; esac; }
p() { n=${2:-$1}; l=$(LC_ALL=C ls -ldn -- "$1/.." 2>/dev/null) || { echo "the parent of $n cannot be examined" >&2; return 1; }
 set -- "$1" $l
 case $4 in "$u"|0) ;; *) echo "the parent of agent directory $n is owned by uid $4 (mode $2)" >&2; return 1;; esac
 case $2 in ?????w*|????????w*) case $2 in ?????????[tT]*) ;; *) echo "the parent of agent directory $n is writable by others without the sticky bit (mode $2)" >&2; return 1;; esac;; esac; }
s() { if command -v sha256sum >/dev/null 2>&1; then sha256sum; elif command -v shasum >/dev/null 2>&1; then shasum -a 256; elif command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r; fi < "$1" 2>/dev/null | cut -c1-64; }
"#;

/// [`start_command_with`] without options (the tests' shorthand).
#[cfg(test)]
pub fn start_command(agent_dir: &str, hash: &str, idle_timeout_s: Option<u64>) -> String {
    start_command_with(agent_dir, hash, idle_timeout_s, None)
}

/// The command that checks the agent and runs it; exits [`MISSING`] when it is absent and
/// [`UNTRUSTED`] (never running it) when a check fails. The agent gets `--idle-timeout` and
/// its options token (`--options TOKEN`: hex, so it needs no quoting; a token that is not
/// hex is left out rather than given to the shell).
///
/// After the checks by path it enters the directory and checks `.`, its parent and `./file`
/// again, then hashes and execs `./file`: what runs is the file in the directory that was
/// checked, even if an ancestor others may write is swapped meanwhile.
pub fn start_command_with(
    agent_dir: &str,
    hash: &str,
    idle_timeout_s: Option<u64>,
    options: Option<&str>,
) -> String {
    let (dir, file) = remote_path(agent_dir, hash);
    let mut args = idle_timeout_s
        .map(|s| format!(" --idle-timeout {s}"))
        .unwrap_or_default();
    if let Some(token) =
        options.filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        args.push_str(" --options ");
        args.push_str(token);
    }
    let short = &hash[..16.min(hash.len())];
    format!(
        "{CHECKS}d={dir}; f={file}; b=./edgemon-agent-{short}\n\
         if [ ! -e \"$f\" ] && [ ! -L \"$f\" ]; then exit {MISSING}; fi\n\
         {{ p \"$d\" && o \"$d\" 'agent directory' d && o \"$f\" agent -; }} || exit {UNTRUSTED}\n\
         cd -- \"$d\" 2>/dev/null || {{ echo \"agent directory $d cannot be entered\" >&2; exit {UNTRUSTED}; }}\n\
         {{ p . \"$d\" && o . 'agent directory' d \"$d\" && o \"$b\" agent - \"$f\"; }} || exit {UNTRUSTED}\n\
         h=$(s \"$b\")\n\
         if [ -z \"$h\" ]; then echo \"cannot check the SHA-256 of agent $f: no sha256sum, shasum or openssl on the host\" >&2; exit {UNTRUSTED}; fi\n\
         if [ \"$h\" != {hash} ]; then echo \"agent $f has SHA-256 $(printf %.16s \"$h\")..., expected {short}... (owner uid $u)\" >&2; exit {UNTRUSTED}; fi\n\
         exec \"$b\"{args}"
    )
}

/// The upload command: a private directory (created 0700, refused if it is not the login
/// user's alone), a temporary name, a SHA-256 check, an atomic rename.
pub fn upload_command(agent_dir: &str, hash: &str) -> String {
    let (dir, file) = remote_path(agent_dir, hash);
    format!(
        "umask 077; {CHECKS}d={dir}; f={file}\n\
         mkdir -p \"$d\" || {{ echo \"cannot create agent directory $d\" >&2; exit 1; }}\n\
         {{ p \"$d\" && o \"$d\" 'agent directory' d; }} || exit {UNTRUSTED}\n\
         t=\"$d/.edgemon-agent.tmp.$$\"\n\
         cat > \"$t\" && chmod 700 \"$t\" || {{ rm -f \"$t\"; exit 1; }}\n\
         h=$(s \"$t\")\n\
         if [ \"$h\" != {hash} ]; then echo \"uploaded agent has SHA-256 ${{h:-unknown}}, expected {hash}\" >&2; rm -f \"$t\"; exit 1; fi\n\
         mv -f \"$t\" \"$f\""
    )
}

/// Uploads `agent` unless another entry on the same destination uploaded since this one saw
/// `seen` uploads ([`Deployments::settled`]); blocks while such an upload runs.
#[allow(clippy::too_many_arguments)]
pub fn ensure_uploaded(
    session: &Session,
    deployments: &Deployments,
    destination: &str,
    seen: u64,
    agent_dir: &str,
    agent: &[u8],
    hash: &str,
    until: Instant,
) -> Result<(), CollectError> {
    let slot = deployments.slot(destination);
    let mut count = slot.lock().unwrap_or_else(|p| p.into_inner());
    if *count != seen {
        return Ok(());
    }
    upload(session, agent_dir, agent, hash, until)?;
    *count += 1;
    Ok(())
}

fn upload(
    session: &Session,
    agent_dir: &str,
    agent: &[u8],
    hash: &str,
    until: Instant,
) -> Result<(), CollectError> {
    let failed = |what: String| {
        fail(
            ErrorClass::AgentFailed,
            format!("uploading the agent: {what}"),
        )
    };
    limit(session, until);
    let mut channel = session
        .channel_session()
        .map_err(|e| failed(format!("opening a channel: {e}")))?;
    channel
        .exec(&upload_command(agent_dir, hash))
        .map_err(|e| failed(format!("exec: {e}")))?;
    channel
        .write_all(agent)
        .map_err(|e| failed(format!("sending {} bytes: {e}", agent.len())))?;
    channel
        .send_eof()
        .map_err(|e| failed(format!("closing stdin: {e}")))?;
    let (_, stderr) = drain(&mut channel);
    let status = finish(&mut channel).map_err(failed)?;
    match status {
        0 => Ok(()),
        UNTRUSTED => Err(untrusted(&stderr, "not uploaded")),
        _ => Err(failed(format!(
            "the upload command exited with status {status}{}",
            said(&stderr)
        ))),
    }
}

/// The `agent-untrusted` error for what a check printed; `outcome` says what was not done.
pub fn untrusted(stderr: &str, outcome: &str) -> CollectError {
    let found = stderr.trim();
    let found = if found.is_empty() {
        "a check failed without saying why"
    } else {
        found
    };
    fail(
        ErrorClass::AgentUntrusted,
        format!("{found}; the agent was {outcome}"),
    )
}

/// Reads what is left of stdout and stderr (bounded) until EOF.
pub fn drain(channel: &mut ssh2::Channel) -> (String, String) {
    let mut out = Vec::new();
    let _ = Read::by_ref(channel).take(KEEP_TEXT).read_to_end(&mut out);
    // Discard anything beyond the bound so that the channel can reach EOF.
    let _ = std::io::copy(
        &mut Read::by_ref(channel).take(1 << 20),
        &mut std::io::sink(),
    );
    let mut err = Vec::new();
    let _ = channel.stderr().take(KEEP_TEXT).read_to_end(&mut err);
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// Waits for the remote close and returns the exit status; a signal is an error.
///
/// libssh2 reports status 0 for a command killed by a signal or a channel closed
/// without status, so the signal is checked first, after `wait_close`.
pub fn finish(channel: &mut ssh2::Channel) -> Result<i32, String> {
    channel
        .wait_close()
        .map_err(|e| format!("waiting for the command to end: {e}"))?;
    if let Ok(ssh2::ExitSignal {
        exit_signal: Some(name),
        ..
    }) = channel.exit_signal()
    {
        return Err(format!("the command was killed by signal SIG{name}"));
    }
    channel
        .exit_status()
        .map_err(|e| format!("reading the exit status: {e}"))
}

/// `" (stdout: ...)"` for what a command printed on stdout where nothing was expected; empty
/// for blank output.
pub fn stray(stdout: &str) -> String {
    let stdout = stdout.trim();
    if stdout.is_empty() {
        String::new()
    } else {
        format!(" (stdout: {stdout})")
    }
}

/// `"; it said: ..."` for non-empty text.
pub fn said(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!("; it said: {text}")
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn sh(command: &str) -> std::process::Output {
        std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .output()
            .unwrap()
    }

    fn upload_locally(agent_dir: &str, hash: &str, body: &[u8]) -> std::process::Output {
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(upload_command(agent_dir, hash))
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(body).unwrap();
        child.wait_with_output().unwrap()
    }

    const BODY: &[u8] = b"#!/bin/sh\necho started \"$@\"\n";

    fn hash_of(body: &[u8]) -> String {
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body))
    }

    fn chmod(path: &std::path::Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn upload_then_start_runs_the_uploaded_file_and_a_missing_file_exits_97() {
        let dir = tempfile::tempdir().unwrap();
        let agent_dir = dir
            .path()
            .join("sub dir \"q\"/deeper")
            .display()
            .to_string();
        let hash = hash_of(BODY);

        let missing = sh(&start_command(&agent_dir, &hash, None));
        assert_eq!(missing.status.code(), Some(MISSING));

        assert!(upload_locally(&agent_dir, &hash, BODY).status.success());

        let run = sh(&start_command(&agent_dir, &hash, Some(30)));
        assert_eq!(
            String::from_utf8_lossy(&run.stdout),
            "started --idle-timeout 30\n",
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        // The directory and the parents mkdir made are private.
        for path in [dir.path().join("sub dir \"q\""), agent_dir.clone().into()] {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", path.display());
        }
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&agent_dir).unwrap().count(), 1);
    }

    #[test]
    fn a_corrupted_upload_is_refused_and_not_renamed_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let agent_dir = dir.path().join("a").display().to_string();
        let out = upload_locally(&agent_dir, &"0".repeat(64), b"not it");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("expected"));
        assert_eq!(std::fs::read_dir(&agent_dir).unwrap().count(), 0);
    }

    /// Plants `body` as the agent in `agent_dir` (created with `dir_mode`) and runs the start
    /// command; returns its output and whether the planted file ran (it touches a marker).
    fn start_planted(
        dir_mode: u32,
        file_mode: u32,
        body_hash: Option<&str>,
    ) -> (i32, String, bool) {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let body = format!("#!/bin/sh\ntouch '{}'\n", marker.display());
        let agent_dir = dir.path().join("agent");
        std::fs::create_dir(&agent_dir).unwrap();
        let expected = body_hash.map_or_else(|| hash_of(body.as_bytes()), str::to_string);
        let file = agent_dir.join(format!("edgemon-agent-{}", &expected[..16]));
        std::fs::write(&file, &body).unwrap();
        chmod(&file, file_mode);
        chmod(&agent_dir, dir_mode);
        let out = sh(&start_command(
            &agent_dir.display().to_string(),
            &expected,
            None,
        ));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            marker.exists(),
        )
    }

    #[test]
    fn a_trusted_agent_runs() {
        let (code, stderr, ran) = start_planted(0o700, 0o700, None);
        assert_eq!((code, ran), (0, true), "{stderr}");
    }

    #[test]
    fn an_agent_in_a_directory_others_may_write_is_not_run() {
        let (code, stderr, ran) = start_planted(0o777, 0o755, None);
        assert_eq!((code, ran), (UNTRUSTED, false), "{stderr}");
        assert!(
            stderr.contains("agent directory") && stderr.contains("writable by others"),
            "{stderr}"
        );
        assert!(stderr.contains("drwxrwxrwx"), "the mode is named: {stderr}");
    }

    #[test]
    fn a_group_writable_agent_is_not_run() {
        let (code, stderr, ran) = start_planted(0o700, 0o775, None);
        assert_eq!((code, ran), (UNTRUSTED, false), "{stderr}");
        assert!(stderr.contains("-rwxrwxr-x"), "{stderr}");
    }

    #[test]
    fn an_agent_with_another_hash_is_not_run() {
        let other = "ab".repeat(32);
        let (code, stderr, ran) = start_planted(0o700, 0o700, Some(&other));
        assert_eq!((code, ran), (UNTRUSTED, false), "{stderr}");
        assert!(
            stderr.contains("has SHA-256") && stderr.contains("expected abababababababab"),
            "{stderr}"
        );
    }

    #[test]
    fn a_symlinked_agent_is_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let body = format!("#!/bin/sh\ntouch '{}'\n", marker.display());
        let hash = hash_of(body.as_bytes());
        let real = dir.path().join("real");
        std::fs::write(&real, &body).unwrap();
        chmod(&real, 0o700);
        let agent_dir = dir.path().join("agent");
        std::fs::create_dir(&agent_dir).unwrap();
        chmod(&agent_dir, 0o700);
        let file = agent_dir.join(format!("edgemon-agent-{}", &hash[..16]));
        std::os::unix::fs::symlink(&real, file).unwrap();
        let out = sh(&start_command(
            &agent_dir.display().to_string(),
            &hash,
            None,
        ));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(UNTRUSTED), "{stderr}");
        assert!(stderr.contains("symbolic link"), "{stderr}");
        assert!(!marker.exists());
    }

    /// The checks passed on one directory and then another was put in its place (an ancestor
    /// others may write, here a stand-in `sha256sum` doing the swap mid-check): the start
    /// command must run the file it checked, never whatever the path names by exec time.
    #[test]
    fn agent_swapped_in_after_the_trust_check_is_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("planted-ran");
        let hash = hash_of(BODY);
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        chmod(&shared, 0o777);
        let agent_dir = shared.join("box").join("agent");
        assert!(
            upload_locally(&agent_dir.display().to_string(), &hash, BODY)
                .status
                .success()
        );
        let name = format!("edgemon-agent-{}", &hash[..16]);
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let real = ["/usr/bin/sha256sum", "/bin/sha256sum"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap();
        let swap = format!(
            "#!/bin/sh
mv '{s}/box' '{s}/box.old'
mkdir -p '{s}/box/agent'
             printf '#!/bin/sh\ntouch {m}\n' > '{s}/box/agent/{name}'
             chmod 700 '{s}/box/agent/{name}'
exec {real}
",
            s = shared.display(),
            m = marker.display(),
        );
        std::fs::write(bin.join("sha256sum"), swap).unwrap();
        chmod(&bin.join("sha256sum"), 0o755);
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(start_command(&agent_dir.display().to_string(), &hash, None))
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .output()
            .unwrap();
        assert!(shared.join("box.old").exists(), "the swap happened");
        assert!(!marker.exists(), "the planted agent ran");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "started\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn upload_refuses_a_shared_directory() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        chmod(&shared, 0o1777);
        let hash = hash_of(BODY);
        let out = upload_locally(&shared.display().to_string(), &hash, BODY);
        assert_eq!(out.status.code(), Some(UNTRUSTED));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("writable by others"), "{stderr}");
        assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 0);
    }

    #[test]
    fn a_dollar_in_agent_dir_runs_no_command_and_only_user_and_home_expand() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("substituted");
        let agent_dir = format!(
            "{}/a$(touch {})b${{IFS}}c/$USER",
            dir.path().display(),
            marker.display()
        );
        let hash = hash_of(BODY);
        let out = upload_locally(&agent_dir, &hash, BODY);
        assert!(out.status.success(), "{out:?}");
        let run = sh(&start_command(&agent_dir, &hash, None));
        assert_eq!(String::from_utf8_lossy(&run.stdout), "started\n", "{run:?}");
        assert!(!marker.exists(), "a command in agent_dir ran");
        let user = std::env::var("USER").unwrap_or_default();
        let literal = dir
            .path()
            .join(format!("a$(touch {})b${{IFS}}c/{user}", marker.display()));
        assert!(literal.is_dir(), "{}", literal.display());
    }

    #[test]
    fn a_home_relative_dir_expands_on_the_host() {
        let (dir, file) = remote_path("~/.cache/edgemon", &"f".repeat(64));
        assert_eq!(dir, "\"$HOME/.cache/edgemon\"");
        assert_eq!(
            file,
            "\"$HOME/.cache/edgemon\"/edgemon-agent-ffffffffffffffff"
        );
    }
}
