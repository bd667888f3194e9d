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
    assert!(errors.mentions("smtp.port", "0 is below the minimum of 1"));
    assert!(errors.mentions("smtp.tls", "\"ssl\""));
}

#[test]
fn shipped_configs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in [
        "config/edgemon.toml",
        "config/example-site.toml",
        "packaging/etc/edgemon.toml",
    ] {
        let env = HashMap::new();
        if let Err(errors) = load_with(&root.join(name), &env, root) {
            panic!("{name}:\n{errors}");
        }
    }
}

/// Errors as `(line, key path)` pairs, for compact assertions.
fn located(errors: &ConfigErrors) -> Vec<(Option<usize>, String)> {
    errors
        .errors()
        .iter()
        .map(|e| (e.line, e.key_path.clone()))
        .collect()
}

#[test]
fn zero_interval_and_zero_unsynced_age_are_refused_with_their_lines() {
    let toml = format!(
        "{BASE}[collect]\ninterval = \"0s\"\nconnect_timeout = \"0s\"\n[buffer]\nmax_unsynced_age = \"0s\"\nmax_size = \"100TB\"\n[smtp]\nhost = \"h\"\ntimeout = \"0s\"\n"
    );
    let errors = errors(&toml);
    assert_eq!(
        located(&errors),
        [
            (Some(7), "collect.interval".to_string()),
            (Some(8), "collect.connect_timeout".to_string()),
            (Some(11), "buffer.max_size".to_string()),
            (Some(10), "buffer.max_unsynced_age".to_string()),
            (Some(14), "smtp.timeout".to_string()),
        ],
        "{errors}"
    );
    assert!(errors.mentions("collect.interval", "\"0s\" is below the minimum of 1s"));
    assert!(errors.mentions("buffer.max_unsynced_age", "minimum of 1m"));
    assert!(errors.mentions("buffer.max_size", "above the maximum of 4TiB"));
    let text = errors.to_string();
    assert!(
        text.contains("edgemon.toml:10: buffer.max_unsynced_age: \"0s\" is below the minimum"),
        "{text}"
    );
}

#[test]
fn max_reply_size_is_at_most_64_mib() {
    let at = |size: &str| format!("{BASE}[collect]\nmax_reply_size = \"{size}\"\n");
    assert_eq!(ok(&at("64MiB")).collect.max_reply_bytes, 64 << 20);
    assert!(errors(&at("64MiB 1")).errors().len() == 1);
    assert!(errors(&at("100TB")).mentions("collect.max_reply_size", "maximum of 64MiB"));
}

#[test]
fn max_unsynced_age_must_be_twice_the_sync_interval() {
    let toml = |age: &str| {
        format!(
            "[appliance]\nid = \"t\"\n[sync]\nurl = \"mysql://u@h/db\"\ninterval = \"1m\"\n[buffer]\nmax_unsynced_age = \"{age}\"\n"
        )
    };
    let errors = errors(&toml("90s"));
    assert_eq!(
        located(&errors),
        [(Some(7), "buffer.max_unsynced_age".to_string())]
    );
    assert!(
        errors.mentions("buffer.max_unsynced_age", "at least 2 x sync.interval"),
        "{errors}"
    );
    assert_eq!(
        ok(&toml("2m")).buffer.max_unsynced_age,
        Duration::from_secs(120)
    );
    // The rule holds across layers: a file value against an environment one.
    let (resolved, _dir) = load_env(&toml("10m"), &[("EDGEMON__SYNC__INTERVAL", "6m")]);
    let errors = resolved.err().expect("10m < 2 x 6m");
    assert!(errors.mentions("buffer.max_unsynced_age", "6m"), "{errors}");
}

#[test]
fn every_default_lies_within_its_bounds() {
    let config = ok(BASE);
    assert!(config.buffer.max_unsynced_age >= 2 * config.sync.interval);
    for key in keys::KEYS {
        let value = match key.default {
            Some(keys::Default::Text(text)) => keys::Raw::Text(text),
            Some(keys::Default::Int(number)) => keys::Raw::Int(number),
            Some(keys::Default::Number(number)) => keys::Raw::Number(number),
            Some(keys::Default::Flag(_)) => keys::Raw::Flag,
            None => continue,
        };
        if let Err(message) = keys::check_value(key, value) {
            panic!("default of {}: {message}", key.path);
        }
    }
}

/// A value of `key` just below its minimum and just above its maximum, as
/// TOML and as environment text; none for keys without bounds.
fn outside(key: &keys::Key) -> Vec<(toml::Value, String)> {
    use keys::Kind;
    let text = |s: String| (toml::Value::String(s.clone()), s);
    let int = |n: i64| (toml::Value::Integer(n), n.to_string());
    match key.kind {
        Kind::Duration { min, max } => {
            let mut out = vec![text(
                humantime::format_duration(max + Duration::from_secs(1)).to_string(),
            )];
            if !min.is_zero() {
                out.push(text(
                    humantime::format_duration(min - Duration::from_millis(1)).to_string(),
                ));
            }
            out
        }
        Kind::DurationOrOff { min, max } => vec![
            text(humantime::format_duration(max + Duration::from_secs(1)).to_string()),
            text(humantime::format_duration(min - Duration::from_millis(1)).to_string()),
        ],
        Kind::Size { min, max } => vec![text((min - 1).to_string()), text((max + 1).to_string())],
        Kind::Int { min, max } => vec![int(min - 1), int(max + 1)],
        Kind::Number { min, max } => vec![
            (toml::Value::Float(min - 1.0), (min - 1.0).to_string()),
            (toml::Value::Float(max + 1.0), (max + 1.0).to_string()),
        ],
        _ => Vec::new(),
    }
}

/// BASE with `value` set at `path` (`hosts[].x` in an SSH host entry,
/// `smtp.x` beside an SMTP host), as TOML text.
fn with_value(path: &str, value: toml::Value) -> String {
    let mut table: toml::Table = toml::from_str(BASE).expect("BASE is TOML");
    let (mut at, rest) = match path
        .strip_prefix("hosts[].")
        .or_else(|| path.strip_prefix("bastions[]."))
    {
        Some(rest) => {
            let host: toml::Table =
                toml::from_str("name = \"h\"\naddress = \"a\"\nuser = \"u\"\nuse_agent = true\n")
                    .expect("host TOML");
            let array = if path.starts_with("hosts") {
                "hosts"
            } else {
                "bastions"
            };
            table.insert(array.into(), toml::Value::Array(vec![host.into()]));
            let Some(toml::Value::Array(hosts)) = table.get_mut(array) else {
                unreachable!("just inserted");
            };
            let Some(toml::Value::Table(host)) = hosts.get_mut(0) else {
                unreachable!("just inserted");
            };
            (std::mem::take(host), rest)
        }
        None => (std::mem::take(&mut table), path),
    };
    if path.starts_with("smtp.") {
        let smtp = at
            .entry("smtp")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(smtp) = smtp {
            smtp.insert("host".into(), "h".into());
        }
    }
    let mut cursor = &mut at;
    let parts: Vec<&str> = rest.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        let next = cursor
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(next) = next else {
            unreachable!("a table");
        };
        cursor = next;
    }
    cursor.insert(parts[parts.len() - 1].to_string(), value);
    if path.starts_with("hosts[].") {
        table.insert("hosts".into(), toml::Value::Array(vec![at.into()]));
    } else if path.starts_with("bastions[].") {
        table.insert("bastions".into(), toml::Value::Array(vec![at.into()]));
    } else {
        table = at;
    }
    toml::to_string(&table).expect("serialize")
}

#[test]
fn every_bounded_key_refuses_values_outside_its_bounds_in_file_and_environment() {
    let mut checked = 0;
    for key in keys::KEYS {
        let concrete = key
            .path
            .replace("hosts[]", "hosts[0]")
            .replace("bastions[]", "bastions[0]");
        let name = key.path.rsplit('.').next().expect("a name");
        for (value, env_text) in outside(key) {
            let toml = with_value(key.path, value);
            let errors = errors(&toml);
            let error = errors
                .errors()
                .iter()
                .find(|e| e.key_path == concrete)
                .unwrap_or_else(|| panic!("{} not refused:\n{errors}\n{toml}", key.path));
            let line = error
                .line
                .and_then(|line| toml.lines().nth(line - 1))
                .unwrap_or_else(|| panic!("{}: no line in {error}", key.path));
            assert!(line.starts_with(name), "{error} points at {line:?}");
            assert!(error.message.contains("the m"), "{error}");
            if let Some(variable) = keys::env_name(key.path) {
                let toml = if key.path.starts_with("smtp.") {
                    format!("{BASE}[smtp]\nhost = \"h\"\n")
                } else {
                    BASE.to_string()
                };
                let (resolved, _dir) = load_env(&toml, &[(variable.as_str(), env_text.as_str())]);
                let errors = resolved.err().unwrap_or_else(|| {
                    panic!("{variable}={env_text} not refused");
                });
                assert!(
                    errors
                        .errors()
                        .iter()
                        .any(|e| e.file == format!("${variable}") && e.key_path == key.path),
                    "{variable}={env_text}:\n{errors}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} values checked");
}

#[test]
fn environment_values_are_typed_by_their_key_and_unknown_variables_refused() {
    let (resolved, _dir) = load_env(
        BASE,
        &[
            ("EDGEMON__SYNC__BATCH_SIZE", "many"),
            ("EDGEMON__SYNC__BATCHSIZE", "5"),
            ("EDGEMON__HOSTS__NAME", "x"),
            ("EDGEMON__COLLECT__RESIDENT_AGENT", "yes"),
            ("EDGEMON__COLOUR", "red"),
            ("EDGEMON__DEFAULTS__ALERTS__CPU", "150%"),
        ],
    );
    let errors = resolved.err().expect("refused");
    let found: Vec<(&str, &str)> = errors
        .errors()
        .iter()
        .map(|e| (e.file.as_str(), e.key_path.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "$EDGEMON__COLLECT__RESIDENT_AGENT",
                "collect.resident_agent"
            ),
            ("$EDGEMON__COLOUR", "colour"),
            ("$EDGEMON__HOSTS__NAME", "hosts.name"),
            ("$EDGEMON__SYNC__BATCHSIZE", "sync.batchsize"),
            ("$EDGEMON__SYNC__BATCH_SIZE", "sync.batch_size"),
            ("$EDGEMON__DEFAULTS__ALERTS__CPU", "defaults.alerts.cpu"),
        ],
        "{errors}"
    );
    assert!(errors.mentions("colour", "known sections: appliance, collect"));
    assert!(errors.mentions("defaults.alerts.cpu", "between 0% and 100%"));
    assert!(errors.mentions("sync.batch_size", "expected an integer, found \"many\""));
    assert!(errors.mentions("sync.batchsize", "unknown key `sync.batchsize`"));
    assert!(errors.mentions("sync.batchsize", "batch_size"));
    let (resolved, _dir) = load_env(
        BASE,
        &[
            ("EDGEMON__COLLECT__RESIDENT_AGENT", "FALSE"),
            ("EDGEMON__MAIL__RECIPIENTS", "a@b, c@d"),
            ("EDGEMON__ALERT__CLEAR_MARGIN", "2.5"),
        ],
    );
    let config = resolved.expect("valid").config;
    assert!(!config.collect.resident_agent);
    assert_eq!(config.mail.recipients, ["a@b", "c@d"]);
    assert_eq!(config.alert.clear_margin, 2.5);
}

#[test]
fn host_names_are_trimmed_and_duplicates_after_trimming_name_both_lines() {
    let toml = format!(
        "{BASE}[[hosts]]\nname = \"box\"\ntransport = \"local\"\n[[hosts]]\nname = \"box \"\ntransport = \"local\"\n"
    );
    let errors = errors(&toml);
    assert_eq!(located(&errors), [(Some(10), "hosts[1].name".to_string())]);
    let text = errors.to_string();
    assert!(
        text.contains("edgemon.toml:10: hosts[1].name: duplicate host name \"box\" (also hosts[0].name, line 7)"),
        "{text}"
    );
    let trimmed = format!("{BASE}[[hosts]]\nname = \"  web-1 \"\ntransport = \"local\"\n");
    let resolved = load_env(&trimmed, &[]).0.expect("valid");
    assert_eq!(resolved.config.hosts[0].name, "web-1");
    assert!(
        resolved
            .warnings
            .iter()
            .any(|w| w.contains("hosts[0].name") && w.contains("\"web-1\"")),
        "{:?}",
        resolved.warnings
    );
}

#[test]
fn host_names_with_control_characters_or_over_255_bytes_are_refused() {
    let long = "x".repeat(256);
    for (name, needle) in [
        ("a\\u0007b", "control character U+0007"),
        ("tab\\there", "control character U+0009"),
        ("   ", "empty"),
        (long.as_str(), "256 bytes is too long"),
    ] {
        let toml = format!("{BASE}[[hosts]]\nname = \"{name}\"\ntransport = \"local\"\n");
        let errors = errors(&toml);
        assert!(errors.mentions("hosts[0].name", needle), "{name}: {errors}");
    }
    let most = "é".repeat(127);
    let toml = format!("{BASE}[[hosts]]\nname = \"{most}\"\ntransport = \"local\"\n");
    assert_eq!(ok(&toml).hosts[0].name.len(), 254);
}

/// The leaf key paths of the serde structs in `file.rs`, found by
/// deserializing them from a recorder that offers every field.
mod introspect {
    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    type Error = de::value::Error;

    pub(super) fn paths<'de, T: serde::Deserialize<'de>>() -> Vec<String> {
        let mut out = Vec::new();
        let _ = T::deserialize(Recorder {
            path: String::new(),
            out: &mut out,
        });
        out
    }

    struct Recorder<'a> {
        path: String,
        out: &'a mut Vec<String>,
    }

    impl Recorder<'_> {
        fn leaf(self) {
            self.out.push(self.path);
        }
    }

    impl<'de> Deserializer<'de> for Recorder<'_> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.leaf();
            visitor.visit_str("")
        }
        fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_any(visitor)
        }
        fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_any(visitor)
        }
        fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.leaf();
            visitor.visit_i64(0)
        }
        fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.leaf();
            visitor.visit_f64(0.0)
        }
        fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.leaf();
            visitor.visit_bool(false)
        }
        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_some(self)
        }
        fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_seq(Seq {
                path: self.path,
                out: self.out,
                done: false,
            })
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_map(Fields {
                path: self.path,
                out: self.out,
                fields,
                next: 0,
            })
        }

        serde::forward_to_deserialize_any! {
            i8 i16 i32 i128 u8 u16 u32 u64 u128 f32 char bytes byte_buf unit
            unit_struct newtype_struct tuple tuple_struct map enum identifier ignored_any
        }
    }

    struct Seq<'a> {
        path: String,
        out: &'a mut Vec<String>,
        done: bool,
    }

    impl<'de> SeqAccess<'de> for Seq<'_> {
        type Error = Error;

        fn next_element_seed<S: DeserializeSeed<'de>>(
            &mut self,
            seed: S,
        ) -> Result<Option<S::Value>, Error> {
            if self.done {
                return Ok(None);
            }
            self.done = true;
            let path = format!("{}[]", self.path);
            let before = self.out.len();
            let value = seed.deserialize(Recorder {
                path: path.clone(),
                out: self.out,
            })?;
            // A list of strings is one key, not a table of keys.
            if self.out.len() == before + 1 && self.out[before] == path {
                self.out[before] = self.path.clone();
            }
            Ok(Some(value))
        }
    }

    struct Fields<'a> {
        path: String,
        out: &'a mut Vec<String>,
        fields: &'static [&'static str],
        next: usize,
    }

    impl<'de> MapAccess<'de> for Fields<'_> {
        type Error = Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, Error> {
            let Some(field) = self.fields.get(self.next) else {
                return Ok(None);
            };
            seed.deserialize(de::value::StrDeserializer::<Error>::new(field))
                .map(Some)
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
            let field = self.fields[self.next];
            self.next += 1;
            let path = if self.path.is_empty() {
                field.to_string()
            } else {
                format!("{}.{field}", self.path)
            };
            seed.deserialize(Recorder {
                path,
                out: self.out,
            })
        }
    }
}

#[test]
fn serde_structs_match_the_key_table() {
    let mut serde_keys = introspect::paths::<file::ConfigFile>();
    let mut table: Vec<String> = keys::KEYS.iter().map(|k| k.path.to_string()).collect();
    serde_keys.sort();
    table.sort();
    assert_eq!(serde_keys, table, "file.rs and keys.rs disagree");
}

#[test]
fn example_site_documents_every_key() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("config/example-site.toml")).expect("read");
    let mut documented = Vec::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim_start_matches(['#', ' ']);
        if let Some(header) = line.strip_prefix("[[").and_then(|l| l.split_once("]]")) {
            section = format!("{}[]", header.0.replace("hosts.", "hosts[]."));
        } else if let Some(header) = line.strip_prefix('[').and_then(|l| l.split_once(']')) {
            section = header.0.replace("hosts.", "hosts[].");
        } else if let Some((name, _)) = line.split_once('=') {
            let name = name.trim();
            if !name.is_empty() && !name.contains(' ') {
                documented.push(format!("{section}.{name}"));
            }
        }
    }
    let missing: Vec<&str> = keys::KEYS
        .iter()
        .map(|k| k.path)
        .filter(|path| !documented.iter().any(|d| d == path))
        .collect();
    assert!(missing.is_empty(), "example-site.toml lacks {missing:?}");
}

#[test]
fn readme_lists_every_key_as_the_table_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README");
    let table = keys::markdown_table();
    assert!(
        readme.contains(&table),
        "README.md's key table is stale; replace it with:\n{table}"
    );
}

#[test]
fn the_web_page_off_loopback_needs_a_password_file() {
    assert!(ok(BASE).web.listen.is_none());
    let local = ok(&format!("{BASE}[web]\nlisten = \"127.0.0.1:9180\"\n"));
    assert_eq!(
        local.web.listen,
        Some("127.0.0.1:9180".parse().expect("address"))
    );
    assert!(local.web.password.is_none());

    let open = errors(&format!("{BASE}[web]\nlisten = \"0.0.0.0:9180\"\n")).to_string();
    assert!(
        open.contains("web.listen") && open.contains("web.password_file"),
        "{open}"
    );
    let bad = errors(&format!("{BASE}[web]\nlisten = \"anywhere\"\n")).to_string();
    assert!(bad.contains("web.listen"), "{bad}");

    let secrets = tempfile::tempdir().expect("temp dir");
    let file = secrets.path().join("web-password");
    std::fs::write(&file, "s3cret\n").expect("write password");
    let guarded = ok(&format!(
        "{BASE}[web]\nlisten = \"[::]:9180\"\npassword_file = \"{}\"\n",
        file.display()
    ));
    assert_eq!(
        guarded.web.password.as_ref().map(|p| p.expose()),
        Some("s3cret")
    );

    std::fs::write(&file, "\n").expect("write empty password");
    let empty = errors(&format!(
        "{BASE}[web]\nlisten = \"0.0.0.0:9180\"\npassword_file = \"{}\"\n",
        file.display()
    ))
    .to_string();
    assert!(empty.contains("empty"), "{empty}");
    let missing = errors(&format!(
        "{BASE}[web]\nlisten = \"0.0.0.0:9180\"\npassword_file = \"{}\"\n",
        secrets.path().join("absent").display()
    ))
    .to_string();
    assert!(missing.contains("cannot read"), "{missing}");
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

#[test]
fn weekly_silences_are_parsed_and_checked() {
    let config = ok(&format!(
        "{BASE}\n[[silence]]\nrules = [\"cpu\"]\nweekly = \"Sat 22:00-Sun 06:00\"\ncomment = \"backup\"\n"
    ));
    let w = &config.silences[0];
    assert_eq!((w.start, w.end), (5 * 1440 + 22 * 60, 6 * 1440 + 6 * 60));
    // 2026-11-28 is a Saturday.
    let sat_23 = 1_795_906_800_000; // 2026-11-28T23:00:00Z
    let (from, to) = w.window_at(sat_23).expect("in force on Saturday night");
    assert_eq!((from, to), (sat_23 - 3_600_000, sat_23 + 7 * 3_600_000));
    assert_eq!(
        w.window_at(sat_23 + 8 * 3_600_000),
        None,
        "over on Sunday 07:00"
    );
    // Wrapping over the end of the week.
    let (s, e) = WeeklySilence::parse_window("Sun 23:00-Mon 01:00").expect("parse");
    let wrap = WeeklySilence {
        start: s,
        end: e,
        ..w.clone()
    };
    assert!(
        wrap.window_at(sat_23 + 24 * 3_600_000 + 30 * 60_000)
            .is_some()
    );

    let text = errors(&format!(
        "{BASE}\n[[silence]]\nhosts = [\"nope\"]\nrules = [\"disk\"]\nweekly = \"Caturday 25:00-Sun 06:00\"\n"
    ))
    .to_string();
    for needle in [
        "silence[0].hosts[0]",
        "silence[0].rules[0]",
        "silence[0].weekly",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
}

/// `[appliance]` and a `[sync]` section with `sync` as its body.
fn with_sync(sync: &str) -> String {
    format!("[appliance]\nid = \"t\"\ndata_dir = \"var\"\n[sync]\n{sync}")
}

#[test]
fn sync_urls_lists_the_nodes_of_a_cluster_in_order() {
    let config = ok(&with_sync(
        "urls = [\"mysql://u@db1:3306/em\", \"mysql://u@db2:3307/em\"]\n",
    ));
    let urls: Vec<&str> = config.sync.urls.iter().map(|u| u.expose()).collect();
    assert_eq!(urls, ["mysql://u@db1:3306/em", "mysql://u@db2:3307/em"]);
    assert_eq!(ok(BASE).sync.urls.len(), 1);
}

#[test]
fn url_env_and_url_file_hold_several_urls_separated_by_whitespace_or_lines() {
    let (resolved, _dir) = load_env(
        &with_sync("url_env = \"EM_URLS\"\n"),
        &[("EM_URLS", "mysql://u:p1@db1/em mysql://u:p1@db2/em")],
    );
    let config = resolved.expect("valid").config;
    assert_eq!(config.sync.urls.len(), 2);
    assert_eq!(config.sync.urls[1].expose(), "mysql://u:p1@db2/em");

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("edgemon.toml"),
        with_sync("url_file = \"urls\"\n"),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("urls"),
        "# the cluster\nmysql://u:p@db1/em\n\nmysql://u:p@db2/em\r\nmysql://u:p@db3/em\n",
    )
    .expect("write");
    let config = load_with(Path::new("edgemon.toml"), &HashMap::new(), dir.path())
        .expect("valid")
        .config;
    let urls: Vec<&str> = config.sync.urls.iter().map(|u| u.expose()).collect();
    assert_eq!(
        urls,
        [
            "mysql://u:p@db1/em",
            "mysql://u:p@db2/em",
            "mysql://u:p@db3/em"
        ]
    );
    std::fs::write(dir.path().join("urls"), "# nothing yet\n\n").expect("write");
    let errors = load_with(Path::new("edgemon.toml"), &HashMap::new(), dir.path())
        .err()
        .expect("an empty file is refused");
    assert!(errors.mentions("sync.url_file", "holds no URL"), "{errors}");
}

#[test]
fn ambiguous_or_inconsistent_sync_urls_are_refused_at_their_line_with_passwords_masked() {
    let both = errors(&with_sync(
        "url = \"mysql://u@db1/em\"\nurls = [\"mysql://u@db2/em\"]\n",
    ));
    assert_eq!(
        located(&both),
        [(Some(6), "sync.urls".to_string())],
        "{both}"
    );
    assert!(both.mentions("sync.urls", "found url and urls"), "{both}");

    let twice = errors(&with_sync(
        "urls = [\"mysql://u:hunter2@db1:3306/em\", \"mysql://u:hunter2@db1/em\"]\n",
    ));
    assert!(
        twice.mentions("sync.urls[1]", "db1:3306 is listed twice"),
        "{twice}"
    );
    let other_db = errors(&with_sync(
        "urls = [\"mysql://u:hunter2@db1/em\", \"mysql://u:hunter2@db2/other\"]\n",
    ));
    assert!(
        other_db.mentions("sync.urls[1]", "one database"),
        "{other_db}"
    );
    let scheme = errors(&with_sync("urls = [\"postgres://u:hunter2@db1/em\"]\n"));
    assert!(scheme.mentions("sync.urls[0]", "mysql://"), "{scheme}");
    let joined = errors(&with_sync(
        "url = \"mysql://u:hunter2@db1/em,mysql://u:hunter2@db2/em\"\n",
    ));
    assert!(joined.mentions("sync.url", "several URLs"), "{joined}");
    let empty = errors(&with_sync("urls = []\n"));
    assert!(empty.mentions("sync.urls", "empty"), "{empty}");
    for errors in [&twice, &other_db, &scheme, &joined] {
        assert!(!errors.to_string().contains("hunter2"), "{errors}");
    }
}

#[test]
fn sync_schedule_timezone_and_rate_limit_are_parsed_and_bad_ones_named_with_their_line() {
    let config = ok(BASE);
    assert!(config.sync.schedule.is_always());
    assert_eq!(config.sync.timezone, crate::sync::schedule::Zone::Local);
    assert_eq!(config.sync.rate_limit, crate::sync::pace::RateLimit::Off);
    let config = ok(&format!(
        "{BASE}schedule = \"Mon-Fri 20:00-06:00, Sat-Sun *\"\ntimezone = \"UTC\"\nrate_limit = \"256KiB/s\"\n"
    ));
    assert!(!config.sync.schedule.is_always());
    assert_eq!(config.sync.timezone, crate::sync::schedule::Zone::Utc);
    assert_eq!(
        config.sync.rate_limit,
        crate::sync::pace::RateLimit::Bytes(262_144.0)
    );

    let text = errors(&format!(
        "{BASE}schedule = \"Mon-Fry 20:00-06:00\"\ntimezone = \"Mars\"\nrate_limit = \"fast\"\n"
    ))
    .to_string();
    for needle in [
        "edgemon.toml:6: sync.schedule",
        "\"Mon-Fry\" is neither days",
        "edgemon.toml:7: sync.timezone",
        "edgemon.toml:8: sync.rate_limit",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }

    // Closed longer than max_unsynced_age: samples would be shed before the window opens.
    let text = errors(&format!(
        "{BASE}schedule = \"Sun 01:00-02:00\"\n[buffer]\nmax_unsynced_age = \"2d\"\n"
    ))
    .to_string();
    assert!(
        text.contains("sync.schedule") && text.contains("stays closed for up to 6days 23h"),
        "{text}"
    );
    ok(&format!(
        "{BASE}schedule = \"Sun 01:00-02:00\"\n[buffer]\nmax_unsynced_age = \"8d\"\n"
    ));
}

// --- Addresses and bastions (issue 21) ---

fn ssh_of(config: &Config, name: &str) -> SshTarget {
    match &config
        .hosts
        .iter()
        .find(|h| h.name == name)
        .expect("host")
        .transport
    {
        Transport::Ssh(target) => target.clone(),
        Transport::Local => panic!("{name} is local"),
    }
}

#[test]
fn ipv6_addresses_are_accepted_bare_in_brackets_and_with_a_port() {
    let config = ok(&format!(
        "{BASE}[defaults]\nuser = \"u\"\nuse_agent = true\n\
         [[hosts]]\nname = \"bare\"\naddress = \"::1\"\n\
         [[hosts]]\nname = \"brackets\"\naddress = \"[::1]\"\nport = 2222\n\
         [[hosts]]\nname = \"with-port\"\naddress = \"[::1]:2222\"\n\
         [[hosts]]\nname = \"name-port\"\naddress = \"box.example.org:2200\"\n"
    ));
    for (name, port) in [("bare", 22), ("brackets", 2222), ("with-port", 2222)] {
        let t = ssh_of(&config, name);
        assert_eq!((t.address.as_str(), t.port), ("::1", port), "{name}");
    }
    let t = ssh_of(&config, "name-port");
    assert_eq!((t.address.as_str(), t.port), ("box.example.org", 2200));
    let host = config
        .hosts
        .iter()
        .find(|h| h.name == "with-port")
        .expect("host");
    assert_eq!(host.display_address(), "u@[::1]:2222");
    assert_eq!(
        super::hosts::parse_address("[::1]:2222"),
        Ok(("::1".to_string(), Some(2222)))
    );
}

#[test]
fn bad_addresses_and_contradicting_ports_are_named() {
    let errors = errors(&format!(
        "{BASE}[defaults]\nuser = \"u\"\nuse_agent = true\n\
         [[hosts]]\nname = \"a\"\naddress = \"[::1\"\n\
         [[hosts]]\nname = \"b\"\naddress = \"fe80::1:22:x\"\n\
         [[hosts]]\nname = \"c\"\naddress = \"[::1]:2222\"\nport = 22\n\
         [[hosts]]\nname = \"d\"\naddress = \"[box]:22\"\n"
    ));
    let text = errors.to_string();
    assert!(
        text.contains("hosts[0].address") && text.contains("without ']'"),
        "{text}"
    );
    assert!(
        text.contains("hosts[1].address") && text.contains("[address]:port"),
        "{text}"
    );
    assert!(
        text.contains("hosts[2].port") && text.contains("contradicts"),
        "{text}"
    );
    assert!(
        text.contains("hosts[3].address") && text.contains("not an IPv6"),
        "{text}"
    );
}

#[test]
fn via_names_bastions_and_chains_expand_outermost_first() {
    let config = ok(&format!(
        "{BASE}[defaults]\nuser = \"u\"\nuse_agent = true\nvia = \"edge\"\n\
         [[bastions]]\nname = \"edge\"\naddress = \"[2001:db8::1]:2200\"\nuser = \"jump\"\n\
         identity_file = \"/nonexistent/jump_key\"\nhost_key_policy = \"strict\"\n\
         [[bastions]]\nname = \"inner\"\naddress = \"10.1.0.1\"\nvia = \"edge\"\nhandshakes = 3\n\
         [[hosts]]\nname = \"default-via\"\naddress = \"10.1.0.10\"\n\
         [[hosts]]\nname = \"chain\"\naddress = \"10.2.0.10\"\nvia = \"inner\"\n\
         [[hosts]]\nname = \"explicit\"\naddress = \"10.2.0.11\"\nvia = [\"edge\", \"inner\"]\n\
         [[hosts]]\nname = \"direct\"\naddress = \"10.0.0.1\"\nvia = []\n"
    ));
    let names = |t: &SshTarget| t.via.iter().map(|b| b.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ssh_of(&config, "default-via")), ["edge"]);
    assert_eq!(names(&ssh_of(&config, "chain")), ["edge", "inner"]);
    // A bastion named twice on the way is passed once per mention, as ProxyJump would.
    assert_eq!(
        names(&ssh_of(&config, "explicit")),
        ["edge", "edge", "inner"]
    );
    assert!(ssh_of(&config, "direct").via.is_empty());
    let edge = &ssh_of(&config, "default-via").via[0];
    assert_eq!(edge.login.address, "2001:db8::1");
    assert_eq!(edge.login.port, 2200);
    assert_eq!(edge.login.user, "jump");
    assert_eq!(edge.login.host_key_policy, HostKeyPolicy::Strict);
    assert_eq!(edge.handshakes, super::hosts::DEFAULT_HANDSHAKES);
    assert!(edge.login.via.is_empty());
    let inner = &ssh_of(&config, "chain").via[1];
    assert_eq!((inner.login.user.as_str(), inner.handshakes), ("u", 3));
    assert_eq!(
        inner.login.auth,
        Auth::Agent,
        "defaults' method when it sets none"
    );
}

#[test]
fn unknown_bastions_cycles_and_bad_names_are_errors_of_their_key() {
    let errors = errors(&format!(
        "{BASE}[defaults]\nuser = \"u\"\nuse_agent = true\n\
         [[bastions]]\nname = \"a\"\naddress = \"10.0.0.1\"\nvia = \"b\"\n\
         [[bastions]]\nname = \"b\"\naddress = \"10.0.0.2\"\nvia = \"a\"\n\
         [[bastions]]\nname = \"bad name\"\naddress = \"10.0.0.3\"\n\
         [[bastions]]\nname = \"b\"\naddress = \"10.0.0.4\"\n\
         [[hosts]]\nname = \"x\"\naddress = \"10.0.1.1\"\nvia = \"nowhere\"\n\
         [[hosts]]\nname = \"y\"\naddress = \"10.0.1.2\"\nvia = \"a\"\n"
    ));
    let text = errors.to_string();
    assert!(
        text.contains("hosts[0].via") && text.contains("no bastion named \"nowhere\""),
        "{text}"
    );
    assert!(
        text.contains("hosts[1].via") && text.contains("reached through itself"),
        "{text}"
    );
    assert!(
        text.contains("bastions[2].name") && text.contains("not a bastion name"),
        "{text}"
    );
    assert!(
        text.contains("bastions[3].name") && text.contains("duplicate bastion"),
        "{text}"
    );
}

// --- hosts import (issue 21) ---

fn imported_config(import: &super::host_import::Import) -> Config {
    let text = format!(
        "{BASE}[defaults]\nuser = \"monitor\"\nuse_agent = true\n{}",
        import.render("test")
    );
    ok(&text)
}

fn fixture(name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join("tests/data/import").join(name)).expect("fixture")
}

fn via_of(config: &Config, host: &str) -> Vec<String> {
    ssh_of(config, host)
        .via
        .iter()
        .map(|b| b.name.clone())
        .collect()
}

#[test]
fn an_ssh_config_with_proxyjump_chains_imports_into_a_config_that_loads() {
    let import = super::ssh_import::import(&fixture("ssh_config"));
    let config = imported_config(&import);
    let names: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "jump-dmz",
            "ot-gw",
            "plc-1",
            "plc-2",
            "historian",
            "legacy-hmi",
            "build"
        ]
    );
    assert_eq!(via_of(&config, "ot-gw"), ["jump-dmz"]);
    assert_eq!(via_of(&config, "plc-1"), ["jump-dmz", "ot-gw"]);
    let plc2 = ssh_of(&config, "plc-2");
    assert_eq!(
        (plc2.address.as_str(), plc2.port, plc2.user.as_str()),
        ("fd00:7::12", 2222, "scada")
    );
    let dmz = &plc2.via[0];
    assert_eq!(
        (
            dmz.login.address.as_str(),
            dmz.login.port,
            dmz.login.user.as_str()
        ),
        ("jump.plant7.example.org", 2201, "jumper")
    );
    assert_eq!(dmz.login.host_key_policy, HostKeyPolicy::Strict);
    assert!(
        matches!(&dmz.login.auth, Auth::IdentityFile { path, .. } if path.ends_with(".ssh/id_dmz"))
    );
    // A user@host:port jump and a ProxyCommand `ssh -W` jump are bastions of their own.
    let historian = ssh_of(&config, "historian");
    assert_eq!(historian.via[0].login.user, "ops");
    let hmi = ssh_of(&config, "legacy-hmi");
    assert_eq!(
        (hmi.via[0].login.user.as_str(), hmi.via[0].login.port),
        ("jumper", 2201)
    );
    assert!(via_of(&config, "build").is_empty(), "ProxyJump none");
    let unmapped = import.unmapped.join("\n");
    for expected in [
        "line 45: Match host *.lab",
        "line 38: ForwardAgent yes",
        "line 43: StrictHostKeyChecking no",
        "line 3: ServerAliveInterval 30",
    ] {
        assert!(
            unmapped.contains(expected),
            "{expected:?} not listed in:\n{unmapped}"
        );
    }
}

#[test]
fn an_ini_inventory_with_groups_children_and_jump_args_imports_into_a_config_that_loads() {
    let import = super::ansible_import::import(&fixture("inventory.ini")).expect("import");
    let config = imported_config(&import);
    let names: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "jump",
            "plc-01",
            "plc-02",
            "plc-03",
            "hmi-1",
            "hist-1",
            "localhost"
        ]
    );
    let plc = ssh_of(&config, "plc-02");
    assert_eq!(
        (plc.address.as_str(), plc.user.as_str()),
        ("plc-02", "scada")
    );
    assert!(
        matches!(&plc.auth, Auth::IdentityFile { path, .. } if path.ends_with(".ssh/id_scada"))
    );
    let jump = &plc.via[0];
    assert_eq!(
        (
            jump.login.address.as_str(),
            jump.login.port,
            jump.login.user.as_str()
        ),
        ("jump.plant7.example.org", 2201, "jumper")
    );
    // The parent group's -J reaches hist-1 (not in scada); the child's args win for scada.
    assert_eq!(via_of(&config, "hist-1"), via_of(&config, "plc-01"));
    let local = config
        .hosts
        .iter()
        .find(|h| h.name == "localhost")
        .expect("local");
    assert_eq!(local.transport, Transport::Local);
    assert!(!names.contains(&"win-eng"));
    let unmapped = import.unmapped.join("\n");
    for expected in [
        "win-eng: ansible_connection=winrm",
        "ansible_password (secret",
        "ansible_become",
        "StrictHostKeyChecking=no",
    ] {
        assert!(
            unmapped.contains(expected),
            "{expected:?} not listed in:\n{unmapped}"
        );
    }
}

#[test]
fn a_yaml_inventory_with_nested_children_imports_into_a_config_that_loads() {
    let import = super::ansible_import::import(&fixture("inventory.yml")).expect("import");
    let config = imported_config(&import);
    let names: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "jump.plant7.example.org",
            "plc-1",
            "plc-2",
            "hmi-1",
            "robot-a1"
        ]
    );
    let robot = ssh_of(&config, "robot-a1");
    assert_eq!(
        (robot.address.as_str(), robot.user.as_str()),
        ("fd00:7::a1", "robot")
    );
    assert_eq!(
        robot.via.len(),
        1,
        "the ot group's ProxyCommand reaches its child group"
    );
    assert_eq!(robot.via[0].login.user, "jumper");
    assert_eq!(ssh_of(&config, "plc-1").user, "monitor", "all's vars");
    assert!(import.unmapped.join("\n").contains("ansible_host_note"));
}

#[test]
fn jump_specs_and_ssh_arguments_parse_as_ssh_writes_them() {
    use super::host_import::{jump_of_proxy_command, jumps_in_ssh_args, parse_jump};
    let j = parse_jump("ssh://ops@[2001:db8::1]:2200").expect("jump");
    assert_eq!(
        (j.address.as_str(), j.port, j.user.as_deref()),
        ("2001:db8::1", Some(2200), Some("ops"))
    );
    assert_eq!(
        jumps_in_ssh_args("-o ProxyJump=a,b -o ServerAliveInterval=5"),
        (Some("a,b".into()), vec!["-o ServerAliveInterval=5".into()])
    );
    assert_eq!(
        jumps_in_ssh_args("-J u@j:2201").0.as_deref(),
        Some("u@j:2201")
    );
    assert_eq!(
        jump_of_proxy_command("ssh -W %h:%p -q -l u -p 2201 j").as_deref(),
        Ok("u@j:2201")
    );
    assert!(jump_of_proxy_command("nc -X connect -x proxy:3128 %h %p").is_err());
}

#[test]
fn families_default_to_the_agents_defaults_and_watches_resolve_per_host() {
    use crate::config::AgentOptions;
    use edgemon_proto::report::family::options::WatchBy;
    let host = "[[hosts]]\nname = \"me\"\ntransport = \"local\"\n";
    let config = ok(&format!("{BASE}{host}"));
    assert_eq!(config.hosts[0].agent, AgentOptions::default());

    let toml = format!(
        "{BASE}[collect.families]\nmax_members = 8\nstatfs_timeout = \"500ms\"\n\
         if_exclude = []\nfs_exclude_types = [\"tmpfs\"]\n\
         {host}watch = [\"sshd\", \"pg=cmdline:*postgres -D*\"]\n"
    );
    let agent = &ok(&toml).hosts[0].agent;
    assert_eq!((agent.max_members, agent.statfs_timeout_ms), (8, 500));
    assert!(agent.if_exclude.is_empty(), "[] excludes nothing");
    assert_eq!(agent.fs_exclude_types, ["tmpfs"]);
    assert_eq!(
        agent.fs_exclude_mounts,
        AgentOptions::default().fs_exclude_mounts
    );
    let watched: Vec<(&str, &WatchBy, &str)> = agent
        .watch
        .iter()
        .map(|w| (w.name.as_str(), &w.by, w.pattern.as_str()))
        .collect();
    assert_eq!(
        watched,
        [
            ("sshd", &WatchBy::Name, "sshd"),
            ("pg", &WatchBy::Cmdline, "*postgres -D*")
        ]
    );

    let (env, _dir) = load_env(
        &format!("{BASE}{host}"),
        &[
            ("EDGEMON__COLLECT__FAMILIES__IF_EXCLUDE", "lo, eth9*"),
            ("EDGEMON__COLLECT__FAMILIES__MAX_MEMBERS", "16"),
        ],
    );
    let agent = &env.expect("valid with the environment").config.hosts[0].agent;
    assert_eq!(agent.if_exclude, ["lo", "eth9*"]);
    assert_eq!(agent.max_members, 16);

    let bad = errors(&format!(
        "{BASE}[collect.families]\nmax_members = 0\n{host}watch = [\"a=x\", \"a=y\", \"=z\"]\n"
    ))
    .to_string();
    assert!(bad.contains("collect.families.max_members"), "{bad}");
    assert!(
        bad.contains("hosts[0].watch") && bad.contains("watched twice"),
        "{bad}"
    );
    assert!(bad.contains("name before `=` is empty"), "{bad}");
}

// --- Family alert rules (issue 22) ---------------------------------------------------------

use super::units::Percent;

#[test]
fn family_alert_defaults_host_overrides_and_glob_entries_resolve() {
    let config = ok(&format!(
        "{BASE}[defaults.alerts]\nfs_used = \"85%\"\nunit_ignore = [\"user@*\"]\n\
         [[defaults.alerts.mounts]]\nmount = \"/backup*\"\nused = \"95%\"\nfilling = false\n\
         [[hosts]]\nname = \"a\"\ntransport = \"local\"\n\
         [[hosts]]\nname = \"b\"\ntransport = \"local\"\n\
         [hosts.alerts]\nfs_used_critical = \"off\"\nunit_ignore = []\nmem_available = \"5%\"\n\
         [[hosts.alerts.mounts]]\nmount = \"/backup/db*\"\nused = \"99%\"\n\
         [[hosts.alerts.interfaces]]\nname = \"wg*\"\ndown = false\nerrors = \"off\"\n\
         [alert]\nfill_window = \"6h\"\nfill_below = 20\n"
    ));
    let a = &config.hosts[0].alerts.families;
    let b = &config.hosts[1].alerts.families;
    // Shipped defaults where nothing is set, the file's defaults where set.
    assert_eq!(a.fs.used, Percent::new(85.0));
    assert_eq!(a.fs.used_critical, Percent::new(90.0));
    assert_eq!(a.iface.errors, Percent::new(1.0));
    assert_eq!(a.mem_available, Percent::new(10.0));
    assert!(a.fs.filling && a.unit_failed && a.clock_skew);
    assert_eq!(a.unit_ignore, ["user@*"]);
    // The host's own keys win; its ignore list replaces the default one.
    assert_eq!(b.fs.used_critical, None);
    assert!(b.unit_ignore.is_empty());
    assert_eq!(b.mem_available, Percent::new(5.0));
    // Entries: the host's first, then the defaults'; per setting the first match wins.
    let db = b.mount("/backup/db1").expect("not ignored");
    assert_eq!((db.used, db.filling), (Percent::new(99.0), false));
    let other = b.mount("/backup/www").expect("not ignored");
    assert_eq!(other.used, Percent::new(95.0));
    assert_eq!(b.mount("/var").map(|m| m.used), Some(Percent::new(85.0)));
    let wg = b.interface("wg0").expect("not ignored");
    assert_eq!((wg.down, wg.errors), (false, None));
    assert_eq!(
        config.alert.families.fill_window,
        Duration::from_secs(6 * 3600)
    );
    assert_eq!(
        config.alert.families.fill_below,
        Percent::new(20.0).expect("20%")
    );
    assert_eq!(
        config.alert.families.fill_warning,
        Duration::from_secs(24 * 3600)
    );
    assert_eq!(
        config.alert.families.max_clock_skew,
        config.collect.max_clock_skew
    );
}

#[test]
fn family_alert_mistakes_name_their_key() {
    let text = errors(&format!(
        "{BASE}[defaults.alerts]\nfs_used = \"180%\"\n\
         [[defaults.alerts.mounts]]\nused = \"90%\"\n\
         [[hosts]]\nname = \"a\"\ntransport = \"local\"\n[hosts.alerts]\nfs_typo = true\n\
         [[hosts.alerts.interfaces]]\nname = \"eth*\"\nerrors = \"lots\"\n\
         [alert]\nfill_critical = \"2d\"\n"
    ))
    .to_string();
    for needle in [
        "defaults.alerts.fs_used",
        "defaults.alerts.mounts[0].mount",
        "hosts[0].alerts.fs_typo",
        "hosts[0].alerts.interfaces[0].errors",
        "alert.fill_critical",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
}

#[test]
fn config_check_warns_of_windows_hosts_only_when_this_build_has_no_windows_agent() {
    let config = ok(&format!(
        "{BASE}[[hosts]]\nname = \"win-a\"\ntransport = \"local\"\nos = \"windows\"\n\
         [[hosts]]\nname = \"self\"\ntransport = \"local\"\n\
         [[hosts]]\nname = \"win-b\"\naddress = \"198.18.0.9\"\nuser = \"mon\"\npassword = \"x\"\nos = \"windows\"\n"
    ));
    let warnings = commands::windows_warnings(&config, false);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("warning: hosts with os = \"windows\" (win-a, win-b)"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains("built without the Windows agent"),
        "{}",
        warnings[0]
    );
    assert!(commands::windows_warnings(&config, true).is_empty());
    let linux = ok(&format!(
        "{BASE}[[hosts]]\nname = \"self\"\ntransport = \"local\"\n"
    ));
    assert!(commands::windows_warnings(&linux, false).is_empty());
}
