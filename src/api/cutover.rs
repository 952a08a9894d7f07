//! Cutover: a blue-green production switch carried out as a state machine whose whole memory is its
//! status — preflight, pre-switch backup, migration, readiness gate, approval, switch, verification,
//! stabilization, and automatic rollback — with every step logged.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Conditions, HttpCheck, JobStep, LocalObjectRef};
use super::notifications::{CutoverNotifications, NotificationRecord};
use crate::duration::DurationString;

/// The two sides, how traffic moves between them, and the checks, gates and rollback around the switch.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "lifeboat.dev",
    version = "v1alpha1",
    kind = "Cutover",
    namespaced,
    status = "CutoverStatus",
    shortname = "cut",
    category = "lifeboat",
    doc = "A blue-green production switch with preflight, backup, migration, approval, checks and rollback.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Step", type_ = "string", json_path = ".status.step"),
    printcolumn(name = "Active", type_ = "string", json_path = ".status.active"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending' || (self.spec.from == oldSelf.spec.from && self.spec.to == oldSelf.spec.to && self.spec.trafficSwitch == oldSelf.spec.trafficSwitch)").message("spec.from, spec.to and spec.trafficSwitch cannot change once the Cutover has started; create a new Cutover").field_path(".spec.to"),
    validation = Rule::new(frozen_once_started("preflight")).message(frozen_message("preflight").as_str()).field_path(".spec.preflight"),
    validation = Rule::new(frozen_once_started("backup")).message(frozen_message("backup").as_str()).field_path(".spec.backup"),
    validation = Rule::new(frozen_once_started("migration")).message(frozen_message("migration").as_str()).field_path(".spec.migration"),
    validation = Rule::new(frozen_once_started("readinessTimeout")).message(frozen_message("readinessTimeout").as_str()).field_path(".spec.readinessTimeout"),
    validation = Rule::new(approval_gate_frozen()).message("spec.approval.required, timeout, minApprovals and requiredGroups cannot change once the Cutover has started (give the GO with approvedBy or approvals, or abort); create a new Cutover").field_path(".spec.approval"),
    validation = Rule::new(frozen_once_started("verify")).message(frozen_message("verify").as_str()).field_path(".spec.verify"),
    validation = Rule::new(frozen_once_started("stabilization")).message(frozen_message("stabilization").as_str()).field_path(".spec.stabilization"),
    validation = Rule::new(frozen_once_started("rollback")).message(frozen_message("rollback").as_str()).field_path(".spec.rollback"),
    validation = Rule::new(frozen_once_started("dryRun")).message(frozen_message("dryRun").as_str()).field_path(".spec.dryRun"),
)]
#[x_kube(validation = Rule::new("self.from.selector != self.to.selector").message("spec.from.selector and spec.to.selector must differ, or the switch would change nothing"))]
#[x_kube(validation = Rule::new("!(has(self.trafficSwitch.ingress) || has(self.trafficSwitch.httpRoute)) || (has(self.from.service) && has(self.to.service))").message("Ingress and HTTPRoute switching need from.service and to.service (the backends to swap)"))]
#[serde(rename_all = "camelCase")]
pub struct CutoverSpec {
    /// What carries production traffic and gets switched.
    pub traffic_switch: TrafficSwitch,
    /// The side serving now (blue).
    pub from: Side,
    /// The side to switch to (green).
    pub to: Side,
    /// GO/NO-GO checks before anything changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub preflight: Vec<Check>,
    /// Back up the database first, through this policy; no switch without a valid snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<CutoverBackup>,
    /// Schema or data migration run before the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<Migration>,
    /// How long the `to` Deployment may take to be fully rolled out and Ready. Default 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_timeout: Option<DurationString>,
    /// A person's GO before the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// Checks right after the switch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub verify: Vec<Check>,
    /// The watch window after the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization: Option<Stabilization>,
    /// When and how to undo the switch: automatically, with a database restore or a rollback Job.
    #[serde(default)]
    pub rollback: RollbackPolicy,
    /// Stop the Cutover; if traffic was already switched it is switched back.
    #[serde(default)]
    pub abort: bool,
    /// Walk every step's read-only checks and write the plan into status without changing traffic or
    /// data: no Backup, no migration, no switch.
    #[serde(default)]
    pub dry_run: bool,
    /// Webhook notifications (Slack-compatible), as on a BackupPolicy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<CutoverNotifications>,
}

/// True while a Cutover has not started acting (no phase yet, or Pending).
const NOT_STARTED: &str =
    "!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending'";

/// A CEL rule keeping `spec.<field>` as it was once the Cutover has started (absent stays absent): a
/// run checks and does what it was started with, so no edit mid-run can drop a check and still end
/// Succeeded. Only `approval` (the GO) and `abort` may change.
fn frozen_once_started(field: &str) -> String {
    if matches!(field, "preflight" | "verify") {
        // Lists: `[]` and absent are the same (a GitOps tool may write either).
        return format!(
            "{NOT_STARTED} || (has(self.spec.{field}) ? self.spec.{field} : []) == \
             (has(oldSelf.spec.{field}) ? oldSelf.spec.{field} : [])"
        );
    }
    format!(
        "{NOT_STARTED} || (has(self.spec.{field}) == has(oldSelf.spec.{field}) && \
         (!has(self.spec.{field}) || self.spec.{field} == oldSelf.spec.{field}))"
    )
}

/// The approval gate of a started Cutover stays as it was: turning `required` off (or lowering
/// `minApprovals`, dropping a required group) mid-run would pass the gate without the sign-offs it was
/// started with. `approvedBy`, `reason` and `approvals` (the GO itself) may be set.
fn approval_gate_frozen() -> String {
    let required = |object: &str| {
        format!("(has({object}.spec.approval) && has({object}.spec.approval.required) && {object}.spec.approval.required)")
    };
    let timeout = |object: &str| {
        format!("(has({object}.spec.approval) && has({object}.spec.approval.timeout) ? {object}.spec.approval.timeout : '')")
    };
    let minimum = |object: &str| {
        format!("(has({object}.spec.approval) && has({object}.spec.approval.minApprovals) ? {object}.spec.approval.minApprovals : 1)")
    };
    let groups = |object: &str| {
        format!("(has({object}.spec.approval) && has({object}.spec.approval.requiredGroups) ? {object}.spec.approval.requiredGroups : [])")
    };
    format!(
        "{NOT_STARTED} || ({} == {} && {} == {} && {} == {} && {} == {})",
        required("self"),
        required("oldSelf"),
        timeout("self"),
        timeout("oldSelf"),
        minimum("self"),
        minimum("oldSelf"),
        groups("self"),
        groups("oldSelf")
    )
}

fn frozen_message(field: &str) -> String {
    format!(
        "spec.{field} cannot change once the Cutover has started (only approval and abort can); \
         create a new Cutover"
    )
}

/// Annotation that approves a Cutover (the GO), as `kubectl annotate` or the plugin sets it; the value
/// names who approved. Equivalent to `spec.approval.approvedBy`.
pub const APPROVED_BY_ANNOTATION: &str = "lifeboat.dev/approved-by";
/// Optional reason recorded with an annotation approval.
pub const APPROVAL_REASON_ANNOTATION: &str = "lifeboat.dev/approval-reason";

/// Exactly one of service, ingress and httpRoute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.service), has(self.ingress), has(self.httpRoute)].filter(x, x).size() == 1").message("set exactly one of trafficSwitch.service, trafficSwitch.ingress or trafficSwitch.httpRoute"))]
pub struct TrafficSwitch {
    /// Patch this Service's selector from `from.selector` to `to.selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<LocalObjectRef>,
    /// Point this Ingress rule's backend from `from.service` to `to.service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSwitch>,
    /// Point this Gateway API HTTPRoute's backendRefs from `from.service` to `to.service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<LocalObjectRef>,
    /// How long traffic gets to follow a change of route before the checks of the side it now reaches run
    /// (`verify` after the switch, the old side's checks after a switch back): kube-proxy, ingress
    /// controllers and gateways each take a moment to pick up new endpoints, and a check in that moment
    /// would reach the old side. Default 5s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle: Option<DurationString>,
}

/// An Ingress whose backend Service is swapped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IngressSwitch {
    /// The Ingress, in the Cutover's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Only rules of this host (default: every rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Only this path (default: every path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// One side of the blue-green pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Side {
    /// Pod labels of this side; the Service selector becomes exactly this.
    #[schemars(length(min = 1))]
    pub selector: BTreeMap<String, String>,
    /// The Deployment whose rollout gates the switch (for `to`) or serves rollback (for `from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// The Service of this side, for Ingress and HTTPRoute switching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// A named check: an HTTP request or a Job. Exactly one of http and job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.http) != has(self.job)").message("a check needs exactly one of http or job"))]
pub struct Check {
    /// The check's name (lowercase letters, digits, `-`): its step is `preflight/<name>` or
    /// `verify/<name>` in status.steps.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// An HTTP request the operator makes; the check passes on the expected answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// A container run once as a Job; the check passes when the Job succeeds (exit 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobStep>,
}

/// The pre-switch backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CutoverBackup {
    /// The BackupPolicy whose source and repository the Backup uses; a rollback restores into its source.
    pub policy_ref: LocalObjectRef,
    /// How long the backup may take. Default 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationString>,
    /// How long the policy's retention keeps the pre-switch snapshot after the Cutover ended (it keeps
    /// it, whatever its keep rules say, while the Cutover runs: a rollback restores it). Default 24h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_after_end: Option<DurationString>,
}

/// The migration step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Migration {
    /// The migration container, run once; the Cutover goes on only when it exits 0. What it writes to
    /// /dev/termination-log (or, when it fails, its log tail) is kept in status.migration.report.
    pub job: JobStep,
}

/// The GO/NO-GO gate before the switch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// Wait for a GO before the switch (phase AwaitingApproval). Default false: without it the other
    /// approval fields have no effect.
    #[serde(default)]
    pub required: bool,
    /// Without a GO within this time the Cutover ends as NO-GO (Failed, nothing switched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationString>,
    /// Who gave the GO (set by `kubectl lifeboat approve`, or by hand). With the admission policy
    /// installed (deploy/approval-policy.yaml, the chart's approvalPolicy), it must name the person
    /// who sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// Why approvedBy gave the GO; recorded in status.approval.reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Distinct people who must sign off before the switch (N of M). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub min_approvals: Option<i32>,
    /// Groups that must each sign off, e.g. [devops, dev, qa]: a sign-off counts for the group it names.
    /// The admission policy admits a sign-off naming a group only from a member of that group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub required_groups: Vec<String>,
    /// The sign-offs, one per person, each added by the person it names (the admission policy refuses
    /// any other name and the removal of someone else's sign-off). A map-list keyed by `by`, so each
    /// person adds theirs with a server-side apply of their own (`kubectl apply --server-side
    /// --field-manager=<you>`) and a GitOps apply of the Cutover never owns or wipes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["by"]))]
    pub approvals: Vec<SignOff>,
}

/// One person's GO.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignOff {
    /// The approver's Kubernetes user name (`kubectl auth whoami`).
    #[schemars(length(min = 1, max = 253))]
    pub by: String,
    /// The group this sign-off is for (one of requiredGroups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Why this person gives the GO; recorded in status.approval.reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
}

/// Rounds of checks against the new side after the switch; enough failed rounds in a row roll back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stabilization {
    /// How long to watch after the switch, e.g. 30m.
    pub duration: DurationString,
    /// How often to check. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<DurationString>,
    /// Consecutive failed rounds that trigger rollback. Default 3.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,
    /// HTTP checks made in every round; a round fails at the first failing check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub http: Vec<NamedHttpCheck>,
    /// Prometheus queries judged in every round, after the HTTP checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusChecks>,
}

fn default_failure_threshold() -> i32 {
    3
}

/// An HTTP check with a name for messages and status.stabilization.failedCheck.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NamedHttpCheck {
    /// Names the check in messages and in status.stabilization.failedCheck.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    #[serde(flatten)]
    pub check: HttpCheck,
}

/// A Prometheus server and the instant queries to judge on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PrometheusChecks {
    /// Prometheus base URL, e.g. http://prometheus.monitoring.svc:9090.
    #[schemars(regex(pattern = r"^https?://"))]
    pub address: String,
    /// Queries whose single value must stay within their bounds; no data or NaN fails the round.
    #[schemars(length(min = 1, max = 32))]
    pub queries: Vec<PrometheusQuery>,
}

/// An instant query whose single value must stay within [min, max]: the Django plan's "error rate < 0.1 %".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.min) || has(self.max)").message("a Prometheus query needs min or max"))]
pub struct PrometheusQuery {
    /// Names the query in messages and in status.stabilization.failedCheck.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// PromQL returning one series or a scalar, e.g. `sum(rate(http_requests_total{code=~"5.."}[5m]))`.
    #[schemars(length(min = 1))]
    pub query: String,
    /// The lowest value that passes (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The highest value that passes (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// When and how a Cutover undoes its switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackPolicy {
    /// Switch back by itself when verification or stabilization fails. Default true.
    #[serde(default = "default_true")]
    pub automatic: bool,
    /// Also restore the database from the pre-switch Backup. The writers are stopped first (see
    /// `quiesce`), so what is lost is exactly the writes between the backup and that stop; status
    /// states the window. Also taken when the migration fails before the switch.
    #[serde(default)]
    pub restore_database: bool,
    /// How the writers are stopped before a rollback changes data (restoreDatabase or job): the
    /// Deployments of both sides are scaled to zero, with these, and the Job runs (e.g. a
    /// maintenance-mode switch). Afterwards `from` and these come back at their replica counts;
    /// `to` stays at zero until someone fixes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiesce: Option<Quiesce>,
    /// A Job run with the writers stopped, after the restore if there is one, before the old side comes
    /// back. Without restoreDatabase: a downgrade (`alembic downgrade -1`), which keeps the writes; with
    /// it: what the snapshot does not cover (a cache flush, a search reindex). Its failure ends the
    /// rollback with the writers still stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobStep>,
}

impl Default for RollbackPolicy {
    fn default() -> Self {
        Self {
            automatic: true,
            restore_database: false,
            quiesce: None,
            job: None,
        }
    }
}

impl RollbackPolicy {
    /// Whether a rollback changes data, and so stops the writers first.
    pub fn changes_data(&self, has_backup: bool) -> bool {
        (self.restore_database && has_backup) || self.job.is_some()
    }
}

/// What else writes to the database, beyond the two sides' Deployments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quiesce {
    /// More Deployments to scale to zero (workers, cron-like consumers) in the Cutover's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub deployments: Vec<String>,
    /// A Job run once the Deployments are down, e.g. one that puts the app into maintenance mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobStep>,
    /// How long the writers' Pods may take to end. Default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationString>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CutoverPhase {
    #[default]
    Pending,
    Preflight,
    BackingUp,
    Migrating,
    WaitingForReadiness,
    AwaitingApproval,
    Switching,
    Verifying,
    Stabilizing,
    Succeeded,
    RollingBack,
    RolledBack,
    Failed,
}

impl CutoverPhase {
    /// Every phase, for metrics that report one series per phase.
    pub const ALL: [CutoverPhase; 13] = [
        CutoverPhase::Pending,
        CutoverPhase::Preflight,
        CutoverPhase::BackingUp,
        CutoverPhase::Migrating,
        CutoverPhase::WaitingForReadiness,
        CutoverPhase::AwaitingApproval,
        CutoverPhase::Switching,
        CutoverPhase::Verifying,
        CutoverPhase::Stabilizing,
        CutoverPhase::Succeeded,
        CutoverPhase::RollingBack,
        CutoverPhase::RolledBack,
        CutoverPhase::Failed,
    ];

    /// Succeeded, Failed or RolledBack: the Cutover has ended and acts no more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CutoverPhase::Succeeded | CutoverPhase::Failed | CutoverPhase::RolledBack
        )
    }

    /// The phase's name as status, printer columns, condition reasons and metric labels show it.
    pub fn name(self) -> &'static str {
        match self {
            CutoverPhase::Pending => "Pending",
            CutoverPhase::Preflight => "Preflight",
            CutoverPhase::BackingUp => "BackingUp",
            CutoverPhase::Migrating => "Migrating",
            CutoverPhase::WaitingForReadiness => "WaitingForReadiness",
            CutoverPhase::AwaitingApproval => "AwaitingApproval",
            CutoverPhase::Switching => "Switching",
            CutoverPhase::Verifying => "Verifying",
            CutoverPhase::Stabilizing => "Stabilizing",
            CutoverPhase::Succeeded => "Succeeded",
            CutoverPhase::RollingBack => "RollingBack",
            CutoverPhase::RolledBack => "RolledBack",
            CutoverPhase::Failed => "Failed",
        }
    }
}

/// Which side serves traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActiveSide {
    From,
    To,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StepPhase {
    Running,
    Succeeded,
    Failed,
    Skipped,
}

/// The Cutover's whole memory: where it is, every step it took, and what it changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CutoverStatus {
    /// The metadata.generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (Succeeded), Reconciling (under way) and Stalled (Failed or RolledBack); while waiting for
    /// a GO only AwaitingApproval.
    #[serde(default, skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
    /// Where the Cutover is. Succeeded, RolledBack and Failed are final, except that a Failed Cutover
    /// left on `to` without a rollback (rollback.automatic false) still rolls back when spec.abort is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CutoverPhase>,
    /// The step under way (or the last one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveSide>,
    /// The deployment log: every step with its times, result and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,
    /// The pre-switch Backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_ref: Option<LocalObjectRef>,
    /// The migration Job and its report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationRecord>,
    /// The GO that opened the approval gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRecord>,
    /// What the switch replaced (JSON of the previous selector or backend), for rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_target: Option<String>,
    /// When traffic was pointed at `to`: the write of the switch (or the first reconcile that found it
    /// written). `trafficSwitch.settle` counts from here, not from the step's start, so a leader that
    /// died between recording the switch and writing it cannot make its successor skip the settle time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_time: Option<Time>,
    /// The same for the switch back to `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_back_time: Option<Time>,
    /// The rollback, once one started: why, what it stopped and restored, which writes were lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackRecord>,
    /// Progress of the watch window: rounds, the current run of failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization: Option<StabilizationRecord>,
    /// A Restore of the pre-switch Backup made by the rollback (rollback.restoreDatabase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_ref: Option<LocalObjectRef>,
    /// When the operator started the Cutover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the Cutover reached a final phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The newest webhook notifications, oldest first: pending ones are retried with backoff.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<NotificationRecord>,
}

/// One step of the Cutover, as the deployment log records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    /// The step: `preflight/<check>`, `backup`, `migration`, `readiness`, `approval`, `switch`,
    /// `verify/<check>`, `stabilization`, or a `rollback/…` step.
    pub name: String,
    /// Running, Succeeded, Failed or Skipped.
    pub phase: StepPhase,
    /// When the step started.
    pub start_time: Time,
    /// When the step ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// What the step found or did, e.g. why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Progress of the stabilization window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StabilizationRecord {
    /// Rounds of checks run so far.
    #[serde(default)]
    pub rounds: i32,
    /// Rounds the window must observe: one at its start and one every interval to its end. Time
    /// without rounds (an operator restart, a leader election) is not watched time: the window lasts
    /// until it has observed them all, longer than `duration` when there were gaps.
    #[serde(default)]
    pub expected_rounds: i32,
    /// Failed rounds in a row; failureThreshold of them trigger rollback.
    #[serde(default)]
    pub consecutive_failures: i32,
    /// When the newest round ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_round_time: Option<Time>,
    /// When the current run of failed rounds began (the first failing check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<Time>,
    /// The newest failure: which check, and what it saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// The check that failed last (named in the rollback reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_check: Option<String>,
}

/// The migration Job and what it reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationRecord {
    /// The migration Job.
    pub job_name: String,
    /// The migration's report (its termination message), truncated to 4 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// Who gave the GO, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    /// Everyone who signed off, each with the group signed for, e.g. `alice (devops), bob`.
    pub approved_by: String,
    /// The reasons given, joined with `; `.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the gate opened.
    pub time: Time,
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRecord {
    /// Why it rolled back, e.g. `verify/health failed: …` or `aborted (spec.abort)`.
    pub reason: String,
    /// The check whose failure triggered the rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_check: Option<String>,
    /// When the rollback started.
    pub start_time: Time,
    /// When traffic was back on the `from` side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_restored_time: Option<Time>,
    /// When the rollback ended, successfully or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Deployments scaled to zero before the rollback changed data, with the replicas they had
    /// (recorded before scaling, so a restarted operator brings them back to the right count).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped_writers: Vec<StoppedWriter>,
    /// When the last Pod of the stopped writers was gone: from here to the old side's return nothing
    /// wrote to the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writers_stopped_time: Option<Time>,
    /// Whether the database was restored from the pre-switch Backup.
    #[serde(default)]
    pub database_restored: bool,
    /// The writes the restore discarded: from the start of the pre-switch backup to the writers'
    /// stop (or to the restore's end when nothing could be stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_writes: Option<TimeWindow>,
    /// Set when the database was restored: which writes are lost, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_loss_warning: Option<String>,
}

/// A Deployment the rollback scaled to zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoppedWriter {
    /// The Deployment's name.
    pub deployment: String,
    /// Its replicas before the rollback scaled it to zero.
    pub replicas: i32,
    /// Whether the rollback brings it back (`to` stays down: it is the side that failed).
    pub resume: bool,
}

/// A window of time: the writes a database restore discarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimeWindow {
    /// Start: when the pre-switch backup started.
    pub from: Time,
    /// End: when the writers had stopped (or, if none could be stopped, when the restore ended).
    pub until: Time,
}

#[cfg(test)]
mod phase_name_tests {
    use super::CutoverPhase;

    #[test]
    fn every_phase_is_named_as_status_spells_it() {
        for phase in CutoverPhase::ALL {
            let serialized = serde_json::to_value(phase).unwrap();
            assert_eq!(serialized.as_str(), Some(phase.name()));
        }
    }
}
