//! Metric families through the central layer (issue 22 item 3): every member of every
//! section reaches its child table exactly once with the values the buffer holds (checked by
//! [`assert_families_complete`], which `sync::assert_complete` runs, so every sync and bulk
//! test, the kill -9 ones included, checks the families too); the child tables agree with the
//! family specs column by column (information_schema); a version 3 database with rows is
//! upgraded to version 4 in place and then receives families; samples of a 1.0 agent (no
//! sections) are stored beside them.

use std::collections::BTreeMap;
use std::path::Path;

use edgemon::buffer::StatusReader;
use edgemon::report::family::{FAMILIES, FamilySpec, Kind, Member, Value};
use edgemon::sync::SyncTask;
use edgemon::sync::families;
use mysql::prelude::Queryable;

use crate::skip_or_fail;
use crate::support::mariadb::MariaDb;
use crate::support::temp_dir;
use crate::sync::{assert_complete, buffer_config, count, drain, seed, sync_config};

/// (host, seq, member key) -> values, for one family.
type Rows = BTreeMap<(String, i64, String), Vec<Option<Value>>>;

/// The buffer's members of `family` for samples that are not quarantined.
fn buffer_rows(path: &Path, family: &'static FamilySpec) -> (Rows, u64) {
    let conn = rusqlite::Connection::open(path).expect("open the buffer file");
    let hosts: Vec<String> = conn
        .prepare("SELECT name FROM hosts")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("hosts");
    let quarantined: Vec<(String, i64)> = conn
        .prepare("SELECT h.name, s.seq FROM samples s JOIN hosts h ON h.id = s.host_id WHERE s.sync_state NOT IN (0, 1)")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .expect("quarantined");
    let reader = StatusReader::open(path).expect("reader");
    let mut rows = Rows::new();
    let mut sections = 0;
    for host in hosts {
        for point in reader
            .family_history(&host, family, None, i64::MIN, i64::MAX)
            .expect("history")
        {
            if quarantined.contains(&(host.clone(), point.seq)) {
                continue;
            }
            sections += 1;
            for m in point.members {
                rows.insert((host.clone(), point.seq, m.key), m.values);
            }
        }
    }
    (rows, sections)
}

/// The central members of `family` for `appliance`, read back into values by the spec.
fn central_rows(db: &MariaDb, appliance: &str, family: &'static FamilySpec) -> (Rows, u64) {
    let mut conn = db.conn().expect("connect");
    let key = if family.is_singleton() {
        "''".to_string()
    } else {
        format!("CAST(f.`{}` AS CHAR)", family.key)
    };
    let fields: Vec<String> = family
        .fields
        .iter()
        .map(|f| format!("f.`{}`", f.name))
        .collect();
    let query = format!(
        "SELECT CAST(h.name AS CHAR), f.seq, {key}, {} FROM {} f JOIN hosts h ON h.id = f.host_id
         JOIN appliances a ON a.id = f.appliance_id WHERE a.name = ?",
        fields.join(", "),
        families::table(family)
    );
    let result: Vec<mysql::Row> = conn.exec(query, (appliance,)).expect("child rows");
    let mut rows = Rows::new();
    for row in result {
        let host: String = row.get(0).expect("host");
        let seq: i64 = row.get(1).expect("seq");
        let key: String = row.get(2).expect("key");
        let mut member = Member::new(family, key.clone());
        for (i, field) in family.fields.iter().enumerate() {
            let at = 3 + i;
            member.values[i] = match field.kind {
                Kind::U64 => row.get::<Option<u64>, _>(at).flatten().map(Value::U64),
                Kind::F64 => row.get::<Option<f64>, _>(at).flatten().map(Value::F64),
                Kind::Bool => row.get::<Option<bool>, _>(at).flatten().map(Value::Bool),
                Kind::Text => row.get::<Option<String>, _>(at).flatten().map(Value::Text),
            };
        }
        let old = rows.insert((host, seq, key), member.values);
        assert!(old.is_none(), "a member twice in {}", family.name);
    }
    let sections = count(
        db,
        &format!(
            "SELECT COUNT(*) FROM sample_sections x JOIN appliances a ON a.id = x.appliance_id
             WHERE a.name = '{appliance}' AND x.family = '{}'",
            family.name
        ),
    );
    (rows, sections as u64)
}

/// Every family's members and section rows are in MySQL exactly as the buffer holds them:
/// none missing, none twice, every value equal.
pub(crate) fn assert_families_complete(db: &MariaDb, buffer: &Path, appliance: &str) {
    for family in FAMILIES {
        let (local, local_sections) = buffer_rows(buffer, family);
        let (central, central_sections) = central_rows(db, appliance, family);
        assert_eq!(
            central_sections, local_sections,
            "sample_sections rows of {} for {appliance}",
            family.name
        );
        assert_eq!(
            central.len(),
            local.len(),
            "members of {} for {appliance}",
            family.name
        );
        for (key, values) in &local {
            assert_eq!(
                central.get(key),
                Some(values),
                "{} member {key:?} differs in MySQL",
                family.name
            );
        }
    }
}

/// The child tables agree with the specs: every column of every field, with its SQL type,
/// and the identity and key as the primary key.
fn assert_schema_matches_the_specs(db: &MariaDb) {
    let mut conn = db.conn().expect("connect");
    for family in FAMILIES {
        let table = families::table(family);
        let columns: Vec<(String, String)> = conn
            .exec(
                "SELECT CAST(column_name AS CHAR), CAST(column_type AS CHAR) FROM information_schema.columns
                 WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position",
                (&table,),
            )
            .expect("columns");
        let mut want: Vec<(String, String)> = ["appliance_id", "epoch", "host_id", "seq"]
            .iter()
            .zip([
                "int(10) unsigned",
                "bigint(20)",
                "int(10) unsigned",
                "bigint(20)",
            ])
            .map(|(c, t)| (c.to_string(), t.to_string()))
            .collect();
        if !family.is_singleton() {
            want.push((family.key.to_string(), "varchar(255)".into()));
        }
        for field in family.fields {
            let t = match field.kind {
                Kind::U64 => "bigint(20) unsigned",
                Kind::F64 => "double",
                Kind::Bool => "tinyint(1)",
                Kind::Text => "varchar(255)",
            };
            want.push((field.name.to_string(), t.to_string()));
        }
        assert_eq!(
            columns, want,
            "table {table} differs from the spec of {}",
            family.name
        );
        let key: Vec<String> = conn
            .exec(
                "SELECT CAST(column_name AS CHAR) FROM information_schema.key_column_usage
                 WHERE table_schema = DATABASE() AND table_name = ? AND constraint_name = 'PRIMARY'
                 ORDER BY ordinal_position",
                (&table,),
            )
            .expect("primary key");
        let mut want_key = vec!["appliance_id", "epoch", "host_id", "seq"];
        if !family.is_singleton() {
            want_key.push(family.key);
        }
        assert_eq!(key, want_key, "primary key of {table}");
        let views = count(
            db,
            &format!(
                "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE()
                 AND table_name = 'family_{}' AND column_name = 'time'",
                family.name
            ),
        );
        assert_eq!(views, 1, "view family_{} has a time column", family.name);
    }
}

#[test]
fn families_reach_mysql_exactly_once_beside_samples_without_sections() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    // sync::report gives three of four samples the example sections; the fourth is a 1.0
    // agent's (no sections).
    seed(&path, 4, 0, 40);
    let task = SyncTask::new(&sync_config(&db.url(), 25), &buffer_config(&path), "site-f");
    drain(&task);
    assert_schema_matches_the_specs(&db);
    assert!(count(&db, "SELECT COUNT(*) FROM sample_filesystems") > 0);
    let without = count(
        &db,
        "SELECT COUNT(*) FROM samples s WHERE NOT EXISTS (SELECT 1 FROM sample_sections x
           WHERE x.appliance_id = s.appliance_id AND x.epoch = s.epoch AND x.host_id = s.host_id AND x.seq = s.seq)",
    );
    assert!(without > 0, "samples without sections are stored too");
    assert_complete(&db, &path, "site-f");
    // A second drain sends nothing again: exactly once.
    let again = drain(&task);
    assert_eq!(again.samples, 0);
    assert_complete(&db, &path, "site-f");
    // The Grafana view answers a host's panel with UTC times.
    let rows = count(
        &db,
        "SELECT COUNT(*) FROM family_filesystems WHERE host = 'host-000' AND mount = '/var'
           AND time BETWEEN '2023-01-01 00:00:00' AND '2030-01-01 00:00:00'",
    );
    assert!(rows > 0);
}

#[test]
fn a_version_3_database_with_rows_is_upgraded_to_4_in_place_and_takes_families() {
    let db = skip_or_fail!(MariaDb::start());
    db.apply_fixture("mysql-v3.sql")
        .expect("apply the v3 schema");
    let dir = temp_dir();
    // Rows a version 3 edgemon wrote: samples without families (this build's sync writes
    // them the same way; the families of the fixture database start at version 4).
    {
        let mut conn = db.conn().expect("connect");
        conn.query_drop("SET time_zone = '+00:00'").expect("utc");
        for statement in [
            "INSERT INTO appliances (id, name) VALUES (1, 'site-v3')",
            "INSERT INTO buffers (appliance_id, epoch) VALUES (1, 9)",
            "INSERT INTO hosts (id, appliance_id, name, address) VALUES (1, 1, 'a', 'a:22')",
            "INSERT INTO samples (appliance_id, epoch, host_id, seq, collected_at, received_at, cpu, mem_used,
                                  mem_total, swap_used, swap_total, uptime_s, checksum)
             SELECT 1, 9, 1, s.seq, '2024-01-01' + INTERVAL s.seq MINUTE, '2024-01-01' + INTERVAL s.seq MINUTE,
                    1, 1, 2, 0, 0, s.seq, s.seq FROM seq_1_to_60 s",
            "INSERT INTO sample_cores (appliance_id, epoch, host_id, seq, core, cpu)
             SELECT 1, 9, 1, x.seq, 0, 1 FROM samples x",
            "INSERT INTO watermarks (appliance_id, epoch, host_id, first_seq, last_seq, stored_last_seq, samples_stored)
             VALUES (1, 9, 1, 1, 60, 60, 60)",
        ] {
            conn.query_drop(statement).expect("v3 rows");
        }
    }
    let fingerprint = || {
        count(
            &db,
            "SELECT CAST(SUM(CRC32(CONCAT_WS('|', appliance_id, epoch, host_id, seq, collected_at, checksum))) AS SIGNED) FROM samples",
        )
    };
    let before = (
        fingerprint(),
        count(&db, "SELECT COUNT(*) FROM sample_cores"),
    );
    assert_eq!(count(&db, "SELECT MAX(version) FROM schema_version"), 3);

    let path = dir.path().join("buffer.sqlite");
    seed(&path, 3, 0, 12);
    let task = SyncTask::new(
        &sync_config(&db.url(), 10),
        &buffer_config(&path),
        "site-v4",
    );
    drain(&task);
    assert_eq!(count(&db, "SELECT MAX(version) FROM schema_version"), 4);
    assert_eq!(
        (
            count(
                &db,
                "SELECT CAST(SUM(CRC32(CONCAT_WS('|', appliance_id, epoch, host_id, seq, collected_at, checksum))) AS SIGNED) FROM samples WHERE epoch = 9"
            ),
            count(&db, "SELECT COUNT(*) FROM sample_cores WHERE epoch = 9")
        ),
        before,
        "a version 3 row changed or vanished"
    );
    assert_schema_matches_the_specs(&db);
    assert_complete(&db, &path, "site-v4");
}
