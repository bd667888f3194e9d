//! Values with units as users write them: limits like `50%`, sizes like
//! `1GiB`, durations like `60s` (humantime).

use std::fmt;

/// A percentage between 0 and 100 inclusive.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percent(f64);

impl Percent {
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
