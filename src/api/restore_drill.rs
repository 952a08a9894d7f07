//! RestoreDrill: a scheduled Restore into a scratch database with verification, measuring the real RTO
//! and RPO against targets — the disaster-recovery runbook's monthly drill, done every time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Conditions, CronSchedule, DatabaseTarget, JobTemplate, LocalObjectRef, VerifySpec};
use crate::duration::DurationString;

#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "RestoreDrill",
    namespaced,
    status = "RestoreDrillStatus",
    shortname = "drill",
    category = "lifeboat",
    doc = "A scheduled restore of a policy's newest snapshot into a scratch database, verified and timed.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Passed", type_ = "string", json_path = ".status.lastDrill.passed"),
    printcolumn(name = "RTO", type_ = "string", json_path = ".status.lastDrill.measuredRTO"),
    printcolumn(name = "RPO", type_ = "string", json_path = ".status.lastDrill.measuredRPO"),
    printcolumn(name = "Last Drill", type_ = "date", json_path = ".status.lastDrill.startTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct RestoreDrillSpec {
    /// When to drill, e.g. "0 3 1 * *" (monthly).
    pub schedule: CronSchedule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$"))]
    pub time_zone: Option<String>,
    /// The policy whose newest snapshot is restored.
    pub policy_ref: LocalObjectRef,
    /// The scratch database or directory. It is dropped and recreated by every drill, so never point it
    /// at production: the CRM runbook uses a `verify_` database.
    pub target: DatabaseTarget,
    /// Drop the scratch database after the drill (default true).
    #[serde(default = "default_true")]
    pub cleanup: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
    /// Recovery time objective: a drill whose restore and verification take longer fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto: Option<DurationString>,
    /// Recovery point objective: a drill whose snapshot is older than this at drill time fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<DurationString>,
    #[serde(default)]
    pub suspend: bool,
    /// How many drills to keep in status.history and as Restore objects. Default 5.
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 0, max = 50))]
    pub history_limit: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_template: Option<JobTemplate>,
}

fn default_true() -> bool {
    true
}

fn default_history_limit() -> i32 {
    5
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreDrillStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<DrillResult>,
    /// Recent drills, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<DrillResult>,
}

/// What the DR runbook asks to record after each drill: real times against the targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillResult {
    /// The Restore object of this drill.
    pub restore: String,
    pub start_time: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Time from the drill's start until the restored data was verified.
    #[serde(default, rename = "measuredRTO", skip_serializing_if = "Option::is_none")]
    pub measured_rto: Option<String>,
    /// Age of the restored snapshot at the drill's start: the data a real disaster would lose.
    #[serde(default, rename = "measuredRPO", skip_serializing_if = "Option::is_none")]
    pub measured_rpo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_checks: Vec<String>,
}
