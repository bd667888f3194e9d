//! Family `devices`: one member per block device, keyed by its kernel name (`sda`, `nvme0n1`).
//!
//! Cumulative counters from `/proc/diskstats`: reads and writes completed, bytes (sectors ×
//! 512), and `busy_ms`, the time the device had I/O in flight (field 10, `io_ticks`).
//! Utilisation in percent over an interval is Δbusy_ms / Δt × 100.

use super::{FamilySpec, Member, Typed, counter, u};

/// The spec.
pub const SPEC: FamilySpec = FamilySpec {
    id: 4,
    name: "devices",
    member: "dev",
    key: "name",
    fields: &[
        counter("reads", "count", "reads completed"),
        counter("writes", "count", "writes completed"),
        counter("read_bytes", "bytes", "bytes read"),
        counter("write_bytes", "bytes", "bytes written"),
        counter("busy_ms", "ms", "time with I/O in flight"),
    ],
    doc: "block devices: operations, bytes, time busy",
};

/// Index of `reads`.
pub const READS: usize = 0;
/// Index of `writes`.
pub const WRITES: usize = 1;
/// Index of `read_bytes`.
pub const READ_BYTES: usize = 2;
/// Index of `write_bytes`.
pub const WRITE_BYTES: usize = 3;
/// Index of `busy_ms`.
pub const BUSY_MS: usize = 4;

/// One block device.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Device {
    /// Kernel name (the key).
    pub name: String,
    /// Reads completed.
    pub reads: Option<u64>,
    /// Writes completed.
    pub writes: Option<u64>,
    /// Bytes read.
    pub read_bytes: Option<u64>,
    /// Bytes written.
    pub write_bytes: Option<u64>,
    /// Milliseconds with I/O in flight.
    pub busy_ms: Option<u64>,
}

impl Typed for Device {
    const SPEC: &'static FamilySpec = &SPEC;

    fn to_member(&self) -> Member {
        Member {
            key: super::clip(&self.name).to_owned(),
            values: vec![
                u(self.reads),
                u(self.writes),
                u(self.read_bytes),
                u(self.write_bytes),
                u(self.busy_ms),
            ],
        }
    }

    fn from_member(m: &Member) -> Device {
        Device {
            name: m.key.clone(),
            reads: m.u64(READS),
            writes: m.u64(WRITES),
            read_bytes: m.u64(READ_BYTES),
            write_bytes: m.u64(WRITE_BYTES),
            busy_ms: m.u64(BUSY_MS),
        }
    }
}
