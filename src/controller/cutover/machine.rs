//! The Cutover's state machine, pure: which step comes next given the spec and the status (the only
//! memory), and how a step's result changes the status. The reconciler only carries out what this
//! decides, so every path through the runbook — GO, NO-GO, rollback, abort — is unit-tested here.
//! Writing a step's start and end into the status is in `transitions.rs`; the stabilization window's
//! rounds are judged in `stabilization.rs`.

use crate::api::cutover::{ActiveSide, CutoverPhase, CutoverSpec, CutoverStatus, StepPhase, StepRecord};

/// One step of the runbook. Forward steps run in the order of [`forward_plan`]; rollback steps in the
/// order of [`rollback_plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Preflight(String),
    Backup,
    Migration,
    Readiness,
    Approval,
    Switch,
    Verify(String),
    Stabilization,
    StopWriters,
    RestoreDatabase,
    RollbackJob,
    Resume,
    SwitchBack,
    VerifyFrom,
}

impl Step {
    /// The name in `status.steps` (and in Events and `kubectl get`).
    pub fn name(&self) -> String {
        match self {
            Step::Preflight(check) => format!("preflight/{check}"),
            Step::Verify(check) => format!("verify/{check}"),
            other => other.kind().to_owned(),
        }
    }

    /// The step without its check name: a metric label of bounded cardinality.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Preflight(_) => "preflight",
            Step::Backup => "backup",
            Step::Migration => "migration",
            Step::Readiness => "readiness",
            Step::Approval => "approval",
            Step::Switch => "switch",
            Step::Verify(_) => "verify",
            Step::Stabilization => "stabilization",
            Step::StopWriters => "rollback/stop-writers",
            Step::RestoreDatabase => "rollback/restore-database",
            Step::RollbackJob => "rollback/job",
            Step::Resume => "rollback/resume",
            Step::SwitchBack => "rollback/switch-back",
            Step::VerifyFrom => "rollback/verify-from",
        }
    }

    pub fn phase(&self) -> CutoverPhase {
        match self {
            Step::Preflight(_) => CutoverPhase::Preflight,
            Step::Backup => CutoverPhase::BackingUp,
            Step::Migration => CutoverPhase::Migrating,
            Step::Readiness => CutoverPhase::WaitingForReadiness,
            Step::Approval => CutoverPhase::AwaitingApproval,
            Step::Switch => CutoverPhase::Switching,
            Step::Verify(_) => CutoverPhase::Verifying,
            Step::Stabilization => CutoverPhase::Stabilizing,
            Step::StopWriters
            | Step::RestoreDatabase
            | Step::RollbackJob
            | Step::Resume
            | Step::SwitchBack
            | Step::VerifyFrom => CutoverPhase::RollingBack,
        }
    }
}

/// The forward steps of `spec`, in runbook order.
pub fn forward_plan(spec: &CutoverSpec) -> Vec<Step> {
    let mut plan: Vec<Step> = spec
        .preflight
        .iter()
        .map(|c| Step::Preflight(c.name.clone()))
        .collect();
    if spec.backup.is_some() {
        plan.push(Step::Backup);
    }
    if spec.migration.is_some() {
        plan.push(Step::Migration);
    }
    plan.push(Step::Readiness);
    if spec.approval.as_ref().is_some_and(|a| a.required) {
        plan.push(Step::Approval);
    }
    plan.push(Step::Switch);
    plan.extend(spec.verify.iter().map(|c| Step::Verify(c.name.clone())));
    if spec.stabilization.is_some() {
        plan.push(Step::Stabilization);
    }
    plan
}

/// The rollback steps. Without a change of data: switch back and check the old side. With one
/// (restoreDatabase with a pre-switch Backup, or a rollback Job), the compose runbook's emergency
/// restore: stop the writers first, restore, run the rollback Job, bring the old side back, and only
/// then switch back and check it — so no write lands in a database that is being replaced.
pub fn rollback_plan(spec: &CutoverSpec, status: &CutoverStatus) -> Vec<Step> {
    let restore = spec.rollback.restore_database && status.backup_ref.is_some();
    let mut plan = Vec::new();
    if spec.rollback.changes_data(status.backup_ref.is_some()) {
        plan.push(Step::StopWriters);
        if restore {
            plan.push(Step::RestoreDatabase);
        }
        if spec.rollback.job.is_some() {
            plan.push(Step::RollbackJob);
        }
        plan.push(Step::Resume);
    }
    if traffic_touched(status) {
        plan.push(Step::SwitchBack);
    }
    if traffic_touched(status) || !plan.is_empty() {
        plan.push(Step::VerifyFrom);
    }
    plan
}

/// Traffic may have moved once the previous target was recorded: it is written just before the patch.
pub fn traffic_touched(status: &CutoverStatus) -> bool {
    status.previous_target.is_some()
}

pub fn is_terminal(phase: Option<CutoverPhase>) -> bool {
    matches!(
        phase,
        Some(CutoverPhase::Succeeded | CutoverPhase::Failed | CutoverPhase::RolledBack)
    )
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Finished: nothing to do until the spec changes.
    Idle,
    /// Start or continue this step.
    Run(Step),
    StartRollback {
        reason: String,
        failed_check: Option<String>,
    },
    Finish {
        phase: CutoverPhase,
        message: String,
    },
}

/// The latest record of `step` in the status.
pub(super) fn record<'a>(status: &'a CutoverStatus, step: &Step) -> Option<&'a StepRecord> {
    let name = step.name();
    status.steps.iter().rev().find(|r| r.name == name)
}

/// What happens next. Reads only the spec and the status, so a restarted operator decides the same.
pub fn decide(spec: &CutoverSpec, status: &CutoverStatus) -> Decision {
    let in_rollback = status.rollback.is_some();
    if is_terminal(status.phase) {
        // A Failed Cutover left on `to` (rollback.automatic false) can still be rolled back by abort.
        let stuck_on_to = status.phase == Some(CutoverPhase::Failed) && status.active == Some(ActiveSide::To);
        if spec.abort && stuck_on_to && !in_rollback {
            return Decision::StartRollback {
                reason: "aborted (spec.abort) after a failed check".into(),
                failed_check: None,
            };
        }
        return Decision::Idle;
    }
    if in_rollback {
        for step in rollback_plan(spec, status) {
            match record(status, &step).map(|r| r.phase) {
                None | Some(StepPhase::Running) => return Decision::Run(step),
                Some(StepPhase::Failed) => {
                    let message = record(status, &step)
                        .and_then(|r| r.message.clone())
                        .unwrap_or_default();
                    let side = side_name(status.active);
                    return Decision::Finish {
                        phase: CutoverPhase::Failed,
                        message: format!(
                            "rollback step {} failed: {message}; the switch last pointed traffic at {side}",
                            step.name()
                        ),
                    };
                }
                Some(StepPhase::Succeeded | StepPhase::Skipped) => {}
            }
        }
        let reason = status
            .rollback
            .as_ref()
            .map(|r| r.reason.clone())
            .unwrap_or_default();
        return Decision::Finish {
            phase: CutoverPhase::RolledBack,
            message: format!("rolled back: {reason}"),
        };
    }
    if spec.abort {
        if traffic_touched(status) {
            return Decision::StartRollback {
                reason: "aborted (spec.abort)".into(),
                failed_check: None,
            };
        }
        return Decision::Finish {
            phase: CutoverPhase::Failed,
            message: "aborted (spec.abort) before the switch; traffic was not touched".into(),
        };
    }
    for step in forward_plan(spec) {
        let Some(done) = record(status, &step) else {
            return Decision::Run(step);
        };
        match done.phase {
            StepPhase::Running => return Decision::Run(step),
            StepPhase::Succeeded | StepPhase::Skipped => {}
            StepPhase::Failed => {
                return after_failure(spec, status, &step, done.message.clone().unwrap_or_default())
            }
        }
    }
    let message = if spec.dry_run {
        "dry run finished: every check ran, nothing was changed".to_owned()
    } else {
        "traffic is on the new side and stayed healthy".to_owned()
    };
    Decision::Finish {
        phase: CutoverPhase::Succeeded,
        message,
    }
}

fn after_failure(spec: &CutoverSpec, status: &CutoverStatus, step: &Step, message: String) -> Decision {
    let failed_check = match step {
        Step::Preflight(name) | Step::Verify(name) => Some(name.clone()),
        Step::Stabilization => status.stabilization.as_ref().and_then(|s| s.failed_check.clone()),
        other => Some(other.kind().to_owned()),
    };
    let reason = format!("{} failed: {message}", step.name());
    if traffic_touched(status) {
        if spec.rollback.automatic {
            return Decision::StartRollback { reason, failed_check };
        }
        return Decision::Finish {
            phase: CutoverPhase::Failed,
            message: format!("{reason}; rollback.automatic is false, so traffic stays on `to`: set spec.abort to roll back"),
        };
    }
    // The runbook's answer to a failed migration: stop, and restore the database from the snapshot
    // (or run the rollback Job, e.g. a downgrade).
    if *step == Step::Migration && spec.rollback.changes_data(status.backup_ref.is_some()) {
        return Decision::StartRollback { reason, failed_check };
    }
    Decision::Finish {
        phase: CutoverPhase::Failed,
        message: format!("NO-GO: {reason}; traffic was not touched"),
    }
}

fn side_name(side: Option<ActiveSide>) -> &'static str {
    match side {
        Some(ActiveSide::To) => "`to`",
        _ => "`from`",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::cutover::transitions::{begin, complete, finish, start_rollback};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn spec(extra: serde_json::Value) -> CutoverSpec {
        let mut base = json!({
            "trafficSwitch": {"service": {"name": "web"}},
            "from": {"selector": {"app": "web", "track": "blue"}, "deployment": "web-blue"},
            "to": {"selector": {"app": "web", "track": "green"}, "deployment": "web-green"},
        });
        for (key, value) in extra.as_object().unwrap() {
            base[key] = value.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn full_spec() -> CutoverSpec {
        spec(json!({
            "preflight": [{"name": "verify-deploy", "job": {"image": "x", "command": ["true"]}},
                          {"name": "uat", "http": {"url": "http://web-green.hotel.svc/health"}}],
            "backup": {"policyRef": {"name": "hotel-db"}},
            "migration": {"job": {"image": "x", "command": ["migrate"]}},
            "approval": {"required": true},
            "verify": [{"name": "health", "http": {"url": "http://web.hotel.svc/health"}}],
            "stabilization": {"duration": "30m", "interval": "30s"}
        }))
    }

    fn t(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap())
    }

    /// Walks the plan, every step succeeding, returning the status after `steps` of them.
    fn after_succeeding(spec: &CutoverSpec, steps: usize) -> CutoverStatus {
        let mut status = CutoverStatus::default();
        for (i, step) in forward_plan(spec).into_iter().take(steps).enumerate() {
            assert_eq!(decide(spec, &status), Decision::Run(step.clone()));
            begin(&mut status, &step, &t(i as i64));
            if step == Step::Switch {
                status.previous_target = Some(r#"{"app":"web","track":"blue"}"#.into());
                status.active = Some(ActiveSide::To);
            }
            if step == Step::Backup {
                status.backup_ref = Some(crate::api::common::LocalObjectRef { name: "b".into() });
            }
            complete(
                &mut status,
                &step,
                StepPhase::Succeeded,
                "ok".into(),
                &t(i as i64 + 1),
            );
        }
        status
    }

    #[test]
    fn the_plan_follows_the_hotel_runbook_order() {
        let names: Vec<String> = forward_plan(&full_spec()).iter().map(Step::name).collect();
        assert_eq!(
            names,
            [
                "preflight/verify-deploy",
                "preflight/uat",
                "backup",
                "migration",
                "readiness",
                "approval",
                "switch",
                "verify/health",
                "stabilization"
            ]
        );
        let minimal: Vec<String> = forward_plan(&spec(json!({}))).iter().map(Step::name).collect();
        assert_eq!(minimal, ["readiness", "switch"]);
    }

    #[test]
    fn every_step_succeeding_ends_succeeded_with_the_whole_log() {
        let spec = full_spec();
        let status = after_succeeding(&spec, 9);
        assert!(matches!(
            decide(&spec, &status),
            Decision::Finish {
                phase: CutoverPhase::Succeeded,
                ..
            }
        ));
        assert_eq!(status.steps.len(), 9);
        assert!(status
            .steps
            .iter()
            .all(|s| s.completion_time.is_some() && s.phase == StepPhase::Succeeded));
    }

    #[test]
    fn a_running_step_is_resumed_not_restarted() {
        let spec = full_spec();
        let mut status = after_succeeding(&spec, 3);
        assert_eq!(decide(&spec, &status), Decision::Run(Step::Migration));
        assert!(begin(&mut status, &Step::Migration, &t(10)));
        // The operator restarts here: the same step, and no second record.
        assert_eq!(decide(&spec, &status), Decision::Run(Step::Migration));
        assert!(!begin(&mut status, &Step::Migration, &t(11)));
        assert_eq!(status.steps.iter().filter(|s| s.name == "migration").count(), 1);
        assert_eq!(status.steps.last().unwrap().start_time, t(10));
    }

    #[test]
    fn a_failed_preflight_is_no_go_without_touching_traffic() {
        let spec = full_spec();
        let mut status = CutoverStatus::default();
        let step = Step::Preflight("verify-deploy".into());
        begin(&mut status, &step, &t(0));
        complete(
            &mut status,
            &step,
            StepPhase::Failed,
            "Job exited 1".into(),
            &t(1),
        );
        match decide(&spec, &status) {
            Decision::Finish {
                phase: CutoverPhase::Failed,
                message,
            } => {
                assert!(
                    message.contains("NO-GO")
                        && message.contains("preflight/verify-deploy")
                        && message.contains("not touched"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(rollback_plan(&spec, &status).is_empty());
    }

    #[test]
    fn a_failure_after_the_switch_rolls_back_naming_the_check() {
        let spec = full_spec();
        let mut status = after_succeeding(&spec, 7);
        let step = Step::Verify("health".into());
        begin(&mut status, &step, &t(20));
        complete(
            &mut status,
            &step,
            StepPhase::Failed,
            "answered 500".into(),
            &t(21),
        );
        let Decision::StartRollback { reason, failed_check } = decide(&spec, &status) else {
            panic!()
        };
        assert_eq!(failed_check.as_deref(), Some("health"));
        assert!(reason.contains("answered 500"));
        start_rollback(&mut status, reason, failed_check, &t(21));
        assert_eq!(decide(&spec, &status), Decision::Run(Step::SwitchBack));
        for step in [Step::SwitchBack, Step::VerifyFrom] {
            begin(&mut status, &step, &t(22));
            complete(&mut status, &step, StepPhase::Succeeded, "ok".into(), &t(23));
        }
        assert!(matches!(
            decide(&spec, &status),
            Decision::Finish {
                phase: CutoverPhase::RolledBack,
                ..
            }
        ));
    }

    #[test]
    fn without_automatic_rollback_a_failure_waits_for_abort() {
        let mut spec = full_spec();
        spec.rollback.automatic = false;
        let mut status = after_succeeding(&spec, 7);
        let step = Step::Verify("health".into());
        begin(&mut status, &step, &t(20));
        complete(
            &mut status,
            &step,
            StepPhase::Failed,
            "answered 500".into(),
            &t(21),
        );
        let Decision::Finish {
            phase: CutoverPhase::Failed,
            message,
        } = decide(&spec, &status)
        else {
            panic!()
        };
        assert!(message.contains("spec.abort"));
        finish(&mut status, CutoverPhase::Failed, &t(22));
        assert_eq!(decide(&spec, &status), Decision::Idle);
        spec.abort = true;
        assert!(matches!(decide(&spec, &status), Decision::StartRollback { .. }));
    }

    #[test]
    fn abort_before_the_switch_fails_and_after_it_rolls_back() {
        let mut spec = full_spec();
        let before = after_succeeding(&spec, 3);
        let after = after_succeeding(&spec, 7);
        spec.abort = true;
        assert!(matches!(
            decide(&spec, &before),
            Decision::Finish {
                phase: CutoverPhase::Failed,
                ..
            }
        ));
        assert!(matches!(decide(&spec, &after), Decision::StartRollback { .. }));
    }

    #[test]
    fn restore_database_stops_the_writers_and_restores_before_switching_back() {
        let mut spec = full_spec();
        spec.rollback.restore_database = true;
        let status = after_succeeding(&spec, 7);
        assert_eq!(
            rollback_plan(&spec, &status),
            [
                Step::StopWriters,
                Step::RestoreDatabase,
                Step::Resume,
                Step::SwitchBack,
                Step::VerifyFrom
            ]
        );
        // A failed migration restores the snapshot too (the runbook's "Stop cutover; restore DB").
        let mut failed = after_succeeding(&spec, 3);
        begin(&mut failed, &Step::Migration, &t(5));
        complete(
            &mut failed,
            &Step::Migration,
            StepPhase::Failed,
            "exit 1".into(),
            &t(6),
        );
        assert!(matches!(decide(&spec, &failed), Decision::StartRollback { .. }));
        assert_eq!(
            rollback_plan(&spec, &failed),
            [
                Step::StopWriters,
                Step::RestoreDatabase,
                Step::Resume,
                Step::VerifyFrom
            ]
        );
    }

    #[test]
    fn a_rollback_job_runs_after_the_restore_or_alone_with_the_writers_stopped() {
        let mut spec = full_spec();
        spec.rollback.job =
            Some(serde_json::from_value(json!({"image": "x", "command": ["downgrade"]})).unwrap());
        let status = after_succeeding(&spec, 7);
        assert_eq!(
            rollback_plan(&spec, &status),
            [
                Step::StopWriters,
                Step::RollbackJob,
                Step::Resume,
                Step::SwitchBack,
                Step::VerifyFrom
            ]
        );
        spec.rollback.restore_database = true;
        let names: Vec<String> = rollback_plan(&spec, &status).iter().map(Step::name).collect();
        assert_eq!(
            names,
            [
                "rollback/stop-writers",
                "rollback/restore-database",
                "rollback/job",
                "rollback/resume",
                "rollback/switch-back",
                "rollback/verify-from"
            ]
        );
        // restoreDatabase without a pre-switch Backup (no spec.backup) and no Job changes no data.
        let mut plain = full_spec();
        plain.backup = None;
        plain.rollback.restore_database = true;
        let status = after_succeeding(&plain, 6);
        assert_eq!(
            rollback_plan(&plain, &status),
            [Step::SwitchBack, Step::VerifyFrom]
        );
    }
}
