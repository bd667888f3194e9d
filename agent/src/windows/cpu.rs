//! CPU usage on Windows: cumulative per-processor times from
//! `NtQuerySystemInformation(SystemProcessorPerformanceInformation)`, turned into percentages
//! from the deltas between two readings (the sampler keeps the previous one).
//!
//! Processor groups: the legacy call answers for the calling thread's group only (at most 64
//! logical processors). With more than one active group (`GetActiveProcessorGroupCount`)
//! each group is queried with `NtQuerySystemInformationEx`, the group number as input, and
//! the groups' processors are reported in group order (core ids 0..n-1 across groups). When
//! an Ex query fails (Wine does not implement it for this class) the legacy call is used.
//!
//! Times are in 100 ns units. `KernelTime` includes the idle time and the time in interrupts
//! and DPCs, so per processor: busy = user + (kernel − idle), all = user + kernel; the
//! `system` mode is kernel − idle (interrupts and DPCs included, as Linux's `system`
//! includes irq and softirq). iowait and steal have no Windows counterpart and are not
//! reported.

use windows_sys::Wdk::System::SystemInformation::{
    NtQuerySystemInformation, SystemProcessorPerformanceInformation,
};
use windows_sys::Win32::Foundation::STATUS_INFO_LENGTH_MISMATCH;
use windows_sys::Win32::System::Threading::{
    ALL_PROCESSOR_GROUPS, GetActiveProcessorCount, GetActiveProcessorGroupCount,
};
use windows_sys::Win32::System::WindowsProgramming::SYSTEM_PROCESSOR_PERFORMANCE_INFORMATION;

/// One logical processor's cumulative times since boot, 100 ns units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CoreTimes {
    /// Idle time.
    pub idle: u64,
    /// Kernel time, idle time included.
    pub kernel: u64,
    /// User time.
    pub user: u64,
}

/// CPU usage over one window between two readings.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    /// All processors, percent 0..=100.
    pub total: f64,
    /// Each processor, percent 0..=100, in reading order.
    pub cores: Vec<f64>,
    /// Percent of all processors' time in user mode, in the kernel (kernel − idle) and
    /// idle; `None` when no time passed.
    pub modes: Option<[f64; 3]>,
}

/// A processor's user, system (kernel − idle) and idle time in the window; a counter that
/// went backwards counts 0.
fn delta(before: &CoreTimes, after: &CoreTimes) -> [u64; 3] {
    let idle = after.idle.saturating_sub(before.idle);
    let kernel = after.kernel.saturating_sub(before.kernel);
    let user = after.user.saturating_sub(before.user);
    [user, kernel.saturating_sub(idle), idle]
}

fn share(part: u64, all: u64) -> f64 {
    if all == 0 {
        0.0
    } else {
        (part as f64 * 100.0 / all as f64).clamp(0.0, 100.0)
    }
}

/// The usage between two readings of the same processors; `None` when their processor
/// counts differ (a processor was added) or there is none.
pub fn usage(before: &[CoreTimes], after: &[CoreTimes]) -> Option<Usage> {
    if before.len() != after.len() || after.is_empty() {
        return None;
    }
    let mut sum = [0u64; 3];
    let mut cores = Vec::with_capacity(after.len());
    for (b, a) in before.iter().zip(after) {
        let d = delta(b, a);
        let all = d[0].saturating_add(d[1]).saturating_add(d[2]);
        cores.push(share(d[0].saturating_add(d[1]), all));
        for (s, v) in sum.iter_mut().zip(d) {
            *s = s.saturating_add(v);
        }
    }
    let all = sum[0].saturating_add(sum[1]).saturating_add(sum[2]);
    Some(Usage {
        total: share(sum[0].saturating_add(sum[1]), all),
        cores,
        modes: (all > 0).then(|| sum.map(|v| share(v, all))),
    })
}

/// The processors of all `groups` active groups in group order: each group's from `ex`
/// (the group's own query) when there is more than one group; the `legacy` reading when
/// there is one group or any group's query fails.
pub fn read_groups(
    groups: u16,
    ex: impl Fn(u16) -> Option<Vec<CoreTimes>>,
    legacy: impl FnOnce() -> Option<Vec<CoreTimes>>,
) -> Option<Vec<CoreTimes>> {
    if groups > 1 {
        let mut all = Vec::new();
        for group in 0..groups {
            match ex(group) {
                Some(cores) if !cores.is_empty() => all.extend(cores),
                _ => return legacy(),
            }
        }
        return Some(all);
    }
    legacy()
}

/// Reads every active processor's times now.
pub fn read() -> Option<Vec<CoreTimes>> {
    // SAFETY: no arguments; returns a count.
    let groups = unsafe { GetActiveProcessorGroupCount() };
    read_groups(groups, read_group, read_legacy)
}

/// `SYSTEM_PROCESSOR_PERFORMANCE_INFORMATION` entries as [`CoreTimes`].
fn to_times(raw: &[SYSTEM_PROCESSOR_PERFORMANCE_INFORMATION]) -> Vec<CoreTimes> {
    let t = |v: i64| u64::try_from(v).unwrap_or(0);
    raw.iter()
        .map(|p| CoreTimes {
            idle: t(p.IdleTime),
            kernel: t(p.KernelTime),
            user: t(p.UserTime),
        })
        .collect()
}

/// Calls `query(buffer, bytes, returned)` with a buffer of `hint` entries, growing it while
/// the call says it is too small; the entries it filled.
fn query_entries(
    hint: usize,
    query: impl Fn(*mut core::ffi::c_void, u32, *mut u32) -> i32,
) -> Option<Vec<CoreTimes>> {
    const ENTRY: usize = size_of::<SYSTEM_PROCESSOR_PERFORMANCE_INFORMATION>();
    let mut entries = hint.clamp(1, 64);
    loop {
        // SAFETY: the struct is plain integers, for which all zeroes is a valid value.
        let mut buf: Vec<SYSTEM_PROCESSOR_PERFORMANCE_INFORMATION> =
            vec![unsafe { std::mem::zeroed() }; entries];
        let bytes = u32::try_from(entries * ENTRY).ok()?;
        let mut returned = 0u32;
        let status = query(buf.as_mut_ptr().cast(), bytes, &mut returned);
        if status == STATUS_INFO_LENGTH_MISMATCH && entries < 4096 {
            entries *= 2;
            continue;
        }
        if status < 0 {
            return None;
        }
        let filled = (usize::try_from(returned).ok()? / ENTRY).min(entries);
        buf.truncate(filled);
        return Some(to_times(&buf));
    }
}

/// The legacy call: the calling thread's processor group.
fn read_legacy() -> Option<Vec<CoreTimes>> {
    // SAFETY: returns a count.
    let hint = unsafe { GetActiveProcessorCount(ALL_PROCESSOR_GROUPS) } as usize;
    query_entries(hint, |buf, len, ret| {
        // SAFETY: `buf` holds `len` writable bytes and `ret` is a valid u32, as
        // `query_entries` guarantees.
        unsafe { NtQuerySystemInformation(SystemProcessorPerformanceInformation, buf, len, ret) }
    })
}

/// Group `group`'s processors, by `NtQuerySystemInformationEx` with the group as input.
fn read_group(group: u16) -> Option<Vec<CoreTimes>> {
    // SAFETY: returns a count.
    let hint = unsafe { GetActiveProcessorCount(group) } as usize;
    query_entries(hint, |buf, len, ret| {
        // SAFETY: the input is one u16 that lives across the call; `buf`, `len` and `ret`
        // as `query_entries` guarantees.
        unsafe {
            ffi::NtQuerySystemInformationEx(
                SystemProcessorPerformanceInformation,
                (&group as *const u16).cast(),
                size_of::<u16>() as u32,
                buf,
                len,
                ret,
            )
        }
    })
}

/// What windows-sys does not declare.
mod ffi {
    #[link(name = "ntdll.dll", kind = "raw-dylib", modifiers = "+verbatim")]
    unsafe extern "system" {
        /// `NtQuerySystemInformationEx` (ntdll, Windows 7 and later).
        pub fn NtQuerySystemInformationEx(
            class: i32,
            input: *const core::ffi::c_void,
            input_len: u32,
            info: *mut core::ffi::c_void,
            info_len: u32,
            returned: *mut u32,
        ) -> i32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(idle: u64, kernel: u64, user: u64) -> CoreTimes {
        CoreTimes { idle, kernel, user }
    }

    #[test]
    fn usage_from_deltas_counts_kernel_minus_idle_as_busy() {
        let before = [t(100, 200, 50), t(0, 0, 0)];
        // Core 0: idle +60, kernel +80 (20 busy), user +20: 40 busy of 100.
        // Core 1: idle +100, kernel +100, user 0: idle.
        let after = [t(160, 280, 70), t(100, 100, 0)];
        let u = usage(&before, &after).unwrap();
        assert_eq!(u.cores, [40.0, 0.0]);
        assert_eq!(u.total, 20.0);
        let [user, system, idle] = u.modes.unwrap();
        assert_eq!((user, system, idle), (10.0, 10.0, 80.0));
    }

    #[test]
    fn no_time_passed_backwards_counters_and_changed_counts() {
        let a = [t(10, 20, 5)];
        let u = usage(&a, &a).unwrap();
        assert_eq!((u.total, u.cores.clone(), u.modes), (0.0, vec![0.0], None));
        let back = usage(&[t(50, 60, 10)], &a).unwrap();
        assert_eq!(back.total, 0.0, "backwards counts 0, never negative");
        assert_eq!(usage(&a, &[t(1, 1, 1), t(2, 2, 2)]), None);
        assert_eq!(usage(&[], &[]), None);
    }

    #[test]
    fn groups_are_concatenated_in_order_and_a_failed_group_falls_back() {
        let group = |g: u16| Some(vec![t(u64::from(g), 0, 0); 2]);
        let legacy = || Some(vec![t(99, 0, 0)]);
        let all = read_groups(3, group, legacy).unwrap();
        let idle: Vec<u64> = all.iter().map(|c| c.idle).collect();
        assert_eq!(idle, [0, 0, 1, 1, 2, 2]);
        let one = read_groups(1, |_| panic!("not asked with one group"), legacy).unwrap();
        assert_eq!(one, [t(99, 0, 0)]);
        let failing = |g: u16| (g == 0).then(|| vec![t(0, 0, 0)]);
        assert_eq!(read_groups(2, failing, legacy).unwrap(), [t(99, 0, 0)]);
        let empty = |_| Some(Vec::new());
        assert_eq!(read_groups(2, empty, legacy).unwrap(), [t(99, 0, 0)]);
    }

    #[test]
    fn the_group_query_agrees_with_the_legacy_one_or_is_refused() {
        let legacy = read_legacy().expect("legacy processor times");
        // Windows answers group 0 with its processors; Wine refuses the Ex class (None).
        let group0 = read_group(0);
        eprintln!("group 0 by NtQuerySystemInformationEx: {group0:?}");
        if let Some(group0) = group0 {
            assert_eq!(group0.len(), legacy.len());
        }
    }

    #[test]
    fn this_host_has_processors_with_times() {
        let cores = read().expect("processor times");
        assert!(!cores.is_empty());
        assert!(
            cores.iter().any(|c| c.kernel > 0 || c.user > 0),
            "{cores:?}"
        );
    }
}
