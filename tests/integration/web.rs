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

/// Checks every line of a `/metrics` body against the text exposition format
/// (a `# HELP`/`# TYPE` comment, or `name{label="value",...} number` with
/// escaped label values); the samples' names with their label text.
fn exposition_samples(body: &str) -> Vec<(String, String)> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut out = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
        {
            assert!(name_ok(rest.split(' ').next().unwrap_or("")), "{line:?}");
            continue;
        }
        let (name, labels, value) = match line.find('{') {
            Some(open) => {
                let close = line.rfind("} ").unwrap_or_else(|| panic!("{line:?}"));
                (&line[..open], &line[open + 1..close], &line[close + 2..])
            }
            None => {
                let (n, v) = line.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
                (n, "", v)
            }
        };
        assert!(name_ok(name), "{line:?}");
        assert!(value.parse::<f64>().is_ok(), "value of {line:?}");
        // Label values: quoted, only \\ \" \n escapes, no raw newline.
        let mut rest = labels;
        while !rest.is_empty() {
            let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("{line:?}"));
            assert!(
                name_ok(key) && !key.contains(':'),
                "label {key:?} of {line:?}"
            );
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => {
                        let escaped = chars.next().map(|c| c.1);
                        assert!(matches!(escaped, Some('\\' | '"' | 'n')), "{line:?}");
                    }
                    Some((i, '"')) => break i,
                    Some(_) => {}
                    None => panic!("unterminated label value in {line:?}"),
                }
            };
            rest = after[end + 1..]
                .strip_prefix(',')
                .unwrap_or(&after[end + 1..]);
        }
        out.push((name.to_string(), labels.to_string()));
    }
    out
}

/// The daemon collects this box through the local transport with the agent's
/// families on and two watched processes (one running: the daemon itself; one
/// missing). The API serves every family from the specs with rates after two
/// samples, a member's history, the hosts table's summary; `status --json`
/// and the table say the same; `/metrics` is valid exposition with the seed's
/// and the families' series and no `error` label; and headless Chromium draws
/// the host page with a table per family and 24 h charts (screenshot kept
/// under `EDGEMON_SCREENSHOT_DIR`).
#[test]
fn the_host_page_shows_every_family_with_charts_in_a_real_browser() {
    let dir = temp_dir();
    let (port, metrics_port) = (free_port(), free_port());
    let config = local_config(
        dir.path(),
        0,
        &format!(
            "[[hosts]]\nname = \"self-0\"\ntransport = \"local\"\n\
             watch = [\"edgemon\", \"ghost=no-such-process-xq\"]\n\n\
             [web]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
        ),
    );
    let (_daemon, log) = start_daemon(dir.path(), &config);
    wait_for_samples(port, "self-0", 3, &log, None);
    // Rates need the sample before the newest one with its sections.
    let families = wait_for(Duration::from_secs(60), || {
        let reply = request(port, "GET", "/api/hosts/self-0/families", None)?;
        let value = reply.json();
        value["previous_at"].as_i64().map(|_| value)
    })
    .unwrap_or_else(|| {
        panic!(
            "no families with a previous sample; log:\n{}",
            log_tail(&log, 4000)
        )
    });
    let family = |name: &str| {
        families["families"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["name"] == name))
            .unwrap_or_else(|| panic!("no family {name}: {families:#}"))
            .clone()
    };
    let fss = family("filesystems");
    assert_eq!(fss["measured"], true, "{fss:#}");
    let root = fss["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["key"] == "/"))
        .unwrap_or_else(|| panic!("no / in {fss:#}"));
    let used = root["used_percent"].as_f64().expect("used %");
    assert!(used > 0.0 && used < 100.0, "{root}");
    assert!(root["avail"].as_u64().is_some_and(|a| a > 0), "{root}");
    let ifs = family("interfaces");
    let eth0 = ifs["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["key"] == "eth0"))
        .unwrap_or_else(|| panic!("no eth0 in {ifs:#}"));
    assert!(eth0["rx_bytes_per_s"].as_f64().is_some(), "a rate: {eth0}");
    let procs = family("processes");
    let count = |name: &str| {
        procs["members"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["key"] == name))
            .and_then(|m| m["count"].as_u64())
    };
    assert!(count("edgemon").is_some_and(|c| c >= 1), "{procs:#}");
    assert_eq!(count("ghost"), Some(0), "{procs:#}");
    let system = family("system");
    assert!(
        system["members"][0]["procs_percent"].as_f64().is_some(),
        "{system:#}"
    );
    let history = get(port, "/api/hosts/self-0/families/filesystems?member=%2F").json();
    assert!(
        history["samples"].as_u64().is_some_and(|n| n >= 3),
        "{history:#}"
    );
    assert!(
        history["points"][0]["used_percent"].as_f64().is_some(),
        "{history:#}"
    );

    let hosts = get(port, "/api/hosts").json();
    let summary = &hosts["hosts"][0]["families"];
    assert_eq!(
        summary["missing_processes"],
        serde_json::json!(["ghost"]),
        "{hosts:#}"
    );
    assert!(
        summary["worst_filesystem"]["used_percent"]
            .as_f64()
            .is_some(),
        "{hosts:#}"
    );

    let status = crate::local::status_json(dir.path(), &config);
    assert_eq!(
        status["hosts"][0]["families"]["missing_processes"],
        serde_json::json!(["ghost"]),
        "{status:#}"
    );
    let table = Edgemon::new(dir.path())
        .args(["status", "--config"])
        .arg(&config)
        .stdout();
    assert!(
        table.contains("MISSING PROCESSES") && table.contains("ghost"),
        "{table}"
    );

    let metrics = get(metrics_port, "/metrics");
    assert_eq!(metrics.status, 200);
    let samples = exposition_samples(&metrics.body);
    assert!(
        !samples.iter().any(|(_, labels)| labels.contains("error=")),
        "{}",
        metrics.body
    );
    for (name, labels) in [
        ("edgemon_host_up", "host=\"self-0\""),
        ("edgemon_host_cpu_percent", "host=\"self-0\""),
        ("edgemon_host_memory_total_bytes", "host=\"self-0\""),
        ("edgemon_host_uptime_seconds", "host=\"self-0\""),
        (
            "edgemon_filesystems_avail_bytes",
            "host=\"self-0\",family=\"filesystems\",member=\"/\"",
        ),
        (
            "edgemon_interfaces_rx_bytes_total",
            "host=\"self-0\",family=\"interfaces\",member=\"eth0\"",
        ),
        (
            "edgemon_processes_count",
            "host=\"self-0\",family=\"processes\",member=\"ghost\"",
        ),
    ] {
        assert!(
            samples.iter().any(|s| s.0 == name && s.1 == labels),
            "no {name}{{{labels}}} in\n{}",
            metrics.body
        );
    }
    assert!(
        metrics
            .body
            .contains("# TYPE edgemon_interfaces_rx_bytes_total counter"),
        "{}",
        metrics.body
    );

    let url = format!("http://127.0.0.1:{port}/host?name=self-0");
    let dom = skip_or_fail!(chromium(
        dir.path(),
        &url,
        &["--dump-dom", "--window-size=1280,1400"]
    ));
    for id in [
        "family-system",
        "family-filesystems",
        "family-interfaces",
        "family-devices",
        "family-units",
        "family-processes",
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "no {id} on the page:\n{dom}"
        );
    }
    let panel = |name: &str| {
        let start = dom
            .find(&format!("id=\"family-{name}\""))
            .unwrap_or_else(|| panic!("{name}"));
        let rest = &dom[start..];
        rest[..rest.find("</section>").unwrap_or(rest.len())].to_string()
    };
    let fs_panel = panel("filesystems");
    let root_row = row_of(&fs_panel, "/");
    assert!(
        root_row.contains("col-used_percent") && root_row.contains('%'),
        "{root_row}"
    );
    let points = chart_points(&root_row).unwrap_or(0);
    assert!(points >= 2, "the / chart has {points} points:\n{root_row}");
    let ghost = row_of(&panel("processes"), "ghost");
    assert!(ghost.contains("class=\"member bad\""), "{ghost}");
    assert!(
        chart_points(&row_of(&panel("interfaces"), "eth0")).unwrap_or(0) >= 2,
        "{}",
        panel("interfaces")
    );
    let overview = &dom[dom.find("id=\"overview-chart\"").expect("overview chart")..];
    assert!(chart_points(overview).unwrap_or(0) >= 2, "{overview}");
    assert!(
        dom.contains(">self-0</span>"),
        "the host's name in the header:\n{dom}"
    );

    let shot = dir.path().join("host-page.png");
    let arg = format!("--screenshot={}", shot.display());
    skip_or_fail!(chromium(
        dir.path(),
        &url,
        &[&arg, "--window-size=1280,1800"]
    ));
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if let Some(keep) = std::env::var_os("EDGEMON_SCREENSHOT_DIR") {
        let kept = Path::new(&keep).join("host-page.png");
        std::fs::copy(&shot, &kept).expect("keep the screenshot");
        eprintln!("screenshot: {}", kept.display());
    }

    // The hosts page links the host and shows its worst filesystem.
    let dom = skip_or_fail!(chromium(
        dir.path(),
        &format!("http://127.0.0.1:{port}/"),
        &["--dump-dom", "--window-size=1280,900"]
    ));
    let host_row = row(&dom, "self-0");
    assert!(
        host_row.contains("href=\"/host?name=self-0\""),
        "{host_row}"
    );
    assert!(host_row.contains("class=\"worst-fs"), "{host_row}");
    assert!(host_row.contains("missing ghost"), "{host_row}");
}

/// The part of a family panel from the row of member `key` to the row's end.
fn row_of(panel: &str, key: &str) -> String {
    let start = panel
        .find(&format!("data-member=\"{key}\""))
        .unwrap_or_else(|| panic!("no row of {key}:\n{panel}"));
    let start = panel[..start].rfind("<tr").unwrap_or(start);
    let rest = &panel[start..];
    rest[..rest.find("</tr>").unwrap_or(rest.len())].to_string()
}
