//! Read-only queries behind the status page's JSON API (`crate::web`): the
//! hosts with their active alerts, and one host's samples over a time range,
//! downsampled in SQL so that a reply never holds more than a bounded number
//! of points however long the range.
//!
//! Every query here runs on a read-only connection ([`StatusReader::open`]);
//! in WAL mode it reads a snapshot and never blocks the daemon's writer.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{HostStatus, Result, StatusReader};

/// An alert that is firing (or flapping) on a host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveAlert {
    /// The rule: `cpu`, `memory`, `swap`, `reboot`, `unreachable`.
    pub rule: String,
    /// `firing` or `flapping`.
    pub state: String,
    /// When the current state began (Unix ms).
    pub since: Option<i64>,
    /// The value that last breached the limit, if the rule has one.
    pub value: Option<f64>,
}

/// A host's status with its active alerts, for `/api/hosts`.
#[derive(Debug, Clone)]
pub struct WebHost {
    /// What `edgemon status` shows of the host.
    pub status: HostStatus,
    /// Its firing and flapping alerts, by rule.
    pub alerts: Vec<ActiveAlert>,
}

/// One point of a chart: one sample, or the mean of the samples of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Receive time (Unix ms); of a bucket, the mean receive time of its samples.
    pub at: i64,
    /// CPU %.
    pub cpu: f64,
    /// Memory used / total, %.
    pub memory_percent: f64,
    /// Swap used / total, % (0 without swap).
    pub swap_percent: f64,
}

/// A host's samples in a time range.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Samples in the range (before downsampling).
    pub samples: i64,
    /// Width of a bucket in ms; 0 when every sample is a point.
    pub bucket_ms: i64,
    /// The points, oldest first.
    pub points: Vec<SeriesPoint>,
}

impl StatusReader {
    /// Every host, by name, with its active alerts.
    pub fn web_hosts(&self) -> Result<Vec<WebHost>> {
        let e = self.core.err("reading hosts for the status page");
        let hosts = self.host_statuses()?;
        let mut stmt = self
            .conn()
            .prepare(
                "SELECT a.rule, a.state, a.since, a.last_value
                 FROM alert_state a JOIN hosts h ON h.id = a.host_id
                 WHERE h.name = ?1 AND a.state IN ('firing', 'flapping')
                 ORDER BY a.rule",
            )
            .map_err(&e)?;
        let mut out = Vec::with_capacity(hosts.len());
        for status in hosts {
            let alerts = stmt
                .query_map([&status.name], |r| {
                    Ok(ActiveAlert {
                        rule: r.get(0)?,
                        state: r.get(1)?,
                        since: r.get(2)?,
                        value: r.get(3)?,
                    })
                })
                .map_err(&e)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(&e)?;
            out.push(WebHost { status, alerts });
        }
        Ok(out)
    }

    /// The samples of `host` received in `since..=until` (Unix ms): each one a
    /// point when there are at most `max_points`, else the means of at most
    /// `max_points` equal buckets spanning the first to the last sample.
    /// `None` when the buffer has no such host.
    pub fn host_series(
        &self,
        host: &str,
        since: i64,
        until: i64,
        max_points: usize,
    ) -> Result<Option<Series>> {
        let e = self
            .core
            .err("reading a host's samples for the status page");
        let conn = self.core.conn();
        let Some(host_id): Option<i64> = conn
            .query_row("SELECT id FROM hosts WHERE name = ?1", [host], |r| r.get(0))
            .optional()
            .map_err(&e)?
        else {
            return Ok(None);
        };
        let (samples, first, last): (i64, Option<i64>, Option<i64>) = conn
            .query_row(
                "SELECT COUNT(*), MIN(received_at), MAX(received_at) FROM samples
                 WHERE host_id = ?1 AND received_at BETWEEN ?2 AND ?3",
                params![host_id, since, until],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(&e)?;
        let max_points = max_points.max(1) as i64;
        let (first, last) = (first.unwrap_or(since), last.unwrap_or(since));
        // A bucket width that puts every sample in one of at most `max_points` buckets.
        let bucket_ms = if samples <= max_points {
            0
        } else {
            ((last - first) / max_points + 1).max(1)
        };
        let mut stmt = conn
            .prepare_cached(
                "SELECT CAST(AVG(received_at) AS INTEGER), AVG(cpu),
                        AVG(CASE WHEN mem_total > 0 THEN mem_used * 100.0 / mem_total ELSE 0 END),
                        AVG(CASE WHEN swap_total > 0 THEN swap_used * 100.0 / swap_total ELSE 0 END)
                 FROM samples
                 WHERE host_id = ?1 AND received_at BETWEEN ?2 AND ?3
                 GROUP BY CASE WHEN ?4 = 0 THEN id ELSE (received_at - ?5) / ?4 END
                 ORDER BY 1",
            )
            .map_err(&e)?;
        let points = stmt
            .query_map(params![host_id, since, until, bucket_ms, first], |r| {
                Ok(SeriesPoint {
                    at: r.get(0)?,
                    cpu: r.get(1)?,
                    memory_percent: r.get(2)?,
                    swap_percent: r.get(3)?,
                })
            })
            .map_err(&e)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&e)?;
        Ok(Some(Series {
            samples,
            bucket_ms,
            points,
        }))
    }
}

/// The newest sample's family sections of a host, with each family's
/// section of the sample before (for rates of counters).
#[derive(Debug, Clone, PartialEq)]
pub struct NewestSections {
    /// Receive time of the newest sample (Unix ms).
    pub at: i64,
    /// Its sections (a family absent: not measured).
    pub sections: Vec<crate::report::family::Section>,
    /// Per family of `sections`, its section in the latest earlier sample
    /// within the look-back, with that sample's receive time.
    pub previous: Vec<(i64, crate::report::family::Section)>,
}

/// A "filling up" alert's prediction for one mount.
#[derive(Debug, Clone, PartialEq)]
pub struct FillingPrediction {
    /// The mount point.
    pub mount: String,
    /// Seconds until full, as the alert step last predicted.
    pub seconds: f64,
    /// The alert's state (`pending`, `firing`, ...).
    pub state: String,
}

/// One member of a family at one stored sample.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberPoint {
    /// Receive time of the sample (Unix ms).
    pub at: i64,
    /// The member's values in that sample.
    pub member: crate::report::family::Member,
}

impl StatusReader {
    /// The newest sample of `host` with its sections and, per family, the
    /// section of the latest sample received up to `lookback_ms` before it
    /// (through [`StatusReader::latest_sections`] and
    /// [`StatusReader::family_history`]); `None` when the buffer has no such
    /// host, empty sections when it has no sample yet.
    pub fn newest_sections(&self, host: &str, lookback_ms: i64) -> Result<Option<NewestSections>> {
        if self.host_id(host)?.is_none() {
            return Ok(None);
        }
        let Some(newest) = self.latest_sections(host)? else {
            return Ok(Some(NewestSections {
                at: 0,
                sections: Vec::new(),
                previous: Vec::new(),
            }));
        };
        let at = newest.received_at;
        let mut previous = Vec::new();
        for section in &newest.sections {
            let points =
                self.family_history(host, section.family, None, at - lookback_ms.max(1), at - 1)?;
            if let Some(p) = points.into_iter().next_back() {
                previous.push((
                    p.received_at,
                    crate::report::family::Section {
                        family: section.family,
                        members: p.members,
                        cut: p.cut,
                        refused: p.refused,
                    },
                ));
            }
        }
        Ok(Some(NewestSections {
            at,
            sections: newest.sections,
            previous,
        }))
    }

    /// The values of member `member` of `family` (`""` in a singleton) in the
    /// samples of `host` received in `since..=until`, oldest first (samples
    /// without it left out); `None` when the buffer has no such host.
    pub fn member_history(
        &self,
        host: &str,
        family: &'static crate::report::family::FamilySpec,
        member: &str,
        since: i64,
        until: i64,
    ) -> Result<Option<Vec<MemberPoint>>> {
        if self.host_id(host)?.is_none() {
            return Ok(None);
        }
        let points = self.family_history(host, family, Some(member), since, until)?;
        Ok(Some(
            points
                .into_iter()
                .filter_map(|p| {
                    let at = p.received_at;
                    p.members
                        .into_iter()
                        .next()
                        .map(|member| MemberPoint { at, member })
                })
                .collect(),
        ))
    }

    /// The "filling up" alerts' predictions of `host`: per mount, the seconds
    /// to full the alert step last computed (`alert_state` rows of rule
    /// `fs-filling:MOUNT` with a value of 0 or more; the step keeps rows only
    /// while an alert is pending, firing or flapping, and -1 means no
    /// prediction), with the alert's state.
    pub fn filling_predictions(&self, host: &str) -> Result<Vec<FillingPrediction>> {
        let e = self
            .core
            .err("reading the filling-up predictions for the status page");
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT substr(a.rule, 12), a.last_value, a.state
                 FROM alert_state a JOIN hosts h ON h.id = a.host_id
                 WHERE h.name = ?1 AND a.rule LIKE 'fs-filling:%' AND a.last_value >= 0",
            )
            .map_err(&e)?;
        stmt.query_map([host], |r| {
            Ok(FillingPrediction {
                mount: r.get(0)?,
                seconds: r.get(1)?,
                state: r.get(2)?,
            })
        })
        .map_err(&e)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(&e)
    }

    /// The buffer's id of host `host`.
    fn host_id(&self, host: &str) -> Result<Option<i64>> {
        let e = self.core.err("looking a host up for the status page");
        self.core
            .conn()
            .query_row("SELECT id FROM hosts WHERE name = ?1", [host], |r| r.get(0))
            .optional()
            .map_err(&e)
    }
}
