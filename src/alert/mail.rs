//! The mailer: the only module that knows SMTP (lettre).
//!
//! It sends due outbox rows and records each outcome in the buffer through
//! its [`Outbox`], its own connection on the same SQLite file (WAL, so it never blocks a
//! round for long). A row is marked `sent` only after the server accepted the
//! message; connection failures, timeouts and 4xx replies are retried with
//! exponential backoff (30 s doubling to 30 min, plus jitter); a 5xx reply is
//! permanent: the row becomes `failed` with the server's reason and is never
//! retried. Without SMTP configured, mail is written as `.eml` files into
//! `MailConfig::file_dir` (lettre's file transport).
//!
//! Delivery is at least once: a crash between the server's acceptance and the
//! local bookkeeping resends the mail with the same Message-ID, which lets the
//! receiving side drop the duplicate. It does not decide what to mail.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{FileTransport, SmtpTransport, Transport};
use rand::Rng;

use crate::buffer::{self, Outbox, OutboxRow};
use crate::config::{MailConfig, SmtpTls};
use crate::shutdown::Shutdown;

/// Mails taken from the outbox per pass.
const BATCH: usize = 100;
/// First retry delay; doubles per attempt.
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
/// Cap of the retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);
/// Pending mail older than this is logged as an error (each time a retry fails).
pub const STUCK_AFTER: Duration = Duration::from_secs(3600);
/// Longest sleep of [`Mailer::run`] between passes.
const IDLE: Duration = Duration::from_secs(5);

/// Errors of the mailer; callers branch on [`Error::Buffer`] (retry later) vs configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SMTP settings cannot be used (bad TLS parameters, bad sender address).
    #[error("mail configuration: {0}")]
    Config(String),
    /// The mail directory of the file transport cannot be created.
    #[error("cannot create mail directory {path}: {source}")]
    MailDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The outbox could not be read or updated.
    #[error(transparent)]
    Buffer(#[from] buffer::Error),
}

/// Result of mailer operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What one [`Mailer::send_due`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Mails the server accepted.
    pub sent: usize,
    /// Mails that failed transiently and wait for a retry.
    pub retried: usize,
    /// Mails refused permanently (recorded as failed).
    pub failed: usize,
    /// Mails still pending after the pass.
    pub pending: i64,
    /// Age of the oldest pending mail.
    pub oldest_pending_age: Option<Duration>,
}

enum Sender {
    Smtp(Box<SmtpTransport>),
    File(FileTransport),
}

/// How one send ended.
enum Outcome {
    Sent,
    /// Try again later; `connection` when the server could not be reached at all.
    Transient {
        reason: String,
        connection: bool,
    },
    Permanent(String),
}

/// Sends the outbox.
pub struct Mailer {
    from: Mailbox,
    sender: Sender,
    buffer: Mutex<Outbox>,
}

impl Mailer {
    /// A mailer for `config` on the buffer at `buffer_path` (its own connection).
    pub fn new(config: &MailConfig, buffer_path: &Path) -> Result<Mailer> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| Error::Config(format!("sender address {:?}: {e}", config.from)))?;
        let sender = match &config.smtp {
            Some(smtp) => {
                let tls = |host: &str| {
                    TlsParameters::new(host.to_string())
                        .map_err(|e| Error::Config(format!("TLS towards {host}: {e}")))
                };
                let tls = match smtp.tls {
                    SmtpTls::None => Tls::None,
                    SmtpTls::StartTls => Tls::Required(tls(&smtp.host)?),
                    SmtpTls::Implicit => Tls::Wrapper(tls(&smtp.host)?),
                };
                let mut builder = SmtpTransport::builder_dangerous(smtp.host.as_str())
                    .port(smtp.port)
                    .tls(tls)
                    .timeout(Some(smtp.timeout));
                if let Some(user) = &smtp.username {
                    let password = smtp
                        .password
                        .as_ref()
                        .map(|p| p.expose().to_string())
                        .unwrap_or_default();
                    builder = builder.credentials(Credentials::new(user.clone(), password));
                }
                Sender::Smtp(Box::new(builder.build()))
            }
            None => {
                std::fs::create_dir_all(&config.file_dir).map_err(|source| Error::MailDir {
                    path: config.file_dir.clone(),
                    source,
                })?;
                Sender::File(FileTransport::new(&config.file_dir))
            }
        };
        Ok(Mailer {
            from,
            sender,
            buffer: Mutex::new(Outbox::open(buffer_path)?),
        })
    }

    /// Sends every mail due now; see [`Mailer::send_due_at`].
    pub fn send_due(&self) -> Result<SendReport> {
        self.send_due_at(buffer::now_ms())
    }

    /// Sends every mail whose next attempt is due at `now` (Unix ms) and records each
    /// outcome. Once the server cannot be reached, the rest of the pass is rescheduled
    /// without trying (one timeout per pass, not one per mail).
    pub fn send_due_at(&self, now: i64) -> Result<SendReport> {
        self.pass(now, &AtomicBool::new(false))
    }

    /// One pass at `now`; stops between two mails when `stop` is set (the rest stays due).
    fn pass(&self, now: i64, stop: &AtomicBool) -> Result<SendReport> {
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = SendReport::default();
        let due = buffer.due_outbox(now, BATCH)?;
        let mut unreachable: Option<String> = None;
        for row in &due {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let outcome = match &unreachable {
                Some(reason) => Outcome::Transient {
                    reason: reason.clone(),
                    connection: true,
                },
                None => self.send(row),
            };
            match outcome {
                Outcome::Sent => {
                    // Through the reserve: a sent mail left unmarked would go out again.
                    let at = buffer::now_ms().max(now);
                    buffer.with_reserve(|b| b.mark_outbox_sent(row.id, at))?;
                    tracing::info!(to = %row.recipient, message_id = %row.message_id, subject = %row.subject, "mail sent");
                    report.sent += 1;
                }
                Outcome::Permanent(reason) => {
                    buffer.with_reserve(|b| b.mark_outbox_failed(row.id, &reason))?;
                    tracing::error!(to = %row.recipient, message_id = %row.message_id, %reason, "mail refused permanently; not retried");
                    report.failed += 1;
                }
                Outcome::Transient { reason, connection } => {
                    let next = now + backoff(row.attempts + 1).as_millis() as i64;
                    buffer.mark_outbox_retry(row.id, next, &reason)?;
                    tracing::warn!(to = %row.recipient, message_id = %row.message_id, attempts = row.attempts + 1, %reason, "mail not sent; will retry");
                    if connection {
                        unreachable = Some(reason);
                    }
                    report.retried += 1;
                }
            }
        }
        let (pending, oldest, _) = buffer.outbox_pending()?;
        report.pending = pending;
        report.oldest_pending_age =
            oldest.map(|t| Duration::from_millis(now.saturating_sub(t).max(0) as u64));
        // Logged on passes that tried (and failed) to send, that is at the backoff's pace,
        // not at every idle tick of `run`.
        let stuck = report.oldest_pending_age.filter(|a| *a >= STUCK_AFTER);
        if let Some(age) = stuck.filter(|_| report.retried > 0) {
            tracing::error!(
                pending,
                oldest_age = %humantime::format_duration(Duration::from_secs(age.as_secs())),
                "alert mail has been pending for over an hour: the mail server keeps failing"
            );
        }
        Ok(report)
    }

    /// Sends due mail until `stop` fires, sleeping until the next retry is due (at most a
    /// few seconds, so new mail leaves promptly). At shutdown only the mail in flight is
    /// finished: the pass stops between two mails. Errors are logged and the loop carries
    /// on. `on_pass` sees every pass's report (for metrics).
    pub fn run(&self, stop: &Shutdown, mut on_pass: impl FnMut(&SendReport)) {
        while !stop.is_fired() {
            match self.pass(buffer::now_ms(), stop.flag()) {
                Ok(report) => on_pass(&report),
                Err(error) => tracing::error!(%error, "mail pass failed"),
            }
            let wait = self.next_due_in().unwrap_or(IDLE).min(IDLE);
            stop.wait_timeout(wait);
        }
    }

    fn next_due_in(&self) -> Option<Duration> {
        let buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        let (_, _, next) = buffer.outbox_pending().ok()?;
        let wait = next? - buffer::now_ms();
        Some(Duration::from_millis(wait.max(0) as u64))
    }

    fn send(&self, row: &OutboxRow) -> Outcome {
        let to: Mailbox = match row.recipient.parse() {
            Ok(to) => to,
            Err(e) => return Outcome::Permanent(format!("bad recipient {:?}: {e}", row.recipient)),
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(row.subject.clone())
            .message_id(Some(row.message_id.clone()))
            .header(ContentType::TEXT_PLAIN)
            .body(row.body.clone());
        let message = match message {
            Ok(m) => m,
            Err(e) => return Outcome::Permanent(format!("cannot build the message: {e}")),
        };
        match &self.sender {
            Sender::Smtp(smtp) => match smtp.send(&message) {
                Ok(_) => Outcome::Sent,
                Err(e) => classify(&e),
            },
            Sender::File(file) => match file.send(&message) {
                Ok(_) => Outcome::Sent,
                Err(e) => Outcome::Transient {
                    reason: format!("writing the mail file: {e}"),
                    connection: true,
                },
            },
        }
    }
}

/// 5xx is permanent; 4xx, timeouts and connection failures are transient.
fn classify(e: &lettre::transport::smtp::Error) -> Outcome {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_permanent() {
        Outcome::Permanent(reason)
    } else {
        Outcome::Transient {
            connection: !e.is_transient(),
            reason,
        }
    }
}

/// Delay before attempt `attempt + 1`: 30 s doubling, capped at 30 min, plus up to 10% jitter.
fn backoff(attempt: i64) -> Duration {
    let doublings = u32::try_from(attempt.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    let base = FIRST_BACKOFF
        .saturating_mul(1u32 << doublings)
        .min(MAX_BACKOFF);
    let jitter = rand::thread_rng().gen_range(0..=base.as_millis() as u64 / 10);
    base + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let secs = |a| backoff(a).as_secs();
        assert!((30..=33).contains(&secs(1)));
        assert!((60..=66).contains(&secs(2)));
        assert!((1800..=1980).contains(&secs(20)));
    }
}
