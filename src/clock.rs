//! The two clocks of the appliance, as every module reads them. The wall clock (Unix time,
//! which NTP, an operator or a board without a real-time clock may step either way) and the
//! boot clock (`CLOCK_BOOTTIME`: milliseconds since boot, suspend included, never stepped).
//! Ages and delays are measured on the boot clock (the buffer's monotonic clock builds on
//! it); wall times are what rows are stamped with and what operators read. A leaf module (it
//! depends on nothing of edgemon), so `config` can read the time without reaching up into
//! `buffer`. Nothing here keeps state.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current wall-clock time as Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The boot clock now: milliseconds since this boot, counting suspend, never stepped.
pub fn boot_ms() -> i64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    t.tv_sec.saturating_mul(1000) + t.tv_nsec / 1_000_000
}

/// This boot's identity (`/proc/sys/kernel/random/boot_id`), so that a boot-clock reading is
/// compared only with readings of the same boot. `None` where the kernel does not say.
pub fn boot_id() -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = text.trim();
    (!id.is_empty()).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_clock_runs_forward_and_the_boot_has_an_identity() {
        let a = boot_ms();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = boot_ms();
        assert!(b >= a + 20, "{a} -> {b}");
        assert_eq!(boot_id(), boot_id());
    }
}
