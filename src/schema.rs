//! The DDL of both databases, as shipped in `schema/`.

/// The central MySQL schema (`schema/mysql.sql`).
pub const MYSQL: &str = include_str!("../schema/mysql.sql");
/// The local SQLite buffer schema (`schema/sqlite.sql`).
pub const SQLITE: &str = include_str!("../schema/sqlite.sql");
