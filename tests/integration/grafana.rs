//! The shipped Grafana dashboard (`packaging/grafana/edgemon-host.json`) against the real
//! central schema: every panel's SQL and every template variable's query runs, with Grafana's
//! MySQL macros expanded as Grafana documents them, in a UTC session as Grafana's MySQL data
//! source opens it, over rows sync wrote; each returns rows, a time series its `time` column
//! inside the dashboard's range. Grafana itself cannot be installed here.

use edgemon::sync::SyncTask;
use mysql::prelude::Queryable;

use crate::skip_or_fail;
use crate::support::mariadb::MariaDb;
use crate::support::temp_dir;
use crate::sync::{T0, buffer_config, drain, seed, sync_config};

const DASHBOARD: &str = include_str!("../../packaging/grafana/edgemon-host.json");

/// Grafana's MySQL macros for the range `from..=to` (Unix seconds), as its documentation
/// states them: `$__timeFilter(c)` is `c BETWEEN FROM_UNIXTIME(from) AND FROM_UNIXTIME(to)`,
/// `$__timeGroup(c, '5m')` is `cast(cast(UNIX_TIMESTAMP(c)/(300) as signed)*300 as signed)`
/// (`$__timeGroupAlias` adds `AS "time"`), `$__unixEpochFilter(c)` is `c >= from AND c <= to`,
/// `$__timeFrom()` / `$__timeTo()` are `FROM_UNIXTIME(from)` / `FROM_UNIXTIME(to)`.
fn expand(sql: &str, from: i64, to: i64) -> String {
    let mut out = sql
        .replace("$__timeFrom()", &format!("FROM_UNIXTIME({from})"))
        .replace("$__timeTo()", &format!("FROM_UNIXTIME({to})"));
    for (name, render) in [
        ("$__timeGroupAlias(", Macro::GroupAlias),
        ("$__timeGroup(", Macro::Group),
        ("$__timeFilter(", Macro::Filter),
        ("$__unixEpochFilter(", Macro::EpochFilter),
    ] {
        while let Some(at) = out.find(name) {
            let args_at = at + name.len();
            let close = matching_paren(&out[args_at..]).expect("a closed macro") + args_at;
            let args = &out[args_at..close];
            let (column, interval) = match args.rsplit_once(',') {
                Some((c, i)) if render.grouped() => (c.trim().to_string(), seconds(i)),
                _ => (args.trim().to_string(), 0),
            };
            let text = match render {
                Macro::Filter => {
                    format!("{column} BETWEEN FROM_UNIXTIME({from}) AND FROM_UNIXTIME({to})")
                }
                Macro::EpochFilter => format!("{column} >= {from} AND {column} <= {to}"),
                Macro::Group => format!(
                    "cast(cast(UNIX_TIMESTAMP({column})/({interval}) as signed)*{interval} as signed)"
                ),
                Macro::GroupAlias => format!(
                    "cast(cast(UNIX_TIMESTAMP({column})/({interval}) as signed)*{interval} as signed) AS \"time\""
                ),
            };
            out.replace_range(at..=close, &text);
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Macro {
    Filter,
    EpochFilter,
    Group,
    GroupAlias,
}

impl Macro {
    fn grouped(self) -> bool {
        matches!(self, Macro::Group | Macro::GroupAlias)
    }
}

/// The index of the parenthesis closing the one just before `text`.
fn matching_paren(text: &str) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(i),
            ')' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// `'5m'` -> 300.
fn seconds(interval: &str) -> i64 {
    let text = interval.trim().trim_matches('\'');
    let (n, unit) = text.split_at(text.len() - 1);
    let n: i64 = n.parse().expect("an interval like '5m'");
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => panic!("unit {other}"),
    }
}

#[test]
fn the_macros_expand_as_grafana_documents_them() {
    assert_eq!(
        expand(
            "WHERE $__timeFilter(time) GROUP BY $__timeGroup(time, '5m')",
            10,
            20
        ),
        "WHERE time BETWEEN FROM_UNIXTIME(10) AND FROM_UNIXTIME(20) GROUP BY \
         cast(cast(UNIX_TIMESTAMP(time)/(300) as signed)*300 as signed)"
    );
    assert_eq!(
        expand("$__unixEpochFilter(UNIX_TIMESTAMP(c))", 1, 2),
        "UNIX_TIMESTAMP(c) >= 1 AND UNIX_TIMESTAMP(c) <= 2"
    );
}

#[test]
fn every_panel_of_the_shipped_dashboard_runs_against_the_central_schema_and_returns_rows() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 3, 0, 60);
    drain(&SyncTask::new(
        &sync_config(&db.url(), 50),
        &buffer_config(&path),
        "site-g",
    ));

    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard JSON");
    let (from, to) = (T0 / 1000 - 3600, T0 / 1000 + 2 * 3600);
    let mut conn = db.conn().expect("connect");
    // Grafana's MySQL data source opens its sessions in UTC.
    conn.query_drop("SET time_zone = '+00:00'").expect("utc");
    let vars = |sql: &str| {
        sql.replace("$appliance", "site-g")
            .replace("$host", "host-000")
    };

    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert_eq!(variables.len(), 2);
    for variable in variables {
        let sql = vars(variable["query"].as_str().expect("a variable query"));
        let rows: Vec<String> = conn.query(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(
            !rows.is_empty(),
            "variable {} has no value",
            variable["name"]
        );
    }

    // A one-host panel reads the family's rows of its range through the (host, time) index,
    // not the appliance's rows by primary key.
    let sql = expand(
        &vars(
            "SELECT time, mount, used FROM family_filesystems
              WHERE appliance = '$appliance' AND host = '$host' AND $__timeFilter(time)",
        ),
        from,
        to,
    );
    let plan: Vec<(String, Option<String>)> = conn
        .query_map(format!("EXPLAIN {sql}"), |row: mysql::Row| {
            let table: Option<String> = row.get("table").flatten();
            let key: Option<String> = row.get("key").flatten();
            (table.unwrap_or_default(), key)
        })
        .expect("explain");
    assert!(
        plan.iter()
            .any(|(table, key)| table == "f"
                && key.as_deref() == Some("sample_filesystems_host_time")),
        "the panel does not use the (host, time) index: {plan:?}"
    );

    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().expect("targets") {
            let raw = target["rawSql"].as_str().expect("rawSql");
            let sql = expand(&vars(raw), from, to);
            assert!(
                !sql.contains("$__"),
                "{title}: a macro left unexpanded: {sql}"
            );
            // The binary protocol, so that the time column comes typed.
            let rows: Vec<mysql::Row> = conn
                .exec(&sql, ())
                .unwrap_or_else(|e| panic!("panel {title}: {e}\n{sql}"));
            assert!(
                rows.len() >= 2,
                "panel {title} returned {} rows\n{sql}",
                rows.len()
            );
            if target["format"] == "time_series" {
                // The first column is the time: DATETIME (UTC) or Unix seconds, in range.
                for row in &rows {
                    let time = match row.as_ref(0).expect("a time column") {
                        mysql::Value::Int(s) => *s,
                        mysql::Value::UInt(s) => *s as i64,
                        mysql::Value::Date(y, mo, d, h, mi, s, _) => {
                            let date = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
                            let t: i64 = conn
                                .exec_first("SELECT UNIX_TIMESTAMP(?)", (date,))
                                .expect("to seconds")
                                .expect("a time");
                            t
                        }
                        other => panic!("panel {title}: time column {other:?}"),
                    };
                    assert!(
                        (from - 300..=to).contains(&time),
                        "panel {title}: time {time} outside {from}..{to}"
                    );
                }
            }
        }
    }
}
