//! Abandoned requests stop their buffer reads (issue 19, item 9). A handler
//! reads the buffer on smol's blocking pool, which the SSH collection shares;
//! when the HTTP server drops a request at its deadline, the blocking read
//! would run on to its end. [`pair`] gives the async side a [`ReadGuard`]
//! and the blocking side a [`ReadCancel`]: the read registers its
//! connection's interrupt handle, and dropping the guard — the request's
//! future going away, finished or abandoned — interrupts whatever statement
//! still runs (`sqlite3_interrupt`) and, through a progress handler, every
//! statement after it, so the read fails at once with `SQLITE_INTERRUPT` and
//! its thread is free again. A read that has not
//! started yet sees the cancellation and does not start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, InterruptHandle};

/// SQLite virtual-machine steps between two looks at the cancel flag.
const CHECK_EVERY_OPS: i32 = 1000;

#[derive(Default)]
struct State {
    cancelled: Arc<AtomicBool>,
    handle: Mutex<Option<InterruptHandle>>,
}

/// Held by the request's future; dropping it cancels the read.
pub struct ReadGuard {
    state: Arc<State>,
}

/// Moved into the blocking read; tells it whether to go on and lets it be interrupted.
#[derive(Clone)]
pub struct ReadCancel {
    state: Arc<State>,
}

/// A guard for the async side and the cancel for the blocking read it waits on.
pub fn pair() -> (ReadGuard, ReadCancel) {
    let state = Arc::new(State::default());
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

    /// Makes `conn` stop on cancellation: its interrupt handle for a statement running then,
    /// and a progress handler that ends any later statement at once (an interrupt between
    /// two statements would be forgotten by SQLite). False when already cancelled: the read
    /// must not start.
    pub fn watch(&self, conn: &Connection) -> bool {
        let mut handle = self.state.handle.lock().unwrap_or_else(|p| p.into_inner());
        if self.cancelled() {
            return false;
        }
        *handle = Some(conn.get_interrupt_handle());
        let cancelled = self.state.cancelled.clone();
        conn.progress_handler(
            CHECK_EVERY_OPS,
            Some(move || cancelled.load(Ordering::SeqCst)),
        );
        true
    }

    /// Whether the request was abandoned.
    pub fn cancelled(&self) -> bool {
        self.state.cancelled.load(Ordering::SeqCst)
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let mut handle = self.state.handle.lock().unwrap_or_else(|p| p.into_inner());
        self.state.cancelled.store(true, Ordering::SeqCst);
        // A connection already closed makes this a no-op (rusqlite clears the handle).
        if let Some(handle) = handle.take() {
            handle.interrupt();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read that runs until interrupted (a recursive count without end).
    const ENDLESS: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                           SELECT COUNT(*) FROM n";

    #[test]
    fn dropping_the_guard_interrupts_the_running_read_and_a_late_read_never_starts() {
        let (guard, cancel) = pair();
        let (started_tx, started) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let conn = Connection::open_in_memory().expect("open");
            assert!(cancel.watch(&conn));
            started_tx.send(()).expect("send");
            let result = conn.query_row(ENDLESS, [], |r| r.get::<_, i64>(0));
            (result, cancel.cancelled())
        });
        started.recv().expect("the read started");
        drop(guard);
        let (result, cancelled) = reader.join().expect("the reader ends");
        assert!(cancelled);
        assert!(
            matches!(&result, Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::OperationInterrupted),
            "{result:?}"
        );

        let (guard, cancel) = pair();
        drop(guard);
        let conn = Connection::open_in_memory().expect("open");
        assert!(!cancel.watch(&conn), "a cancelled request starts no read");
        assert!(ReadCancel::never().watch(&conn));
    }
}
