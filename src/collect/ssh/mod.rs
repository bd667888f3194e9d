//! The SSH transport: the only module that knows ssh2. One call of
//! [`collect`] visits one host once: it reuses the host's open [`Link`] when
//! there is one (persistent sessions) or opens a new one (connect, handshake,
//! pinned host key, authentication), makes sure the agent is deployed and
//! trusted, sends it one envelope request and opens its reply.
//!
//! With `resident_agent`, the agent stays running on its exec channel and the
//! link keeps that channel, so a steady-state round is one request frame and
//! one reply frame on an open channel: no exec, no handshake. The agent's
//! ownership and hash are checked on the host each time it starts
//! ([`deploy`]), so not in steady rounds.
//!
//! A Windows host (`hosts[].os`, or the `OpenSSH_for_Windows` banner under
//! `auto`) is probed once per session when it connects, and its agent is
//! checked, uploaded and started by [`windows`] (SFTP into `%LOCALAPPDATA%`,
//! the hash read back before every start); the request and reply exchange
//! and the resident channel are the same as on Linux.
//!
//! Sessions heal themselves. Every session sends SSH keepalives while it waits
//! and its socket has a TCP user timeout, so a link whose peer went silent
//! (partition, host powered off) fails within `connect_timeout` instead of
//! costing the whole `command_timeout`. A failed exchange on a pooled link
//! (dead session, reset, the agent's channel gone) is retried once on a fresh
//! connection in the same round, within the same deadline; a resident agent
//! that idle-timed out is started again on the same session. An agent that
//! vanished from the host is uploaded again.
//!
//! Everything here blocks; the scheduler runs it on the blocking pool and
//! enforces the per-host deadline through [`Watch`]. This module does not
//! schedule, record, or retry across rounds.

pub mod bastion;
mod deploy;
pub mod hostkeys;
mod session;
pub mod windows;

pub use bastion::Bastions;
pub use deploy::Deployments;
pub use session::{Phase, Socket, Watch};

use std::time::Instant;

use edgemon_proto::envelope::{self, FrameError, InitiatorPool};
use ssh2::{Channel, Session};

use super::local::open_reply;
use super::outcome::{CollectError, ErrorClass};
use crate::config::{CollectConfig, HostOs, SshTarget};
use crate::report::Report;
use hostkeys::HostKeyStore;

/// What every SSH collection task shares: settings, pins, upload bookkeeping, the agent.
#[derive(Debug)]
pub struct Shared {
    /// The `[collect]` section.
    pub settings: CollectConfig,
    /// Pinned host keys.
    pub host_keys: HostKeyStore,
    /// Uploads done by this process.
    pub deployments: Deployments,
    /// The agent executable to deploy.
    pub agent: &'static [u8],
    /// Its lowercase hex SHA-256.
    pub agent_hash: &'static str,
    /// The Windows agent executable and its lowercase hex SHA-256 (`None`: this collector was
    /// built without it, and a Windows host fails with `agent-failed` saying how to get it).
    pub windows_agent: Option<(&'static [u8], &'static str)>,
    /// Envelope key pairs generated between rounds, one per request, each used once.
    pub initiators: InitiatorPool,
    /// The open sessions of the bastions, shared by the targets behind them.
    pub bastions: Bastions,
}

impl Shared {
    /// Shared state for `settings`, pins in `host_keys`, deploying the embedded agent.
    pub fn new(settings: CollectConfig, host_keys: HostKeyStore) -> Shared {
        Shared {
            settings,
            host_keys,
            deployments: Deployments::default(),
            agent: crate::agent_bin::AGENT,
            agent_hash: crate::agent_bin::sha256_hex(),
            windows_agent: crate::agent_bin::WINDOWS_AGENT
                .zip(crate::agent_bin::windows_sha256_hex()),
            initiators: InitiatorPool::new(),
            bastions: Bastions::default(),
        }
    }

    fn max_reply(&self) -> usize {
        usize::try_from(self.settings.max_reply_bytes).unwrap_or(usize::MAX)
    }
}

/// An open, authenticated session to one host, kept across rounds, with the
/// resident agent's channel when there is one.
pub struct Link {
    session: Session,
    socket: Socket,
    resident: Option<Channel>,
    destination: String,
    /// The `hosts[].os` this link was opened for.
    os: HostOs,
    /// Set when the host is Windows: why, and what the session's probe found.
    windows: Option<windows::Host>,
    /// The bastion's handshake slot, held until the first channel on this session opened.
    pacing: Option<bastion::Permit>,
}

impl Link {
    /// Whether this link was opened for `target` (a changed configuration invalidates it).
    pub fn serves(&self, target: &SshTarget) -> bool {
        self.destination == destination(target)
    }

    /// The socket, for the deadline's [`Watch`].
    pub fn socket(&self) -> &Socket {
        &self.socket
    }
}

/// Builds an error of `class`.
pub(crate) fn fail(class: ErrorClass, message: impl Into<String>) -> CollectError {
    CollectError::new(class, message)
}

fn destination(target: &SshTarget) -> String {
    let direct = format!("{}@{}", target.user, target.socket_text());
    if target.via.is_empty() {
        return direct;
    }
    let hops: Vec<&str> = target.via.iter().map(|b| b.name.as_str()).collect();
    format!("{direct} via {}", hops.join(","))
}

/// How one attempt on a link ended badly.
enum Failure {
    /// The connection failed (reset, closed, silent past the TCP user timeout): on a pooled
    /// link, rebuild it and try once more; on a fresh one the host is unreachable.
    Lost(String),
    /// The agent's channel ended before a reply, the session being fine: the agent exited.
    Ended(String),
    /// A real outcome for this round.
    Failed(CollectError),
}

impl From<CollectError> for Failure {
    fn from(e: CollectError) -> Failure {
        Failure::Failed(e)
    }
}

/// Collects `target` (configured as `name`) once. Returns the outcome and the link to keep
/// for the next round (`None` after any failure, or when sessions are not persistent).
///
/// `options` is the agent's options token (`None`: the agent's defaults), given to the agent
/// when it starts; a changed token needs a new link (the collector drops the old one). `os`
/// is the host's configured `hosts[].os`: Windows hosts are detected on connecting
/// ([`windows::detect`]) and deployed to over SFTP.
pub fn collect(
    name: &str,
    target: &SshTarget,
    os: HostOs,
    options: Option<&str>,
    shared: &Shared,
    watch: &Watch,
    link: Option<Link>,
) -> (Result<Report, CollectError>, Option<Link>) {
    let link = link.filter(|l| l.serves(target) && l.os == os);
    let reused = link.is_some();
    let mut link = match link {
        Some(link) => {
            watch.arm(&link.socket);
            link
        }
        None => match connect(name, target, os, shared, watch) {
            Ok(link) => link,
            Err(e) => return (Err(e), None),
        },
    };
    let result = match attempt(&mut link, options, shared, watch, reused) {
        Err(Failure::Lost(why) | Failure::Ended(why)) if reused && !watch.expired() => {
            tracing::debug!(
                host = name,
                why,
                "pooled session failed; retrying on a fresh one"
            );
            drop(link);
            match connect(name, target, os, shared, watch) {
                Ok(fresh) => {
                    link = fresh;
                    attempt(&mut link, options, shared, watch, false)
                }
                Err(e) => return (Err(e), None),
            }
        }
        other => other,
    };
    match result {
        Ok(report) if shared.settings.persistent_sessions => (Ok(report), Some(link)),
        Ok(report) => (Ok(report), None),
        Err(Failure::Failed(e)) => (Err(e), None),
        Err(Failure::Lost(why)) => (
            Err(fail(
                ErrorClass::Unreachable,
                format!("lost the connection to {}: {why}", link.destination),
            )),
            None,
        ),
        Err(Failure::Ended(why)) => (Err(fail(ErrorClass::AgentFailed, why)), None),
    }
}

fn connect(
    name: &str,
    target: &SshTarget,
    os: HostOs,
    shared: &Shared,
    watch: &Watch,
) -> Result<Link, CollectError> {
    let (session, socket, pacing) = match open(name, target, shared, watch) {
        Err(e) if session::dropped_in_handshake(&e) && !watch.expired() => {
            tracing::debug!(
                host = name,
                error = e.message,
                "dropped in the handshake; once more"
            );
            std::thread::sleep(session::redial_pause());
            open(name, target, shared, watch)?
        }
        other => other?,
    };
    let windows = match windows::detect(os, session.banner()) {
        None => None,
        Some(why) => {
            windows::agent_for(&why, shared.windows_agent)?;
            watch.enter(Phase::Deploy);
            let until = Instant::now() + shared.settings.command_timeout;
            let profile = windows::probe(&session, until).map_err(|e| {
                fail(
                    e.class,
                    format!("{} (the host is Windows: {why})", e.message),
                )
            })?;
            Some(windows::Host { why, profile })
        }
    };
    Ok(Link {
        session,
        socket,
        resident: None,
        destination: destination(target),
        os,
        // The Windows probe ran on a channel of its own.
        pacing: pacing.filter(|_| windows.is_none()),
        windows,
    })
}

/// An authenticated session to `target`, directly or through its bastions, and the bastion's
/// handshake slot to hold until the session's first channel opened.
fn open(
    name: &str,
    target: &SshTarget,
    shared: &Shared,
    watch: &Watch,
) -> Result<(Session, Socket, Option<bastion::Permit>), CollectError> {
    if target.via.is_empty() {
        let (session, socket) = session::open(name, target, shared, watch)?;
        return Ok((session, socket, None));
    }
    watch.enter(Phase::Connect);
    let settings = &shared.settings;
    let until = Instant::now() + settings.connect_timeout + settings.auth_timeout;
    let bastion::Tunnel {
        stream,
        permit,
        hop,
    } = shared.bastions.tunnel(target, shared, until)?;
    let (session, socket) = session::open_over(name, target, Socket::Tunnel(stream), shared, watch)
        .map_err(|e| if hop.alive() { e } else { hop.lost() })?;
    Ok((session, socket, Some(permit)))
}

/// One request and reply on `link`: on the resident channel when there is one, else on a
/// fresh exec (uploading the agent first when it is missing).
fn attempt(
    link: &mut Link,
    options: Option<&str>,
    shared: &Shared,
    watch: &Watch,
    reused: bool,
) -> Result<Report, Failure> {
    let until = Instant::now() + shared.settings.command_timeout;
    session::limit(&link.session, until);
    if let Some(mut channel) = link.resident.take() {
        watch.enter(Phase::Reply);
        match exchange(&mut channel, &link.session, shared, true, until) {
            Ok(report) => {
                link.resident = Some(channel);
                return Ok(report);
            }
            // The agent idle-timed out or was killed: start it again on this session.
            Err(Failure::Ended(why)) => {
                tracing::debug!(why, "resident agent gone; starting it again");
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(host) = link.windows.clone() {
        return windows::start(link, &host, options, shared, watch, reused, until);
    }
    let resident = shared.settings.resident_agent;
    let idle = resident.then(|| shared.settings.agent_idle_timeout.as_secs().max(1));
    let command =
        deploy::start_command_with(&shared.settings.agent_dir, shared.agent_hash, idle, options);
    let seen = shared.deployments.settled(&link.destination);
    let mut uploaded = false;
    loop {
        watch.enter(Phase::Reply);
        // The reply's reader leaves libssh2's timeout at a keepalive slice; undo that.
        session::limit(&link.session, until);
        let broken = |what: &str, e: ssh2::Error| {
            settle(
                &link.session,
                reused,
                fail(ErrorClass::AgentFailed, format!("{what}: {e}")),
            )
        };
        let mut channel = link
            .session
            .channel_session()
            .map_err(|e| broken("cannot open a channel", e))?;
        link.pacing = None;
        channel
            .exec(&command)
            .map_err(|e| broken("cannot exec the agent", e))?;
        match exchange(&mut channel, &link.session, shared, resident, until) {
            Ok(report) => {
                if resident {
                    link.resident = Some(channel);
                }
                return Ok(report);
            }
            Err(Failure::Ended(_)) => {}
            Err(e) => return Err(e),
        }
        // The command ended without a reply: missing or untrusted agent, or a real failure.
        let (stdout, stderr) = deploy::drain(&mut channel);
        let status = deploy::finish(&mut channel).map_err(|e| {
            if session::connection_lost(&link.session) {
                Failure::Lost(format!("agent: {e}"))
            } else {
                Failure::Failed(fail(ErrorClass::AgentFailed, format!("agent: {e}")))
            }
        })?;
        if status == deploy::UNTRUSTED {
            return Err(deploy::untrusted(&stderr, "not run").into());
        }
        if status == deploy::MISSING && !uploaded {
            watch.enter(Phase::Deploy);
            deploy::ensure_uploaded(
                &link.session,
                &shared.deployments,
                &link.destination,
                seen,
                &shared.settings.agent_dir,
                shared.agent,
                shared.agent_hash,
                until,
            )?;
            uploaded = true;
            continue;
        }
        let what = match status {
            deploy::MISSING => "the agent is still missing after upload (exit 97)".to_string(),
            0 => "the agent exited (status 0) without a reply".to_string(),
            n => format!("the agent exited with status {n} without a reply"),
        };
        return Err(fail(
            ErrorClass::AgentFailed,
            format!("{what}{}{}", deploy::said(&stderr), deploy::stray(&stdout)),
        )
        .into());
    }
}

/// A failure of the session on `session`: on a pooled link (`reused`) or a connection that
/// failed, [`Failure::Lost`] (the caller retries once on a fresh one); else `error` as is.
fn settle(session: &Session, reused: bool, error: CollectError) -> Failure {
    if reused || session::connection_lost(session) {
        Failure::Lost(error.message)
    } else {
        Failure::Failed(error)
    }
}

/// Sends one request on `channel` and reads and opens one reply. A channel that ends before
/// the first reply byte is [`Failure::Ended`]; a failing connection is [`Failure::Lost`]; a
/// non-resident agent gets EOF after the request.
fn exchange(
    channel: &mut Channel,
    session: &Session,
    shared: &Shared,
    resident: bool,
    until: Instant,
) -> Result<Report, Failure> {
    // Generated between rounds when the pool was refilled; made now otherwise.
    let initiator = shared.initiators.take();
    // No `flush()`: on an ssh2 channel it discards received, unread data (libssh2_channel_flush).
    let sent = envelope::write_frame(channel, &initiator.request());
    if !resident {
        let _ = channel.send_eof();
    }
    let max = shared.max_reply();
    let mut patient = Patient {
        channel,
        session,
        until,
        slice: session::liveness(shared.settings.connect_timeout) / 2,
    };
    let read = envelope::read_frame(&mut patient, max);
    session::limit(session, until);
    let reply = match read {
        Ok(Some(reply)) => reply,
        Ok(None) => {
            let why = match sent {
                Ok(()) => "the agent's channel closed without a reply".to_string(),
                Err(e) => format!("the request could not be sent ({e})"),
            };
            if session::connection_lost(session) {
                return Err(Failure::Lost(why));
            }
            return Err(Failure::Ended(why));
        }
        Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
            return Err(fail(
                ErrorClass::Timeout,
                "no reply from the agent within collect.command_timeout",
            )
            .into());
        }
        Err(FrameError::Io(e)) if session::connection_lost(session) => {
            return Err(Failure::Lost(format!("reading the agent's reply: {e}")));
        }
        Err(FrameError::Io(e)) => {
            return Err(fail(
                ErrorClass::AgentFailed,
                format!("reading the agent's reply: {e}"),
            )
            .into());
        }
        Err(FrameError::TooLarge { len, max }) => {
            return Err(fail(
                ErrorClass::BadEnvelope,
                format!(
                    "reply of {len} bytes exceeds collect.max_reply_size ({max} bytes); not read"
                ),
            )
            .into());
        }
        Err(e @ FrameError::Truncated { .. }) => {
            return Err(fail(ErrorClass::BadEnvelope, format!("reply cut short: {e}")).into());
        }
    };
    let report = open_reply(&initiator, &reply, max)?;
    if !resident {
        // The agent exits after one reply; its status no longer matters.
        let _ = channel.close();
    }
    Ok(report)
}

/// Reads the agent's reply until `until`, sending a keepalive every `slice` of silence so that
/// a dead link has unacknowledged data in flight and its TCP user timeout fires. A libssh2
/// timeout before `until` is a slice ending, not an error; reads resume where they stopped.
struct Patient<'a> {
    channel: &'a mut Channel,
    session: &'a Session,
    until: Instant,
    slice: std::time::Duration,
}

impl std::io::Read for Patient<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let left = self.until.saturating_duration_since(Instant::now());
            session::limit(self.session, Instant::now() + left.min(self.slice));
            match self.channel.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut && !left.is_zero() => {
                    if left <= self.slice {
                        return Err(e);
                    }
                    session::keepalive(self.session).map_err(std::io::Error::other)?;
                }
                other => return other,
            }
        }
    }
}

/// Connects to `target` and returns its host key blob, without checking it (for
/// `edgemon hosts trust`).
pub fn fetch_host_key(
    target: &SshTarget,
    timeout: std::time::Duration,
) -> Result<Vec<u8>, CollectError> {
    session::fetch_host_key(target, timeout)
}

/// The host key `target` (configured as `name`) presents now and the name it is pinned under,
/// without checking it (for `edgemon hosts trust`). Behind bastions, the tunnel is opened as
/// for a collection: every bastion's key is checked against its pin on the way.
pub fn fetch_host_key_via(
    name: &str,
    target: &SshTarget,
    shared: &Shared,
    timeout: std::time::Duration,
) -> Result<(Vec<u8>, String), CollectError> {
    if target.via.is_empty() {
        let blob = session::fetch_host_key(target, timeout)?;
        return Ok((blob, session::pin_name(name, target, false)));
    }
    let tunnel = shared
        .bastions
        .tunnel(target, shared, Instant::now() + timeout)?;
    let blob = session::fetch_host_key_over(target, Socket::Tunnel(tunnel.stream), timeout)?;
    Ok((blob, session::pin_name(name, target, true)))
}
