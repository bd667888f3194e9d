//! Values with units as users write them: limits like `50%`, sizes like
//! `1GiB` or `512MB`, durations like `60s` (humantime).
//!
//! Parsers return a message fit to follow `KEY: ` in a configuration error;
//! they know nothing about files or key paths.

use std::fmt;
use std::time::Duration;

/// A percentage between 0 and 100 inclusive.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percent(f64);

impl Percent {
    /// 0 %.
    pub const ZERO: Percent = Percent(0.0);

    /// A percentage, if `value` lies in `0..=100`.
    pub fn new(value: f64) -> Option<Percent> {
        (value.is_finite() && (0.0..=100.0).contains(&value)).then_some(Percent(value))
    }

    /// The value, 0 to 100.
    pub fn value(self) -> f64 {
        self.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// Parses a limit such as `"50%"` or `"12.5 %"`; `"off"` means no limit.
pub fn parse_limit(text: &str) -> Result<Option<Percent>, String> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let Some(number) = trimmed.strip_suffix('%') else {
        return Err(format!(
            "limit {text:?} must be a percentage like \"90%\" (or \"off\")"
        ));
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("limit {text:?} is not a number followed by %"))?;
    match Percent::new(value) {
        Some(percent) => Ok(Some(percent)),
        None => Err(format!("limit {text:?} must lie between 0% and 100%")),
    }
}

/// Parses a size such as `"1GiB"`, `"512MB"`, `"64k"` or `"4096"` (bytes).
///
/// Binary units (`KiB`, `MiB`, `GiB`, `TiB`) are powers of 1024, decimal
/// units (`kB`/`K`, `MB`/`M`, `GB`/`G`, `TB`/`T`) powers of 1000; case is ignored.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("size {text:?} must be a number with a unit like \"512MiB\""))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "size {text:?} has unknown unit {other:?} (use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)"
            ));
        }
    };
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("size {text:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

/// Parses a duration such as `"60s"`, `"5m"`, `"1h 30m"` or `"30d"` (humantime).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|err| {
        format!("duration {text:?} is invalid ({err}); write e.g. \"60s\", \"5m\", \"1h\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_binary_and_decimal_units() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512MB"), Ok(512_000_000));
        assert_eq!(parse_size("1MiB"), Ok(1_048_576));
        assert_eq!(parse_size("64k"), Ok(64_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size(" 1.5 KiB "), Ok(1536));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
    }

    #[test]
    fn bad_sizes_are_refused_with_the_text() {
        for bad in ["", "GiB", "12 parsecs", "-1MB", "1e400GB"] {
            let err = parse_size(bad).expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn limits_in_percent() {
        assert_eq!(parse_limit("50%"), Ok(Percent::new(50.0)));
        assert_eq!(parse_limit("12.5 %"), Ok(Percent::new(12.5)));
        assert_eq!(parse_limit("100%"), Ok(Percent::new(100.0)));
        assert_eq!(parse_limit("0%"), Ok(Percent::new(0.0)));
        assert_eq!(parse_limit("off"), Ok(None));
    }

    #[test]
    fn limits_above_100_or_malformed_are_refused() {
        assert!(
            parse_limit("150%")
                .unwrap_err()
                .contains("between 0% and 100%")
        );
        assert!(parse_limit("-5%").is_err());
        assert!(parse_limit("abc").unwrap_err().contains("percentage"));
        assert!(parse_limit("50").unwrap_err().contains("percentage"));
        assert!(parse_limit("x%").unwrap_err().contains("not a number"));
        assert!(parse_limit("NaN%").is_err());
    }

    #[test]
    fn durations_via_humantime() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").unwrap_err().contains("\"soon\""));
        assert!(parse_duration("60").is_err());
    }
}
