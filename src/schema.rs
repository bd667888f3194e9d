//! The DDL of both databases, as shipped in `schema/`.

/// The central MySQL schema (`schema/mysql.sql`).
pub const MYSQL: &str = include_str!("../schema/mysql.sql");
/// The local SQLite buffer schema: its migrations in order (`schema/sqlite.sql`,
/// `schema/sqlite-2.sql`, `schema/sqlite-3.sql`, `schema/sqlite-4.sql`, `schema/sqlite-5.sql`, `schema/sqlite-6.sql`, `schema/sqlite-7.sql`).
pub const SQLITE: &str = concat!(
    include_str!("../schema/sqlite.sql"),
    "\n",
    include_str!("../schema/sqlite-2.sql"),
    "\n",
    include_str!("../schema/sqlite-3.sql"),
    "\n",
    include_str!("../schema/sqlite-4.sql"),
    "\n",
    include_str!("../schema/sqlite-5.sql"),
    "\n",
    include_str!("../schema/sqlite-6.sql"),
    "\n",
    include_str!("../schema/sqlite-7.sql")
);
/// The in-place upgrade of a central database from schema version 1 to 2 (`schema/mysql-v2.sql`).
pub const MYSQL_V1_TO_V2: &str = include_str!("../schema/mysql-v2.sql");
/// The in-place upgrade of a central database from schema version 2 to 3 (`schema/mysql-v3.sql`):
/// the prune horizons of `edgemon central prune`.
pub const MYSQL_V2_TO_V3: &str = include_str!("../schema/mysql-v3.sql");
/// The in-place upgrade of a central database from schema version 3 to 4 (`schema/mysql-v4.sql`):
/// `alert_events.rule` widened; the metric family tables are created by `schema/mysql.sql`.
pub const MYSQL_V3_TO_V4: &str = include_str!("../schema/mysql-v4.sql");
