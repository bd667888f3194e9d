//! Collection: one round reaches every configured host (over SSH or the local
//! transport), runs the agent, opens its envelope and parses its report.
//!
//! The scheduler runs on smol: one task per host per round, at most
//! `collect.concurrency` of them working at once (a semaphore). ssh2 blocks,
//! so each host's work runs on smol's blocking pool (`smol::unblock`); the
//! task itself only waits, and enforces the host's deadline (the sum of the
//! connect, auth and command timeouts) with a timer: when it fires, the
//! host's socket is shut down through its [`ssh::Watch`], which unblocks
//! libssh2 at once, and the host gets a `timeout` outcome naming the phase it
//! was stuck in. libssh2's own per-call timeouts are not deadlines.
//!
//! With `persistent_sessions`, each host's open session (and its resident
//! agent's channel) is kept in a pool keyed by host name between rounds; a
//! host that fails loses its session and reconnects next round. A reload
//! ([`Collector::reconfigure`]) keeps the sessions of unchanged hosts.
//!
//! A pooled session holds two file descriptors (the socket and the clone its
//! deadline watch shuts down), so [`Collector::new`] raises the process's
//! soft open-file limit, up to the hard one, when the SSH hosts would not fit:
//! systemd starts services with a soft limit of 1024, which about 480
//! persistent sessions exhaust ("Too many open files").
//!
//! Each request's envelope needs a fresh Diffie-Hellman key pair. After a
//! round, one key pair per SSH host is generated on the blocking pool
//! ([`edgemon_proto::envelope::InitiatorPool`]), so the next round only
//! computes shared secrets; each key pair is used once and, when the pool is
//! short, made on the spot.
//!
//! One host's failure never spreads: every host yields a [`HostOutcome`], a
//! sample or an error class, and the round goes on. The round itself writes
//! nothing; the caller records the outcomes in the buffer in one transaction.

pub mod hosts;
pub mod local;
pub mod outcome;
pub mod schedule;
pub mod ssh;
mod table;

pub use table::print_round;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::future;
use smol::lock::Semaphore;

use crate::buffer::now_ms;
use crate::config::{CollectConfig, HostConfig, Transport};
use outcome::{CollectError, ErrorClass, HostOutcome};
use ssh::hostkeys::HostKeyStore;

/// Runs collection rounds over a fixed host list, keeping SSH sessions between rounds.
pub struct Collector {
    hosts: Vec<HostConfig>,
    local: local::LocalAgents,
    shared: Arc<ssh::Shared>,
    pool: Arc<Mutex<HashMap<String, ssh::Link>>>,
    /// `collect.concurrency`: hosts working at once, across ticks (a host in flight from an
    /// earlier tick holds its permit).
    limit: Arc<Semaphore>,
    /// The key generation started after the last round, until awaited or replaced.
    refill: Mutex<Option<smol::Task<()>>>,
}

impl Collector {
    /// A collector for `hosts`; `local_agent` is the installed agent binary for the local
    /// transport, `host_keys` the pinned host-key store (`<data_dir>/host-keys`).
    pub fn new(
        hosts: Vec<HostConfig>,
        settings: CollectConfig,
        local_agent: PathBuf,
        host_keys: PathBuf,
    ) -> Collector {
        let store = HostKeyStore::new(host_keys, settings.known_hosts.clone());
        let ssh_hosts = hosts
            .iter()
            .filter(|h| matches!(h.transport, Transport::Ssh(_)))
            .count();
        // A host behind a bastion holds three: its socket-pair end, the session's clone of
        // it, and the pump's end.
        let tunneled = hosts
            .iter()
            .filter(|h| matches!(&h.transport, Transport::Ssh(t) if !t.via.is_empty()))
            .count();
        ensure_fd_limit(ssh_hosts + tunneled.div_ceil(2));
        let limit = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        Collector {
            hosts,
            local: local::LocalAgents {
                linux: local_agent,
                windows: None,
            },
            shared: Arc::new(ssh::Shared::new(settings, store)),
            pool: Arc::default(),
            limit,
            refill: Mutex::default(),
        }
    }

    /// The collector of a reloaded configuration (SIGHUP). When the `[collect]` settings and
    /// the pin store did not change, it shares this collector's SSH state and keeps the open
    /// sessions of the hosts whose transport did not change; every other session closes.
    pub fn reconfigure(
        &self,
        hosts: Vec<HostConfig>,
        settings: CollectConfig,
        local_agent: PathBuf,
        host_keys: PathBuf,
    ) -> Collector {
        if settings != self.shared.settings || host_keys != self.shared.host_keys.path() {
            return Collector::new(hosts, settings, local_agent, host_keys);
        }
        // Bastion sessions no remaining host needs close.
        let chains: Vec<_> = hosts
            .iter()
            .filter_map(|h| match &h.transport {
                Transport::Ssh(t) if !t.via.is_empty() => Some(t.via.clone()),
                _ => None,
            })
            .collect();
        self.shared.bastions.retain(&chains);
        let mut kept = HashMap::new();
        if let Ok(mut old) = self.pool.lock() {
            for host in &hosts {
                // New agent options need a new agent: the session (and with it the
                // resident agent) is dropped and the next round starts one with them.
                let unchanged = self.hosts.iter().any(|h| {
                    h.name == host.name
                        && h.transport == host.transport
                        && h.agent == host.agent
                        && h.os == host.os
                });
                if let Some(link) = old.remove(&host.name).filter(|_| unchanged) {
                    kept.insert(host.name.clone(), link);
                }
            }
        }
        Collector {
            hosts,
            local: local::LocalAgents {
                linux: local_agent,
                windows: None,
            },
            shared: self.shared.clone(),
            pool: Arc::new(Mutex::new(kept)),
            limit: self.limit.clone(),
            refill: Mutex::default(),
        }
    }

    /// This collector with `exe`, the installed Windows agent, for its local hosts with
    /// `os = "windows"` (run under Wine, see [`local`]); `None`: this build has none, and
    /// such a host fails with `agent-failed`.
    pub fn with_local_windows_agent(mut self, exe: Option<PathBuf>) -> Collector {
        self.local.windows = exe;
        self
    }

    /// The hosts this collector visits.
    pub fn hosts(&self) -> &[HostConfig] {
        &self.hosts
    }

    /// How many SSH sessions are open between rounds.
    pub fn open_sessions(&self) -> usize {
        self.pool.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// How many bastion sessions are open (one per chain of jump hosts in use).
    pub fn open_bastions(&self) -> usize {
        self.shared.bastions.open()
    }

    /// Collects every host once, at most `concurrency` at a time; outcomes in host order.
    pub async fn round(&self) -> Vec<HostOutcome> {
        let tasks: Vec<_> = self.hosts.iter().map(|host| self.start(host)).collect();
        let mut outcomes = Vec::with_capacity(tasks.len());
        for task in tasks {
            outcomes.push(task.await);
        }
        self.start_refill();
        outcomes
    }

    /// Starts collecting `host` on its own task, which waits for a `concurrency` permit;
    /// dropping the task abandons the attempt (its blocking work ends at its deadline).
    pub fn start(&self, host: &HostConfig) -> smol::Task<HostOutcome> {
        let host = host.clone();
        let limit = self.limit.clone();
        let shared = self.shared.clone();
        let pool = self.pool.clone();
        let agent = self.local.clone();
        smol::spawn(async move {
            let _permit = limit.acquire().await;
            let started_at_ms = now_ms();
            let start = Instant::now();
            let address = host.display_address();
            let name = host.name.clone();
            let result = collect_one(host, shared, pool, agent).await;
            HostOutcome {
                host: name,
                address,
                started_at_ms,
                duration: start.elapsed(),
                result,
            }
        })
    }

    /// Starts generating the next round's envelope key pairs on the blocking pool, one per
    /// SSH host; the round does not wait for it.
    pub fn start_refill(&self) {
        let ssh_hosts = self
            .hosts
            .iter()
            .filter(|h| matches!(h.transport, Transport::Ssh(_)))
            .count();
        let shared = self.shared.clone();
        let task = smol::spawn(smol::unblock(move || {
            shared.initiators.refill(ssh_hosts);
        }));
        if let Ok(mut slot) = self.refill.lock()
            && let Some(previous) = slot.replace(task)
        {
            // Still running: let it finish on its own.
            previous.detach();
        }
    }

    /// Waits until the key generation started after the last round has finished (at once when
    /// none is running). The daemon does not need this; benchmarks call it to time the
    /// between-rounds work apart from the round.
    pub async fn prepared(&self) {
        let task = self.refill.lock().ok().and_then(|mut slot| slot.take());
        if let Some(task) = task {
            task.await;
        }
    }
}

async fn collect_one(
    host: HostConfig,
    shared: Arc<ssh::Shared>,
    pool: Arc<Mutex<HashMap<String, ssh::Link>>>,
    local_agents: local::LocalAgents,
) -> Result<crate::report::Report, CollectError> {
    let settings = &shared.settings;
    let deadline = host_deadline(settings);
    let options = local::options_token(&host.agent);
    let target = match &host.transport {
        Transport::Local => {
            let (timeout, max) = (settings.command_timeout, max_reply(settings));
            let agent = local_agents.for_host(&host.name, host.os)?;
            return smol::unblock(move || local::collect(&agent, options.as_deref(), timeout, max))
                .await;
        }
        Transport::Ssh(target) => target.clone(),
    };
    let link = take(&pool, &host.name);
    let watch = Arc::new(ssh::Watch::default());
    let work = {
        let (watch, shared, name, os) = (watch.clone(), shared.clone(), host.name.clone(), host.os);
        smol::unblock(move || {
            ssh::collect(
                &name,
                &target,
                os,
                options.as_deref(),
                &shared,
                &watch,
                link,
            )
        })
    };
    let timer = async {
        async_io::Timer::after(deadline).await;
        watch.expire();
        None
    };
    match future::or(async { Some(work.await) }, timer).await {
        Some((result, link)) => {
            if let Some(link) = link {
                put(&pool, host.name.clone(), link);
            }
            match result {
                Err(e) if watch.expired() => Err(timeout(&watch, deadline, &e)),
                other => other,
            }
        }
        // The blocking call returns soon (its socket is shut) and drops its session.
        None => Err(timeout(
            &watch,
            deadline,
            &CollectError::new(ErrorClass::Timeout, "deadline passed"),
        )),
    }
}

fn timeout(watch: &ssh::Watch, deadline: Duration, cause: &CollectError) -> CollectError {
    CollectError::new(
        ErrorClass::Timeout,
        format!(
            "no result within the host deadline of {} (stuck {}; {})",
            humantime::format_duration(deadline),
            watch.phase().describe(),
            cause.message
        ),
    )
}

fn take(pool: &Mutex<HashMap<String, ssh::Link>>, name: &str) -> Option<ssh::Link> {
    pool.lock().ok()?.remove(name)
}

fn put(pool: &Mutex<HashMap<String, ssh::Link>>, name: String, link: ssh::Link) {
    if let Ok(mut pool) = pool.lock() {
        pool.insert(name, link);
    }
}

fn max_reply(settings: &CollectConfig) -> usize {
    usize::try_from(settings.max_reply_bytes).unwrap_or(usize::MAX)
}

/// File descriptors one SSH host holds while its session is pooled: the socket and the clone
/// its deadline watch shuts down.
const FDS_PER_HOST: u64 = 2;
/// Descriptors kept for everything else: the buffer (database, WAL, shared memory), the lock
/// file, the key being read during a handshake, MySQL and SMTP connections, the metrics port.
const FDS_SPARE: u64 = 256;

/// Raises the soft limit on open files, up to the hard limit, when `ssh_hosts` pooled sessions
/// and [`FDS_SPARE`] would not fit under it; warns when even the hard limit is too low (raise
/// `LimitNOFILE=` in the unit). Returns the soft limit in force (`None`: unlimited).
pub fn ensure_fd_limit(ssh_hosts: usize) -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let need = (ssh_hosts as u64) * FDS_PER_HOST + FDS_SPARE;
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current?;
    if current >= need {
        return Some(current);
    }
    let raised = limit.maximum.map_or(need, |hard| need.min(hard));
    if raised > current {
        let new = rustix::process::Rlimit {
            current: Some(raised),
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, new) {
            tracing::warn!(
                current,
                wanted = raised,
                "cannot raise the open-file limit: {e}"
            );
            return Some(current);
        }
        tracing::debug!(from = current, to = raised, "raised the open-file limit");
    }
    if raised < need {
        tracing::warn!(
            limit = raised,
            needed = need,
            ssh_hosts,
            "the open-file limit is too low for this many SSH hosts; some will fail with \"Too many \
             open files\" (raise LimitNOFILE= or ulimit -n)"
        );
    }
    Some(raised)
}

/// Total time budget of one host in a round: every timeout that may apply, added up.
pub fn host_deadline(settings: &CollectConfig) -> Duration {
    settings.connect_timeout + settings.auth_timeout + settings.command_timeout
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::process::{Resource, getrlimit};

    #[test]
    fn the_open_file_limit_is_raised_for_a_big_fleet_within_the_hard_limit() {
        let hosts = 600;
        let need = hosts as u64 * FDS_PER_HOST + FDS_SPARE;
        let before = getrlimit(Resource::Nofile);
        let in_force = ensure_fd_limit(hosts);
        let after = getrlimit(Resource::Nofile);
        assert_eq!(
            after.maximum, before.maximum,
            "the hard limit is never touched"
        );
        assert_eq!(in_force, after.current);
        match (before.current, before.maximum) {
            (None, _) => assert_eq!(after.current, None),
            (Some(soft), _) if soft >= need => assert_eq!(after.current, Some(soft)),
            (Some(_), Some(hard)) if hard < need => assert_eq!(after.current, Some(hard)),
            (Some(_), _) => assert!(after.current >= Some(need)),
        }
    }
}
