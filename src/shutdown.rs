//! One stop signal for every loop of the daemon (after mini-redis's
//! `Shutdown`): blocking loops sleep on it with [`Shutdown::wait_timeout`],
//! which returns at once when it fires; async code races its work against
//! [`Shutdown::wait`]; code that only looks between two steps (a sync drain
//! between batches) reads [`Shutdown::flag`]. Nothing polls.
//!
//! A [`Shutdown::child`] fires with its parent or on its own: the daemon
//! gives each generation of background threads a child, so SIGHUP can stop
//! and join one generation while SIGTERM still reaches every loop at once.
//! Firing is permanent and idempotent. This module knows nothing of signals.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// A cloneable handle on one stop signal.
#[derive(Clone, Debug)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    fired: AtomicBool,
    /// Guards the condition `fired` for the condvar, and the children list.
    children: Mutex<Vec<Weak<Inner>>>,
    wake: Condvar,
    /// Closed when fired: every async waiter's `recv` ends.
    closed: smol::channel::Sender<()>,
    waiters: smol::channel::Receiver<()>,
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A signal that has not fired.
    pub fn new() -> Shutdown {
        let (closed, waiters) = smol::channel::bounded(1);
        Shutdown {
            inner: Arc::new(Inner {
                fired: AtomicBool::new(false),
                children: Mutex::new(Vec::new()),
                wake: Condvar::new(),
                closed,
                waiters,
            }),
        }
    }

    /// A signal that fires when this one does, or on its own (it never fires its parent).
    pub fn child(&self) -> Shutdown {
        let child = Shutdown::new();
        let mut children = self.inner.lock();
        children.retain(|c| c.strong_count() > 0);
        children.push(Arc::downgrade(&child.inner));
        drop(children);
        if self.is_fired() {
            child.fire();
        }
        child
    }

    /// Fires the signal: every waiter returns, now and later; children fire too.
    pub fn fire(&self) {
        self.inner.fire();
    }

    /// Whether the signal has fired.
    pub fn is_fired(&self) -> bool {
        self.inner.fired.load(Ordering::SeqCst)
    }

    /// The flag itself, for code that checks it between steps and never sleeps on it.
    pub fn flag(&self) -> &AtomicBool {
        &self.inner.fired
    }

    /// Blocks for `timeout` or until the signal fires; true when it fired.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut guard = self.inner.lock();
        while !self.is_fired() {
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return false;
            }
            guard = match self.inner.wake.wait_timeout(guard, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }

    /// Completes when the signal fires.
    pub async fn wait(&self) {
        if self.is_fired() {
            return;
        }
        // The channel never carries a message; `recv` ends when `fire` closes it.
        let _ = self.inner.waiters.recv().await;
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Inner>>> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fire(&self) {
        let children = {
            let children = self.lock();
            self.fired.store(true, Ordering::SeqCst);
            self.wake.notify_all();
            children
                .iter()
                .filter_map(Weak::upgrade)
                .collect::<Vec<_>>()
        };
        self.closed.close();
        for child in children {
            child.fire();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_thread_wakes_when_fired_and_later_waits_return_at_once() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.wait_timeout(Duration::from_millis(1)));
        let waiter = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || shutdown.wait_timeout(Duration::from_secs(3600)))
        };
        shutdown.fire();
        assert!(waiter.join().unwrap());
        assert!(shutdown.wait_timeout(Duration::from_secs(3600)));
        assert!(shutdown.flag().load(Ordering::SeqCst));
        smol::block_on(shutdown.wait());
    }

    #[test]
    fn async_waiters_wake_when_fired() {
        let shutdown = Shutdown::new();
        let task = {
            let shutdown = shutdown.clone();
            smol::spawn(async move { shutdown.wait().await })
        };
        shutdown.fire();
        smol::block_on(task);
    }

    #[test]
    fn children_fire_with_their_parent_but_not_the_other_way() {
        let parent = Shutdown::new();
        let first = parent.child();
        first.fire();
        assert!(!parent.is_fired());
        let second = parent.child();
        let grandchild = second.child();
        parent.fire();
        assert!(second.is_fired() && grandchild.is_fired());
        assert!(
            parent.child().is_fired(),
            "a child of a fired signal is fired"
        );
    }
}
