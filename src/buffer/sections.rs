//! The compact form of a sample's metric family sections in the buffer (`samples.sections`,
//! migration `schema/sqlite-5.sql`), written and read from the family specs alone:
//! adding a family needs no edit here.
//!
//! A BLOB of varints (LEB128, 7 bits a byte). Member keys and text values are interned in the
//! `dictionary` table and stored by id, so a mount point or interface name repeated in every
//! sample costs a byte or two:
//!
//! ```text
//! blob    = count(sections) section*
//! section = family id (1 byte, FamilySpec::id) cut refused count(fields) count(members) member*
//! member  = [key: dictionary id, unless the family is a singleton]
//!           presence (ceil(fields / 8) bytes, bit i = field i has a value) value*
//! value   = U64: varint of (v >> 4k) << 3 | k, k = whole nibbles of trailing zeros (0..=7)
//!           | Bool: 1 byte | Text: dictionary id | F64: tag byte + payload
//! F64     = tag 0: an integer (zigzag varint) | 1: hundredths (zigzag varint of v × 100)
//!           | 2: an f32 (4 bytes LE) | 3: an f64 (8 bytes LE); the shortest that gives
//!           back exactly `v`, so every value reads back bit for bit. Fields whose unit is
//!           `percent` are kept to the hundredth (as the `cores` column keeps per-core CPU).
//! ```
//!
//! `count(fields)` is the number of fields when written: a family's fields are only ever
//! appended, so a blob written before a field was added reads with that field `None`.
//! A `NULL` column means the report carried no sections (an agent of format 1.0).
//!
//! Dictionary ids are never reused nor deleted (retention leaves the table alone: its rows
//! are the distinct names a site has, a few thousand at most). The writer caches text → id;
//! entries inserted by a round that rolls back are forgotten before the next round.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension};

use crate::report::family::{self, FamilySpec, Kind, Member, Section, Typed, Value};

/// The dictionary of member keys and text values: a cache of the `dictionary` table.
#[derive(Debug, Default)]
pub struct Dictionary {
    by_text: HashMap<String, i64>,
    by_id: HashMap<i64, String>,
    /// Texts inserted by the round in progress (forgotten if it does not commit).
    pending: Vec<String>,
}

impl Dictionary {
    /// The id of `text`, inserting it when new (inside the round's transaction).
    pub(crate) fn intern(&mut self, conn: &Connection, text: &str) -> rusqlite::Result<i64> {
        if let Some(id) = self.by_text.get(text) {
            return Ok(*id);
        }
        let found: Option<i64> = conn
            .prepare_cached("SELECT id FROM dictionary WHERE text = ?1")?
            .query_row([text], |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                conn.prepare_cached("INSERT INTO dictionary (text) VALUES (?1)")?
                    .execute([text])?;
                self.pending.push(text.to_owned());
                conn.last_insert_rowid()
            }
        };
        self.by_text.insert(text.to_owned(), id);
        Ok(id)
    }

    /// The text of `id` (committed rows only: readers see committed data).
    pub(crate) fn text(&mut self, conn: &Connection, id: i64) -> rusqlite::Result<String> {
        if let Some(text) = self.by_id.get(&id) {
            return Ok(text.clone());
        }
        let text: String = conn
            .prepare_cached("SELECT text FROM dictionary WHERE id = ?1")?
            .query_row([id], |r| r.get(0))?;
        self.by_id.insert(id, text.clone());
        Ok(text)
    }

    /// The round committed: its new entries are real.
    pub(crate) fn commit(&mut self) {
        self.pending.clear();
    }

    /// The round did not commit: forget the ids it drew (SQLite may give them out again).
    pub(crate) fn forget_pending(&mut self) {
        for text in self.pending.drain(..) {
            if let Some(id) = self.by_text.remove(&text) {
                self.by_id.remove(&id);
            }
        }
    }
}

/// Why a stored blob could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The blob ends early or holds a value out of range.
    #[error("sections blob is malformed at byte {0}")]
    Malformed(usize),
    /// A family id this build does not know.
    #[error("sections blob names unknown family {0}")]
    UnknownFamily(u8),
    /// A family stored with more fields than this build knows.
    #[error("family {family} stored with {stored} fields, this build knows {known}")]
    TooManyFields {
        /// The family.
        family: &'static str,
        /// Fields in the blob.
        stored: usize,
        /// Fields of the spec.
        known: usize,
    },
    /// The dictionary lacks an id.
    #[error("sections blob refers to dictionary entry {0}: {1}")]
    Dictionary(i64, rusqlite::Error),
}

/// Encodes `sections` (`None` when there are none: the column stays NULL).
pub(crate) fn encode(
    sections: &[Section],
    mut intern: impl FnMut(&str) -> rusqlite::Result<i64>,
) -> rusqlite::Result<Option<Vec<u8>>> {
    if sections.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(64 * sections.len());
    varint(&mut out, sections.len() as u64);
    for section in sections {
        let spec = section.family;
        out.push(spec.id);
        varint(&mut out, u64::from(section.cut));
        varint(&mut out, u64::from(section.refused));
        varint(&mut out, spec.fields.len() as u64);
        varint(&mut out, section.members.len() as u64);
        let bitmap = spec.fields.len().div_ceil(8);
        for member in &section.members {
            if !spec.is_singleton() {
                varint(&mut out, intern(&member.key)? as u64);
            }
            let at = out.len();
            out.resize(at + bitmap, 0);
            for (i, (field, value)) in spec.fields.iter().zip(&member.values).enumerate() {
                let Some(value) = value else { continue };
                match (field.kind, value) {
                    (Kind::U64, Value::U64(v)) => push_u64(&mut out, *v),
                    (Kind::Bool, Value::Bool(v)) => out.push(u8::from(*v)),
                    (Kind::Text, Value::Text(v)) => varint(&mut out, intern(v)? as u64),
                    (Kind::F64, Value::F64(v)) if field.unit == "percent" => {
                        push_f64(&mut out, hundredths(*v))
                    }
                    (Kind::F64, Value::F64(v)) => push_f64(&mut out, *v),
                    // A value of another kind than its field: not stored (the collector's
                    // reader refuses such members; this keeps the blob readable regardless).
                    _ => continue,
                }
                out[at + i / 8] |= 1 << (i % 8);
            }
        }
    }
    Ok(Some(out))
}

/// Decodes a blob written by [`encode`], resolving dictionary ids with `text`.
pub(crate) fn decode(
    blob: &[u8],
    mut text: impl FnMut(i64) -> rusqlite::Result<String>,
) -> Result<Vec<Section>, DecodeError> {
    let mut r = Reader { blob, at: 0 };
    let mut lookup = |id: u64| -> Result<String, DecodeError> {
        let id = id as i64;
        text(id).map_err(|e| DecodeError::Dictionary(id, e))
    };
    let count = r.varint()?;
    let mut sections = Vec::with_capacity(count.min(64) as usize);
    for _ in 0..count {
        let id = r.byte()?;
        let spec: &'static FamilySpec = family::by_id(id).ok_or(DecodeError::UnknownFamily(id))?;
        let cut = r.u32()?;
        let refused = r.u32()?;
        let stored = r.varint()? as usize;
        if stored > spec.fields.len() {
            return Err(DecodeError::TooManyFields {
                family: spec.name,
                stored,
                known: spec.fields.len(),
            });
        }
        let members = r.varint()?;
        let mut section = Section::new(spec);
        section.cut = cut;
        section.refused = refused;
        let bitmap = stored.div_ceil(8);
        for _ in 0..members {
            let key = if spec.is_singleton() {
                String::new()
            } else {
                lookup(r.varint()?)?
            };
            let mut member = Member::new(spec, key);
            let bits = r.take(bitmap)?.to_vec();
            for (i, field) in spec.fields.iter().enumerate().take(stored) {
                if bits[i / 8] & (1 << (i % 8)) == 0 {
                    continue;
                }
                let value = match field.kind {
                    Kind::U64 => Value::U64(r.u64()?),
                    Kind::Bool => Value::Bool(r.byte()? != 0),
                    Kind::Text => Value::Text(lookup(r.varint()?)?),
                    Kind::F64 => Value::F64(r.f64()?),
                };
                member.values[i] = Some(value);
            }
            section.members.push(member);
        }
        sections.push(section);
    }
    if r.at != blob.len() {
        return Err(DecodeError::Malformed(r.at));
    }
    Ok(sections)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An unsigned value with its trailing zeros folded: `(v >> 4k) << 3 | k` as a 128-bit varint,
/// k (0..=7) the whole nibbles of trailing zeros, so sizes in blocks (a multiple of 4 KiB, of
/// 1 GiB) lose their zero bits and small counts still take one byte.
fn push_u64(out: &mut Vec<u8>, v: u64) {
    let k = if v == 0 {
        0
    } else {
        (v.trailing_zeros() / 4).min(7)
    };
    let mut folded = (u128::from(v >> (4 * k)) << 3) | u128::from(k);
    while folded >= 0x80 {
        out.push((folded as u8) | 0x80);
        folded >>= 7;
    }
    out.push(folded as u8);
}

/// A percentage as the buffer keeps it: to the hundredth, like the per-core values of the
/// `cores` column (a share of CPU time is not measured finer).
fn hundredths(v: f64) -> f64 {
    let r = (v * 100.0).round() / 100.0;
    if r.is_finite() { r } else { v }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The shortest of the F64 forms that gives `v` back exactly.
fn push_f64(out: &mut Vec<u8>, v: f64) {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    let same = |w: f64| w.to_bits() == v.to_bits();
    if v.fract() == 0.0 && v.abs() < EXACT && same(v as i64 as f64) {
        out.push(0);
        varint(out, zigzag(v as i64));
        return;
    }
    let hundredths = (v * 100.0).round();
    if hundredths.abs() < EXACT && same(hundredths as i64 as f64 / 100.0) {
        out.push(1);
        varint(out, zigzag(hundredths as i64));
        return;
    }
    let single = v as f32;
    if same(f64::from(single)) {
        out.push(2);
        out.extend_from_slice(&single.to_le_bytes());
        return;
    }
    out.push(3);
    out.extend_from_slice(&v.to_le_bytes());
}

struct Reader<'a> {
    blob: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.blob.len());
        let end = end.ok_or(DecodeError::Malformed(self.at))?;
        let bytes = &self.blob[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let start = self.at;
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Malformed(start))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let start = self.at;
        let mut v: u128 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u128::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                let k = (v & 7) as u32;
                let mantissa = u64::try_from(v >> 3).map_err(|_| DecodeError::Malformed(start))?;
                return mantissa
                    .checked_shl(4 * k)
                    .filter(|w| w >> (4 * k) == mantissa)
                    .ok_or(DecodeError::Malformed(start));
            }
        }
        Err(DecodeError::Malformed(start))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let start = self.at;
        u32::try_from(self.varint()?).map_err(|_| DecodeError::Malformed(start))
    }

    fn f64(&mut self) -> Result<f64, DecodeError> {
        let start = self.at;
        match self.byte()? {
            0 => Ok(unzigzag(self.varint()?) as f64),
            1 => Ok(unzigzag(self.varint()?) as f64 / 100.0),
            2 => {
                let b: [u8; 4] = self
                    .take(4)?
                    .try_into()
                    .map_err(|_| DecodeError::Malformed(start))?;
                Ok(f64::from(f32::from_le_bytes(b)))
            }
            3 => {
                let b: [u8; 8] = self
                    .take(8)?
                    .try_into()
                    .map_err(|_| DecodeError::Malformed(start))?;
                Ok(f64::from_le_bytes(b))
            }
            _ => Err(DecodeError::Malformed(start)),
        }
    }
}

/// A realistic set of sections for tests and benchmarks (issue 22's load): 8 mounts, 4
/// interfaces, 4 block devices, the system singleton, one failed unit and two watched
/// processes, with counters that grow with `round`.
/// `host` varies the values between hosts.
pub fn example_sections(host: u64, round: u64) -> Vec<Section> {
    use crate::report::family::{devices, filesystems, interfaces, processes, system, units};
    let n = host.wrapping_mul(7919).wrapping_add(round);
    let mounts = [
        "/",
        "/boot",
        "/var",
        "/var/log",
        "/home",
        "/srv",
        "/tmp",
        "/mnt/backup",
    ];
    let mut fs = Section::new(&filesystems::SPEC);
    for (i, mount) in mounts.iter().enumerate() {
        let i = i as u64;
        let size = (20 + 10 * i) << 30;
        let used = size / 3 + (n * 4096 + i * 1_048_583) % (size / 2);
        fs.members.push(
            filesystems::Filesystem {
                mount: (*mount).into(),
                fstype: Some(if i == 6 { "tmpfs" } else { "ext4" }.into()),
                device: Some(format!("/dev/mapper/vg0-lv{i}")),
                size: Some(size),
                used: Some(used),
                avail: Some(size - used - size / 20),
                files: Some(1_310_720 * (i + 1)),
                files_free: Some(1_200_000 * (i + 1) - n % 1000),
                readonly: Some(false),
                hanging: false,
            }
            .to_member(),
        );
    }
    let mut ifs = Section::new(&interfaces::SPEC);
    for (i, name) in ["eth0", "eth1", "bond0", "wg0"].iter().enumerate() {
        let i = i as u64 + 1;
        ifs.members.push(
            interfaces::Interface {
                name: (*name).into(),
                oper: Some("up".into()),
                speed: Some(1000 * i),
                rx_bytes: Some(987_654_321_000 / i + n * 1_234_567),
                rx_packets: Some(765_432_100 / i + n * 1_000),
                rx_errors: Some(i),
                rx_drops: Some(12 * i),
                tx_bytes: Some(123_456_789_000 / i + n * 654_321),
                tx_packets: Some(234_567_800 / i + n * 800),
                tx_errors: Some(0),
                tx_drops: Some(3),
            }
            .to_member(),
        );
    }
    let mut devs = Section::new(&devices::SPEC);
    for (i, name) in ["sda", "sdb", "nvme0n1", "dm-0"].iter().enumerate() {
        let i = i as u64 + 1;
        devs.members.push(
            devices::Device {
                name: (*name).into(),
                reads: Some(12_345_678 / i + n * 50),
                writes: Some(23_456_789 / i + n * 90),
                read_bytes: Some(345_678_901_234 / i + n * 400_000),
                write_bytes: Some(456_789_012_345 / i + n * 900_000),
                busy_ms: Some(9_876_543 / i + n * 60),
            }
            .to_member(),
        );
    }
    let ticks = 400.0 + (n % 97) as f64;
    // Shares of CPU time to the hundredth, as the buffer keeps percentages.
    let share = |t: f64| hundredths(100.0 * t / ticks);
    let sys = Section::from_typed(&[system::System {
        cpu_user: Some(share(31.0 + (n % 13) as f64)),
        cpu_system: Some(share(11.0 + (n % 5) as f64)),
        cpu_iowait: Some(share(3.0)),
        cpu_steal: Some(0.0),
        cpu_idle: Some(share(ticks - 45.0 - (n % 13) as f64 - (n % 5) as f64)),
        mem_available: Some((6 << 30) + n * 4096),
        oom_kills: Some(2),
        procs: Some(412 + n % 50),
        pid_max: Some(4_194_304),
        files_open: Some(9_000 + n % 300),
        files_max: Some(9_223_372_036_854_775_807),
    }]);
    let unit = Section::from_typed(&[units::FailedUnit {
        name: "backup.service".into(),
        sub: Some("failed".into()),
        result: Some("exit-code".into()),
    }]);
    let procs = Section::from_typed(&[
        processes::Watched {
            name: "postgres".into(),
            count: Some(9),
        },
        processes::Watched {
            name: "nginx".into(),
            count: Some(5),
        },
    ]);
    vec![sys, fs, ifs, devs, unit, procs]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::family::{filesystems, system};

    fn dict() -> (HashMap<String, i64>, Vec<String>) {
        (HashMap::new(), Vec::new())
    }

    fn roundtrip(sections: &[Section]) -> (Vec<u8>, Vec<Section>) {
        let (mut ids, mut texts) = dict();
        let blob = encode(sections, |t| {
            Ok(*ids.entry(t.to_owned()).or_insert_with(|| {
                texts.push(t.to_owned());
                texts.len() as i64
            }))
        })
        .unwrap()
        .unwrap();
        let back = decode(&blob, |id| Ok(texts[id as usize - 1].clone())).unwrap();
        (blob, back)
    }

    #[test]
    fn every_kind_and_absent_values_read_back_exactly() {
        let mut fs = Section::new(&filesystems::SPEC);
        fs.cut = 3;
        fs.refused = 1;
        let mut m = Member::new(&filesystems::SPEC, "/var");
        m.set(filesystems::FSTYPE, Some(Value::Text("ext4".into())));
        m.set(filesystems::SIZE, Some(Value::U64(u64::MAX)));
        m.set(filesystems::USED, Some(Value::U64(0)));
        m.set(filesystems::READONLY, Some(Value::Bool(true)));
        fs.members.push(m);
        fs.members
            .push(Member::new(&filesystems::SPEC, "/mnt/hung"));
        let mut sys = Section::new(&system::SPEC);
        let mut s = Member::new(&system::SPEC, "");
        for (i, v) in [3.0, 12.34, 0.1 + 0.2, 99.999, 12.5]
            .into_iter()
            .enumerate()
        {
            s.set(i, Some(Value::F64(v)));
        }
        s.set(system::OOM_KILLS, Some(Value::U64(7)));
        s.set(system::FILES_MAX, Some(Value::U64(1 << 63 | 1)));
        s.set(system::MEM_AVAILABLE, Some(Value::U64(6 << 30)));
        sys.members.push(s);
        let sections = vec![sys, fs, Section::new(&crate::report::family::units::SPEC)];
        let (_, back) = roundtrip(&sections);
        // Percentages are kept to the hundredth (like the per-core values); the rest exactly.
        let mut want = sections.clone();
        want[0].members[0].values[2] = Some(Value::F64(0.3));
        want[0].members[0].values[3] = Some(Value::F64(100.0));
        assert_eq!(back, want);
    }

    #[test]
    fn every_double_and_every_integer_reads_back_bit_for_bit() {
        for v in [
            0.0,
            -0.0,
            1.0,
            -3.0,
            12.34,
            0.1 + 0.2,
            1e300,
            -1e-300,
            f64::MAX,
            0.5,
        ] {
            let mut out = Vec::new();
            push_f64(&mut out, v);
            let back = Reader { blob: &out, at: 0 }.f64().unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{v}");
        }
        for v in [
            0,
            1,
            15,
            16,
            4096,
            20 << 30,
            u64::MAX,
            1 << 63,
            (1 << 63) | 1,
            412,
        ] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(Reader { blob: &out, at: 0 }.u64().unwrap(), v, "{v}");
        }
        let mut out = Vec::new();
        push_u64(&mut out, 20 << 30);
        assert_eq!(out.len(), 2, "a size in GiB folds its zeros");
    }

    #[test]
    fn repeated_names_cost_a_byte_and_small_numbers_little() {
        let mut fs = Section::new(&filesystems::SPEC);
        let mut m = Member::new(&filesystems::SPEC, "/a/rather/long/mount/point/name");
        m.set(
            filesystems::DEVICE,
            Some(Value::Text("/dev/mapper/vg0-lv_root".into())),
        );
        m.set(filesystems::FILES_FREE, Some(Value::U64(100)));
        fs.members.push(m);
        let (blob, _) = roundtrip(&[fs]);
        // count, family, cut, refused, fields, members | key, 2 bitmap bytes, device, files_free.
        assert_eq!(blob.len(), 6 + 1 + 2 + 1 + 2);
    }

    #[test]
    fn a_blob_written_before_a_field_was_appended_reads_with_it_absent() {
        let mut blob = Vec::new();
        varint(&mut blob, 1);
        blob.push(system::SPEC.id);
        blob.extend([0, 0, 1, 1]); // cut, refused, 1 field, 1 member
        blob.push(0b1); // cpu_user present
        blob.push(0); // tag: integer
        varint(&mut blob, zigzag(5));
        let back = decode(&blob, |_| unreachable!()).unwrap();
        assert_eq!(back[0].members[0].f64(system::CPU_USER), Some(5.0));
        assert_eq!(back[0].members[0].values.len(), system::SPEC.fields.len());
        assert!(back[0].members[0].values[1..].iter().all(Option::is_none));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for blob in [&[][..], &[1], &[1, 99], &[1, 1, 0, 0, 200, 1], &[0, 0]] {
            assert!(decode(blob, |_| Ok(String::new())).is_err(), "{blob:?}");
        }
    }
}
