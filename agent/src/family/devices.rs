//! Family `devices`: block devices of `/proc/diskstats`, whole disks only.
//!
//! A partition's I/O is part of its disk's, so reporting both doubles the cardinality and
//! counts the same requests twice; what saturates is the disk, and where space runs out is
//! the filesystems family. So partitions are left out: a device is kept when it is a whole
//! disk in `/sys/block` (disks, `dm-*`, `md*`, `nvme0n1`; partitions live only below their
//! disk there). node_exporter does the same by name (its default device exclusion
//! `^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$` drops partitions); asking
//! `/sys/block` also gets `mmcblk0p1` and other names right. Without `/sys/block` every
//! device is kept. Then the options' exclusions (`loop*`, `ram*`, ...) and the cap apply.

use edgemon_proto::report::family::Section;
use edgemon_proto::report::family::devices::Device;
use edgemon_proto::report::family::options::{AgentOptions, any_match};
use std::path::Path;

/// Sector size of `/proc/diskstats` counts, whatever the device's own.
const SECTOR: u64 = 512;

/// Parses `/proc/diskstats` (`MAJ MIN NAME reads merged sectors ms writes merged sectors ms
/// in_flight io_ticks ...`) in order; malformed lines are skipped.
pub fn parse_diskstats(text: &str) -> Vec<Device> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            let name = f.get(2)?;
            n(12)?;
            Some(Device {
                name: (*name).to_owned(),
                reads: n(3),
                writes: n(7),
                read_bytes: n(5).map(|s| s.saturating_mul(SECTOR)),
                write_bytes: n(9).map(|s| s.saturating_mul(SECTOR)),
                busy_ms: n(12),
            })
        })
        .collect()
}

/// The devices kept: whole disks (`is_disk`), not excluded, at most `max_members`; and the
/// number cut by the cap.
pub fn select(
    devices: Vec<Device>,
    options: &AgentOptions,
    is_disk: impl Fn(&str) -> bool,
) -> (Vec<Device>, usize) {
    let mut kept: Vec<Device> = devices
        .into_iter()
        .filter(|d| is_disk(&d.name) && !any_match(&options.dev_exclude, &d.name))
        .collect();
    let max = usize::try_from(options.max_members).unwrap_or(usize::MAX);
    let cut = kept.len().saturating_sub(max);
    kept.truncate(max);
    (kept, cut)
}

/// The devices section, measured now; `None` without `/proc/diskstats`.
pub fn measure(options: &AgentOptions) -> Option<Section> {
    let text = super::read("/proc/diskstats")?;
    let sys_block = Path::new("/sys/block");
    let have_sys = sys_block.is_dir();
    // Device-mapper names hold no `/`; a name with one (cciss!c0d0 is written with `!`) is
    // looked up as the kernel names it in /sys/block.
    let is_disk = |name: &str| !have_sys || sys_block.join(name.replace('/', "!")).exists();
    let (kept, cut) = select(parse_diskstats(&text), options, is_disk);
    let mut section = Section::from_typed(&kept);
    section.cut = u32::try_from(cut).unwrap_or(u32::MAX);
    Some(section)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISKSTATS: &str = "\
   8       0 sda 1000 10 20000 500 2000 20 40000 800 0 1200 1300 0 0 0 0
   8       1 sda1 900 10 18000 450 1900 20 38000 700 0 1100 1150
   7       0 loop0 5 0 10 0 0 0 0 0 0 4 0
 259       0 nvme0n1 42 0 84 1 7 0 14 2 1 30 3
 253       0 dm-0 10 0 80 1 20 0 160 2 0 9 3
 short line
";

    #[test]
    fn diskstats_counts_and_bytes() {
        let d = parse_diskstats(DISKSTATS);
        assert_eq!(d.len(), 5);
        assert_eq!(d[0].name, "sda");
        assert_eq!((d[0].reads, d[0].writes), (Some(1000), Some(2000)));
        assert_eq!(d[0].read_bytes, Some(20000 * 512));
        assert_eq!(d[0].write_bytes, Some(40000 * 512));
        assert_eq!(d[0].busy_ms, Some(1200));
        assert_eq!(d[3].busy_ms, Some(30));
    }

    #[test]
    fn whole_disks_kept_partitions_and_loops_not() {
        let disks = ["sda", "loop0", "nvme0n1", "dm-0"];
        let (kept, cut) = select(parse_diskstats(DISKSTATS), &AgentOptions::default(), |n| {
            disks.contains(&n)
        });
        let names: Vec<&str> = kept.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sda", "nvme0n1", "dm-0"]);
        assert_eq!(cut, 0);
        let two = AgentOptions {
            max_members: 2,
            ..AgentOptions::default()
        };
        let (kept, cut) = select(parse_diskstats(DISKSTATS), &two, |n| disks.contains(&n));
        assert_eq!((kept.len(), cut), (2, 1));
    }
}
