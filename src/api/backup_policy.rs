//! BackupPolicy: a schedule of database dumps or file backups into a restic repository, with retention,
//! repository checks, an RPO and size-anomaly detection.

use k8s_openapi::api::core::v1::EnvFromSource;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    Conditions, CronSchedule, FilesLocation, JobTemplate, MysqlConnection, PostgresConnection, SecretKeyRef,
};
use super::notifications::NotificationRecord;
pub use super::notifications::Webhook;
use crate::duration::DurationString;

/// What a BackupPolicy backs up, where to, when, and which snapshots it keeps.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "BackupPolicy",
    namespaced,
    status = "BackupPolicyStatus",
    shortname = "bp",
    category = "lifeboat",
    doc = "A schedule of database dumps or file backups into a restic repository.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Stale",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Stale\")].status"
    ),
    printcolumn(
        name = "Last Success",
        type_ = "date",
        json_path = ".status.lastSuccessfulBackup.time"
    ),
    printcolumn(
        name = "Size",
        type_ = "string",
        json_path = ".status.lastSuccessfulBackup.size",
        priority = 1
    ),
    printcolumn(name = "Next", type_ = "string", json_path = ".status.nextScheduleTime"),
    printcolumn(
        name = "Suspended",
        type_ = "boolean",
        json_path = ".spec.suspend",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicySpec {
    /// When to back up (cron, five fields), e.g. "0 2 * * *".
    pub schedule: CronSchedule,
    /// IANA time zone of the schedule, e.g. Europe/Prague. Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")
    )]
    pub time_zone: Option<String>,
    /// What to back up.
    pub source: BackupSource,
    /// Where backups go.
    pub repository: RepositorySpec,
    /// Which snapshots to keep (restic forget --keep-*), applied after each successful backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Recovery point objective: when the newest successful backup is older, the policy turns Stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<DurationString>,
    /// Warn when a backup's size leaves this band around the median of recent backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_anomaly: Option<SizeAnomaly>,
    /// Repository integrity check (restic check) on its own schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<RepositoryCheck>,
    /// What to do when a slot comes while the previous backup still runs. Default Forbid.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// Stop creating new Backups (running ones finish).
    #[serde(default)]
    pub suspend: bool,
    /// A slot missed (operator down) is still run when no more than this many seconds late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub starting_deadline_seconds: Option<i64>,
    /// Delay each slot by a stable random amount up to this, so many policies do not start at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<DurationString>,
    /// How many succeeded Backups the schedule made to keep as objects; older ones are deleted with
    /// their Jobs (their snapshots stay in the repository; held ones are kept). Default 3.
    #[serde(default = "default_successful_history")]
    #[schemars(range(min = 0, max = 100))]
    pub successful_backups_history_limit: i32,
    /// How many failed Backups the schedule made to keep as objects, with their Jobs and logs; older
    /// ones are deleted. Default 1.
    #[serde(default = "default_failed_history")]
    #[schemars(range(min = 0, max = 100))]
    pub failed_backups_history_limit: i32,
    /// Webhook notifications (Slack-compatible).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Notifications>,
    /// How the backup Jobs run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_template: Option<JobTemplate>,
}

fn default_successful_history() -> i32 {
    3
}

fn default_failed_history() -> i32 {
    1
}

/// What a policy backs up. Exactly one field is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.postgres), has(self.mysql), has(self.files)].filter(x, x).size() == 1").message("set exactly one of source.postgres, source.mysql or source.files"))]
pub struct BackupSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<MysqlConnection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesLocation>,
}

/// A PostgreSQL database to dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSource {
    #[serde(flatten)]
    pub connection: PostgresConnection,
    /// custom (pg_dump -Fc, restorable table by table) or plain SQL. Default custom.
    #[serde(default)]
    pub format: DumpFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DumpFormat {
    #[default]
    Custom,
    Plain,
}

/// The repository backups are written to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RepositorySpec {
    /// A restic repository: its URL, password and backend credentials.
    pub restic: ResticRepository,
}

/// A restic repository and how to open it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.persistentVolumeClaim) || self.repository == '/repository' || self.repository.startsWith('/repository/')").message("with persistentVolumeClaim the repository is a path under /repository, where the claim is mounted (e.g. /repository or /repository/hotel)"))]
pub struct ResticRepository {
    /// Repository URL as restic takes it: s3:https://…, rest:http://…, sftp:…, or a local path.
    #[schemars(length(min = 1, max = 2048))]
    pub repository: String,
    /// A PersistentVolumeClaim holding a local-path repository (NFS, a shared volume), mounted at
    /// /repository in every Job that opens the repository; `repository` is then a path under it. The
    /// Jobs run as uid 65532: the directory must be writable for it (restic locks even to read), e.g.
    /// `jobTemplate.securityContext: {runAsNonRoot: true, fsGroup: 65532}` on a fresh volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub persistent_volume_claim: Option<String>,
    /// The repository password.
    pub password_secret_ref: SecretKeyRef,
    /// Backend credentials (e.g. AWS_ACCESS_KEY_ID) as environment of the Jobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// Create the repository when it does not exist yet. Off by default, so a typo in the URL fails
    /// loudly instead of starting a new, empty repository.
    #[serde(default)]
    pub initialize: bool,
}

/// restic forget --keep-* counts; 0 or absent keeps none by that rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.keepLast), has(self.keepHourly), has(self.keepDaily), has(self.keepWeekly), has(self.keepMonthly), has(self.keepYearly)].exists(x, x)").message("retention needs at least one keep* rule, or leave retention out to keep every snapshot"))]
pub struct Retention {
    /// Keep the newest N snapshots (restic --keep-last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_last: Option<i32>,
    /// Keep the newest snapshot of each of the last N hours that have one (--keep-hourly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_hourly: Option<i32>,
    /// Keep the newest snapshot of each of the last N days that have one (--keep-daily).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_daily: Option<i32>,
    /// Keep the newest snapshot of each of the last N weeks that have one (--keep-weekly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_weekly: Option<i32>,
    /// Keep the newest snapshot of each of the last N months that have one (--keep-monthly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_monthly: Option<i32>,
    /// Keep the newest snapshot of each of the last N years that have one (--keep-yearly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_yearly: Option<i32>,
}

/// The accepted band of a backup's size relative to the median of recent successful backups: the CRM
/// runbook's "< −30 % or > +50 %" is minRatio 0.7, maxRatio 1.5.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minRatio < self.maxRatio").message("sizeAnomaly.minRatio must be smaller than maxRatio"))]
pub struct SizeAnomaly {
    /// A backup smaller than this share of the median is an anomaly, e.g. 0.7 (30 % smaller).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_ratio: f64,
    /// A backup larger than this multiple of the median is an anomaly, e.g. 1.5 (50 % larger).
    #[schemars(range(min = 1.0))]
    pub max_ratio: f64,
    /// How many recent successful backups form the median. Default 5.
    #[serde(default = "default_anomaly_window")]
    #[schemars(range(min = 1, max = 50))]
    pub window: i32,
}

fn default_anomaly_window() -> i32 {
    5
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryCheck {
    /// When to run restic check, e.g. "0 4 * * 0".
    pub schedule: CronSchedule,
    /// Also read this share of the pack files, e.g. "10%" or "1/5".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]{1,2}(\.[0-9]+)?%|100%|[0-9]+/[0-9]+)$"))]
    pub read_data_subset: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConcurrencyPolicy {
    Allow,
    #[default]
    Forbid,
    Replace,
}

/// Webhook notifications of a BackupPolicy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notifications {
    pub webhook: Webhook,
    /// Which events notify. Default: Failure, Stale and Recovery. (Not called `on`: YAML 1.1 reads
    /// that key as the boolean true.)
    #[serde(default = "default_notify_on")]
    #[schemars(length(max = 4))]
    pub events: Vec<NotificationEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NotificationEvent {
    Failure,
    Stale,
    Anomaly,
    Recovery,
}

fn default_notify_on() -> Vec<NotificationEvent> {
    vec![
        NotificationEvent::Failure,
        NotificationEvent::Stale,
        NotificationEvent::Recovery,
    ]
}

/// What the policy has done and how healthy its backups are, as the operator observed it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicyStatus {
    /// The metadata.generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready and Stalled, plus Stale (no success within the rpo), SizeAnomaly (the newest success left
    /// the sizeAnomaly band) and RepositoryHealthy (the newest check and retention runs).
    #[serde(default, skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    /// The newest schedule slot handled: a Backup was created for it, or it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the next Backup is due (its slot plus the jitter); absent while suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// The newest successful Backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_backup: Option<BackupSummary>,
    /// The newest failed Backup and why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<FailureSummary>,
    /// The newest repository check (`restic check`) and its verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<CheckSummary>,
    /// The newest retention run (`restic forget --prune`) and its verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_retention: Option<CheckSummary>,
    /// The last repository-check slot handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_schedule_time: Option<Time>,
    /// Backups currently running for this policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    /// Dump sizes of the most recent successful backups, newest last: the size-anomaly baseline, kept
    /// here so it survives history limits and restarts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_sizes: Vec<i64>,
    /// Failed backups since the policy was created (the `lifeboat_backup_failures_total` metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_backups: Option<i64>,
    /// Snapshots the newest retention run kept whatever the keep rules say, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<SnapshotHold>,
    /// The newest webhook notifications, oldest first: pending ones are retried with backoff.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<NotificationRecord>,
}

/// A snapshot something still depends on: retention does not forget it until the hold ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotHold {
    /// The held restic snapshot.
    pub snapshot_id: String,
    /// The Backup that made the snapshot.
    pub backup: String,
    /// Who holds it: `Cutover <name>` (its rollback point) or `annotation lifeboat.dev/hold`.
    pub held_by: String,
    /// When the hold ends; absent while the Cutover runs or the annotation stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Time>,
}

/// The facts of one successful backup, as a person checks them after a dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSummary {
    /// The Backup object.
    pub name: String,
    /// When the Backup completed.
    pub time: Time,
    /// The restic snapshot id.
    pub snapshot_id: String,
    /// Bytes backed up: the dump stream of a database, the files read for a directory.
    pub size_bytes: i64,
    /// sizeBytes for people, e.g. `225.2 KiB`.
    #[serde(default)]
    pub size: String,
    /// sha256 of the dump stream (empty for a files backup).
    pub sha256: String,
    /// How long the Backup ran, e.g. `1m30s`.
    pub duration: String,
}

/// One failed backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureSummary {
    /// The Backup object.
    pub name: String,
    /// When the Backup failed.
    pub time: Time,
    /// Why it failed (the Backup's status.message).
    pub message: String,
}

/// The verdict of one repository maintenance Job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckSummary {
    /// The maintenance Job (check or retention).
    pub job_name: String,
    /// When the Job finished.
    pub time: Time,
    /// Whether the Job completed and the agent reported success.
    pub passed: bool,
    /// Why it failed (absent when it passed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
