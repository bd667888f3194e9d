//! Per-host scheduling for the daemon: every host runs on its own task, so one
//! slow or silent host never sets the pace of the others (issue 19, item 11).
//!
//! Each tick of `collect.interval` opens a round and starts every host that
//! is not still in flight; a host whose attempt from an earlier tick has not
//! answered is not started twice. A round holds exactly one entry per host:
//! the outcome that landed while it was open (the answer to this tick's start,
//! or the late answer of an attempt started earlier), or, when none did, an
//! [`ErrorClass::InFlight`] entry at its close. The round closes, to be
//! committed whole by the caller, as soon as every host has its entry, and at
//! the latest at the next tick. So healthy hosts are started at every tick
//! whatever one host does; a stuck host costs the others at most one interval
//! of commit delay, never a sample; and every tick of every host is accounted
//! for in the buffer (a sample, a collection error, or `in-flight`), which
//! keeps completeness and the alert rules' failure counts honest.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use smol::channel::{Receiver, Sender};

use super::Collector;
use super::outcome::{CollectError, ErrorClass, HostOutcome};
use crate::buffer::now_ms;

/// The open round and the hosts in flight, across ticks.
pub struct Scheduler {
    landed_tx: Sender<HostOutcome>,
    landed: Receiver<HostOutcome>,
    /// Hosts whose attempt is running: when it started, and the task (dropping it abandons it).
    in_flight: HashMap<String, (Instant, smol::Task<()>)>,
    open: Option<OpenRound>,
}

/// A closed round: one outcome per host in configuration order, and how long it was open.
pub struct ClosedRound {
    /// One entry per host of the round.
    pub outcomes: Vec<HostOutcome>,
    /// From its tick to its close.
    pub wall: Duration,
}

struct OpenRound {
    opened: Instant,
    opened_ms: i64,
    /// The hosts of the round in configuration order: name and address.
    hosts: Vec<(String, String)>,
    entries: HashMap<String, HostOutcome>,
}

impl OpenRound {
    fn complete(&self) -> bool {
        self.entries.len() >= self.hosts.len()
    }
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler::new()
    }
}

impl Scheduler {
    /// No round open, nothing in flight.
    pub fn new() -> Scheduler {
        let (landed_tx, landed) = smol::channel::unbounded();
        Scheduler {
            landed_tx,
            landed,
            in_flight: HashMap::new(),
            open: None,
        }
    }

    /// A tick: closes the open round (hosts without an entry get `in-flight`), opens the next
    /// over `collector`'s hosts and starts each one not still in flight. Returns the closed
    /// round, if one was open.
    pub fn tick(&mut self, collector: &Collector) -> Option<ClosedRound> {
        let closed = self.close();
        let hosts = collector
            .hosts()
            .iter()
            .map(|h| (h.name.clone(), h.display_address()))
            .collect();
        self.open = Some(OpenRound {
            opened: Instant::now(),
            opened_ms: now_ms(),
            hosts,
            entries: HashMap::new(),
        });
        for host in collector.hosts() {
            if let Some((since, _)) = self.in_flight.get(&host.name) {
                tracing::debug!(host = %host.name, running_ms = since.elapsed().as_millis() as u64,
                    "still in flight at its tick: not started again");
                continue;
            }
            let task = collector.start(host);
            let landed = self.landed_tx.clone();
            let task = smol::spawn(async move {
                let _ = landed.send(task.await).await;
            });
            self.in_flight
                .insert(host.name.clone(), (Instant::now(), task));
        }
        if closed.is_some() {
            collector.start_refill();
        }
        closed
    }

    /// The next outcome to land (pending forever while nothing is in flight); hand it to
    /// [`Scheduler::land`].
    pub async fn next_landed(&self) -> HostOutcome {
        match self.landed.recv().await {
            Ok(outcome) => outcome,
            // Never closed: the scheduler holds a sender.
            Err(_) => std::future::pending().await,
        }
    }

    /// Files a landed outcome in the open round; returns the round when that completed it.
    /// An outcome of a host the open round does not have (removed by a reload) is dropped.
    pub fn land(&mut self, outcome: HostOutcome) -> Option<ClosedRound> {
        self.in_flight.remove(&outcome.host);
        let open = self.open.as_mut()?;
        if !open.hosts.iter().any(|(name, _)| *name == outcome.host) {
            tracing::info!(host = %outcome.host, "outcome of a host no longer configured: dropped");
            return None;
        }
        open.entries.entry(outcome.host.clone()).or_insert(outcome);
        if open.complete() {
            return self.close();
        }
        None
    }

    /// Whether the open round has every host's entry (or no round is open).
    pub fn idle(&self) -> bool {
        self.open.as_ref().is_none_or(OpenRound::complete)
    }

    /// Hosts whose attempt is running.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn close(&mut self) -> Option<ClosedRound> {
        let mut open = self.open.take()?;
        let wall = open.opened.elapsed();
        let outcomes = open
            .hosts
            .into_iter()
            .map(|(name, address)| {
                open.entries.remove(&name).unwrap_or_else(|| {
                    let running = self
                        .in_flight
                        .get(&name)
                        .map_or(Duration::ZERO, |(since, _)| since.elapsed());
                    HostOutcome {
                        result: Err(CollectError::new(
                            ErrorClass::InFlight,
                            format!(
                                "no answer by the next tick: the attempt started {} ago is \
                                 still running; the host is started again once it ends",
                                humantime::format_duration(Duration::from_secs(running.as_secs()))
                            ),
                        )),
                        host: name,
                        address,
                        started_at_ms: open.opened_ms,
                        duration: wall,
                    }
                })
            })
            .collect();
        Some(ClosedRound { outcomes, wall })
    }
}
