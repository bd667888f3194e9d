//! Unit tests of the families' view: the API's JSON of a host's families and of
//! a member's history, the hosts table's and `edgemon status`'s summary, read from
//! fixture sections written through the buffer's round writer (so through the
//! buffer's own section storage and reader API), and the pure figures.

use std::time::Duration;

use super::families::{self, FamilySummary};
use super::http::parse_head;
use super::*;
use crate::buffer::{Buffer, MemberPoint, now_ms};
use crate::collect::outcome::HostOutcome;
use crate::report::Report;
use crate::report::family::{
    FAMILIES, Section, Typed, devices, filesystems, interfaces, processes, system, units,
};

const GIB: u64 = 1 << 30;
/// Rounds 20 minutes apart: four span the hour a "full in" estimate needs.
const STEP_MS: i64 = 20 * 60_000;
const STEP_S: u64 = 20 * 60;
/// A mount point that is markup, to prove it stays text.
const HOSTILE_MOUNT: &str = "/mnt/<b>&x";

/// The sections of round `k` (0, 1, 2, ...): `/` steady at 50 of 95 GiB, `/var`
/// losing 2 GiB of its 20 a round, eth0 receiving 1000 B/s with 1 % errors, sda
/// busy half the time and reading 100 kB/s, one failed unit, nginx running and
/// cron missing.
fn sections(k: u64) -> Vec<Section> {
    let fs = |mount: &str, used: u64, avail: u64| filesystems::Filesystem {
        mount: mount.into(),
        fstype: Some("ext4".into()),
        device: Some("/dev/sda1".into()),
        size: Some(used + avail),
        used: Some(used),
        avail: Some(avail),
        files: Some(1000),
        files_free: Some(250),
        readonly: Some(false),
        hanging: false,
    };
    let fss = Section::from_typed(&[
        fs("/", 50 * GIB, 45 * GIB),
        fs("/var", (10 + 2 * k) * GIB, (20 - 2 * k) * GIB),
        fs(HOSTILE_MOUNT, GIB, GIB),
    ]);
    let mut ifs = Section::from_typed(&[interfaces::Interface {
        name: "eth0".into(),
        oper: Some("up".into()),
        speed: Some(1000),
        rx_bytes: Some(1000 * STEP_S * k),
        rx_packets: Some(10 * STEP_S * k),
        rx_errors: Some(STEP_S * k / 10),
        rx_drops: Some(0),
        tx_bytes: Some(500 * STEP_S * k),
        tx_packets: Some(0),
        tx_errors: Some(0),
        tx_drops: Some(0),
    }]);
    ifs.cut = 3;
    let devs = Section::from_typed(&[devices::Device {
        name: "sda".into(),
        reads: Some(100 * k),
        writes: Some(50 * k),
        read_bytes: Some(100_000 * STEP_S * k),
        write_bytes: Some(0),
        busy_ms: Some(500 * STEP_S * k),
    }]);
    let sys = Section::from_typed(&[system::System {
        cpu_user: Some(12.5),
        mem_available: Some(3 * GIB),
        procs: Some(400),
        pid_max: Some(4000),
        files_open: Some(900),
        files_max: Some(9000),
        ..Default::default()
    }]);
    let units = Section::from_typed(&[units::FailedUnit {
        name: "postgresql.service".into(),
        sub: Some("failed".into()),
        result: Some("exit-code".into()),
    }]);
    let procs = Section::from_typed(&[
        processes::Watched {
            name: "nginx".into(),
            count: Some(2),
        },
        processes::Watched {
            name: "cron".into(),
            count: Some(0),
        },
    ]);
    vec![sys, fss, ifs, devs, units, procs]
}

pub(super) fn report_with(sections: Vec<Section>, at_ms: i64) -> Report {
    Report {
        version: 1,
        collected_at_ms: at_ms,
        cpu_percent: 20.0,
        cores: vec![20.0],
        mem_used: 256,
        mem_total: 1024,
        swap_used: 0,
        swap_total: 0,
        uptime_s: 7200,
        boot_time_s: None,
        load: Some([0.5, 0.25, 0.125]),
        hostname: None,
        os: None,
        kernel: None,
        extras: Vec::new(),
        sections,
    }
}

/// The outcome of host `host` for round `k` of `rounds`, one minute apart, the last at `last`.
pub(super) fn outcome_at(host: &str, k: u64, rounds: u64, last: i64) -> HostOutcome {
    let at = last - (rounds - 1 - k) as i64 * STEP_MS;
    HostOutcome {
        host: host.into(),
        address: format!("{host}:22"),
        started_at_ms: at,
        duration: Duration::from_millis(5),
        result: Ok(report_with(sections(k), at)),
    }
}

/// A buffer with `rounds` rounds of `web1` (families) and one of `old` (a 1.0
/// agent: no sections), and the site over it.
fn site(dir: &std::path::Path, rounds: u64) -> Site {
    let path = dir.join("buffer.sqlite");
    let mut buffer = Buffer::open(&path).expect("open buffer");
    let last = now_ms() - 1000;
    for k in 0..rounds {
        let mut outcomes = vec![outcome_at("web1", k, rounds, last)];
        if k == rounds - 1 {
            let mut old = outcome_at("old", k, rounds, last);
            if let Ok(report) = &mut old.result {
                report.sections.clear();
            }
            outcomes.push(old);
        }
        buffer
            .record_round(&outcomes, Duration::from_secs(300), |_, _| Ok(()))
            .expect("record a round");
    }
    Site {
        appliance: "test".into(),
        interval: Duration::from_millis(STEP_MS as u64),
        buffer_path: path,
        password: None,
        weekly: Vec::new(),
    }
}

fn get(site: &Site, target: &str) -> (u16, serde_json::Value, String) {
    let request =
        parse_head(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).expect("parse");
    let response = site.respond(&request);
    let text = String::from_utf8_lossy(&response.body).into_owned();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{target}: {e}: {text}"));
    (response.status, value, text)
}

fn family<'a>(reply: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    reply["families"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("no family {name} in {reply:#}"))
}

fn member<'a>(family: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    family["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["key"] == key))
        .unwrap_or_else(|| panic!("no member {key} in {family:#}"))
}

fn close(value: &serde_json::Value, expected: f64) -> bool {
    value
        .as_f64()
        .is_some_and(|v| (v - expected).abs() < 1e-6 * expected.abs().max(1.0))
}

#[test]
fn families_of_a_host_come_from_the_specs_with_rates_derived_figures_and_full_in() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = site(dir.path(), 4);
    let (status, reply, text) = get(&site, "/api/hosts/web1/families");
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains('<') && !text.contains('&'), "{text}");

    // Every family of the registry, in its order, its fields exactly the spec's.
    let names: Vec<&str> = reply["families"]
        .as_array()
        .expect("families")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(names, FAMILIES.iter().map(|f| f.name).collect::<Vec<_>>());
    for spec in FAMILIES {
        let f = family(&reply, spec.name);
        assert_eq!(f["measured"], true, "{}", spec.name);
        let fields: Vec<&str> = f["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .filter_map(|x| x["name"].as_str())
            .collect();
        assert_eq!(
            fields,
            spec.fields.iter().map(|x| x.name).collect::<Vec<_>>()
        );
        let columns = f["columns"].as_array().expect("columns");
        for field in spec.fields {
            let column = if field.counter {
                format!("{}_per_s", field.name)
            } else {
                field.name.to_string()
            };
            assert!(
                columns.iter().any(|c| c["name"] == column.as_str()),
                "{}: no column {column}",
                spec.name
            );
        }
    }

    let fss = family(&reply, "filesystems");
    let root = member(fss, "/");
    assert!(close(&root["used_percent"], 50.0 * 100.0 / 95.0), "{root}");
    assert!(close(&root["inodes_used_percent"], 75.0), "{root}");
    assert_eq!(root["avail"], 45 * GIB);
    assert_eq!(root["full_in_s"], serde_json::Value::Null, "a steady mount");
    // /var loses 2 GiB a round and has 14 GiB left: full in 7 rounds.
    let var = member(fss, "/var");
    let expected = 7.0 * STEP_S as f64;
    assert!(
        var["full_in_s"]
            .as_f64()
            .is_some_and(|s| (s - expected).abs() < 2.0),
        "{var}"
    );
    assert_eq!(var["full_in_source"], "estimate");
    assert_eq!(member(fss, HOSTILE_MOUNT)["fstype"], "ext4");
    // Where the filling-up alert's state holds a prediction, that is what is shown.
    Buffer::open(&site.buffer_path)
        .expect("open")
        .conn()
        .execute(
            "INSERT INTO alert_state (host_id, rule, state, last_value)
             SELECT id, 'fs-filling:/', 'pending', 5400 FROM hosts WHERE name = 'web1'",
            [],
        )
        .expect("an alert state row");
    let again = get(&site, "/api/hosts/web1/families").1;
    let root = member(family(&again, "filesystems"), "/");
    assert_eq!(root["full_in_s"], 5400.0, "{root}");
    assert_eq!(root["full_in_source"], "alert", "{root}");
    let var = member(family(&again, "filesystems"), "/var");
    assert_eq!(var["full_in_source"], "estimate", "{var}");

    let ifs = family(&reply, "interfaces");
    assert_eq!(ifs["cut"], 3);
    let eth0 = member(ifs, "eth0");
    assert_eq!(eth0["oper"], "up");
    assert!(close(&eth0["rx_bytes_per_s"], 1000.0), "{eth0}");
    assert!(close(&eth0["tx_bytes_per_s"], 500.0), "{eth0}");
    assert!(close(&eth0["error_ratio_percent"], 1.0), "{eth0}");
    assert!(close(&eth0["errors_per_s"], 0.1), "{eth0}");

    let sda = member(family(&reply, "devices"), "sda");
    assert!(close(&sda["util_percent"], 50.0), "{sda}");
    assert!(close(&sda["read_bytes_per_s"], 100_000.0), "{sda}");

    let sys = &family(&reply, "system")["members"][0];
    assert!(close(&sys["procs_percent"], 10.0), "{sys}");
    assert!(close(&sys["files_percent"], 10.0), "{sys}");
    assert_eq!(sys["cpu_user"], 12.5);
    assert_eq!(sys["cpu_idle"], serde_json::Value::Null, "not measured");

    assert_eq!(
        member(family(&reply, "units"), "postgresql.service")["result"],
        "exit-code"
    );
    assert_eq!(member(family(&reply, "processes"), "cron")["count"], 0);

    // A 1.0 agent's host: every family "not measured"; an unknown host: 404.
    let (status, old, _) = get(&site, "/api/hosts/old/families");
    assert_eq!(status, 200);
    assert!(
        old["families"]
            .as_array()
            .expect("families")
            .iter()
            .all(|f| f["measured"] == false && f["members"] == serde_json::json!([]))
    );
    assert_eq!(get(&site, "/api/hosts/nobody/families").0, 404);
}

#[test]
fn history_of_a_member_has_rates_and_figures_and_refuses_bad_queries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = site(dir.path(), 4);
    let (status, reply, text) = get(&site, "/api/hosts/web1/families/interfaces?member=eth0");
    assert_eq!(status, 200, "{text}");
    assert_eq!(reply["samples"], 4);
    assert_eq!(reply["bucket_ms"], 0);
    let points = reply["points"].as_array().expect("points");
    assert_eq!(points.len(), 4);
    assert_eq!(
        points[0]["rx_bytes_per_s"],
        serde_json::Value::Null,
        "no earlier sample"
    );
    assert!(
        points[1..]
            .iter()
            .all(|p| close(&p["rx_bytes_per_s"], 1000.0)),
        "{reply:#}"
    );
    assert!(
        reply["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .all(|c| c["name"] != "oper"),
        "text is no chart column"
    );

    let var = get(&site, "/api/hosts/web1/families/filesystems?member=%2Fvar").1;
    let used: Vec<f64> = var["points"]
        .as_array()
        .expect("points")
        .iter()
        .filter_map(|p| p["used_percent"].as_f64())
        .collect();
    assert_eq!(used.len(), 4);
    assert!(used.windows(2).all(|w| w[0] < w[1]), "{used:?}");

    let encoded = format!(
        "/api/hosts/web1/families/filesystems?member={}",
        HOSTILE_MOUNT
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>()
    );
    assert_eq!(get(&site, &encoded).1["samples"], 4);
    // A singleton needs no member.
    let sys = get(&site, "/api/hosts/web1/families/system").1;
    assert_eq!(sys["points"][3]["cpu_user"], 12.5);

    let (status, bad, _) = get(&site, "/api/hosts/web1/families/filesystems");
    assert_eq!(status, 400);
    assert!(
        bad["error"].as_str().is_some_and(|e| e.contains("member=")),
        "{bad}"
    );
    let (status, bad, _) = get(&site, "/api/hosts/web1/families/disks?member=x");
    assert_eq!(status, 400);
    assert!(
        bad["error"]
            .as_str()
            .is_some_and(|e| e.contains("filesystems")),
        "{bad}"
    );
    assert_eq!(get(&site, "/api/hosts/nobody/families/system").0, 404);
    assert_eq!(
        get(&site, "/api/hosts/web1/families/system?since=soon").0,
        400
    );
    let gone = get(&site, "/api/hosts/web1/families/interfaces?member=eth9").1;
    assert_eq!(gone["samples"], 0);
}

#[test]
fn long_histories_are_downsampled_to_at_most_720_points_with_rates_before_means() {
    let spec = &interfaces::SPEC;
    let history: Vec<MemberPoint> = (0..3000u64)
        .map(|i| {
            let mut eth = interfaces::Interface {
                name: "eth0".into(),
                rx_bytes: Some(i * 10_000),
                ..Default::default()
            };
            if i >= 1500 {
                // A reboot resets the counter: no negative rate.
                eth.rx_bytes = Some((i - 1500) * 10_000);
            }
            MemberPoint {
                at: 1_000_000 + i as i64 * 10_000,
                member: eth.to_member(),
            }
        })
        .collect();
    let (points, bucket_ms) = families::history_points(spec, &history, api::MAX_POINTS);
    assert!(
        points.len() <= api::MAX_POINTS && points.len() > 600,
        "{}",
        points.len()
    );
    assert!(bucket_ms > 10_000);
    // Every bucket's mean rate is 1000 B/s: the reset gives no rate, not a spike.
    assert!(
        points
            .iter()
            .filter_map(|p| p["rx_bytes_per_s"].as_f64())
            .all(|r| (r - 1000.0).abs() < 1e-9),
    );
    let times: Vec<i64> = points.iter().filter_map(|p| p["at"].as_i64()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn full_in_needs_a_falling_line() {
    let point = |at: i64, avail: u64| MemberPoint {
        at,
        member: filesystems::Filesystem {
            mount: "/".into(),
            avail: Some(avail),
            ..Default::default()
        }
        .to_member(),
    };
    let rising: Vec<_> = (0..61).map(|i| point(i * 60_000, 100 + i as u64)).collect();
    assert_eq!(families::full_in_s(&rising), None);
    assert_eq!(
        families::full_in_s(&rising[..2]),
        None,
        "two points are no trend"
    );
    let minute = 60_000;
    let falling: Vec<_> = (0..61)
        .map(|i| point(i * minute, 1000 - 10 * i as u64))
        .collect();
    // 400 left at 10 a minute: 40 minutes.
    assert!(families::full_in_s(&falling).is_some_and(|s| (s - 2400.0).abs() < 1e-6));
    assert_eq!(
        families::full_in_s(&falling[..30]),
        None,
        "half an hour is too short a trend"
    );
}

#[test]
fn hosts_table_and_status_show_the_worst_filesystem_units_processes_and_cuts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = site(dir.path(), 2);
    let (_, reply, text) = get(&site, "/api/hosts");
    assert!(!text.contains('<'), "{text}");
    let hosts = reply["hosts"].as_array().expect("hosts");
    let web1 = hosts.iter().find(|h| h["name"] == "web1").expect("web1");
    let f = &web1["families"];
    // /var: 12 of 30 GiB = 40 %; / 52.6 %; the hostile mount 50 %.
    assert_eq!(f["worst_filesystem"]["mount"], "/");
    assert_eq!(f["failed_units"], serde_json::json!(["postgresql.service"]));
    assert_eq!(f["missing_processes"], serde_json::json!(["cron"]));
    assert_eq!(
        f["shortfalls"],
        serde_json::json!([{ "family": "interfaces", "cut": 3, "refused": 0 }])
    );
    let old = hosts.iter().find(|h| h["name"] == "old").expect("old");
    assert_eq!(old["families"]["worst_filesystem"], serde_json::Value::Null);

    let reader = crate::buffer::StatusReader::open(&site.buffer_path).expect("reader");
    let status = reader.status().expect("status");
    let summaries = crate::status::host_families(&reader, &status).expect("summaries");
    assert_eq!(summaries["old"], FamilySummary::default());
    let value = crate::status::to_json(&status, &summaries).expect("json");
    let web1 = value["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["name"] == "web1"))
        .expect("web1 in status --json");
    assert_eq!(
        web1["families"]["missing_processes"],
        serde_json::json!(["cron"])
    );
    let mut out = Vec::new();
    crate::status::print_families(&mut out, &summaries).expect("print");
    let table = String::from_utf8(out).expect("utf-8");
    let line = table
        .lines()
        .find(|l| l.starts_with("web1"))
        .unwrap_or_else(|| panic!("{table}"));
    for expected in [
        "/ 52.6%",
        "postgresql.service",
        "cron",
        "interfaces: 3 cut, 0 refused",
    ] {
        assert!(line.contains(expected), "{expected} in {line}");
    }
    assert!(!table.lines().any(|l| l.starts_with("old")), "{table}");
}

#[test]
fn the_host_page_and_its_scripts_are_served_with_the_strict_policy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = site(dir.path(), 1);
    let request = |target: &str| {
        parse_head(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).expect("parse")
    };
    let page = site.respond(&request("/host?name=web1"));
    assert_eq!(page.status, 200);
    assert!(
        page.headers
            .iter()
            .any(|(k, v)| *k == "Content-Security-Policy" && v.contains("script-src 'self'"))
    );
    let body = String::from_utf8_lossy(&page.body);
    assert!(
        body.contains("/host.js") && !body.contains("<script>"),
        "no inline script"
    );
    for asset in ["/common.js", "/host.js"] {
        let reply = site.respond(&request(asset));
        assert_eq!(reply.status, 200, "{asset}");
        let js = String::from_utf8_lossy(&reply.body);
        assert!(
            !js.contains("innerHTML") && !js.contains("insertAdjacentHTML"),
            "{asset}"
        );
    }
}
