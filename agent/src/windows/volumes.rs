//! Family `filesystems` on Windows: one member per drive letter (`GetLogicalDriveStringsW`),
//! keyed by its root path as Windows writes it (`C:\`), for fixed, removable and remote
//! drives (`GetDriveTypeW`; CD/DVD drives and RAM disks are left out, as iso9660 is on
//! Linux). The options' mount globs apply to the root path and the cap to the drives kept,
//! both before any drive is asked; the type exclusions apply to the file system name once a
//! drive has answered (`NTFS`, `ReFS`, `FAT32`, `exFAT`).
//!
//! - `size`, `avail`: `GetDiskFreeSpaceExW`'s total bytes and bytes free to this user (quotas
//!   included); `used` = total − total free;
//! - `fstype` and `readonly`: `GetVolumeInformationW`'s file system name and its
//!   `FILE_READ_ONLY_VOLUME` flag;
//! - `device`: `QueryDosDeviceW` of the drive (`\Device\HarddiskVolume3`, or the redirector
//!   path of a network drive);
//! - `files`, `files_free`: absent (NTFS has no fixed inode count).
//!
//! A network drive whose server is gone can block those calls for a long time, so they run on
//! the agent's deadline workers ([`crate::statfs::Prober`]): a drive that has not answered
//! within `statfs_timeout_ms` is `hanging`, and later samples do not ask it again until the
//! stuck call returns. A removable drive without media answers with no sizes. The agent sets
//! `SEM_FAILCRITICALERRORS` so that such a drive never raises an error dialog.

use super::{from_wide, wide};
use edgemon_proto::report::family::Section;
use edgemon_proto::report::family::filesystems::Filesystem;
use edgemon_proto::report::family::options::{AgentOptions, any_match};
use std::time::Duration;
use windows_sys::Win32::Storage::FileSystem::{
    GetDiskFreeSpaceExW, GetDriveTypeW, GetLogicalDriveStringsW, GetVolumeInformationW,
    QueryDosDeviceW,
};
use windows_sys::Win32::System::Diagnostics::Debug::{
    SEM_FAILCRITICALERRORS, SEM_NOOPENFILEERRORBOX, SetErrorMode,
};
use windows_sys::Win32::System::SystemServices::FILE_READ_ONLY_VOLUME;
use windows_sys::Win32::System::WindowsProgramming::{DRIVE_FIXED, DRIVE_REMOTE, DRIVE_REMOVABLE};

use crate::statfs::{self, Probe};

/// What a drive's calls said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Total bytes.
    pub size: u64,
    /// Bytes in use (total − total free).
    pub used: u64,
    /// Bytes free to this user.
    pub avail: u64,
    /// File system name, when `GetVolumeInformationW` answered.
    pub fstype: Option<String>,
    /// `FILE_READ_ONLY_VOLUME`, when `GetVolumeInformationW` answered.
    pub readonly: Option<bool>,
}

/// The deadline prober the sampler keeps for the volumes.
pub type Prober = statfs::Prober<Volume>;

/// A prober asking the real drives; also turns off the critical-error dialogs for this
/// process (a removable drive without media would otherwise open one).
pub fn prober() -> Prober {
    // SAFETY: sets this process's error mode; no pointers.
    unsafe { SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOOPENFILEERRORBOX) };
    Prober::with(query)
}

/// The root paths in a `GetLogicalDriveStringsW` buffer (`C:\` NUL `D:\` NUL NUL).
pub fn parse_drive_strings(buf: &[u16]) -> Vec<String> {
    buf.split(|&c| c == 0)
        .take_while(|s| !s.is_empty())
        .map(String::from_utf16_lossy)
        .collect()
}

/// Whether a drive of `GetDriveTypeW`'s `kind` is measured: fixed, removable and remote.
pub fn is_measured(kind: u32) -> bool {
    matches!(kind, DRIVE_FIXED | DRIVE_REMOVABLE | DRIVE_REMOTE)
}

/// Whether `GetVolumeInformationW`'s file system flags say read-only.
pub fn is_readonly(flags: u32) -> bool {
    flags & FILE_READ_ONLY_VOLUME != 0
}

/// `GetDiskFreeSpaceExW`'s three figures as a volume's size, used and available bytes.
pub fn space(free_to_caller: u64, total: u64, total_free: u64) -> (u64, u64, u64) {
    (
        total,
        total.saturating_sub(total_free),
        free_to_caller.min(total),
    )
}

/// The member for drive `root` with `device` and its probe's outcome.
pub fn to_member(root: String, device: Option<String>, probe: Probe<Volume>) -> Filesystem {
    let mut fs = Filesystem {
        mount: root,
        device,
        ..Filesystem::default()
    };
    match probe {
        Probe::Hanging => fs.hanging = true,
        Probe::Answered(None) => {}
        Probe::Answered(Some(v)) => {
            fs.size = Some(v.size);
            fs.used = Some(v.used);
            fs.avail = Some(v.avail);
            fs.fstype = v.fstype;
            fs.readonly = v.readonly;
        }
    }
    fs
}

/// The drives' root paths and types now.
fn drives() -> Vec<(String, u32)> {
    let mut buf = vec![0u16; 512];
    loop {
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        // SAFETY: `buf` holds `len` UTF-16 units.
        let n = unsafe { GetLogicalDriveStringsW(len, buf.as_mut_ptr()) } as usize;
        if n == 0 {
            return Vec::new();
        }
        if n >= buf.len() {
            if n > 1 << 16 {
                return Vec::new();
            }
            buf.resize(n + 1, 0);
            continue;
        }
        return parse_drive_strings(&buf[..=n])
            .into_iter()
            .map(|root| {
                let w = wide(&root);
                // SAFETY: `w` is NUL-terminated.
                let kind = unsafe { GetDriveTypeW(w.as_ptr()) };
                (root, kind)
            })
            .collect();
    }
}

/// The NT device path of drive `root` (`C:\` → `\Device\HarddiskVolume3`).
fn dos_device(root: &str) -> Option<String> {
    let name = wide(root.trim_end_matches('\\'));
    let mut buf = vec![0u16; 1024];
    // SAFETY: `name` is NUL-terminated; `buf` holds its length in UTF-16 units.
    let n = unsafe { QueryDosDeviceW(name.as_ptr(), buf.as_mut_ptr(), buf.len() as u32) };
    let device = from_wide(buf.get(..n as usize)?);
    (!device.is_empty()).then_some(device)
}

/// Asks drive `root` for its space and volume information (on a deadline worker); `None`
/// when it has no space to tell (no media, access denied, gone).
fn query(root: &str) -> Option<Volume> {
    let w = wide(root);
    let (mut free_to_caller, mut total, mut total_free) = (0u64, 0u64, 0u64);
    // SAFETY: `w` is NUL-terminated; the three outputs are valid u64s.
    let ok = unsafe {
        GetDiskFreeSpaceExW(w.as_ptr(), &mut free_to_caller, &mut total, &mut total_free)
    };
    if ok == 0 {
        return None;
    }
    let (size, used, avail) = space(free_to_caller, total, total_free);
    let mut fs_name = [0u16; 64];
    let mut flags = 0u32;
    // SAFETY: `w` is NUL-terminated; `fs_name` holds its length in UTF-16 units; the
    // outputs not wanted are null, which the call allows.
    let ok = unsafe {
        GetVolumeInformationW(
            w.as_ptr(),
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut flags,
            fs_name.as_mut_ptr(),
            fs_name.len() as u32,
        )
    };
    let (fstype, readonly) = if ok != 0 {
        let name = from_wide(&fs_name);
        ((!name.is_empty()).then_some(name), Some(is_readonly(flags)))
    } else {
        (None, None)
    };
    Some(Volume {
        size,
        used,
        avail,
        fstype,
        readonly,
    })
}

/// The drives the options keep, in drive order, and how many the cap cut.
pub fn select(drives: Vec<(String, u32)>, options: &AgentOptions) -> (Vec<String>, usize) {
    let mut keep: Vec<String> = drives
        .into_iter()
        .filter(|(root, kind)| is_measured(*kind) && !any_match(&options.fs_exclude_mounts, root))
        .map(|(root, _)| root)
        .collect();
    let max = usize::try_from(options.max_members).unwrap_or(usize::MAX);
    let cut = keep.len().saturating_sub(max);
    keep.truncate(max);
    (keep, cut)
}

/// The filesystems section, measured now.
pub fn measure(options: &AgentOptions, prober: &mut Prober) -> Section {
    let (roots, cut) = select(drives(), options);
    let timeout = Duration::from_millis(u64::from(options.statfs_timeout_ms));
    let probes = prober.probe(&roots, timeout);
    let members: Vec<Filesystem> = roots
        .into_iter()
        .zip(probes)
        .map(|(root, probe)| {
            let device = dos_device(&root);
            to_member(root, device, probe)
        })
        .filter(|fs| {
            fs.fstype
                .as_ref()
                .is_none_or(|t| !options.fs_exclude_types.contains(t))
        })
        .collect();
    let mut section = Section::from_typed(&members);
    section.cut = u32::try_from(cut).unwrap_or(u32::MAX);
    section
}

#[cfg(test)]
mod tests {
    use super::*;
    use windows_sys::Win32::System::WindowsProgramming::{DRIVE_CDROM, DRIVE_RAMDISK};

    #[test]
    fn drive_strings_types_and_flags() {
        let buf: Vec<u16> = "C:\\\0D:\\\0Z:\\\0\0junk".encode_utf16().collect();
        assert_eq!(parse_drive_strings(&buf), ["C:\\", "D:\\", "Z:\\"]);
        assert!(parse_drive_strings(&[0, 0]).is_empty());
        assert!(
            is_measured(DRIVE_FIXED) && is_measured(DRIVE_REMOVABLE) && is_measured(DRIVE_REMOTE)
        );
        assert!(!is_measured(DRIVE_CDROM) && !is_measured(DRIVE_RAMDISK) && !is_measured(0));
        assert!(is_readonly(FILE_READ_ONLY_VOLUME | 0x2) && !is_readonly(0x2));
        assert_eq!(space(30, 100, 40), (100, 60, 30));
        assert_eq!(
            space(300, 100, 400),
            (100, 0, 100),
            "never more than the total"
        );
    }

    #[test]
    fn members_for_answered_hanging_and_empty_drives() {
        let v = Volume {
            size: 100,
            used: 60,
            avail: 30,
            fstype: Some("NTFS".into()),
            readonly: Some(false),
        };
        let fs = to_member(
            "C:\\".into(),
            Some("\\Device\\HarddiskVolume3".into()),
            Probe::Answered(Some(v)),
        );
        assert_eq!(
            (fs.size, fs.used, fs.avail),
            (Some(100), Some(60), Some(30))
        );
        assert_eq!(
            (fs.fstype.as_deref(), fs.readonly, fs.hanging),
            (Some("NTFS"), Some(false), false)
        );
        assert_eq!((fs.files, fs.files_free), (None, None));
        let hung = to_member("Z:\\".into(), None, Probe::Hanging);
        assert!(hung.hanging && hung.size.is_none());
        let empty = to_member("E:\\".into(), None, Probe::Answered(None));
        assert!(!empty.hanging && empty.size.is_none());
    }

    #[test]
    fn selection_keeps_measured_types_applies_globs_then_the_cap() {
        let drives = vec![
            ("A:\\".into(), DRIVE_REMOVABLE),
            ("C:\\".into(), DRIVE_FIXED),
            ("D:\\".into(), DRIVE_CDROM),
            ("E:\\".into(), DRIVE_FIXED),
            ("Z:\\".into(), DRIVE_REMOTE),
        ];
        let mut o = AgentOptions::default();
        assert_eq!(
            select(drives.clone(), &o),
            (
                vec!["A:\\".into(), "C:\\".into(), "E:\\".into(), "Z:\\".into()],
                0
            )
        );
        o.fs_exclude_mounts = vec!["Z:*".into()];
        o.max_members = 2;
        assert_eq!(select(drives, &o), (vec!["A:\\".into(), "C:\\".into()], 1));
    }

    #[test]
    fn this_host_has_a_c_drive() {
        let mut p = prober();
        let s = measure(&AgentOptions::default(), &mut p);
        let fs: Vec<Filesystem> = s.typed();
        let c = fs
            .iter()
            .find(|f| f.mount == "C:\\")
            .expect("C:\\ is measured");
        assert!(c.size.is_some_and(|s| s > 0) && !c.hanging, "{c:?}");
        assert!(c.used <= c.size, "{c:?}");
    }
}
