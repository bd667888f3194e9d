//! Which central server sync talks to, and how healthy each one is.
//!
//! `sync.urls` (or `url`, `url_env`, `url_file`) lists one or more servers, the
//! nodes of one cluster holding one database. They are tried in the order
//! listed. A server that failed (unreachable, or a Galera node that is not
//! ready) is skipped for a backoff time, doubling with each consecutive
//! failure from `sync.interval` up to `sync.max_backoff`, with jitter, while
//! other servers are available; when every server is in its backoff, all are
//! tried anyway, the one whose backoff ends first first. A success clears a
//! server's record. [`Endpoints::preferred`] is the first server not in its
//! backoff: the sync task compares it with the server in use at the start of
//! each pass and returns to it, so a node that failed and rejoined is used
//! again once its backoff has run out.
//!
//! This module knows no MySQL and reads no clock: every method takes `now`.

use std::fmt;
use std::time::{Duration, Instant};

use super::Backoff;
use crate::config::secret::{Secret, redact_url};

/// One central server and its health.
#[derive(Debug, Clone)]
struct Endpoint {
    url: Secret,
    /// The URL with its password masked, for messages.
    shown: String,
    backoff: Backoff,
    /// Skipped until then (after a failure).
    skip_until: Option<Instant>,
    /// The last failure's message, until a success.
    last_error: Option<String>,
    /// Connected at least once since the last failure.
    healthy: bool,
}

/// The central servers of one sync task, in the configured order, with their health.
#[derive(Debug, Clone)]
pub struct Endpoints {
    endpoints: Vec<Endpoint>,
    current: Option<usize>,
    /// Picks within the backoff's jitter range, in [0, 1].
    jitter: fn() -> f64,
}

/// The health of one server, for status lines and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointHealth {
    /// The URL with its password masked.
    pub server: String,
    /// The connection of the task is to this server.
    pub in_use: bool,
    /// Connected since its last failure (false when never tried).
    pub healthy: bool,
    /// Skipped for this long still (after a failure).
    pub skipped_for: Option<Duration>,
    /// The last failure's message, until a success.
    pub last_error: Option<String>,
}

impl fmt::Display for EndpointHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.server)?;
        if self.in_use {
            write!(f, " (in use)")?;
        }
        match (&self.last_error, self.skipped_for) {
            (Some(error), Some(wait)) => write!(
                f,
                ": failed, skipped for {} s: {error}",
                wait.as_secs_f64().ceil()
            ),
            (Some(error), None) => write!(f, ": failed, may be retried: {error}"),
            (None, _) if self.healthy => write!(f, ": ok"),
            (None, _) => write!(f, ": not tried yet"),
        }
    }
}

impl Endpoints {
    /// The servers of `urls`, in order; a failed one is skipped for a backoff time from
    /// `base` doubling up to `cap`, with jitter.
    pub fn new(urls: &[Secret], base: Duration, cap: Duration) -> Endpoints {
        Endpoints {
            endpoints: urls
                .iter()
                .map(|url| Endpoint {
                    url: url.clone(),
                    shown: redact_url(url.expose()),
                    backoff: Backoff::new(base, cap),
                    skip_until: None,
                    last_error: None,
                    healthy: false,
                })
                .collect(),
            current: None,
            jitter: rand::random::<f64>,
        }
    }

    /// The same, with a fixed jitter (0: the shortest backoff, 1: the longest), for tests.
    pub fn with_jitter(mut self, jitter: fn() -> f64) -> Endpoints {
        self.jitter = jitter;
        self
    }

    /// How many servers are listed.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// True when none is listed.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The URL of server `index` (to hand to the MySQL driver).
    pub fn url(&self, index: usize) -> &Secret {
        &self.endpoints[index].url
    }

    /// Server `index`'s URL with its password masked.
    pub fn shown(&self, index: usize) -> &str {
        &self.endpoints[index].shown
    }

    /// The server the task is connected to, if any.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// The order to try the servers in at `now`: those not in a backoff, as listed, then the
    /// others, the one whose backoff ends first first.
    pub fn order(&self, now: Instant) -> Vec<usize> {
        let (mut ready, mut waiting): (Vec<usize>, Vec<usize>) =
            (0..self.endpoints.len()).partition(|&i| self.available(i, now));
        waiting.sort_by_key(|&i| self.endpoints[i].skip_until);
        ready.append(&mut waiting);
        ready
    }

    /// The first server not in a backoff at `now`: the one to use when it is not the one in
    /// use (a failover ended, a node rejoined).
    pub fn preferred(&self, now: Instant) -> Option<usize> {
        (0..self.endpoints.len()).find(|&i| self.available(i, now))
    }

    /// Whether the task should leave its server for [`Endpoints::preferred`] at `now`.
    pub fn should_return(&self, now: Instant) -> Option<usize> {
        match (self.current, self.preferred(now)) {
            (Some(current), Some(preferred)) if preferred < current => Some(preferred),
            _ => None,
        }
    }

    /// Server `index` accepted a connection (and is ready): it is in use and healthy.
    pub fn connected(&mut self, index: usize) {
        let endpoint = &mut self.endpoints[index];
        endpoint.backoff.reset();
        endpoint.skip_until = None;
        endpoint.last_error = None;
        endpoint.healthy = true;
        self.current = Some(index);
    }

    /// Server `index` failed at `now` (connect refused or timed out, connection lost, node not
    /// ready): it is skipped for its next backoff time, returned.
    pub fn failed(&mut self, index: usize, now: Instant, error: &str) -> Duration {
        let unit = (self.jitter)();
        let endpoint = &mut self.endpoints[index];
        let wait = endpoint.backoff.next_with(unit);
        endpoint.skip_until = Some(now + wait);
        endpoint.last_error = Some(error.to_string());
        endpoint.healthy = false;
        if self.current == Some(index) {
            self.current = None;
        }
        wait
    }

    /// The connection was dropped without blaming the server (another error ended the pass).
    pub fn disconnected(&mut self) {
        self.current = None;
    }

    /// Every server's health at `now`, in the configured order.
    pub fn health(&self, now: Instant) -> Vec<EndpointHealth> {
        self.endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| EndpointHealth {
                server: e.shown.clone(),
                in_use: self.current == Some(i),
                healthy: e.healthy,
                skipped_for: e
                    .skip_until
                    .filter(|until| *until > now)
                    .map(|until| until - now),
                last_error: e.last_error.clone(),
            })
            .collect()
    }

    fn available(&self, index: usize, now: Instant) -> bool {
        self.endpoints[index]
            .skip_until
            .is_none_or(|until| until <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn three() -> Endpoints {
        let urls: Vec<Secret> = ["a", "b", "c"]
            .iter()
            .map(|h| Secret::new(format!("mysql://u:pw@{h}:3306/db")))
            .collect();
        // Jitter 1: the longest delay of each step, so the times below are exact.
        Endpoints::new(&urls, S(10), S(60)).with_jitter(|| 1.0)
    }

    #[test]
    fn servers_are_tried_in_order_and_a_failed_one_is_skipped_for_its_backoff() {
        let t0 = Instant::now();
        let mut e = three();
        assert_eq!(e.order(t0), [0, 1, 2]);
        assert_eq!(e.preferred(t0), Some(0));
        e.connected(0);
        assert_eq!(e.should_return(t0), None);

        // a dies: b is next, a is tried last until its backoff of 10 s runs out.
        assert_eq!(e.failed(0, t0, "connection refused"), S(10));
        assert_eq!(e.current(), None);
        assert_eq!(e.order(t0), [1, 2, 0]);
        e.connected(1);
        assert_eq!(e.should_return(t0 + S(9)), None);
        assert_eq!(e.order(t0 + S(9)), [1, 2, 0]);

        // Its backoff over, a is preferred again: the next pass returns to it.
        assert_eq!(e.should_return(t0 + S(10)), Some(0));
        assert_eq!(e.order(t0 + S(10)), [0, 1, 2]);

        // Still dead: the backoff doubles (20 s), up to the cap (60 s).
        let t1 = t0 + S(10);
        assert_eq!(e.failed(0, t1, "connection refused"), S(20));
        assert_eq!(e.should_return(t1 + S(19)), None);
        assert_eq!(e.failed(0, t1 + S(20), "refused"), S(40));
        assert_eq!(e.failed(0, t1 + S(60), "refused"), S(60));
        assert_eq!(e.failed(0, t1 + S(120), "refused"), S(60));

        // It rejoined: one success clears its record.
        let t2 = t1 + S(180);
        assert_eq!(e.should_return(t2), Some(0));
        e.connected(0);
        assert_eq!(e.current(), Some(0));
        assert_eq!(e.failed(0, t2, "killed"), S(10));
    }

    #[test]
    fn when_every_server_is_in_its_backoff_all_are_tried_soonest_first() {
        let t0 = Instant::now();
        let mut e = three();
        e.failed(0, t0, "down");
        e.failed(0, t0 + S(10), "down"); // a until t0 + 30 s
        e.failed(1, t0, "down"); // b until t0 + 10 s
        e.failed(2, t0 + S(5), "not ready"); // c until t0 + 15 s
        assert_eq!(e.preferred(t0 + S(6)), None);
        assert_eq!(e.order(t0 + S(6)), [1, 2, 0]);
        assert_eq!(e.order(t0 + S(12)), [1, 2, 0]);
        assert_eq!(e.order(t0 + S(16)), [1, 2, 0]);
        assert_eq!(e.order(t0 + S(30)), [0, 1, 2]);
    }

    #[test]
    fn health_names_each_server_masked_with_its_state() {
        let t0 = Instant::now();
        let mut e = three();
        e.connected(0);
        e.failed(1, t0, "cannot reach MySQL at b:3306: refused");
        let health = e.health(t0 + S(4));
        assert_eq!(health.len(), 3);
        assert_eq!(
            health[0].to_string(),
            "mysql://u:****@a:3306/db (in use): ok"
        );
        assert_eq!(
            health[1].to_string(),
            "mysql://u:****@b:3306/db: failed, skipped for 6 s: cannot reach MySQL at b:3306: refused"
        );
        assert_eq!(
            health[2].to_string(),
            "mysql://u:****@c:3306/db: not tried yet"
        );
        assert!(health.iter().all(|h| !h.to_string().contains("pw")));
        e.disconnected();
        assert!(e.health(t0).iter().all(|h| !h.in_use));
    }

    #[test]
    fn jitter_shortens_the_skip_to_no_less_than_half() {
        let t0 = Instant::now();
        let urls = [Secret::new("mysql://u@a/db")];
        let mut e = Endpoints::new(&urls, S(10), S(60)).with_jitter(|| 0.0);
        assert_eq!(e.failed(0, t0, "x"), S(5));
        assert_eq!(e.failed(0, t0, "x"), S(10));
    }
}
