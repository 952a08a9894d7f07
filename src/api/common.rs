//! Types shared by several kinds: references, database connections, Job settings, verification checks,
//! cron schedules and the condition list.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EnvFromSource, EnvVar, LocalObjectReference, PodSecurityContext, ResourceRequirements, SecurityContext,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// A key of a Secret in the object's namespace. Secrets are only ever referenced, never copied into
/// specs, status, Events or logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A reference to another object of a known kind in the same namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectRef {
    /// Name of the object, in this object's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A cron schedule: five fields (minute hour day-of-month month day-of-week) or a nickname such as
/// `@daily`. Six-field (seconds) schedules are refused rather than silently misread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CronSchedule(pub String);

impl JsonSchema for CronSchedule {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CronSchedule".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "Cron schedule with five fields (minute hour day-of-month month day-of-week), e.g. \"0 2 * * *\", or @hourly/@daily/@weekly/@monthly/@yearly.",
            "pattern": crate::schedule::CRON_PATTERN,
            "maxLength": 128
        })
    }
}

/// An IANA time zone name (`Europe/Prague`, `UTC`).
pub type TimeZoneName = String;

/// Connection to a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresConnection {
    /// Host name or Service DNS name, e.g. `db.hotel.svc`.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// TCP port of the server. Default 5432.
    #[serde(default = "default_postgres_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Database name.
    #[schemars(length(min = 1, max = 63))]
    pub database: String,
    /// The database user to connect as.
    #[schemars(length(min = 1, max = 63))]
    pub user: String,
    /// The password, from a Secret (passed to the agent as PGPASSWORD, never on a command line).
    pub password_secret_ref: SecretKeyRef,
    /// libpq sslmode (disable, allow, prefer, require, verify-ca, verify-full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]))]
    pub ssl_mode: Option<String>,
}

fn default_postgres_port() -> i32 {
    5432
}

/// Connection to a MariaDB or MySQL database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MysqlConnection {
    /// Host name or Service DNS name, e.g. `mariadb.hotel.svc`.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// TCP port of the server. Default 3306.
    #[serde(default = "default_mysql_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Database name.
    #[schemars(length(min = 1, max = 64))]
    pub database: String,
    /// The database user to connect as.
    #[schemars(length(min = 1, max = 80))]
    pub user: String,
    /// The password, from a Secret (passed to the agent as MYSQL_PWD, never on a command line).
    pub password_secret_ref: SecretKeyRef,
}

fn default_mysql_port() -> i32 {
    3306
}

/// A directory on a PersistentVolumeClaim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilesLocation {
    /// The claim, mounted read-only for backups and read-write for restores.
    #[schemars(length(min = 1, max = 253))]
    pub persistent_volume_claim: String,
    /// Directory inside the volume.
    #[serde(default = "default_files_path")]
    #[schemars(regex(pattern = r"^/"))]
    pub path: String,
}

fn default_files_path() -> String {
    "/".to_owned()
}

/// How the Jobs that Lifeboat creates run: image, resources, placement and security.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobTemplate {
    /// Image holding the `lifeboat` binary and the database and restic tools. Defaults to the
    /// operator's own agent image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// When the kubelet pulls `image`. Default: Kubernetes' own (Always for a `:latest` or untagged
    /// image, IfNotPresent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Always", "IfNotPresent", "Never"]))]
    pub image_pull_policy: Option<String>,
    /// CPU and memory requests and limits of the agent container. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node labels the Job's Pod must match, e.g. to run next to the data.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the Job's Pod tolerates, e.g. those of dedicated backup nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// The Pod's security context. Default: `runAsNonRoot` with the runtime's seccomp profile (the
    /// agent image runs as uid 65532). A file backup of a volume owned by another user needs that
    /// user here (`runAsUser`, or `supplementalGroups` / `fsGroup` for group-readable files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// The agent container's security context. Default: what Pod Security `restricted` requires plus
    /// a read-only root filesystem (no privilege escalation, every capability dropped, non-root,
    /// RuntimeDefault seccomp); temporary files and restic's cache go to an emptyDir at /tmp/lifeboat. Given,
    /// it replaces the default as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_security_context: Option<SecurityContext>,
    /// Secrets (in the Job's namespace) to pull `image` with. Default: the operator's
    /// `--agent-image-pull-secrets`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// ServiceAccount the Job's Pod runs as. Default: the namespace's `default` (the agent itself
    /// needs no access to the Kubernetes API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Upper bound in seconds for one run; the Job is failed when it passes. Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// Retries of a failed run before the Job fails. Default 1, except 0 for a Restore's restore and
    /// emptiness-check Jobs (a failed load fails the same way again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub backoff_limit: Option<i32>,
}

/// A container run as a Job step of a Cutover (preflight, migration, smoke tests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStep {
    /// The container image to run.
    #[schemars(length(min = 1))]
    pub image: String,
    /// The command (required: Lifeboat never guesses an image's entrypoint).
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// Arguments passed to `command`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables of the container. In a Restore's smoke test they come after Lifeboat's
    /// own (LIFEBOAT_DB_HOST, …), so a variable of the same name here wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// ConfigMaps and Secrets whose keys become environment variables of the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// CPU and memory requests and limits of the container. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// ServiceAccount the step's Pod runs as, e.g. one allowed to read the objects it checks. Default:
    /// the namespace's `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// The step container's security context. Default: no privilege escalation, every capability
    /// dropped, RuntimeDefault seccomp; not runAsNonRoot, since many images run as root. In a namespace
    /// that enforces Pod Security `restricted`, add `runAsNonRoot: true` and a numeric `runAsUser` (the
    /// kubelet cannot check a user given by name). Given, it replaces the default as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Upper bound in seconds for the step's Job; it fails when it passes. Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// Retries of a failed run before the step fails. Default 0 (a migration is not rerun blindly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub backoff_limit: Option<i32>,
    /// Node labels the step's Pod must match (e.g. a node pool that can reach the database).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the step's Pod tolerates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// Checks run against a restored database: what the CRM runbook's "verify restore" does by hand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifySpec {
    /// The restored database must have at least this many tables (information_schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_tables: Option<i32>,
    /// Tables that must exist with at least `minRows` rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub tables: Vec<TableCheck>,
    /// SQL queries that must return a single true value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub queries: Vec<QueryCheck>,
}

/// A table that must exist in the restored database with enough rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableCheck {
    /// Table name, optionally with its schema (`public.orders`); quoted as written, so case matters.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// The fewest rows the table may have. Default 1.
    #[serde(default = "default_min_rows")]
    #[schemars(range(min = 0))]
    pub min_rows: i64,
}

fn default_min_rows() -> i64 {
    1
}

/// An SQL query over the restored data that must return true.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QueryCheck {
    /// A short name shown in status.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// A query returning one boolean, e.g. `select count(*) > 0 from orders`.
    #[schemars(length(min = 1, max = 4096))]
    pub sql: String,
}

/// The result of one verification check, as written into status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckResult {
    /// The check: `minTables`, `table:<name>` or `query:<name>`.
    pub name: String,
    /// Whether the check passed.
    pub passed: bool,
    /// What the check found, e.g. `1200 rows, at least 1 required`, or the database's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Which database or directory a restore writes into. Exactly one field is set: an existing server
/// (postgres, mysql), a directory (files), or a scratch server Lifeboat starts for the restore.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.postgres), has(self.mysql), has(self.files), has(self.scratch)].filter(x, x).size() == 1").message("set exactly one of postgres, mysql or files (an existing server or directory) or scratch (a server started for the restore)"))]
pub struct DatabaseTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresConnection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<MysqlConnection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesLocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<ScratchDatabase>,
}

/// The engine of a scratch database server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScratchEngine {
    /// PostgreSQL; the default image is `postgres:16`.
    Postgres,
    /// MariaDB (or MySQL); the default image is `mariadb:11`.
    Mysql,
}

/// A database server started for one restore: a Pod and a Service owned by the Restore, with a generated
/// password in a Secret it also owns. All three are deleted when the restore ends (unless
/// `keepScratch`), so a drill leaves nothing behind.
///
/// In a cluster, `image` alone is enough: the official images' entrypoints read `POSTGRES_PASSWORD`,
/// `POSTGRES_USER`, `POSTGRES_DB` (PostgreSQL) and `MARIADB_ROOT_PASSWORD`, `MARIADB_DATABASE`
/// (MariaDB), which Lifeboat sets. Where images cannot run their entrypoint (the local test node), give
/// `command`/`args`; they see the same variables plus `POD_IP` and `LIFEBOAT_SCRATCH_PORT`, and must
/// listen on that address and port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScratchDatabase {
    /// The database server to start: postgres or mysql (MariaDB).
    pub engine: ScratchEngine,
    /// The server image (default `postgres:16` or `mariadb:11`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Replaces the image's entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments passed to `command`, or to the image's entrypoint when `command` is empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment for the server (tuning, e.g. `POSTGRES_INITDB_ARGS`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// The port the server listens on (default 5432 or 3306).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// The database restored into (default `restore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub database: Option<String>,
    /// CPU and memory requests and limits of the server container. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node labels the server's Pod must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the server's Pod tolerates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// The server container's security context. Default: what Pod Security `restricted` requires, as
    /// uid/gid 999 (the `postgres` and `mysql` users of the official images, whose data directories
    /// belong to them). Given, it replaces the default as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// How long the server may take to accept connections before the restore fails (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_timeout: Option<crate::duration::DurationString>,
}

impl ScratchDatabase {
    pub fn port(&self) -> i32 {
        self.port.unwrap_or(match self.engine {
            ScratchEngine::Postgres => 5432,
            ScratchEngine::Mysql => 3306,
        })
    }

    pub fn database(&self) -> &str {
        self.database.as_deref().unwrap_or("restore")
    }

    /// The superuser the official images create.
    pub fn user(&self) -> &'static str {
        match self.engine {
            ScratchEngine::Postgres => "postgres",
            ScratchEngine::Mysql => "root",
        }
    }

    pub fn image(&self) -> &str {
        self.image.as_deref().unwrap_or(match self.engine {
            ScratchEngine::Postgres => "postgres:16",
            ScratchEngine::Mysql => "mariadb:11",
        })
    }
}

impl DatabaseTarget {
    /// The database that a restore would overwrite on an existing server (none for files and scratch).
    pub fn existing_database(&self) -> Option<&str> {
        if let Some(postgres) = &self.postgres {
            return Some(&postgres.database);
        }
        self.mysql.as_ref().map(|mysql| mysql.database.as_str())
    }

    /// A short kind label for metrics and messages.
    pub fn kind(&self) -> &'static str {
        if self.postgres.is_some() {
            "postgres"
        } else if self.mysql.is_some() {
            "mysql"
        } else if self.files.is_some() {
            "files"
        } else {
            "scratch"
        }
    }
}

/// An HTTP check: what the runbooks do with `curl -fsS …/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpCheck {
    /// The http(s) URL to request, e.g. `http://web.hotel.svc/health`. The operator sends the request
    /// itself, so the URL must be reachable from the operator's Pod.
    #[schemars(regex(pattern = r"^https?://"), length(max = 2048))]
    pub url: String,
    /// The HTTP status the answer must have, exactly. Default 200.
    #[serde(default = "default_expect_status")]
    #[schemars(range(min = 100, max = 599))]
    pub expect_status: i32,
    /// A substring the response body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_body_contains: Option<String>,
    /// Per attempt. Default 5s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<crate::duration::DurationString>,
    /// HTTP method. Default GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["GET", "HEAD", "POST", "PUT", "OPTIONS"]))]
    pub method: Option<String>,
    /// Further attempts after a failed one, one second apart, before the check counts as failed.
    /// Default 0 (stabilization has its own failureThreshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub retries: Option<i32>,
}

fn default_expect_status() -> i32 {
    200
}

/// Kubernetes conditions, one per `type` (Ready, Reconciling, Stalled, and kind-specific ones).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Conditions(pub Vec<Condition>);

impl JsonSchema for Conditions {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Conditions".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = generator.subschema_for::<Vec<Condition>>();
        schema.insert("x-kubernetes-list-type".into(), "map".into());
        schema.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
        schema
    }
}

impl Conditions {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How far a running backup or restore is, as its agent last reported (every few seconds; the operator
/// copies it here at most every 10 s). Cleared when the run ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferProgress {
    /// Bytes of the dump (or of the files) read so far.
    pub bytes_done: i64,
    /// The whole size, when known: a restore and a files backup know it (restic's scan counts the
    /// files); a dump's size is known only at its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<i64>,
    /// Average rate since the transfer started.
    pub bytes_per_second: i64,
    /// For people and the Progress column, e.g. `1.2 GiB at 45.3 MiB/s` or `40% of 3.0 GiB at 45.3 MiB/s`.
    pub summary: String,
    /// When the agent reported it.
    pub time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

impl TransferProgress {
    pub fn new(
        bytes_done: u64,
        total_bytes: Option<u64>,
        bytes_per_second: u64,
        time: jiff::Timestamp,
    ) -> Self {
        let done = crate::size::human(bytes_done);
        let rate = crate::size::human(bytes_per_second);
        let summary = match total_bytes.filter(|t| *t > 0) {
            Some(total) => format!(
                "{}% of {} at {rate}/s",
                (bytes_done.min(total) * 100) / total,
                crate::size::human(total)
            ),
            None => format!("{done} at {rate}/s"),
        };
        TransferProgress {
            bytes_done: bytes_done as i64,
            total_bytes: total_bytes.map(|t| t as i64),
            bytes_per_second: bytes_per_second as i64,
            summary,
            time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(time),
        }
    }
}
