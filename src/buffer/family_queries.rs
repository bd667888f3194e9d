//! Reading the metric family sections back: the newest sections of a host, and the history
//! of one family (optionally one member) over a time range. The page, the API, `status` and
//! the alert rules call these; they work from the family specs alone.
//!
//! Two doors to the same queries: [`StatusReader`] (read-only connection, for the page, API
//! and `status`) and [`RoundTx`] (inside the round's transaction, for the alert step, which
//! must see the round it is deciding on). Times are the appliance's receive time (Unix ms),
//! like the page's other series; the range uses the index `samples_host_time`.

use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::sections::{self, DecodeError, Dictionary};
use super::{Buffer, Result, RoundTx, StatusReader};
use crate::report::family::{FamilySpec, Member, Section};

/// The sections of one sample of a host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSections {
    /// The sample's sequence number.
    pub seq: i64,
    /// The agent's clock, Unix ms.
    pub collected_at: i64,
    /// The appliance's clock, Unix ms.
    pub received_at: i64,
    /// Its sections in report order; empty when the report carried none (a 1.0 agent).
    pub sections: Vec<Section>,
}

/// One sample's part of a family's history.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyPoint {
    /// The sample's sequence number.
    pub seq: i64,
    /// The agent's clock, Unix ms.
    pub collected_at: i64,
    /// The appliance's clock, Unix ms (the time axis).
    pub received_at: i64,
    /// Members the agent cut (per-family cap).
    pub cut: u32,
    /// Members the collector refused as invalid.
    pub refused: u32,
    /// The members asked for (all, or the one named), in the agent's order.
    pub members: Vec<Member>,
}

impl Buffer {
    /// Decodes a stored sections blob (`None`: a sample without sections).
    pub(crate) fn decode_sections(
        &self,
        blob: Option<&[u8]>,
    ) -> std::result::Result<Vec<Section>, DecodeError> {
        decode(&self.conn, &self.dict, blob)
    }

    /// [`Buffer::decode_sections`], logging (and reading as none) a blob that does not decode:
    /// never expected, since only this module writes them.
    pub(crate) fn sections_or_log(
        &self,
        blob: Option<&[u8]>,
        host: &str,
        seq: i64,
    ) -> Vec<Section> {
        self.decode_sections(blob).unwrap_or_else(|error| {
            tracing::error!(buffer = %self.path.display(), host, seq, %error,
                "a sample's sections cannot be read; it is treated as carrying none");
            Vec::new()
        })
    }
}

fn decode(
    conn: &Connection,
    dict: &Mutex<Dictionary>,
    blob: Option<&[u8]>,
) -> std::result::Result<Vec<Section>, DecodeError> {
    let Some(blob) = blob else {
        return Ok(Vec::new());
    };
    let mut dict = dict.lock().unwrap_or_else(|p| p.into_inner());
    sections::decode(blob, |id| dict.text(conn, id))
}

impl StatusReader {
    /// The newest sample of `host` with its sections (`None`: no sample, or no such host).
    pub fn latest_sections(&self, host: &str) -> Result<Option<HostSections>> {
        latest(&self.core, self.core.conn(), &self.core.dict, host)
    }

    /// The `family` part of `host`'s samples received in `since_ms..=until_ms`, oldest first;
    /// with `member`, only that member (samples where it is absent are left out). Samples
    /// without that family's section are left out.
    pub fn family_history(
        &self,
        host: &str,
        family: &'static FamilySpec,
        member: Option<&str>,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<FamilyPoint>> {
        history(
            &self.core,
            self.core.conn(),
            &self.core.dict,
            (host, family, member),
            since_ms,
            until_ms,
        )
    }
}

impl RoundTx<'_> {
    /// [`StatusReader::latest_sections`] inside the round (it sees the round's own samples).
    pub fn latest_sections(&self, host: &str) -> Result<Option<HostSections>> {
        let core = ErrCtx(&self.path);
        latest(&core, &self.tx, self.dict, host)
    }

    /// [`StatusReader::family_history`] inside the round (it sees the round's own samples).
    pub fn family_history(
        &self,
        host: &str,
        family: &'static FamilySpec,
        member: Option<&str>,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<FamilyPoint>> {
        let core = ErrCtx(&self.path);
        history(
            &core,
            &self.tx,
            self.dict,
            (host, family, member),
            since_ms,
            until_ms,
        )
    }
}

/// Where errors are reported from (the buffer's path).
trait Ctx {
    fn fail(&self, doing: &'static str, source: rusqlite::Error) -> super::Error;
    fn decode_failed(&self, host: &str, seq: i64, error: &DecodeError);
}

impl Ctx for Buffer {
    fn fail(&self, doing: &'static str, source: rusqlite::Error) -> super::Error {
        super::classify(&self.path, doing, source)
    }
    fn decode_failed(&self, host: &str, seq: i64, error: &DecodeError) {
        tracing::error!(buffer = %self.path.display(), host, seq, %error, "a sample's sections cannot be read");
    }
}

struct ErrCtx<'a>(&'a std::path::Path);

impl Ctx for ErrCtx<'_> {
    fn fail(&self, doing: &'static str, source: rusqlite::Error) -> super::Error {
        super::classify(self.0, doing, source)
    }
    fn decode_failed(&self, host: &str, seq: i64, error: &DecodeError) {
        tracing::error!(buffer = %self.0.display(), host, seq, %error, "a sample's sections cannot be read");
    }
}

fn latest(
    ctx: &impl Ctx,
    conn: &Connection,
    dict: &Mutex<Dictionary>,
    host: &str,
) -> Result<Option<HostSections>> {
    let doing = "reading a host's newest sections";
    let row: Option<(i64, i64, i64, Option<Vec<u8>>)> = conn
        .prepare_cached(
            "SELECT s.seq, s.collected_at, s.received_at, s.sections
             FROM samples s WHERE s.host_id = (SELECT id FROM hosts WHERE name = ?1)
             ORDER BY s.seq DESC LIMIT 1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([host], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()
        })
        .map_err(|e| ctx.fail(doing, e))?;
    let Some((seq, collected_at, received_at, blob)) = row else {
        return Ok(None);
    };
    let sections = decode(conn, dict, blob.as_deref()).unwrap_or_else(|error| {
        ctx.decode_failed(host, seq, &error);
        Vec::new()
    });
    Ok(Some(HostSections {
        seq,
        collected_at,
        received_at,
        sections,
    }))
}

fn history(
    ctx: &impl Ctx,
    conn: &Connection,
    dict: &Mutex<Dictionary>,
    (host, family, member): (&str, &'static FamilySpec, Option<&str>),
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<FamilyPoint>> {
    let doing = "reading a family's history";
    type Row = (i64, i64, i64, Vec<u8>);
    let rows: Vec<Row> = conn
        .prepare_cached(
            "SELECT s.seq, s.collected_at, s.received_at, s.sections
             FROM samples s
             WHERE s.host_id = (SELECT id FROM hosts WHERE name = ?1)
               AND s.received_at BETWEEN ?2 AND ?3 AND s.sections IS NOT NULL
             ORDER BY s.received_at, s.seq",
        )
        .and_then(|mut stmt| {
            stmt.query_map(params![host, since_ms, until_ms], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect()
        })
        .map_err(|e| ctx.fail(doing, e))?;
    let mut out = Vec::with_capacity(rows.len());
    for (seq, collected_at, received_at, blob) in rows {
        let sections = match decode(conn, dict, Some(&blob)) {
            Ok(sections) => sections,
            Err(error) => {
                ctx.decode_failed(host, seq, &error);
                continue;
            }
        };
        let Some(section) = sections.into_iter().find(|s| s.family.id == family.id) else {
            continue;
        };
        let members: Vec<Member> = match member {
            None => section.members,
            Some(key) => section
                .members
                .into_iter()
                .filter(|m| m.key == key)
                .collect(),
        };
        if member.is_some() && members.is_empty() {
            continue;
        }
        out.push(FamilyPoint {
            seq,
            collected_at,
            received_at,
            cut: section.cut,
            refused: section.refused,
            members,
        });
    }
    Ok(out)
}
