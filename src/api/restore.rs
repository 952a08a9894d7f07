//! Restore: one restore of a snapshot into a target database or directory, optionally verified.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    CheckResult, Conditions, DatabaseTarget, JobStep, JobTemplate, LocalObjectRef, VerifySpec,
};

/// Which snapshot to restore, where to, and how to check the result. Fixed once the Restore is created.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "Restore",
    namespaced,
    status = "RestoreStatus",
    shortname = "rst",
    category = "lifeboat",
    doc = "One restore of a snapshot into a target database or directory, optionally verified.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Snapshot", type_ = "string", json_path = ".status.snapshotId"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress.summary"),
    printcolumn(
        name = "Verified",
        type_ = "string",
        json_path = ".status.verification.passed"
    ),
    printcolumn(name = "Duration", type_ = "string", json_path = ".status.duration"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("a Restore's spec cannot change once created; create a new Restore"))]
#[x_kube(validation = Rule::new("!has(self.confirmOverwrite) || (has(self.target.postgres) && self.confirmOverwrite == self.target.postgres.database) || (has(self.target.mysql) && self.confirmOverwrite == self.target.mysql.database)").message("confirmOverwrite must repeat the target database's name exactly (target.postgres.database or target.mysql.database)"))]
#[x_kube(validation = Rule::new("!has(self.keepScratch) || !self.keepScratch || has(self.target.scratch)").message("keepScratch only applies to a target.scratch database"))]
#[x_kube(validation = Rule::new("!has(self.dropAfter) || !self.dropAfter || has(self.confirmOverwrite)").message("dropAfter deletes the target database: set confirmOverwrite to its name as well"))]
#[serde(rename_all = "camelCase")]
pub struct RestoreSpec {
    /// Which snapshot to restore.
    pub source: RestoreSource,
    /// Where to restore it.
    pub target: DatabaseTarget,
    /// Drop and recreate the target database first (on an existing server, only an empty one unless
    /// confirmOverwrite names it). Not applied to a files target: restic restores into the directory
    /// as it is, and the overwrite guard does not look at directories yet.
    #[serde(default)]
    pub drop_existing: bool,
    /// The guard against restoring over live data: a database on an existing server that already has
    /// tables is only replaced (dropped, recreated, restored) when this field repeats its name. Without
    /// it, the Restore checks the database first and fails, touching nothing, if it is not empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_overwrite: Option<String>,
    /// Keep a scratch target's Pod, Service and Secret after the restore (to inspect the data by hand;
    /// they go when the Restore is deleted). Default false: they are deleted as soon as it ends.
    #[serde(default)]
    pub keep_scratch: bool,
    /// Drop the target database on the existing server once the Restore has ended (verified or not):
    /// for throwaway `verify_` databases, as the CRM runbook's verify-restore does. Needs
    /// confirmOverwrite naming it.
    #[serde(default)]
    pub drop_after: bool,
    /// Checks that must pass on the restored data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
    /// A smoke test run after verification, against the restored database (its address and credentials
    /// are in the Job's environment: LIFEBOAT_DB_HOST/PORT/NAME/USER/PASSWORD, and PGHOST… or MYSQL_HOST…).
    /// The Restore succeeds only if it exits 0; its time counts in the Restore's duration, as the DR
    /// runbook counts the smoke test in the RTO. A line it writes to /dev/termination-log (or, when it
    /// fails, its last log line) is quoted in the Restore's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke: Option<JobStep>,
    /// How the restore Job runs (defaults to the policy's jobTemplate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_template: Option<JobTemplate>,
}

/// A Backup by name, or a policy's snapshot (newest by default). Exactly one of backupRef and
/// policyRef is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.backupRef) != has(self.policyRef)").message("set exactly one of source.backupRef or source.policyRef"))]
#[x_kube(validation = Rule::new("!has(self.snapshot) || has(self.policyRef)").message("source.snapshot needs source.policyRef (a backupRef already names its snapshot)"))]
pub struct RestoreSource {
    /// The Backup whose snapshot is restored, from its policy's repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_ref: Option<LocalObjectRef>,
    /// The BackupPolicy whose repository holds the snapshot (see `snapshot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_ref: Option<LocalObjectRef>,
    /// A restic snapshot id (8 or 64 hex digits) or "latest". Default latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(latest|[0-9a-f]{8}|[0-9a-f]{64})$"))]
    pub snapshot: Option<String>,
}

/// Where a Restore is: the phases run in this order, some skipped (Provisioning only for a scratch
/// target, Checking only for an existing database without confirmOverwrite).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RestorePhase {
    #[default]
    Pending,
    /// Starting the scratch database server and waiting for it to accept connections.
    Provisioning,
    /// Checking that the target database is empty (the overwrite guard).
    Checking,
    /// Restoring, then running the verify checks (one agent run).
    Running,
    /// Running the smoke Job against the restored database.
    SmokeTesting,
    Succeeded,
    Failed,
}

impl RestorePhase {
    pub fn is_finished(self) -> bool {
        matches!(self, RestorePhase::Succeeded | RestorePhase::Failed)
    }
}

/// How the restore went: its Jobs, the snapshot restored, the checks' results and how long it took.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// The metadata.generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (the restore succeeded), Reconciling (while it runs) and Stalled (it failed).
    #[serde(default, skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    /// The restore Job (restore and verification in one agent run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// The smoke test Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke_job_name: Option<String>,
    /// The Job that checked that the target database was empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_job_name: Option<String>,
    /// The Job that dropped the target database afterwards (dropAfter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_job_name: Option<String>,
    /// Whether dropAfter dropped the target database (false: the drop failed, see the Events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_dropped: Option<bool>,
    /// The target actually used, e.g. `postgres hotel_restored on db.hotel.svc:5432`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The scratch database server, while and after it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<ScratchStatus>,
    /// The snapshot actually restored (resolved from "latest").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// When the restored snapshot was taken: the data's recovery point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_time: Option<Time>,
    /// When the operator began working on the Restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the Restore ended, successfully or not (after the smoke test, if there is one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// From startTime to completionTime, e.g. `2m5s`: the time to recover, smoke test included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// What happened, in one line a person can act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How far the restore is while it runs (the Progress column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<super::common::TransferProgress>,
    /// Why it failed, as a short code (the agent's reason such as `ChecksumMismatch`,
    /// `SnapshotNotFound`, `VerifyFailed`, or the controller's such as `TargetNotEmpty`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The objects of a scratch target and how to reach it (the password is in the Secret, never here).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScratchStatus {
    /// The Pod running the server.
    pub pod: String,
    /// The Service in front of the Pod.
    pub service: String,
    /// The generated Secret holding the server's password under the key `password`.
    pub secret: String,
    /// The server's address: the Service's DNS name, e.g. `<service>.<namespace>.svc`.
    pub host: String,
    /// The server's port.
    pub port: i32,
    /// The database the snapshot was restored into.
    pub database: String,
    /// The superuser to connect as: `postgres` or `root`.
    pub user: String,
    /// True once the Pod, Service and Secret were deleted.
    #[serde(default)]
    pub removed: bool,
}

/// Every check's result, not only the first failure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Verification {
    /// Whether every check passed.
    pub passed: bool,
    /// Each check's result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
}
