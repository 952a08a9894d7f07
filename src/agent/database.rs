//! One database server as the agent sees it: where it is, how to authenticate, and the engine-specific
//! commands (from `postgres.rs` / `mysql.rs`) wrapped with the password in the child's environment.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::cli::{DatabaseArgs, Engine, PgFormat, PgScope};
use super::error::{classify_database, first_error_line, AgentError, DbContext};
use super::process::{run_capture, Finished, Redactor};
use super::signals::StopSignal;
use super::{mysql, postgres};

/// Between two attempts to reach a server that is still starting.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// What PostgreSQL says while it cannot take connections yet (start-up, crash recovery) or when the
/// connection was cut during its start: worth another attempt, unlike any other answer.
fn still_starting(detail: &str) -> bool {
    [
        "is starting up",
        "not yet accepting connections",
        "in recovery mode",
        "server closed the connection unexpectedly",
    ]
    .iter()
    .any(|needle| detail.contains(needle))
}

/// restic's secrets, kept away from database clients (they do not need them).
const RESTIC_SECRETS: [&str; 3] = [
    "RESTIC_PASSWORD",
    "RESTIC_PASSWORD_FILE",
    "RESTIC_PASSWORD_COMMAND",
];

pub struct Database {
    pub engine: Engine,
    host: String,
    port: u16,
    user: String,
    pub database: String,
    password: Option<String>,
    bin_dir: Option<PathBuf>,
    pub context: DbContext,
    pub redactor: Redactor,
}

/// A query that ran but failed (SQL error), as opposed to not reaching the server at all.
pub enum QueryError {
    Sql(String),
    Fatal(AgentError),
}

impl Database {
    /// `database_required`: false only for PostgreSQL globals/cluster dumps, which span databases.
    pub fn from_args(
        engine: Engine,
        args: &DatabaseArgs,
        database_required: bool,
        redactor: &mut Redactor,
    ) -> Result<Database, AgentError> {
        let host = args.host.clone().filter(|h| !h.is_empty()).ok_or_else(|| {
            AgentError::InvalidArguments("no database host: set --host or LIFEBOAT_DB_HOST".into())
        })?;
        let user = args.user.clone().filter(|u| !u.is_empty()).ok_or_else(|| {
            AgentError::InvalidArguments("no database user: set --user or LIFEBOAT_DB_USER".into())
        })?;
        let database = args.database.clone().unwrap_or_default();
        if database_required && database.is_empty() {
            return Err(AgentError::InvalidArguments(
                "no database name: set --database or LIFEBOAT_DB_NAME".into(),
            ));
        }
        if database.contains('\0') || database.len() > 64 {
            return Err(AgentError::InvalidArguments(format!(
                "database name {database:?} is not valid"
            )));
        }
        let port = args.port.unwrap_or(match engine {
            Engine::Postgres => postgres::DEFAULT_PORT,
            Engine::Mysql => mysql::DEFAULT_PORT,
        });
        let password = read_password(engine, args.password_file.as_deref())?;
        if let Some(password) = &password {
            redactor.add(password);
        }
        let context = DbContext {
            endpoint: format!("{host}:{port}"),
            user: user.clone(),
            database: database.clone(),
            password_ends_with_whitespace: password
                .as_deref()
                .is_some_and(|p| p.ends_with(char::is_whitespace)),
        };
        Ok(Database {
            engine,
            host,
            port,
            user,
            database,
            password,
            bin_dir: args.bin_dir.clone(),
            context,
            redactor: redactor.clone(),
        })
    }

    /// The same server, another database (a restore target differs from nothing else).
    fn program(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }

    /// A client command with the password in its environment and nothing of restic's.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.program(program));
        for name in RESTIC_SECRETS {
            command.env_remove(name);
        }
        command.env_remove("LIFEBOAT_DB_PASSWORD");
        match self.engine {
            Engine::Postgres => {
                // A dead host should fail in seconds, not after the kernel's TCP timeout.
                command
                    .env("PGCONNECT_TIMEOUT", "10")
                    .env("PGAPPNAME", "lifeboat");
                if let Some(password) = &self.password {
                    command.env("PGPASSWORD", password);
                }
            }
            Engine::Mysql => {
                if let Some(password) = &self.password {
                    command.env("MYSQL_PWD", password);
                }
            }
        }
        command
    }

    fn pg(&self) -> postgres::Connection<'_> {
        postgres::Connection {
            host: &self.host,
            port: self.port,
            user: &self.user,
        }
    }

    fn my(&self) -> mysql::Connection<'_> {
        mysql::Connection {
            host: &self.host,
            port: self.port,
            user: &self.user,
        }
    }

    /// The dump command, the name of the file inside the snapshot, and the format tag.
    pub fn dump_command(
        &self,
        scope: PgScope,
        format: PgFormat,
        compress: u8,
    ) -> (String, Command, String, &'static str) {
        match self.engine {
            Engine::Postgres => {
                let (program, args) =
                    postgres::dump_args(&self.pg(), &self.database, scope, format, compress);
                let mut command = self.command(program);
                command.args(args);
                let (filename, format_tag) = match (scope, format) {
                    (PgScope::Database, PgFormat::Custom) => (format!("{}.pgdump", self.database), "custom"),
                    (PgScope::Database, PgFormat::Plain) => (format!("{}.sql", self.database), "plain"),
                    (PgScope::Globals, _) => ("globals.sql".to_string(), "dumpall"),
                    (PgScope::Cluster, _) => ("cluster.sql".to_string(), "dumpall"),
                };
                (program.to_string(), command, filename, format_tag)
            }
            Engine::Mysql => {
                let program = self.mysql_program("mariadb-dump", "mysqldump");
                let mut command = self.command(&program);
                command.args(mysql::dump_args(&self.my(), &self.database));
                (program, command, format!("{}.sql", self.database), "sql")
            }
        }
    }

    /// The loader that reads a dump of `format` on stdin into this database.
    pub fn load_command(&self, format: &str, no_owner: bool) -> (String, Command) {
        match self.engine {
            Engine::Postgres => {
                let (program, args) = postgres::load_args(&self.pg(), &self.database, format, no_owner);
                let mut command = self.command(program);
                command.args(args);
                (program.to_string(), command)
            }
            Engine::Mysql => {
                let program = self.mysql_program("mariadb", "mysql");
                let mut command = self.command(&program);
                command.args(mysql::load_args(&self.my(), &self.database));
                (program, command)
            }
        }
    }

    /// pg_restore turning a custom-format dump on stdin into a script on stdout.
    pub fn script_command(&self, no_owner: bool) -> Command {
        let mut command = self.command("pg_restore");
        command.args(postgres::script_args(no_owner));
        command
    }

    /// psql loading pg_restore's script into this database.
    pub fn script_load_command(&self) -> Command {
        let mut command = self.command("psql");
        command.args(postgres::script_load_args(&self.pg(), &self.database));
        command
    }

    /// MariaDB renamed its clients; MySQL images only have the old names.
    fn mysql_program(&self, new: &str, old: &str) -> String {
        let exists = |name: &str| match &self.bin_dir {
            Some(dir) => dir.join(name).is_file(),
            None => on_path(name),
        };
        if exists(new) || !exists(old) {
            new.to_string()
        } else {
            old.to_string()
        }
    }

    /// Runs one statement and returns its trimmed output. `database: None` means the maintenance
    /// database (PostgreSQL) or no default database (MySQL). Verification passes `read_only`.
    pub async fn query(
        &self,
        database: Option<&str>,
        sql: &str,
        read_only: bool,
    ) -> Result<String, QueryError> {
        let (program, command) = match self.engine {
            Engine::Postgres => {
                let mut command = self.command("psql");
                let database = database.unwrap_or(postgres::MAINTENANCE_DATABASE);
                command.args(postgres::query_args(&self.pg(), database, sql));
                if read_only {
                    command.env("PGOPTIONS", "-c default_transaction_read_only=on");
                }
                ("psql".to_string(), command)
            }
            Engine::Mysql => {
                let program = self.mysql_program("mariadb", "mysql");
                let mut command = self.command(&program);
                let sql = if read_only {
                    mysql::read_only(sql)
                } else {
                    sql.to_string()
                };
                command.args(mysql::query_args(&self.my(), database, &sql));
                (program, command)
            }
        };
        let (finished, stdout) = run_capture(&program, command, None, &self.redactor)
            .await
            .map_err(QueryError::Fatal)?;
        if finished.status.success() {
            return Ok(stdout.trim().to_string());
        }
        Err(self.query_failure(&finished, database))
    }

    fn query_failure(&self, finished: &Finished, database: Option<&str>) -> QueryError {
        let mut context = self.context.clone();
        if let Some(database) = database {
            context.database = database.to_string();
        }
        match classify_database(&finished.stderr, &context) {
            Some(fatal) => QueryError::Fatal(fatal),
            None => QueryError::Sql(first_error_line(&finished.stderr)),
        }
    }

    /// Waits until the server answers a query, for at most `limit` (one more attempt is made at the
    /// end): a server that has just started can accept TCP before it answers (MariaDB listens while its
    /// init file still runs). Only "cannot reach" and "starting up" are retried; a wrong password or any
    /// other answer ends the wait at once, and so does a stop signal.
    pub async fn wait_until_reachable(&self, limit: Duration, stop: &StopSignal) -> Result<(), AgentError> {
        let deadline = Instant::now() + limit;
        loop {
            let attempt = tokio::select! {
                answer = self.query(None, "select 1", false) => answer,
                signal = stop.requested() => return Err(AgentError::Interrupted { signal }),
            };
            let why = match attempt {
                Ok(_) => return Ok(()),
                Err(QueryError::Sql(detail)) if still_starting(&detail) => detail,
                // Any other answer, even "no such database", means the server is up.
                Err(QueryError::Sql(_) | QueryError::Fatal(AgentError::DatabaseMissing { .. })) => {
                    return Ok(())
                }
                Err(QueryError::Fatal(AgentError::DatabaseUnreachable { detail, .. })) => detail,
                Err(QueryError::Fatal(error)) => return Err(error),
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(AgentError::DatabaseUnreachable {
                    endpoint: self.context.endpoint.clone(),
                    detail: why,
                });
            }
            eprintln!("lifeboat: {why}; retrying for up to {}s", remaining.as_secs());
            tokio::select! {
                () = tokio::time::sleep(RETRY_PAUSE.min(remaining)) => {}
                signal = stop.requested() => return Err(AgentError::Interrupted { signal }),
            }
        }
    }

    /// Makes the restore target exist (and be empty, with `drop`). Without either flag nothing is done,
    /// and a missing database surfaces as the loader's "does not exist".
    pub async fn prepare_target(&self, drop: bool, create: bool) -> Result<(), AgentError> {
        let fatal = |error: QueryError, what: &str| match error {
            QueryError::Fatal(error) => error,
            QueryError::Sql(detail) => AgentError::LoadFailed {
                tool: what.to_string(),
                status: "an SQL error".into(),
                detail,
            },
        };
        match self.engine {
            Engine::Postgres => {
                let statements = if drop {
                    postgres::recreate_statements(&self.database)
                } else if create {
                    let exists = self
                        .query(None, &postgres::database_exists_sql(&self.database), false)
                        .await
                        .map_err(|e| fatal(e, "checking the target database"))?;
                    if exists == "0" {
                        postgres::recreate_statements(&self.database).split_off(1)
                    } else {
                        vec![]
                    }
                } else {
                    vec![]
                };
                for statement in statements {
                    self.query(None, &statement, false)
                        .await
                        .map_err(|e| fatal(e, "preparing the target database"))?;
                }
            }
            Engine::Mysql => {
                let sql = if drop {
                    Some(mysql::recreate_sql(&self.database))
                } else if create {
                    Some(mysql::create_if_missing_sql(&self.database))
                } else {
                    None
                };
                if let Some(sql) = sql {
                    self.query(None, &sql, false)
                        .await
                        .map_err(|e| fatal(e, "preparing the target database"))?;
                }
            }
        }
        Ok(())
    }

    pub fn table_count_sql(&self) -> &'static str {
        match self.engine {
            Engine::Postgres => postgres::table_count_sql(),
            Engine::Mysql => mysql::table_count_sql(),
        }
    }

    pub fn row_count_sql(&self, table: &str) -> String {
        match self.engine {
            Engine::Postgres => format!("SELECT count(*) FROM {}", postgres::quote_table(table)),
            Engine::Mysql => format!("SELECT count(*) FROM {}", mysql::quote_table(table)),
        }
    }

    /// Classifies a dump or load tool's failure.
    pub fn failure_cause(&self, stderr: &str) -> Option<AgentError> {
        classify_database(stderr, &self.context)
    }
}

/// The password from a file (a mounted Secret), else LIFEBOAT_DB_PASSWORD, else the engine's variable.
/// A trailing newline in the file is dropped: `echo secret > file` is how people create them.
fn read_password(engine: Engine, file: Option<&Path>) -> Result<Option<String>, AgentError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| AgentError::ReadFile {
            what: "the database password",
            path: path.display().to_string(),
            source,
        })?;
        return Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()));
    }
    let engine_var = match engine {
        Engine::Postgres => "PGPASSWORD",
        Engine::Mysql => "MYSQL_PWD",
    };
    Ok(std::env::var("LIFEBOAT_DB_PASSWORD")
        .ok()
        .or_else(|| std::env::var(engine_var).ok()))
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false)
}
