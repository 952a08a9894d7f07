//! PostgreSQL: the argument lists of pg_dump, pg_dumpall, pg_restore and psql.
//!
//! Pure functions from settings to argv, so what the agent runs is unit-tested and reviewable; the
//! password travels in PGPASSWORD, set by `database.rs` on the child only.

use super::cli::{PgFormat, PgScope};

pub const DEFAULT_PORT: u16 = 5432;
/// Where administrative statements run (DROP/CREATE DATABASE cannot run in the database they change).
pub const MAINTENANCE_DATABASE: &str = "postgres";

pub struct Connection<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
}

fn connection_args(conn: &Connection<'_>) -> Vec<String> {
    // --no-password: a missing password must fail at once, not wait for a prompt no one will answer.
    vec![
        "--host".into(),
        conn.host.into(),
        "--port".into(),
        conn.port.to_string(),
        "--username".into(),
        conn.user.into(),
        "--no-password".into(),
    ]
}

/// The dump program and its arguments for one backup.
pub fn dump_args(
    conn: &Connection<'_>,
    database: &str,
    scope: PgScope,
    format: PgFormat,
    compress: u8,
) -> (&'static str, Vec<String>) {
    let mut args = connection_args(conn);
    match scope {
        PgScope::Database => {
            args.extend(["--dbname".into(), database.into()]);
            match format {
                PgFormat::Custom => args.extend(["--format=custom".into(), format!("--compress={compress}")]),
                PgFormat::Plain => args.push("--format=plain".into()),
            }
            ("pg_dump", args)
        }
        PgScope::Globals | PgScope::Cluster => {
            if !database.is_empty() {
                args.extend(["--database".into(), database.into()]);
            }
            if scope == PgScope::Globals {
                args.push("--globals-only".into());
            }
            ("pg_dumpall", args)
        }
    }
}

/// The loader for a snapshot's format. Dumps of one database load in a single transaction, so a failed
/// restore leaves the target as it was; pg_dumpall output creates databases, which no transaction allows.
pub fn load_args(
    conn: &Connection<'_>,
    database: &str,
    format: &str,
    no_owner: bool,
) -> (&'static str, Vec<String>) {
    let mut args = connection_args(conn);
    match format {
        "custom" => {
            args.extend([
                "--dbname".into(),
                database.into(),
                "--exit-on-error".into(),
                "--single-transaction".into(),
            ]);
            if no_owner {
                args.extend(["--no-owner".into(), "--no-privileges".into()]);
            }
            ("pg_restore", args)
        }
        "dumpall" => {
            args.extend([
                "--dbname".into(),
                MAINTENANCE_DATABASE.into(),
                "--no-psqlrc".into(),
                "--quiet".into(),
            ]);
            args.extend(["--set".into(), "ON_ERROR_STOP=1".into()]);
            ("psql", args)
        }
        _ => {
            let mut args = psql_args(conn, database);
            args.push("--single-transaction".into());
            ("psql", args)
        }
    }
}

/// pg_restore writing a custom-format dump as one transaction's script on stdout (see `loader.rs`).
pub fn script_args(no_owner: bool) -> Vec<String> {
    let mut args = vec!["--file=-".into(), "--single-transaction".into()];
    if no_owner {
        args.extend(["--no-owner".into(), "--no-privileges".into()]);
    }
    args
}

/// psql loading such a script: it stops at the first error, leaving the transaction uncommitted.
pub fn script_load_args(conn: &Connection<'_>, database: &str) -> Vec<String> {
    psql_args(conn, database)
}

/// psql running one statement with unaligned, tuples-only output: the value and nothing else.
pub fn query_args(conn: &Connection<'_>, database: &str, sql: &str) -> Vec<String> {
    let mut args = psql_args(conn, database);
    args.extend([
        "--no-align".into(),
        "--tuples-only".into(),
        "--command".into(),
        sql.into(),
    ]);
    args
}

/// psql on `database`, no user settings, quiet, stopping at the first error.
fn psql_args(conn: &Connection<'_>, database: &str) -> Vec<String> {
    let mut args = connection_args(conn);
    args.extend([
        "--dbname".into(),
        database.into(),
        "--no-psqlrc".into(),
        "--quiet".into(),
        "--set".into(),
        "ON_ERROR_STOP=1".into(),
    ]);
    args
}

/// `"name"` with embedded quotes doubled: the only safe way to put a user's name into SQL text.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'value'` with embedded quotes doubled (standard_conforming_strings is on since 9.1).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `schema.table` → `"schema"."table"`; a bare name stays unqualified (found through search_path).
pub fn quote_table(name: &str) -> String {
    name.split('.').map(quote_ident).collect::<Vec<_>>().join(".")
}

pub fn table_count_sql() -> &'static str {
    "SELECT count(*) FROM information_schema.tables \
     WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
}

pub fn database_exists_sql(database: &str) -> String {
    format!(
        "SELECT count(*) FROM pg_database WHERE datname = {}",
        quote_literal(database)
    )
}

/// Each statement is its own `--command`: psql would otherwise send them as one implicit transaction,
/// and DROP DATABASE refuses to run inside one. FORCE ends sessions still connected to the old database.
pub fn recreate_statements(database: &str) -> Vec<String> {
    vec![
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(database)),
        format!("CREATE DATABASE {}", quote_ident(database)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection<'static> {
        Connection {
            host: "db",
            port: 5432,
            user: "app",
        }
    }

    #[test]
    fn the_default_dump_is_uncompressed_custom_format() {
        let (program, args) = dump_args(&conn(), "hotel", PgScope::Database, PgFormat::Custom, 0);
        assert_eq!(program, "pg_dump");
        assert!(args.contains(&"--format=custom".to_string()));
        assert!(args.contains(&"--compress=0".to_string()));
        assert!(args.contains(&"--no-password".to_string()));
    }

    #[test]
    fn globals_come_from_pg_dumpall() {
        let (program, args) = dump_args(&conn(), "", PgScope::Globals, PgFormat::Custom, 0);
        assert_eq!(program, "pg_dumpall");
        assert!(args.contains(&"--globals-only".to_string()));
    }

    #[test]
    fn a_custom_dump_restores_all_or_nothing() {
        let (program, args) = load_args(&conn(), "hotel_restored", "custom", true);
        assert_eq!(program, "pg_restore");
        for flag in ["--exit-on-error", "--single-transaction", "--no-owner"] {
            assert!(args.contains(&flag.to_string()), "{flag}");
        }
    }

    #[test]
    fn names_are_quoted_not_interpolated() {
        assert_eq!(quote_table("public.order\"s"), "\"public\".\"order\"\"s\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(recreate_statements("a\"b")[1], "CREATE DATABASE \"a\"\"b\"");
    }
}
