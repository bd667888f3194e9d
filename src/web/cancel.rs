//! Abandoned requests stop their buffer reads (issue 19, item 9). A handler
//! reads the buffer on smol's blocking pool, which the SSH collection shares;
//! when the HTTP server drops a request at its deadline, the blocking read
//! would run on to its end. [`pair`] gives the async side a [`ReadGuard`]
//! and the blocking side a [`ReadCancel`]: the read registers its
//! connection's interrupt handle, and dropping the guard — the request's
//! future going away, finished or abandoned — interrupts whatever statement
//! still runs (`sqlite3_interrupt`), so the read fails at once with
//! `SQLITE_INTERRUPT` and its thread is free again. A read that has not
//! started yet sees the cancellation and does not start.

use std::sync::{Arc, Mutex};

use rusqlite::{Connection, InterruptHandle};

#[derive(Default)]
struct State {
    cancelled: bool,
    handle: Option<InterruptHandle>,
}

/// Held by the request's future; dropping it cancels the read.
pub struct ReadGuard {
    state: Arc<Mutex<State>>,
}

/// Moved into the blocking read; tells it whether to go on and lets it be interrupted.
#[derive(Clone)]
pub struct ReadCancel {
    state: Arc<Mutex<State>>,
}

/// A guard for the async side and the cancel for the blocking read it waits on.
pub fn pair() -> (ReadGuard, ReadCancel) {
    let state = Arc::new(Mutex::new(State::default()));
    (
        ReadGuard {
            state: state.clone(),
        },
        ReadCancel { state },
    )
}

impl ReadCancel {
    /// A cancel nobody ever fires (the CLI, tests).
    pub fn never() -> ReadCancel {
        ReadCancel {
            state: Arc::default(),
        }
    }

    /// Registers `conn` to be interrupted on cancellation; false when already cancelled (the
    /// read must not start).
    pub fn watch(&self, conn: &Connection) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.cancelled {
            return false;
        }
        state.handle = Some(conn.get_interrupt_handle());
        true
    }

    /// Whether the request was abandoned.
    pub fn cancelled(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cancelled
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.cancelled = true;
        // A connection already closed makes this a no-op (rusqlite clears the handle).
        if let Some(handle) = state.handle.take() {
            handle.interrupt();
        }
    }
}
