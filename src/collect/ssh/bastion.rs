//! Jump hosts: one authenticated session per bastion, shared by every target
//! behind it and kept across rounds, carrying a `direct-tcpip` channel per
//! target.
//!
//! A target's own `Session` runs over one end of a `UnixStream::pair()`; the
//! other end belongs to the bastion's **pump**, the one thread that touches
//! the bastion's session after it authenticated. ssh2 holds the session's
//! lock during every channel call, so one blocking read would stall every
//! other target of that bastion: the pump keeps the session non-blocking and
//! moves bytes between each channel and its socket pair, opens the channels
//! asked for ([`Hop::open`]), sends keepalives and polls (the bastion's
//! socket, every pair end, a wake socket) when nothing moves. A chain
//! (`via = ["a", "b"]`) is the same thing twice: `b`'s session runs over a
//! tunnel of `a`'s pump.
//!
//! Invariants: at most one session per chain prefix ([`Bastions`] keeps one
//! slot per chain; while one task connects, the others wait for its result,
//! and a failure is remembered for half a round interval, so a dead bastion
//! costs one connect attempt per round, not one per target); every hop's
//! host key is checked in the pin store under the bastion's name, and the
//! target's under the target's name, exactly as for a direct connection;
//! inner handshakes through one bastion are paced by its `handshakes` gate
//! (held from the tunnel's open until the target's session served its first
//! channel, see [`Permit`]), so a round of hundreds of targets never trips
//! `MaxStartups`. A bastion that is down, refuses us or drops the connection
//! is an [`ErrorClass::UnreachableVia`]
//! of every target behind it, whose message starts `via bastion NAME:`
//! ([`via_error`]); a target that cannot be reached behind a healthy bastion
//! gets its own error.
//!
//! libssh2 opens channels one at a time per session: a target whose address
//! the bastion cannot connect to holds the next opens back until the
//! bastion's sshd gives up on it. Open tunnels are unaffected.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use ssh2::{BlockDirections, Channel, Session};

use super::session::{self, Socket, Watch};
use super::{Shared, fail};
use crate::collect::outcome::{CollectError, ErrorClass};
use crate::config::{Bastion, SshTarget};

/// libssh2's "would block".
const LIBSSH2_ERROR_EAGAIN: i32 = -37;
/// Bytes moved per read.
const CHUNK: usize = 32 * 1024;

/// The open bastion sessions of a collector, one per chain of hops.
#[derive(Default)]
pub struct Bastions {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl std::fmt::Debug for Bastions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bastions")
            .field("open", &self.open())
            .finish()
    }
}

#[derive(Default)]
struct Slot {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
enum State {
    #[default]
    Empty,
    Connecting,
    Up(Arc<Hop>),
    Down {
        error: CollectError,
        chain: Vec<Bastion>,
        until: Instant,
    },
}

fn chain_key(chain: &[Bastion]) -> String {
    chain
        .iter()
        .map(|b| b.name.as_str())
        .collect::<Vec<_>>()
        .join(">")
}

/// `via bastion NAME: why`, the error of every target behind a failed bastion.
pub fn via_error(name: &str, why: &CollectError) -> CollectError {
    if why.class == ErrorClass::UnreachableVia {
        return why.clone();
    }
    CollectError::new(
        ErrorClass::UnreachableVia,
        format!("via bastion {name}: {} ({})", why.message, why.class),
    )
}

/// A tunnel to a target and the bastion's handshake slot, held until the target's session
/// served its first channel (see [`Permit`]).
pub struct Tunnel {
    /// This side of the tunnel, for the target's session.
    pub stream: UnixStream,
    /// The handshake slot; drop it once a channel opened on the target's session.
    pub permit: Permit,
    /// The last hop, to tell a failure of the target from one of the bastion.
    pub hop: Arc<Hop>,
}

impl Bastions {
    /// How many bastion sessions are open.
    pub fn open(&self) -> usize {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .values()
            .filter(|slot| {
                let state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
                matches!(&*state, State::Up(hop) if hop.alive())
            })
            .count()
    }

    /// Closes the sessions of chains not in `keep` (a reload that dropped a bastion).
    pub fn retain(&self, keep: &[Vec<Bastion>]) {
        let mut wanted = std::collections::HashSet::new();
        for chain in keep {
            for n in 1..=chain.len() {
                wanted.insert(chain_key(&chain[..n]));
            }
        }
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|key, _| wanted.contains(key));
    }

    /// Opens a tunnel to `target` through its `via` chain (connecting the hops that are not
    /// up), waiting for a handshake slot of the last hop, all before `until`.
    pub fn tunnel(
        &self,
        target: &SshTarget,
        shared: &Shared,
        until: Instant,
    ) -> Result<Tunnel, CollectError> {
        self.tunnel_to(&target.via, &target.address, target.port, shared, until)
    }

    fn tunnel_to(
        &self,
        chain: &[Bastion],
        address: &str,
        port: u16,
        shared: &Shared,
        until: Instant,
    ) -> Result<Tunnel, CollectError> {
        let hop = self.hop(chain, shared, until)?;
        let permit = hop.gate.acquire(until).ok_or_else(|| {
            fail(
                ErrorClass::Timeout,
                format!(
                    "no handshake slot on bastion {} before the deadline ({} inner handshakes at once)",
                    hop.name, hop.gate.size
                ),
            )
        })?;
        let stream = hop.open(address, port, until)?;
        Ok(Tunnel {
            stream,
            permit,
            hop,
        })
    }

    /// The up session of the last hop of `chain`, connecting it (and the hops before it) if
    /// needed; one task connects while the others wait for its result.
    fn hop(
        &self,
        chain: &[Bastion],
        shared: &Shared,
        until: Instant,
    ) -> Result<Arc<Hop>, CollectError> {
        let Some(last) = chain.last() else {
            return Err(fail(ErrorClass::Internal, "a tunnel without a bastion"));
        };
        let key = chain_key(chain);
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(key).or_default().clone()
        };
        let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match &*state {
                State::Up(hop) if hop.alive() && hop.chain == chain => return Ok(hop.clone()),
                State::Up(hop) => {
                    tracing::debug!(bastion = hop.name, why = hop.why(), "bastion session gone");
                    *state = State::Empty;
                }
                State::Down {
                    error,
                    chain: tried,
                    until: retry,
                } if tried == chain && Instant::now() < *retry => return Err(error.clone()),
                State::Down { .. } => *state = State::Empty,
                State::Connecting => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(fail(
                            ErrorClass::Timeout,
                            format!("bastion {} still connecting at the deadline", last.name),
                        ));
                    }
                    state = slot
                        .changed
                        .wait_timeout(state, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                State::Empty => {
                    *state = State::Connecting;
                    drop(state);
                    let result = self.connect(chain, shared, until);
                    state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
                    *state = match &result {
                        Ok(hop) => State::Up(hop.clone()),
                        Err(error) => State::Down {
                            error: error.clone(),
                            chain: chain.to_vec(),
                            until: Instant::now() + shared.settings.interval / 2,
                        },
                    };
                    slot.changed.notify_all();
                    return result;
                }
            }
        }
    }

    /// Connects, handshakes and authenticates to the last hop of `chain` (through the hops
    /// before it) and starts its pump.
    fn connect(
        &self,
        chain: &[Bastion],
        shared: &Shared,
        until: Instant,
    ) -> Result<Arc<Hop>, CollectError> {
        let (last, before) = chain
            .split_last()
            .ok_or_else(|| fail(ErrorClass::Internal, "a tunnel without a bastion"))?;
        let login = &last.login;
        let settings = &shared.settings;
        // A hop behind another holds that hop's handshake slot until it authenticated, not
        // until its first channel as a target's session does: its pump opens the channels
        // later, and one connection per chain lagging past authentication fits the margin
        // between `handshakes` (default 8) and sshd's `MaxStartups` start (10).
        let (socket, _pacing) = if before.is_empty() {
            let tcp = session::connect(&login.socket_text(), login, settings.connect_timeout)
                .map_err(|e| via_error(&last.name, &e))?;
            let _ = tcp.set_nodelay(true);
            let _ = socket2::SockRef::from(&tcp)
                .set_tcp_user_timeout(Some(session::liveness(settings.connect_timeout)));
            (Socket::Tcp(tcp), None)
        } else {
            let tunnel = self
                .tunnel_to(before, &login.address, login.port, shared, until)
                .map_err(|e| via_error(&last.name, &e))?;
            (Socket::Tunnel(tunnel.stream), Some(tunnel.permit))
        };
        // The hop's own deadline is its per-call timeouts; a target's watch must not shut it.
        let watch = Watch::default();
        let (session, socket) = session::open_over(&last.name, login, socket, shared, &watch)
            .map_err(|e| via_error(&last.name, &e))?;
        tracing::debug!(bastion = last.name, "bastion session open");
        Hop::start(last, chain, session, socket, settings.connect_timeout)
            .map_err(|e| via_error(&last.name, &e))
    }
}

/// One bastion's authenticated session, driven by its pump thread.
pub struct Hop {
    /// The bastion's name.
    pub name: String,
    chain: Vec<Bastion>,
    requests: Mutex<Option<Sender<Request>>>,
    wake: UnixStream,
    dead: Arc<Mutex<Option<String>>>,
    gate: Gate,
}

struct Request {
    address: String,
    port: u16,
    reply: SyncSender<Result<UnixStream, String>>,
}

impl Hop {
    fn start(
        bastion: &Bastion,
        chain: &[Bastion],
        session: Session,
        socket: Socket,
        connect_timeout: Duration,
    ) -> Result<Arc<Hop>, CollectError> {
        let internal = |e: io::Error| fail(ErrorClass::Internal, format!("bastion pump: {e}"));
        let (wake, wake_rx) = UnixStream::pair().map_err(internal)?;
        wake_rx.set_nonblocking(true).map_err(internal)?;
        wake.set_nonblocking(true).map_err(internal)?;
        let (tx, rx) = mpsc::channel();
        let dead = Arc::new(Mutex::new(None));
        let pump = Pump {
            name: bastion.name.clone(),
            session,
            socket,
            requests: rx,
            wake: wake_rx,
            dead: dead.clone(),
            keepalive_every: session::liveness(connect_timeout) / 2,
        };
        std::thread::Builder::new()
            .name(format!("bastion {}", bastion.name))
            .spawn(move || pump.run())
            .map_err(internal)?;
        Ok(Arc::new(Hop {
            name: bastion.name.clone(),
            chain: chain.to_vec(),
            requests: Mutex::new(Some(tx)),
            wake,
            dead,
            gate: Gate::new(bastion.handshakes),
        }))
    }

    /// Whether the session still works.
    pub fn alive(&self) -> bool {
        self.dead.lock().map(|d| d.is_none()).unwrap_or(false)
    }

    /// Why the session ended.
    pub fn why(&self) -> String {
        self.dead
            .lock()
            .ok()
            .and_then(|d| d.clone())
            .unwrap_or_else(|| "its session ended".to_string())
    }

    /// The error of a target whose tunnel failed because this bastion's session ended.
    pub fn lost(&self) -> CollectError {
        CollectError::new(
            ErrorClass::UnreachableVia,
            format!("via bastion {}: {}", self.name, self.why()),
        )
    }

    /// Asks the pump for a tunnel to `address:port` and waits for it until `until`.
    fn open(&self, address: &str, port: u16, until: Instant) -> Result<UnixStream, CollectError> {
        let shown = crate::config::host_port(address, port);
        let (reply, answer) = mpsc::sync_channel(1);
        let sent = self.requests.lock().ok().and_then(|r| {
            r.as_ref().map(|tx| {
                tx.send(Request {
                    address: address.to_string(),
                    port,
                    reply,
                })
            })
        });
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.lost());
        }
        let _ = (&self.wake).write(&[1]);
        match answer.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(why)) => Err(fail(
                ErrorClass::Unreachable,
                format!(
                    "bastion {} cannot open a tunnel to {shown}: {why}",
                    self.name
                ),
            )),
            Err(RecvTimeoutError::Timeout) => Err(fail(
                ErrorClass::Timeout,
                format!(
                    "bastion {} opened no tunnel to {shown} before the deadline",
                    self.name
                ),
            )),
            Err(RecvTimeoutError::Disconnected) => Err(self.lost()),
        }
    }
}

impl Drop for Hop {
    fn drop(&mut self) {
        if let Ok(mut requests) = self.requests.lock() {
            requests.take();
        }
        let _ = (&self.wake).write(&[0]);
    }
}

/// A counting semaphore: the inner handshakes in flight through one bastion.
struct Gate {
    size: usize,
    used: Arc<(Mutex<usize>, Condvar)>,
}

/// One handshake slot of a bastion, given back on drop.
///
/// sshd counts a connection against `MaxStartups` until its monitor, after authentication,
/// closes the connection's startup pipe and the listener reads that close: the client has
/// `USERAUTH_SUCCESS` before then, and on a loaded bastion the close can lag long enough
/// for the next handshakes to find the count full (and be dropped before their banner).
/// The monitor closes the pipe before it forks the process that serves channels, so a
/// session whose first channel opened no longer counts: the slot is held until then.
pub struct Permit {
    used: Arc<(Mutex<usize>, Condvar)>,
}

impl Gate {
    fn new(size: usize) -> Gate {
        Gate {
            size: size.max(1),
            used: Arc::default(),
        }
    }

    fn acquire(&self, until: Instant) -> Option<Permit> {
        let (lock, cond) = &*self.used;
        let mut used = lock.lock().unwrap_or_else(|p| p.into_inner());
        while *used >= self.size {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            used = cond
                .wait_timeout(used, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *used += 1;
        Some(Permit {
            used: self.used.clone(),
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let (lock, cond) = &*self.used;
        let mut used = lock.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(1);
        cond.notify_one();
    }
}

/// The thread that owns a bastion's session once authenticated.
struct Pump {
    name: String,
    session: Session,
    socket: Socket,
    requests: Receiver<Request>,
    wake: UnixStream,
    dead: Arc<Mutex<Option<String>>>,
    keepalive_every: Duration,
}

/// One target's tunnel: a channel and the pump's end of the socket pair.
struct Pipe {
    channel: Channel,
    unix: UnixStream,
    /// Bytes read from the target's session, not yet written to the channel.
    up: Vec<u8>,
    /// Bytes read from the channel, not yet written to the target's session.
    down: Vec<u8>,
    done: bool,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Pipe {
    /// Moves what can move without blocking. `Err` only when the bastion's session failed.
    fn step(&mut self, session: &Session, buf: &mut [u8]) -> Result<bool, String> {
        let mut progress = false;
        for _ in 0..4 {
            let mut moved = false;
            // The target's session -> the channel.
            if self.up.is_empty() {
                match self.unix.read(buf) {
                    Ok(0) => {
                        self.done = true;
                        return Ok(true);
                    }
                    Ok(n) => {
                        self.up.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(_) => {
                        self.done = true;
                        return Ok(true);
                    }
                }
            }
            if !self.up.is_empty() {
                match self.channel.write(&self.up) {
                    Ok(n) => {
                        self.up.drain(..n);
                        moved |= n > 0;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(e) => return self.channel_failed(session, &e),
                }
            }
            // The channel -> the target's session.
            if self.down.is_empty() {
                match self.channel.read(buf) {
                    Ok(0) if self.channel.eof() => {
                        self.done = true;
                        return Ok(true);
                    }
                    Ok(0) => {}
                    Ok(n) => {
                        self.down.extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(e) => return self.channel_failed(session, &e),
                }
            }
            if !self.down.is_empty() {
                match self.unix.write(&self.down) {
                    Ok(n) => {
                        self.down.drain(..n);
                        moved |= n > 0;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(_) => {
                        self.done = true;
                        return Ok(true);
                    }
                }
            }
            if !moved {
                break;
            }
            progress = true;
        }
        Ok(progress)
    }

    fn channel_failed(&mut self, session: &Session, e: &io::Error) -> Result<bool, String> {
        self.done = true;
        if session::connection_lost(session) {
            Err(format!("the connection failed: {e}"))
        } else {
            Ok(true)
        }
    }

    /// Whether libssh2 holds received bytes of this channel not yet read.
    fn buffered(&self) -> bool {
        self.down.is_empty() && self.channel.read_window().available > 0
    }
}

impl Pump {
    fn run(self) {
        self.session.set_blocking(false);
        let mut pipes: Vec<Pipe> = Vec::new();
        let mut pending: VecDeque<Request> = VecDeque::new();
        let why = self.serve(&mut pipes, &mut pending);
        tracing::debug!(bastion = self.name, why, "bastion session ended");
        // Said before the waiting requests and the tunnels go, so that their tasks read why.
        if let Ok(mut dead) = self.dead.lock() {
            *dead = Some(why);
        }
        drop(pending);
        drop(pipes);
        let _ = self
            .session
            .disconnect(None, "edgemon: bastion session closed", None);
        let _ = socket2::SockRef::from(&self.socket).shutdown(Shutdown::Both);
    }

    /// Pumps until the session fails or the hop is dropped; returns why.
    fn serve(&self, pipes: &mut Vec<Pipe>, pending: &mut VecDeque<Request>) -> String {
        let mut buf = vec![0u8; CHUNK];
        let mut last_keepalive = Instant::now();
        loop {
            loop {
                match self.requests.try_recv() {
                    Ok(request) => pending.push_back(request),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return "no longer used".to_string(),
                }
            }
            let mut drain = [0u8; 64];
            while matches!((&self.wake).read(&mut drain), Ok(n) if n > 0) {}

            let mut progress = false;
            // libssh2 opens one channel at a time: the head of the queue, until it is done.
            while let Some(request) = pending.front() {
                match self
                    .session
                    .channel_direct_tcpip(&request.address, request.port, None)
                {
                    Ok(channel) => {
                        progress = true;
                        let request = pending.pop_front().expect("front exists");
                        match UnixStream::pair() {
                            Ok((ours, theirs)) if ours.set_nonblocking(true).is_ok() => {
                                if request.reply.send(Ok(theirs)).is_ok() {
                                    pipes.push(Pipe {
                                        channel,
                                        unix: ours,
                                        up: Vec::new(),
                                        down: Vec::new(),
                                        done: false,
                                    });
                                } else {
                                    close(channel);
                                }
                            }
                            Ok(_) | Err(_) => {
                                let _ = request
                                    .reply
                                    .send(Err("cannot create a socket pair".to_string()));
                                close(channel);
                            }
                        }
                    }
                    Err(e) if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_EAGAIN) => {
                        break;
                    }
                    Err(e) => {
                        if session::connection_lost(&self.session) {
                            return format!("the connection failed: {e}");
                        }
                        progress = true;
                        let request = pending.pop_front().expect("front exists");
                        let _ = request.reply.send(Err(e.message().to_string()));
                    }
                }
            }
            for pipe in pipes.iter_mut() {
                match pipe.step(&self.session, &mut buf) {
                    Ok(moved) => progress |= moved,
                    Err(why) => return why,
                }
            }
            let before = pipes.len();
            pipes.retain_mut(|pipe| {
                if pipe.done {
                    let _ = pipe.channel.close();
                }
                !pipe.done
            });
            progress |= pipes.len() != before;

            if last_keepalive.elapsed() >= self.keepalive_every {
                last_keepalive = Instant::now();
                if let Err(e) = session::keepalive(&self.session)
                    && e.code() != ssh2::ErrorCode::Session(LIBSSH2_ERROR_EAGAIN)
                {
                    return format!("keepalive failed: {e}");
                }
            }
            if progress || pipes.iter().any(Pipe::buffered) {
                continue;
            }
            if let Err(why) = self.wait(pipes, !pending.is_empty(), last_keepalive) {
                return why;
            }
        }
    }

    /// Sleeps until a socket is ready or the next keepalive is due. `Err` when the bastion's
    /// connection was closed or failed.
    fn wait(&self, pipes: &[Pipe], opening: bool, last_keepalive: Instant) -> Result<(), String> {
        let mut flags = PollFlags::RDHUP;
        if opening || !pipes.is_empty() {
            flags |= PollFlags::IN;
        }
        if self.session.block_directions() != BlockDirections::Inbound
            && self.session.block_directions() != BlockDirections::None
        {
            flags |= PollFlags::OUT;
        }
        let mut fds = Vec::with_capacity(pipes.len() + 2);
        fds.push(PollFd::new(&self.socket, flags));
        fds.push(PollFd::new(&self.wake, PollFlags::IN));
        for pipe in pipes {
            let mut f = PollFlags::empty();
            if pipe.up.is_empty() {
                f |= PollFlags::IN;
            }
            if !pipe.down.is_empty() {
                f |= PollFlags::OUT;
            }
            fds.push(PollFd::new(&pipe.unix, f));
        }
        let left = self
            .keepalive_every
            .saturating_sub(last_keepalive.elapsed())
            .max(Duration::from_millis(1));
        let timeout = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(e) => return Err(format!("poll failed: {e}")),
        }
        let revents = fds[0].revents();
        if revents.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::RDHUP) {
            return Err(if revents.contains(PollFlags::ERR) {
                let error = socket2::SockRef::from(&self.socket)
                    .take_error()
                    .ok()
                    .flatten()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "socket error".to_string());
                format!("the connection failed: {error}")
            } else {
                "the bastion closed the connection".to_string()
            });
        }
        Ok(())
    }
}

/// Closes a channel nobody waits for (its requester gave up).
fn close(mut channel: Channel) {
    let _ = channel.close();
}
