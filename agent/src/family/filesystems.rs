//! Family `filesystems`: the mounts of `/proc/self/mountinfo` (the agent's own mount
//! namespace), with the options' exclusions by mount point and type, over-mounts merged
//! (the last mount of a path is the one a path lookup reaches, so it wins), capped at
//! `max_members` before anything is statted, then sized by [`super::statfs`] under its
//! deadline. The read-only flag comes from the mount options (per mount or of the
//! superblock), so a hanging mount still reports it.

use edgemon_proto::report::family::Section;
use edgemon_proto::report::family::filesystems::Filesystem;
use edgemon_proto::report::family::options::{AgentOptions, any_match};
use std::time::Duration;

use super::statfs::{Probe, Prober};

/// One line of `mountinfo`, what the family needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount point, unescaped.
    pub mount: String,
    /// Filesystem type (`ext4`, `fuse.sshfs`).
    pub fstype: String,
    /// Source (`/dev/sda1`, `nas:/share`), unescaped.
    pub source: String,
    /// `ro` among the mount's or the superblock's options.
    pub readonly: bool,
}

/// Undoes the kernel's octal escapes of space, tab, newline and backslash (`\040`).
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) && d[0] <= b'3'
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `mountinfo` (`ID PARENT MAJ:MIN ROOT MOUNT OPTS [OPTIONAL...] - TYPE SOURCE SUPER`)
/// into its mounts in order, each mount point once: when a path is mounted over, the last
/// mount wins and takes the place of the first. Malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if dash < 6 || fields.len() < dash + 3 {
            continue;
        }
        let has_ro = |opts: &str| opts.split(',').any(|o| o == "ro");
        let mount = Mount {
            mount: unescape(fields[4]),
            fstype: unescape(fields[dash + 1]),
            source: unescape(fields[dash + 2]),
            readonly: has_ro(fields[5]) || fields.get(dash + 3).is_some_and(|s| has_ro(s)),
        };
        match out.iter_mut().find(|m| m.mount == mount.mount) {
            Some(earlier) => *earlier = mount,
            None => out.push(mount),
        }
    }
    out
}

/// The mounts the options keep, in order.
pub fn select(mounts: Vec<Mount>, options: &AgentOptions) -> Vec<Mount> {
    mounts
        .into_iter()
        .filter(|m| {
            !any_match(&options.fs_exclude_mounts, &m.mount)
                && !options.fs_exclude_types.contains(&m.fstype)
        })
        .collect()
}

/// The filesystems section, measured now.
pub fn measure(options: &AgentOptions, prober: &mut Prober) -> Section {
    let mounts = super::read("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default();
    let mut keep = select(mounts, options);
    let max = usize::try_from(options.max_members).unwrap_or(usize::MAX);
    let cut = keep.len().saturating_sub(max);
    keep.truncate(max);
    let points: Vec<String> = keep.iter().map(|m| m.mount.clone()).collect();
    let timeout = Duration::from_millis(u64::from(options.statfs_timeout_ms));
    let probes = prober.probe(&points, timeout);
    let members: Vec<Filesystem> = keep
        .into_iter()
        .zip(probes)
        .map(|(m, probe)| to_member(m, probe))
        .collect();
    let mut section = Section::from_typed(&members);
    section.cut = u32::try_from(cut).unwrap_or(u32::MAX);
    section
}

fn to_member(m: Mount, probe: Probe) -> Filesystem {
    let mut fs = Filesystem {
        mount: m.mount,
        fstype: Some(m.fstype),
        device: Some(m.source),
        readonly: Some(m.readonly),
        ..Filesystem::default()
    };
    match probe {
        Probe::Hanging => fs.hanging = true,
        Probe::Answered(None) => {}
        Probe::Answered(Some(s)) => {
            fs.size = Some(s.size);
            fs.used = Some(s.used);
            fs.avail = Some(s.avail);
            fs.files = Some(s.files);
            fs.files_free = Some(s.files_free);
            fs.readonly = Some(m.readonly || s.readonly);
        }
    }
    fs
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
25 22 8:3 / /var rw,relatime shared:3 - xfs /dev/sda3 rw,attr2
26 22 0:50 / /mnt/My\\040Disk ro,relatime shared:4 - vfat /dev/sdb1 rw,fmask=0022
27 22 0:51 / /srv/data rw,relatime - nfs4 nas:/export\\011x rw,vers=4.2
28 25 0:52 / /var rw,relatime - tmpfs tmpfs rw,size=1024k
29 22 0:53 / /run/credentials/x.service ro - ramfs ramfs rw
30 22 0:54 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw
31 22 0:55 / /data rw - ext4 /dev/sdc1 ro
bad line without dash
";

    #[test]
    fn mountinfo_unescapes_and_the_last_mount_of_a_path_wins() {
        let m = parse_mountinfo(MOUNTINFO);
        let points: Vec<&str> = m.iter().map(|m| m.mount.as_str()).collect();
        assert_eq!(
            points,
            [
                "/",
                "/proc",
                "/sys",
                "/var",
                "/mnt/My Disk",
                "/srv/data",
                "/run/credentials/x.service",
                "/var/lib/docker/overlay2/abc/merged",
                "/data"
            ]
        );
        let var = &m[3];
        assert_eq!(
            (var.fstype.as_str(), var.source.as_str()),
            ("tmpfs", "tmpfs")
        );
        assert!(m[4].readonly, "per-mount ro");
        assert!(m[8].readonly, "superblock ro");
        assert!(!m[0].readonly);
        assert_eq!(m[5].source, "nas:/export\tx");
    }

    #[test]
    fn default_exclusions_keep_real_and_tmpfs_mounts() {
        let kept = select(parse_mountinfo(MOUNTINFO), &AgentOptions::default());
        let points: Vec<&str> = kept.iter().map(|m| m.mount.as_str()).collect();
        assert_eq!(points, ["/", "/var", "/mnt/My Disk", "/srv/data", "/data"]);
        let none = AgentOptions {
            fs_exclude_mounts: Vec::new(),
            fs_exclude_types: Vec::new(),
            ..AgentOptions::default()
        };
        assert_eq!(select(parse_mountinfo(MOUNTINFO), &none).len(), 9);
    }

    #[test]
    fn unescape_leaves_other_backslashes() {
        assert_eq!(unescape("a\\134b\\040c"), "a\\b c");
        assert_eq!(unescape("a\\9b\\04"), "a\\9b\\04");
    }

    #[test]
    fn this_host_root_is_measured() {
        let mut p = Prober::new();
        let opts = AgentOptions {
            fs_exclude_mounts: Vec::new(),
            fs_exclude_types: Vec::new(),
            ..AgentOptions::default()
        };
        let s = measure(&opts, &mut p);
        let fs: Vec<Filesystem> = s.typed();
        let root = fs.iter().find(|f| f.mount == "/").expect("/ is mounted");
        assert!(
            root.size.is_some_and(|s| s > 0) && !root.hanging,
            "{root:?}"
        );
    }
}
