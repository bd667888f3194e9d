//! The status page of a running daemon (the real binary, local transport, a
//! 1 s interval): headless Chromium loads it and the DOM after the script ran
//! shows the host rows, a chart with data points and the buffer panel, and a
//! screenshot is saved; over plain HTTP the JSON API answers with its fields,
//! refuses writes, escapes a hostile host name, and asks for basic auth when
//! a password file is configured.
//!
//! Set `EDGEMON_SCREENSHOT_DIR` to keep the screenshot (the temp dir goes).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Result;
use base64::Engine as _;

use crate::local::local_config;
use crate::skip_or_fail;
use crate::support::{ChildGuard, Edgemon, free_port, log_tail, require_file, temp_dir, wait_for};

/// A host name that is markup, to prove it is shown as text.
const HOSTILE: &str = "<img src=x onerror=\"document.title='pwned'\">&amp;";

const CHROMIUM: &str = "/usr/bin/chromium";

/// A reply: status, head, body.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.head, self.body))
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`, with basic-auth `credentials` if given.
fn request(port: u16, method: &str, path: &str, credentials: Option<&str>) -> Option<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let auth = credentials
        .map(|c| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(c);
            format!("Authorization: Basic {encoded}\r\n")
        })
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

fn get(port: u16, path: &str) -> Reply {
    request(port, "GET", path, None).unwrap_or_else(|| panic!("GET {path} on port {port} failed"))
}

/// `edgemon run` with its log in `dir/daemon.log`.
fn start_daemon(dir: &Path, config: &Path) -> (ChildGuard, PathBuf) {
    let log = dir.join("daemon.log");
    let file = std::fs::File::create(&log).expect("create the daemon log");
    let daemon = ChildGuard::spawn(
        "edgemon run",
        Command::new(env!("CARGO_BIN_EXE_edgemon"))
            .args(["run", "--config"])
            .arg(config)
            .current_dir(dir)
            .env("EDGEMON_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file),
    )
    .expect("start edgemon run");
    (daemon, log)
}

/// Waits until the API shows at least `rounds` samples of `host`.
fn wait_for_samples(port: u16, host: &str, rounds: i64, log: &Path, credentials: Option<&str>) {
    let path = format!("/api/hosts/{host}/samples");
    let seen = wait_for(Duration::from_secs(60), || {
        let reply = request(port, "GET", &path, credentials)?;
        (reply.status == 200 && reply.json()["samples"].as_i64()? >= rounds).then_some(())
    });
    assert!(
        seen.is_some(),
        "no {rounds} samples of {host} on the API; daemon log:\n{}",
        log_tail(log, 4000)
    );
}

/// Headless Chromium on `url` with `extra` arguments (`--dump-dom`,
/// `--screenshot=...`); its stdout. Every name but 127.0.0.1 resolves to
/// nothing, so the browser reaches no other address.
fn chromium(dir: &Path, url: &str, extra: &[&str]) -> Result<String> {
    require_file(CHROMIUM, "Chromium (Debian package chromium)")?;
    let out_path = dir.join("chromium.out");
    let err_path = dir.join("chromium.err");
    let profile = dir.join("chromium-profile");
    let mut browser = ChildGuard::spawn(
        "chromium",
        Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                "--virtual-time-budget=5000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(url)
            .env("HOME", dir)
            .stdout(std::fs::File::create(&out_path)?)
            .stderr(std::fs::File::create(&err_path)?),
    )?;
    // A generous bound so a wedged browser fails the test instead of hanging it.
    if !browser.wait_exit(Duration::from_secs(120)) {
        anyhow::bail!(
            "chromium did not finish; stderr:\n{}",
            log_tail(&err_path, 4000)
        );
    }
    let out = std::fs::read_to_string(&out_path)?;
    if out.is_empty() && extra.contains(&"--dump-dom") {
        anyhow::bail!(
            "chromium printed no DOM; stderr:\n{}",
            log_tail(&err_path, 4000)
        );
    }
    Ok(out)
}

/// The part of the DOM from the row of `host` to the row's end.
fn row<'a>(dom: &'a str, host: &str) -> &'a str {
    let start = dom
        .find(&format!("data-host=\"{host}\""))
        .unwrap_or_else(|| panic!("no row of {host} in the DOM:\n{dom}"));
    let start = dom[..start].rfind("<tr").unwrap_or(start);
    let rest = &dom[start..];
    &rest[..rest.find("</tr>").unwrap_or(rest.len())]
}

/// The number in `data-points="N"` of a chart.
fn chart_points(row: &str) -> Option<usize> {
    let at = row.find("data-points=\"")? + "data-points=\"".len();
    row[at..].split('"').next()?.parse().ok()
}

fn web_config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let closed = free_port();
    local_config(
        dir,
        2,
        &format!(
            "[[hosts]]\nname = {HOSTILE:?}\naddress = \"127.0.0.1\"\nport = {closed}\nuser = \"nobody\"\n\
             password = \"unused\"\n\n[web]\nlisten = \"127.0.0.1:{port}\"\n{extra}"
        ),
    )
}

#[test]
fn the_page_shows_hosts_charts_and_the_buffer_in_a_real_browser() {
    let dir = temp_dir();
    let port = free_port();
    let config = web_config(dir.path(), port, "");
    let (_daemon, log) = start_daemon(dir.path(), &config);
    wait_for_samples(port, "self-0", 3, &log, None);
    // A silence from the CLI shows in its host's row.
    Edgemon::new(dir.path())
        .args([
            "silence",
            "add",
            "self-1",
            "cpu",
            "--for",
            "1h",
            "--comment",
            "page test",
        ])
        .arg("--config")
        .arg(&config)
        .stdout();

    let url = format!("http://127.0.0.1:{port}/");
    let dom = skip_or_fail!(chromium(
        dir.path(),
        &url,
        &["--dump-dom", "--window-size=1280,900"]
    ));
    for host in ["self-0", "self-1"] {
        let row = row(&dom, host);
        assert!(
            row.contains("class=\"host up\""),
            "{host} is not up:\n{row}"
        );
        assert!(
            row.contains("class=\"num cpu\">") && row.contains('%'),
            "{row}"
        );
        let points = chart_points(row).unwrap_or(0);
        assert!(
            points >= 2,
            "the chart of {host} has {points} points:\n{row}"
        );
        assert!(
            row.contains("<path class=\"line cpu\" d=\"M") && row.contains('L'),
            "{row}"
        );
        assert!(row.contains("<path class=\"line memory\""), "{row}");
        assert!(row.contains("<path class=\"line swap\""), "{row}");
    }
    // The hostile name is text in its row, never an element; its host is down.
    let escaped = "&lt;img src=x onerror=\"document.title='pwned'\"&gt;&amp;amp;";
    assert!(
        dom.contains(escaped),
        "the hostile name is not shown as text:\n{dom}"
    );
    assert!(
        !dom.contains("<img src=\"x\"") && !dom.contains("<img src=x"),
        "{dom}"
    );
    assert!(
        !dom.contains("pwned</title>"),
        "the hostile name ran:\n{dom}"
    );
    assert!(dom.contains("class=\"host down\""), "{dom}");
    assert!(dom.contains("unreachable"), "{dom}");
    // The buffer panel: depth, oldest unsynced, the sync error (MySQL is a closed port), outbox.
    let silenced = row(&dom, "self-1");
    assert!(
        silenced.contains("class=\"silence\"") && silenced.contains("silenced cpu until"),
        "{silenced}"
    );
    assert!(silenced.contains("page test"), "{silenced}");
    for id in [
        "buffer-depth",
        "buffer-oldest",
        "sync-last",
        "outbox",
        "loss",
        "retention",
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "no {id} in the buffer panel:\n{dom}"
        );
    }
    assert!(dom.contains("Buffer depth: unsynced</div>"), "{dom}");
    assert!(dom.contains("Time to first loss</div>"), "{dom}");
    assert!(dom.contains("cannot reach MySQL"), "{dom}");
    assert!(dom.contains("3 hosts") && dom.contains("2 up"), "{dom}");

    let shot = dir.path().join("status-page.png");
    let arg = format!("--screenshot={}", shot.display());
    skip_or_fail!(chromium(
        dir.path(),
        &url,
        &[&arg, "--window-size=1280,900"]
    ));
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if let Some(keep) = std::env::var_os("EDGEMON_SCREENSHOT_DIR") {
        let kept = Path::new(&keep).join("status-page.png");
        std::fs::copy(&shot, &kept).expect("keep the screenshot");
        eprintln!("screenshot: {}", kept.display());
    }
}

#[test]
fn the_api_answers_json_refuses_writes_and_escapes_host_text() {
    let dir = temp_dir();
    let port = free_port();
    let config = web_config(dir.path(), port, "");
    let (_daemon, log) = start_daemon(dir.path(), &config);
    wait_for_samples(port, "self-0", 2, &log, None);

    let status = get(port, "/api/status");
    assert_eq!(status.status, 200, "{}", status.head);
    assert!(
        status.head.contains("Content-Type: application/json"),
        "{}",
        status.head
    );
    let s = status.json();
    assert_eq!(s["appliance"], "test");
    assert_eq!(s["interval_ms"], 1000);
    assert!(
        s["buffer"]["unsynced"].as_i64().is_some_and(|n| n >= 2),
        "{s:#}"
    );
    assert!(s["buffer"]["oldest_unsynced_age_s"].is_i64(), "{s:#}");
    assert!(
        s["sync"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("MySQL")),
        "{s:#}"
    );
    assert_eq!(s["outbox"]["failed"], 0);
    assert_eq!(s["hosts"]["total"], 3);

    let hosts = get(port, "/api/hosts");
    assert!(
        !hosts.body.contains('<') && !hosts.body.contains('&'),
        "{}",
        hosts.body
    );
    let h = hosts.json();
    let list = h["hosts"].as_array().expect("hosts");
    let local = list.iter().find(|x| x["name"] == "self-0").expect("self-0");
    assert_eq!(local["state"], "up");
    for field in [
        "cpu",
        "memory_percent",
        "swap_percent",
        "uptime_s",
        "last_sample_at",
    ] {
        assert!(local[field].is_number(), "{field}: {local:#}");
    }
    let hostile = list
        .iter()
        .find(|x| x["name"] == HOSTILE)
        .expect("the hostile host");
    assert_eq!(hostile["last_error_class"], "unreachable", "{hostile:#}");
    assert_eq!(hostile["state"], "down");

    let samples = get(port, "/api/hosts/self-0/samples?since=2000-01-01T00:00:00Z");
    let series = samples.json();
    let points = series["points"].as_array().expect("points");
    assert!(points.len() >= 2, "{series:#}");
    assert!(
        points
            .iter()
            .all(|p| p["cpu"].is_number() && p["at"].is_i64()),
        "{series:#}"
    );
    assert_eq!(get(port, "/api/hosts/nobody/samples").status, 404);
    assert_eq!(
        get(port, "/api/hosts/self-0/samples?since=soon").status,
        400
    );

    for method in ["POST", "PUT", "DELETE"] {
        let reply = request(port, method, "/api/hosts", None).expect("reply");
        assert_eq!(reply.status, 405, "{method}: {}", reply.head);
        assert!(reply.head.contains("Allow: GET, HEAD"), "{}", reply.head);
    }
    let head = request(port, "HEAD", "/api/status", None).expect("reply");
    assert_eq!(
        (head.status, head.body.as_str()),
        (200, ""),
        "{}",
        head.head
    );
    let page = get(port, "/");
    assert!(
        page.head
            .contains("Content-Security-Policy: default-src 'none'"),
        "{}",
        page.head
    );
    assert!(
        page.body.contains("<script src=\"/app.js\""),
        "{}",
        page.body
    );
}

#[test]
fn a_password_file_puts_the_page_behind_basic_auth() {
    let dir = temp_dir();
    let port = free_port();
    let password = dir.path().join("web-password");
    std::fs::write(&password, "correct horse\n").expect("write the password file");
    let config = web_config(
        dir.path(),
        port,
        &format!("password_file = \"{}\"\n", password.display()),
    );
    let (_daemon, log) = start_daemon(dir.path(), &config);
    wait_for_samples(port, "self-0", 1, &log, Some("operator:correct horse"));

    for path in ["/", "/api/status", "/api/hosts", "/app.js"] {
        let refused = request(port, "GET", path, None).expect("reply");
        assert_eq!(refused.status, 401, "{path}: {}", refused.head);
        assert!(
            refused
                .head
                .contains("WWW-Authenticate: Basic realm=\"edgemon\""),
            "{}",
            refused.head
        );
        assert!(!refused.body.contains("self-0"), "{}", refused.body);
        let wrong = request(port, "GET", path, Some("operator:wrong horse")).expect("reply");
        assert_eq!(wrong.status, 401, "{path}");
        let right = request(port, "GET", path, Some("operator:correct horse")).expect("reply");
        assert_eq!(right.status, 200, "{path}: {}", right.head);
    }

    let check = Edgemon::new(dir.path())
        .args(["config", "check"])
        .arg(&config)
        .stdout();
    assert!(
        check.contains(&format!("page -> http://127.0.0.1:{port}/ (basic auth)")),
        "{check}"
    );

    // Off loopback, a password file is not optional.
    let open = dir.path().join("open.toml");
    std::fs::write(
        &open,
        std::fs::read_to_string(&config)
            .expect("read config")
            .replace(&format!("127.0.0.1:{port}"), &format!("0.0.0.0:{port}"))
            .replace(&format!("password_file = \"{}\"\n", password.display()), ""),
    )
    .expect("write config");
    let out = Edgemon::new(dir.path())
        .args(["config", "check"])
        .arg(&open)
        .assert_err();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("web.listen: 0.0.0.0") && said.contains("set web.password_file"),
        "{said}"
    );
}
