//! The text of the statements sync sends: multi-row `INSERT ... ON DUPLICATE
//! KEY UPDATE` for samples, per-core values, hosts and journals, with values
//! rendered as SQL literals.
//!
//! Pure string building, no IO. Literals rather than placeholders: one round
//! trip per statement instead of prepare + execute, and no limit of 65,535
//! placeholders per statement. Strings are escaped for the session's
//! `sql_mode`, which `central` sets explicitly (backslash escapes on).
//! `ON DUPLICATE KEY UPDATE k = k` makes a re-sent row a no-op while letting
//! content errors (too long, out of range, invalid JSON) surface, which
//! `INSERT IGNORE` would swallow as warnings.

use std::collections::HashMap;
use std::fmt::Write;

use crate::buffer::{JournalFields, JournalRow, SyncSample};

/// Statements are cut at about this many bytes, far below MySQL's default
/// `max_allowed_packet` (16 MiB on MariaDB 10.11, 64 MiB on MySQL 8).
pub const MAX_STATEMENT_BYTES: usize = 1 << 20;

/// Accumulates `VALUES` tuples into statements of bounded size.
struct MultiInsert<'a> {
    head: &'a str,
    tail: &'a str,
    current: String,
    done: Vec<String>,
}

impl<'a> MultiInsert<'a> {
    fn new(head: &'a str, tail: &'a str) -> MultiInsert<'a> {
        MultiInsert {
            head,
            tail,
            current: String::new(),
            done: Vec::new(),
        }
    }

    /// Starts the next tuple; the caller writes it (with its parentheses) into the returned string.
    fn row(&mut self) -> &mut String {
        if self.current.len() >= MAX_STATEMENT_BYTES {
            self.flush();
        }
        if self.current.is_empty() {
            self.current.push_str(self.head);
            self.current.push_str(" VALUES ");
        } else {
            self.current.push(',');
        }
        &mut self.current
    }

    fn flush(&mut self) {
        if !self.current.is_empty() {
            self.current.push(' ');
            self.current.push_str(self.tail);
            self.done.push(std::mem::take(&mut self.current));
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.flush();
        self.done
    }
}

/// `INSERT INTO hosts ...` for hosts not yet known centrally.
pub fn hosts_upsert(appliance: u32, hosts: &[(&str, &str)]) -> Vec<String> {
    let mut insert = MultiInsert::new(
        "INSERT INTO hosts (appliance_id, name, address)",
        "ON DUPLICATE KEY UPDATE address = VALUES(address)",
    );
    for (name, address) in hosts {
        let out = insert.row();
        let _ = write!(out, "({appliance},");
        push_str(out, name);
        out.push(',');
        push_str(out, address);
        out.push(')');
    }
    insert.finish()
}

/// The statements that store `rows` (samples, then their per-core values).
/// Every host of `rows` must be in `hosts`; rows whose cores did not parse store none.
pub fn sample_inserts(
    appliance: u32,
    hosts: &HashMap<String, u32>,
    rows: &[SyncSample],
) -> Vec<String> {
    let mut samples = MultiInsert::new(
        "INSERT INTO samples (appliance_id, host_id, seq, collected_at, received_at, clock_skewed, \
         cpu, mem_used, mem_total, swap_used, swap_total, uptime_s, boot_time, load1, load5, load15, \
         hostname, os, kernel, extras)",
        "ON DUPLICATE KEY UPDATE seq = seq",
    );
    let mut cores = MultiInsert::new(
        "INSERT INTO sample_cores (appliance_id, host_id, seq, core, cpu)",
        "ON DUPLICATE KEY UPDATE core = core",
    );
    // Primary-key order within the transaction: fewer B-tree pages touched than
    // arrival order, which interleaves every host.
    let mut order: Vec<(u32, i64, &SyncSample)> = rows
        .iter()
        .map(|s| (hosts.get(&s.host).copied().unwrap_or(0), s.seq, s))
        .collect();
    order.sort_unstable_by_key(|&(host, seq, _)| (host, seq));
    for (host, _, s) in order {
        let out = samples.row();
        let _ = write!(out, "({appliance},{host},{},", s.seq);
        push_datetime_ms(out, s.collected_at);
        out.push(',');
        push_datetime_ms(out, s.received_at);
        let _ = write!(out, ",{},", u8::from(s.clock_skewed));
        push_f64(out, Some(s.cpu));
        let _ = write!(
            out,
            ",{},{},{},{},{},",
            s.mem_used, s.mem_total, s.swap_used, s.swap_total, s.uptime_s
        );
        match s.boot_time_s {
            Some(boot) => push_datetime_ms(out, boot.saturating_mul(1000)),
            None => out.push_str("NULL"),
        }
        for load in s.load {
            out.push(',');
            push_f64(out, load);
        }
        for text in [&s.hostname, &s.os, &s.kernel, &s.extras] {
            out.push(',');
            push_opt_str(out, text.as_deref());
        }
        out.push(')');
        for (core, cpu) in s.cores.as_deref().unwrap_or_default().iter().enumerate() {
            let out = cores.row();
            let _ = write!(out, "({appliance},{host},{},{core},", s.seq);
            push_f64(out, Some(*cpu));
            out.push(')');
        }
    }
    let mut statements = samples.finish();
    statements.extend(cores.finish());
    statements
}

/// The statements that store journal rows of one table (all `rows` of one [`JournalFields`] kind).
pub fn journal_inserts(
    appliance: u32,
    hosts: &HashMap<String, u32>,
    rows: &[JournalRow],
) -> Vec<String> {
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    let head = match first.fields {
        JournalFields::CollectionError { .. } => {
            "INSERT INTO collection_errors (appliance_id, local_id, host_id, at, class, message)"
        }
        JournalFields::Drop { .. } => {
            "INSERT INTO drops (appliance_id, local_id, host_id, first_seq, last_seq, count, reason, at)"
        }
        JournalFields::AlertEvent { .. } => {
            "INSERT INTO alert_events (appliance_id, local_id, host_id, rule, kind, value, threshold, at, message)"
        }
    };
    let mut insert = MultiInsert::new(head, "ON DUPLICATE KEY UPDATE local_id = local_id");
    for row in rows {
        let host = hosts.get(&row.host).copied().unwrap_or(0);
        let out = insert.row();
        let _ = write!(out, "({appliance},{},{host},", row.id);
        match &row.fields {
            JournalFields::CollectionError { at, class, message } => {
                push_datetime_ms(out, *at);
                out.push(',');
                push_str(out, class);
                out.push(',');
                push_str(out, message);
            }
            JournalFields::Drop {
                first_seq,
                last_seq,
                count,
                reason,
                at,
            } => {
                let _ = write!(out, "{first_seq},{last_seq},{count},");
                push_str(out, reason);
                out.push(',');
                push_datetime_ms(out, *at);
            }
            JournalFields::AlertEvent {
                rule,
                kind,
                value,
                threshold,
                at,
                message,
            } => {
                push_str(out, rule);
                out.push(',');
                push_str(out, kind);
                out.push(',');
                push_f64(out, *value);
                out.push(',');
                push_f64(out, *threshold);
                out.push(',');
                push_datetime_ms(out, *at);
                out.push(',');
                push_str(out, message);
            }
        }
        out.push(')');
    }
    insert.finish()
}

/// A string literal, escaped for a session without `NO_BACKSLASH_ESCAPES`.
pub fn push_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\x1a' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

fn push_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_str(out, s),
        None => out.push_str("NULL"),
    }
}

/// A DOUBLE literal; Rust's shortest round-trip form, so MySQL stores exactly this value.
/// A non-finite value becomes NULL, which a NOT NULL column refuses as a content error.
fn push_f64(out: &mut String, v: Option<f64>) {
    match v {
        Some(v) if v.is_finite() => {
            let _ = write!(out, "{v:?}");
        }
        _ => out.push_str("NULL"),
    }
}

/// A DATETIME(3) literal in UTC for Unix milliseconds; NULL outside years 1970..=9999,
/// which a NOT NULL column refuses as a content error (an agent clock gone wild).
pub fn push_datetime_ms(out: &mut String, ms: i64) {
    const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31 23:59:59.999
    if !(0..=MAX_MS).contains(&ms) {
        out.push_str("NULL");
        return;
    }
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    let _ = write!(
        out,
        "'{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}'",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    );
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datetime(ms: i64) -> String {
        let mut s = String::new();
        push_datetime_ms(&mut s, ms);
        s
    }

    #[test]
    fn datetimes_match_known_instants() {
        assert_eq!(datetime(0), "'1970-01-01 00:00:00.000'");
        // 2024-02-29T12:34:56.789Z, from `date -u -d @1709210096.789`.
        assert_eq!(datetime(1_709_210_096_789), "'2024-02-29 12:34:56.789'");
        assert_eq!(datetime(253_402_300_799_999), "'9999-12-31 23:59:59.999'");
        assert_eq!(datetime(-1), "NULL");
        assert_eq!(datetime(i64::MAX), "NULL");
    }

    #[test]
    fn strings_are_escaped_so_quotes_and_backslashes_cannot_break_out() {
        let mut s = String::new();
        push_str(&mut s, "it's a \\ \"test\"\n\0");
        assert_eq!(s, r#"'it\'s a \\ \"test\"\n\0'"#);
    }

    #[test]
    fn floats_round_trip_and_non_finite_becomes_null() {
        let mut s = String::new();
        push_f64(&mut s, Some(0.1 + 0.2));
        assert_eq!(s.parse::<f64>().unwrap(), 0.1 + 0.2);
        s.clear();
        push_f64(&mut s, Some(f64::NAN));
        assert_eq!(s, "NULL");
    }

    fn sample(host: &str, seq: i64, cores: usize) -> SyncSample {
        SyncSample {
            id: seq,
            host: host.into(),
            address: "addr".into(),
            seq,
            collected_at: 1_000,
            received_at: 2_000,
            clock_skewed: false,
            cpu: 12.5,
            cores: Ok(vec![1.0; cores]),
            mem_used: 1,
            mem_total: 2,
            swap_used: 0,
            swap_total: 0,
            uptime_s: 60,
            boot_time_s: Some(1_700_000_000),
            load: [Some(0.5), None, None],
            hostname: Some("h'1".into()),
            os: None,
            kernel: None,
            extras: Some("{\"disk\":\"/:50%\"}".into()),
        }
    }

    #[test]
    fn a_batch_becomes_one_sample_insert_and_one_core_insert() {
        let hosts = HashMap::from([("a".to_string(), 7)]);
        let rows = [sample("a", 1, 2), sample("a", 2, 2)];
        let statements = sample_inserts(3, &hosts, &rows);
        assert_eq!(statements.len(), 2);
        assert!(statements[0].starts_with("INSERT INTO samples"));
        assert!(
            statements[0]
                .contains("(3,7,1,'1970-01-01 00:00:01.000','1970-01-01 00:00:02.000',0,12.5,")
        );
        assert!(statements[0].contains("'h\\'1'"));
        assert!(statements[0].ends_with("ON DUPLICATE KEY UPDATE seq = seq"));
        assert_eq!(statements[1].matches("),(").count(), 3, "{}", statements[1]);
    }

    #[test]
    fn large_batches_are_cut_into_statements_under_the_packet_limit() {
        let hosts = HashMap::from([("a".to_string(), 1)]);
        let rows: Vec<_> = (0..20_000).map(|i| sample("a", i, 8)).collect();
        let statements = sample_inserts(1, &hosts, &rows);
        assert!(statements.len() > 2);
        for s in &statements {
            assert!(s.len() < MAX_STATEMENT_BYTES + 1024);
            assert!(s.ends_with("= seq") || s.ends_with("= core"));
        }
        let tuples: usize = statements
            .iter()
            .map(|s| s.matches("),(").count() + 1)
            .sum();
        assert_eq!(tuples, 20_000 * 9);
    }
}
