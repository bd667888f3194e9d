//! The filling-up prediction: an exact least-squares line through a mount's available
//! space over the window (default 12 h), kept as running sums in time buckets so that no
//! round re-reads samples.
//!
//! Each bucket (the window is cut into [`BUCKETS`] of equal width) holds, for the
//! samples that fell in it, `n`, `Σu`, `Σy`, `Σu²` and `Σuy` with `u` the sample's time
//! in seconds after the bucket's start and `y` the available bytes. Sums taken against
//! another origin follow exactly (`t = start + u`: `Σt = n·start + Σu`, `Σt² = n·start² +
//! 2·start·Σu + Σu²`, `Σty = start·Σy + Σuy`), so the fit over the buckets in the window is
//! the same line as over the samples themselves, at the cost of one row per bucket and
//! mount. The origin is `now` (times are seconds before now, small numbers), which keeps
//! the arithmetic well conditioned.
//!
//! Time to full is where the line reaches zero available space; a line that does not
//! fall predicts nothing. The window's edge moves by whole buckets, so the fit covers
//! between `window - width` and `window` of history.

use std::time::Duration;

/// Buckets per window.
pub const BUCKETS: i64 = 12;

/// One bucket's sums.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bucket {
    /// Start of the bucket, Unix ms.
    pub start: i64,
    /// Samples in it.
    pub n: f64,
    /// Σu, u in seconds after `start`.
    pub su: f64,
    /// Σy, available bytes.
    pub sy: f64,
    /// Σu².
    pub suu: f64,
    /// Σuy.
    pub suy: f64,
}

impl Bucket {
    /// Adds a sample of `y` bytes at `at` (Unix ms, within the bucket).
    pub fn add(&mut self, at: i64, y: f64) {
        let u = (at - self.start) as f64 / 1000.0;
        self.n += 1.0;
        self.su += u;
        self.sy += y;
        self.suu += u * u;
        self.suy += u * y;
    }
}

/// The width of a bucket for `window`, ms (at least one second).
pub fn width(window: Duration) -> i64 {
    (window.as_millis() as i64 / BUCKETS).max(1000)
}

/// The start of the bucket holding `at`.
pub fn bucket_start(at: i64, width: i64) -> i64 {
    at - at.rem_euclid(width)
}

/// The fitted line at `now`: available bytes now and the slope, bytes per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Available bytes the line gives for now.
    pub at_now: f64,
    /// Bytes per second (negative: filling).
    pub slope: f64,
    /// Samples behind it.
    pub samples: f64,
}

impl Fit {
    /// Seconds until the line reaches zero, when it falls.
    pub fn seconds_to_full(&self) -> Option<f64> {
        (self.slope < 0.0).then(|| (self.at_now / -self.slope).max(0.0))
    }
}

/// The least-squares line through the buckets starting at or after `now - window`
/// (times relative to `now`); `None` with fewer than 3 samples, or when they span less
/// than a quarter of the window (too little history to predict from).
pub fn fit(buckets: &[Bucket], window: Duration, now: i64) -> Option<Fit> {
    let from = now - window.as_millis() as i64;
    let (mut n, mut st, mut sy, mut stt, mut sty) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut oldest = now;
    for b in buckets.iter().filter(|b| b.start >= from && b.n > 0.0) {
        let s = (b.start - now) as f64 / 1000.0;
        n += b.n;
        st += b.n * s + b.su;
        sy += b.sy;
        stt += b.n * s * s + 2.0 * s * b.su + b.suu;
        sty += s * b.sy + b.suy;
        oldest = oldest.min(b.start);
    }
    let span = (now - oldest) as f64;
    if n < 3.0 || span < window.as_millis() as f64 / 4.0 {
        return None;
    }
    let denominator = n * stt - st * st;
    if denominator.abs() < f64::EPSILON {
        return None;
    }
    let slope = (n * sty - st * sy) / denominator;
    let at_now = (sy - slope * st) / n;
    (slope.is_finite() && at_now.is_finite()).then_some(Fit {
        at_now,
        slope,
        samples: n,
    })
}
