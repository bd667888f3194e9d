//! The text of the statements sync sends: multi-row `INSERT ... ON DUPLICATE
//! KEY UPDATE` for samples, per-core values, hosts and journals, with values
//! rendered as SQL literals.
//!
//! Pure string building, no IO. Literals rather than placeholders: one round
//! trip per statement instead of prepare + execute, and no limit of 65,535
//! placeholders per statement. Strings are escaped for the session's
//! `sql_mode`, which `central` sets explicitly (backslash escapes on).
//! Every row carries the buffer's epoch and a checksum of its values
//! ([`fnv1a`]), so that a re-send is told apart from a collision. `central`
//! sends only rows whose identity is not there yet; `ON DUPLICATE KEY UPDATE
//! k = k` is a guard beside that check, and lets content errors (too long, out
//! of range, invalid JSON) surface, which `INSERT IGNORE` would swallow.

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

/// FNV-1a, 64 bits: the checksum of a row's values as sent. Not cryptographic: it tells an
/// identical re-send (a crash between COMMIT and marking) from a different row under the same
/// identity, which only a replaced or copied buffer can produce.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The values of a sample after its identity, as SQL literals, comma separated (in the column
/// order of [`sample_inserts`]).
fn sample_values(s: &SyncSample) -> String {
    let mut out = String::with_capacity(256);
    push_datetime_ms(&mut out, s.collected_at);
    out.push(',');
    push_datetime_ms(&mut out, s.received_at);
    let _ = write!(out, ",{},", u8::from(s.clock_skewed));
    push_f64(&mut out, Some(s.cpu));
    let _ = write!(
        out,
        ",{},{},{},{},{},",
        s.mem_used, s.mem_total, s.swap_used, s.swap_total, s.uptime_s
    );
    match s.boot_time_s {
        Some(boot) => push_datetime_ms(&mut out, boot.saturating_mul(1000)),
        None => out.push_str("NULL"),
    }
    for load in s.load {
        out.push(',');
        push_f64(&mut out, load);
    }
    for text in [&s.hostname, &s.os, &s.kernel, &s.extras] {
        out.push(',');
        push_opt_str(&mut out, text.as_deref());
    }
    out
}

/// A sample ready to send: its central host id, values and checksum (values and per-core values).
pub struct PreparedSample<'a> {
    /// The buffer's row.
    pub row: &'a SyncSample,
    /// The central id of its host.
    pub host_id: u32,
    values: String,
    /// Checksum of everything but the identity.
    pub checksum: u64,
}

impl<'a> PreparedSample<'a> {
    /// Renders `row` for central host `host_id`.
    pub fn new(row: &'a SyncSample, host_id: u32) -> PreparedSample<'a> {
        let values = sample_values(row);
        let mut text = values.clone();
        for cpu in row.cores.as_deref().unwrap_or_default() {
            text.push('|');
            push_f64(&mut text, Some(*cpu));
        }
        super::families::checksum_text(&mut text, &row.sections);
        PreparedSample {
            row,
            host_id,
            checksum: fnv1a(text.as_bytes()),
            values,
        }
    }
}

/// The statements that store `rows` (samples, then their per-core values, then their family
/// sections' child rows) under `epoch`. Rows whose cores did not parse store none.
pub fn sample_inserts(appliance: u32, epoch: i64, rows: &[&PreparedSample<'_>]) -> Vec<String> {
    let mut samples = MultiInsert::new(
        "INSERT INTO samples (appliance_id, epoch, host_id, seq, collected_at, received_at, clock_skewed, \
         cpu, mem_used, mem_total, swap_used, swap_total, uptime_s, boot_time, load1, load5, load15, \
         hostname, os, kernel, extras, checksum)",
        "ON DUPLICATE KEY UPDATE seq = seq",
    );
    let mut cores = MultiInsert::new(
        "INSERT INTO sample_cores (appliance_id, epoch, host_id, seq, core, cpu)",
        "ON DUPLICATE KEY UPDATE core = core",
    );
    // Primary-key order within the transaction: fewer B-tree pages touched than
    // arrival order, which interleaves every host.
    let mut order: Vec<&PreparedSample<'_>> = rows.to_vec();
    order.sort_unstable_by_key(|p| (p.host_id, p.row.seq));
    for p in order {
        let s = p.row;
        let out = samples.row();
        let _ = write!(
            out,
            "({appliance},{epoch},{},{},{},{})",
            p.host_id, s.seq, p.values, p.checksum
        );
        for (core, cpu) in s.cores.as_deref().unwrap_or_default().iter().enumerate() {
            let out = cores.row();
            let _ = write!(out, "({appliance},{epoch},{},{},{core},", p.host_id, s.seq);
            push_f64(out, Some(*cpu));
            out.push(')');
        }
    }
    let mut statements = samples.finish();
    statements.extend(cores.finish());
    statements.extend(family_inserts(appliance, epoch, &order_by_key(rows)));
    statements
}

fn order_by_key<'a, 'b>(rows: &'b [&'a PreparedSample<'a>]) -> Vec<&'b PreparedSample<'a>> {
    let mut order: Vec<&PreparedSample<'_>> = rows.to_vec();
    order.sort_unstable_by_key(|p| (p.host_id, p.row.seq));
    order
}

/// The INSERTs of the child rows of `rows`' sections: `sample_sections`, then one table per
/// family (see `families.rs`), in primary-key order.
fn family_inserts(appliance: u32, epoch: i64, rows: &[&PreparedSample<'_>]) -> Vec<String> {
    use super::families::{self, Form};
    use crate::report::family::FAMILIES;
    let heads: Vec<(String, String)> = std::iter::once((
        format!(
            "INSERT INTO {} ({})",
            families::SECTIONS_TABLE,
            families::SECTIONS_COLUMNS
        ),
        families::SECTIONS_UPSERT.to_string(),
    ))
    .chain(FAMILIES.iter().map(|f| {
        (
            format!(
                "INSERT INTO {} ({})",
                families::table(f),
                families::columns(f)
            ),
            families::upsert_tail(f),
        )
    }))
    .collect();
    let mut inserts: Vec<MultiInsert<'_>> =
        heads.iter().map(|(h, t)| MultiInsert::new(h, t)).collect();
    for p in rows {
        let identity = format!("{appliance},{epoch},{},{}", p.host_id, p.row.seq);
        for section in &p.row.sections {
            families::warn_pad_space_twins(&p.row.host, p.row.seq, section);
            let out = inserts[0].row();
            out.push('(');
            families::section_row(out, Form::Literal, &identity, section);
            out.push(')');
            let Some(at) = FAMILIES.iter().position(|f| f.id == section.family.id) else {
                continue;
            };
            let insert = &mut inserts[at + 1];
            families::member_rows(Form::Literal, &identity, section, |row| {
                let out = insert.row();
                out.push('(');
                out.push_str(row);
                out.push(')');
            });
        }
    }
    inserts.into_iter().flat_map(MultiInsert::finish).collect()
}

/// `SELECT host_id, seq, checksum` of the central rows that already hold any identity of `rows`.
pub fn existing_samples(appliance: u32, epoch: i64, rows: &[PreparedSample<'_>]) -> String {
    let mut ranges: HashMap<u32, (i64, i64)> = HashMap::new();
    for p in rows {
        let range = ranges.entry(p.host_id).or_insert((p.row.seq, p.row.seq));
        range.0 = range.0.min(p.row.seq);
        range.1 = range.1.max(p.row.seq);
    }
    let mut ranges: Vec<_> = ranges.into_iter().collect();
    ranges.sort_unstable();
    let mut out = format!(
        "SELECT host_id, seq, checksum FROM samples WHERE appliance_id = {appliance} AND epoch = {epoch} AND ("
    );
    for (i, (host, (low, high))) in ranges.iter().enumerate() {
        if i > 0 {
            out.push_str(" OR ");
        }
        let _ = write!(out, "(host_id = {host} AND seq BETWEEN {low} AND {high})");
    }
    out.push(')');
    out
}

/// A journal row ready to send: its central host id, values and checksum.
pub struct PreparedJournal<'a> {
    /// The buffer's row.
    pub row: &'a JournalRow,
    /// The central id of its host.
    pub host_id: u32,
    values: String,
    /// Checksum of the values (host name included, since host ids are per database).
    pub checksum: u64,
}

impl<'a> PreparedJournal<'a> {
    /// Renders `row` for central host `host_id`.
    pub fn new(row: &'a JournalRow, host_id: u32) -> PreparedJournal<'a> {
        let mut out = String::with_capacity(128);
        match &row.fields {
            JournalFields::CollectionError { at, class, message } => {
                push_datetime_ms(&mut out, *at);
                out.push(',');
                push_str(&mut out, class);
                out.push(',');
                push_str(&mut out, message);
            }
            JournalFields::Drop {
                first_seq,
                last_seq,
                count,
                reason,
                at,
            } => {
                let _ = write!(out, "{first_seq},{last_seq},{count},");
                push_str(&mut out, reason);
                out.push(',');
                push_datetime_ms(&mut out, *at);
            }
            JournalFields::AlertEvent {
                rule,
                kind,
                value,
                threshold,
                at,
                message,
            } => {
                push_str(&mut out, rule);
                out.push(',');
                push_str(&mut out, kind);
                out.push(',');
                push_f64(&mut out, *value);
                out.push(',');
                push_f64(&mut out, *threshold);
                out.push(',');
                push_datetime_ms(&mut out, *at);
                out.push(',');
                push_str(&mut out, message);
            }
        }
        let mut text = row.host.clone();
        text.push('|');
        text.push_str(&out);
        PreparedJournal {
            row,
            host_id,
            checksum: fnv1a(text.as_bytes()),
            values: out,
        }
    }
}

/// The central table of a journal row.
pub fn journal_table(fields: &JournalFields) -> &'static str {
    match fields {
        JournalFields::CollectionError { .. } => "collection_errors",
        JournalFields::Drop { .. } => "drops",
        JournalFields::AlertEvent { .. } => "alert_events",
    }
}

/// The statements that store journal rows of one table (all `rows` of one [`JournalFields`] kind).
pub fn journal_inserts(appliance: u32, epoch: i64, rows: &[&PreparedJournal<'_>]) -> Vec<String> {
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    let head = match first.row.fields {
        JournalFields::CollectionError { .. } => {
            "INSERT INTO collection_errors (appliance_id, epoch, local_id, host_id, at, class, message, checksum)"
        }
        JournalFields::Drop { .. } => {
            "INSERT INTO drops (appliance_id, epoch, local_id, host_id, first_seq, last_seq, count, reason, at, checksum)"
        }
        JournalFields::AlertEvent { .. } => {
            "INSERT INTO alert_events (appliance_id, epoch, local_id, host_id, rule, kind, value, threshold, at, message, checksum)"
        }
    };
    let mut insert = MultiInsert::new(head, "ON DUPLICATE KEY UPDATE local_id = local_id");
    for p in rows {
        let out = insert.row();
        let _ = write!(
            out,
            "({appliance},{epoch},{},{},{},{})",
            p.row.id, p.host_id, p.values, p.checksum
        );
    }
    insert.finish()
}

/// `SELECT local_id, checksum` of the central rows of `table` that already hold any identity of `rows`.
pub fn existing_journal(
    table: &str,
    appliance: u32,
    epoch: i64,
    rows: &[PreparedJournal<'_>],
) -> String {
    let low = rows.iter().map(|p| p.row.id).min().unwrap_or(0);
    let high = rows.iter().map(|p| p.row.id).max().unwrap_or(0);
    format!(
        "SELECT local_id, checksum FROM {table} WHERE appliance_id = {appliance} AND epoch = {epoch} \
         AND local_id BETWEEN {low} AND {high}"
    )
}

/// What one transaction adds to the watermark of one host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatermarkDelta {
    /// The host's first sequence number under this epoch.
    pub first_seq: i64,
    /// The newest sequence number the buffer holds for the host.
    pub last_seq: i64,
    /// The newest sequence number this transaction inserted (0: none).
    pub stored_last_seq: i64,
    /// Samples this transaction inserted.
    pub stored: i64,
    /// Samples the drops rows this transaction inserted account for.
    pub dropped: i64,
}

/// Upserts of the watermarks of `deltas` (central host id, delta), in key order.
pub fn watermark_upserts(
    appliance: u32,
    epoch: i64,
    deltas: &HashMap<u32, WatermarkDelta>,
) -> Vec<String> {
    let mut insert = MultiInsert::new(
        "INSERT INTO watermarks (appliance_id, epoch, host_id, first_seq, last_seq, stored_last_seq, \
         samples_stored, samples_dropped)",
        "ON DUPLICATE KEY UPDATE first_seq = LEAST(first_seq, VALUES(first_seq)), \
         last_seq = GREATEST(last_seq, VALUES(last_seq)), \
         stored_last_seq = GREATEST(stored_last_seq, VALUES(stored_last_seq)), \
         samples_stored = samples_stored + VALUES(samples_stored), \
         samples_dropped = samples_dropped + VALUES(samples_dropped), \
         updated_at = CURRENT_TIMESTAMP(3)",
    );
    let mut keys: Vec<_> = deltas.keys().copied().collect();
    keys.sort_unstable();
    for host in keys {
        let d = deltas[&host];
        let out = insert.row();
        let _ = write!(
            out,
            "({appliance},{epoch},{host},{},{},{},{},{})",
            d.first_seq, d.last_seq, d.stored_last_seq, d.stored, d.dropped
        );
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
    if !write_f64(out, v) {
        out.push_str("NULL");
    }
}

/// Writes a finite `v` in Rust's shortest round-trip form and returns true; writes nothing
/// and returns false for NULL or a non-finite value. Shared with the bulk path (`bulk.rs`).
pub(super) fn write_f64(out: &mut String, v: Option<f64>) -> bool {
    match v {
        Some(v) if v.is_finite() => {
            let _ = write!(out, "{v:?}");
            true
        }
        _ => false,
    }
}

/// A DATETIME(3) literal in UTC for Unix milliseconds; NULL outside years 1970..=9999,
/// which a NOT NULL column refuses as a content error (an agent clock gone wild).
pub fn push_datetime_ms(out: &mut String, ms: i64) {
    out.push('\'');
    if write_datetime_ms(out, ms) {
        out.push('\'');
    } else {
        out.pop();
        out.push_str("NULL");
    }
}

/// Writes `YYYY-MM-DD hh:mm:ss.mmm` (UTC, unquoted) for Unix milliseconds and returns true;
/// writes nothing and returns false outside years 1970..=9999. Shared with the bulk path.
pub(super) fn write_datetime_ms(out: &mut String, ms: i64) -> bool {
    const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31 23:59:59.999
    if !(0..=MAX_MS).contains(&ms) {
        return false;
    }
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    );
    true
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
            sections: Vec::new(),
        }
    }

    fn prepared(rows: &[SyncSample], host_id: u32) -> Vec<PreparedSample<'_>> {
        rows.iter()
            .map(|r| PreparedSample::new(r, host_id))
            .collect()
    }

    #[test]
    fn a_batch_becomes_one_sample_insert_and_one_core_insert() {
        let rows = [sample("a", 1, 2), sample("a", 2, 2)];
        let prepared = prepared(&rows, 7);
        let refs: Vec<_> = prepared.iter().collect();
        let statements = sample_inserts(3, -5, &refs);
        assert_eq!(statements.len(), 2);
        assert!(statements[0].starts_with("INSERT INTO samples"));
        assert!(
            statements[0]
                .contains("(3,-5,7,1,'1970-01-01 00:00:01.000','1970-01-01 00:00:02.000',0,12.5,")
        );
        assert!(statements[0].contains("'h\\'1'"));
        assert!(statements[0].ends_with("ON DUPLICATE KEY UPDATE seq = seq"));
        assert_eq!(statements[1].matches("),(").count(), 3, "{}", statements[1]);
    }

    #[test]
    fn large_batches_are_cut_into_statements_under_the_packet_limit() {
        let rows: Vec<_> = (0..20_000).map(|i| sample("a", i, 8)).collect();
        let prepared = prepared(&rows, 1);
        let refs: Vec<_> = prepared.iter().collect();
        let statements = sample_inserts(1, 9, &refs);
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

    #[test]
    fn checksums_tell_identical_rows_from_different_ones() {
        let a = sample("a", 1, 2);
        let mut b = a.clone();
        b.id = 99;
        assert_eq!(
            PreparedSample::new(&a, 1).checksum,
            PreparedSample::new(&b, 2).checksum,
            "identity and local id are not part of the checksum"
        );
        b.cores = Ok(vec![1.0, 1.5]);
        assert_ne!(
            PreparedSample::new(&a, 1).checksum,
            PreparedSample::new(&b, 1).checksum
        );
        b = a.clone();
        b.mem_used += 1;
        assert_ne!(
            PreparedSample::new(&a, 1).checksum,
            PreparedSample::new(&b, 1).checksum
        );
        // The families are covered: a member's value, a key, a cut count each change it.
        let mut with = a.clone();
        with.sections = crate::buffer::example_sections(1, 1);
        let base = PreparedSample::new(&with, 1).checksum;
        assert_ne!(base, PreparedSample::new(&a, 1).checksum);
        let mut other = with.clone();
        other.sections[2].members[1].values[2] = Some(crate::report::family::Value::U64(7));
        assert_ne!(base, PreparedSample::new(&other, 1).checksum);
        other = with.clone();
        other.sections[1].cut = 1;
        assert_ne!(base, PreparedSample::new(&other, 1).checksum);
    }

    #[test]
    fn the_existing_row_query_covers_each_host_range() {
        let rows = [sample("a", 3, 0), sample("a", 9, 0), sample("b", 4, 0)];
        let prepared: Vec<_> = rows
            .iter()
            .map(|r| PreparedSample::new(r, if r.host == "a" { 1 } else { 2 }))
            .collect();
        let query = existing_samples(4, 77, &prepared);
        assert!(query.contains("appliance_id = 4 AND epoch = 77"), "{query}");
        assert!(
            query.contains(
                "(host_id = 1 AND seq BETWEEN 3 AND 9) OR (host_id = 2 AND seq BETWEEN 4 AND 4)"
            ),
            "{query}"
        );
    }
}
