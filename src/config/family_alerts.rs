//! Resolution of the family alert rules (issue 22): `[defaults.alerts]` merged with each
//! host's `[hosts.alerts]` into [`FamilyLimits`], and `[alert]`'s filling-up settings into
//! [`FamilyPolicy`].
//!
//! Merge rule: a host's own key wins over `[defaults.alerts]` (an ignore list replaces the
//! default list); per-mount and per-interface entries are kept in order, the host's
//! first, then the defaults', and per setting the first entry whose glob matches and that
//! sets it wins (`FamilyLimits::mount`).

use super::file::{AlertSection, AlertsSection, InterfaceSection, MountSection};
use super::model::*;
use super::resolve::Resolver;
use super::units::Percent;

impl Resolver<'_> {
    /// The family limits of the host at `at` (`hosts[3]`).
    pub(crate) fn family_limits(
        &mut self,
        own: &AlertsSection,
        defaults: &AlertsSection,
        at: &str,
    ) -> FamilyLimits {
        let limit =
            |r: &mut Self, name: &str, mine: &Option<String>, default: &Option<String>| match (
                mine, default,
            ) {
                (Some(text), _) => r.limit(&format!("{at}.alerts.{name}"), text),
                (None, Some(text)) => r.limit(&format!("defaults.alerts.{name}"), text),
                (None, None) => None,
            };
        let flag = |mine: Option<bool>, default: Option<bool>| mine.or(default).unwrap_or(true);
        let list = |mine: &Option<Vec<String>>, default: &Option<Vec<String>>| {
            mine.clone().or_else(|| default.clone()).unwrap_or_default()
        };
        let fs = MountLimits {
            used: limit(self, "fs_used", &own.fs_used, &defaults.fs_used),
            used_critical: limit(
                self,
                "fs_used_critical",
                &own.fs_used_critical,
                &defaults.fs_used_critical,
            ),
            inodes: limit(self, "fs_inodes", &own.fs_inodes, &defaults.fs_inodes),
            inodes_critical: limit(
                self,
                "fs_inodes_critical",
                &own.fs_inodes_critical,
                &defaults.fs_inodes_critical,
            ),
            readonly: flag(own.fs_readonly, defaults.fs_readonly),
            hanging: flag(own.fs_hanging, defaults.fs_hanging),
            filling: flag(own.fs_filling, defaults.fs_filling),
        };
        let iface = InterfaceLimits {
            down: flag(own.if_down, defaults.if_down),
            errors: limit(self, "if_errors", &own.if_errors, &defaults.if_errors),
        };
        let mut mounts = self.mount_entries(&own.mounts, &format!("{at}.alerts"));
        mounts.extend(self.mount_entries(&defaults.mounts, "defaults.alerts"));
        let mut interfaces = self.interface_entries(&own.interfaces, &format!("{at}.alerts"));
        interfaces.extend(self.interface_entries(&defaults.interfaces, "defaults.alerts"));
        FamilyLimits {
            fs,
            mounts,
            fs_ignore: list(&own.fs_ignore, &defaults.fs_ignore),
            iface,
            interfaces,
            if_ignore: list(&own.if_ignore, &defaults.if_ignore),
            unit_failed: flag(own.unit_failed, defaults.unit_failed),
            unit_ignore: list(&own.unit_ignore, &defaults.unit_ignore),
            process_missing: flag(own.process_missing, defaults.process_missing),
            process_ignore: list(&own.process_ignore, &defaults.process_ignore),
            oom_kills: flag(own.oom_kills, defaults.oom_kills),
            mem_available: limit(
                self,
                "mem_available",
                &own.mem_available,
                &defaults.mem_available,
            ),
            fds: limit(self, "fds", &own.fds, &defaults.fds),
            procs: limit(self, "procs", &own.procs, &defaults.procs),
            clock_skew: flag(own.clock_skew, defaults.clock_skew),
        }
    }

    fn pattern(&mut self, key_path: &str, pattern: &Option<String>) -> String {
        match pattern.as_deref().map(str::trim) {
            Some(p) if !p.is_empty() => p.to_string(),
            _ => {
                self.error(
                    key_path,
                    "every entry needs a glob to match, e.g. \"/var/*\"",
                );
                String::new()
            }
        }
    }

    fn optional_limit(&mut self, key_path: &str, text: &Option<String>) -> Option<Option<Percent>> {
        text.as_deref().map(|t| self.limit(key_path, t))
    }

    fn mount_entries(&mut self, entries: &[MountSection], at: &str) -> Vec<MountOverride> {
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let p = format!("{at}.mounts[{i}]");
            out.push(MountOverride {
                pattern: self.pattern(&format!("{p}.mount"), &e.mount),
                used: self.optional_limit(&format!("{p}.used"), &e.used),
                used_critical: self.optional_limit(&format!("{p}.used_critical"), &e.used_critical),
                inodes: self.optional_limit(&format!("{p}.inodes"), &e.inodes),
                inodes_critical: self
                    .optional_limit(&format!("{p}.inodes_critical"), &e.inodes_critical),
                readonly: e.readonly,
                hanging: e.hanging,
                filling: e.filling,
            });
        }
        out
    }

    fn interface_entries(
        &mut self,
        entries: &[InterfaceSection],
        at: &str,
    ) -> Vec<InterfaceOverride> {
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let p = format!("{at}.interfaces[{i}]");
            out.push(InterfaceOverride {
                pattern: self.pattern(&format!("{p}.name"), &e.name),
                down: e.down,
                errors: self.optional_limit(&format!("{p}.errors"), &e.errors),
            });
        }
        out
    }

    /// `[alert]`'s filling-up settings, with the collection interval and clock-skew limit.
    pub(crate) fn family_policy(
        &mut self,
        raw: &AlertSection,
        interval: std::time::Duration,
        max_clock_skew: std::time::Duration,
    ) -> FamilyPolicy {
        let fill_window = self.duration("alert.fill_window", &raw.fill_window);
        let fill_warning = self.duration("alert.fill_warning", &raw.fill_warning);
        let fill_critical = self.duration("alert.fill_critical", &raw.fill_critical);
        if fill_critical > fill_warning {
            self.error(
                "alert.fill_critical",
                "must not be longer than alert.fill_warning (critical is the nearer horizon)",
            );
        }
        let below = self.number_checked("alert.fill_below", raw.fill_below);
        FamilyPolicy {
            fill_window,
            fill_warning,
            fill_critical,
            fill_below: Percent::new(below).unwrap_or(Percent::ZERO),
            fill_hold: self.duration("alert.fill_hold", &raw.fill_hold),
            interval,
            max_clock_skew,
        }
    }
}
