//! A TCP relay on 127.0.0.1 in front of one port, with a switch for a silent partition:
//! [`Relay::freeze`] stops forwarding bytes in both directions on every connection while
//! keeping both sockets open (neither end learns anything: what each sends is read and
//! dropped), and [`Relay::heal`] lets new connections through again; connections that saw
//! the partition stay cut off for good, as a client's half-sent statement would be.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The switch the relay's threads read.
#[derive(Default)]
struct Switch {
    /// Set by [`Relay::freeze`], cleared by [`Relay::heal`].
    frozen: AtomicBool,
    /// Bumped by every freeze: a connection forwards only in the generation it was born in.
    generation: AtomicU64,
    /// The relay is dropped: every thread ends.
    closed: AtomicBool,
    /// Connections accepted.
    accepted: AtomicU64,
}

impl Switch {
    fn forwards(&self, born: u64, alive: bool) -> bool {
        alive
            && !self.frozen.load(Ordering::SeqCst)
            && self.generation.load(Ordering::SeqCst) == born
    }
}

/// A running relay; dropping it ends its threads and closes every socket.
pub struct Relay {
    port: u16,
    switch: Arc<Switch>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    /// Listens on a free port of 127.0.0.1 and forwards each connection to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let switch = Arc::new(Switch::default());
        let shared = switch.clone();
        let acceptor = std::thread::spawn(move || {
            while !shared.closed.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        shared.accepted.fetch_add(1, Ordering::SeqCst);
                        let born = shared.generation.load(Ordering::SeqCst);
                        let alive = !shared.frozen.load(Ordering::SeqCst);
                        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                            continue;
                        };
                        let _ = client.set_nonblocking(false);
                        for (from, to) in [(&client, &server), (&server, &client)] {
                            let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                                continue;
                            };
                            let switch = shared.clone();
                            std::thread::spawn(move || pump(from, to, &switch, born, alive));
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Relay {
            port,
            switch,
            acceptor: Some(acceptor),
        })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.switch.accepted.load(Ordering::SeqCst)
    }

    /// A silent partition: nothing is forwarded any more, on any connection, old or new.
    pub fn freeze(&self) {
        self.switch.frozen.store(true, Ordering::SeqCst);
        self.switch.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The network heals for connections opened from now on.
    pub fn heal(&self) {
        self.switch.frozen.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.switch.closed.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Copies `from` to `to` while the connection forwards; reads and drops while it does not.
/// An end that closes is passed on only while forwarding (a partition hides it too).
fn pump(mut from: TcpStream, mut to: TcpStream, switch: &Switch, born: u64, alive: bool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 16 * 1024];
    while !switch.closed.load(Ordering::SeqCst) {
        match from.read(&mut buf) {
            Ok(0) => {
                if switch.forwards(born, alive) {
                    let _ = to.shutdown(Shutdown::Write);
                    return;
                }
                // Cut off: keep the other end open (its own pump holds it) until the relay
                // is dropped, as a partition would.
                while !switch.closed.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return;
            }
            Ok(n) => {
                if switch.forwards(born, alive) && to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}
