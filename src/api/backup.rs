//! Backup: one backup run, made by a BackupPolicy's schedule, by hand, or by a Cutover before it switches.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Conditions, LocalObjectRef};

/// Which policy's backup to run, and why. Fixed once the Backup is created.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "Backup",
    namespaced,
    status = "BackupStatus",
    shortname = "bk",
    category = "lifeboat",
    doc = "One backup run of a BackupPolicy's source into its repository.",
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.policyRef.name"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Size", type_ = "string", json_path = ".status.size"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress.summary"),
    printcolumn(name = "Snapshot", type_ = "string", json_path = ".status.snapshotId"),
    printcolumn(name = "Duration", type_ = "string", json_path = ".status.duration"),
    printcolumn(name = "Trigger", type_ = "string", json_path = ".spec.trigger", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("a Backup's spec cannot change once created; create a new Backup"))]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// The BackupPolicy whose source, repository and Job settings this run uses.
    pub policy_ref: LocalObjectRef,
    /// Why this backup exists. Default Manual; the operator sets Scheduled and PreCutover.
    #[serde(default)]
    pub trigger: BackupTrigger,
    /// Free text recorded with the snapshot as its `reason=` tag, e.g. "before release 2.4" (tagged
    /// `reason=before_release_2.4`: spaces become `_` and commas `;`, since restic splits tags at commas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BackupTrigger {
    Scheduled,
    #[default]
    Manual,
    PreCutover,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BackupPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// How the backup run went: its Job, snapshot, size and checksum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// The metadata.generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (the backup succeeded), Reconciling (while it runs) and Stalled (it failed, or waits for a
    /// person: a missing policy or Secret).
    #[serde(default, skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    /// Pending, Running, then Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// The Job running the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// When the backup started (the agent's own start time once it has reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the backup ended, successfully or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// From startTime to completionTime in whole seconds, e.g. `1m30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// The restic snapshot id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Bytes of the dump stream (before restic's compression and deduplication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// sizeBytes for people, e.g. `225.2 KiB` (the Size column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// sha256 of the dump stream, checked again at restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// What happened, in one line a person can act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How far the dump is while it runs (the Progress column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<super::common::TransferProgress>,
}
