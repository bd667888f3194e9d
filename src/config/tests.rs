//! Tests of loading and resolving: one `load_str` helper writes a file into
//! a temp dir and loads it with a given environment, so each test states
//! only the TOML and the outcome.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::*;

const BASE: &str =
    "[appliance]\nid = \"t\"\ndata_dir = \"var\"\n[sync]\nurl = \"mysql://u@127.0.0.1:3306/db\"\n";

fn load_env(
    toml: &str,
    env: &[(&str, &str)],
) -> (Result<resolve::Resolved, ConfigErrors>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("edgemon.toml"), toml).expect("write config");
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (load_with(Path::new("edgemon.toml"), &env, dir.path()), dir)
}

fn ok(toml: &str) -> Config {
    match load_env(toml, &[]).0 {
        Ok(resolved) => resolved.config,
        Err(errors) => panic!("expected a valid config, got:\n{errors}"),
    }
}

fn errors(toml: &str) -> ConfigErrors {
    match load_env(toml, &[]).0 {
        Ok(_) => panic!("expected errors for:\n{toml}"),
        Err(errors) => errors,
    }
}

#[test]
fn defaults_fill_a_minimal_file() {
    let config = ok(BASE);
    assert_eq!(config.collect.interval, Duration::from_secs(60));
    assert_eq!(config.collect.max_reply_bytes, 1 << 20);
    assert_eq!(config.buffer.max_size, 1 << 30);
    assert_eq!(config.sync.batch_size, 500);
    assert_eq!(config.alert.fire_after, 1);
    assert_eq!(config.alert.flap_threshold, 6);
    assert!(config.mail.smtp.is_none());
    assert!(config.metrics.listen.is_none());
}

#[test]
fn relative_paths_are_relative_to_the_working_directory() {
    let (resolved, dir) = load_env(BASE, &[]);
    let config = resolved.expect("valid").config;
    assert_eq!(config.appliance.data_dir, dir.path().join("var"));
    assert_eq!(config.buffer.path, dir.path().join("var/buffer.sqlite"));
    assert_eq!(config.mail.file_dir, dir.path().join("var/mail"));
}

#[test]
fn environment_overrides_the_file() {
    let toml = format!("{BASE}[collect]\ninterval = \"60s\"\n");
    let (resolved, _dir) = load_env(
        &toml,
        &[
            ("EDGEMON__SYNC__BATCH_SIZE", "7"),
            ("EDGEMON__COLLECT__INTERVAL", "5s"),
        ],
    );
    let config = resolved.expect("valid").config;
    assert_eq!(config.sync.batch_size, 7);
    assert_eq!(config.collect.interval, Duration::from_secs(5));
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let (resolved, _dir) = load_env(BASE, &[("EDGEMON__SYNC__BATCH_SIZE", "0")]);
    let errors = resolved.err().expect("batch_size 0 refused");
    assert_eq!(errors.errors()[0].file, "$EDGEMON__SYNC__BATCH_SIZE");
}

#[test]
fn every_error_is_reported_at_once_with_lines() {
    let toml = "[appliance]
id = \"t\"
colour = \"red\"
[collect]
concurrency = 0
[[hosts]]
name = \"a\"
address = \"10.0.0.1\"
user = \"u\"
port = 70000
use_agent = true
mail = \"not an address\"
[hosts.alerts]
cpu = \"150%\"
memory = \"lots\"
[[hosts]]
name = \"a\"
user = \"u\"
password_env = \"EDGEMON_TEST_SURELY_UNSET\"
[[hosts]]
name = \"c\"
transport = \"local\"
nickname = \"x\"
[sync]
url = \"mysql://u@h/db\"
batch_size = 0
[mail]
from = \"x@\"
";
    let errors = errors(toml);
    let found: Vec<String> = errors
        .errors()
        .iter()
        .map(|e| format!("{:?} {}", e.line, e.key_path))
        .collect();
    let expected = [
        "Some(3) appliance.colour",
        "Some(23) hosts[2].nickname",
        "Some(5) collect.concurrency",
        "Some(10) hosts[0].port",
        "Some(12) hosts[0].mail",
        "Some(14) hosts[0].alerts.cpu",
        "Some(15) hosts[0].alerts.memory",
        "Some(17) hosts[1].name",
        "Some(16) hosts[1].address",
        "Some(19) hosts[1].password_env",
        "Some(26) sync.batch_size",
        "Some(28) mail.from",
    ];
    for want in expected {
        assert!(
            found.iter().any(|f| f == want),
            "missing {want} in:\n{errors}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{errors}");
    assert!(errors.mentions("hosts[0].alerts.cpu", "between 0% and 100%"));
    assert!(errors.mentions("hosts[1].name", "duplicate host name \"a\""));
    assert!(errors.mentions("hosts[1].password_env", "EDGEMON_TEST_SURELY_UNSET"));
    assert!(errors.mentions("hosts[0].port", "70000"));
    let first = errors.to_string();
    assert!(
        first.starts_with("edgemon.toml:3: appliance.colour: unknown key `colour`"),
        "{first}"
    );
}

#[test]
fn exactly_one_auth_method_per_ssh_host() {
    let two = format!(
        "{BASE}[[hosts]]\nname = \"a\"\naddress = \"h\"\nuser = \"u\"\nuse_agent = true\npassword = \"p\"\n"
    );
    assert!(errors(&two).mentions("hosts[0].auth", "exactly one"));
    let none = format!("{BASE}[[hosts]]\nname = \"a\"\naddress = \"h\"\nuser = \"u\"\n");
    assert!(errors(&none).mentions("hosts[0].auth", "exactly one"));
    // A host's own method replaces the inherited one.
    let inherited = format!(
        "{BASE}[defaults]\nuser = \"u\"\nidentity_file = \"/nonexistent/key\"\n[[hosts]]\nname = \"a\"\naddress = \"h\"\n[[hosts]]\nname = \"b\"\naddress = \"h\"\nuse_agent = true\n"
    );
    let config = ok(&inherited);
    let auth: Vec<&Auth> = config
        .hosts
        .iter()
        .filter_map(|h| match &h.transport {
            Transport::Ssh(target) => Some(&target.auth),
            Transport::Local => None,
        })
        .collect();
    assert!(matches!(auth[0], Auth::IdentityFile { .. }));
    assert!(matches!(auth[1], Auth::Agent));
}

#[test]
fn a_missing_identity_file_is_a_warning_not_an_error() {
    let toml = format!(
        "{BASE}[[hosts]]\nname = \"a\"\naddress = \"h\"\nuser = \"u\"\nidentity_file = \"keys/none\"\n"
    );
    let resolved = load_env(&toml, &[]).0.expect("valid");
    assert!(
        resolved
            .warnings
            .iter()
            .any(|w| w.contains("hosts[0].identity_file") && w.contains("does not exist"))
    );
}

#[test]
fn passwords_from_env_files_and_inline() {
    let toml = format!(
        "{BASE}[[hosts]]\nname = \"a\"\naddress = \"h\"\nuser = \"u\"\npassword_env = \"PW\"\n[[hosts]]\nname = \"b\"\naddress = \"h\"\nuser = \"u\"\npassword = \"inline\"\n"
    );
    let resolved = load_env(&toml, &[("PW", "from-env")]).0.expect("valid");
    let passwords: Vec<String> = resolved
        .config
        .hosts
        .iter()
        .filter_map(|h| match &h.transport {
            Transport::Ssh(SshTarget {
                auth: Auth::Password(secret),
                ..
            }) => Some(secret.expose().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(passwords, ["from-env", "inline"]);
    assert!(resolved.inline_secrets);
    assert!(
        resolved
            .warnings
            .iter()
            .any(|w| w.contains("hosts[1].password"))
    );
}

#[test]
fn limits_merge_host_over_defaults() {
    let toml = format!(
        "{BASE}[defaults.alerts]\ncpu = \"80%\"\nswap = \"off\"\n[[hosts]]\nname = \"l\"\ntransport = \"local\"\n[hosts.alerts]\nmemory = \"50%\"\n"
    );
    let limits = &ok(&toml).hosts[0].alerts;
    assert_eq!(limits.cpu, units::Percent::new(80.0));
    assert_eq!(limits.memory, units::Percent::new(50.0));
    assert_eq!(limits.swap, None);
    assert_eq!(limits.unreachable_after, Some(3));
}

#[test]
fn mail_addresses() {
    for good in [
        "a@b",
        "ops@example.org",
        "first.last+tag@mail.example.co.uk",
    ] {
        assert!(resolve::is_mail_address(good), "{good}");
    }
    for bad in [
        "", "a", "@b", "a@", "a b@c", "a@b..c", "<a@b>", "a@b c", "a..b@c",
    ] {
        assert!(!resolve::is_mail_address(bad), "{bad}");
    }
}

#[test]
fn smtp_section_and_ports() {
    let toml = format!("{BASE}[smtp]\nhost = \"127.0.0.1\"\ntls = \"implicit\"\n");
    let smtp = ok(&toml).mail.smtp.expect("smtp");
    assert_eq!((smtp.port, smtp.tls), (465, SmtpTls::Implicit));
    let bad = format!("{BASE}[smtp]\nhost = \"h\"\nport = 0\ntls = \"ssl\"\n");
    let errors = errors(&bad);
    assert!(errors.mentions("smtp.port", "out of range"));
    assert!(errors.mentions("smtp.tls", "\"ssl\""));
}

#[test]
fn shipped_configs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["config/edgemon.toml", "config/example-site.toml"] {
        let env = HashMap::new();
        if let Err(errors) = load_with(&root.join(name), &env, root) {
            panic!("{name}:\n{errors}");
        }
    }
}

#[test]
fn buffer_min_free_takes_auto_a_percentage_or_a_size_and_names_a_bad_value() {
    let config = ok(BASE);
    assert_eq!(config.buffer.min_free, MinFree::Auto);
    assert_eq!(MinFree::Auto.bytes(3 << 20), (3 << 20) / 20);
    assert_eq!(MinFree::Auto.bytes(1 << 40), 64 << 20);
    let with = |value: &str| format!("{BASE}[buffer]\nmin_free = \"{value}\"\n");
    assert_eq!(ok(&with("10%")).buffer.min_free, MinFree::Percent(10.0));
    assert_eq!(ok(&with("0")).buffer.min_free, MinFree::Bytes(0));
    assert_eq!(ok(&with("64MiB")).buffer.min_free, MinFree::Bytes(64 << 20));
    for bad in ["80%", "lots"] {
        let errors = errors(&with(bad));
        let e = &errors.errors()[0];
        assert_eq!(
            (e.key_path.as_str(), e.line),
            ("buffer.min_free", Some(7)),
            "{bad}"
        );
    }
}
