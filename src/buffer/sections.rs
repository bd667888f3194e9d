//! The compact form of a sample's metric family sections in the buffer (`samples.sections`,
//! migration `schema/sqlite-5.sql`), written and read from the family specs alone:
//! adding a family needs no edit here.
//!
//! A BLOB of varints (LEB128, 7 bits a byte). Member keys and text values are interned in the
//! `dictionary` table and stored by id, so a mount point or interface name repeated in every
//! sample costs a byte or two. Most values barely move from one sample to the next, so a
//! sample is written against its host's **base** (`section_bases`: a copy of one sample's
//! sections, drawn every 16 samples or when the members change): a value equal to the base's
//! costs one bit, an integer the zigzag of its difference.
//!
//! ```text
//! sample  = 0x80 body | 0x81 base-first-seq body-against-base   (a base row holds a body;
//!           a blob of migration 5, before bases, is a body without tag: its first byte,
//!           the section count, is below 0x80)
//! body    = count(sections) section*
//! section = family id (1 byte, FamilySpec::id) cut refused count(fields) count(members) member*
//! member  = [key: dictionary id, unless the family is a singleton]
//!           presence (ceil(fields / 8) bytes, bit i = field i has a value)
//!           [same (as many bytes; bit i = equal to the base member's), if the base has the key]
//!           value* (present and not same)
//! value   = U64: folded varint of v, or against a U64 in the base of zigzag(v - base), where
//!           folded = (v >> 4k) << 3 | k, k = whole nibbles of trailing zeros (0..=7)
//!           | Bool: 1 byte | Text: dictionary id | F64: tag byte + payload
//! F64     = tag 0: an integer (zigzag varint) | 1: hundredths (zigzag varint of v × 100)
//!           | 2: an f32 (4 bytes LE) | 3: an f64 (8 bytes LE); the shortest that gives
//!           back exactly `v`, so every value reads back bit for bit. Fields whose unit is
//!           `percent` are kept to the hundredth (as the `cores` column keeps per-core CPU).
//! ```
//!
//! A base is kept while any sample of its host at or above its first seq and below the next
//! base's remains (retention deletes the rest, `Buffer::delete_unused_bases`). There is one
//! writer (the round writer); a round that rolls back takes its bases with it, and the writer
//! forgets them.
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

/// A host's base as the writer holds it.
#[derive(Debug)]
struct Base {
    first_seq: i64,
    sections: Vec<Section>,
    /// Samples written against it so far.
    uses: u32,
}

/// Samples written against one base before the writer draws a new one: deltas stay small
/// (16 minutes of counters at the default interval) and a base costs each sample 1/16th.
const BASE_EVERY: u32 = 16;

/// Decoded bases a reader keeps before it starts over.
const BASE_CACHE: usize = 4096;

/// The caches of one connection: the dictionary of member keys and text values (of the
/// `dictionary` table), the writer's current base per host, and decoded bases.
#[derive(Debug, Default)]
pub struct Dictionary {
    by_text: HashMap<String, i64>,
    by_id: HashMap<i64, String>,
    /// Texts inserted by the round in progress (forgotten if it does not commit).
    pending: Vec<String>,
    /// The writer's base per host id.
    bases: HashMap<i64, Base>,
    /// Bases (host id, first seq) inserted by the round in progress.
    pending_bases: Vec<(i64, i64)>,
    /// Decoded bases by (host id, first seq).
    decoded: HashMap<(i64, i64), Vec<Section>>,
}

/// Whether `a` and `b` have the same families and member keys, in the same order.
fn same_shape(a: &[Section], b: &[Section]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.family.id == y.family.id
                && x.members.len() == y.members.len()
                && x.members
                    .iter()
                    .zip(&y.members)
                    .all(|(m, n)| m.key == n.key)
        })
}

impl Dictionary {
    /// The blob of a new sample of `host_id` (sequence `seq`) with `sections` (`None` when
    /// there are none), inside the round's transaction: written against the host's base,
    /// after drawing a new base (this sample's sections) every [`BASE_EVERY`] samples or when
    /// the families or members changed.
    pub(crate) fn encode_for(
        &mut self,
        conn: &Connection,
        host_id: i64,
        seq: i64,
        sections: &[Section],
    ) -> rusqlite::Result<Option<Vec<u8>>> {
        if sections.is_empty() {
            return Ok(None);
        }
        let sections = normalize(sections);
        let renew = self
            .bases
            .get(&host_id)
            .is_none_or(|b| b.uses >= BASE_EVERY || !same_shape(&b.sections, &sections));
        let mut base = match self.bases.remove(&host_id) {
            Some(base) if !renew => base,
            _ => {
                let blob = encode_base(&sections, |text| self.intern(conn, text))?;
                conn.prepare_cached(
                    "INSERT INTO section_bases (host_id, first_seq, sections) VALUES (?1, ?2, ?3)",
                )?
                .execute(rusqlite::params![host_id, seq, blob])?;
                self.pending_bases.push((host_id, seq));
                Base {
                    first_seq: seq,
                    sections: sections.clone(),
                    uses: 0,
                }
            }
        };
        let blob = encode_sample(&sections, Some((base.first_seq, &base.sections)), |text| {
            self.intern(conn, text)
        });
        base.uses += 1;
        self.bases.insert(host_id, base);
        blob.map(Some)
    }

    /// Decodes the blob of a sample of `host_id`.
    pub(crate) fn decode_for(
        &mut self,
        conn: &Connection,
        host_id: i64,
        blob: &[u8],
    ) -> Result<Vec<Section>, DecodeError> {
        let base = match base_of(blob) {
            Some(first_seq) => Some(self.base(conn, host_id, first_seq)?),
            None => None,
        };
        decode_sample(
            blob,
            |id| self.text(conn, id),
            |first_seq| base.ok_or(DecodeError::MissingBase { host_id, first_seq }),
        )
    }

    /// The decoded base (`host_id`, `first_seq`).
    fn base(
        &mut self,
        conn: &Connection,
        host_id: i64,
        first_seq: i64,
    ) -> Result<Vec<Section>, DecodeError> {
        if let Some(base) = self.decoded.get(&(host_id, first_seq)) {
            return Ok(base.clone());
        }
        let blob: Option<Vec<u8>> = conn
            .prepare_cached(
                "SELECT sections FROM section_bases WHERE host_id = ?1 AND first_seq = ?2",
            )
            .and_then(|mut s| s.query_row([host_id, first_seq], |r| r.get(0)).optional())
            .map_err(|e| DecodeError::Dictionary(0, e))?;
        let blob = blob.ok_or(DecodeError::MissingBase { host_id, first_seq })?;
        let base = decode_base(&blob, |id| self.text(conn, id))?;
        if self.decoded.len() >= BASE_CACHE {
            self.decoded.clear();
        }
        self.decoded.insert((host_id, first_seq), base.clone());
        Ok(base)
    }

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

    /// The round committed: its new entries and bases are real.
    pub(crate) fn commit(&mut self) {
        self.pending.clear();
        self.pending_bases.clear();
    }

    /// The round did not commit: forget the ids it drew (SQLite may give them out again) and
    /// the bases it drew (their rows are gone; the next sample draws a new one).
    pub(crate) fn forget_pending(&mut self) {
        for text in self.pending.drain(..) {
            if let Some(id) = self.by_text.remove(&text) {
                self.by_id.remove(&id);
            }
        }
        for (host_id, first_seq) in self.pending_bases.drain(..) {
            self.bases.remove(&host_id);
            self.decoded.remove(&(host_id, first_seq));
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
    /// The base a blob was written against is not there.
    #[error("sections blob of host {host_id} refers to base {first_seq}, which is gone")]
    MissingBase {
        /// The host's row id.
        host_id: i64,
        /// The base's first seq.
        first_seq: i64,
    },
}

/// The first seq of the base a sample blob was written against, if any.
fn base_of(blob: &[u8]) -> Option<i64> {
    let mut r = Reader { blob, at: 0 };
    match r.byte().ok()? {
        AGAINST_BASE => r.varint().ok().map(|v| v as i64),
        _ => None,
    }
}

/// The sections as the buffer keeps them: percentages to the hundredth (like the per-core
/// values of the `cores` column), everything else as measured. Encoding and the writer's base
/// compare these values, so what reads back is exactly this.
pub(crate) fn normalize(sections: &[Section]) -> Vec<Section> {
    let mut out = sections.to_vec();
    for section in &mut out {
        let spec = section.family;
        for member in &mut section.members {
            for (field, value) in spec.fields.iter().zip(member.values.iter_mut()) {
                if let (Kind::F64, "percent", Some(Value::F64(v))) =
                    (field.kind, field.unit, value.as_mut())
                {
                    *v = hundredths(*v);
                }
            }
        }
    }
    out
}

/// Blob tag: the sections follow in full. (A first byte below 0x80 is a blob of migration 5,
/// written before bases: a body without tag, which reads as in full.)
const FULL: u8 = 0x80;
/// Blob tag: the base's first seq follows, then the sections against that base.
const AGAINST_BASE: u8 = 0x81;

/// Encodes normalized `sections` as a sample blob: in full (`base` `None`), or against the
/// host's base (its first seq and its sections), which only values that differ cost.
pub(crate) fn encode_sample(
    sections: &[Section],
    base: Option<(i64, &[Section])>,
    intern: impl FnMut(&str) -> rusqlite::Result<i64>,
) -> rusqlite::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64 * sections.len());
    match base {
        None => {
            out.push(FULL);
            encode_body(&mut out, sections, None, intern)?;
        }
        Some((first_seq, base)) => {
            out.push(AGAINST_BASE);
            varint(&mut out, first_seq as u64);
            encode_body(&mut out, sections, Some(base), intern)?;
        }
    }
    Ok(out)
}

/// Encodes normalized `sections` in full, as a base row holds them.
pub(crate) fn encode_base(
    sections: &[Section],
    intern: impl FnMut(&str) -> rusqlite::Result<i64>,
) -> rusqlite::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64 * sections.len());
    encode_body(&mut out, sections, None, intern)?;
    Ok(out)
}

/// The member of `base` that `member` of `family` is written against, if any.
fn base_member<'a>(base: Option<&'a [Section]>, family: u8, key: &str) -> Option<&'a Member> {
    base?
        .iter()
        .find(|s| s.family.id == family)?
        .members
        .iter()
        .find(|m| m.key == key)
}

fn encode_body(
    out: &mut Vec<u8>,
    sections: &[Section],
    base: Option<&[Section]>,
    mut intern: impl FnMut(&str) -> rusqlite::Result<i64>,
) -> rusqlite::Result<()> {
    varint(out, sections.len() as u64);
    for section in sections {
        let spec = section.family;
        out.push(spec.id);
        varint(out, u64::from(section.cut));
        varint(out, u64::from(section.refused));
        varint(out, spec.fields.len() as u64);
        varint(out, section.members.len() as u64);
        let bitmap = spec.fields.len().div_ceil(8);
        for member in &section.members {
            if !spec.is_singleton() {
                varint(out, intern(&member.key)? as u64);
            }
            let against = base_member(base, spec.id, &member.key);
            let present = out.len();
            out.resize(present + bitmap, 0);
            // Against a base member: a second bitmap, bit i = field i equals the base's.
            let same = out.len();
            if against.is_some() {
                out.resize(same + bitmap, 0);
            }
            for (i, (field, value)) in spec.fields.iter().zip(&member.values).enumerate() {
                let Some(value) = value else { continue };
                if value.kind() != field.kind {
                    // Not stored (the collector's reader refuses such members).
                    continue;
                }
                out[present + i / 8] |= 1 << (i % 8);
                let old = against
                    .and_then(|m| m.values.get(i))
                    .and_then(Option::as_ref);
                if against.is_some() && old == Some(value) {
                    out[same + i / 8] |= 1 << (i % 8);
                    continue;
                }
                match (value, old) {
                    (Value::U64(v), Some(Value::U64(b))) => {
                        push_u64(out, zigzag(v.wrapping_sub(*b) as i64))
                    }
                    (Value::U64(v), _) => push_u64(out, *v),
                    (Value::Bool(v), _) => out.push(u8::from(*v)),
                    (Value::Text(v), _) => varint(out, intern(v)? as u64),
                    (Value::F64(v), _) => push_f64(out, *v),
                }
            }
        }
    }
    Ok(())
}

/// Decodes a sample blob written by [`encode_sample`]: dictionary ids through `text`, the
/// base (by its first seq, when the blob was written against one) through `base`.
pub(crate) fn decode_sample(
    blob: &[u8],
    text: impl FnMut(i64) -> rusqlite::Result<String>,
    base: impl FnOnce(i64) -> Result<Vec<Section>, DecodeError>,
) -> Result<Vec<Section>, DecodeError> {
    let mut r = Reader { blob, at: 0 };
    let sections = match r.byte()? {
        FULL => decode_body(&mut r, None, text)?,
        AGAINST_BASE => {
            let first_seq = r.varint()? as i64;
            let base = base(first_seq)?;
            decode_body(&mut r, Some(&base), text)?
        }
        legacy if legacy < 0x80 => {
            r.at = 0;
            decode_body(&mut r, None, text)?
        }
        _ => return Err(DecodeError::Malformed(0)),
    };
    if r.at != blob.len() {
        return Err(DecodeError::Malformed(r.at));
    }
    Ok(sections)
}

/// Decodes a base row written by [`encode_base`].
pub(crate) fn decode_base(
    blob: &[u8],
    text: impl FnMut(i64) -> rusqlite::Result<String>,
) -> Result<Vec<Section>, DecodeError> {
    let mut r = Reader { blob, at: 0 };
    let sections = decode_body(&mut r, None, text)?;
    if r.at != blob.len() {
        return Err(DecodeError::Malformed(r.at));
    }
    Ok(sections)
}

fn decode_body(
    r: &mut Reader<'_>,
    base: Option<&[Section]>,
    mut text: impl FnMut(i64) -> rusqlite::Result<String>,
) -> Result<Vec<Section>, DecodeError> {
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
            let against = base_member(base, spec.id, &key);
            let mut member = Member::new(spec, key);
            let present = r.take(bitmap)?.to_vec();
            let same = match against {
                Some(_) => r.take(bitmap)?.to_vec(),
                None => vec![0; bitmap],
            };
            for (i, field) in spec.fields.iter().enumerate().take(stored) {
                if present[i / 8] & (1 << (i % 8)) == 0 {
                    continue;
                }
                let old = against
                    .and_then(|m| m.values.get(i))
                    .and_then(Option::as_ref);
                if same[i / 8] & (1 << (i % 8)) != 0 {
                    member.values[i] = Some(old.cloned().ok_or(DecodeError::Malformed(r.at))?);
                    continue;
                }
                let value = match (field.kind, old) {
                    (Kind::U64, Some(Value::U64(b))) => {
                        Value::U64(b.wrapping_add(unzigzag(r.u64()?) as u64))
                    }
                    (Kind::U64, _) => Value::U64(r.u64()?),
                    (Kind::Bool, _) => Value::Bool(r.byte()? != 0),
                    (Kind::Text, _) => Value::Text(lookup(r.varint()?)?),
                    (Kind::F64, _) => Value::F64(r.f64()?),
                };
                member.values[i] = Some(value);
            }
            section.members.push(member);
        }
        sections.push(section);
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
        roundtrip_against(sections, None)
    }

    /// Encodes (normalized, against `base` when given) and decodes again.
    fn roundtrip_against(
        sections: &[Section],
        base: Option<&[Section]>,
    ) -> (Vec<u8>, Vec<Section>) {
        let (mut ids, mut texts) = dict();
        let sections = normalize(sections);
        let base = base.map(normalize);
        let blob = encode_sample(&sections, base.as_deref().map(|b| (7, b)), |t| {
            Ok(*ids.entry(t.to_owned()).or_insert_with(|| {
                texts.push(t.to_owned());
                texts.len() as i64
            }))
        })
        .unwrap();
        let back = decode_sample(
            &blob,
            |id| Ok(texts[id as usize - 1].clone()),
            |first| {
                assert_eq!(first, 7);
                Ok(base.clone().unwrap())
            },
        )
        .unwrap();
        (blob, back)
    }

    #[test]
    fn a_sample_against_its_base_reads_back_exactly_and_costs_what_changed() {
        let base = super::example_sections(2, 10);
        for round in [10, 11, 25] {
            let sample = super::example_sections(2, round);
            let (delta, back) = roundtrip_against(&sample, Some(&base));
            assert_eq!(back, normalize(&sample), "round {round}");
            let (full, _) = roundtrip(&sample);
            assert!(
                delta.len() * 3 < full.len() * 2,
                "{} vs {}",
                delta.len(),
                full.len()
            );
        }
        // Members the base lacks, and a base of other members, still read back.
        let mut other = super::example_sections(2, 12);
        other[1].members[0].key = "/new".into();
        other[2].members.pop();
        let (_, back) = roundtrip_against(&other, Some(&base));
        assert_eq!(back, normalize(&other));
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
        // tag | count, family, cut, refused, fields, members | key, 2 bitmap bytes, device,
        // files_free.
        assert_eq!(blob.len(), 1 + 6 + 1 + 2 + 1 + 2);
    }

    #[test]
    fn a_blob_written_before_a_field_was_appended_reads_with_it_absent() {
        let mut blob = vec![FULL];
        varint(&mut blob, 1);
        blob.push(system::SPEC.id);
        blob.extend([0, 0, 1, 1]); // cut, refused, 1 field, 1 member
        blob.push(0b1); // cpu_user present
        blob.push(0); // tag: integer
        varint(&mut blob, zigzag(5));
        let back = decode_sample(&blob, |_| unreachable!(), |_| unreachable!()).unwrap();
        assert_eq!(back[0].members[0].f64(system::CPU_USER), Some(5.0));
        assert_eq!(back[0].members[0].values.len(), system::SPEC.fields.len());
        assert!(back[0].members[0].values[1..].iter().all(Option::is_none));
    }

    #[test]
    fn a_blob_of_migration_5_without_tag_still_reads() {
        // Migration 5 stored the body alone (its first byte, the section count, below 0x80).
        let sections = normalize(&super::example_sections(4, 2));
        let mut texts: Vec<String> = Vec::new();
        let body = encode_base(&sections, |t| {
            texts.push(t.to_owned());
            Ok(texts.len() as i64)
        })
        .unwrap();
        assert!(body[0] < 0x80);
        let back = decode_sample(
            &body,
            |id| Ok(texts[id as usize - 1].clone()),
            |_| unreachable!(),
        );
        assert_eq!(back.unwrap(), sections);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for blob in [
            &[][..],
            &[0x80],
            &[0x80, 1, 99],
            &[0x80, 1, 1, 0, 0, 200, 1],
            &[0, 0],
            &[9],
            &[0x82],
        ] {
            let decoded = decode_sample(blob, |_| Ok(String::new()), |_| Ok(Vec::new()));
            assert!(decoded.is_err(), "{blob:?}");
        }
    }
}
