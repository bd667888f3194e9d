//! The stats report: what the agent writes reads back identically, and
//! hostile or broken documents are refused with an error naming the problem.

use edgemon_proto::report::{MAX_DEPTH, MAX_EXTRAS, MAX_INPUT, ParseErrorKind, Report, parse};

fn sample() -> Report {
    Report {
        version: 1,
        collected_at_ms: 1_732_500_000_123,
        cpu_percent: 12.5,
        cores: vec![10.0, 15.000000000000002, 0.0, 100.0],
        mem_used: 1 << 30,
        mem_total: 4 << 30,
        swap_used: 0,
        swap_total: 2 << 30,
        uptime_s: 3600,
        boot_time_s: Some(1_732_496_400),
        load: Some([0.5, 0.25, 0.1]),
        hostname: Some("web1 <&> \"quoted\" 'x'".into()),
        os: Some("Debian GNU/Linux 12".into()),
        kernel: Some("6.1.0-18-amd64".into()),
        extras: vec![("temperature".into(), "41.5".into())],
        sections: Vec::new(),
    }
}

/// The sample's XML with `from` replaced by `to` (which must occur).
fn edited(from: &str, to: &str) -> Vec<u8> {
    let xml = String::from_utf8(sample().to_xml()).expect("writer emits UTF-8");
    assert!(xml.contains(from), "fixture has no {from:?}:\n{xml}");
    xml.replacen(from, to, 1).into_bytes()
}

fn kind(xml: &[u8]) -> ParseErrorKind {
    match parse(xml) {
        Ok(r) => panic!("accepted: {r:?}\n{}", String::from_utf8_lossy(xml)),
        Err(e) => {
            assert!(
                e.position <= xml.len() as u64,
                "position {} past the end",
                e.position
            );
            e.kind
        }
    }
}

#[test]
fn a_written_report_parses_back_identically() {
    let report = sample();
    assert_eq!(parse(&report.to_xml()).expect("own output parses"), report);
    let minimal = Report {
        boot_time_s: None,
        load: None,
        hostname: None,
        os: None,
        kernel: None,
        extras: vec![],
        sections: Vec::new(),
        cores: vec![],
        ..sample()
    };
    assert_eq!(parse(&minimal.to_xml()).expect("minimal parses"), minimal);
}

#[test]
fn the_document_has_the_documented_shape() {
    let xml = String::from_utf8(sample().to_xml()).expect("UTF-8");
    for needle in [
        "<stats version=\"1.1\">",
        "<collected_at>1732500000123</collected_at>",
        "<core id=\"3\">100</core>",
        "<memory>",
        "<uptime>3600</uptime>",
        "<fifteen>0.1</fifteen>",
        "web1 &lt;&amp;&gt;",
    ] {
        assert!(xml.contains(needle), "{needle:?} missing from\n{xml}");
    }
}

#[test]
fn unknown_elements_are_kept_as_extras() {
    let xml = edited(
        "<uptime>",
        "<gpu><temp>70</temp><fan>1200</fan></gpu><uptime>",
    );
    let report = parse(&xml).expect("unknown elements are tolerated");
    assert_eq!(
        report.extras,
        vec![
            ("gpu/temp".to_owned(), "70".to_owned()),
            ("gpu/fan".to_owned(), "1200".to_owned()),
            ("temperature".to_owned(), "41.5".to_owned()),
        ]
    );
}

#[test]
fn extras_are_bounded() {
    let many: String = (0..MAX_EXTRAS + 50)
        .map(|i| format!("<x{i}>v</x{i}>"))
        .collect();
    let report = parse(&edited("<uptime>", &format!("{many}<uptime>"))).expect("parses");
    assert_eq!(report.extras.len(), MAX_EXTRAS);
}

#[test]
fn a_newer_minor_version_is_accepted_and_another_major_is_not() {
    assert!(parse(&edited("version=\"1.1\"", "version=\"1.7\"")).is_ok());
    assert_eq!(
        kind(&edited("version=\"1.1\"", "version=\"2\"")),
        ParseErrorKind::UnsupportedVersion("2".into())
    );
    assert_eq!(
        kind(&edited(" version=\"1.1\"", "")),
        ParseErrorKind::Missing("stats@version".into())
    );
}

#[test]
fn missing_required_fields_are_named() {
    for (cut, name) in [
        ("<collected_at>1732500000123</collected_at>", "collected_at"),
        ("<total>12.5</total>", "cpu/total"),
        ("<uptime>3600</uptime>", "uptime"),
        ("<one>0.5</one>", "load/one"),
    ] {
        assert_eq!(
            kind(&edited(cut, "")),
            ParseErrorKind::Missing(name.into()),
            "without {name}"
        );
    }
    assert_eq!(
        kind(&edited("<core id=\"1\">", "<core id=\"7\">")),
        ParseErrorKind::Missing("cpu/core id=1".into())
    );
}

#[test]
fn duplicate_and_bad_values_are_named() {
    assert_eq!(
        kind(&edited(
            "<uptime>3600</uptime>",
            "<uptime>3600</uptime><uptime>1</uptime>"
        )),
        ParseErrorKind::Duplicate("uptime".into())
    );
    assert!(matches!(
        kind(&edited("<uptime>3600</uptime>", "<uptime>soon</uptime>")),
        ParseErrorKind::NotANumber { element, .. } if element == "uptime"
    ));
    assert!(matches!(
        kind(&edited("<uptime>3600</uptime>", "<uptime>-1</uptime>")),
        ParseErrorKind::NotANumber { element, .. } if element == "uptime"
    ));
    for bad in ["100.5", "-1", "NaN", "inf"] {
        assert!(
            matches!(
                kind(&edited("<total>12.5</total>", &format!("<total>{bad}</total>"))),
                ParseErrorKind::OutOfRange { element, .. } if element == "cpu/total"
            ),
            "cpu/total = {bad}"
        );
    }
    assert!(matches!(
        kind(&edited("<used>0</used>", "<used>99999999999999</used>")),
        ParseErrorKind::OutOfRange { element, .. } if element == "swap/used"
    ));
    assert_eq!(
        kind(&edited("<core id=\"1\">", "<core>")),
        ParseErrorKind::Missing("cpu/core@id".into())
    );
}

#[test]
fn malformed_documents_are_refused_with_a_position() {
    for xml in [
        &b""[..],
        b"not xml at all",
        b"<stats version=\"1\"><uptime>1</stats>",
        b"<stats version=\"1\">",
        b"<other/>",
        b"<stats version=\"1\"/><stats version=\"1\"/>",
        b"\xff\xfe<",
    ] {
        let e = parse(xml).expect_err("malformed");
        assert!(!e.to_string().is_empty());
    }
    let cut = sample().to_xml();
    for len in 0..cut.len() {
        assert!(
            parse(&cut[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
}

#[test]
fn oversized_input_is_refused_up_front() {
    let big = vec![b' '; MAX_INPUT + 1];
    assert_eq!(
        kind(&big),
        ParseErrorKind::TooLarge {
            len: MAX_INPUT + 1,
            max: MAX_INPUT
        }
    );
}

#[test]
fn deep_nesting_is_refused() {
    let open: String = (0..MAX_DEPTH + 5).map(|_| "<a>").collect();
    let close: String = (0..MAX_DEPTH + 5).map(|_| "</a>").collect();
    let xml = edited("<uptime>", &format!("{open}{close}<uptime>"));
    assert_eq!(kind(&xml), ParseErrorKind::TooDeep(MAX_DEPTH));
    // A million open tags within the size limit stops early, not by recursion.
    let deep = "<a>".repeat(300_000);
    assert!(parse(format!("<stats version=\"1\">{deep}").as_bytes()).is_err());
}

#[test]
fn too_many_elements_are_refused() {
    let flood = "<x/>".repeat(20_000);
    assert!(matches!(
        kind(&edited("<uptime>", &format!("{flood}<uptime>"))),
        ParseErrorKind::TooManyElements(_)
    ));
}

#[test]
fn billion_laughs_is_refused_as_a_doctype() {
    let bomb = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<stats version="1"><hostname>&lol9;</hostname></stats>"#;
    assert_eq!(kind(bomb), ParseErrorKind::Doctype);
}

#[test]
fn external_entities_are_refused() {
    let xxe = br#"<?xml version="1.0"?>
<!DOCTYPE stats [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<stats version="1"><hostname>&xxe;</hostname></stats>"#;
    assert_eq!(kind(xxe), ParseErrorKind::Doctype);
    // Without a DOCTYPE, an undeclared entity is refused by name.
    assert_eq!(
        kind(&edited("<os>Debian", "<os>&xxe;Debian")),
        ParseErrorKind::Entity("xxe".into())
    );
    // The five predefined entities and character references are fine.
    let ok = parse(&edited(
        "<os>Debian",
        "<os>&lt;&gt;&amp;&apos;&quot;&#65;Debian",
    ))
    .expect("ok");
    assert_eq!(ok.os.as_deref(), Some("<>&'\"ADebian GNU/Linux 12"));
}
