//! The bulk form of a batch: the rows `central` found absent, encoded for
//! `LOAD DATA LOCAL INFILE` and streamed from memory through the driver's
//! local-infile handler (nothing is read from or written to disk).
//!
//! Pure encoding, no IO. The format is MySQL's default one, named in full in
//! the statement: fields terminated by a tab, lines by `\n`, escaped by `\`,
//! not enclosed, `\N` for NULL, `CHARACTER SET utf8mb4`. Every value is the
//! text the INSERT path sends as a literal (the same shortest round-trip
//! doubles, the same `YYYY-MM-DD hh:mm:ss.mmm` datetimes, the same checksums),
//! so both paths store the same bytes. A value the INSERT path would send as
//! NULL (a non-finite double, a datetime outside 1970..=9999) is `\N` here
//! too: the server refuses it on a NOT NULL column in both cases (here as a
//! warning, which `central` treats as "redo this batch as INSERT").

use std::fmt::Write;

use super::families::{self, Form};
use super::sql::{self, PreparedSample};

/// The samples columns, in the order of [`samples`]'s fields.
pub const SAMPLE_COLUMNS: &str = "appliance_id, epoch, host_id, seq, collected_at, received_at, \
     clock_skewed, cpu, mem_used, mem_total, swap_used, swap_total, uptime_s, boot_time, load1, \
     load5, load15, hostname, os, kernel, extras, checksum";

/// The sample_cores columns, in the order of [`samples`]'s per-core fields.
pub const CORE_COLUMNS: &str = "appliance_id, epoch, host_id, seq, core, cpu";

/// `LOAD DATA LOCAL INFILE` of `table`'s `columns` in the format of this module. The file
/// name is only a label: the handler answers with the batch, whatever name the server echoes.
pub fn load_statement(table: &str, columns: &str) -> String {
    format!(
        "LOAD DATA LOCAL INFILE 'edgemon-batch-{table}' INTO TABLE {table} CHARACTER SET utf8mb4 \
         FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' \
         LINES STARTING BY '' TERMINATED BY '\\n' ({columns})"
    )
}

/// One batch's absent samples in primary-key order: the samples file, the sample_cores
/// file and how many per-core rows the latter holds, and the child tables' files.
pub struct Files {
    /// Lines of `samples` ([`SAMPLE_COLUMNS`]).
    pub samples: Vec<u8>,
    /// Lines of `sample_cores` ([`CORE_COLUMNS`]).
    pub cores: Vec<u8>,
    /// Lines in `cores`.
    pub core_rows: u64,
    /// The family child tables with rows in this batch: `sample_sections`, then each family's.
    pub children: Vec<Child>,
}

/// The file of one child table.
pub struct Child {
    /// The table.
    pub table: String,
    /// Its columns, in the order of the fields of each line.
    pub columns: String,
    /// The lines.
    pub data: Vec<u8>,
    /// Lines in `data`.
    pub rows: u64,
}

/// Encodes `rows` (already known absent centrally) under `appliance` and `epoch`, sorted
/// by primary key like the INSERT path. Rows whose cores did not parse store none.
pub fn samples(appliance: u32, epoch: i64, rows: &[&PreparedSample<'_>]) -> Files {
    let mut order: Vec<&PreparedSample<'_>> = rows.to_vec();
    order.sort_unstable_by_key(|p| (p.host_id, p.row.seq));
    let mut samples = String::with_capacity(rows.len() * 200);
    let mut cores = String::with_capacity(rows.len() * 8 * 40);
    let mut core_rows = 0;
    let mut children: Vec<Child> = families::tables()
        .into_iter()
        .enumerate()
        .map(|(i, table)| Child {
            columns: match i {
                0 => families::SECTIONS_COLUMNS.to_string(),
                _ => families::columns(crate::report::family::FAMILIES[i - 1]),
            },
            table,
            data: Vec::new(),
            rows: 0,
        })
        .collect();
    let mut line = String::new();
    for p in order {
        let s = p.row;
        let _ = write!(samples, "{appliance}\t{epoch}\t{}\t{}\t", p.host_id, s.seq);
        push_datetime_ms(&mut samples, Some(s.collected_at));
        samples.push('\t');
        push_datetime_ms(&mut samples, Some(s.received_at));
        let _ = write!(samples, "\t{}\t", u8::from(s.clock_skewed));
        push_f64(&mut samples, Some(s.cpu));
        let _ = write!(
            samples,
            "\t{}\t{}\t{}\t{}\t{}\t",
            s.mem_used, s.mem_total, s.swap_used, s.swap_total, s.uptime_s
        );
        push_datetime_ms(&mut samples, s.boot_time_s.map(|b| b.saturating_mul(1000)));
        for load in s.load {
            samples.push('\t');
            push_f64(&mut samples, load);
        }
        for text in [&s.hostname, &s.os, &s.kernel, &s.extras] {
            samples.push('\t');
            push_field_str(&mut samples, text.as_deref());
        }
        let _ = writeln!(samples, "\t{}", p.checksum);
        for (core, cpu) in s.cores.as_deref().unwrap_or_default().iter().enumerate() {
            let _ = write!(
                cores,
                "{appliance}\t{epoch}\t{}\t{}\t{core}\t",
                p.host_id, s.seq
            );
            push_f64(&mut cores, Some(*cpu));
            cores.push('\n');
            core_rows += 1;
        }
        let identity = format!("{appliance}\t{epoch}\t{}\t{}", p.host_id, s.seq);
        for section in &s.sections {
            line.clear();
            families::section_row(&mut line, Form::Field, &identity, section);
            line.push('\n');
            children[0].data.extend_from_slice(line.as_bytes());
            children[0].rows += 1;
            let Some(at) = crate::report::family::FAMILIES
                .iter()
                .position(|f| f.id == section.family.id)
            else {
                continue;
            };
            let child = &mut children[at + 1];
            families::member_rows(Form::Field, &identity, section, |row| {
                child.data.extend_from_slice(row.as_bytes());
                child.data.push(b'\n');
                child.rows += 1;
            });
        }
    }
    children.retain(|c| c.rows > 0);
    Files {
        samples: samples.into_bytes(),
        cores: cores.into_bytes(),
        core_rows,
        children,
    }
}

/// A string field: `\N` for NULL; backslash, tab, newline, carriage return, NUL and
/// Ctrl-Z escaped (the reader maps `\0`, `\n`, `\r`, `\t`, `\Z` and `\\` back).
pub(super) fn push_field_str(out: &mut String, s: Option<&str>) {
    let Some(s) = s else {
        out.push_str("\\N");
        return;
    };
    out.reserve(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            '\x1a' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
}

/// A double as the INSERT path writes it; `\N` where that writes NULL.
fn push_f64(out: &mut String, v: Option<f64>) {
    if !sql::write_f64(out, v) {
        out.push_str("\\N");
    }
}

/// A DATETIME(3) as the INSERT path writes it, unquoted; `\N` where that writes NULL.
fn push_datetime_ms(out: &mut String, ms: Option<i64>) {
    if !ms.is_some_and(|ms| sql::write_datetime_ms(out, ms)) {
        out.push_str("\\N");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::SyncSample;

    fn sample(host: &str, seq: i64) -> SyncSample {
        SyncSample {
            id: seq,
            host: host.into(),
            address: "addr".into(),
            seq,
            collected_at: 1_709_210_096_789,
            received_at: 1_709_210_096_790,
            clock_skewed: true,
            cpu: 0.1 + 0.2,
            cores: Ok(vec![1.0, 1e-7, 99.99]),
            mem_used: 1,
            mem_total: 2,
            swap_used: 0,
            swap_total: 0,
            uptime_s: 60,
            boot_time_s: Some(1_700_000_000),
            load: [Some(0.5), None, Some(f64::NAN)],
            hostname: Some("tab\there\nnew\\back\0nul\rcr\x1az \\N".into()),
            os: None,
            kernel: Some("NULL".into()),
            extras: Some("{\"disk\":\"/:50%\"}".into()),
            sections: Vec::new(),
        }
    }

    #[test]
    fn a_sample_becomes_one_escaped_line_and_one_line_per_core() {
        let rows = [sample("a", 2)];
        let prepared: Vec<_> = rows.iter().map(|r| PreparedSample::new(r, 7)).collect();
        let refs: Vec<_> = prepared.iter().collect();
        let files = samples(3, -5, &refs);
        let text = String::from_utf8(files.samples).unwrap();
        assert_eq!(
            text,
            format!(
                "3\t-5\t7\t2\t2024-02-29 12:34:56.789\t2024-02-29 12:34:56.790\t1\t0.30000000000000004\t\
                 1\t2\t0\t0\t60\t2023-11-14 22:13:20.000\t0.5\t\\N\t\\N\t\
                 tab\\there\\nnew\\\\back\\0nul\\rcr\\Zz \\\\N\t\\N\tNULL\t{{\"disk\":\"/:50%\"}}\t{}\n",
                prepared[0].checksum
            )
        );
        assert_eq!(
            String::from_utf8(files.cores).unwrap(),
            "3\t-5\t7\t2\t0\t1.0\n3\t-5\t7\t2\t1\t1e-7\n3\t-5\t7\t2\t2\t99.99\n"
        );
        assert_eq!(files.core_rows, 3);
    }

    #[test]
    fn rows_go_in_primary_key_order_and_unparsed_cores_store_none() {
        let mut rows = [sample("b", 5), sample("a", 9), sample("a", 3)];
        rows[0].cores = Err("garbage".into());
        let prepared: Vec<_> = rows
            .iter()
            .map(|r| PreparedSample::new(r, if r.host == "a" { 1 } else { 2 }))
            .collect();
        let refs: Vec<_> = prepared.iter().collect();
        let files = samples(1, 1, &refs);
        let keys: Vec<String> = String::from_utf8(files.samples)
            .unwrap()
            .lines()
            .map(|l| l.split('\t').take(4).collect::<Vec<_>>().join(","))
            .collect();
        assert_eq!(keys, ["1,1,1,3", "1,1,1,9", "1,1,2,5"]);
        assert_eq!(files.core_rows, 6);
    }

    #[test]
    fn out_of_range_values_become_null_as_on_the_insert_path() {
        let mut row = sample("a", 1);
        row.collected_at = -1;
        row.cpu = f64::INFINITY;
        row.boot_time_s = None;
        let prepared = [PreparedSample::new(&row, 1)];
        let refs: Vec<_> = prepared.iter().collect();
        let text = String::from_utf8(samples(1, 1, &refs).samples).unwrap();
        let fields: Vec<&str> = text.trim_end().split('\t').collect();
        assert_eq!(fields.len(), 22);
        assert_eq!(fields[4], "\\N");
        assert_eq!(fields[7], "\\N");
        assert_eq!(fields[13], "\\N");
    }

    #[test]
    fn the_statement_names_the_whole_format() {
        let s = load_statement("samples", SAMPLE_COLUMNS);
        assert!(s.starts_with("LOAD DATA LOCAL INFILE 'edgemon-batch-samples' INTO TABLE samples CHARACTER SET utf8mb4"));
        assert!(s.contains(r"FIELDS TERMINATED BY '\t' ENCLOSED BY '' ESCAPED BY '\\'"));
        assert!(s.contains(r"LINES STARTING BY '' TERMINATED BY '\n' (appliance_id,"));
        assert!(!s.contains("IGNORE") && !s.contains("REPLACE"));
    }
}
