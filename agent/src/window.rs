//! The sampling rules both agents keep, Linux and Windows alike: how CPU usage is windowed
//! between requests, and the wall clock a report is stamped with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the first request waits between two CPU readings.
pub const FIRST_WINDOW: Duration = Duration::from_millis(200);

/// The shortest gap since the previous request for which its reading is reused as the start
/// of the window; shorter gaps measure afresh.
pub const MIN_DELTA: Duration = Duration::from_millis(100);

/// The wall clock in Unix milliseconds (0 before 1970, saturated far after).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
