//! Measuring one sample of this host: the original figures with sysinfo, the metric
//! families with [`crate::family`]. This module owns how CPU usage is measured between
//! requests (total and by mode over one window); it knows nothing of the wire.

use crate::family::{Families, system};
use crate::window::{FIRST_WINDOW, MIN_DELTA, now_ms};
use edgemon_proto::report::family::options::AgentOptions;
use edgemon_proto::report::{REPORT_VERSION, Report};
use std::time::Instant;
use sysinfo::System;

/// Takes samples; kept for the life of a resident agent so that each request
/// after the first reports CPU usage since the previous one without waiting.
pub struct Sampler {
    sys: System,
    last_cpu_refresh: Option<Instant>,
    /// `/proc/stat` read at the last CPU refresh: the start of the next window.
    last_stat: Option<system::CpuTimes>,
    families: Families,
}

impl Sampler {
    /// A sampler with no CPU reading yet, measuring the families with `options`.
    pub fn new(options: AgentOptions) -> Sampler {
        Sampler {
            sys: System::new(),
            last_cpu_refresh: None,
            last_stat: None,
            families: Families::new(options),
        }
    }

    /// Measures the host now.
    pub fn sample(&mut self) -> Report {
        let reusable = self
            .last_cpu_refresh
            .is_some_and(|at| at.elapsed() >= MIN_DELTA);
        if !reusable {
            self.sys.refresh_cpu_usage();
            self.last_stat = system::read_stat();
            std::thread::sleep(FIRST_WINDOW.max(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL));
        }
        self.sys.refresh_cpu_usage();
        // Read right after sysinfo's refresh: the modes cover the total's window.
        let stat = system::read_stat();
        let modes = match (&self.last_stat, &stat) {
            (Some(before), Some(after)) => system::cpu_modes(before, after),
            _ => None,
        };
        self.last_stat = stat;
        self.last_cpu_refresh = Some(Instant::now());
        self.sys.refresh_memory();
        let sections = self.families.measure(Some(system::measure(modes)));

        let mem_total = self.sys.total_memory();
        let swap_total = self.sys.total_swap();
        let load = System::load_average();
        let boot = System::boot_time();
        Report {
            version: REPORT_VERSION,
            collected_at_ms: now_ms(),
            cpu_percent: percent(self.sys.global_cpu_usage()),
            cores: self
                .sys
                .cpus()
                .iter()
                .map(|cpu| percent(cpu.cpu_usage()))
                .collect(),
            mem_used: self.sys.used_memory().min(mem_total),
            mem_total,
            swap_used: self.sys.used_swap().min(swap_total),
            swap_total,
            uptime_s: System::uptime(),
            boot_time_s: (boot > 0).then_some(boot),
            load: [load.one, load.five, load.fifteen]
                .iter()
                .all(|v| v.is_finite() && *v >= 0.0)
                .then_some([load.one, load.five, load.fifteen]),
            hostname: System::host_name(),
            os: System::long_os_version(),
            kernel: System::kernel_version(),
            extras: Vec::new(),
            sections,
        }
    }
}

/// sysinfo may report a hair over 100 or NaN on the first reading; the
/// report format requires 0..=100.
fn percent(value: f32) -> f64 {
    if value.is_finite() {
        f64::from(value).clamp(0.0, 100.0)
    } else {
        0.0
    }
}
