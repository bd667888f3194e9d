//! Family `system`: CPU by mode from two `/proc/stat` readings (taken by the sampler at the
//! same moments as the total CPU, so both cover one window), `MemAvailable` of
//! `/proc/meminfo`, `oom_kill` of `/proc/vmstat`, tasks from `/proc/loadavg` against
//! `/proc/sys/kernel/pid_max`, and `/proc/sys/fs/file-nr` against its `file-max`.

use edgemon_proto::report::family::Section;
use edgemon_proto::report::family::system::System;

use super::{read, read_line};

/// The aggregate `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// user + nice (guest time is already inside user).
    pub user: u64,
    /// system + irq + softirq.
    pub system: u64,
    /// Idle.
    pub idle: u64,
    /// Idle waiting for I/O.
    pub iowait: u64,
    /// Stolen by the hypervisor.
    pub steal: u64,
}

impl CpuTimes {
    fn total(&self) -> u64 {
        self.user
            .saturating_add(self.system)
            .saturating_add(self.idle)
            .saturating_add(self.iowait)
            .saturating_add(self.steal)
    }
}

/// Parses the `cpu` line of `/proc/stat` (`cpu user nice system idle iowait irq softirq
/// steal ...`); older kernels without the later columns count them as 0.
pub fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let n: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let at = |i: usize| n.get(i).copied().unwrap_or(0);
    if n.len() < 4 {
        return None;
    }
    Some(CpuTimes {
        user: at(0).saturating_add(at(1)),
        system: at(2).saturating_add(at(5)).saturating_add(at(6)),
        idle: at(3),
        iowait: at(4),
        steal: at(7),
    })
}

/// Reads `/proc/stat` now.
pub fn read_stat() -> Option<CpuTimes> {
    parse_stat(&read("/proc/stat")?)
}

/// Percent per mode (user, system, iowait, steal, idle) between two readings; `None` when no
/// tick passed or a counter went backwards.
pub fn cpu_modes(before: &CpuTimes, after: &CpuTimes) -> Option<[f64; 5]> {
    let d = |a: u64, b: u64| b.checked_sub(a);
    let parts = [
        d(before.user, after.user)?,
        d(before.system, after.system)?,
        d(before.iowait, after.iowait)?,
        d(before.steal, after.steal)?,
        d(before.idle, after.idle)?,
    ];
    let total = d(before.total(), after.total())?;
    if total == 0 {
        return None;
    }
    Some(parts.map(|p| (p as f64 * 100.0 / total as f64).clamp(0.0, 100.0)))
}

/// The number after `key` in a `key value [kB]` file (`/proc/meminfo`, `/proc/vmstat`), in
/// bytes when the line says `kB`.
pub fn parse_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?;
        let rest = rest.strip_prefix(':').unwrap_or(rest);
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        let mut words = rest.split_whitespace();
        let value: u64 = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") => value.checked_mul(1024),
            _ => Some(value),
        }
    })
}

/// Tasks in existence: the denominator of the fourth field of `/proc/loadavg`
/// (`0.10 0.20 0.30 2/345 6789`).
pub fn parse_tasks(loadavg: &str) -> Option<u64> {
    loadavg
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// Open file handles and the maximum from `/proc/sys/fs/file-nr` (`open unused max`).
pub fn parse_file_nr(text: &str) -> Option<(u64, u64)> {
    let mut n = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    let open = n.next()??;
    let max = n.nth(1)??;
    Some((open, max))
}

/// The system section: `modes` as [`cpu_modes`] computed them, the rest read now.
pub fn measure(modes: Option<[f64; 5]>) -> Section {
    let meminfo = read("/proc/meminfo").unwrap_or_default();
    let vmstat = read("/proc/vmstat").unwrap_or_default();
    let files = read("/proc/sys/fs/file-nr").and_then(|t| parse_file_nr(&t));
    let [user, system, iowait, steal, idle] = modes.map_or([None; 5], |m| m.map(Some));
    let sys = System {
        cpu_user: user,
        cpu_system: system,
        cpu_iowait: iowait,
        cpu_steal: steal,
        cpu_idle: idle,
        mem_available: parse_key(&meminfo, "MemAvailable"),
        oom_kills: parse_key(&vmstat, "oom_kill"),
        procs: read("/proc/loadavg").and_then(|t| parse_tasks(&t)),
        pid_max: read_line("/proc/sys/kernel/pid_max").and_then(|t| t.parse().ok()),
        files_open: files.map(|f| f.0),
        files_max: files.map(|f| f.1),
    };
    Section::from_typed(&[sys])
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_1: &str = "cpu  100 20 50 800 10 5 5 10 0 0\n\
                          cpu0 50 10 25 400 5 2 3 5 0 0\nintr 1 2 3\n";
    const STAT_2: &str = "cpu  160 20 80 1000 30 5 15 30 0 0\n";

    #[test]
    fn cpu_by_mode_is_the_share_of_each_mode_in_the_window() {
        let (a, b) = (parse_stat(STAT_1).unwrap(), parse_stat(STAT_2).unwrap());
        assert_eq!(a.user, 120);
        assert_eq!(a.system, 60);
        // Deltas: user 60, system 40, idle 200, iowait 20, steal 20; total 340.
        let m = cpu_modes(&a, &b).unwrap();
        let expect = [60.0, 40.0, 20.0, 20.0, 200.0].map(|v: f64| v * 100.0 / 340.0);
        for (got, want) in m.iter().zip(expect) {
            assert!((got - want).abs() < 1e-9, "{m:?}");
        }
        assert!((m.iter().sum::<f64>() - 100.0).abs() < 1e-9);
        assert_eq!(cpu_modes(&a, &a), None, "no tick passed");
        assert_eq!(cpu_modes(&b, &a), None, "counters went back");
    }

    #[test]
    fn an_old_kernel_without_steal_still_parses() {
        let t = parse_stat("cpu 1 2 3 4\n").unwrap();
        assert_eq!((t.user, t.system, t.idle, t.steal), (3, 3, 4, 0));
        assert_eq!(parse_stat("cpu x y\n"), None);
        assert_eq!(parse_stat("intr 1\n"), None);
    }

    #[test]
    fn meminfo_vmstat_loadavg_and_file_nr() {
        let meminfo = "MemTotal:        8000000 kB\nMemFree: 100 kB\nMemAvailable:    4000000 kB\n";
        assert_eq!(parse_key(meminfo, "MemAvailable"), Some(4_096_000_000));
        assert_eq!(parse_key(meminfo, "MemAvail"), None);
        let vmstat = "oom_kill_x 9\noom_kill 3\n";
        assert_eq!(parse_key(vmstat, "oom_kill"), Some(3));
        assert_eq!(parse_tasks("0.10 0.20 0.30 2/345 6789\n"), Some(345));
        assert_eq!(
            parse_file_nr("2848\t0\t9223372036854775807\n"),
            Some((2848, 9_223_372_036_854_775_807))
        );
        assert_eq!(parse_file_nr("12 0\n"), None);
    }
}
