//! Tests of the Config.xml import against the fixtures in
//! tests/fixtures/config/, and of the round trip through `load`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::{Auth, Transport, load_with, units::Percent};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn load_toml(toml: &str) -> crate::config::Config {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("imported.toml"), toml).expect("write");
    match load_with(&PathBuf::from("imported.toml"), &HashMap::new(), dir.path()) {
        Ok(resolved) => resolved.config,
        Err(errors) => panic!("imported TOML does not load:\n{errors}\n---\n{toml}"),
    }
}

#[test]
fn a_multi_client_file_imports_and_loads_to_the_same_hosts() {
    let toml = import(&fixture("Config.xml")).expect("imports");
    let config = load_toml(&toml);
    let seen: Vec<(String, String, String, Option<String>)> = config
        .hosts
        .iter()
        .map(|h| match &h.transport {
            Transport::Ssh(t) => (
                h.name.clone(),
                format!("{}:{}", t.address, t.port),
                t.user.clone(),
                h.mail.clone(),
            ),
            Transport::Local => panic!("ssh expected"),
        })
        .collect();
    let mail = |m: &str| Some(m.to_string());
    assert_eq!(
        seen,
        vec![
            (
                "127-0-0-1".into(),
                "127.0.0.1:22".into(),
                "user".into(),
                mail("asa@asda.com")
            ),
            (
                "10-0-0-5".into(),
                "10.0.0.5:22".into(),
                "root".into(),
                mail("ops@example.org")
            ),
            (
                "10-0-0-5-2".into(),
                "10.0.0.5:2222".into(),
                "admin".into(),
                None
            ),
            (
                "build.example.org".into(),
                "build.example.org:22".into(),
                "ci".into(),
                mail("ci@example.org")
            ),
        ]
    );
    let first = &config.hosts[0].alerts;
    assert_eq!(
        (first.memory, first.cpu, first.swap),
        (Percent::new(50.0), Percent::new(20.0), None)
    );
    assert_eq!(config.hosts[1].alerts.swap, Percent::new(75.0));
    match &config.hosts[1].transport {
        Transport::Ssh(t) => assert!(matches!(&t.auth, Auth::Password(p) if p.expose() == "p&ss")),
        Transport::Local => panic!("ssh expected"),
    }
    assert!(
        toml.contains("move"),
        "the TOML warns about inline passwords"
    );
}

#[test]
fn top_level_clients_without_a_root_element() {
    let config = load_toml(&import(&fixture("fragment.xml")).expect("imports"));
    assert_eq!(config.hosts.len(), 2);
    assert_eq!(config.hosts[1].alerts.cpu, Percent::new(10.0));
}

#[test]
fn bad_files_give_line_and_column() {
    let cases = [
        (
            "bad-typographic-quotes.xml",
            3,
            12,
            "attribute quotes must be plain ASCII quotes",
        ),
        ("bad-unclosed.xml", 4, 1, "client"),
        ("bad-alert-type.xml", 3, 5, "unknown alert type \"disk\""),
        ("bad-limit-150.xml", 3, 5, "between 0% and 100%"),
        ("bad-limit-abc.xml", 3, 5, "\"abc\""),
        ("bad-missing-ip.xml", 3, 5, "needs an ip"),
        ("bad-missing-username.xml", 2, 3, "needs a username"),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
    let on_disk = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with("bad-")
                && e.path().extension().is_some_and(|x| x == "xml")
        })
        .count();
    assert_eq!(on_disk, cases.len(), "every bad-*.xml fixture has a case");
    for (name, line, column, needle) in cases {
        let err = import(&fixture(name)).expect_err(name);
        assert_eq!((err.line, err.column), (line, column), "{name}: {err}");
        assert!(err.message.contains(needle), "{name}: {err}");
    }
}

#[test]
fn garbage_never_panics() {
    for input in [
        &b""[..],
        b"<",
        b"<client",
        b"\xff\xfe",
        b"<client ip='1' username='u'><alert/></client>",
        b"</x>",
        b"<a><client ip=\"1\" username=\"u\"></a>",
    ] {
        assert!(
            import(input).is_err(),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn imported_host_names_are_normalised_and_validated_like_the_file() {
    let long = "h".repeat(256);
    let source = format!(
        "<clients>\n<client ip=\" 10.0.0.9 \" username=\"u\"/>\n<client ip=\"{long}\" username=\"u\"/>\n</clients>\n"
    );
    let err = import(source.as_bytes()).expect_err("a 256-byte name");
    assert_eq!((err.line, err.column), (3, 1), "{err}");
    assert!(err.message.contains("256 bytes is too long"), "{err}");
    let source =
        "<client ip=\"a&#9;b\" username=\"u\"/>\n<client ip=\" 10.0.0.9 \" username=\"u\"/>\n";
    let err = import(source.as_bytes()).expect_err("a tab in the name");
    assert!(err.message.contains("control character U+0009"), "{err}");
    let toml = import(b"<client ip=\" 10.0.0.9 \" username=\"u\"/>").expect("imports");
    assert_eq!(load_toml(&toml).hosts[0].name, "10-0-0-9");
}
