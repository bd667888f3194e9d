//! Metric family sections of the report: what the agent writes reads back identically;
//! invalid members are refused one by one (counted, never silently), not the whole report;
//! an older document without sections still reads; hostile sections stay bounded.

use edgemon_proto::report::family::devices::Device;
use edgemon_proto::report::family::filesystems::{self, Filesystem};
use edgemon_proto::report::family::interfaces::Interface;
use edgemon_proto::report::family::processes::Watched;
use edgemon_proto::report::family::system::System;
use edgemon_proto::report::family::units::FailedUnit;
use edgemon_proto::report::family::{MAX_MEMBERS, Section};
use edgemon_proto::report::{ParseErrorKind, Report, parse};

fn base() -> Report {
    Report {
        version: 1,
        collected_at_ms: 1_732_500_000_123,
        cpu_percent: 12.5,
        cores: vec![10.0, 15.0],
        mem_used: 1 << 30,
        mem_total: 4 << 30,
        swap_used: 0,
        swap_total: 0,
        uptime_s: 3600,
        boot_time_s: None,
        load: None,
        hostname: Some("web1".into()),
        os: None,
        kernel: None,
        extras: vec![],
        sections: Vec::new(),
    }
}

fn full() -> Report {
    let var = Filesystem {
        mount: "/var \"x\" <&>".into(),
        fstype: Some("ext4".into()),
        device: Some("/dev/sda2".into()),
        size: Some(52_521_566_208),
        used: Some(40_001_200_128),
        avail: Some(9_832_153_088),
        files: Some(3_276_800),
        files_free: Some(3_001_122),
        readonly: Some(false),
        hanging: false,
    };
    let nfs = Filesystem {
        mount: "/mnt/share".into(),
        fstype: Some("nfs4".into()),
        device: Some("nas:/share".into()),
        hanging: true,
        ..Filesystem::default()
    };
    let mut interfaces = Section::from_typed(&[Interface {
        name: "eth0".into(),
        oper: Some("up".into()),
        speed: Some(1000),
        rx_bytes: Some(u64::MAX),
        rx_packets: Some(1),
        ..Interface::default()
    }]);
    interfaces.cut = 497;
    Report {
        sections: vec![
            Section::from_typed(&[System {
                cpu_user: Some(3.5),
                cpu_iowait: Some(0.25),
                mem_available: Some(1 << 30),
                oom_kills: Some(2),
                pid_max: Some(4_194_304),
                ..System::default()
            }]),
            Section::from_typed(&[var, nfs]),
            interfaces,
            Section::from_typed(&[Device {
                name: "nvme0n1".into(),
                reads: Some(10),
                busy_ms: Some(1234),
                ..Device::default()
            }]),
            Section::from_typed::<FailedUnit>(&[]),
            Section::from_typed(&[Watched {
                name: "postgres".into(),
                count: Some(0),
            }]),
        ],
        ..base()
    }
}

fn text(report: &Report) -> String {
    String::from_utf8(report.to_xml()).expect("UTF-8")
}

#[test]
fn every_family_round_trips() {
    let report = full();
    let xml = text(&report);
    let back = parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert_eq!(back, report, "\n{xml}");
    assert!(back.extras.is_empty(), "sections must not leak into extras");
    let fs: Vec<Filesystem> = back.typed();
    assert_eq!(fs.len(), 2);
    assert!(fs[1].hanging && fs[1].size.is_none());
    let pct = fs[0].used_percent().expect("both known");
    assert!((pct - 80.27).abs() < 0.01, "{pct}");
    assert!(xml.contains("<interfaces cut=\"497\">"), "{xml}");
    assert!(xml.contains("<units/>"), "measured, none: {xml}");
}

#[test]
fn a_report_without_sections_is_read_as_not_measured() {
    let xml = text(&base()).replace("version=\"1.1\"", "version=\"1\"");
    let report = parse(xml.as_bytes()).expect("v1.0 parses");
    assert!(report.sections.is_empty());
    assert!(report.section(&filesystems::SPEC).is_none());
}

#[test]
fn invalid_members_are_refused_and_counted_not_the_report() {
    let xml = text(&full());
    for (from, to) in [
        ("used=\"40001200128\"", "used=\"-5\""),
        ("used=\"40001200128\"", "used=\"lots\""),
        ("readonly=\"0\"", "readonly=\"maybe\""),
        ("mount=\"/mnt/share\"", "mount=\"\""),
        (
            "mount=\"/mnt/share\"",
            "mount=\"/var &quot;x&quot; &lt;&amp;&gt;\"",
        ),
    ] {
        assert!(xml.contains(from), "{from}");
        let bad = xml.replacen(from, to, 1);
        let report = parse(bad.as_bytes()).unwrap_or_else(|e| panic!("{to}: {e}"));
        let section = report.section(&filesystems::SPEC).expect("section kept");
        assert_eq!((section.members.len(), section.refused), (1, 1), "{to}");
    }
    let long = xml.replacen("/mnt/share", &"m".repeat(300), 1);
    let report = parse(long.as_bytes()).expect("report kept");
    assert_eq!(
        report.section(&filesystems::SPEC).map(|s| s.refused),
        Some(1)
    );
}

#[test]
fn unknown_attributes_and_elements_inside_a_section_are_ignored() {
    let xml = text(&full()).replacen(
        "<fs mount=\"/mnt/share\"",
        "<future a=\"1\"><deep>x</deep></future><fs colour=\"blue\" mount=\"/mnt/share\"",
        1,
    );
    let report = parse(xml.as_bytes()).expect("parses");
    assert_eq!(report, full());
    assert!(report.extras.is_empty());
}

#[test]
fn a_section_twice_or_a_bad_cut_is_an_error() {
    let xml = text(&full());
    let twice = xml.replacen("<units/>", "<units/><units/>", 1);
    assert!(matches!(
        parse(twice.as_bytes()).map_err(|e| e.kind),
        Err(ParseErrorKind::Duplicate(_))
    ));
    let cut = xml.replacen("cut=\"497\"", "cut=\"-1\"", 1);
    assert!(matches!(
        parse(cut.as_bytes()).map_err(|e| e.kind),
        Err(ParseErrorKind::NotANumber { .. })
    ));
}

#[test]
fn members_past_the_bound_are_counted_as_cut() {
    let mut many = String::from("<interfaces>");
    for i in 0..MAX_MEMBERS + 10 {
        many.push_str(&format!("<if name=\"veth{i}\" oper=\"up\"/>"));
    }
    many.push_str("</interfaces>");
    let xml = text(&base()).replacen("</stats>", &format!("{many}</stats>"), 1);
    let report = parse(xml.as_bytes()).expect("parses");
    let s = &report.sections[0];
    assert_eq!((s.members.len(), s.cut), (MAX_MEMBERS, 10));
}

#[test]
fn a_singleton_has_one_member() {
    let xml = text(&full()).replacen("<sys ", "<sys cpu_user=\"1\"/><sys ", 1);
    let report = parse(xml.as_bytes()).expect("parses");
    let s = &report.sections[0];
    assert_eq!((s.members.len(), s.refused), (1, 1));
    assert_eq!(s.members[0].f64(0), Some(1.0));
}
