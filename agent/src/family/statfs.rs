//! `statvfs(2)` with a deadline, off the sampling path. A hung NFS or FUSE server makes
//! `statvfs` block in the kernel, uninterruptibly for the caller and for as long as the
//! server stays away; no timeout option exists. So the sampler never calls it itself:
//!
//! - Each mount of a sample is handed to a worker thread of its own (reused from an idle
//!   pool, spawned when none is idle), and the sampler waits for the answers with **one
//!   deadline for the whole sample** (`statfs_timeout_ms`). A mount with no answer by then is
//!   reported `hanging`; its worker stays behind, blocked.
//! - A mount whose worker has not returned is **not statted again**: later samples report it
//!   `hanging` at once, without waiting and without a new thread. So at most one worker is
//!   ever stuck per mount, and a hung mount delays at most the first sample that meets it,
//!   by at most the deadline.
//! - When a stuck worker's call finally returns, the next sample collects its (stale) answer
//!   and puts the worker back into the idle pool; the mount is statted afresh from then on.
//! - The idle pool keeps at most as many workers as the last sample used, so a steady
//!   agent spawns no threads; workers have small stacks (64 KiB).
//!
//! Invariant: the number of live workers is at most the mounts of the last sample plus the
//! mounts still stuck; a sample waits at most the deadline.
//!
//! The prober is generic over what the call returns ([`Sizes`] by default); the Windows
//! agent uses it for its volumes' space and volume calls, which can block on a remote drive
//! just as `statvfs` does on NFS.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// What `statvfs` said about one mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Total bytes (`f_blocks × f_frsize`).
    pub size: u64,
    /// Bytes in use (`(f_blocks − f_bfree) × f_frsize`).
    pub used: u64,
    /// Bytes available to unprivileged users (`f_bavail × f_frsize`).
    pub avail: u64,
    /// Inodes in all.
    pub files: u64,
    /// Inodes free.
    pub files_free: u64,
    /// `ST_RDONLY` is set.
    pub readonly: bool,
}

/// One mount's outcome in a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe<S = Sizes> {
    /// It answered: its sizes, or `None` when `statvfs` failed (permission, a mount gone).
    Answered(Option<S>),
    /// No answer within the deadline, now or still from an earlier sample.
    Hanging,
}

struct Job {
    mount: String,
}

struct Done<S> {
    mount: String,
    sizes: Option<S>,
}

/// The prober a resident agent keeps across samples.
pub struct Prober<S = Sizes> {
    idle: Vec<Sender<Job>>,
    /// Workers with a call in flight, by mount (each mount at most once).
    busy: HashMap<String, Sender<Job>>,
    done_tx: Sender<Done<S>>,
    done_rx: Receiver<Done<S>>,
    stat: fn(&str) -> Option<S>,
}

#[cfg(unix)]
impl Default for Prober {
    fn default() -> Prober {
        Prober::new()
    }
}

#[cfg(unix)]
impl Prober {
    /// A prober calling the real `statvfs`.
    pub fn new() -> Prober {
        Prober::with(statvfs)
    }
}

impl<S: Send + 'static> Prober<S> {
    /// A prober calling `stat` instead (tests give it one that blocks).
    pub fn with(stat: fn(&str) -> Option<S>) -> Prober<S> {
        let (done_tx, done_rx) = mpsc::channel();
        Prober {
            idle: Vec::new(),
            busy: HashMap::new(),
            done_tx,
            done_rx,
            stat,
        }
    }

    /// Mounts whose call is still in flight from an earlier sample.
    #[cfg(test)]
    pub fn stuck(&self) -> usize {
        self.busy.len()
    }

    /// Workers alive (idle or in flight).
    #[cfg(test)]
    pub fn workers(&self) -> usize {
        self.idle.len() + self.busy.len()
    }

    /// Stats `mounts` (distinct mount points), waiting at most `timeout` in all.
    pub fn probe(&mut self, mounts: &[String], timeout: Duration) -> Vec<Probe<S>> {
        // Late answers of earlier samples: their workers are free again.
        while let Ok(done) = self.done_rx.try_recv() {
            self.finish(&done.mount);
        }
        let deadline = Instant::now() + timeout;
        let mut out: Vec<Probe<S>> = mounts.iter().map(|_| Probe::Hanging).collect();
        let mut pending: HashMap<&str, usize> = HashMap::new();
        for (i, mount) in mounts.iter().enumerate() {
            if self.busy.contains_key(mount) || pending.contains_key(mount.as_str()) {
                continue; // still stuck: hanging, not statted again
            }
            match self.dispatch(mount) {
                Some(()) => {
                    pending.insert(mount, i);
                }
                None => out[i] = Probe::Answered(None),
            }
        }
        let used = pending.len();
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.done_rx.recv_timeout(left) {
                Ok(done) => {
                    self.finish(&done.mount);
                    if let Some(i) = pending.remove(done.mount.as_str()) {
                        out[i] = Probe::Answered(done.sizes);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        // Keep as many idle workers as this sample needed; the others end.
        self.idle.truncate(used.max(1));
        out
    }

    fn finish(&mut self, mount: &str) {
        if let Some(worker) = self.busy.remove(mount) {
            self.idle.push(worker);
        }
    }

    /// Hands `mount` to an idle or new worker; `None` when no thread could be had.
    fn dispatch(&mut self, mount: &str) -> Option<()> {
        let mut job = Job {
            mount: mount.to_owned(),
        };
        while let Some(worker) = self.idle.pop() {
            match worker.send(job) {
                Ok(()) => {
                    self.busy.insert(mount.to_owned(), worker);
                    return Some(());
                }
                // That worker is gone (cannot happen unless it panicked): try the next.
                Err(mpsc::SendError(back)) => job = back,
            }
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let done = self.done_tx.clone();
        let stat = self.stat;
        std::thread::Builder::new()
            .name("statvfs".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let sizes = stat(&job.mount);
                    let answer = Done {
                        mount: job.mount,
                        sizes,
                    };
                    if done.send(answer).is_err() {
                        return;
                    }
                }
            })
            .ok()?;
        tx.send(job).ok()?;
        self.busy.insert(mount.to_owned(), tx);
        Some(())
    }
}

/// The real `statvfs(2)` of `mount`.
#[cfg(unix)]
pub fn statvfs(mount: &str) -> Option<Sizes> {
    let s = rustix::fs::statvfs(mount).ok()?;
    let frsize = if s.f_frsize > 0 {
        s.f_frsize
    } else {
        s.f_bsize
    };
    let bytes = |blocks: u64| blocks.saturating_mul(frsize);
    Some(Sizes {
        size: bytes(s.f_blocks),
        used: bytes(s.f_blocks.saturating_sub(s.f_bfree)),
        avail: bytes(s.f_bavail),
        files: s.f_files,
        files_free: s.f_ffree,
        readonly: s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    static RELEASE: AtomicBool = AtomicBool::new(false);

    /// `/hung` blocks until RELEASE; everything else answers at once.
    fn fake(mount: &str) -> Option<Sizes> {
        if mount == "/hung" {
            while !RELEASE.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Some(Sizes {
            size: 100,
            used: 40,
            avail: 60,
            files: 10,
            files_free: 5,
            readonly: false,
        })
    }

    #[test]
    fn a_hung_mount_is_hanging_holds_one_worker_and_is_not_statted_again() {
        let mut p = Prober::with(fake);
        let mounts: Vec<String> = ["/", "/hung", "/var"].map(String::from).to_vec();
        let first = p.probe(&mounts, Duration::from_millis(200));
        assert_eq!(first[1], Probe::Hanging);
        assert!(matches!(first[0], Probe::Answered(Some(_))));
        assert!(matches!(first[2], Probe::Answered(Some(_))));
        assert_eq!(p.stuck(), 1);
        for _ in 0..5 {
            let next = p.probe(&mounts, Duration::from_secs(30));
            // The stuck mount is not waited for: this returns as soon as the others answer.
            assert_eq!(next[1], Probe::Hanging);
            assert!(matches!(next[0], Probe::Answered(Some(_))));
            assert_eq!(p.stuck(), 1, "one worker stuck, not one per sample");
            assert!(p.workers() <= mounts.len(), "{} workers", p.workers());
        }
        RELEASE.store(true, Ordering::SeqCst);
        // Once the call returns, the mount is statted again and answers.
        let mut answered = false;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(10));
            if matches!(
                p.probe(&mounts, Duration::from_secs(5))[1],
                Probe::Answered(_)
            ) {
                answered = true;
                break;
            }
        }
        assert!(answered);
        assert_eq!(p.stuck(), 0);
    }

    #[test]
    #[cfg(unix)]
    fn statvfs_of_root_and_of_a_missing_path() {
        let root = statvfs("/").expect("/ answers");
        assert!(root.size >= root.used && root.size > 0);
        assert_eq!(statvfs("/no/such/mount/point"), None);
    }
}
