//! The round writer: one collection round as one explicit SQLite transaction.
//!
//! [`Buffer::begin_round`] opens the transaction; [`Round::record`] stores the
//! round's samples and collection errors (after the drops of samples earlier
//! rounds could not store); the alert step then reads its snapshot through
//! [`Round::tx`], plans with pure functions, and writes the plan through the
//! same transaction; [`Round::commit`] makes all of it durable at once. Dropping
//! a `Round` without committing rolls everything back. Nothing here decides
//! what an alert is: that is `alert`'s job.

use std::time::Duration;

use super::{Buffer, DiskFullState, Recorded, Result, RoundTotals, RoundTx, classify, disk};
use crate::collect::outcome::HostOutcome;

/// One round being written: the open transaction and what it stored so far.
pub struct Round<'a> {
    tx: RoundTx<'a>,
    disk: &'a mut disk::Disk,
    recorded: Vec<Recorded>,
    totals: RoundTotals,
}

impl Buffer {
    /// Begins the transaction of one round.
    pub fn begin_round(&mut self) -> Result<Round<'_>> {
        let Buffer {
            conn,
            path,
            disk,
            dict,
            ..
        } = self;
        // A round that did not commit drew dictionary ids that are gone with it.
        dict.get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .forget_pending();
        // A write transaction from its first statement: a deferred one starts as a read and
        // its upgrade to a write fails at once with SQLITE_BUSY (ignoring the busy timeout)
        // when another connection committed since, which cost whole rounds after a lost one.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|source| classify(path, "recording a round", source))?;
        Ok(Round {
            tx: RoundTx {
                tx,
                path: path.clone(),
                dict,
            },
            disk,
            recorded: Vec::new(),
            totals: RoundTotals::default(),
        })
    }
}

impl<'a> Round<'a> {
    /// Stores the round's outcomes: a sample (with the next sequence number of its host) or
    /// a collection error each, and the hosts' bookkeeping. Samples earlier rounds could not
    /// store ([`Buffer::count_unstored`]) are recorded first, as drops that consume their
    /// hosts' next sequence numbers. Returns what was stored, in the order of `outcomes`.
    pub fn record(
        &mut self,
        outcomes: &[HostOutcome],
        max_clock_skew: Duration,
    ) -> Result<&[Recorded]> {
        let unstored = self.disk.state.unstored.clone();
        let reason = if self.disk.state.full {
            "not stored: the buffer's filesystem was full when it was collected"
        } else {
            "not stored: the buffer could not write its round"
        };
        self.tx.record_unstored(&unstored, reason, outcomes)?;
        let first = self.recorded.len();
        for outcome in outcomes {
            let r = self
                .tx
                .record_outcome(outcome, max_clock_skew, &mut self.totals)?;
            self.recorded.push(r);
        }
        Ok(&self.recorded[first..])
    }

    /// The transaction, for the round's reads and for applying the alert plan.
    pub fn tx(&self) -> &RoundTx<'a> {
        &self.tx
    }

    /// The transaction, mutably.
    pub fn tx_mut(&mut self) -> &mut RoundTx<'a> {
        &mut self.tx
    }

    /// The buffer filesystem's size and free space, when known.
    pub(crate) fn disk_space(&self) -> Option<super::FsSpace> {
        self.disk.space()
    }

    /// Commits the round; afterwards, clears the disk-full state a stored round ends.
    pub fn commit(self) -> Result<RoundTotals> {
        let Round {
            tx, disk, totals, ..
        } = self;
        let RoundTx { tx, path, dict } = tx;
        tx.commit()
            .map_err(|source| classify(&path, "recording a round", source))?;
        dict.lock().unwrap_or_else(|p| p.into_inner()).commit();
        if disk.state != DiskFullState::default() {
            let state = std::mem::take(&mut disk.state);
            tracing::warn!(
                recorded_as_drops = state.unstored_total(),
                hosts = state.unstored.len(),
                "the buffer has room again: rounds are stored, and the samples that could not be are recorded as drops"
            );
            disk.save_state();
        }
        Ok(totals)
    }
}
