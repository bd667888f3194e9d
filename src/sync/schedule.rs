//! `sync.schedule`: the weekly windows in which sync may send, for links that are not always
//! welcome (metered, satellite, busy by day). Pure: parsing, and whether a given instant is
//! inside a window (and when the next one opens) in a given time zone.
//!
//! Grammar (case ignored):
//!
//! ```text
//! schedule := "always" | entry ("," entry)*
//! entry    := [days] span (" " span)*        days omitted: every day
//! days     := "*" | DAY | DAY "-" DAY          Mon Tue Wed Thu Fri Sat Sun; "Fri-Mon" wraps
//! span     := "*" | HH:MM "-" HH:MM            "*": the whole day; 24:00 ends at midnight
//! ```
//!
//! For example `"Mon-Fri 20:00-06:00, Sat-Sun *"`. A span whose end is not after its start
//! runs past midnight and belongs to the day it starts on (`Fri 20:00-06:00` ends on Saturday
//! morning). Times are civil times of `sync.timezone`: in `local`, a window follows daylight
//! saving time (its length changes on those days); a start or end in the skipped hour of a
//! spring-forward day is read as the same civil time after the shift (the way `jiff`'s
//! "compatible" rule and cron do), and in the repeated hour of a fall-back day as its first
//! occurrence.

use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

/// The zone a schedule's times are read in (`sync.timezone`).
#[derive(Debug, Clone, PartialEq)]
pub enum Zone {
    /// The appliance's zone, with daylight saving time, from the system tzdb.
    Local,
    /// UTC.
    Utc,
}

impl Zone {
    fn tz(&self) -> TimeZone {
        match self {
            Zone::Local => TimeZone::system(),
            Zone::Utc => TimeZone::UTC,
        }
    }
}

/// One window: the days it starts on, and the span of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    /// Bit 0 = Monday .. bit 6 = Sunday.
    days: u8,
    /// Minutes after midnight: start, end (end <= start: past midnight). `None`: the whole day.
    span: Option<(u16, u16)>,
}

/// A parsed `sync.schedule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Empty: always open.
    windows: Vec<Window>,
}

/// Whether sync may send at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Inside a window; `until` is when it closes (Unix ms), `None` when it never does.
    Open {
        /// When the window closes, Unix ms.
        until: Option<i64>,
    },
    /// Outside every window; the next one opens at `opens_at` (Unix ms).
    Closed {
        /// When the next window opens, Unix ms.
        opens_at: i64,
    },
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Schedule {
    /// Sync at any time (the default).
    pub fn always() -> Schedule {
        Schedule {
            windows: Vec::new(),
        }
    }

    /// The schedule never closes.
    pub fn is_always(&self) -> bool {
        self.windows.is_empty()
    }

    /// Parses the text of `sync.schedule`; the error names the part that is wrong.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("always") {
            return Ok(Schedule::always());
        }
        if t.is_empty() {
            return Err(
                "empty: write \"always\" or windows such as \"Mon-Fri 20:00-06:00, Sat-Sun *\""
                    .into(),
            );
        }
        let mut windows = Vec::new();
        for entry in t.split(',') {
            let words: Vec<&str> = entry.split_whitespace().collect();
            let Some(first) = words.first() else {
                return Err(format!("{t:?}: an empty window between commas"));
            };
            let (days, spans) = match parse_days(first) {
                Some(days) if words.len() > 1 => (days, &words[1..]),
                Some(_) if *first != "*" => {
                    return Err(format!(
                        "{:?}: the day(s) need a time span after them, e.g. \"{first} 20:00-06:00\" or \"{first} *\"",
                        entry.trim()
                    ));
                }
                _ => (0x7f, &words[..]),
            };
            for span in spans {
                windows.push(Window {
                    days,
                    span: parse_span(span).map_err(|e| format!("{:?}: {e}", entry.trim()))?,
                });
            }
        }
        if windows.iter().any(|w| w.days == 0x7f && w.span.is_none()) {
            return Ok(Schedule::always());
        }
        Ok(Schedule { windows })
    }

    /// Whether `now_ms` (Unix ms) is inside a window, in `zone`.
    pub fn state(&self, now_ms: i64, zone: &Zone) -> State {
        self.state_in(now_ms, &zone.tz())
    }

    fn state_in(&self, now_ms: i64, tz: &TimeZone) -> State {
        if self.is_always() {
            return State::Open { until: None };
        }
        let spans = self.intervals(now_ms, tz, 9);
        if let Some(&(_, end)) = spans.iter().find(|(s, e)| *s <= now_ms && now_ms < *e) {
            return State::Open { until: Some(end) };
        }
        match spans.iter().find(|(s, _)| *s > now_ms) {
            Some(&(start, _)) => State::Closed { opens_at: start },
            // Every week has a window (the grammar has no empty schedule): unreachable, but
            // open is the safe answer (nothing held back).
            None => State::Open { until: None },
        }
    }

    /// The longest stretch the schedule stays closed, over the week after `now_ms` in `zone`
    /// (`None` for "always").
    pub fn longest_gap(&self, now_ms: i64, zone: &Zone) -> Option<Duration> {
        if self.is_always() {
            return None;
        }
        let spans = self.intervals(now_ms, &zone.tz(), 16);
        spans
            .windows(2)
            .map(|pair| pair[1].0 - pair[0].1)
            .max()
            .map(|ms| Duration::from_millis(ms.max(0) as u64))
    }

    /// The windows starting from the day before `now_ms` to `days` days after it, as merged,
    /// sorted Unix-ms intervals.
    fn intervals(&self, now_ms: i64, tz: &TimeZone, days: i64) -> Vec<(i64, i64)> {
        let now = Timestamp::from_millisecond(now_ms).unwrap_or(Timestamp::UNIX_EPOCH);
        let today = now.to_zoned(tz.clone()).date();
        let mut spans = Vec::new();
        for offset in -1..=days {
            let Ok(date) = today.checked_add(jiff::Span::new().days(offset)) else {
                continue;
            };
            let bit = 1u8 << date.weekday().to_monday_zero_offset();
            for w in self.windows.iter().filter(|w| w.days & bit != 0) {
                let (start, end) = match w.span {
                    None => (0, 1440),
                    Some((s, e)) if e > s => (s, e),
                    Some((s, e)) => (s, e + 1440),
                };
                if let (Some(a), Some(b)) = (at(date, start, tz), at(date, end, tz))
                    && a < b
                {
                    spans.push((a, b));
                }
            }
        }
        spans.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(spans.len());
        for (s, e) in spans {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }
}

/// `at_ms` (Unix ms) as operators read it in `zone`, e.g. `Mon 2026-11-30 20:00 CET`.
pub fn format_at(at_ms: i64, zone: &Zone) -> String {
    match Timestamp::from_millisecond(at_ms) {
        Ok(t) => t
            .to_zoned(zone.tz())
            .strftime("%a %Y-%m-%d %H:%M %Z")
            .to_string(),
        Err(_) => format!("{at_ms} ms"),
    }
}

/// `minutes` after the start of `date` (may run into the next days), as Unix ms in `tz`.
fn at(date: Date, minutes: u16, tz: &TimeZone) -> Option<i64> {
    let date = date
        .checked_add(jiff::Span::new().days(i64::from(minutes / 1440)))
        .ok()?;
    let m = minutes % 1440;
    let dt = date.at((m / 60) as i8, (m % 60) as i8, 0, 0);
    tz.to_ambiguous_timestamp(dt)
        .compatible()
        .ok()
        .map(|t| t.as_millisecond())
}

/// `"*"`, `"Mon"` or `"Mon-Fri"` as a day mask; `None` when `word` is no day.
fn parse_days(word: &str) -> Option<u8> {
    if word == "*" {
        return Some(0x7f);
    }
    let day = |w: &str| {
        let w = w.to_ascii_lowercase();
        DAY_NAMES.iter().position(|d| w == *d)
    };
    match word.split_once('-') {
        None => day(word).map(|d| 1 << d),
        Some((a, b)) => {
            let (a, b) = (day(a)?, day(b)?);
            let mut mask = 0u8;
            let mut d = a;
            loop {
                mask |= 1 << d;
                if d == b {
                    break;
                }
                d = (d + 1) % 7;
            }
            Some(mask)
        }
    }
}

/// `"*"` or `"HH:MM-HH:MM"`.
fn parse_span(word: &str) -> Result<Option<(u16, u16)>, String> {
    if word == "*" {
        return Ok(None);
    }
    if word.chars().any(|c| c.is_ascii_alphabetic()) {
        return Err(format!(
            "{word:?} is neither days (Mon, Tue, Wed, Thu, Fri, Sat, Sun, a range such as Mon-Fri, or *) \
             nor a time span such as 20:00-06:00"
        ));
    }
    let Some((a, b)) = word.split_once('-') else {
        return Err(format!(
            "{word:?} is not a time span such as 20:00-06:00 or *"
        ));
    };
    match (clock(a, false)?, clock(b, true)?) {
        (0, 1440) => Ok(None),
        (start, end) if start == end % 1440 => Err(format!(
            "{word:?} starts and ends at the same time: write * for the whole day"
        )),
        (start, end) => Ok(Some((start, end))),
    }
}

/// `"HH:MM"` as minutes after midnight; `24:00` only as an end.
fn clock(text: &str, end: bool) -> Result<u16, String> {
    let bad = || {
        let or_24 = if end { ", or 24:00 as an end" } else { "" };
        format!("{text:?} is not a time of day HH:MM (00:00 to 23:59{or_24})")
    };
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    match (h, m) {
        (24, 0) if end => Ok(1440),
        (0..=23, 0..=59) => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>()
            .expect("timestamp")
            .as_millisecond()
    }

    fn utc(schedule: &str, now: &str) -> State {
        Schedule::parse(schedule)
            .expect("parses")
            .state(ms(now), &Zone::Utc)
    }

    #[test]
    fn always_and_whole_weeks_never_close() {
        for s in [
            "always",
            "ALWAYS",
            " always ",
            "*",
            "* *",
            "Mon-Sun *",
            "Tue-Mon *",
            "* 00:00-24:00",
        ] {
            let schedule = Schedule::parse(s).expect(s);
            assert!(schedule.is_always(), "{s}");
            assert_eq!(schedule.state(0, &Zone::Local), State::Open { until: None });
            assert_eq!(schedule.longest_gap(0, &Zone::Utc), None);
        }
    }

    #[test]
    fn every_day_name_and_range_is_read() {
        // 2026-11-23 is a Monday.
        for (i, name) in ["Mon", "tue", "WED", "Thu", "Fri", "Sat", "Sun"]
            .iter()
            .enumerate()
        {
            let now = format!("2026-11-{}T12:00:00Z", 23 + i);
            assert_eq!(
                utc(&format!("{name} 11:00-13:00"), &now),
                State::Open {
                    until: Some(ms(&format!("2026-11-{}T13:00:00Z", 23 + i)))
                },
                "{name}"
            );
            let other = DAY_NAMES[(i + 1) % 7];
            assert!(matches!(
                utc(&format!("{other} 11:00-13:00"), &now),
                State::Closed { .. }
            ));
        }
        // Ranges, and one that wraps over the week's end.
        assert!(matches!(
            utc("Mon-Fri *", "2026-11-27T23:59:00Z"),
            State::Open { .. }
        ));
        assert!(matches!(
            utc("Mon-Fri *", "2026-11-28T00:00:00Z"),
            State::Closed { .. }
        ));
        assert!(matches!(
            utc("Fri-Mon *", "2026-11-29T10:00:00Z"),
            State::Open { .. }
        ));
        assert!(matches!(
            utc("Fri-Mon *", "2026-11-25T10:00:00Z"),
            State::Closed { .. }
        ));
        // Days omitted: every day.
        assert!(matches!(
            utc("08:00-09:00", "2026-11-29T08:30:00Z"),
            State::Open { .. }
        ));
    }

    #[test]
    fn a_window_past_midnight_belongs_to_the_day_it_starts() {
        let s = "Mon-Fri 20:00-06:00, Sat-Sun *";
        // Friday 22:00: Friday's night, Saturday and Sunday merge into one stretch that ends
        // when Sunday does (Monday 00:00); Monday's own window starts at 20:00.
        assert_eq!(
            utc(s, "2026-11-27T22:00:00Z"),
            State::Open {
                until: Some(ms("2026-11-30T00:00:00Z"))
            }
        );
        // Monday 03:00: Sunday's window ended at midnight, Monday's starts at 20:00.
        assert_eq!(
            utc(s, "2026-11-30T03:00:00Z"),
            State::Closed {
                opens_at: ms("2026-11-30T20:00:00Z")
            }
        );
        // Tuesday 05:59 is inside Monday's window; 06:00 is not.
        assert_eq!(
            utc(s, "2026-12-01T05:59:00Z"),
            State::Open {
                until: Some(ms("2026-12-01T06:00:00Z"))
            }
        );
        assert_eq!(
            utc(s, "2026-12-01T06:00:00Z"),
            State::Closed {
                opens_at: ms("2026-12-01T20:00:00Z")
            }
        );
        // A Friday-only night window ends on Saturday morning.
        assert!(matches!(
            utc("Fri 22:00-02:00", "2026-11-28T01:00:00Z"),
            State::Open { .. }
        ));
        assert!(matches!(
            utc("Fri 22:00-02:00", "2026-11-27T01:00:00Z"),
            State::Closed { .. }
        ));
        // 24:00 ends at midnight; several spans per entry.
        assert!(matches!(
            utc("Mon 22:00-24:00", "2026-11-23T23:59:00Z"),
            State::Open { .. }
        ));
        assert!(matches!(
            utc("Mon 01:00-02:00 12:00-13:00", "2026-11-23T12:30:00Z"),
            State::Open { .. }
        ));
        assert_eq!(
            Schedule::parse(s)
                .expect("parses")
                .longest_gap(ms("2026-11-23T00:00:00Z"), &Zone::Utc),
            Some(Duration::from_secs(20 * 3600))
        );
    }

    #[test]
    fn daylight_saving_days_change_a_windows_length_not_its_civil_times() {
        let berlin = TimeZone::get("Europe/Berlin").expect("the system tzdb has Europe/Berlin");
        // 2026-03-29: clocks go from 02:00 to 03:00. 01:00 CET is 00:00Z, 04:00 CEST is 02:00Z.
        let spring = Schedule::parse("Sun 01:00-04:00").expect("parses");
        assert_eq!(
            spring.state_in(ms("2026-03-29T00:30:00Z"), &berlin),
            State::Open {
                until: Some(ms("2026-03-29T02:00:00Z"))
            }
        );
        // 2026-10-25: clocks go from 03:00 back to 02:00. Sat 22:00 CEST is 20:00Z; Sun 06:00
        // CET is 05:00Z: nine hours.
        let fall = Schedule::parse("Sat 22:00-06:00").expect("parses");
        assert_eq!(
            fall.state_in(ms("2026-10-24T20:00:00Z"), &berlin),
            State::Open {
                until: Some(ms("2026-10-25T05:00:00Z"))
            }
        );
        assert_eq!(
            fall.state_in(ms("2026-10-24T19:59:00Z"), &berlin),
            State::Closed {
                opens_at: ms("2026-10-24T20:00:00Z")
            }
        );
        // A start in the skipped hour opens at the same civil time after the shift.
        let gap = Schedule::parse("Sun 02:30-05:00").expect("parses");
        assert_eq!(
            gap.state_in(ms("2026-03-28T12:00:00Z"), &berlin),
            State::Closed {
                opens_at: ms("2026-03-29T01:30:00Z")
            }
        );
    }

    #[test]
    fn times_are_shown_in_the_zone() {
        assert_eq!(
            format_at(ms("2026-11-30T20:00:00Z"), &Zone::Utc),
            "Mon 2026-11-30 20:00 UTC"
        );
    }

    #[test]
    fn random_text_is_refused_or_accepted_never_a_panic_and_accepted_ones_answer() {
        // A fuzz pass in miniature (the fuzz crate builds only edgemon-proto): text made of the
        // grammar's own pieces, seeded, so that many inputs parse.
        use rand::{Rng, SeedableRng};
        let pieces = [
            "Mon",
            "sun",
            "Fri-Mon",
            "*",
            "-",
            ":",
            ",",
            " ",
            "00:00",
            "24:00",
            "23:59",
            "12:3",
            "20:00-06:00",
            "06:00-20:00",
            "always",
            "x",
            "99:99",
            "Tue-",
            "\u{e9}",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let text: String = (0..rng.gen_range(0..8))
                .map(|_| pieces[rng.gen_range(0..pieces.len())])
                .collect();
            if let Ok(schedule) = Schedule::parse(&text) {
                accepted += 1;
                let now = rng.gen_range(0..4_000_000_000_000i64);
                match schedule.state(now, &Zone::Utc) {
                    State::Open { until } => assert!(until.is_none_or(|u| u > now), "{text:?}"),
                    State::Closed { opens_at } => assert!(opens_at > now, "{text:?}"),
                }
            }
        }
        assert!(accepted > 100, "{accepted}");
    }

    #[test]
    fn bad_schedules_are_refused_with_the_part_named() {
        for (text, part) in [
            ("", "empty"),
            ("never", "\"never\" is neither days"),
            ("Mon-Fri", "need a time span"),
            ("Mon-Fry 20:00-06:00", "\"Mon-Fry\" is neither days"),
            ("Caturday *", "neither days (Mon, Tue"),
            ("Mon 25:00-06:00", "\"25:00\" is not a time of day"),
            ("Mon 20:00-06:60", "\"06:60\""),
            ("Mon 20:00", "not a time span"),
            ("Mon 24:00-06:00", "\"24:00\""),
            ("Mon 8-9", "\"8\""),
            ("Mon 10:00-10:00", "same time"),
            ("Mon *,", "empty window"),
            ("Mon 20:00-06:00,, Sat *", "empty window"),
        ] {
            let err = Schedule::parse(text).expect_err(text);
            assert!(err.contains(part), "{text:?}: {err}");
        }
    }
}
