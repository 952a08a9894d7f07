//! MariaDB and MySQL: the argument lists of mariadb-dump/mysqldump and mariadb/mysql.
//!
//! The password travels in MYSQL_PWD, set by `database.rs` on the child only (both clients read it).

pub const DEFAULT_PORT: u16 = 3306;

pub struct Connection<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
}

fn connection_args(conn: &Connection<'_>) -> Vec<String> {
    // --protocol=TCP: with host "localhost" the clients would silently use a Unix socket instead.
    // --no-defaults must come first: a my.cnf in the image must not change what is dumped or where.
    vec![
        "--no-defaults".into(),
        format!("--host={}", conn.host),
        format!("--port={}", conn.port),
        format!("--user={}", conn.user),
        "--protocol=TCP".into(),
        "--default-character-set=utf8mb4".into(),
    ]
}

/// The interactive client accepts a connect timeout (the dump tool has no such option), so a dead host
/// fails a restore or a verification in seconds.
fn client_args(conn: &Connection<'_>) -> Vec<String> {
    let mut args = connection_args(conn);
    args.push("--connect-timeout=10".into());
    args
}

/// mariadb-dump of one database. --single-transaction gives a consistent InnoDB snapshot without locking
/// writers; --hex-blob keeps binary columns intact through any client charset; routines and triggers are
/// part of the schema a restore needs. No --databases: the dump then has no `USE`/`CREATE DATABASE`, so
/// it restores into a database of any name (a drill's scratch database).
pub fn dump_args(conn: &Connection<'_>, database: &str) -> Vec<String> {
    let mut args = connection_args(conn);
    args.extend([
        "--single-transaction".into(),
        "--routines".into(),
        "--triggers".into(),
        "--hex-blob".into(),
        "--no-tablespaces".into(),
        database.into(),
    ]);
    args
}

/// The client loading a dump: it stops at the first error unless told --force, which we never do.
pub fn load_args(conn: &Connection<'_>, database: &str) -> Vec<String> {
    let mut args = client_args(conn);
    args.extend(["--batch".into(), database.into()]);
    args
}

/// One statement, value only (no column names, tab-separated).
pub fn query_args(conn: &Connection<'_>, database: Option<&str>, sql: &str) -> Vec<String> {
    let mut args = client_args(conn);
    args.extend([
        "--batch".into(),
        "--skip-column-names".into(),
        format!("--execute={sql}"),
    ]);
    if let Some(database) = database {
        args.push(database.into());
    }
    args
}

pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

pub fn quote_table(name: &str) -> String {
    name.split('.').map(quote_ident).collect::<Vec<_>>().join(".")
}

pub fn table_count_sql() -> &'static str {
    "SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'"
}

/// Verification must never change the restored data: the session refuses writes.
pub fn read_only(sql: &str) -> String {
    format!("SET SESSION TRANSACTION READ ONLY; {sql}")
}

pub fn recreate_sql(database: &str) -> String {
    format!(
        "DROP DATABASE IF EXISTS {0}; CREATE DATABASE {0}",
        quote_ident(database)
    )
}

pub fn create_if_missing_sql(database: &str) -> String {
    format!("CREATE DATABASE IF NOT EXISTS {}", quote_ident(database))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumps_are_consistent_and_portable() {
        let args = dump_args(
            &Connection {
                host: "db",
                port: 3306,
                user: "crm",
            },
            "crm",
        );
        assert_eq!(args[0], "--no-defaults");
        assert!(args.contains(&"--single-transaction".to_string()));
        assert!(!args.iter().any(|a| a == "--databases"));
        assert_eq!(args.last().map(String::as_str), Some("crm"));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_table("crm.us`ers"), "`crm`.`us``ers`");
        assert_eq!(
            recreate_sql("x"),
            "DROP DATABASE IF EXISTS `x`; CREATE DATABASE `x`"
        );
    }
}
