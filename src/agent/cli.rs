//! The agent's command line, as the controllers write it into Job specs.
//!
//! Non-secret settings are flags, each also readable from an environment variable so a Job can set them
//! either way. Secrets are never flags: restic reads RESTIC_PASSWORD / RESTIC_PASSWORD_FILE itself, and
//! the database password comes from a file (a mounted Secret key) or an environment variable.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// What is backed up or restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Postgres,
    /// MariaDB or MySQL.
    Mysql,
    /// A directory, backed up with restic's own file backup.
    Files,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Mysql => "mysql",
            Kind::Files => "files",
        }
    }
}

/// A database engine (the kinds that have a server to dump from, restore into and verify).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    Postgres,
    Mysql,
}

/// PostgreSQL dump format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PgFormat {
    /// `pg_dump -Fc`: restored with `pg_restore`, selective restores possible.
    Custom,
    /// Plain SQL: restored with `psql -v ON_ERROR_STOP=1`.
    Plain,
}

/// What a PostgreSQL backup covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PgScope {
    /// One database with `pg_dump`.
    Database,
    /// Roles and tablespaces only (`pg_dumpall --globals-only`), to pair with per-database dumps.
    Globals,
    /// Every database and the globals (`pg_dumpall`), as plain SQL.
    Cluster,
}

#[derive(Debug, Clone, Args)]
pub struct RepositoryArgs {
    /// restic repository (a path, `rest:…`, `s3:…`). Passed to restic through its environment, so
    /// credentials in a URL never reach a process list.
    #[arg(long, env = "RESTIC_REPOSITORY", hide_env_values = true)]
    pub repository: String,

    /// The restic program (>= 0.17: backups use --stdin-from-command; tested with 0.19, which no longer
    /// hangs when an upload fails before the dump was read to its end).
    #[arg(long, env = "LIFEBOAT_RESTIC", default_value = "restic")]
    pub restic: PathBuf,

    /// Wait this long for a lock held by another job before failing (restic --retry-lock), e.g. `5m`.
    #[arg(long, env = "LIFEBOAT_RETRY_LOCK")]
    pub retry_lock: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Where the JSON result goes: the container's termination message file. The default is written only
    /// when it exists (that is, inside a Pod); an explicit path is created.
    #[arg(long, env = "LIFEBOAT_RESULT_PATH", default_value = DEFAULT_RESULT_PATH)]
    pub result_path: PathBuf,
}

pub const DEFAULT_RESULT_PATH: &str = "/dev/termination-log";

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database host (a Service name in a cluster).
    #[arg(long, env = "LIFEBOAT_DB_HOST")]
    pub host: Option<String>,

    /// Database port; the engine's default when not given.
    #[arg(long, env = "LIFEBOAT_DB_PORT")]
    pub port: Option<u16>,

    /// Database name.
    #[arg(long, env = "LIFEBOAT_DB_NAME")]
    pub database: Option<String>,

    /// Database user.
    #[arg(long, env = "LIFEBOAT_DB_USER")]
    pub user: Option<String>,

    /// File holding the database password (a mounted Secret key). Without it the password is taken from
    /// LIFEBOAT_DB_PASSWORD, then the engine's own variable (PGPASSWORD or MYSQL_PWD).
    #[arg(long, env = "LIFEBOAT_DB_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,

    /// Directory holding the database client programs, when they are not on PATH.
    #[arg(long, env = "LIFEBOAT_DB_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// What to back up.
    #[arg(long, value_enum, env = "LIFEBOAT_SOURCE")]
    pub source: Kind,

    #[command(flatten)]
    pub db: DatabaseArgs,

    /// PostgreSQL: dump format. Custom by default: it restores selectively and, uncompressed, streams as
    /// fast as plain SQL.
    #[arg(long, value_enum, default_value = "custom", env = "LIFEBOAT_PG_FORMAT")]
    pub pg_format: PgFormat,

    /// PostgreSQL: pg_dump's own compression level for the custom format. 0 by default because restic
    /// compresses and deduplicates better and pg_dump's single-threaded gzip is 3x slower (DESIGN.md).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=9))]
    pub pg_compress: u8,

    /// PostgreSQL: one database, the globals, or the whole cluster.
    #[arg(long, value_enum, default_value = "database", env = "LIFEBOAT_PG_SCOPE")]
    pub pg_scope: PgScope,

    /// Files: the directory to back up.
    #[arg(long, env = "LIFEBOAT_PATH")]
    pub path: Option<PathBuf>,

    /// Files: patterns to exclude (restic --exclude), repeatable.
    #[arg(long = "exclude")]
    pub excludes: Vec<String>,

    /// Snapshot tags as key=value (policy, namespace, …), repeatable. The agent adds its own
    /// `lifeboat-*` tags.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,

    /// Create the repository when it does not exist yet (otherwise a missing repository is an error).
    #[arg(long, env = "LIFEBOAT_INIT_REPOSITORY")]
    pub init_repository: bool,

    /// Host name recorded in snapshots. Fixed rather than the Pod's name so that snapshots of one source
    /// group together for retention, and file backups find their parent snapshot.
    #[arg(long, default_value = "lifeboat", env = "LIFEBOAT_SNAPSHOT_HOST")]
    pub snapshot_host: String,

    /// Name of the dump inside the snapshot (default `<database>.pgdump`, `<database>.sql`, …).
    #[arg(long)]
    pub stdin_filename: Option<String>,

    #[command(flatten)]
    pub repo: RepositoryArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// What to restore into.
    #[arg(long, value_enum, env = "LIFEBOAT_TARGET")]
    pub target: Kind,

    #[command(flatten)]
    pub db: DatabaseArgs,

    /// Snapshot id (full or short), or `latest`: the newest complete snapshot carrying every --tag.
    #[arg(long, default_value = "latest", env = "LIFEBOAT_SNAPSHOT")]
    pub snapshot: String,

    /// With --snapshot latest: only snapshots carrying this tag (key=value), repeatable.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,

    /// Drop the target database and create it empty before restoring.
    #[arg(long, env = "LIFEBOAT_DROP_DATABASE")]
    pub drop_database: bool,

    /// Create the target database when it does not exist.
    #[arg(long, env = "LIFEBOAT_CREATE_DATABASE")]
    pub create_database: bool,

    /// PostgreSQL: do not restore ownership and privileges (a target whose roles differ, e.g. a drill).
    #[arg(long, env = "LIFEBOAT_NO_OWNER")]
    pub no_owner: bool,

    /// Files: the directory to restore into.
    #[arg(long, env = "LIFEBOAT_PATH")]
    pub path: Option<PathBuf>,

    /// Restore a snapshot that the agent did not mark complete (no recorded size/sha256).
    #[arg(long)]
    pub allow_unverified: bool,

    /// sha256 of the dump as the backup measured it (the Backup's status): the restore fails if the
    /// stream differs. Snapshots of older agents also carry it as a tag, which is checked as well.
    #[arg(long, value_name = "HEX", env = "LIFEBOAT_EXPECT_SHA256")]
    pub expect_sha256: Option<String>,

    /// Seconds to keep retrying while the target database cannot be reached yet (a server that was just
    /// started, like a Restore's scratch server). 0, the default: an unreachable target fails at once.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "SECONDS",
        env = "LIFEBOAT_WAIT_FOR_DATABASE"
    )]
    pub wait_for_database: u64,

    #[command(flatten)]
    pub checks: ChecksArgs,

    #[command(flatten)]
    pub repo: RepositoryArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// `lifeboat agent stream`: not for people. `restic backup --stdin-from-command` runs it around the dump
/// tool, so the agent can measure the dump without standing between the two (see `stream.rs`).
#[derive(Debug, Clone, Args)]
pub struct StreamArgs {
    /// Where to write the report (size, sha256, the tool's exit status and stderr tail) as JSON.
    #[arg(long)]
    pub report: PathBuf,

    /// Environment variables the tool must not see (restic's secrets), repeatable.
    #[arg(long = "unset", value_name = "NAME")]
    pub unset: Vec<String>,

    /// The dump tool and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Clone, Args)]
pub struct ChecksArgs {
    /// A Restore's `verify` spec as JSON or YAML: {minTables, tables: [{name, minRows}], queries: [{name, sql}]}.
    #[arg(long, env = "LIFEBOAT_CHECKS")]
    pub checks: Option<String>,

    /// The same, read from a file (e.g. a mounted ConfigMap).
    #[arg(long, env = "LIFEBOAT_CHECKS_FILE")]
    pub checks_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[arg(long, value_enum, env = "LIFEBOAT_TARGET")]
    pub target: Engine,

    #[command(flatten)]
    pub db: DatabaseArgs,

    #[command(flatten)]
    pub checks: ChecksArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    #[arg(long)]
    pub keep_last: Option<u32>,
    #[arg(long)]
    pub keep_hourly: Option<u32>,
    #[arg(long)]
    pub keep_daily: Option<u32>,
    #[arg(long)]
    pub keep_weekly: Option<u32>,
    #[arg(long)]
    pub keep_monthly: Option<u32>,
    #[arg(long)]
    pub keep_yearly: Option<u32>,

    /// Only snapshots carrying this tag (key=value), repeatable: one policy's snapshots.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,

    /// Forget only, leave unreferenced data for a later prune.
    #[arg(long)]
    pub no_prune: bool,

    /// A snapshot that something still depends on (a Cutover's rollback point, a user's hold): kept
    /// whatever the keep rules say. Repeatable; a full id or its 8-character prefix.
    #[arg(long = "hold", value_name = "SNAPSHOT")]
    pub held: Vec<String>,

    #[command(flatten)]
    pub repo: RepositoryArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SnapshotsArgs {
    /// Only snapshots carrying this tag (key=value), repeatable: one policy's snapshots.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,

    #[command(flatten)]
    pub repo: RepositoryArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Also read and verify this part of the data (restic --read-data-subset), e.g. `10%` or `1/5`.
    #[arg(long, env = "LIFEBOAT_READ_DATA_SUBSET")]
    pub read_data_subset: Option<String>,

    #[command(flatten)]
    pub repo: RepositoryArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}
