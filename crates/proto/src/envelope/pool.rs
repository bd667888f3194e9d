//! Initiators generated ahead of use, so a collection round only computes
//! shared secrets: the key generation (`g^a mod p`) runs between rounds.

use super::Initiator;
use std::sync::{Mutex, MutexGuard};

/// A bounded stock of fresh [`Initiator`]s. Each one leaves the pool exactly
/// once, through [`InitiatorPool::take`], and is used for one request; its
/// exponent is zeroed when it is dropped. Nothing else is kept: no key is
/// ever handed out twice.
#[derive(Default)]
pub struct InitiatorPool {
    ready: Mutex<Vec<Initiator>>,
}

/// Shows how many are ready, never a key.
impl std::fmt::Debug for InitiatorPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitiatorPool")
            .field("ready", &self.len())
            .finish()
    }
}

impl InitiatorPool {
    /// An empty pool.
    pub fn new() -> InitiatorPool {
        InitiatorPool::default()
    }

    /// A ready initiator, or a new one made now when the pool is empty.
    pub fn take(&self) -> Initiator {
        let ready = self.lock().pop();
        ready.unwrap_or_default()
    }

    /// Generates initiators until `target` are ready (none when there are
    /// already that many); returns how many it made. Generation runs outside
    /// the lock, so [`InitiatorPool::take`] never waits for it.
    pub fn refill(&self, target: usize) -> usize {
        let mut made = 0;
        while self.len() < target {
            let fresh = Initiator::new();
            let mut ready = self.lock();
            if ready.len() >= target {
                break;
            }
            ready.push(fresh);
            made += 1;
        }
        made
    }

    /// How many initiators are ready.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no initiator is ready.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every ready initiator (their exponents are zeroed).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Initiator>> {
        // A panic while holding the lock cannot leave the Vec half-updated (push and pop only).
        self.ready.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::respond;

    #[test]
    fn each_initiator_leaves_once_and_opens_its_reply() {
        let pool = InitiatorPool::new();
        assert_eq!(pool.refill(3), 3);
        assert_eq!(pool.refill(3), 0, "already full");
        let taken: Vec<Initiator> = (0..3).map(|_| pool.take()).collect();
        assert!(pool.is_empty());
        let requests: Vec<Vec<u8>> = taken.iter().map(Initiator::request).collect();
        for (i, a) in requests.iter().enumerate() {
            for b in &requests[i + 1..] {
                assert_ne!(a, b, "a key was handed out twice");
            }
        }
        for (init, req) in taken.iter().zip(&requests) {
            let reply = respond(req, b"payload").expect("respond");
            assert_eq!(init.open(&reply, 1 << 16).expect("open"), b"payload");
        }
        // Empty: a fresh one is made on the spot.
        let init = pool.take();
        let reply = respond(&init.request(), b"x").expect("respond");
        assert_eq!(init.open(&reply, 1 << 16).expect("open"), b"x");
        pool.refill(2);
        pool.clear();
        assert_eq!(pool.len(), 0);
    }
}
