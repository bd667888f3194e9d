//! The local transport end to end, through the real binaries: `edgemon
//! collect` runs the embedded static agent as a child process, opens its
//! envelope, parses its report and stores the sample; `edgemon status --json`
//! reads it back.

use std::path::Path;

use crate::support::{Edgemon, temp_dir};

/// A configuration monitoring this box `hosts` times through the local transport.
pub fn local_config(dir: &Path, hosts: usize, extra: &str) -> std::path::PathBuf {
    let mut text = format!(
        "[appliance]\nid = \"test\"\ndata_dir = \"{}\"\n\n[collect]\ninterval = \"1s\"\n\n\
         [sync]\nurl = \"mysql://edgemon@127.0.0.1:1/edgemon\"\n\n",
        dir.join("data").display()
    );
    for i in 0..hosts {
        text.push_str(&format!(
            "[[hosts]]\nname = \"self-{i}\"\ntransport = \"local\"\n\n"
        ));
    }
    text.push_str(extra);
    let path = dir.join("edgemon.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// `edgemon status --json`, parsed.
pub fn status_json(dir: &Path, config: &Path) -> serde_json::Value {
    let out = Edgemon::new(dir)
        .args(["status", "--json", "--config"])
        .arg(config)
        .stdout();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{out}"))
}

#[test]
fn collect_stores_a_plausible_sample_of_this_box() {
    let dir = temp_dir();
    let config = local_config(dir.path(), 2, "");
    let table = Edgemon::new(dir.path())
        .args(["collect", "--config"])
        .arg(&config)
        .stdout();
    assert!(table.contains("2 hosts: 2 ok, 0 failed"), "{table}");

    let status = status_json(dir.path(), &config);
    assert_eq!(status["samples"], 2, "{status:#}");
    assert_eq!(status["unsynced"], 2, "{status:#}");
    for host in status["hosts"].as_array().expect("hosts") {
        let cpu = host["cpu"].as_f64().expect("cpu");
        let mem = host["memory_percent"].as_f64().expect("memory");
        assert!((0.0..=100.0).contains(&cpu), "cpu {cpu}");
        assert!(mem > 0.0 && mem <= 100.0, "memory {mem}");
        assert!(host["uptime_s"].as_i64().expect("uptime") > 0);
        assert_eq!(host["last_seq"], 1);
        assert_eq!(host["consecutive_failures"], 0);
    }

    // A second round continues each host's sequence.
    Edgemon::new(dir.path())
        .args(["collect", "--config"])
        .arg(&config)
        .stdout();
    let status = status_json(dir.path(), &config);
    assert_eq!(status["samples"], 4);
    assert!(
        status["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .all(|h| h["last_seq"] == 2),
        "{status:#}"
    );
}

#[test]
fn the_agent_the_collector_runs_is_static() {
    // The embedded copy is what the collector uploads and runs; check that one
    // (target/<profile>/edgemon-agent may be a workspace build of the agent package).
    let dir = temp_dir();
    let agent = dir.path().join("edgemon-agent");
    std::fs::write(&agent, edgemon::agent_bin::AGENT).expect("write agent");
    let out = std::process::Command::new("ldd")
        .arg(&agent)
        .output()
        .expect("run ldd");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("statically linked") || text.contains("not a dynamic executable"),
        "the embedded agent is not static: {text}"
    );
}

#[test]
fn status_without_a_buffer_says_what_to_do() {
    let dir = temp_dir();
    let config = local_config(dir.path(), 1, "");
    let out = Edgemon::new(dir.path())
        .args(["status", "--config"])
        .arg(&config)
        .assert_err();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no buffer") && stderr.contains("edgemon collect"),
        "{stderr}"
    );
}
