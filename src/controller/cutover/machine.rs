//! The Cutover's state machine, pure: which step comes next given the spec and the status (the only
//! memory), and how a step's result changes the status. The reconciler only carries out what this
//! decides, so every path through the runbook — GO, NO-GO, rollback, abort — is unit-tested here.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::cutover::{
    ActiveSide, CutoverPhase, CutoverSpec, CutoverStatus, RollbackRecord, StabilizationRecord, StepPhase,
    StepRecord,
};
use crate::conditions::{set_health, Health};

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
    SwitchBack,
    VerifyFrom,
    RestoreDatabase,
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
            Step::SwitchBack => "rollback/switch-back",
            Step::VerifyFrom => "rollback/verify-from",
            Step::RestoreDatabase => "rollback/restore-database",
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
            Step::SwitchBack | Step::VerifyFrom | Step::RestoreDatabase => CutoverPhase::RollingBack,
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

/// The rollback steps: switch back and check the old side if traffic was touched, then restore the
/// database from the pre-switch Backup if asked to and one exists.
pub fn rollback_plan(spec: &CutoverSpec, status: &CutoverStatus) -> Vec<Step> {
    let mut plan = Vec::new();
    if traffic_touched(status) {
        plan.push(Step::SwitchBack);
        plan.push(Step::VerifyFrom);
    }
    if spec.rollback.restore_database && status.backup_ref.is_some() {
        plan.push(Step::RestoreDatabase);
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

fn record<'a>(status: &'a CutoverStatus, step: &Step) -> Option<&'a StepRecord> {
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
                            "rollback step {} failed: {message}; traffic is on {side}",
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
    // The runbook's answer to a failed migration: stop, and restore the database from the snapshot.
    if *step == Step::Migration && spec.rollback.restore_database && status.backup_ref.is_some() {
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

/// Marks `step` as started (once); returns whether it is new, i.e. worth an Event.
pub fn begin(status: &mut CutoverStatus, step: &Step, now: &Time) -> bool {
    status.phase = Some(step.phase());
    status.step = Some(step.name());
    if record(status, step).is_some_and(|r| r.phase == StepPhase::Running) {
        return false;
    }
    status.steps.push(StepRecord {
        name: step.name(),
        phase: StepPhase::Running,
        start_time: now.clone(),
        completion_time: None,
        message: None,
    });
    true
}

/// Updates the running step's message (what it waits for).
pub fn note(status: &mut CutoverStatus, step: &Step, message: String) {
    let name = step.name();
    if let Some(running) = status
        .steps
        .iter_mut()
        .rev()
        .find(|r| r.name == name && r.phase == StepPhase::Running)
    {
        running.message = Some(message);
    }
}

/// Ends the running step with `phase`; returns how long it took.
pub fn complete(
    status: &mut CutoverStatus,
    step: &Step,
    phase: StepPhase,
    message: String,
    now: &Time,
) -> Duration {
    let name = step.name();
    let Some(running) = status
        .steps
        .iter_mut()
        .rev()
        .find(|r| r.name == name && r.phase == StepPhase::Running)
    else {
        return Duration::ZERO;
    };
    running.phase = phase;
    running.message = Some(message);
    running.completion_time = Some(now.clone());
    elapsed(&running.start_time, now)
}

pub fn start_rollback(status: &mut CutoverStatus, reason: String, failed_check: Option<String>, now: &Time) {
    status.phase = Some(CutoverPhase::RollingBack);
    status.step = Some("rollback".into());
    status.rollback = Some(RollbackRecord {
        reason,
        failed_check,
        start_time: now.clone(),
        traffic_restored_time: None,
        completion_time: None,
        database_restored: false,
        data_loss_warning: None,
    });
}

pub fn finish(status: &mut CutoverStatus, phase: CutoverPhase, now: &Time) {
    status.phase = Some(phase);
    status.completion_time = Some(now.clone());
    if let Some(rollback) = status.rollback.as_mut() {
        rollback.completion_time.get_or_insert_with(|| now.clone());
    }
}

/// The kstatus conditions for the current phase; `message` explains it to a person.
pub fn set_conditions(status: &mut CutoverStatus, generation: Option<i64>, message: String, now: &Time) {
    let health = match status.phase.unwrap_or_default() {
        CutoverPhase::Succeeded => Health::Ready {
            reason: "Succeeded",
            message,
        },
        CutoverPhase::Failed => Health::Stalled {
            reason: "Failed",
            message,
        },
        CutoverPhase::RolledBack => Health::Stalled {
            reason: "RolledBack",
            message,
        },
        phase => Health::Progressing {
            reason: phase.name(),
            message,
        },
    };
    set_health(&mut status.conditions.0, health, generation, now);
}

pub fn elapsed(since: &Time, now: &Time) -> Duration {
    let seconds = now.0.duration_since(since.0).as_secs_f64();
    Duration::from_secs_f64(seconds.max(0.0))
}

/// How long until the next stabilization round is due; zero means now.
pub fn next_round_in(record: &StabilizationRecord, interval: Duration, now: &Time) -> Duration {
    match &record.last_round_time {
        None => Duration::ZERO,
        Some(last) => interval.saturating_sub(elapsed(last, now)),
    }
}

/// What a finished round means for the watch window.
#[derive(Debug, Clone, PartialEq)]
pub enum Watch {
    /// Keep watching; the next round is due after this long.
    Continue(Duration),
    /// The window passed with the last round healthy.
    Passed(String),
    /// failureThreshold rounds in a row failed.
    Failed(String),
}

/// Records one round (`failure` = the first failed check and what it saw) and judges the window.
/// The window only ends on a healthy round: an unresolved run of failures keeps it open until the
/// threshold decides.
pub fn record_round(
    record: &mut StabilizationRecord,
    failure: Option<(String, String)>,
    threshold: i32,
    window: (Duration, Duration),
    started: &Time,
    now: &Time,
) -> Watch {
    let (duration, interval) = window;
    record.rounds += 1;
    record.last_round_time = Some(now.clone());
    match failure {
        Some((check, message)) => {
            if record.consecutive_failures == 0 {
                record.failing_since = Some(now.clone());
            }
            record.consecutive_failures += 1;
            record.failed_check = Some(check.clone());
            record.last_failure = Some(format!("{check}: {message}"));
            if record.consecutive_failures >= threshold.max(1) {
                return Watch::Failed(format!(
                    "{} failed rounds in a row (threshold {threshold}); last: {check}: {message}",
                    record.consecutive_failures
                ));
            }
        }
        None => {
            record.consecutive_failures = 0;
            record.failing_since = None;
        }
    }
    if record.consecutive_failures == 0 && elapsed(started, now) >= duration {
        let failures = record
            .last_failure
            .as_ref()
            .map(|f| format!("; last failure seen: {f}"))
            .unwrap_or_default();
        return Watch::Passed(format!(
            "{} rounds over {}, healthy at the end{failures}",
            record.rounds,
            crate::duration::format_duration(duration)
        ));
    }
    Watch::Continue(interval)
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn restore_database_adds_a_restore_to_the_rollback() {
        let mut spec = full_spec();
        spec.rollback.restore_database = true;
        let status = after_succeeding(&spec, 7);
        assert_eq!(
            rollback_plan(&spec, &status),
            [Step::SwitchBack, Step::VerifyFrom, Step::RestoreDatabase]
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
        assert_eq!(rollback_plan(&spec, &failed), [Step::RestoreDatabase]);
    }

    #[test]
    fn stabilization_rolls_back_after_threshold_consecutive_failures_only() {
        let window = (Duration::from_secs(6), Duration::from_secs(1));
        let mut record = StabilizationRecord::default();
        let fail = || Some(("healthz".to_owned(), "answered 500".to_owned()));
        assert_eq!(
            record_round(&mut record, fail(), 3, window, &t(0), &t(0)),
            Watch::Continue(Duration::from_secs(1))
        );
        assert_eq!(
            record_round(&mut record, fail(), 3, window, &t(0), &t(1)),
            Watch::Continue(Duration::from_secs(1))
        );
        // A healthy round resets the run.
        assert_eq!(
            record_round(&mut record, None, 3, window, &t(0), &t(2)),
            Watch::Continue(Duration::from_secs(1))
        );
        assert_eq!(record.consecutive_failures, 0);
        assert!(record.failing_since.is_none());
        record_round(&mut record, fail(), 3, window, &t(0), &t(3));
        record_round(&mut record, fail(), 3, window, &t(0), &t(4));
        let Watch::Failed(message) = record_round(&mut record, fail(), 3, window, &t(0), &t(5)) else {
            panic!()
        };
        assert!(
            message.contains("3 failed rounds in a row") && message.contains("healthz"),
            "{message}"
        );
        assert_eq!(record.failing_since, Some(t(3)));
        assert_eq!(record.failed_check.as_deref(), Some("healthz"));
    }

    #[test]
    fn stabilization_passes_at_the_end_of_the_window_on_a_healthy_round() {
        let window = (Duration::from_secs(6), Duration::from_secs(1));
        let mut record = StabilizationRecord::default();
        for second in 0..6 {
            assert!(matches!(
                record_round(&mut record, None, 3, window, &t(0), &t(second)),
                Watch::Continue(_)
            ));
        }
        record_round(
            &mut record,
            Some(("healthz".into(), "timeout".into())),
            3,
            window,
            &t(0),
            &t(6),
        );
        assert!(matches!(
            record_round(&mut record, None, 3, window, &t(0), &t(7)),
            Watch::Passed(_)
        ));
        assert_eq!(
            next_round_in(&record, Duration::from_secs(1), &t(7)),
            Duration::from_secs(1)
        );
        assert_eq!(
            next_round_in(&record, Duration::from_secs(1), &t(9)),
            Duration::ZERO
        );
    }

    #[test]
    fn conditions_follow_kstatus() {
        let mut status = CutoverStatus {
            phase: Some(CutoverPhase::AwaitingApproval),
            ..Default::default()
        };
        set_conditions(&mut status, Some(1), "waiting".into(), &t(0));
        let reconciling = crate::conditions::find(&status.conditions.0, "Reconciling").unwrap();
        assert_eq!(
            (reconciling.status.as_str(), reconciling.reason.as_str()),
            ("True", "AwaitingApproval")
        );
        status.phase = Some(CutoverPhase::RolledBack);
        set_conditions(&mut status, Some(1), "rolled back".into(), &t(1));
        assert!(crate::conditions::is_true(&status.conditions.0, "Stalled"));
        assert!(!crate::conditions::is_true(&status.conditions.0, "Ready"));
        status.phase = Some(CutoverPhase::Succeeded);
        set_conditions(&mut status, Some(1), "done".into(), &t(2));
        assert!(crate::conditions::is_true(&status.conditions.0, "Ready"));
    }
}
