//! Collection: one round reaches every configured host (over SSH or the local
//! transport), runs the agent, opens its envelope and parses its report.
//!
//! One host's failure never spreads: every host yields a [`HostOutcome`], a
//! sample or an error class, and the round goes on. The round itself writes
//! nothing; the caller records the outcomes in the buffer in one transaction.

pub mod local;
pub mod outcome;
mod table;

pub use table::print_round;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smol::lock::Semaphore;

use crate::buffer::now_ms;
use crate::config::{CollectConfig, HostConfig, Transport};
use outcome::{CollectError, ErrorClass, HostOutcome};

/// Runs collection rounds over a fixed host list.
pub struct Collector {
    hosts: Vec<HostConfig>,
    settings: CollectConfig,
    local_agent: PathBuf,
}

impl Collector {
    /// A collector for `hosts`; `local_agent` is the installed agent binary for the local transport.
    pub fn new(hosts: Vec<HostConfig>, settings: CollectConfig, local_agent: PathBuf) -> Collector {
        Collector {
            hosts,
            settings,
            local_agent,
        }
    }

    /// The hosts this collector visits.
    pub fn hosts(&self) -> &[HostConfig] {
        &self.hosts
    }

    /// Collects every host once, at most `concurrency` at a time; outcomes in host order.
    pub async fn round(&self) -> Vec<HostOutcome> {
        let limit = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let tasks: Vec<_> = self
            .hosts
            .iter()
            .cloned()
            .map(|host| {
                let limit = limit.clone();
                let settings = self.settings.clone();
                let agent = self.local_agent.clone();
                smol::spawn(async move {
                    let _permit = limit.acquire().await;
                    let started_at_ms = now_ms();
                    let start = Instant::now();
                    let address = host.display_address();
                    let name = host.name.clone();
                    let result = smol::unblock(move || collect_one(&host, &settings, &agent)).await;
                    HostOutcome {
                        host: name,
                        address,
                        started_at_ms,
                        duration: start.elapsed(),
                        result,
                    }
                })
            })
            .collect();
        let mut outcomes = Vec::with_capacity(tasks.len());
        for task in tasks {
            outcomes.push(task.await);
        }
        outcomes
    }
}

fn collect_one(
    host: &HostConfig,
    settings: &CollectConfig,
    agent: &std::path::Path,
) -> Result<crate::report::Report, CollectError> {
    let max_reply = usize::try_from(settings.max_reply_bytes).unwrap_or(usize::MAX);
    match &host.transport {
        Transport::Local => local::collect(agent, settings.command_timeout, max_reply),
        Transport::Ssh(_) => Err(CollectError::new(
            ErrorClass::Internal,
            "SSH transport is not available yet",
        )),
    }
}

/// Total time budget of one host in a round: every timeout that may apply, added up.
pub fn host_deadline(settings: &CollectConfig) -> Duration {
    settings.connect_timeout + settings.auth_timeout + settings.command_timeout
}
