//! Restore: one restore of a snapshot into a target database or directory, optionally verified.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CheckResult, Conditions, DatabaseTarget, JobTemplate, LocalObjectRef, VerifySpec};

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
    printcolumn(name = "Verified", type_ = "string", json_path = ".status.verification.passed"),
    printcolumn(name = "Duration", type_ = "string", json_path = ".status.duration"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("a Restore's spec cannot change once created; create a new Restore"))]
#[serde(rename_all = "camelCase")]
pub struct RestoreSpec {
    /// Which snapshot to restore.
    pub source: RestoreSource,
    /// Where to restore it.
    pub target: DatabaseTarget,
    /// Drop and recreate the target database (or empty the target directory) first. Off by default:
    /// restoring over live data is a decision a person makes explicitly.
    #[serde(default)]
    pub drop_existing: bool,
    /// Checks that must pass on the restored data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_ref: Option<LocalObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_ref: Option<LocalObjectRef>,
    /// A restic snapshot id (8 or 64 hex digits) or "latest". Default latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(latest|[0-9a-f]{8}|[0-9a-f]{64})$"))]
    pub snapshot: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RestorePhase {
    #[default]
    Pending,
    Running,
    Verifying,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// The snapshot actually restored (resolved from "latest").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// When the restored snapshot was taken: the data's recovery point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Every check's result, not only the first failure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Verification {
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
}
