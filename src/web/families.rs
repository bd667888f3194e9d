//! The metric families as the operator sees them: JSON of a host's latest
//! sections and of one member's history, and the per-host summary (worst
//! filesystem, failed units, missing watched processes, members cut or
//! refused) that the hosts table, `edgemon status` and its `--json` share.
//!
//! Everything here is generic over [`FamilySpec`]: a family's fields, kinds,
//! units and docs come from its spec, counters become per-second rates
//! between two samples (a counter that went down was reset: no rate), and
//! the page draws one table per family from the `columns` this module lists.
//! The only per-family code is the short table of derived figures
//! ([`derived_of`]: used %, inodes %, utilisation %, error ratio, use of a
//! limit) and the "full in" estimate of filesystems ([`full_in_s`]); the next
//! family needs no edit here unless it wants a figure of its own.
//!
//! "Full in" is the "filling up" alert's prediction where the alert state
//! holds one (`full_in_source: "alert"`), else this module's own estimate
//! (`"estimate"`): a least-squares line through the filesystem's `avail` over
//! the last [`FULL_IN_WINDOW`] of stored samples, shown only while the line
//! goes down and once the samples span at least [`FULL_IN_MIN_SPAN`].

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value as Json, json};

use crate::buffer::{MemberPoint, NewestSections};
use crate::report::family::{
    FAMILIES, FamilySpec, Kind, Member, Section, Typed, Value, devices, filesystems, interfaces,
    processes, system, units,
};

/// The history a "full in" estimate fits its line through.
pub const FULL_IN_WINDOW: Duration = Duration::from_secs(12 * 3600);
/// The least time that history must span for an estimate: minutes of noise
/// (a build, a log rotation) are no trend.
pub const FULL_IN_MIN_SPAN: Duration = Duration::from_secs(3600);

/// What a derived figure is computed from.
pub struct Input<'a> {
    /// The member now.
    pub member: &'a Member,
    /// Per-second rates of its counter fields, by field index (`None`: not a
    /// counter, no earlier sample, or a reset).
    pub rates: &'a [Option<f64>],
}

/// A figure computed from a member's values and rates (used %, utilisation %).
pub struct Derived {
    /// Its name in the JSON (`used_percent`).
    pub name: &'static str,
    /// Its unit (`percent`).
    pub unit: &'static str,
    /// One line: what it is.
    pub doc: &'static str,
    compute: fn(&Input<'_>) -> Option<f64>,
}

impl Derived {
    /// The figure for `input`, when it can be had.
    pub fn of(&self, input: &Input<'_>) -> Option<f64> {
        (self.compute)(input).filter(|v| v.is_finite())
    }
}

fn ratio(part: Option<f64>, all: Option<f64>) -> Option<f64> {
    let (part, all) = (part?, all?);
    (all > 0.0).then(|| part * 100.0 / all)
}

fn sum(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? + b?)
}

const FILESYSTEM_FIGURES: &[Derived] = &[
    Derived {
        name: "used_percent",
        unit: "percent",
        doc: "used / (used + available), as df shows it",
        compute: |i| filesystems::Filesystem::from_member(i.member).used_percent(),
    },
    Derived {
        name: "inodes_used_percent",
        unit: "percent",
        doc: "inodes in use",
        compute: |i| filesystems::Filesystem::from_member(i.member).inodes_used_percent(),
    },
];

const INTERFACE_FIGURES: &[Derived] = &[
    Derived {
        name: "errors_per_s",
        unit: "count/s",
        doc: "receive and transmit errors per second",
        compute: |i| {
            sum(
                i.rates[interfaces::RX_ERRORS],
                i.rates[interfaces::TX_ERRORS],
            )
        },
    },
    Derived {
        name: "error_ratio_percent",
        unit: "percent",
        doc: "errors per packet since the previous sample",
        compute: |i| {
            ratio(
                sum(
                    i.rates[interfaces::RX_ERRORS],
                    i.rates[interfaces::TX_ERRORS],
                ),
                sum(
                    i.rates[interfaces::RX_PACKETS],
                    i.rates[interfaces::TX_PACKETS],
                ),
            )
        },
    },
];

const DEVICE_FIGURES: &[Derived] = &[Derived {
    name: "util_percent",
    unit: "percent",
    doc: "time with I/O in flight since the previous sample",
    // busy ms per second / 10 = percent of the time.
    compute: |i| i.rates[devices::BUSY_MS].map(|ms| (ms / 10.0).min(100.0)),
}];

const SYSTEM_FIGURES: &[Derived] = &[
    Derived {
        name: "procs_percent",
        unit: "percent",
        doc: "processes and threads of pid_max",
        compute: |i| {
            ratio(
                i.member.u64(system::PROCS).map(|v| v as f64),
                i.member.u64(system::PID_MAX).map(|v| v as f64),
            )
        },
    },
    Derived {
        name: "files_percent",
        unit: "percent",
        doc: "open file handles of file-max",
        compute: |i| {
            ratio(
                i.member.u64(system::FILES_OPEN).map(|v| v as f64),
                i.member.u64(system::FILES_MAX).map(|v| v as f64),
            )
        },
    },
];

/// The derived figures of `spec`'s members (empty for most families).
pub fn derived_of(spec: &FamilySpec) -> &'static [Derived] {
    if spec.id == filesystems::SPEC.id {
        FILESYSTEM_FIGURES
    } else if spec.id == interfaces::SPEC.id {
        INTERFACE_FIGURES
    } else if spec.id == devices::SPEC.id {
        DEVICE_FIGURES
    } else if spec.id == system::SPEC.id {
        SYSTEM_FIGURES
    } else {
        &[]
    }
}

/// Per-second rates of `now`'s counter fields against `before`, taken
/// `dt_ms` earlier, by field index. A counter that went down was reset (a
/// reboot, a driver reload) and has no rate.
pub fn rates(spec: &FamilySpec, now: &Member, before: Option<(&Member, i64)>) -> Vec<Option<f64>> {
    spec.fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let (before, dt_ms) = before?;
            if !field.counter || dt_ms <= 0 {
                return None;
            }
            let (a, b) = (before.u64(i)?, now.u64(i)?);
            (b >= a).then(|| (b - a) as f64 * 1000.0 / dt_ms as f64)
        })
        .collect()
}

/// Where a column's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The field of this index, as measured.
    Field(usize),
    /// The per-second rate of the counter field of this index.
    Rate(usize),
    /// The derived figure of this index in [`derived_of`].
    Derived(usize),
}

/// One column of a family's table on the page and of its history points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The key in a member's or a point's JSON (`used`, `rx_bytes_per_s`).
    pub name: String,
    /// `u64`, `f64`, `bool` or `text`.
    pub kind: &'static str,
    /// Unit (`bytes`, `bytes/s`, `percent`), `""` for text and flags.
    pub unit: String,
    /// One line from the spec.
    pub doc: String,
    /// Where its value comes from.
    pub source: Source,
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::U64 => "u64",
        Kind::F64 => "f64",
        Kind::Bool => "bool",
        Kind::Text => "text",
    }
}

/// The columns of `spec`: each field as measured, a counter as its rate per
/// second, then the family's derived figures.
pub fn columns(spec: &FamilySpec) -> Vec<Column> {
    let mut out: Vec<Column> = spec
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if f.counter {
                Column {
                    name: format!("{}_per_s", f.name),
                    kind: "f64",
                    unit: format!("{}/s", f.unit),
                    doc: format!("{} per second", f.doc),
                    source: Source::Rate(i),
                }
            } else {
                Column {
                    name: f.name.to_string(),
                    kind: kind_name(f.kind),
                    unit: f.unit.to_string(),
                    doc: f.doc.to_string(),
                    source: Source::Field(i),
                }
            }
        })
        .collect();
    out.extend(derived_of(spec).iter().enumerate().map(|(i, d)| Column {
        name: d.name.to_string(),
        kind: "f64",
        unit: d.unit.to_string(),
        doc: d.doc.to_string(),
        source: Source::Derived(i),
    }));
    out
}

fn value_json(value: Option<&Value>) -> Json {
    match value {
        None => Json::Null,
        Some(Value::U64(v)) => json!(v),
        Some(Value::F64(v)) => json!(v),
        Some(Value::Bool(v)) => json!(v),
        Some(Value::Text(v)) => json!(v),
    }
}

/// A column's value for a member with its rates, as JSON.
fn column_json(spec: &FamilySpec, column: &Column, input: &Input<'_>) -> Json {
    match column.source {
        Source::Field(i) => value_json(input.member.values.get(i).and_then(Option::as_ref)),
        Source::Rate(i) => input
            .rates
            .get(i)
            .copied()
            .flatten()
            .map_or(Json::Null, |v| json!(v)),
        Source::Derived(i) => derived_of(spec)
            .get(i)
            .and_then(|d| d.of(input))
            .map_or(Json::Null, |v| json!(v)),
    }
}

/// A column's value as a number, for history points (text has none).
fn column_number(spec: &FamilySpec, column: &Column, input: &Input<'_>) -> Option<f64> {
    match column.source {
        Source::Field(i) => input.member.values.get(i)?.as_ref()?.as_f64(),
        Source::Rate(i) => input.rates.get(i).copied().flatten(),
        Source::Derived(i) => derived_of(spec).get(i)?.of(input),
    }
}

/// Seconds until `avail` reaches 0 at the rate of a least-squares
/// line through the history of a filesystem's `avail` (bytes over ms);
/// `None` when the line does not go down, or there are fewer than 3 points,
/// or they span less than [`FULL_IN_MIN_SPAN`].
pub fn full_in_s(history: &[MemberPoint]) -> Option<f64> {
    let points: Vec<(f64, f64)> = history
        .iter()
        .filter_map(|p| Some((p.at as f64, p.member.u64(filesystems::AVAIL)? as f64)))
        .collect();
    let span = match (points.first(), points.last()) {
        (Some(a), Some(b)) => b.0 - a.0,
        _ => 0.0,
    };
    if points.len() < 3 || span < FULL_IN_MIN_SPAN.as_millis() as f64 {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx; // bytes per ms
    let (last_at, _) = *points.last()?;
    // The line's value at the last sample: noise moves it less than the sample itself.
    let avail_now = my + slope * (last_at - mx);
    (slope < 0.0).then(|| avail_now.max(0.0) / -slope / 1000.0)
}

/// A filesystem's "full in" by mount: seconds and where they come from.
pub type FullIn<'a> = dyn Fn(&str) -> Option<(f64, &'static str)> + 'a;

/// The spec of a family as JSON: names, key, fields and the page's columns.
fn spec_json(spec: &FamilySpec, columns: &[Column]) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("name".into(), json!(spec.name));
    m.insert("doc".into(), json!(spec.doc));
    m.insert("member".into(), json!(spec.member));
    m.insert("key".into(), json!(spec.key));
    m.insert("singleton".into(), json!(spec.is_singleton()));
    m.insert(
        "fields".into(),
        Json::Array(
            spec.fields
                .iter()
                .map(|f| {
                    json!({
                        "name": f.name, "kind": kind_name(f.kind), "unit": f.unit,
                        "doc": f.doc, "counter": f.counter,
                    })
                })
                .collect(),
        ),
    );
    m.insert(
        "columns".into(),
        Json::Array(
            columns
                .iter()
                .map(|c| json!({ "name": c.name, "kind": c.kind, "unit": c.unit, "doc": c.doc }))
                .collect(),
        ),
    );
    m
}

/// One family of the newest sample (received at `at`) as JSON: its spec,
/// `cut` and `refused`, and each member with every column; `previous` is
/// the family's section of an earlier sample with its time (for rates), and
/// `full_in` gives a filesystem's "full in" by mount, in seconds, with its
/// source (`alert` or `estimate`).
pub fn section_json(
    section: &Section,
    at: i64,
    previous: Option<&(i64, Section)>,
    full_in: &FullIn<'_>,
) -> Json {
    let spec = section.family;
    let columns = columns(spec);
    let members: Vec<Json> = section
        .members
        .iter()
        .map(|member| {
            let earlier = previous.and_then(|(t, s)| s.member(&member.key).map(|m| (m, at - t)));
            let rates = rates(spec, member, earlier);
            let input = Input {
                member,
                rates: &rates,
            };
            let mut m = Map::new();
            m.insert("key".into(), json!(member.key));
            for c in &columns {
                m.insert(c.name.clone(), column_json(spec, c, &input));
            }
            if spec.id == filesystems::SPEC.id {
                let full = full_in(&member.key);
                m.insert(
                    "full_in_s".into(),
                    full.map_or(Json::Null, |(v, _)| json!(v)),
                );
                m.insert(
                    "full_in_source".into(),
                    full.map_or(Json::Null, |(_, source)| json!(source)),
                );
            }
            Json::Object(m)
        })
        .collect();
    let mut m = spec_json(spec, &columns);
    m.insert("measured".into(), json!(true));
    m.insert("cut".into(), json!(section.cut));
    m.insert("refused".into(), json!(section.refused));
    m.insert("members".into(), Json::Array(members));
    Json::Object(m)
}

/// `/api/hosts/NAME/families`: every family this build knows, in registry
/// order, with `measured` false for those the newest sample did not carry.
pub fn latest_json(host: &str, newest: &NewestSections, full_in: &FullIn<'_>) -> Json {
    let families: Vec<Json> = FAMILIES
        .iter()
        .map(|spec| {
            let previous = newest.previous.iter().find(|(_, s)| s.family.id == spec.id);
            match newest.sections.iter().find(|s| s.family.id == spec.id) {
                Some(section) => section_json(section, newest.at, previous, full_in),
                None => {
                    let mut m = spec_json(spec, &columns(spec));
                    m.insert("measured".into(), json!(false));
                    m.insert("cut".into(), json!(0));
                    m.insert("refused".into(), json!(0));
                    m.insert("members".into(), json!([]));
                    Json::Object(m)
                }
            }
        })
        .collect();
    let previous_at = newest.previous.iter().map(|(t, _)| *t).max();
    json!({
        "host": host,
        "at": (newest.at > 0).then_some(newest.at),
        "previous_at": previous_at,
        "full_in": {
            "alert": "the filling-up alert's prediction, while the alert state holds one",
            "estimate": "else least squares over the last 12 h of the available space, once an hour of samples is there",
            "window_s": FULL_IN_WINDOW.as_secs(),
            "min_span_s": FULL_IN_MIN_SPAN.as_secs(),
        },
        "families": families,
    })
}

/// A member's history as chart points: every numeric column per point
/// (counters as rates against the point before), downsampled to at most
/// `max_points` buckets (means of each column, at the mean time).
/// Returns the points and the bucket width (0: one point per sample).
pub fn history_points(
    spec: &FamilySpec,
    history: &[MemberPoint],
    max_points: usize,
) -> (Vec<Json>, i64) {
    let columns: Vec<Column> = columns(spec)
        .into_iter()
        .filter(|c| c.kind != "text")
        .collect();
    let rows: Vec<(i64, Vec<Option<f64>>)> = history
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let before = i
                .checked_sub(1)
                .and_then(|j| history.get(j))
                .map(|b| (&b.member, p.at - b.at));
            let rates = rates(spec, &p.member, before);
            let input = Input {
                member: &p.member,
                rates: &rates,
            };
            (
                p.at,
                columns
                    .iter()
                    .map(|c| column_number(spec, c, &input))
                    .collect(),
            )
        })
        .collect();
    let max_points = max_points.max(1);
    let (first, last) = match (rows.first(), rows.last()) {
        (Some(f), Some(l)) => (f.0, l.0),
        _ => (0, 0),
    };
    let bucket_ms = if rows.len() <= max_points {
        0
    } else {
        ((last - first) / max_points as i64 + 1).max(1)
    };
    type Row = (i64, Vec<Option<f64>>);
    let mut buckets: Vec<(i64, Vec<Row>)> = Vec::new();
    for row in rows {
        let id = if bucket_ms == 0 {
            buckets.len() as i64
        } else {
            (row.0 - first) / bucket_ms
        };
        match buckets.last_mut() {
            Some((last_id, rows)) if *last_id == id => rows.push(row),
            _ => buckets.push((id, vec![row])),
        }
    }
    let points = buckets
        .into_iter()
        .map(|(_, rows)| {
            let n = rows.len() as i64;
            let at = rows.iter().map(|r| r.0).sum::<i64>() / n.max(1);
            let mut m = Map::new();
            m.insert("at".into(), json!(at));
            for (ci, c) in columns.iter().enumerate() {
                let values: Vec<f64> = rows.iter().filter_map(|r| r.1[ci]).collect();
                let mean =
                    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
                m.insert(c.name.clone(), mean.map_or(Json::Null, |v| json!(v)));
            }
            Json::Object(m)
        })
        .collect();
    (points, bucket_ms)
}

/// The worst filesystem of a host: the highest used %.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorstFilesystem {
    /// Mount point.
    pub mount: String,
    /// Used % (df's figure).
    pub used_percent: f64,
    /// Bytes available to unprivileged users.
    pub avail: Option<u64>,
    /// Bytes in all.
    pub size: Option<u64>,
}

/// Members a family did not report: cut by the agent's cap, refused as invalid.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shortfall {
    /// The family.
    pub family: &'static str,
    /// Cut by the per-family cap.
    pub cut: u32,
    /// Refused by the reader.
    pub refused: u32,
}

/// What wakes an operator about a host, from its newest sections: shared by
/// the hosts table, `edgemon status` and `status --json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FamilySummary {
    /// The filesystem with the highest used %, when any reported sizes.
    pub worst_filesystem: Option<WorstFilesystem>,
    /// Mounts whose `statvfs` did not answer in time.
    pub hanging_filesystems: Vec<String>,
    /// Mounts that are read-only.
    pub readonly_filesystems: Vec<String>,
    /// Failed systemd units, by name.
    pub failed_units: Vec<String>,
    /// Watched processes with no match running.
    pub missing_processes: Vec<String>,
    /// Interfaces whose state is `down` or `lowerlayerdown`.
    pub interfaces_down: Vec<String>,
    /// Families with members cut or refused.
    pub shortfalls: Vec<Shortfall>,
}

impl FamilySummary {
    /// The summary of one sample's sections.
    pub fn of(sections: &[Section]) -> FamilySummary {
        let find = |spec: &FamilySpec| sections.iter().find(|s| s.family.id == spec.id);
        let mut out = FamilySummary::default();
        if let Some(s) = find(&filesystems::SPEC) {
            for fs in s.typed::<filesystems::Filesystem>() {
                if fs.hanging {
                    out.hanging_filesystems.push(fs.mount.clone());
                }
                if fs.readonly == Some(true) {
                    out.readonly_filesystems.push(fs.mount.clone());
                }
                if let Some(used) = fs.used_percent()
                    && out
                        .worst_filesystem
                        .as_ref()
                        .is_none_or(|w| used > w.used_percent)
                {
                    out.worst_filesystem = Some(WorstFilesystem {
                        mount: fs.mount.clone(),
                        used_percent: used,
                        avail: fs.avail,
                        size: fs.size,
                    });
                }
            }
        }
        if let Some(s) = find(&units::SPEC) {
            out.failed_units = s.members.iter().map(|m| m.key.clone()).collect();
        }
        if let Some(s) = find(&processes::SPEC) {
            out.missing_processes = s
                .typed::<processes::Watched>()
                .into_iter()
                .filter(|w| w.count == Some(0))
                .map(|w| w.name)
                .collect();
        }
        if let Some(s) = find(&interfaces::SPEC) {
            out.interfaces_down = s
                .typed::<interfaces::Interface>()
                .into_iter()
                .filter(|i| matches!(i.oper.as_deref(), Some("down" | "lowerlayerdown")))
                .map(|i| i.name)
                .collect();
        }
        out.shortfalls = sections
            .iter()
            .filter(|s| s.cut > 0 || s.refused > 0)
            .map(|s| Shortfall {
                family: s.family.name,
                cut: s.cut,
                refused: s.refused,
            })
            .collect();
        out
    }
}
