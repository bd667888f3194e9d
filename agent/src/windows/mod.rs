//! The Windows agent's measurements, with the Windows API directly (`windows-sys`), for the
//! same [`Report`](edgemon_proto::report::Report) as the Linux agent. sysinfo is not used
//! here: its CPU figures go through PDH, which Wine lacks (0 % or an abort), and the rest is
//! a handful of calls. One module per concern, each with its pure part (delta math, group
//! aggregation, flag and name mapping, string assembly) apart from the thin API calls, so
//! that the pure part is tested with made-up figures and the calls are smoke-tested on the
//! real API; both run under Wine (`tests/windows/agent-tests.sh`):
//!
//! - [`cpu`]: per-processor times from `NtQuerySystemInformation`, processor-group aware;
//! - [`host`]: memory, the paging file, uptime, host name, OS version, thread count;
//! - [`volumes`]: the `filesystems` family as drive letters, sized under a deadline;
//! - [`interfaces`]: the `interfaces` family from `GetIfTable2`;
//! - [`services`]: the `units` family as the services stopped with an error;
//! - [`sample`]: the [`Sampler`](sample::Sampler) that puts them into one report.
//!
//! Families not measured on Windows (their sections are absent, which the report format
//! reads as "not measured"): `devices` and `processes`.

pub mod cpu;
pub mod host;
pub mod interfaces;
pub mod sample;
pub mod services;
pub mod volumes;

/// `text` as a NUL-terminated UTF-16 string for a `PCWSTR` argument.
pub(crate) fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The UTF-16 text of `buf` up to its first NUL (or all of it), invalid units replaced.
pub(crate) fn from_wide(buf: &[u16]) -> String {
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    String::from_utf16_lossy(&buf[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_strings_round_trip_and_stop_at_nul() {
        assert_eq!(wide("C:\\"), [67, 58, 92, 0]);
        assert_eq!(from_wide(&wide("Ünïcode")), "Ünïcode");
        assert_eq!(from_wide(&[65, 0, 66]), "A");
        assert_eq!(from_wide(&[65, 66]), "AB");
    }
}
