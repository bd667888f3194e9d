//! Steps of the appliance's wall clock (issue 19, item 2): `edgemon run` (the real daemon)
//! under libfaketime, whose offset is read from a file the test rewrites mid-run
//! (`FAKETIME_TIMESTAMP_FILE`, monotonic clocks left alone as a real NTP step leaves them),
//! against the harness MariaDB and aiosmtpd; and central prune after a step back.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgemon::buffer::Buffer;
use edgemon::collect::outcome::HostOutcome;
use edgemon::config::secret::Secret;
use edgemon::sync::SyncTask;
use edgemon::sync::prune::{PruneOptions, prune};

use crate::skip_or_fail;
use crate::support::daemon::Daemon;
use crate::support::mariadb::MariaDb;
use crate::support::smtp::Smtp;
use crate::support::{Unavailable, temp_dir, wait_until};
use crate::sync::{buffer_config, count, drain, report, sync_config};

const HOSTS: usize = 4;

fn libfaketime() -> anyhow::Result<PathBuf> {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists());
    found.ok_or_else(|| Unavailable("libfaketime not installed (libfaketime)".into()).into())
}

/// The faketime environment: the offset read from `file` on every call.
fn faketime_env(lib: &Path, file: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("LD_PRELOAD", lib.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE", file.display().to_string()),
        ("FAKETIME_NO_CACHE", "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
        ("FAKETIME_DONT_RESET", "1".into()),
    ]
}

fn local_count(buffer: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open_with_flags(buffer, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
        .unwrap_or(-1)
}

/// A box that booted five years in the past collects with MySQL down, then NTP steps its clock
/// forward by five years, then MySQL returns: nothing is shed (before the fix every sample of
/// the backlog was dropped as "unsynced for longer than buffer.max_unsynced_age"), the step is
/// logged, the samples stamped before it are flagged clock_skewed, and every one reaches MySQL.
/// Then the clock steps back by three hours while a mail waits for its retry (the SMTP server
/// was down): the mail goes as soon as the server is back, not three hours later.
#[test]
fn a_clock_stepped_forward_by_years_or_back_by_hours_sheds_nothing_and_delays_no_mail() {
    let lib = skip_or_fail!(libfaketime());
    let mut db = skip_or_fail!(MariaDb::start());
    let mut smtp = skip_or_fail!(Smtp::start());
    smtp.stop().expect("stop the SMTP server");
    db.stop().expect("stop MariaDB");
    let dir = temp_dir();
    let fake = dir.path().join("faketime");
    std::fs::write(&fake, "-1825d\n").expect("faketime file");
    let buffer = dir.path().join("buffer.sqlite");
    let mut text = format!(
        "[appliance]\nid = \"clock\"\ndata_dir = \"{}\"\n\n\
         [collect]\ninterval = \"1s\"\n\n\
         [buffer]\npath = \"{}\"\nmax_unsynced_age = \"1m\"\n\n\
         [sync]\nurl = \"{}\"\ninterval = \"1s\"\nmax_backoff = \"2s\"\ntimeout = \"10s\"\n\n\
         [alert]\nrepeat = \"1h\"\n\n\
         [defaults.alerts]\nmemory = \"0%\"\ncpu = \"off\"\nswap = \"off\"\n\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\n\
         [mail]\nfrom = \"edgemon@localhost\"\nrecipients = [\"ops@localhost\"]\nrate_limit = 10000\n\n",
        dir.path().join("data").display(),
        buffer.display(),
        db.url(),
        smtp.port()
    );
    for i in 0..HOSTS {
        text.push_str(&format!(
            "[[hosts]]\nname = \"clock-{i}\"\ntransport = \"local\"\n\n"
        ));
    }
    let config = dir.path().join("edgemon.toml");
    std::fs::write(&config, text).expect("write config");
    let mut daemon = Daemon::start_with_env(dir.path(), &config, &faketime_env(&lib, &fake));

    // Five years in the past: a backlog builds while MySQL is down, and mail fails.
    let samples = || local_count(&buffer, "SELECT COUNT(*) FROM samples");
    assert!(
        wait_until(Duration::from_secs(120), || samples() >= 5 * HOSTS as i64),
        "no samples; log:\n{}",
        daemon.log()
    );
    assert!(
        wait_until(Duration::from_secs(60), || daemon
            .log_count("mail not sent; will retry")
            > 0),
        "no mail attempt; log:\n{}",
        daemon.log()
    );
    let before = local_count(&buffer, "SELECT MAX(id) FROM samples");
    let now_real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let stamped_past = local_count(
        &buffer,
        &format!(
            "SELECT COUNT(*) FROM samples WHERE received_at < {}",
            now_real - 4 * 365 * 86_400_000
        ),
    );
    assert!(
        stamped_past >= 5 * HOSTS as i64,
        "faketime had no effect ({stamped_past} stamped in the past)"
    );

    // NTP steps the clock forward by five years; retention runs every second meanwhile.
    std::fs::write(&fake, "+0\n").expect("step forward");
    let grown = samples();
    assert!(
        wait_until(Duration::from_secs(60), || samples()
            >= grown + 3 * HOSTS as i64),
        "collection stopped; log:\n{}",
        daemon.log()
    );
    assert_eq!(
        local_count(&buffer, "SELECT COUNT(*) FROM drops"),
        0,
        "samples collected seconds ago were shed; log:\n{}",
        daemon.log()
    );
    assert!(
        wait_until(Duration::from_secs(60), || daemon
            .log_count("the wall clock stepped")
            > 0),
        "the step was not logged; log:\n{}",
        daemon.log()
    );
    let flagged = local_count(
        &buffer,
        &format!("SELECT COUNT(*) FROM samples WHERE id <= {before} AND clock_skewed = 1"),
    );
    assert_eq!(
        flagged,
        local_count(
            &buffer,
            &format!("SELECT COUNT(*) FROM samples WHERE id <= {before}")
        )
    );

    // MySQL returns: everything arrives, nothing was dropped.
    db.restart().expect("restart MariaDB");
    assert!(
        wait_until(Duration::from_secs(120), || {
            local_count(&buffer, "SELECT COUNT(*) FROM samples WHERE sync_state = 0") == 0
                && db.sample_count().unwrap_or(0) >= grown
        }),
        "the backlog did not drain; log:\n{}",
        daemon.log()
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM drops"), 0);

    // A step back by three hours with a mail waiting for its retry, then the server returns.
    std::fs::write(&fake, "-3h\n").expect("step back");
    assert!(
        wait_until(Duration::from_secs(60), || daemon
            .log_count("the wall clock stepped")
            > 1),
        "the step back was not logged; log:\n{}",
        daemon.log()
    );
    smtp.start_again().expect("start SMTP again");
    let mail = smtp.wait_for_messages(1, Duration::from_secs(120));
    assert!(
        mail.is_some(),
        "the mail waited out the step back; log:\n{}",
        daemon.log()
    );
    assert!(daemon.stop().success(), "log:\n{}", daemon.log());
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn round(buffer: &mut Buffer, at: i64, i: i64) {
    let outcomes: Vec<HostOutcome> = (0..HOSTS)
        .map(|h| HostOutcome {
            host: format!("step-{h}"),
            address: format!("user@10.0.0.{h}:22"),
            started_at_ms: at,
            duration: Duration::from_millis(5),
            result: Ok(report(i * 10 + h as i64, at)),
        })
        .collect();
    buffer
        .record_round(&outcomes, Duration::from_secs(3650 * 86_400), |_, _| Ok(()))
        .expect("record a round");
}

/// Central prune after a step back: an appliance whose clock ran a day ahead stamped 10 rounds
/// in the future, then was stepped back (its next 10 rounds, three days old by their stamps, as
/// if the box had been off), then 5 rounds now. Prune with 1 day of retention walks each series
/// in seq order; before the fix it stopped at the first row stamped in the future and pruned
/// nothing, for as long as the step. After: the future-stamped rows, received before rows older
/// than the cutoff, go with them; the 5 rounds of now stay.
#[test]
fn central_prune_is_not_stalled_by_rows_stamped_before_a_step_back() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    let now = now();
    {
        let mut buffer = Buffer::open(&path).expect("open the buffer");
        for i in 0..10 {
            round(&mut buffer, now + 86_400_000 + i * 60_000, i);
        }
        for i in 10..20 {
            round(&mut buffer, now - 3 * 86_400_000 + i * 60_000, i);
        }
        for i in 20..25 {
            round(&mut buffer, now - 60_000 + i, i);
        }
    }
    let url = db.url();
    let task = SyncTask::new(&sync_config(&url, 500), &buffer_config(&path), "stepped");
    assert_eq!(drain(&task).samples, 25 * HOSTS as u64);
    let options = PruneOptions {
        older_than: Duration::from_secs(86_400),
        batch_rows: 7,
        dry_run: false,
        all_appliances: false,
    };
    let report = prune(
        &[Secret::new(url)],
        Duration::from_secs(10),
        "stepped",
        &options,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .expect("prune");
    assert_eq!(report.samples, 20 * HOSTS as u64, "{report:?}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM samples"), 5 * HOSTS as i64);
    assert_eq!(
        count(
            &db,
            "SELECT CAST(MIN(pruned_through_seq) AS SIGNED) FROM watermarks"
        ),
        20
    );
}
