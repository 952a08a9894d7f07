//! RestoreDrill: a scheduled Restore into a scratch database with verification, measuring the real RTO
//! and RPO against targets — the disaster-recovery runbook's monthly drill, done every time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    Conditions, CronSchedule, DatabaseTarget, JobStep, JobTemplate, LocalObjectRef, VerifySpec,
};
use super::notifications::{NotificationRecord, Webhook};
use crate::duration::DurationString;

/// When to drill, what to restore where, how to check it, and the recovery objectives it must meet.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
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
    printcolumn(
        name = "Overdue",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Overdue\")].status"
    ),
    printcolumn(
        name = "Last Drill",
        type_ = "date",
        json_path = ".status.lastDrill.startTime"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("(!has(self.target.postgres) || self.target.postgres.database.startsWith('verify_')) && (!has(self.target.mysql) || self.target.mysql.database.startsWith('verify_'))").message("a drill drops and recreates its target database on every run: on an existing server name it verify_<something> (never a production database), or use target.scratch"))]
#[serde(rename_all = "camelCase")]
pub struct RestoreDrillSpec {
    /// When to drill, e.g. "0 3 1 * *" (monthly).
    pub schedule: CronSchedule,
    /// IANA time zone of the schedule, e.g. Europe/Prague. Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")
    )]
    pub time_zone: Option<String>,
    /// The policy whose newest snapshot is restored.
    pub policy_ref: LocalObjectRef,
    /// Where each drill restores: best a `scratch` server started for the drill and deleted after it;
    /// or a `verify_…` database on an existing server (the CRM runbook's way), dropped and recreated
    /// by every drill, so never production.
    pub target: DatabaseTarget,
    /// Delete a scratch target, or drop the `verify_` database on an existing server, after each drill
    /// (default true; false keeps them: a scratch server until the drill's Restore is deleted by the
    /// history limit, a `verify_` database until the next drill replaces it).
    #[serde(default = "default_true")]
    pub cleanup: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
    /// A smoke test after each verified restore (see Restore's spec.smoke): its time counts in the RTO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke: Option<JobStep>,
    /// Recovery time objective: a drill whose restore and verification take longer fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto: Option<DurationString>,
    /// Recovery point objective: a drill whose snapshot is older than this at drill time fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<DurationString>,
    /// Start no new drills (one under way finishes). The drill still turns Overdue when slots pass.
    #[serde(default)]
    pub suspend: bool,
    /// How late a drill may be (past the slot after the last one) before the drill turns Overdue.
    /// Default 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overdue_grace: Option<DurationString>,
    /// Webhook notifications (Slack-compatible), as on a BackupPolicy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<DrillNotifications>,
    /// How many drills to keep in status.history and as Restore objects. Default 5.
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 0, max = 50))]
    pub history_limit: i32,
    /// How the drill's restore Jobs run (defaults to the policy's jobTemplate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_template: Option<JobTemplate>,
}

fn default_true() -> bool {
    true
}

fn default_history_limit() -> i32 {
    5
}

/// Webhook notifications of a RestoreDrill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillNotifications {
    pub webhook: Webhook,
    /// Which events notify. Default: all of them.
    #[serde(default = "all_drill_events")]
    #[schemars(length(max = 3))]
    pub events: Vec<DrillEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DrillEvent {
    /// A drill failed to restore or verify.
    Failure,
    /// A drill restored and verified but missed its RTO or RPO.
    ObjectiveMissed,
    /// No drill ran within its schedule plus overdueGrace.
    Overdue,
}

fn all_drill_events() -> Vec<DrillEvent> {
    vec![
        DrillEvent::Failure,
        DrillEvent::ObjectiveMissed,
        DrillEvent::Overdue,
    ]
}

/// The drills run so far, measured against the objectives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreDrillStatus {
    /// The metadata.generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready and Stalled, plus Overdue (no drill started in time), RTOMet and RPOMet (the last drill
    /// against spec.rto and spec.rpo; absent without that target).
    #[serde(default, skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    /// The newest schedule slot handled: a drill was started for it, or it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the next drill is due; absent while suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// The Restore of the drill under way, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    /// The newest finished drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<DrillResult>,
    /// Recent drills, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<DrillResult>,
    /// The newest webhook notifications, oldest first: pending ones are retried with backoff.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<NotificationRecord>,
}

/// What the DR runbook asks to record after each drill: real times against the targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillResult {
    /// The Restore object of this drill.
    pub restore: String,
    /// When the drill started: the start of its measured RTO.
    pub start_time: Time,
    /// When the drill's Restore ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The restic snapshot the drill restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Time from the drill's start until the restored data was verified.
    #[serde(default, rename = "measuredRTO", skip_serializing_if = "Option::is_none")]
    pub measured_rto: Option<String>,
    /// Age of the restored snapshot at the drill's start: the data a real disaster would lose.
    #[serde(default, rename = "measuredRPO", skip_serializing_if = "Option::is_none")]
    pub measured_rpo: Option<String>,
    /// Whether the measured RTO was within spec.rto at the time of the drill (absent without a target).
    #[serde(default, rename = "rtoMet", skip_serializing_if = "Option::is_none")]
    pub rto_met: Option<bool>,
    /// Whether the measured RPO was within spec.rpo at the time of the drill (absent without a target).
    #[serde(default, rename = "rpoMet", skip_serializing_if = "Option::is_none")]
    pub rpo_met: Option<bool>,
    /// Restored, verified (when the drill has `verify` checks), and within both targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// Whether `verify` checks ran on the restored data and passed. False for a drill without checks:
    /// it proved only that the dump loads, not that the data in it is what the application needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// Verification checks that failed (`table:users`, `query:orders`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_checks: Vec<String>,
    /// What went wrong, or the summary of a pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
