//! Family `filesystems`: one member per mounted filesystem, keyed by its mount point.
//!
//! Sizes come from `statvfs(2)`: `size` = blocks × frsize, `used` = (blocks − bfree) ×
//! frsize, `avail` = bavail × frsize (what unprivileged users may still write; ext4
//! reserves 5 % for root, so `used + avail` can be less than `size`), `files` and
//! `files_free` the inode counts (0 on filesystems without fixed inodes, such as btrfs).
//! A mount whose `statvfs` did not answer within the agent's deadline (a hung NFS or FUSE
//! server) is reported with `hanging = 1` and no sizes. Used % for alerts is
//! `used / (used + avail)`, as df and Zabbix compute it.

use super::{FamilySpec, Field, Kind, Member, Typed, Value, t, u};

/// The spec.
pub const SPEC: FamilySpec = FamilySpec {
    id: 2,
    name: "filesystems",
    member: "fs",
    key: "mount",
    fields: &[
        Field {
            name: "fstype",
            kind: Kind::Text,
            unit: "",
            doc: "filesystem type (ext4, xfs, nfs4, tmpfs, ...)",
            counter: false,
        },
        Field {
            name: "device",
            kind: Kind::Text,
            unit: "",
            doc: "mounted device or source",
            counter: false,
        },
        Field {
            name: "size",
            kind: Kind::U64,
            unit: "bytes",
            doc: "total size",
            counter: false,
        },
        Field {
            name: "used",
            kind: Kind::U64,
            unit: "bytes",
            doc: "space in use (size minus free)",
            counter: false,
        },
        Field {
            name: "avail",
            kind: Kind::U64,
            unit: "bytes",
            doc: "space available to unprivileged users",
            counter: false,
        },
        Field {
            name: "files",
            kind: Kind::U64,
            unit: "count",
            doc: "inodes in all",
            counter: false,
        },
        Field {
            name: "files_free",
            kind: Kind::U64,
            unit: "count",
            doc: "inodes free",
            counter: false,
        },
        Field {
            name: "readonly",
            kind: Kind::Bool,
            unit: "",
            doc: "mounted read-only",
            counter: false,
        },
        Field {
            name: "hanging",
            kind: Kind::Bool,
            unit: "",
            doc: "statvfs did not answer within the deadline",
            counter: false,
        },
    ],
    doc: "mounted filesystems: space, inodes, read-only, hanging",
};

/// Field indexes, in [`SPEC`] order.
pub const FSTYPE: usize = 0;
/// Index of `device`.
pub const DEVICE: usize = 1;
/// Index of `size`.
pub const SIZE: usize = 2;
/// Index of `used`.
pub const USED: usize = 3;
/// Index of `avail`.
pub const AVAIL: usize = 4;
/// Index of `files`.
pub const FILES: usize = 5;
/// Index of `files_free`.
pub const FILES_FREE: usize = 6;
/// Index of `readonly`.
pub const READONLY: usize = 7;
/// Index of `hanging`.
pub const HANGING: usize = 8;

/// One filesystem.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filesystem {
    /// Mount point (the key).
    pub mount: String,
    /// Filesystem type.
    pub fstype: Option<String>,
    /// Device or source.
    pub device: Option<String>,
    /// Total bytes.
    pub size: Option<u64>,
    /// Bytes in use.
    pub used: Option<u64>,
    /// Bytes available to unprivileged users.
    pub avail: Option<u64>,
    /// Inodes in all.
    pub files: Option<u64>,
    /// Inodes free.
    pub files_free: Option<u64>,
    /// Mounted read-only.
    pub readonly: Option<bool>,
    /// `statvfs` did not answer in time; sizes are absent.
    pub hanging: bool,
}

impl Filesystem {
    /// Used space in percent of `used + avail` (df's figure), when both are known.
    pub fn used_percent(&self) -> Option<f64> {
        let (used, avail) = (self.used?, self.avail?);
        let all = used.checked_add(avail)?;
        (all > 0).then(|| used as f64 * 100.0 / all as f64)
    }

    /// Inodes in use in percent, when the filesystem has fixed inodes.
    pub fn inodes_used_percent(&self) -> Option<f64> {
        let (files, free) = (self.files?, self.files_free?);
        (files > 0 && free <= files).then(|| (files - free) as f64 * 100.0 / files as f64)
    }
}

impl Typed for Filesystem {
    const SPEC: &'static FamilySpec = &SPEC;

    fn to_member(&self) -> Member {
        Member {
            key: super::clip(&self.mount).to_owned(),
            values: vec![
                t(&self.fstype),
                t(&self.device),
                u(self.size),
                u(self.used),
                u(self.avail),
                u(self.files),
                u(self.files_free),
                self.readonly.map(Value::Bool),
                Some(Value::Bool(self.hanging)),
            ],
        }
    }

    fn from_member(m: &Member) -> Filesystem {
        Filesystem {
            mount: m.key.clone(),
            fstype: m.text(FSTYPE).map(str::to_owned),
            device: m.text(DEVICE).map(str::to_owned),
            size: m.u64(SIZE),
            used: m.u64(USED),
            avail: m.u64(AVAIL),
            files: m.u64(FILES),
            files_free: m.u64(FILES_FREE),
            readonly: m.bool(READONLY),
            hanging: m.bool(HANGING).unwrap_or(false),
        }
    }
}
