//! One silent host does not set the pace (issue 19, item 11): the real daemon
//! on a namespace site at `interval = "2s"` with `connect_timeout = "3s"`, one
//! host cut off by nftables (every packet dropped, no answer at all), two
//! healthy hosts timed over 16 s. The healthy hosts keep their cadence; the cut
//! host is never started twice, and every tick it has no answer for is
//! recorded (`in-flight` or its failure), so each round has one entry per host.

use std::path::Path;
use std::time::Duration;

use crate::reload::{sample_times, try_sample_times};
use crate::skip_or_fail;
use crate::support::daemon::Daemon;
use crate::support::netns::{Conditions, Site};
use crate::support::{temp_dir, wait_until};

/// `(at, class)` of `host`'s collection errors, oldest first.
fn errors(buffer: &Path, host: &str) -> Vec<(i64, String)> {
    let db =
        rusqlite::Connection::open_with_flags(buffer, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the buffer");
    let mut stmt = db
        .prepare(
            "SELECT e.at, e.class FROM collection_errors e JOIN hosts h ON h.id = e.host_id \
             WHERE h.name = ?1 ORDER BY e.at",
        )
        .expect("prepare");
    stmt.query_map([host], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn a_silently_cut_host_leaves_the_healthy_hosts_cadence_unchanged() {
    let site = skip_or_fail!(Site::start());
    let healthy_a = skip_or_fail!(site.host(Conditions::default()));
    let healthy_b = skip_or_fail!(site.host(Conditions::default()));
    let cut = skip_or_fail!(site.host(Conditions::default()));
    let dir = temp_dir();
    let mut text = format!(
        "[appliance]\nid = \"pacing\"\ndata_dir = \"{data}\"\n\
         [collect]\ninterval = \"2s\"\nconnect_timeout = \"3s\"\nauth_timeout = \"5s\"\n\
         command_timeout = \"5s\"\n\
         [defaults]\nuser = \"{user}\"\nidentity_file = \"{key}\"\n\
         [defaults.alerts]\ncpu = \"off\"\nmemory = \"off\"\nswap = \"off\"\nreboot = false\n\
         [sync]\nurl = \"mysql://nobody@127.0.0.1:1/none\"\n",
        data = dir.path().join("data").display(),
        user = site.user(),
        key = site.key().display(),
    );
    for (name, host) in [
        ("healthy-a", &healthy_a),
        ("healthy-b", &healthy_b),
        ("cut", &cut),
    ] {
        text.push_str(&format!(
            "[[hosts]]\nname = \"{name}\"\naddress = \"{}\"\nport = {}\n",
            host.address(),
            host.port()
        ));
    }
    let config = dir.path().join("edgemon.toml");
    std::fs::write(&config, text).expect("write the config");
    let mut daemon = Daemon::start(dir.path(), &config);
    let buffer = dir.path().join("data/buffer.sqlite");
    let samples = |name: &str| try_sample_times(&buffer, name).map_or(0, |t| t.len());
    assert!(
        wait_until(Duration::from_secs(120), || {
            ["healthy-a", "healthy-b", "cut"]
                .iter()
                .all(|h| samples(h) >= 2)
        }),
        "no two samples from every host; log:\n{}",
        daemon.log()
    );

    cut.cut().expect("cut");
    // Let the cut host's pooled session hit its first deadline, then time 16 s (8 ticks).
    std::thread::sleep(Duration::from_secs(4));
    let from = edgemon::buffer::now_ms();
    const WINDOW_MS: i64 = 16_000;
    std::thread::sleep(Duration::from_millis(WINDOW_MS as u64 + 2_500));
    daemon.stop();

    let count = |name: &str| {
        sample_times(&buffer, name)
            .iter()
            .filter(|t| (from..from + WINDOW_MS).contains(t))
            .count()
    };
    let (a, b) = (count("healthy-a"), count("healthy-b"));
    let cut_entries: Vec<(i64, String)> = errors(&buffer, "cut")
        .into_iter()
        .filter(|(at, _)| (from..from + WINDOW_MS).contains(at))
        .collect();
    let cut_samples = count("cut");
    eprintln!(
        "cut host, interval 2 s, connect_timeout 3 s: healthy-a {a}/8, healthy-b {b}/8 samples \
         in {WINDOW_MS} ms; cut host entries {cut_entries:?}, samples {cut_samples}"
    );
    let log = daemon.log();
    // 8 ticks in the window: at least 7 each (one may straddle an edge of the window).
    assert!(
        a >= 7 && b >= 7,
        "the cut host set the healthy hosts' pace: {a} and {b} samples of 8; log:\n{log}"
    );
    assert_eq!(cut_samples, 0, "the cut host cannot have answered");
    // The cut host was never started twice: ticks it was still in flight are recorded as
    // such, and it has at most one entry per tick.
    assert!(
        cut_entries.iter().any(|(_, class)| class == "in-flight"),
        "no tick of the cut host was recorded as in flight: {cut_entries:?}"
    );
    assert!(
        cut_entries.len() <= 9,
        "more entries than ticks for the cut host: {cut_entries:?}"
    );
}
