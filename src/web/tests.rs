//! Unit tests of the web module: request parsing, auth, time parsing, and the
//! routes answered from a real buffer on a temporary file.

use std::time::Duration;

use super::http::{Request, parse_head, percent_decode};
use super::*;
use crate::buffer::{Buffer, now_ms};
use crate::collect::outcome::{CollectError, ErrorClass, HostOutcome};
use crate::report::Report;

const HOSTILE: &str = "<script>alert(1)</script> & \"web\"";

fn report(cpu: f64, at_ms: i64) -> Report {
    Report {
        version: 1,
        collected_at_ms: at_ms,
        cpu_percent: cpu,
        cores: vec![cpu],
        mem_used: 256,
        mem_total: 1024,
        swap_used: 50,
        swap_total: 100,
        uptime_s: 7200,
        boot_time_s: None,
        load: None,
        hostname: None,
        os: None,
        kernel: None,
        extras: Vec::new(),
        sections: Vec::new(),
    }
}

fn outcome(host: &str, result: Result<Report, CollectError>) -> HostOutcome {
    HostOutcome {
        host: host.into(),
        address: format!("{host}:22"),
        // In the past, so that start + duration (the receive time) is not after "now".
        started_at_ms: now_ms() - 1000,
        duration: Duration::from_millis(5),
        result,
    }
}

/// A buffer with two rounds of a good host and of a failing host with a hostile name and error.
fn site(dir: &std::path::Path, password: Option<&str>) -> Site {
    let path = dir.join("buffer.sqlite");
    let mut buffer = Buffer::open(&path).expect("open buffer");
    for cpu in [10.0, 30.0] {
        let outcomes = [
            outcome("good", Ok(report(cpu, now_ms()))),
            outcome(
                HOSTILE,
                Err(CollectError::new(
                    ErrorClass::AgentFailed,
                    "<img src=x onerror=alert(2)>",
                )),
            ),
        ];
        buffer
            .record_round(&outcomes, Duration::from_secs(300), |_, _| Ok(()))
            .expect("record a round");
    }
    Site {
        appliance: "test".into(),
        interval: Duration::from_secs(60),
        buffer_path: path,
        password: password.map(Secret::new),
        weekly: Vec::new(),
    }
}

fn get(target: &str) -> Request {
    parse_head(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).expect("parse")
}

fn json(response: &Response) -> serde_json::Value {
    serde_json::from_slice(&response.body).expect("JSON body")
}

#[test]
fn request_heads_are_parsed_and_bad_ones_refused() {
    let request =
        parse_head(b"GET /api/hosts?since=1&x=%2F HTTP/1.1\r\nAuthorization: Basic abc\r\n\r\n")
            .expect("parse");
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/api/hosts");
    assert_eq!(request.header("authorization"), Some("Basic abc"));
    assert_eq!(request.query_param("x").as_deref(), Some("/"));
    assert_eq!(request.query_param("since").as_deref(), Some("1"));
    assert_eq!(request.query_param("until"), None);
    for bad in [
        &b"GET /\r\n\r\n"[..],
        b"GET http://x/ HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        b"GET / HTTP/1.1\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(parse_head(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn percent_decoding_keeps_plus_and_refuses_bad_escapes() {
    assert_eq!(percent_decode("a%20b+c%2Fd").as_deref(), Some("a b+c/d"));
    assert_eq!(percent_decode("%e2%9c%93").as_deref(), Some("✓"));
    for bad in ["%", "%2", "%zz", "%+1", "%ff"] {
        assert_eq!(percent_decode(bad), None, "{bad}");
    }
}

#[test]
fn times_are_unix_milliseconds_or_rfc3339() {
    let check =
        |text: &str, expected: i64| assert_eq!(api::parse_time(text), Ok(expected), "{text}");
    check("1764079200000", 1_764_079_200_000);
    check("2025-11-25T14:00:00Z", 1_764_079_200_000);
    check("2025-11-25T14:00:00.250Z", 1_764_079_200_250);
    check("2025-11-25T16:00:00+02:00", 1_764_079_200_000);
    check("2025-11-25T09:30:00-04:30", 1_764_079_200_000);
    for bad in [
        "",
        "yesterday",
        "-5",
        "2025-11-25",
        "2025-11-25T14:00:00+25:00",
        "99999999999999999999",
    ] {
        assert!(api::parse_time(bad).is_err(), "{bad}");
    }
}

#[test]
fn basic_auth_needs_the_password_of_the_file_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let open = site(dir.path(), None);
    assert!(open.authorized(&get("/")));
    let closed = site(dir.path(), Some("s3cret:with colon"));
    let with = |credentials: &str| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        parse_head(format!("GET / HTTP/1.1\r\nAuthorization: Basic {encoded}\r\n\r\n").as_bytes())
            .expect("parse")
    };
    assert!(closed.authorized(&with("anyone:s3cret:with colon")));
    assert!(!closed.authorized(&get("/")));
    assert!(!closed.authorized(&with("anyone:s3cret")));
    assert!(!closed.authorized(&with("s3cret:with colon")));
    assert!(!closed.authorized(&with("")));
    let garbage = parse_head(b"GET / HTTP/1.1\r\nAuthorization: Basic !!!\r\n\r\n").expect("parse");
    assert!(!closed.authorized(&garbage));

    let refused = closed.respond(&get("/api/status"));
    assert_eq!(refused.status, 401);
    assert!(
        refused
            .headers
            .iter()
            .any(|(name, value)| *name == "WWW-Authenticate" && value.starts_with("Basic"))
    );
    assert_eq!(closed.respond(&with("u:s3cret:with colon")).status, 200);
}

#[test]
fn the_page_and_its_assets_are_served_with_a_strict_policy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = site(dir.path(), None);
    let page = site.respond(&get("/"));
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    let csp = page
        .headers
        .iter()
        .find(|(name, _)| *name == "Content-Security-Policy");
    assert!(
        csp.is_some_and(|(_, value)| value.contains("script-src 'self'")),
        "{:?}",
        page.headers
    );
    for asset in ["/app.js", "/style.css", "/favicon.svg"] {
        assert_eq!(site.respond(&get(asset)).status, 200, "{asset}");
    }
    assert_eq!(site.respond(&get("/nothing")).status, 404);
    assert_eq!(site.respond(&get("/api/nothing")).status, 404);
}

#[test]
fn hosts_carry_state_figures_alerts_and_escaped_text() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = site(dir.path(), None);
    let response = site.respond(&get("/api/hosts"));
    assert_eq!(response.status, 200);
    let text = String::from_utf8_lossy(&response.body).into_owned();
    assert!(
        !text.contains('<') && !text.contains('>') && !text.contains('&'),
        "{text}"
    );
    let hosts = json(&response)["hosts"].as_array().expect("hosts").clone();
    let good = hosts
        .iter()
        .find(|h| h["name"] == "good")
        .expect("good host");
    assert_eq!(good["state"], "up");
    assert_eq!(good["cpu"], 30.0);
    assert_eq!(good["memory_percent"], 25.0);
    assert_eq!(good["swap_percent"], 50.0);
    assert_eq!(good["uptime_s"], 7200);
    let hostile = hosts
        .iter()
        .find(|h| h["name"] == HOSTILE)
        .expect("hostile host");
    assert_eq!(hostile["state"], "down");
    assert_eq!(hostile["last_error_class"], "agent-failed");
    assert_eq!(hostile["last_error"], "<img src=x onerror=alert(2)>");
    assert_eq!(hostile["consecutive_failures"], 2);
    assert!(hostile["alerts"].as_array().is_some());
}

#[test]
fn status_summarises_buffer_sync_outbox_and_hosts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = site(dir.path(), None);
    let status = json(&site.respond(&get("/api/status")));
    assert_eq!(status["appliance"], "test");
    assert_eq!(status["interval_ms"], 60_000);
    assert_eq!(status["buffer"]["samples"], 2);
    assert_eq!(status["buffer"]["unsynced"], 2);
    assert!(
        status["buffer"]["oldest_unsynced_age_s"].as_i64().is_some(),
        "{status:#}"
    );
    assert_eq!(status["sync"]["last_sync_at"], serde_json::Value::Null);
    assert_eq!(status["outbox"]["pending"], 0);
    assert_eq!(status["hosts"]["total"], 2);
    assert_eq!(status["hosts"]["up"], 1);
    assert_eq!(status["hosts"]["down"], 1);
}

#[test]
fn samples_of_a_host_by_encoded_name_since_a_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = site(dir.path(), None);
    let reply = site.respond(&get("/api/hosts/good/samples"));
    assert_eq!(reply.status, 200);
    let series = json(&reply);
    assert_eq!(series["samples"], 2);
    assert_eq!(series["bucket_ms"], 0);
    let points = series["points"].as_array().expect("points");
    assert_eq!(points.len(), 2);
    assert_eq!(points[0]["cpu"], 10.0);
    assert_eq!(points[1]["cpu"], 30.0);
    assert_eq!(points[1]["memory_percent"], 25.0);

    let long_ago = "/api/hosts/good/samples?since=1000&until=2000";
    assert_eq!(json(&site.respond(&get(long_ago)))["samples"], 0);
    let future = format!("/api/hosts/good/samples?since={}", now_ms() + 60_000);
    assert_eq!(site.respond(&get(&future)).status, 400, "since after until");
    let rfc = "/api/hosts/good/samples?since=2000-01-01T00:00:00%2B01:00";
    assert_eq!(json(&site.respond(&get(rfc)))["samples"], 2);

    let encoded = format!("/api/hosts/{}/samples", encode(HOSTILE));
    let hostile = site.respond(&get(&encoded));
    assert_eq!(
        hostile.status,
        200,
        "{}",
        String::from_utf8_lossy(&hostile.body)
    );
    assert_eq!(json(&hostile)["host"], HOSTILE);
    assert_eq!(json(&hostile)["samples"], 0);

    assert_eq!(site.respond(&get("/api/hosts/nobody/samples")).status, 404);
    let bad = site.respond(&get("/api/hosts/good/samples?since=yesterday"));
    assert_eq!(bad.status, 400);
    assert!(
        json(&bad)["error"]
            .as_str()
            .is_some_and(|e| e.contains("since"))
    );
    assert_eq!(site.respond(&get("/api/hosts/%zz/samples")).status, 400);
}

#[test]
fn long_ranges_are_downsampled_to_a_bounded_number_of_points() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = site(dir.path(), None);
    let buffer = Buffer::open(&site.buffer_path).expect("open");
    // Ten thousand samples a few seconds apart over the last day, in one statement.
    let start = now_ms() - 23 * 3600 * 1000;
    buffer
        .conn()
        .execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
             INSERT INTO samples (host_id, seq, collected_at, received_at, cpu, cores, mem_used,
                                  mem_total, swap_used, swap_total, uptime_s)
             SELECT h.id, 100 + i, ?1 + i * 8000, ?1 + i * 8000, i % 100, '', 1, 2, 0, 0, i
             FROM n, hosts h WHERE h.name = 'good'",
            [start],
        )
        .expect("insert samples");
    let series = json(&site.respond(&get("/api/hosts/good/samples")));
    assert_eq!(series["samples"], 10_002);
    let points = series["points"].as_array().expect("points");
    assert!(
        points.len() <= api::MAX_POINTS && points.len() > api::MAX_POINTS / 2,
        "{}",
        points.len()
    );
    assert!(
        series["bucket_ms"].as_i64().is_some_and(|b| b > 8000),
        "{series}"
    );
    let times: Vec<i64> = points.iter().filter_map(|p| p["at"].as_i64()).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "points are not in time order"
    );
    // Every bucket but the newest (which holds the two samples of `site`) averages 1 of 2.
    assert!(
        points[..points.len() - 1]
            .iter()
            .all(|p| p["memory_percent"] == 50.0)
    );
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn a_reader_of_the_page_never_blocks_the_writer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let site = site(dir.path(), None);
    let mut writer = Buffer::open(&site.buffer_path).expect("open the writer");
    let reader = StatusReader::open(&site.buffer_path).expect("open a reader");
    // A reader in the middle of a read transaction, as a slow API request would be.
    reader.conn().execute_batch("BEGIN").expect("begin");
    let seen: i64 = reader
        .conn()
        .query_row("SELECT COUNT(*) FROM samples", [], |r| r.get(0))
        .expect("read");
    let round = [outcome("good", Ok(report(50.0, now_ms())))];
    writer
        .record_round(&round, Duration::from_secs(300), |_, _| Ok(()))
        .expect("the writer commits while the reader holds its snapshot");
    let still: i64 = reader
        .conn()
        .query_row("SELECT COUNT(*) FROM samples", [], |r| r.get(0))
        .expect("read");
    assert_eq!(still, seen, "the reader keeps its snapshot");
    reader.conn().execute_batch("COMMIT").expect("end the read");
    let series = json(&site.respond(&get("/api/hosts/good/samples")));
    assert_eq!(series["samples"], seen + 1);
}

/// Sends `raw` to 127.0.0.1:`port` and reads the whole reply.
fn exchange(port: u16, raw: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(raw).expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read the reply");
    reply
}

#[test]
fn the_server_answers_get_and_head_and_refuses_everything_else() {
    let listener = http::bind("127.0.0.1:0".parse().expect("address")).expect("bind");
    let port = listener
        .get_ref()
        .local_addr()
        .expect("local address")
        .port();
    let server = async {
        http::serve(listener, |request: Request| async move {
            Response::text(200, format!("{} {}", request.method, request.path))
        })
        .await;
        Vec::new()
    };
    let client = smol::unblock(move || {
        let oversized = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; http::MAX_HEAD]].concat();
        vec![
            exchange(port, b"GET /x?y=1 HTTP/1.1\r\nHost: h\r\n\r\n"),
            exchange(port, b"HEAD /x HTTP/1.1\r\n\r\n"),
            exchange(port, b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            exchange(port, b"DELETE /x HTTP/1.1\r\n\r\n"),
            exchange(port, b"nonsense\r\n\r\n"),
            exchange(port, &oversized[..http::MAX_HEAD + 1]),
        ]
    });
    let replies = smol::block_on(smol::future::or(server, client));
    assert!(
        replies[0].starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        replies[0]
    );
    assert!(
        replies[0].contains("Connection: close\r\n") && replies[0].ends_with("\r\n\r\nGET /x"),
        "{}",
        replies[0]
    );
    assert!(
        replies[1].starts_with("HTTP/1.1 200 OK\r\n")
            && replies[1].contains("Content-Length: 7\r\n"),
        "{}",
        replies[1]
    );
    assert!(
        replies[1].ends_with("\r\n\r\n"),
        "HEAD has no body: {}",
        replies[1]
    );
    for reply in &replies[2..4] {
        assert!(
            reply.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{reply}"
        );
        assert!(reply.contains("Allow: GET, HEAD\r\n"), "{reply}");
    }
    assert!(replies[4].starts_with("HTTP/1.1 400 "), "{}", replies[4]);
    assert!(replies[5].starts_with("HTTP/1.1 431 "), "{}", replies[5]);
}
