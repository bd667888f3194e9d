//! `edgemon config check` and `edgemon config import-xml`, run as the real
//! binary from the repository root.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::Edgemon;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `edgemon ARGS` in the repo root (the harness's runner, which drops
/// inherited `EDGEMON_*` variables); panics with the command, cwd, stdout and
/// stderr if the exit code is not `want`.
fn edgemon(args: &[&str], want: i32) -> Output {
    Edgemon::new(&repo()).args(args).assert_exit_code(want)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn shipped_configs_pass_check() {
    let default = edgemon(&["config", "check", "config/edgemon.toml"], 0);
    assert!(
        stdout(&default).starts_with("config OK: 1 hosts (0 ssh, 1 local)"),
        "{}",
        stdout(&default)
    );
    assert!(
        stdout(&default).contains("sync -> mysql://edgemon@127.0.0.1:3306/edgemon"),
        "the shipped default syncs to a local MySQL without a password in the file"
    );
    let example = edgemon(&["config", "check", "config/example-site.toml"], 0);
    assert!(stdout(&example).starts_with("config OK:"));
    let installed = edgemon(&["config", "check", "packaging/etc/edgemon.toml"], 0);
    assert!(stdout(&installed).starts_with("config OK:"));
    // Without a file, config check finds config/edgemon.toml from the repo root.
    edgemon(&["config", "check"], 0);
}

#[test]
fn an_unknown_key_exits_2_naming_key_and_line() {
    let output = edgemon(
        &[
            "config",
            "check",
            "tests/fixtures/config/bad-unknown-key.toml",
        ],
        2,
    );
    assert!(
        stdout(&output).contains("bad-unknown-key.toml:12: hosts[1].colour: unknown key `colour`"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn imported_xml_passes_check() {
    let output = edgemon(
        &["config", "import-xml", "tests/fixtures/config/Config.xml"],
        0,
    );
    let toml = String::from_utf8_lossy(&output.stdout).to_string();
    // No shared placeholder id: an imported site takes its id from its machine.
    let appliance: toml::Table = toml::from_str(&toml).expect("imported TOML parses");
    assert!(
        appliance["appliance"].get("id").is_none(),
        "import-xml wrote an appliance id:\n{toml}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("imported.toml");
    std::fs::write(&file, &output.stdout).expect("write imported TOML");
    let check = edgemon(&["config", "check", path(&file)], 0);
    assert!(
        stdout(&check).starts_with("config OK: 4 hosts (4 ssh, 0 local)"),
        "{}",
        stdout(&check)
    );
}

#[test]
fn broken_xml_fails_with_line_and_column() {
    let output = edgemon(
        &[
            "config",
            "import-xml",
            "tests/fixtures/config/bad-typographic-quotes.xml",
        ],
        2,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad-typographic-quotes.xml:3:12: attribute quotes"),
        "{stderr}"
    );
}

fn path(file: &Path) -> &str {
    file.to_str().expect("temp paths are UTF-8")
}

/// Writes `text` to `edgemon.toml` in a fresh temp dir.
fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("edgemon.toml");
    std::fs::write(&file, text).expect("write config");
    (dir, file)
}

const MINIMAL: &str = "[appliance]\nid = \"bounds\"\ndata_dir = \"var\"\n\
                       [sync]\nurl = \"mysql://u@127.0.0.1:1/db\"\n";

#[test]
fn zero_interval_and_zero_unsynced_age_are_refused_with_file_line_and_key() {
    let (_dir, file) = config_file(&format!(
        "{MINIMAL}[collect]\ninterval = \"0s\"\nmax_reply_size = \"100TB\"\n\
         [buffer]\nmax_unsynced_age = \"0s\"\n"
    ));
    let output = edgemon(&["config", "check", path(&file)], 2);
    let out = stdout(&output);
    let shown = path(&file);
    for want in [
        format!("{shown}:7: collect.interval: \"0s\" is below the minimum of 1s"),
        format!("{shown}:8: collect.max_reply_size: \"100TB\" is above the maximum of 64MiB"),
        format!("{shown}:10: buffer.max_unsynced_age: \"0s\" is below the minimum of 1m"),
    ] {
        assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(out.lines().count(), 3, "{out}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("3 error(s)"), "{stderr}");
}

#[test]
fn max_unsynced_age_below_twice_the_sync_interval_is_refused() {
    let (_dir, file) = config_file(&format!(
        "{MINIMAL}interval = \"5m\"\n[buffer]\nmax_unsynced_age = \"9m\"\n"
    ));
    let out = stdout(&edgemon(&["config", "check", path(&file)], 2));
    assert!(
        out.contains(&format!(
            "{}:8: buffer.max_unsynced_age: 9m must be at least 2 x sync.interval (2 x 5m = 10m)",
            path(&file)
        )),
        "{out}"
    );
}

#[test]
fn an_environment_override_out_of_bounds_names_the_variable() {
    let (dir, file) = config_file(MINIMAL);
    let output = Edgemon::new(dir.path())
        .args(["config", "check"])
        .arg(&file)
        .env("EDGEMON__SYNC__TIMEOUT", "0s")
        .env("EDGEMON__SYNC__BATCHSIZE", "10")
        .assert_exit_code(2);
    let out = stdout(&output);
    assert!(
        out.contains("$EDGEMON__SYNC__TIMEOUT: sync.timeout: \"0s\" is below the minimum of 1s"),
        "{out}"
    );
    assert!(
        out.contains("$EDGEMON__SYNC__BATCHSIZE: sync.batchsize: unknown key `sync.batchsize`"),
        "{out}"
    );
}

#[test]
fn host_names_equal_after_trimming_are_refused_naming_both_lines() {
    let (_dir, file) = config_file(&format!(
        "{MINIMAL}[[hosts]]\nname = \"box\"\ntransport = \"local\"\n\n\
         [[hosts]]\nname = \"box \"\ntransport = \"local\"\n"
    ));
    let out = stdout(&edgemon(&["config", "check", path(&file)], 2));
    assert!(
        out.contains(&format!(
            "{}:11: hosts[1].name: duplicate host name \"box\" (also hosts[0].name, line 7)",
            path(&file)
        )),
        "{out}"
    );
}

#[test]
fn config_keys_lists_every_key_with_its_bounds_and_variable() {
    let out = stdout(&edgemon(&["config", "keys"], 0));
    assert!(
        out.contains(
            "| `buffer.max_unsynced_age` | `30d` | 1m to 3650d | `EDGEMON__BUFFER__MAX_UNSYNCED_AGE` |"
        ),
        "{out}"
    );
    assert!(
        out.contains("| `collect.max_reply_size` | `1MiB` | 4KiB to 64MiB |"),
        "{out}"
    );
}
