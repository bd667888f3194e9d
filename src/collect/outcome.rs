//! What one collection attempt produced for one host: a report, or an error
//! class with its message. This is what the buffer records every round.

use std::fmt;
use std::time::Duration;

use crate::report::Report;

/// Why a host produced no sample; callers branch on it (alerts, status, retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorClass {
    /// TCP connect failed or got no answer (refused, no route, DNS, host silent), or an open
    /// connection was lost.
    Unreachable,
    /// The host is behind a bastion that is down, refused us or dropped the connection; the
    /// message starts `via bastion NAME:` ([`CollectError::bastion`] reads the name).
    UnreachableVia,
    /// A connect, handshake, auth or command deadline passed.
    Timeout,
    /// The host refused our credentials.
    AuthRefused,
    /// The host presented a key other than the pinned one.
    HostKeyChanged,
    /// The host key is not pinned and the policy is strict.
    HostKeyUnknown,
    /// The agent could not be deployed or run, or exited abnormally.
    AgentFailed,
    /// The agent's file or directory on the host could have been written by someone other
    /// than the login user, or its SHA-256 is not the expected one: it was not run.
    AgentUntrusted,
    /// The reply failed the envelope's checks (tampered, truncated, oversized).
    BadEnvelope,
    /// The decrypted report was not valid stats XML.
    BadPayload,
    /// The host's attempt started at an earlier tick had not answered by the next tick; the
    /// host was not started again (one attempt per host at a time). Recorded once per round
    /// without an answer, so every round has one entry per host.
    InFlight,
    /// A fault inside edgemon itself.
    Internal,
}

impl ErrorClass {
    /// The stable name used in the buffer, MySQL, status and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Unreachable => "unreachable",
            ErrorClass::UnreachableVia => "unreachable-via",
            ErrorClass::Timeout => "timeout",
            ErrorClass::AuthRefused => "auth-refused",
            ErrorClass::HostKeyChanged => "host-key-changed",
            ErrorClass::HostKeyUnknown => "host-key-unknown",
            ErrorClass::AgentFailed => "agent-failed",
            ErrorClass::AgentUntrusted => "agent-untrusted",
            ErrorClass::BadEnvelope => "bad-envelope",
            ErrorClass::BadPayload => "bad-payload",
            ErrorClass::InFlight => "in-flight",
            ErrorClass::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed collection: its class and a message naming what went wrong, free of control
/// characters (build it with [`CollectError::new`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CollectError {
    /// The class callers branch on.
    pub class: ErrorClass,
    /// Human-readable detail (already names the host where useful).
    pub message: String,
}

impl CollectError {
    /// A new error of `class`. The message often quotes the host (its stderr, its
    /// banner, its report): it is sanitised here, once, for every terminal, log, mail and row.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> CollectError {
        let message = message.into();
        let message = match crate::text::sanitize(&message) {
            std::borrow::Cow::Borrowed(_) => message,
            std::borrow::Cow::Owned(clean) => clean,
        };
        CollectError { class, message }
    }
}

/// The bastion an `unreachable-via` error names (`via bastion NAME: ...`), from its class and
/// message as stored in the buffer.
pub fn bastion_of<'a>(class: &str, message: &'a str) -> Option<&'a str> {
    if class != ErrorClass::UnreachableVia.as_str() {
        return None;
    }
    let rest = message.strip_prefix("via bastion ")?;
    rest.split_once(':').map(|(name, _)| name)
}

impl CollectError {
    /// The bastion this error blames, when it is `unreachable-via`.
    pub fn bastion(&self) -> Option<&str> {
        bastion_of(self.class.as_str(), &self.message)
    }
}

impl fmt::Display for CollectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}

impl std::error::Error for CollectError {}

/// The result of collecting one host once.
#[derive(Debug, Clone)]
pub struct HostOutcome {
    /// The host's configured name.
    pub host: String,
    /// The host's address as shown to operators.
    pub address: String,
    /// When the attempt started, appliance clock, Unix milliseconds.
    pub started_at_ms: i64,
    /// How long it took.
    pub duration: Duration,
    /// The report, or why there is none.
    pub result: Result<Report, CollectError>,
}
