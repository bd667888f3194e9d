//! The central schema: applied when missing, upgraded in place (v1 -> v2 -> v3 -> v4) under the
//! lock [`SCHEMA_LOCK`] on a connection of its own with long timeouts, refused when newer than
//! this build or incomplete.

use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};

use super::super::{families, sql};
use super::{Central, Error, classify};

/// The central schema version this build writes.
pub const SCHEMA_VERSION: u32 = 4;

/// Tables the schema must hold, beside the family child tables ([`families::tables`]).
const TABLES: [&str; 11] = [
    "schema_version",
    "appliances",
    "buffers",
    "hosts",
    "samples",
    "sample_cores",
    "collection_errors",
    "alert_events",
    "drops",
    "watermarks",
    "prune_horizons",
];

/// The lock that serialises schema changes between appliances.
const SCHEMA_LOCK: &str = "edgemon.schema";

/// Read and write timeout of the connection that creates or upgrades the schema (an upgrade
/// rebuilds every table); half of it bounds the wait for [`SCHEMA_LOCK`].
const SCHEMA_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

impl Central {
    /// Applies the schema when missing, upgrades version 1 in place; refuses a newer or
    /// incomplete one.
    pub(super) fn ensure_schema(
        &mut self,
        appliance: &str,
        builder: &OptsBuilder,
    ) -> Result<(), Error> {
        let server = self.server.clone();
        let e = |err| classify(&server, err);
        let found = self.schema_version()?;
        self.refuse_newer(found)?;
        if found != Some(SCHEMA_VERSION) {
            // Waiting for the lock and rebuilding large tables take far longer than
            // sync.timeout, and a client that gives up kills its ALTER: a connection of its own.
            let long = builder
                .clone()
                .read_timeout(Some(SCHEMA_TIMEOUT))
                .write_timeout(Some(SCHEMA_TIMEOUT));
            let schema_conn = Conn::new(long).map_err(e)?;
            let normal = std::mem::replace(&mut self.conn, schema_conn);
            let applied = self.apply_schema_under_lock(appliance);
            self.conn = normal;
            applied?;
        }
        let present: Vec<String> = self
            .conn
            .query(
                "SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE()",
            )
            .map_err(e)?;
        let children = families::tables();
        let missing: Vec<&str> = TABLES
            .iter()
            .copied()
            .chain(children.iter().map(String::as_str))
            .filter(|t| !present.iter().any(|p| p == t))
            .collect();
        if !missing.is_empty() {
            return Err(Error::Schema {
                server,
                message: format!(
                    "table(s) {} missing although schema version {} is recorded; restore them from a backup, \
                     or, to start empty, drop the edgemon tables and schema_version so that edgemon re-creates them",
                    missing.join(", "),
                    SCHEMA_VERSION
                ),
            });
        }
        Ok(())
    }

    /// Serialises appliances that find the database empty or old at the same moment.
    fn apply_schema_under_lock(&mut self, appliance: &str) -> Result<(), Error> {
        let server = self.server.clone();
        let locked: Option<i64> = self
            .conn
            .query_first(format!(
                "SELECT GET_LOCK('{SCHEMA_LOCK}', {})",
                SCHEMA_TIMEOUT.as_secs() / 2
            ))
            .map_err(|err| classify(&server, err))?;
        if locked != Some(1) {
            return Err(Error::Schema {
                server,
                message: format!(
                    "could not take the schema lock '{SCHEMA_LOCK}' within {} s (another appliance is \
                     creating or upgrading the schema)",
                    SCHEMA_TIMEOUT.as_secs() / 2
                ),
            });
        }
        let applied = self.apply_schema_locked(appliance);
        let _ = self
            .conn
            .query_drop(format!("DO RELEASE_LOCK('{SCHEMA_LOCK}')"));
        applied
    }

    fn refuse_newer(&self, found: Option<u32>) -> Result<(), Error> {
        match found {
            Some(v) if v > SCHEMA_VERSION => Err(Error::Schema {
                server: self.server.clone(),
                message: format!(
                    "version {v} is newer than this edgemon supports ({SCHEMA_VERSION}); upgrade edgemon"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Under the schema lock: looks again (another appliance may have just done it), then
    /// creates the schema or upgrades an older version (1, 2 or 3).
    fn apply_schema_locked(&mut self, appliance: &str) -> Result<(), Error> {
        let found = self.schema_version()?;
        self.refuse_newer(found)?;
        match found {
            Some(SCHEMA_VERSION) => return Ok(()),
            Some(1) => {
                tracing::warn!(server = %self.server, "upgrading the central schema from version 1 to 2 in place");
                self.set_applied_by(appliance)?;
                let upgrade = statements(crate::schema::MYSQL_V1_TO_V2);
                let (alters, after): (Vec<_>, Vec<_>) = upgrade
                    .into_iter()
                    .partition(|s| s.starts_with("ALTER TABLE"));
                for alter in &alters {
                    let table = alter
                        .split_whitespace()
                        .nth(2)
                        .unwrap_or_default()
                        .to_string();
                    if !self.has_column(&table, "epoch")? {
                        self.run_schema_statement(alter, "schema/mysql-v2.sql")?;
                    }
                }
                // A v1 upgrade cut short by an older build may have created watermarks already.
                if self.has_column("watermarks", "first_seq")? {
                    self.upgrade_watermarks_v3()?;
                }
                let (version, create): (Vec<_>, Vec<_>) = statements(crate::schema::MYSQL)
                    .into_iter()
                    .partition(|s| s.starts_with("INSERT INTO schema_version"));
                for statement in create.iter().chain(&after).chain(&version) {
                    self.run_schema_statement(statement, "the schema")?;
                }
            }
            Some(3) => {
                tracing::warn!(server = %self.server, "upgrading the central schema from version 3 to 4 in place (metric family tables)");
                self.set_applied_by(appliance)?;
                // schema/mysql-v4.sql widens alert_events.rule; the new tables and views are
                // mysql.sql's.
                for statement in statements(crate::schema::MYSQL_V3_TO_V4) {
                    self.run_schema_statement(&statement, "schema/mysql-v4.sql")?;
                }
                for statement in statements(crate::schema::MYSQL) {
                    self.run_schema_statement(&statement, "schema/mysql.sql")?;
                }
            }
            Some(2) => {
                tracing::warn!(server = %self.server, "upgrading the central schema from version 2 to 3 in place (prune horizons)");
                self.set_applied_by(appliance)?;
                self.upgrade_watermarks_v3()?;
                for statement in statements(crate::schema::MYSQL) {
                    self.run_schema_statement(&statement, "schema/mysql.sql")?;
                }
            }
            _ => {
                self.set_applied_by(appliance)?;
                for statement in statements(crate::schema::MYSQL) {
                    self.run_schema_statement(&statement, "schema/mysql.sql")?;
                }
            }
        }
        tracing::info!(server = %self.server, version = SCHEMA_VERSION, "applied the central schema");
        Ok(())
    }

    /// Version 3's columns of `watermarks` (`schema/mysql-v3.sql`), unless already there: a
    /// small table (one row per host and buffer), so the ALTER is quick even where the samples
    /// are huge.
    fn upgrade_watermarks_v3(&mut self) -> Result<(), Error> {
        if !self.has_column("watermarks", "pruned_through_seq")? {
            for alter in statements(crate::schema::MYSQL_V2_TO_V3) {
                self.run_schema_statement(&alter, "schema/mysql-v3.sql")?;
            }
        }
        Ok(())
    }

    fn set_applied_by(&mut self, appliance: &str) -> Result<(), Error> {
        let server = self.server.clone();
        let mut set = String::from("SET @edgemon_appliance = ");
        sql::push_str(&mut set, appliance);
        self.conn.query_drop(set).map_err(|e| classify(&server, e))
    }

    fn run_schema_statement(&mut self, statement: &str, file: &str) -> Result<(), Error> {
        self.conn.query_drop(statement).map_err(|e| Error::Schema {
            server: self.server.clone(),
            message: format!(
                "applying {file} failed: {e} (statement: {})",
                first_line(statement)
            ),
        })
    }

    fn has_column(&mut self, table: &str, column: &str) -> Result<bool, Error> {
        let server = self.server.clone();
        let mut query = String::from(
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ",
        );
        sql::push_str(&mut query, table);
        query.push_str(" AND column_name = ");
        sql::push_str(&mut query, column);
        let n: Option<i64> = self
            .conn
            .query_first(query)
            .map_err(|e| classify(&server, e))?;
        Ok(n.unwrap_or(0) > 0)
    }

    fn schema_version(&mut self) -> Result<Option<u32>, Error> {
        let server = self.server.clone();
        let exists: Option<i64> = self
            .conn
            .query_first(
                "SELECT COUNT(*) FROM information_schema.tables
                 WHERE table_schema = DATABASE() AND table_name = 'schema_version'",
            )
            .map_err(|e| classify(&server, e))?;
        if exists.unwrap_or(0) == 0 {
            return Ok(None);
        }
        let version: Option<Option<u32>> = self
            .conn
            .query_first("SELECT MAX(version) FROM schema_version")
            .map_err(|e| classify(&server, e))?;
        Ok(version.flatten())
    }
}

/// The statements of a schema file: `--` comment lines removed, split at `;` ending a line.
fn statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        if line.trim_start().starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            let statement = current.trim().trim_end_matches(';').trim().to_string();
            if !statement.is_empty() {
                out.push(statement);
            }
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

fn first_line(statement: &str) -> &str {
    statement.lines().next().unwrap_or(statement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_splits_into_its_statements() {
        let all = statements(crate::schema::MYSQL);
        let creates = all
            .iter()
            .filter(|s| s.starts_with("CREATE TABLE IF NOT EXISTS"))
            .count();
        assert_eq!(creates, TABLES.len() + families::tables().len());
        let v4 = statements(crate::schema::MYSQL_V3_TO_V4);
        assert_eq!(v4.len(), 1, "{v4:?}");
        assert!(v4[0].starts_with("ALTER TABLE alert_events MODIFY rule VARCHAR(300)"));
        for family in crate::report::family::FAMILIES {
            let view = format!("CREATE OR REPLACE VIEW family_{} AS", family.name);
            assert!(all.iter().any(|s| s.starts_with(&view)), "{view}");
        }
        assert!(
            all.iter()
                .any(|s| s.starts_with("CREATE OR REPLACE VIEW sequence_gaps"))
        );
        assert!(
            all.last()
                .is_some_and(|s| s.starts_with("INSERT INTO schema_version"))
        );
        assert!(all.iter().all(|s| !s.ends_with(';') && !s.contains("\n--")));
    }
}
