//! Collector-side CPU cost of one sample: DH key generation (between rounds
//! in the collector, timed apart), opening the
//! envelope (DH shared secret, HKDF, HMAC check, RC2 + AES decryption),
//! parsing the report, and inserting it into the SQLite buffer — with the
//! shipped 256-bit DH exponents and, for comparison, full 2048-bit ones.
//! The buffer insert is also compared with the sqlite3 CLI loading the same
//! rows in one transaction, measured in the same run.
//!
//! Run: `cargo bench --bench sample_cost` (env `SAMPLES`, default 200).
//! The agent's own work (its DH, encryption, XML) is done outside the timed
//! sections: it runs on the monitored host, not on the appliance.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgemon::buffer::{Buffer, now_ms};
use edgemon::collect::outcome::HostOutcome;
use edgemon::report::{self, Report};
use edgemon_proto::envelope::{self, Initiator};

fn sample_report(i: usize) -> Report {
    Report {
        version: 1,
        collected_at_ms: now_ms(),
        cpu_percent: (i % 100) as f64,
        cores: (0..8).map(|c| ((i + c) % 100) as f64).collect(),
        mem_used: 3 << 30,
        mem_total: 16 << 30,
        swap_used: 1 << 20,
        swap_total: 2 << 30,
        uptime_s: 86_400 + i as u64,
        boot_time_s: Some(1_790_000_000),
        load: Some([0.5, 0.4, 0.3]),
        hostname: Some(format!("host-{i}")),
        os: Some("Debian GNU/Linux 12".into()),
        kernel: Some("6.1.0-28-amd64".into()),
        extras: Vec::new(),
        sections: Vec::new(),
    }
}

/// `sample_report(i)` with the metric families a typical host sends: the system section,
/// 8 filesystems, 4 interfaces, 4 block devices, no failed unit, 2 watched processes.
fn report_with_families(i: usize) -> Report {
    use edgemon::report::family::Section;
    use edgemon::report::family::devices::Device;
    use edgemon::report::family::filesystems::Filesystem;
    use edgemon::report::family::interfaces::Interface;
    use edgemon::report::family::processes::Watched;
    use edgemon::report::family::system::System;
    use edgemon::report::family::units::FailedUnit;
    let big = |k: u64| Some(k * 1_000_003 + i as u64);
    let sys = System {
        cpu_user: Some(12.5),
        cpu_system: Some(3.25),
        cpu_iowait: Some(0.5),
        cpu_steal: Some(0.0),
        cpu_idle: Some(83.75),
        mem_available: big(4_000),
        oom_kills: Some(0),
        procs: Some(312),
        pid_max: Some(4_194_304),
        files_open: Some(2_848),
        files_max: Some(9_223_372_036_854_775_807),
    };
    let fs: Vec<Filesystem> = [
        "/", "/boot", "/var", "/var/log", "/home", "/srv", "/tmp", "/data",
    ]
    .iter()
    .map(|m| Filesystem {
        mount: (*m).to_string(),
        fstype: Some("ext4".into()),
        device: Some("/dev/mapper/vg0-root".into()),
        size: big(50_000),
        used: big(20_000),
        avail: big(27_000),
        files: Some(3_276_800),
        files_free: Some(3_001_122),
        readonly: Some(false),
        hanging: false,
    })
    .collect();
    let ifs: Vec<Interface> = ["eth0", "eth1", "bond0", "wg0"]
        .iter()
        .map(|n| Interface {
            name: (*n).to_string(),
            oper: Some("up".into()),
            speed: Some(10_000),
            rx_bytes: big(9_000_000),
            rx_packets: big(7_000),
            rx_errors: Some(0),
            rx_drops: Some(12),
            tx_bytes: big(8_000_000),
            tx_packets: big(6_000),
            tx_errors: Some(0),
            tx_drops: Some(0),
        })
        .collect();
    let devs: Vec<Device> = ["sda", "sdb", "nvme0n1", "dm-0"]
        .iter()
        .map(|n| Device {
            name: (*n).to_string(),
            reads: big(100),
            writes: big(200),
            read_bytes: big(50_000),
            write_bytes: big(90_000),
            busy_ms: big(10),
        })
        .collect();
    let watched = [
        Watched {
            name: "sshd".into(),
            count: Some(3),
        },
        Watched {
            name: "pg main".into(),
            count: Some(1),
        },
    ];
    let mut report = sample_report(i);
    report.sections = vec![
        Section::from_typed(&[sys]),
        Section::from_typed(&fs),
        Section::from_typed(&ifs),
        Section::from_typed(&devs),
        Section::from_typed::<FailedUnit>(&[]),
        Section::from_typed(&watched),
    ];
    report
}

/// Open + parse per sample (medians) of `n` envelopes carrying `payload`.
fn open_parse_cost(n: usize, payload: &[u8]) -> Duration {
    let _ = Initiator::new();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let initiator = Initiator::new();
        let reply = envelope::respond(&initiator.request(), payload).expect("agent side");
        let t = Instant::now();
        let opened = initiator.open(&reply, 1 << 20).expect("open");
        let parsed = report::parse(&opened).expect("parse");
        times.push(t.elapsed());
        assert_eq!(parsed.cores.len(), 8);
    }
    median(times)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Times the collector's share of `n` samples; returns per-sample medians of
/// (keygen, dh secret + open, parse). The collector makes its key pairs between
/// rounds (`InitiatorPool`), so only the second and third are on a round's path.
fn envelope_cost(n: usize, full: bool) -> (Duration, Duration, Duration) {
    let payload = sample_report(0).to_xml();
    // The fixed-base table is built once per process: not a per-sample cost.
    let _ = Initiator::new();
    let mut keygen_times = Vec::with_capacity(n);
    let mut open_times = Vec::with_capacity(n);
    let mut parse_times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let initiator = if full {
            Initiator::with_full_exponent()
        } else {
            Initiator::new()
        };
        let request = initiator.request();
        keygen_times.push(t.elapsed());
        let reply = envelope::respond(&request, &payload).expect("agent side");
        let t = Instant::now();
        let opened = initiator.open(&reply, 1 << 20).expect("open");
        open_times.push(t.elapsed());
        let t = Instant::now();
        let parsed = report::parse(&opened).expect("parse");
        parse_times.push(t.elapsed());
        assert_eq!(parsed.cores.len(), 8);
    }
    (
        median(keygen_times),
        median(open_times),
        median(parse_times),
    )
}

/// Inserts `rounds` rounds of `hosts` samples; returns the median per-sample time of a round.
fn buffer_cost(rounds: usize, hosts: usize) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut buffer = Buffer::open(&dir.path().join("bench.sqlite")).expect("buffer");
    let mut times = Vec::with_capacity(rounds);
    for r in 0..rounds {
        let outcomes: Vec<HostOutcome> = (0..hosts)
            .map(|h| HostOutcome {
                host: format!("host-{h}"),
                address: format!("root@10.0.0.{h}:22"),
                started_at_ms: now_ms(),
                duration: Duration::from_millis(3),
                result: Ok(sample_report(r * hosts + h)),
            })
            .collect();
        let t = Instant::now();
        buffer
            .record_round(&outcomes, Duration::from_secs(300), |_, _| Ok(()))
            .expect("record");
        times.push(t.elapsed() / hosts as u32);
    }
    median(times)
}

/// The sqlite3 CLI inserting the same rows (same schema, same WAL/FULL settings,
/// one transaction per round); returns the per-sample time.
fn sqlite3_cli_cost(rounds: usize, hosts: usize) -> Option<Duration> {
    let dir = tempfile::tempdir().ok()?;
    let db = dir.path().join("cli.sqlite");
    let mut sql = String::from("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;\n");
    sql.push_str(edgemon::schema::SQLITE);
    for h in 0..hosts {
        sql.push_str(&format!(
            "INSERT INTO hosts (name, address) VALUES ('host-{h}', 'root@10.0.0.{h}:22');\n"
        ));
    }
    let setup = Command::new("sqlite3")
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    setup.stdin.as_ref()?.write_all(sql.as_bytes()).ok()?;
    setup.wait_with_output().ok()?;
    let mut body = String::new();
    for r in 0..rounds {
        body.push_str("BEGIN;\n");
        for h in 0..hosts {
            let rep = sample_report(r * hosts + h);
            let cores = rep
                .cores
                .iter()
                .map(|c| format!("{c:.2}"))
                .collect::<Vec<_>>()
                .join(",");
            body.push_str(&format!(
                "INSERT INTO samples (host_id, seq, collected_at, received_at, clock_skewed, cpu, cores, mem_used, mem_total, swap_used, swap_total, uptime_s, boot_time_s, load1, load5, load15, hostname, os, kernel) VALUES ({}, {}, {}, {}, 0, {}, '{cores}', {}, {}, {}, {}, {}, {}, 0.5, 0.4, 0.3, 'host-{h}', 'Debian GNU/Linux 12', '6.1.0-28-amd64');\nUPDATE hosts SET next_seq = next_seq + 1, last_sample_at = {} WHERE id = {};\n",
                h + 1, r + 1, rep.collected_at_ms, rep.collected_at_ms, rep.cpu_percent, rep.mem_used, rep.mem_total,
                rep.swap_used, rep.swap_total, rep.uptime_s, 1_790_000_000, rep.collected_at_ms, h + 1
            ));
        }
        body.push_str("COMMIT;\n");
    }
    let t = Instant::now();
    let child = Command::new("sqlite3")
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.as_ref()?.write_all(body.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    out.status
        .success()
        .then(|| t.elapsed() / (rounds * hosts) as u32)
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    // `cargo test --all-targets` runs benches as tests with `--bench` absent: do a tiny pass.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 3 } else { 200 });
    let (rounds, hosts) = if quick { (2, 10) } else { (50, 100) };

    let (keygen_256, open_256, parse) = envelope_cost(n, false);
    let (keygen_2048, open_2048, _) = envelope_cost(if quick { 1 } else { n / 4 }, true);
    let insert = buffer_cost(rounds, hosts);
    let cli = sqlite3_cli_cost(rounds, hosts);

    let total_256 = keygen_256 + open_256 + parse + insert;
    let total_2048 = keygen_2048 + open_2048 + parse + insert;
    let round_path_256 = open_256 + parse + insert;
    println!("collector CPU per sample (medians; {n} envelopes, {rounds} rounds x {hosts} hosts):");
    println!(
        "  DH keygen + open envelope, 256-bit exponent : {}",
        micros(keygen_256 + open_256)
    );
    println!(
        "    of which keygen (between rounds)           : {}",
        micros(keygen_256)
    );
    println!(
        "    of which open (DH secret, HKDF, HMAC, RC2, AES): {}",
        micros(open_256)
    );
    println!(
        "  DH keygen + open envelope, 2048-bit exponent: {}",
        micros(keygen_2048 + open_2048)
    );
    println!(
        "  parse report XML                            : {}",
        micros(parse)
    );
    println!(
        "  buffer insert (rounds of {hosts}, one txn)       : {}",
        micros(insert)
    );
    match cli {
        Some(cli) => println!(
            "  sqlite3 CLI, same rows and txns             : {}  (edgemon/sqlite3 = {:.2})",
            micros(cli),
            insert.as_secs_f64() / cli.as_secs_f64()
        ),
        None => println!("  sqlite3 CLI                                 : not available"),
    }
    // Issue 22: the same open + parse with the metric family sections, alternated.
    let (plain, families) = (sample_report(0).to_xml(), report_with_families(0).to_xml());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        a.push(open_parse_cost(n, &plain));
        b.push(open_parse_cost(n, &families));
    }
    let (a, b) = (
        a.iter().sum::<Duration>() / 2,
        b.iter().sum::<Duration>() / 2,
    );
    println!(
        "  open + parse, no sections ({} B XML)       : {}",
        plain.len(),
        micros(a)
    );
    println!(
        "  open + parse, families ({} B XML: 8 fs, 4 if, 4 dev, system, 2 watches): {}  ({:.2}x, +{})",
        families.len(),
        micros(b),
        b.as_secs_f64() / a.as_secs_f64(),
        micros(b.saturating_sub(a))
    );
    println!("  total per sample, 256-bit : {}", micros(total_256));
    println!("  total per sample, 2048-bit: {}", micros(total_2048));
    println!(
        "  on the round's path, 256-bit (keys made between rounds): {}",
        micros(round_path_256)
    );
    println!(
        "  ratio 2048-bit / 256-bit : {:.1}x; samples per CPU-second at 256-bit: {:.0}",
        total_2048.as_secs_f64() / total_256.as_secs_f64(),
        1.0 / total_256.as_secs_f64()
    );
}
