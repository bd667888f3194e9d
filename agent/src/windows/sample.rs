//! Measuring one sample of a Windows host: the same [`Report`] as the Linux agent's
//! `sample` module, with the same CPU window rules ([`crate::window`]) (the first request, or one closer than
//! [`MIN_DELTA`] to the previous, takes two readings [`FIRST_WINDOW`] apart; later ones
//! measure since the previous request without waiting). Load average is absent (Windows has
//! none); swap is the paging file, 0 of 0 when the system does not say (see
//! [`host::page_files`]).

use super::{cpu, host, interfaces, services, volumes};
use crate::window::{FIRST_WINDOW, MIN_DELTA, now_ms};
use edgemon_proto::report::family::Section;
use edgemon_proto::report::family::options::AgentOptions;
use edgemon_proto::report::family::system::System;
use edgemon_proto::report::{REPORT_VERSION, Report};
use std::time::Instant;

/// Takes samples; kept for the life of a resident agent so that each request after the first
/// reports CPU usage since the previous one without waiting.
pub struct Sampler {
    options: AgentOptions,
    /// The previous CPU reading and when it was taken: the start of the next window.
    last_cpu: Option<(Instant, Vec<cpu::CoreTimes>)>,
    volumes: volumes::Prober,
    services: services::Watcher,
    /// The OS strings, read once: they do not change while the agent runs.
    os: (Option<String>, Option<String>),
}

impl Sampler {
    /// A sampler with no CPU reading yet, measuring the families with `options`.
    pub fn new(options: AgentOptions) -> Sampler {
        Sampler {
            options,
            last_cpu: None,
            volumes: volumes::prober(),
            services: services::Watcher::default(),
            os: host::os_strings(host::version(), &host::product_info()),
        }
    }

    /// The CPU usage since the previous reading, or over a fresh [`FIRST_WINDOW`].
    fn cpu(&mut self) -> Option<cpu::Usage> {
        let reuse = match &self.last_cpu {
            Some((at, before)) if at.elapsed() >= MIN_DELTA => Some(before.clone()),
            _ => None,
        };
        let before = match reuse {
            Some(before) => before,
            None => {
                let before = cpu::read();
                std::thread::sleep(FIRST_WINDOW);
                before?
            }
        };
        let after = cpu::read()?;
        self.last_cpu = Some((Instant::now(), after.clone()));
        match cpu::usage(&before, &after) {
            Some(usage) => Some(usage),
            // The processor count changed since the previous request: measure afresh.
            None => {
                std::thread::sleep(FIRST_WINDOW);
                let again = cpu::read()?;
                self.last_cpu = Some((Instant::now(), again.clone()));
                cpu::usage(&after, &again)
            }
        }
    }

    /// Measures the host now.
    pub fn sample(&mut self) -> Report {
        let usage = self.cpu();
        let memory = host::memory();
        let (swap_used, swap_total) = host::page_files().unwrap_or((0, 0));
        let uptime_s = host::uptime_ms() / 1000;
        let now = now_ms();
        let boot = u64::try_from(now / 1000)
            .ok()
            .and_then(|now| now.checked_sub(uptime_s))
            .filter(|b| *b > 0);
        let modes = usage.as_ref().and_then(|u| u.modes);
        let system = System {
            cpu_user: modes.map(|m| m[0]),
            cpu_system: modes.map(|m| m[1]),
            cpu_idle: modes.map(|m| m[2]),
            mem_available: memory.map(|m| m.avail),
            procs: host::threads(),
            ..System::default()
        };
        let cap = usize::try_from(self.options.max_members).unwrap_or(usize::MAX);
        let mut sections = vec![Section::from_typed(&[system])];
        sections.push(volumes::measure(&self.options, &mut self.volumes));
        sections.extend(interfaces::measure(&self.options));
        sections.extend(self.services.measure());
        for section in &mut sections {
            if !section.family.is_singleton() {
                section.cap(cap);
            }
        }
        let (mem_total, mem_avail) = memory.map_or((0, 0), |m| (m.total, m.avail));
        Report {
            version: REPORT_VERSION,
            collected_at_ms: now,
            cpu_percent: usage.as_ref().map_or(0.0, |u| u.total),
            cores: usage.map(|u| u.cores).unwrap_or_default(),
            mem_used: mem_total.saturating_sub(mem_avail),
            mem_total,
            swap_used: swap_used.min(swap_total),
            swap_total,
            uptime_s,
            boot_time_s: boot,
            load: None,
            hostname: host::hostname(),
            os: self.os.0.clone(),
            kernel: self.os.1.clone(),
            extras: Vec::new(),
            sections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemon_proto::report::family::filesystems::Filesystem;

    #[test]
    fn a_sample_of_this_host() {
        let mut s = Sampler::new(AgentOptions::default());
        for _ in 0..2 {
            let r = s.sample();
            assert!(!r.cores.is_empty(), "{r:?}");
            assert!((0.0..=100.0).contains(&r.cpu_percent));
            assert!(r.mem_total > 0 && r.mem_used <= r.mem_total);
            assert!(r.uptime_s > 0 && r.boot_time_s.is_some());
            assert!(r.os.is_some() && r.kernel.is_some() && r.hostname.is_some());
            let sys: Vec<System> = r.typed();
            assert!(sys[0].cpu_user.is_some() && sys[0].cpu_iowait.is_none());
            let fs: Vec<Filesystem> = r.typed();
            assert!(
                fs.iter()
                    .any(|f| f.mount == "C:\\" && f.size.is_some_and(|s| s > 0)),
                "{fs:?}"
            );
            // Parses back as the collector reads it.
            let back = edgemon_proto::report::parse(&r.to_xml()).expect("parses");
            assert_eq!(back.cores.len(), r.cores.len());
            std::thread::sleep(MIN_DELTA);
        }
    }
}
