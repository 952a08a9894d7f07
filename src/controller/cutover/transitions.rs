//! How the reconciler's acts are written into the status, pure: a step begins, notes what it waits
//! for and completes; a rollback starts; the Cutover finishes; the kstatus conditions follow the
//! phase. The machine (`machine.rs`) decides; these only record.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::elapsed;
use super::machine::{record, Step};
use crate::api::cutover::{CutoverPhase, CutoverStatus, RollbackRecord, StepPhase, StepRecord};
use crate::conditions::{self, set_health, Desired, Health};

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
        stopped_writers: Vec::new(),
        writers_stopped_time: None,
        database_restored: false,
        lost_writes: None,
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

/// The condition a Cutover waiting for its GO carries instead of Ready/Reconciling.
pub const AWAITING_APPROVAL: &str = "AwaitingApproval";

/// The kstatus conditions for the current phase; `message` explains it to a person.
///
/// Waiting for a person's GO is neither work under way nor done: it carries `AwaitingApproval=True` and no
/// Ready/Reconciling/Stalled, which kstatus (Flux's health checks) reads as Current — a Kustomization with
/// `wait: true` does not time out on a change board — while `kubectl wait --for=condition=Ready` still
/// waits for the end, and Argo CD's health script shows Suspended.
pub fn set_conditions(status: &mut CutoverStatus, generation: Option<i64>, message: String, now: &Time) {
    let conditions = &mut status.conditions.0;
    let health = match status.phase.unwrap_or_default() {
        CutoverPhase::AwaitingApproval => {
            for kstatus_type in [conditions::READY, conditions::RECONCILING, conditions::STALLED] {
                conditions::remove(conditions, kstatus_type);
            }
            let waiting = Desired::new(AWAITING_APPROVAL, true, "AwaitingApproval", message);
            conditions::apply(conditions, waiting, generation, now);
            return;
        }
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
    conditions::remove(conditions, AWAITING_APPROVAL);
    set_health(conditions, health, generation, now);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap())
    }

    #[test]
    fn conditions_follow_kstatus() {
        let mut status = CutoverStatus {
            phase: Some(CutoverPhase::AwaitingApproval),
            ..Default::default()
        };
        status.phase = Some(CutoverPhase::Verifying);
        set_conditions(&mut status, Some(1), "checking".into(), &t(0));
        assert!(crate::conditions::is_true(&status.conditions.0, "Reconciling"));
        // Waiting for a person: no kstatus condition at all (Current), AwaitingApproval says why.
        status.phase = Some(CutoverPhase::AwaitingApproval);
        set_conditions(&mut status, Some(1), "waiting".into(), &t(0));
        let types: Vec<&str> = status.conditions.0.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["AwaitingApproval"]);
        status.phase = Some(CutoverPhase::RolledBack);
        set_conditions(&mut status, Some(1), "rolled back".into(), &t(1));
        assert!(crate::conditions::find(&status.conditions.0, "AwaitingApproval").is_none());
        assert!(crate::conditions::is_true(&status.conditions.0, "Stalled"));
        assert!(!crate::conditions::is_true(&status.conditions.0, "Ready"));
        status.phase = Some(CutoverPhase::Succeeded);
        set_conditions(&mut status, Some(1), "done".into(), &t(2));
        assert!(crate::conditions::is_true(&status.conditions.0, "Ready"));
    }

    #[test]
    fn a_step_is_begun_once_noted_while_running_and_completed_with_its_duration() {
        let mut status = CutoverStatus::default();
        assert!(begin(&mut status, &Step::Readiness, &t(0)));
        assert!(!begin(&mut status, &Step::Readiness, &t(1)));
        assert_eq!(status.phase, Some(CutoverPhase::WaitingForReadiness));
        assert_eq!(status.step.as_deref(), Some("readiness"));
        note(&mut status, &Step::Readiness, "1/2 Pods Ready".into());
        assert_eq!(status.steps[0].message.as_deref(), Some("1/2 Pods Ready"));
        let took = complete(
            &mut status,
            &Step::Readiness,
            StepPhase::Succeeded,
            "ready".into(),
            &t(7),
        );
        assert_eq!(took, Duration::from_secs(7));
        assert_eq!(status.steps[0].completion_time, Some(t(7)));
        // Nothing running any more: a late note or a second completion changes nothing.
        note(&mut status, &Step::Readiness, "late".into());
        let again = complete(
            &mut status,
            &Step::Readiness,
            StepPhase::Failed,
            "x".into(),
            &t(9),
        );
        assert_eq!(again, Duration::ZERO);
        assert_eq!(status.steps[0].message.as_deref(), Some("ready"));
        assert_eq!(status.steps[0].phase, StepPhase::Succeeded);
    }

    #[test]
    fn finishing_a_rollback_keeps_its_first_completion_time() {
        let mut status = CutoverStatus::default();
        start_rollback(
            &mut status,
            "verify/health failed".into(),
            Some("health".into()),
            &t(0),
        );
        assert_eq!(status.phase, Some(CutoverPhase::RollingBack));
        assert_eq!(status.step.as_deref(), Some("rollback"));
        if let Some(rollback) = status.rollback.as_mut() {
            rollback.completion_time = Some(t(3));
        }
        finish(&mut status, CutoverPhase::RolledBack, &t(5));
        assert_eq!(status.completion_time, Some(t(5)));
        assert_eq!(status.rollback.unwrap().completion_time, Some(t(3)));
    }
}
