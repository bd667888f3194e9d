//! Family `system`, a singleton: CPU by mode, memory available, OOM kills and the kernel's
//! limits next to their use.
//!
//! - `cpu_user` … `cpu_idle`: percent of all CPU time over the agent's window (the same
//!   window as the report's total CPU), from `/proc/stat` (`user` includes `nice`, `system`
//!   includes `irq` and `softirq`);
//! - `mem_available`: `MemAvailable` of `/proc/meminfo`, what can be had without swapping;
//! - `oom_kills`: `oom_kill` of `/proc/vmstat` (cumulative since boot; kernel ≥ 4.13);
//! - `procs` / `pid_max`: tasks in existence and `/proc/sys/kernel/pid_max`;
//! - `files_open` / `files_max`: the first and third numbers of `/proc/sys/fs/file-nr`.

use super::{FamilySpec, Field, Kind, Member, Typed, d, u};

const fn pct(name: &'static str, doc: &'static str) -> Field {
    Field {
        name,
        kind: Kind::F64,
        unit: "percent",
        doc,
        counter: false,
    }
}

const fn gauge(name: &'static str, unit: &'static str, doc: &'static str) -> Field {
    Field {
        name,
        kind: Kind::U64,
        unit,
        doc,
        counter: false,
    }
}

/// The spec.
pub const SPEC: FamilySpec = FamilySpec {
    id: 1,
    name: "system",
    member: "sys",
    key: "",
    fields: &[
        pct("cpu_user", "CPU time in user mode (with nice)"),
        pct("cpu_system", "CPU time in the kernel (with irq, softirq)"),
        pct("cpu_iowait", "CPU time idle waiting for I/O"),
        pct("cpu_steal", "CPU time taken by the hypervisor"),
        pct("cpu_idle", "CPU time idle"),
        gauge(
            "mem_available",
            "bytes",
            "memory available without swapping",
        ),
        Field {
            name: "oom_kills",
            kind: Kind::U64,
            unit: "count",
            doc: "processes killed by the OOM killer since boot",
            counter: true,
        },
        gauge("procs", "count", "processes and threads"),
        gauge("pid_max", "count", "the kernel's pid_max"),
        gauge("files_open", "count", "open file handles"),
        gauge("files_max", "count", "the kernel's file-max"),
    ],
    doc: "CPU by mode, memory available, OOM kills, processes and open files vs limits",
};

/// Index of `cpu_user`.
pub const CPU_USER: usize = 0;
/// Index of `cpu_system`.
pub const CPU_SYSTEM: usize = 1;
/// Index of `cpu_iowait`.
pub const CPU_IOWAIT: usize = 2;
/// Index of `cpu_steal`.
pub const CPU_STEAL: usize = 3;
/// Index of `cpu_idle`.
pub const CPU_IDLE: usize = 4;
/// Index of `mem_available`.
pub const MEM_AVAILABLE: usize = 5;
/// Index of `oom_kills`.
pub const OOM_KILLS: usize = 6;
/// Index of `procs`.
pub const PROCS: usize = 7;
/// Index of `pid_max`.
pub const PID_MAX: usize = 8;
/// Index of `files_open`.
pub const FILES_OPEN: usize = 9;
/// Index of `files_max`.
pub const FILES_MAX: usize = 10;

/// The system section's one member.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct System {
    /// CPU % in user mode.
    pub cpu_user: Option<f64>,
    /// CPU % in the kernel.
    pub cpu_system: Option<f64>,
    /// CPU % waiting for I/O.
    pub cpu_iowait: Option<f64>,
    /// CPU % stolen by the hypervisor.
    pub cpu_steal: Option<f64>,
    /// CPU % idle.
    pub cpu_idle: Option<f64>,
    /// Bytes available without swapping.
    pub mem_available: Option<u64>,
    /// OOM kills since boot.
    pub oom_kills: Option<u64>,
    /// Processes and threads.
    pub procs: Option<u64>,
    /// pid_max.
    pub pid_max: Option<u64>,
    /// Open file handles.
    pub files_open: Option<u64>,
    /// file-max.
    pub files_max: Option<u64>,
}

impl Typed for System {
    const SPEC: &'static FamilySpec = &SPEC;

    fn to_member(&self) -> Member {
        Member {
            key: String::new(),
            values: vec![
                d(self.cpu_user),
                d(self.cpu_system),
                d(self.cpu_iowait),
                d(self.cpu_steal),
                d(self.cpu_idle),
                u(self.mem_available),
                u(self.oom_kills),
                u(self.procs),
                u(self.pid_max),
                u(self.files_open),
                u(self.files_max),
            ],
        }
    }

    fn from_member(m: &Member) -> System {
        System {
            cpu_user: m.f64(CPU_USER),
            cpu_system: m.f64(CPU_SYSTEM),
            cpu_iowait: m.f64(CPU_IOWAIT),
            cpu_steal: m.f64(CPU_STEAL),
            cpu_idle: m.f64(CPU_IDLE),
            mem_available: m.u64(MEM_AVAILABLE),
            oom_kills: m.u64(OOM_KILLS),
            procs: m.u64(PROCS),
            pid_max: m.u64(PID_MAX),
            files_open: m.u64(FILES_OPEN),
            files_max: m.u64(FILES_MAX),
        }
    }
}
