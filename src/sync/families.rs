//! The metric family sections of a batch, as central child rows, built from the family specs
//! alone (`edgemon_proto::report::family`): adding a family needs its DDL in
//! `schema/mysql.sql` and nothing here.
//!
//! Each family `F` has a child table `sample_F` keyed by the sample's identity (appliance_id,
//! epoch, host_id, seq) plus the member key column named by the spec (none for a singleton
//! family), with one column per field of the spec, named like the field. Every sample that
//! carried sections has one `sample_sections` row per section (family, members, cut,
//! refused), which tells "measured, none" from "not measured" and keeps what was cut.
//!
//! Pure text, no IO. The INSERT literals and the `LOAD DATA` fields of a value are the same
//! text ([`super::sql`] and [`super::bulk`] escaping), so both paths store the same bytes;
//! the sample's checksum covers the same text ([`checksum_text`]). Child rows are written only
//! with their sample, in its transaction, when the sample's identity was absent; a child row
//! already there is then an orphan (its sample deleted by hand, a partial restore) of the same
//! identity, and the INSERT overwrites it with what the sample carries (`ON DUPLICATE KEY
//! UPDATE` every column; on the LOAD path the duplicate is a warning, so the batch goes as
//! INSERT). Two members of one sample whose keys differ only in trailing spaces are one row
//! for the central collation (PAD SPACE): the later overwrites the earlier, logged.

use std::fmt::Write;

use crate::report::family::{FAMILIES, FamilySpec, Kind, Section, Value};

/// The table of the per-sample section rows.
pub const SECTIONS_TABLE: &str = "sample_sections";

/// Its columns, in the order of [`section_row`].
pub const SECTIONS_COLUMNS: &str =
    "appliance_id, epoch, host_id, seq, family, members, cut, refused";

/// The child table of `family`.
pub fn table(family: &FamilySpec) -> String {
    format!("sample_{}", family.name)
}

/// Every child table this build writes: `sample_sections`, then one per family.
pub fn tables() -> Vec<String> {
    std::iter::once(SECTIONS_TABLE.to_string())
        .chain(FAMILIES.iter().map(|f| table(f)))
        .collect()
}

/// The columns of `family`'s child table, in the order of [`member_row`]: the identity, the
/// key (unless a singleton), the fields; quoted, since field names may be SQL words.
pub fn columns(family: &FamilySpec) -> String {
    let mut out = String::from("appliance_id, epoch, host_id, seq");
    if !family.is_singleton() {
        let _ = write!(out, ", `{}`", family.key);
    }
    for field in family.fields {
        let _ = write!(out, ", `{}`", field.name);
    }
    out
}

/// How a value is written: the INSERT path's literals or the LOAD path's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// SQL literals (`NULL`, `'text'`), comma separated.
    Literal,
    /// `LOAD DATA` fields (`\N`, escaped text), tab separated.
    Field,
}

impl Form {
    fn separator(self) -> char {
        match self {
            Form::Literal => ',',
            Form::Field => '\t',
        }
    }

    fn null(self, out: &mut String) {
        out.push_str(match self {
            Form::Literal => "NULL",
            Form::Field => "\\N",
        });
    }

    fn text(self, out: &mut String, text: &str) {
        match self {
            Form::Literal => super::sql::push_str(out, text),
            Form::Field => super::bulk::push_field_str(out, Some(text)),
        }
    }

    fn value(self, out: &mut String, value: Option<&Value>) {
        match value {
            None => self.null(out),
            Some(Value::U64(v)) => {
                let _ = write!(out, "{v}");
            }
            Some(Value::F64(v)) => {
                if !super::sql::write_f64(out, Some(*v)) {
                    self.null(out);
                }
            }
            Some(Value::Bool(v)) => out.push(if *v { '1' } else { '0' }),
            Some(Value::Text(v)) => self.text(out, v),
        }
    }
}

/// One `sample_sections` row of `section` (without parentheses or line end).
pub fn section_row(out: &mut String, form: Form, identity: &str, section: &Section) {
    let sep = form.separator();
    out.push_str(identity);
    out.push(sep);
    form.text(out, section.family.name);
    let _ = write!(
        out,
        "{sep}{}{sep}{}{sep}{}",
        section.members.len(),
        section.cut,
        section.refused
    );
}

/// The child rows of `section`, each passed to `row` (without parentheses or line end).
/// `identity` is the sample's identity, already in `form` (`a,e,h,s` or `a\te\th\ts`).
pub fn member_rows(form: Form, identity: &str, section: &Section, mut row: impl FnMut(&str)) {
    let sep = form.separator();
    let spec = section.family;
    let mut out = String::with_capacity(128);
    for member in &section.members {
        out.clear();
        out.push_str(identity);
        if !spec.is_singleton() {
            out.push(sep);
            form.text(&mut out, &member.key);
        }
        for (i, field) in spec.fields.iter().enumerate() {
            out.push(sep);
            let value = member.values.get(i).and_then(Option::as_ref);
            // A value of another kind than its field is stored as NULL, never as a wrong type.
            form.value(&mut out, value.filter(|v| v.kind() == field.kind));
        }
        row(&out);
    }
}

/// What the sample checksum adds for `sections` (nothing when there are none, so a sample
/// without sections keeps the checksum older builds gave it): every section's counts and
/// every member's key and values, as the INSERT path sends them.
pub fn checksum_text(out: &mut String, sections: &[Section]) {
    for section in sections {
        out.push_str("|#");
        section_row(out, Form::Literal, "", section);
        member_rows(Form::Literal, "", section, |row| {
            out.push('|');
            out.push_str(row);
        });
    }
}

/// The `ON DUPLICATE KEY UPDATE` tail of `family`'s INSERT: every field takes the value sent.
pub fn upsert_tail(family: &FamilySpec) -> String {
    let mut out = String::from("ON DUPLICATE KEY UPDATE ");
    if family.fields.is_empty() {
        out.push_str("seq = seq");
    }
    for (i, field) in family.fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "`{0}` = VALUES(`{0}`)", field.name);
    }
    out
}

/// The `ON DUPLICATE KEY UPDATE` tail of the `sample_sections` INSERT.
pub const SECTIONS_UPSERT: &str = "ON DUPLICATE KEY UPDATE members = VALUES(members), \
     cut = VALUES(cut), refused = VALUES(refused)";

/// Warns when two members of `section` are one row for the central PAD SPACE collation.
pub fn warn_pad_space_twins(host: &str, seq: i64, section: &Section) {
    if section.family.is_singleton() || section.members.len() < 2 {
        return;
    }
    let mut keys: Vec<&str> = section
        .members
        .iter()
        .map(|m| m.key.trim_end_matches(' '))
        .collect();
    keys.sort_unstable();
    if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
        tracing::warn!(
            host,
            seq,
            family = section.family.name,
            key = w[0],
            "two members differ only in trailing spaces; the central table keeps one of them"
        );
    }
}

/// The SQL type of a field's column in the DDL (for the spec-versus-schema check).
pub fn column_type(kind: Kind) -> &'static str {
    match kind {
        Kind::U64 => "bigint unsigned",
        Kind::F64 => "double",
        Kind::Bool => "tinyint(1)",
        Kind::Text => "varchar(255)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::family::{Member, filesystems, system};

    #[test]
    fn rows_render_every_kind_in_both_forms() {
        let mut fs = Section::new(&filesystems::SPEC);
        let mut m = Member::new(&filesystems::SPEC, "/it's\there");
        m.set(filesystems::FSTYPE, Some(Value::Text("ext4".into())));
        m.set(filesystems::SIZE, Some(Value::U64(u64::MAX)));
        m.set(filesystems::READONLY, Some(Value::Bool(true)));
        fs.members.push(m);
        let mut literal = Vec::new();
        member_rows(Form::Literal, "1,2,3,4", &fs, |r| {
            literal.push(r.to_string())
        });
        assert_eq!(
            literal,
            ["1,2,3,4,'/it\\'s\there','ext4',NULL,18446744073709551615,NULL,NULL,NULL,NULL,1,NULL"]
        );
        let mut field = Vec::new();
        member_rows(Form::Field, "1\t2\t3\t4", &fs, |r| {
            field.push(r.to_string())
        });
        assert_eq!(
            field,
            [
                "1\t2\t3\t4\t/it's\\there\text4\t\\N\t18446744073709551615\t\\N\t\\N\t\\N\t\\N\t1\t\\N"
            ]
        );
        let mut sys = Section::new(&system::SPEC);
        let mut s = Member::new(&system::SPEC, "");
        s.set(system::CPU_USER, Some(Value::F64(0.1 + 0.2)));
        sys.members.push(s);
        let mut rows = Vec::new();
        member_rows(Form::Literal, "i", &sys, |r| rows.push(r.to_string()));
        assert!(
            rows[0].starts_with("i,0.30000000000000004,NULL"),
            "{}",
            rows[0]
        );
        assert_eq!(
            columns(&system::SPEC).split(", ").count(),
            4 + system::SPEC.fields.len()
        );
        assert!(columns(&filesystems::SPEC).contains(", `mount`, `fstype`"));
    }

    #[test]
    fn the_checksum_text_covers_counts_keys_and_values_and_is_empty_without_sections() {
        let mut none = String::new();
        checksum_text(&mut none, &[]);
        assert!(none.is_empty());
        let text = |s: &[Section]| {
            let mut out = String::new();
            checksum_text(&mut out, s);
            out
        };
        let base = crate::buffer::example_sections(1, 1);
        let mut cut = base.clone();
        cut[1].cut += 1;
        let mut renamed = base.clone();
        renamed[1].members[0].key.push('x');
        let mut changed = base.clone();
        changed[2].members[0].values[2] = Some(Value::U64(1));
        let all = [text(&base), text(&cut), text(&renamed), text(&changed)];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
