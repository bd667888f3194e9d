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
