//! Putting the agent on a host: the remote copy is
//! `<agent_dir>/edgemon-agent-<sha256 prefix>`, so its name says which build
//! it is and "its SHA-256 differs" is "that file does not exist". The command
//! that starts the agent checks for the file and exits with [`MISSING`]
//! instead of running it when it is absent; only then is the agent uploaded.
//!
//! Upload is one exec of `cat > tmp.$$ && chmod 700 && mv tmp.$$ final` in a
//! directory created `mkdir -p`, mode 0700 and checked to be owned by the
//! login user: the rename is atomic, so several host entries on one machine
//! uploading at once cannot leave a corrupt agent. Within this process,
//! entries that share `user@address:port` and directory upload once
//! ([`Deployments`]). This module does not read the agent's reply.

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

/// Largest stderr or stray stdout kept for messages.
const KEEP_TEXT: u64 = 4096;

/// Uploads done by this process, per destination, so entries on one box upload once.
#[derive(Debug, Default)]
pub struct Deployments {
    by_destination: Mutex<HashMap<String, Arc<Mutex<bool>>>>,
}

impl Deployments {
    /// Blocks while another entry uploads to `destination`, so that this one execs once, after
    /// the upload, instead of finding the agent missing and exec'ing twice.
    pub fn wait_for_upload(&self, destination: &str) {
        let slot = self
            .by_destination
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(destination)
            .cloned();
        if let Some(slot) = slot {
            drop(slot.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }

    fn slot(&self, destination: &str) -> Arc<Mutex<bool>> {
        let mut map = self
            .by_destination
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(destination.to_string()).or_default().clone()
    }
}

/// The remote agent's path as a shell word: `~/` becomes `$HOME/`, the rest is double-quoted
/// (so `$USER` and `$HOME` expand, and nothing else is interpreted).
pub fn remote_path(agent_dir: &str, hash: &str) -> (String, String) {
    let dir = agent_dir.trim_end_matches('/');
    let (prefix, rest) = match dir.strip_prefix("~/") {
        Some(rest) => ("$HOME/", rest),
        None => ("", dir),
    };
    let quoted: String = rest
        .chars()
        .flat_map(|c| match c {
            '"' | '\\' | '`' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    let dir = format!("\"{prefix}{quoted}\"");
    let file = format!("{dir}/edgemon-agent-{}", &hash[..16.min(hash.len())]);
    (dir, file)
}

/// The command that runs the agent if present, else exits [`MISSING`].
pub fn start_command(agent_dir: &str, hash: &str, idle_timeout_s: Option<u64>) -> String {
    let (_, file) = remote_path(agent_dir, hash);
    let args = idle_timeout_s
        .map(|s| format!(" --idle-timeout {s}"))
        .unwrap_or_default();
    format!("f={file}; if [ -x \"$f\" ]; then exec \"$f\"{args}; else exit {MISSING}; fi")
}

/// The upload command: private directory, temporary name, hash check where `sha256sum`
/// exists, atomic rename.
pub fn upload_command(agent_dir: &str, hash: &str) -> String {
    let (dir, file) = remote_path(agent_dir, hash);
    format!(
        "umask 077; d={dir}; f={file}; \
         mkdir -p \"$d\" && chmod 700 \"$d\" || exit 1; \
         if [ ! -O \"$d\" ]; then echo \"agent directory $d is not owned by $(id -un)\" >&2; exit 1; fi; \
         t=\"$d/.edgemon-agent.tmp.$$\"; \
         cat > \"$t\" && chmod 700 \"$t\" || {{ rm -f \"$t\"; exit 1; }}; \
         if command -v sha256sum >/dev/null 2>&1; then \
           h=$(sha256sum < \"$t\" | cut -c1-64); \
           if [ \"$h\" != {hash} ]; then echo \"uploaded agent has SHA-256 $h, expected {hash}\" >&2; rm -f \"$t\"; exit 1; fi; \
         fi; \
         mv -f \"$t\" \"$f\""
    )
}

/// Uploads `agent` unless this process already did for `destination`; blocks while
/// another entry on the same destination uploads.
pub fn ensure_uploaded(
    session: &Session,
    deployments: &Deployments,
    destination: &str,
    agent_dir: &str,
    agent: &[u8],
    hash: &str,
    until: Instant,
) -> Result<(), CollectError> {
    let slot = deployments.slot(destination);
    let mut done = slot.lock().unwrap_or_else(|p| p.into_inner());
    if *done {
        return Ok(());
    }
    upload(session, agent_dir, agent, hash, until)?;
    *done = true;
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
    if status != 0 {
        return Err(failed(format!(
            "the upload command exited with status {status}{}",
            said(&stderr)
        )));
    }
    Ok(())
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
    use super::*;

    fn sh(command: &str) -> std::process::Output {
        std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .output()
            .unwrap()
    }

    #[test]
    fn upload_then_start_runs_the_uploaded_file_and_a_missing_file_exits_97() {
        let dir = tempfile::tempdir().unwrap();
        let agent_dir = dir.path().join("sub dir \"q\"").display().to_string();
        let body = b"#!/bin/sh\necho started \"$@\"\n";
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body));

        let missing = sh(&start_command(&agent_dir, &hash, None));
        assert_eq!(missing.status.code(), Some(MISSING));

        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(upload_command(&agent_dir, &hash))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(body).unwrap();
        assert!(child.wait().unwrap().success());

        let run = sh(&start_command(&agent_dir, &hash, Some(30)));
        assert_eq!(
            String::from_utf8_lossy(&run.stdout),
            "started --idle-timeout 30\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&agent_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&agent_dir).unwrap().count(), 1);
    }

    #[test]
    fn a_corrupted_upload_is_refused_and_not_renamed_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let agent_dir = dir.path().join("a").display().to_string();
        let hash = "0".repeat(64);
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(upload_command(&agent_dir, &hash))
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"not it").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("expected"));
        assert_eq!(std::fs::read_dir(&agent_dir).unwrap().count(), 0);
    }
}
