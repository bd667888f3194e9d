//! The local transport: runs `edgemon-agent` on this box as a child process
//! and speaks the same envelope over its stdin and stdout as SSH hosts do.
//! This is what the shipped default configuration uses to monitor the box
//! itself.
//!
//! It owns the child's lifetime: the child is killed when the deadline passes,
//! and the reply is bounded in size before it is read into memory.
//!
//! A local host with `os = "windows"` runs the embedded Windows agent
//! (`edgemon-agent.exe`, installed beside the Linux one by
//! [`crate::agent_bin::install_local_windows`]) under Wine: `wine64 <exe>
//! [--options TOKEN]`, the same envelope over the same pipes. This is a test
//! and lab feature (it is how the Windows agent is tested end to end on a
//! Linux box), not a way to monitor Windows machines: those are SSH hosts.
//! Wine is `EDGEMON_WINE` when set, else `wine64` from `PATH`, else Debian's
//! `/usr/lib/wine/wine64`; it runs in the collector's environment, so
//! `WINEPREFIX` (and `WINEDEBUG=-all`, or Wine's diagnostics fill the agent's
//! stderr) come from there. A build without the Windows agent fails such a
//! host with `agent-failed` and the message of
//! [`crate::agent_bin::WindowsAgentMissing`].

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use edgemon_proto::envelope::{self, Initiator};

use super::outcome::{CollectError, ErrorClass};
use crate::config::{AgentOptions, HostOs};
use crate::report::family::Value;
use crate::report::{self, Report};

/// The `--options` token for a host's agent options; `None` when they are the agent's
/// defaults, so a default configuration starts any agent version alike (one older than the
/// families does not know `--options`).
pub fn options_token(options: &AgentOptions) -> Option<String> {
    (*options != AgentOptions::default()).then(|| options.to_token())
}

/// The agent programs installed for the local transport.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalAgents {
    /// The Linux agent (`<data_dir>/agent/edgemon-agent-<hash>`).
    pub linux: PathBuf,
    /// The Windows agent (`<data_dir>/agent/edgemon-agent-<hash>.exe`), installed only when a
    /// local host has `os = "windows"` and this build embeds one.
    pub windows: Option<PathBuf>,
}

impl LocalAgents {
    /// What local host `host` of operating system `os` runs: the Windows agent under Wine for
    /// `os = "windows"` (an `agent-failed` error naming the host when this build has none),
    /// the Linux agent otherwise (a local `auto` host is this box).
    pub fn for_host(&self, host: &str, os: HostOs) -> Result<LocalAgent, CollectError> {
        match os {
            HostOs::Windows => match &self.windows {
                Some(exe) => Ok(LocalAgent::Wine {
                    wine: wine_binary(),
                    exe: exe.clone(),
                }),
                None => Err(CollectError::new(
                    ErrorClass::AgentFailed,
                    format!(
                        "host {host} has os = \"windows\": {}",
                        crate::agent_bin::WindowsAgentMissing
                    ),
                )),
            },
            HostOs::Auto | HostOs::Linux => Ok(LocalAgent::Native(self.linux.clone())),
        }
    }
}

/// The program a local host's agent runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalAgent {
    /// The Linux agent, run directly.
    Native(PathBuf),
    /// The Windows agent `exe`, run by the Wine loader `wine`.
    Wine {
        /// The Wine loader (`wine64`).
        wine: PathBuf,
        /// The installed `edgemon-agent-<hash>.exe`.
        exe: PathBuf,
    },
}

impl LocalAgent {
    /// The command that starts this agent with the options token `options` (`None`: its
    /// defaults); stdio is left to the caller.
    pub fn command(&self, options: Option<&str>) -> Command {
        let mut command = match self {
            LocalAgent::Native(agent) => Command::new(agent),
            LocalAgent::Wine { wine, exe } => {
                let mut command = Command::new(wine);
                command.arg(exe);
                command
            }
        };
        if let Some(token) = options {
            command.args(["--options", token]);
        }
        command
    }

    /// How errors name this agent: `local agent PATH` or `local Windows agent PATH (under
    /// Wine WINE)`.
    pub fn describe(&self) -> String {
        match self {
            LocalAgent::Native(agent) => format!("local agent {}", agent.display()),
            LocalAgent::Wine { wine, exe } => format!(
                "local Windows agent {} (under Wine {})",
                exe.display(),
                wine.display()
            ),
        }
    }
}

/// Debian's Wine loader, used when `EDGEMON_WINE` is unset and `wine64` is not on `PATH`
/// (the `wine64` package installs only this; the `wine` package adds `/usr/bin/wine64`).
pub const DEBIAN_WINE64: &str = "/usr/lib/wine/wine64";

/// The Wine loader a local Windows host runs under: `EDGEMON_WINE`, else `wine64` from
/// `PATH`, else [`DEBIAN_WINE64`] when it exists, else plain `wine64` (whose start then fails
/// with a message naming it).
pub fn wine_binary() -> PathBuf {
    find_wine(std::env::var_os("EDGEMON_WINE"), std::env::var_os("PATH"))
}

fn find_wine(explicit: Option<OsString>, path: Option<OsString>) -> PathBuf {
    if let Some(wine) = explicit.filter(|w| !w.is_empty()) {
        return PathBuf::from(wine);
    }
    let on_path = path.and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("wine64"))
            .find(|candidate| candidate.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from(DEBIAN_WINE64)).filter(|p| p.is_file()))
        .unwrap_or_else(|| PathBuf::from("wine64"))
}

/// Runs `agent` once with the options token `options` (`None`: its defaults): sends a DH
/// request, reads one reply within `timeout`, opens and parses it.
pub fn collect(
    agent: &LocalAgent,
    options: Option<&str>,
    timeout: Duration,
    max_reply: usize,
) -> Result<Report, CollectError> {
    let initiator = Initiator::new();
    let agent_failed = |what: String| CollectError::new(ErrorClass::AgentFailed, what);
    let mut child = agent
        .command(options)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            let hint = match agent {
                LocalAgent::Native(_) => "",
                LocalAgent::Wine { .. } => {
                    " (install wine64, or set EDGEMON_WINE to the Wine loader)"
                }
            };
            agent_failed(format!("cannot start {}: {e}{hint}", agent.describe()))
        })?;
    let (Some(mut stdin), Some(mut stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        return Err(agent_failed("local agent has no stdio pipes".into()));
    };

    // The reader runs on its own thread so that the deadline holds whatever the agent does.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let frame = envelope::read_frame(&mut stdout, max_reply);
        let _ = tx.send(frame);
    });
    let err_reader = StderrReader::start(stderr);
    let sent = envelope::write_frame(&mut stdin, &initiator.request());
    drop(stdin); // EOF after one request: the agent answers once and exits.

    let frame = match rx.recv_timeout(timeout) {
        Ok(frame) => frame,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(CollectError::new(
                ErrorClass::Timeout,
                format!(
                    "local agent gave no reply within {}",
                    humantime::format_duration(timeout)
                ),
            ));
        }
    };
    let status = child
        .wait()
        .map_err(|e| agent_failed(format!("waiting for local agent: {e}")))?;
    let stderr_text = err_reader.text();
    let reply = match frame {
        Ok(Some(reply)) => reply,
        Ok(None) => {
            return Err(agent_failed(format!(
                "local agent exited ({status}) without a reply{}{}",
                sent.err()
                    .map(|e| format!(", request not delivered: {e}"))
                    .unwrap_or_default(),
                stderr_suffix(&stderr_text)
            )));
        }
        Err(e) => {
            return Err(CollectError::new(
                ErrorClass::BadEnvelope,
                format!("local agent reply: {e}"),
            ));
        }
    };
    if !status.success() {
        return Err(agent_failed(format!(
            "local agent exited with {status}{}",
            stderr_suffix(&stderr_text)
        )));
    }
    open_reply(&initiator, &reply, max_reply)
}

/// Opens an agent's reply and parses the report inside; shared by every transport.
pub fn open_reply(
    initiator: &Initiator,
    reply: &[u8],
    max_reply: usize,
) -> Result<Report, CollectError> {
    let payload = initiator
        .open(reply, max_reply)
        .map_err(|e| CollectError::new(ErrorClass::BadEnvelope, format!("reply rejected: {e}")))?;
    let mut report = report::parse(&payload)
        .map_err(|e| CollectError::new(ErrorClass::BadPayload, format!("report rejected: {e}")))?;
    clean_report_text(&mut report);
    Ok(report)
}

/// The host's own words in a report (name, OS, kernel, unknown elements) lose their control
/// characters before anything prints, logs, mails or stores them.
fn clean_report_text(report: &mut Report) {
    let clean = |text: &mut String| {
        if let std::borrow::Cow::Owned(safe) = crate::text::sanitize(text) {
            *text = safe;
        }
    };
    for text in [&mut report.hostname, &mut report.os, &mut report.kernel]
        .into_iter()
        .flatten()
    {
        clean(text);
    }
    for (name, value) in &mut report.extras {
        clean(name);
        clean(value);
    }
    for section in &mut report.sections {
        for member in &mut section.members {
            clean(&mut member.key);
            for value in member.values.iter_mut().flatten() {
                if let Value::Text(text) = value {
                    clean(text);
                }
            }
        }
        // Two keys that differed only in control characters are one key now: the first
        // stays, the other is refused (counted), as the parser does with a duplicate.
        let before = section.members.len();
        let mut seen = std::collections::HashSet::new();
        section.members.retain(|m| seen.insert(m.key.clone()));
        let dropped = u32::try_from(before - section.members.len()).unwrap_or(u32::MAX);
        section.refused = section.refused.saturating_add(dropped);
    }
}

/// How long the agent's stderr may stay open after it exited. A native agent's closes with
/// it; under Wine, a `wineserver` that the agent's `wine64` started inherits that stderr and
/// holds it until the server exits (3 s after its last program; never, while rounds keep
/// coming), so reading it to the end would stall the round.
const STDERR_GRACE: Duration = Duration::from_millis(200);

/// Reads the first 4 KiB of the agent's stderr on its own thread.
struct StderrReader {
    text: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

impl StderrReader {
    fn start(mut stderr: impl Read + Send + 'static) -> StderrReader {
        let text = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let shared = text.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 1024];
            loop {
                let n = match stderr.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let Ok(mut text) = shared.lock() else { break };
                let room = 4096usize.saturating_sub(text.len());
                text.extend_from_slice(&chunk[..n.min(room)]);
            }
            let _ = tx.send(());
        });
        StderrReader { text, done }
    }

    /// What the agent wrote, once its stderr closed or [`STDERR_GRACE`] after asking.
    fn text(self) -> String {
        let _ = self.done.recv_timeout(STDERR_GRACE);
        self.text
            .lock()
            .map(|text| String::from_utf8_lossy(&text).into_owned())
            .unwrap_or_default()
    }
}

fn stderr_suffix(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!("; agent said: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_report_loses_the_control_characters_of_its_host_text() {
        let mut report = Report {
            version: 1,
            collected_at_ms: 0,
            cpu_percent: 1.0,
            cores: vec![1.0],
            mem_used: 1,
            mem_total: 2,
            swap_used: 0,
            swap_total: 0,
            uptime_s: 1,
            boot_time_s: None,
            load: None,
            hostname: None,
            os: None,
            kernel: None,
            extras: Vec::new(),
            sections: Vec::new(),
        };
        report.hostname = Some("web1\x1b]0;pwned\x07".into());
        report.os = Some("Debian\r\n12".into());
        report.kernel = Some("\x1b[2J6.1".into());
        report.extras = vec![("disk\x1b[31m".into(), "/:50%\x08".into())];
        clean_report_text(&mut report);
        assert_eq!(report.hostname.as_deref(), Some("web1"));
        assert_eq!(report.os.as_deref(), Some("Debian  12"));
        assert_eq!(report.kernel.as_deref(), Some("6.1"));
        assert_eq!(report.extras, vec![("disk".into(), "/:50%\u{fffd}".into())]);
        let err = CollectError::new(ErrorClass::AgentFailed, "exit 3; it said: \x1b[31mboom\r");
        assert_eq!(err.message, "exit 3; it said: boom ");
    }

    /// A report of an agent from before the families (format 1.0, no section) through the
    /// path every transport's reply takes.
    #[test]
    fn a_v1_report_without_sections_is_still_read() {
        let v1 = br#"<?xml version="1.0" encoding="UTF-8"?>
<stats version="1">
  <collected_at>1732500000123</collected_at>
  <cpu><total>12.5</total><core id="0">10</core><core id="1">15</core></cpu>
  <memory><used>1024</used><total>4096</total></memory>
  <swap><used>0</used><total>0</total></swap>
  <uptime>3600</uptime>
  <hostname>old-agent</hostname>
</stats>"#;
        let initiator = Initiator::new();
        let reply =
            envelope::respond_with(envelope::Responder::new(), &initiator.request(), v1).unwrap();
        let report = open_reply(&initiator, &reply, 1 << 20).expect("a v1 report is read");
        assert_eq!(report.hostname.as_deref(), Some("old-agent"));
        assert_eq!((report.mem_used, report.cores.len()), (1024, 2));
        assert!(report.sections.is_empty(), "no family measured");
        assert!(
            report
                .typed::<crate::report::family::filesystems::Filesystem>()
                .is_empty()
        );
    }

    #[test]
    fn a_local_windows_host_runs_the_exe_under_wine_with_its_options() {
        let agents = LocalAgents {
            linux: PathBuf::from("/data/agent/edgemon-agent-0123"),
            windows: Some(PathBuf::from("/data/agent/edgemon-agent-4567.exe")),
        };
        let agent = agents.for_host("win-1", HostOs::Windows).expect("an agent");
        let LocalAgent::Wine { wine, exe } = &agent else {
            panic!("not under Wine: {agent:?}");
        };
        assert_eq!(exe, Path::new("/data/agent/edgemon-agent-4567.exe"));
        let command = agent.command(Some("TOKEN"));
        assert_eq!(command.get_program(), wine.as_os_str());
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(
            args,
            ["/data/agent/edgemon-agent-4567.exe", "--options", "TOKEN"]
        );
        assert_eq!(agent.command(None).get_args().count(), 1, "no token");
        assert!(
            agent.describe().contains("under Wine"),
            "{}",
            agent.describe()
        );

        // auto and linux local hosts are this box: the Linux agent, run directly.
        for os in [HostOs::Auto, HostOs::Linux] {
            let agent = agents.for_host("self", os).expect("an agent");
            let command = agent.command(Some("T"));
            assert_eq!(command.get_program(), "/data/agent/edgemon-agent-0123");
            assert_eq!(command.get_args().collect::<Vec<_>>(), ["--options", "T"]);
        }
    }

    #[test]
    fn a_local_windows_host_without_a_windows_agent_fails_naming_the_host() {
        let agents = LocalAgents {
            linux: PathBuf::from("/data/agent/edgemon-agent-0123"),
            windows: None,
        };
        let err = agents
            .for_host("win-1", HostOs::Windows)
            .expect_err("no Windows agent");
        assert_eq!(err.class, ErrorClass::AgentFailed);
        assert!(err.message.contains("host win-1"), "{}", err.message);
        assert!(
            err.message.contains("built without the Windows agent"),
            "{}",
            err.message
        );
        assert!(agents.for_host("self", HostOs::Auto).is_ok());
    }

    /// A `wineserver` keeps the stderr of the agent whose `wine64` started it: what the agent
    /// wrote is still read, and the round does not wait for the end of that stderr.
    #[test]
    fn a_stderr_held_open_by_another_process_is_read_without_waiting_for_its_end() {
        use std::io::Write;
        let (reader, mut writer) = std::io::pipe().expect("pipe");
        let stderr = StderrReader::start(reader);
        writer.write_all(b"boom").expect("write");
        // Let the reader thread take the bytes before asking: no timing is asserted.
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(20));
            if stderr.text.lock().map(|t| !t.is_empty()).unwrap_or(false) {
                break;
            }
        }
        assert_eq!(stderr.text(), "boom");
        drop(writer);
    }

    #[test]
    fn wine_is_edgemon_wine_then_path_then_debians_loader() {
        let dir = tempfile::tempdir().expect("temp dir");
        let explicit = Some(OsString::from("/opt/wine/bin/wine64"));
        assert_eq!(
            find_wine(explicit, Some(dir.path().into())),
            Path::new("/opt/wine/bin/wine64")
        );
        let fallback = if Path::new(DEBIAN_WINE64).is_file() {
            PathBuf::from(DEBIAN_WINE64)
        } else {
            PathBuf::from("wine64")
        };
        assert_eq!(
            find_wine(Some(OsString::new()), Some(dir.path().into())),
            fallback,
            "an empty EDGEMON_WINE is unset"
        );
        let on_path = dir.path().join("wine64");
        std::fs::write(&on_path, "").expect("write");
        assert_eq!(find_wine(None, Some(dir.path().into())), on_path);
    }

    #[test]
    fn default_options_pass_no_token_so_any_agent_starts_alike() {
        assert_eq!(options_token(&AgentOptions::default()), None);
        let options = AgentOptions {
            max_members: 8,
            ..AgentOptions::default()
        };
        let token = options_token(&options).expect("a token");
        assert_eq!(AgentOptions::from_token(&token), Ok(options));
    }
}
