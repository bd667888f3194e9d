//! Family `interfaces`: `/sys/class/net` of the agent's network namespace, one member per
//! interface by name (sorted, so the cap cuts the same ones each sample), with the options'
//! exclusions applied and the cap applied before any counter is read: a Kubernetes node
//! with 500 veths reads the files of at most `max_members` interfaces.
//! Counters are `statistics/*`; `operstate` and `speed` (absent when the kernel has none:
//! `-1` or an error for virtual interfaces and links that are down).

use edgemon_proto::report::family::Section;
use edgemon_proto::report::family::interfaces::Interface;
use edgemon_proto::report::family::options::{AgentOptions, any_match};
use std::path::Path;

use super::read_line;

const SYS_NET: &str = "/sys/class/net";

/// `speed` as the kernel writes it; `None` for `-1` (unknown) and anything else unreadable.
pub fn parse_speed(text: &str) -> Option<u64> {
    text.trim()
        .parse::<i64>()
        .ok()
        .and_then(|v| u64::try_from(v).ok())
}

/// The names kept by the options, sorted, and how many the cap cut.
pub fn select(mut names: Vec<String>, options: &AgentOptions) -> (Vec<String>, usize) {
    names.retain(|n| !any_match(&options.if_exclude, n));
    names.sort();
    let max = usize::try_from(options.max_members).unwrap_or(usize::MAX);
    let cut = names.len().saturating_sub(max);
    names.truncate(max);
    (names, cut)
}

/// One interface read from its directory `dir` (a `/sys/class/net/IF` or a fixture).
pub fn read_interface(dir: &Path, name: &str) -> Interface {
    let stat = |file: &str| {
        read_line(dir.join("statistics").join(file)).and_then(|t| t.parse::<u64>().ok())
    };
    Interface {
        name: name.to_owned(),
        oper: read_line(dir.join("operstate")).filter(|s| !s.is_empty()),
        speed: read_line(dir.join("speed")).and_then(|t| parse_speed(&t)),
        rx_bytes: stat("rx_bytes"),
        rx_packets: stat("rx_packets"),
        rx_errors: stat("rx_errors"),
        rx_drops: stat("rx_dropped"),
        tx_bytes: stat("tx_bytes"),
        tx_packets: stat("tx_packets"),
        tx_errors: stat("tx_errors"),
        tx_drops: stat("tx_dropped"),
    }
}

/// Interfaces under `root` (`/sys/class/net` or a fixture directory).
pub fn measure_in(root: &Path, options: &AgentOptions) -> Option<Section> {
    let names: Vec<String> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let (names, cut) = select(names, options);
    let members: Vec<Interface> = names
        .iter()
        .map(|n| read_interface(&root.join(n), n))
        .collect();
    let mut section = Section::from_typed(&members);
    section.cut = u32::try_from(cut).unwrap_or(u32::MAX);
    Some(section)
}

/// The interfaces section, measured now; `None` without `/sys/class/net`.
pub fn measure(options: &AgentOptions) -> Option<Section> {
    measure_in(Path::new(SYS_NET), options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn fixture(root: &Path, name: &str, oper: &str, speed: &str, rx: u64) {
        let dir = root.join(name);
        fs::create_dir_all(dir.join("statistics")).unwrap();
        fs::write(dir.join("operstate"), format!("{oper}\n")).unwrap();
        fs::write(dir.join("speed"), format!("{speed}\n")).unwrap();
        for (file, v) in [
            ("rx_bytes", rx),
            ("rx_packets", 10),
            ("rx_errors", 1),
            ("rx_dropped", 2),
            ("tx_bytes", 500),
            ("tx_packets", 5),
            ("tx_errors", 0),
            ("tx_dropped", 3),
        ] {
            fs::write(dir.join("statistics").join(file), format!("{v}\n")).unwrap();
        }
    }

    #[test]
    fn statistics_state_and_speed_from_sysfs_text() {
        let tmp = tempdir();
        fixture(&tmp, "eth0", "up", "1000", 12345);
        fixture(&tmp, "eth1", "down", "-1", 0);
        fixture(&tmp, "lo", "unknown", "", 99);
        fixture(&tmp, "veth1a2b", "up", "10000", 7);
        let s = measure_in(&tmp, &AgentOptions::default()).unwrap();
        let ifs: Vec<Interface> = s.typed();
        let names: Vec<&str> = ifs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"], "lo and veths excluded by default");
        assert_eq!(ifs[0].oper.as_deref(), Some("up"));
        assert_eq!(ifs[0].speed, Some(1000));
        assert_eq!((ifs[0].rx_bytes, ifs[0].rx_drops), (Some(12345), Some(2)));
        assert_eq!((ifs[0].tx_bytes, ifs[0].tx_drops), (Some(500), Some(3)));
        assert_eq!(ifs[1].oper.as_deref(), Some("down"));
        assert_eq!(ifs[1].speed, None, "-1 is no speed");
        fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn the_cap_cuts_the_same_interfaces_and_counts_them() {
        let names: Vec<String> = (0..500).map(|i| format!("dum{i:03}")).collect();
        let opts = AgentOptions {
            max_members: 64,
            ..AgentOptions::default()
        };
        let (kept, cut) = select(names, &opts);
        assert_eq!((kept.len(), cut), (64, 436));
        assert_eq!(kept[0], "dum000");
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "edgemon-agent-if-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
