//! A throwaway SMTP server on 127.0.0.1 that stores mail in a Maildir.
//!
//! [`Smtp::start`] writes a small aiosmtpd script into a temporary directory
//! and runs it with the system `/usr/bin/python3` (which has
//! `python3-aiosmtpd`; the pyenv python on PATH may not). Every accepted
//! message is written to `<tmp>/Maildir/new`, prefixed with
//! `X-Envelope-From`/`X-Envelope-To` headers; any recipient whose local part
//! starts with `reject` gets a permanent `550`. The server can be stopped
//! and started again on the same port and Maildir, for outbox-retry tests.
//! Parsing is minimal: headers and the raw body, no MIME decoding.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use tempfile::TempDir;

use super::{ChildGuard, Unavailable, greets_with, require_file, wait_for, with_free_port};

const PYTHON: &str = "/usr/bin/python3";

/// The server: aiosmtpd's Controller with a handler that rejects
/// `reject*` recipients and writes each message into a Maildir.
const SERVER_PY: &str = r#"
import os, sys, threading, time
from aiosmtpd.controller import Controller

host, port, maildir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for sub in ("tmp", "new", "cur"):
    os.makedirs(os.path.join(maildir, sub), exist_ok=True)

class Handler:
    def __init__(self):
        self.seq = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0].lower().startswith("reject"):
            return "550 5.1.1 <%s>: recipient rejected by test server" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.seq += 1
        name = "%020d.%06d.%d" % (time.time_ns(), self.seq, os.getpid())
        head = "X-Envelope-From: %s\r\nX-Envelope-To: %s\r\n" % (
            envelope.mail_from, ", ".join(envelope.rcpt_tos))
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        tmp = os.path.join(maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(head.encode() + data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(maildir, "new", name))
        return "250 2.0.0 Message accepted for delivery"

controller = Controller(Handler(), hostname=host, port=port)
controller.start()
threading.Event().wait()
"#;

/// One stored message, minimally parsed.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Header fields in order, unfolded, names as sent.
    pub headers: Vec<(String, String)>,
    /// Everything after the blank line, undecoded, CRLF turned into LF.
    pub body: String,
    /// The envelope sender (`MAIL FROM`).
    pub envelope_from: String,
    /// The accepted envelope recipients (`RCPT TO`).
    pub envelope_to: Vec<String>,
}

impl Mail {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `From` header, or "".
    pub fn from(&self) -> &str {
        self.header("From").unwrap_or("")
    }

    /// The `To` header, or "".
    pub fn to(&self) -> &str {
        self.header("To").unwrap_or("")
    }

    /// The `Subject` header, or "".
    pub fn subject(&self) -> &str {
        self.header("Subject").unwrap_or("")
    }

    /// The `Message-ID` header, or "".
    pub fn message_id(&self) -> &str {
        self.header("Message-ID").unwrap_or("")
    }

    /// Parses a stored message (envelope headers first, as the server
    /// writes them).
    pub fn parse(raw: &str) -> Mail {
        let raw = raw.replace("\r\n", "\n");
        let (head, body) = raw.split_once("\n\n").unwrap_or((raw.as_str(), ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        let take = |headers: &mut Vec<(String, String)>, name: &str| {
            let at = headers.iter().position(|(n, _)| n == name)?;
            Some(headers.remove(at).1)
        };
        let envelope_from = take(&mut headers, "X-Envelope-From").unwrap_or_default();
        let envelope_to = take(&mut headers, "X-Envelope-To")
            .map(|v| v.split(", ").map(str::to_string).collect())
            .unwrap_or_default();
        Mail {
            headers,
            body: body.to_string(),
            envelope_from,
            envelope_to,
        }
    }
}

/// A running SMTP server; killed on drop.
#[derive(Debug)]
pub struct Smtp {
    port: u16,
    child: Option<ChildGuard>,
    // Last, so the server is killed before its files go.
    dir: TempDir,
}

impl Smtp {
    /// Starts the server on a free port and waits for its `220` greeting.
    pub fn start() -> Result<Smtp> {
        require_file(PYTHON, "python3")?;
        let check = Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running /usr/bin/python3")?;
        if !check.success() {
            return Err(
                Unavailable("python3-aiosmtpd not installed for /usr/bin/python3".into()).into(),
            );
        }
        let dir = super::temp_dir();
        let script = dir.path().join("smtp_server.py");
        std::fs::write(&script, SERVER_PY)
            .with_context(|| format!("writing {}", script.display()))?;
        let mut smtp = Smtp {
            port: 0,
            child: None,
            dir,
        };
        with_free_port(|port| {
            smtp.port = port;
            smtp.spawn()
        })?;
        Ok(smtp)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Maildir holding accepted messages.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("Maildir")
    }

    /// Every accepted message so far, oldest first.
    pub fn messages(&self) -> Vec<Mail> {
        let new = self.maildir().join("new");
        let mut names: Vec<PathBuf> = match std::fs::read_dir(&new) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(_) => return Vec::new(),
        };
        names.sort();
        names
            .iter()
            .filter_map(|path| std::fs::read(path).ok())
            .map(|raw| Mail::parse(&String::from_utf8_lossy(&raw)))
            .collect()
    }

    /// Polls until at least `n` messages are stored; returns them all, or
    /// `None` if `timeout` passes first.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Option<Vec<Mail>> {
        wait_for(timeout, || {
            let messages = self.messages();
            (messages.len() >= n).then_some(messages)
        })
    }

    /// True while the server process is alive.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// Kills the server; the port refuses connections afterwards.
    pub fn stop(&mut self) -> Result<()> {
        match self.child.take() {
            Some(mut child) => child.kill(),
            None => Ok(()),
        }
    }

    /// Starts the server again on the same port and Maildir.
    pub fn start_again(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("smtp.log")
    }

    fn spawn(&mut self) -> Result<()> {
        let log = self.log_path();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let log_err = log_file.try_clone().context("cloning the log handle")?;
        let mut cmd = Command::new(PYTHON);
        cmd.arg(self.dir.path().join("smtp_server.py"))
            .arg("127.0.0.1")
            .arg(self.port.to_string())
            .arg(self.maildir())
            .stdout(log_file)
            .stderr(log_err);
        let mut child = ChildGuard::spawn("aiosmtpd", &mut cmd)?;
        let port = self.port;
        child
            .wait_ready(&log, || greets_with(port, "220"))
            .with_context(|| format!("starting the SMTP server on 127.0.0.1:{port}"))?;
        self.child = Some(child);
        Ok(())
    }

    /// The server's temporary directory (script, Maildir, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
