//! Opening one authenticated SSH session: TCP connect with its timeout, the
//! SSH handshake, the host-key check against the pinned store, and user
//! authentication (identity file, ssh-agent or password).
//!
//! Every blocking call runs with libssh2's per-call timeout set to what is
//! left of its phase; that timeout is not a deadline (a read may take several
//! times as long), so the scheduler also holds a [`Watch`] that shuts the
//! socket down when the host's whole budget is spent, which makes any
//! blocked libssh2 call return at once.
//!
//! A dead peer is noticed within about 1.5 × [`liveness`] (`connect_timeout`,
//! at least 2 s): the socket's TCP user timeout closes a connection whose
//! sent data stays unacknowledged that long; the request is the first such
//! data, and [`keepalive`] puts an SSH keepalive in flight after every half
//! `liveness` of silence while waiting for the reply. libssh2's own periodic keepalive is
//! left off: with it, a blocking wait longer than the interval fails with
//! "Timed out waiting on socket" (libssh2 1.11). A TCP connect that gets no
//! answer is `unreachable`, like one refused: the host is down or cut off.

use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use ssh2::Session;

use super::hostkeys::{HostKeyError, known_hosts_name};
use super::{Shared, fail};
use crate::collect::outcome::{CollectError, ErrorClass};
use crate::config::{Auth, SshTarget};

/// libssh2 error codes we branch on (libssh2.h).
const LIBSSH2_ERROR_SOCKET_NONE: i32 = -1;
const LIBSSH2_ERROR_KEX_FAILURE: i32 = -5;
const LIBSSH2_ERROR_SOCKET_SEND: i32 = -7;
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
const LIBSSH2_ERROR_SOCKET_DISCONNECT: i32 = -13;
const LIBSSH2_ERROR_SOCKET_TIMEOUT: i32 = -30;
const LIBSSH2_ERROR_SOCKET_RECV: i32 = -43;

/// Where a host's collection is, for timeout messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Waiting for a concurrency slot or not started.
    Queued = 0,
    /// TCP connect.
    Connect = 1,
    /// SSH handshake (banner, key exchange).
    Handshake = 2,
    /// User authentication.
    Auth = 3,
    /// Checking or uploading the agent.
    Deploy = 4,
    /// Waiting for the agent's reply.
    Reply = 5,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            1 => Phase::Connect,
            2 => Phase::Handshake,
            3 => Phase::Auth,
            4 => Phase::Deploy,
            5 => Phase::Reply,
            _ => Phase::Queued,
        }
    }

    /// Words for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Queued => "before connecting",
            Phase::Connect => "connecting",
            Phase::Handshake => "in the SSH handshake",
            Phase::Auth => "authenticating",
            Phase::Deploy => "deploying the agent",
            Phase::Reply => "waiting for the agent's reply",
        }
    }
}

/// The socket an SSH session runs over: TCP to the host, or this side of a tunnel through a
/// bastion (a Unix socket pair whose other end the bastion's pump carries).
#[derive(Debug)]
pub enum Socket {
    /// A direct TCP connection.
    Tcp(TcpStream),
    /// The inner end of a `direct-tcpip` tunnel.
    Tunnel(UnixStream),
}

impl Socket {
    /// A second handle on the same socket.
    pub fn try_clone(&self) -> std::io::Result<Socket> {
        Ok(match self {
            Socket::Tcp(s) => Socket::Tcp(s.try_clone()?),
            Socket::Tunnel(s) => Socket::Tunnel(s.try_clone()?),
        })
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Tcp(s) => s.as_fd(),
            Socket::Tunnel(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// The per-host deadline's lever on a blocking session: the scheduler calls
/// [`Watch::expire`] when the budget is spent, which shuts the socket down.
#[derive(Debug, Default)]
pub struct Watch {
    socket: Mutex<Option<OwnedFd>>,
    expired: AtomicBool,
    phase: AtomicU8,
}

impl Watch {
    /// Registers the session's socket (a clone); shuts it at once if already expired.
    pub fn arm(&self, socket: &impl AsFd) {
        let clone = socket.as_fd().try_clone_to_owned().ok();
        let mut slot = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        *slot = clone;
        if let (true, Some(s)) = (self.expired.load(Ordering::SeqCst), slot.as_ref()) {
            let _ = socket2::SockRef::from(s).shutdown(Shutdown::Both);
        }
    }

    /// Marks the deadline passed and breaks the connection.
    pub fn expire(&self) {
        self.expired.store(true, Ordering::SeqCst);
        let slot = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.as_ref() {
            let _ = socket2::SockRef::from(s).shutdown(Shutdown::Both);
        }
    }

    /// Whether [`Watch::expire`] was called.
    pub fn expired(&self) -> bool {
        self.expired.load(Ordering::SeqCst)
    }

    /// Records the phase reached.
    pub fn enter(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }

    /// The last phase entered.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::SeqCst))
    }
}

/// Sets libssh2's per-call timeout to what is left until `until` (at least 1 ms).
pub fn limit(session: &Session, until: Instant) {
    let left = until.saturating_duration_since(Instant::now());
    let ms = u32::try_from(left.as_millis()).unwrap_or(u32::MAX).max(1);
    session.set_timeout(ms);
}

/// How long a connection may leave data unacknowledged before it counts as dead, and the SSH
/// keepalive interval: `connect_timeout`, at least 2 s (libssh2's shortest keepalive interval).
pub fn liveness(connect_timeout: Duration) -> Duration {
    connect_timeout.max(Duration::from_secs(2))
}

/// Sends one SSH keepalive (`keepalive@libssh2.org`, no reply wanted: libssh2 would keep
/// every reply queued) unless one went out in the last two seconds. The keepalive interval is
/// set only around the call, so that blocking waits do not time out at it.
pub fn keepalive(session: &Session) -> Result<(), ssh2::Error> {
    session.set_keepalive(false, 2);
    let sent = session.keepalive_send();
    session.set_keepalive(false, 0);
    sent.map(|_| ())
}

/// Whether the session's last error was its connection failing (a socket error or a
/// disconnect), as opposed to a channel or protocol error.
pub fn connection_lost(session: &Session) -> bool {
    matches!(
        ssh2::Error::last_session_error(session).map(|e| e.code()),
        Some(ssh2::ErrorCode::Session(
            LIBSSH2_ERROR_SOCKET_NONE
                | LIBSSH2_ERROR_SOCKET_SEND
                | LIBSSH2_ERROR_SOCKET_DISCONNECT
                | LIBSSH2_ERROR_SOCKET_TIMEOUT
                | LIBSSH2_ERROR_SOCKET_RECV
        ))
    )
}

/// Connects, handshakes, checks the host key and authenticates.
pub fn open(
    name: &str,
    target: &SshTarget,
    shared: &Shared,
    watch: &Watch,
) -> Result<(Session, Socket), CollectError> {
    let settings = &shared.settings;
    watch.enter(Phase::Connect);
    let socket = connect(&target.socket_text(), target, settings.connect_timeout)?;
    watch.arm(&socket);
    let _ = socket.set_nodelay(true);
    // Best effort: without it a silent peer costs the command timeout, as before.
    let _ = socket2::SockRef::from(&socket)
        .set_tcp_user_timeout(Some(liveness(settings.connect_timeout)));
    open_over(name, target, Socket::Tcp(socket), shared, watch)
}

/// Handshakes over `socket` (connected to `target`, directly or through a tunnel), checks
/// the host key pinned under `name` and authenticates.
pub fn open_over(
    name: &str,
    target: &SshTarget,
    socket: Socket,
    shared: &Shared,
    watch: &Watch,
) -> Result<(Session, Socket), CollectError> {
    let settings = &shared.settings;
    let display = target.socket_text();
    watch.arm(&socket);
    watch.enter(Phase::Handshake);
    let auth_until = Instant::now() + settings.auth_timeout;
    let mut session = Session::new().map_err(|e| {
        fail(
            ErrorClass::Internal,
            format!("creating an SSH session: {e}"),
        )
    })?;
    session.set_tcp_stream(
        socket
            .try_clone()
            .map_err(|e| fail(ErrorClass::Internal, format!("cloning the socket: {e}")))?,
    );
    limit(&session, auth_until);
    session
        .handshake()
        .map_err(|e| handshake_error(&display, &e))?;

    let (blob, _) = session.host_key().ok_or_else(|| {
        fail(
            ErrorClass::Unreachable,
            format!("{display} presented no host key"),
        )
    })?;
    let host = pin_name(name, target, matches!(socket, Socket::Tunnel(_)));
    shared
        .host_keys
        .verify(name, &host, blob, target.host_key_policy)
        .map_err(host_key_error)?;

    watch.enter(Phase::Auth);
    limit(&session, auth_until);
    authenticate(&session, target, &display)?;
    Ok((session, socket))
}

/// The name a host's key is pinned under: its `address:port` as OpenSSH writes it when the
/// appliance reaches it directly; its configured `name` when it is reached through a bastion
/// (like OpenSSH's `HostKeyAlias`), since private addresses behind two bastions may be equal.
/// A name that cannot be a known_hosts token falls back to the address.
pub fn pin_name(name: &str, target: &SshTarget, tunneled: bool) -> String {
    let token = !name.is_empty()
        && !name.contains(|c: char| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, ',' | '#' | '|' | '@' | '*' | '?' | '!' | '[' | ']')
        });
    if tunneled && token {
        name.to_string()
    } else {
        known_hosts_name(&target.address, target.port)
    }
}

/// Connects and handshakes only, and returns the host key blob (for `edgemon hosts trust`).
pub fn fetch_host_key(target: &SshTarget, timeout: Duration) -> Result<Vec<u8>, CollectError> {
    let socket = connect(&target.socket_text(), target, timeout)?;
    fetch_host_key_over(target, Socket::Tcp(socket), timeout)
}

/// Handshakes over `socket` (to `target`, direct or tunnelled) and returns the host key blob.
pub fn fetch_host_key_over(
    target: &SshTarget,
    socket: Socket,
    timeout: Duration,
) -> Result<Vec<u8>, CollectError> {
    let display = target.socket_text();
    let mut session = Session::new().map_err(|e| {
        fail(
            ErrorClass::Internal,
            format!("creating an SSH session: {e}"),
        )
    })?;
    session.set_tcp_stream(socket);
    limit(&session, Instant::now() + timeout);
    session
        .handshake()
        .map_err(|e| handshake_error(&display, &e))?;
    let blob = session
        .host_key()
        .map(|(blob, _)| blob.to_vec())
        .ok_or_else(|| {
            fail(
                ErrorClass::Unreachable,
                format!("{display} presented no host key"),
            )
        })?;
    let _ = session.disconnect(None, "edgemon: host key fetched", None);
    Ok(blob)
}

/// A TCP connection to `target` within `timeout` (each resolved address in turn).
pub fn connect(
    display: &str,
    target: &SshTarget,
    timeout: Duration,
) -> Result<TcpStream, CollectError> {
    let addrs = (target.address.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| {
            fail(
                ErrorClass::Unreachable,
                format!("cannot resolve {display}: {e}"),
            )
        })?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(socket) => return Ok(socket),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == std::io::ErrorKind::TimedOut => fail(
            ErrorClass::Unreachable,
            format!(
                "no answer to a TCP connect to {display} within {} (host down or cut off)",
                humantime::format_duration(timeout)
            ),
        ),
        Some(e) => fail(
            ErrorClass::Unreachable,
            format!("TCP connect to {display} failed: {e}"),
        ),
        None => fail(
            ErrorClass::Unreachable,
            format!("{display} resolved to no address"),
        ),
    })
}

fn session_code(e: &ssh2::Error) -> Option<i32> {
    match e.code() {
        ssh2::ErrorCode::Session(code) => Some(code),
        _ => None,
    }
}

fn handshake_error(display: &str, e: &ssh2::Error) -> CollectError {
    match session_code(e) {
        Some(LIBSSH2_ERROR_TIMEOUT) => fail(
            ErrorClass::Timeout,
            format!("SSH handshake with {display} timed out (no SSH banner or key exchange)"),
        ),
        Some(LIBSSH2_ERROR_KEX_FAILURE) => fail(
            ErrorClass::Unreachable,
            format!(
                "SSH handshake with {display} failed: {e}. This usually means the server offers only \
                 legacy SHA-1 algorithms (diffie-hellman-group1/14-sha1 key exchange or ssh-rsa host \
                 keys, e.g. OpenSSH before 7.2), which this build does not support; enable SHA-2 \
                 algorithms (curve25519-sha256, rsa-sha2-256, ssh-ed25519) on the server"
            ),
        ),
        Some(LIBSSH2_ERROR_SOCKET_DISCONNECT | LIBSSH2_ERROR_SOCKET_RECV) => fail(
            ErrorClass::Unreachable,
            format!("SSH handshake with {display} failed: {e}: {DROPPED_IN_HANDSHAKE}"),
        ),
        _ => fail(
            ErrorClass::Unreachable,
            format!("SSH handshake with {display} failed: {e}"),
        ),
    }
}

/// How a handshake error ends when the server closed (or reset) the connection during the
/// handshake, typically before its banner: what sshd does to a connection past
/// `MaxStartups`, or when it cannot start a session.
const DROPPED_IN_HANDSHAKE: &str = "the server closed the connection during the handshake \
     (as sshd does past MaxStartups, behind a TCP wrapper, or when it cannot start a session)";

/// Whether `e` is a connection the server dropped during the handshake: worth one more
/// attempt after a pause, since sshd sheds new connections at random past the start of
/// `MaxStartups` (a scanner, a configuration run, another monitor on the same host).
pub fn dropped_in_handshake(e: &CollectError) -> bool {
    e.class == ErrorClass::Unreachable && e.message.ends_with(DROPPED_IN_HANDSHAKE)
}

/// The pause before that one more attempt: 200 to 800 ms, at random, so the hosts a
/// throttling sshd dropped together do not come back together.
pub fn redial_pause() -> Duration {
    use rand::Rng;
    Duration::from_millis(rand::thread_rng().gen_range(200..=800))
}

fn host_key_error(e: HostKeyError) -> CollectError {
    let class = match &e {
        HostKeyError::Changed { .. } | HostKeyError::Revoked { .. } => ErrorClass::HostKeyChanged,
        HostKeyError::Unknown { .. } => ErrorClass::HostKeyUnknown,
        HostKeyError::Store { .. } => ErrorClass::Internal,
    };
    fail(class, e.to_string())
}

fn authenticate(session: &Session, target: &SshTarget, display: &str) -> Result<(), CollectError> {
    let user = target.user.as_str();
    let who = format!("{user}@{display}");
    let result = match &target.auth {
        Auth::IdentityFile { path, passphrase } => session
            .userauth_pubkey_file(user, None, path, passphrase.as_ref().map(|p| p.expose()))
            .map_err(|e| (e, format!("key {}", path.display()))),
        Auth::Password(password) => session
            .userauth_password(user, password.expose())
            .map_err(|e| (e, "password".to_string())),
        Auth::Agent => agent_auth(session, user),
    };
    match result {
        Ok(()) if session.authenticated() => Ok(()),
        Ok(()) => Err(fail(
            ErrorClass::AuthRefused,
            format!("{who} refused authentication (more methods required)"),
        )),
        Err((e, what)) if session_code(&e) == Some(LIBSSH2_ERROR_TIMEOUT) => Err(fail(
            ErrorClass::Timeout,
            format!("authentication of {who} with {what} timed out"),
        )),
        Err((e, what)) => Err(fail(
            ErrorClass::AuthRefused,
            format!("{who} refused {what}: {}", e.message()),
        )),
    }
}

fn agent_auth(session: &Session, user: &str) -> Result<(), (ssh2::Error, String)> {
    let what = || "ssh-agent identities".to_string();
    let mut agent = session.agent().map_err(|e| (e, what()))?;
    agent.connect().map_err(|e| (e, what()))?;
    agent.list_identities().map_err(|e| (e, what()))?;
    let identities = agent.identities().map_err(|e| (e, what()))?;
    let mut last = None;
    for identity in &identities {
        match agent.userauth(user, identity) {
            Ok(()) => {
                let _ = agent.disconnect();
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
    }
    let _ = agent.disconnect();
    Err(match last {
        Some(e) => (e, format!("{} ssh-agent identities", identities.len())),
        None => (
            ssh2::Error::new(
                ssh2::ErrorCode::Session(-18),
                "the ssh-agent holds no identities",
            ),
            what(),
        ),
    })
}
