//! The wall clock as every module reads it: Unix milliseconds. A leaf module (it depends on
//! nothing of edgemon), so `config` can read the time without reaching up into `buffer`.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time as Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
