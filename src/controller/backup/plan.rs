//! The pure decisions of the Backup controller: the status while the Job runs, the terminal status from
//! how the Job ended and what the agent reported (the success gate), and the Event that announces it.
//! No API calls here, so every rule has a unit test.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;

use crate::agent::result::AgentResult;
use crate::api::backup::{BackupPhase, BackupStatus};
use crate::conditions::{set_health, Health};
use crate::duration::format_duration;
use crate::jobs::{AgentReport, JobOutcome};

/// A finished Backup is never looked at again: its Job is gone or done.
pub fn is_finished(status: &BackupStatus) -> bool {
    matches!(status.phase, Some(BackupPhase::Succeeded | BackupPhase::Failed))
}

/// The intent written before the Job is created: phase Running with the Job's name, so a restarted
/// operator finds and follows the same Job instead of making a second one.
pub fn start(status: &mut BackupStatus, job_name: &str, now: &Time) {
    status.phase = Some(BackupPhase::Running);
    status.job_name = Some(job_name.to_owned());
    status.start_time.get_or_insert(now.clone());
    status.message = Some(format!("backing up through Job {job_name}"));
    set_running_health(status, job_name, now);
}

/// The Job exists and has not ended yet.
pub fn still_running(status: &mut BackupStatus, job_name: &str, now: &Time) {
    status.phase = Some(BackupPhase::Running);
    status.job_name = Some(job_name.to_owned());
    set_running_health(status, job_name, now);
}

fn set_running_health(status: &mut BackupStatus, job_name: &str, now: &Time) {
    let generation = status.observed_generation;
    set_health(
        &mut status.conditions.0,
        Health::Progressing {
            reason: "Running",
            message: format!("Job {job_name} runs the agent"),
        },
        generation,
        now,
    );
}

/// Waiting for a person (a missing policy or Secret): the phase stays what it was, Pending if none.
pub fn waiting(status: &mut BackupStatus, message: &str) {
    status.phase = Some(status.phase.unwrap_or(BackupPhase::Pending));
    status.message = Some(message.to_owned());
}

/// The terminal status from the Job's outcome and the agent's report. A Job that completed without a
/// successful result is a failure: no success is reported that the agent did not confirm.
pub fn finish(status: &mut BackupStatus, outcome: JobOutcome, report: Option<AgentReport>, now: &Time) {
    let generation = status.observed_generation;
    status.completion_time = Some(now.clone());
    match (outcome, report) {
        (JobOutcome::Succeeded, Some(AgentReport::Result(result)))
            if result.ok && result.snapshot_id.is_some() =>
        {
            apply_result(status, &result);
            status.phase = Some(BackupPhase::Succeeded);
            let size = result
                .size_bytes
                .map(|s| format!(", {s} bytes"))
                .unwrap_or_default();
            status.message = Some(format!(
                "snapshot {}{size}",
                result.snapshot_id.clone().unwrap_or_default()
            ));
            set_health(
                &mut status.conditions.0,
                Health::Ready {
                    reason: "Succeeded",
                    message: status.message.clone().unwrap_or_default(),
                },
                generation,
                now,
            );
        }
        (_, report) => {
            let message = match report {
                Some(AgentReport::Result(result)) => {
                    apply_result(status, &result);
                    failure_message(outcome, &result)
                }
                Some(AgentReport::Unstructured(text)) => text,
                None => {
                    "the backup Job ended without a finished agent container (deleted or evicted?)".into()
                }
            };
            status.phase = Some(BackupPhase::Failed);
            status.message = Some(message.clone());
            set_health(
                &mut status.conditions.0,
                Health::Stalled {
                    reason: "BackupFailed",
                    message,
                },
                generation,
                now,
            );
        }
    }
    if let Some(took) = duration(status) {
        status.duration = Some(format_duration(took));
    }
}

/// What the agent measured is kept even when the Backup failed: it tells a person how far it got.
/// Why a backup whose agent did report counts as failed. A success-sounding report that the gate
/// refused must not read like the agent's own failure.
fn failure_message(outcome: JobOutcome, result: &AgentResult) -> String {
    match (result.ok, &result.snapshot_id, &result.message) {
        (false, _, Some(message)) => message.clone(),
        (false, _, None) => "the agent reported a failure without a message".into(),
        (true, None, _) => {
            "the agent reported success but confirmed no snapshot id; nothing is recorded as backed up".into()
        }
        (true, Some(snapshot), _) => {
            format!(
            "the backup Job {} although the agent reported snapshot {snapshot}; the snapshot is not trusted",
            if outcome == JobOutcome::Failed { "failed" } else { "did not complete" }
        )
        }
    }
}

fn apply_result(status: &mut BackupStatus, result: &AgentResult) {
    status.snapshot_id = result.snapshot_id.clone();
    status.size_bytes = result.size_bytes.and_then(|s| i64::try_from(s).ok());
    status.size = result.size_bytes.map(crate::size::human);
    status.sha256 = result.sha256.clone();
    if let Ok(start) = result.start_time.parse::<jiff::Timestamp>() {
        status.start_time = Some(Time(start));
    }
}

/// From start to completion, in whole seconds (never negative); none until both are known.
pub fn duration(status: &BackupStatus) -> Option<std::time::Duration> {
    let (Some(start), Some(end)) = (&status.start_time, &status.completion_time) else {
        return None;
    };
    let elapsed = end.0.duration_since(start.0);
    Some(std::time::Duration::from_secs(elapsed.as_secs().max(0) as u64))
}

/// The Event that announces a finished Backup: its type, reason and message.
pub fn result_event(status: &BackupStatus) -> (EventType, &'static str, String) {
    let message = status.message.clone().unwrap_or_default();
    if status.phase == Some(BackupPhase::Succeeded) {
        (EventType::Normal, "Succeeded", message)
    } else {
        (EventType::Warning, "Failed", message)
    }
}

/// The seconds a successful Backup took, for the duration histogram (failures are not observed).
pub fn success_seconds(status: &BackupStatus) -> Option<f64> {
    if status.phase != Some(BackupPhase::Succeeded) {
        return None;
    }
    let (Some(start), Some(end)) = (&status.start_time, &status.completion_time) else {
        return None;
    };
    Some(end.0.duration_since(start.0).as_secs_f64().max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::result::Mode;
    use crate::conditions::{self, READY, RECONCILING, STALLED};

    fn time(text: &str) -> Time {
        Time(text.parse().unwrap())
    }

    /// A Backup that has been running since 02:00 (the status `start` wrote).
    fn running() -> BackupStatus {
        let mut status = BackupStatus {
            observed_generation: Some(1),
            ..Default::default()
        };
        start(&mut status, "nightly-backup", &time("2026-05-01T02:00:00Z"));
        status
    }

    /// What a successful agent reports: ok, a snapshot id, size and checksum.
    fn confirmed() -> AgentResult {
        let mut result = AgentResult::new(Mode::Backup, "2026-05-01T02:00:05Z".parse().unwrap());
        result.ok = true;
        result.snapshot_id = Some("4f2a9c".into());
        result.size_bytes = Some(1234);
        result.sha256 = Some("abc123".into());
        result
    }

    fn finished(outcome: JobOutcome, report: Option<AgentReport>) -> BackupStatus {
        let mut status = running();
        finish(&mut status, outcome, report, &time("2026-05-01T02:01:05Z"));
        status
    }

    fn ready_reason(status: &BackupStatus) -> (String, String) {
        let ready = conditions::find(&status.conditions.0, READY).expect("Ready is always set");
        (ready.status.clone(), ready.reason.clone())
    }

    fn assert_failed_with(status: &BackupStatus, message: &str) {
        assert_eq!(status.phase, Some(BackupPhase::Failed));
        assert_eq!(status.message.as_deref(), Some(message));
        assert_eq!(ready_reason(status), ("False".into(), "BackupFailed".into()));
        assert!(conditions::is_true(&status.conditions.0, STALLED));
        assert!(!conditions::is_true(&status.conditions.0, RECONCILING));
    }

    #[test]
    fn starting_writes_the_intent_before_the_job_exists() {
        let status = running();
        assert_eq!(status.phase, Some(BackupPhase::Running));
        assert_eq!(status.job_name.as_deref(), Some("nightly-backup"));
        assert_eq!(status.start_time, Some(time("2026-05-01T02:00:00Z")));
        assert_eq!(
            status.message.as_deref(),
            Some("backing up through Job nightly-backup")
        );
        assert_eq!(ready_reason(&status), ("False".into(), "Running".into()));
        assert!(conditions::is_true(&status.conditions.0, RECONCILING));
    }

    #[test]
    fn a_restarted_start_keeps_the_first_start_time() {
        let mut status = running();
        start(&mut status, "nightly-backup", &time("2026-05-01T02:30:00Z"));
        assert_eq!(status.start_time, Some(time("2026-05-01T02:00:00Z")));
    }

    #[test]
    fn a_completed_job_with_a_confirmed_snapshot_succeeds() {
        let status = finished(
            JobOutcome::Succeeded,
            Some(AgentReport::Result(Box::new(confirmed()))),
        );
        assert_eq!(status.phase, Some(BackupPhase::Succeeded));
        assert_eq!(status.message.as_deref(), Some("snapshot 4f2a9c, 1234 bytes"));
        assert_eq!(status.snapshot_id.as_deref(), Some("4f2a9c"));
        assert_eq!(status.size_bytes, Some(1234));
        assert_eq!(status.sha256.as_deref(), Some("abc123"));
        assert_eq!(ready_reason(&status), ("True".into(), "Succeeded".into()));
        assert!(!conditions::is_true(&status.conditions.0, RECONCILING));
        assert!(!conditions::is_true(&status.conditions.0, STALLED));
        // The agent's own start time replaces the operator's; the duration runs from it.
        assert_eq!(status.start_time, Some(time("2026-05-01T02:00:05Z")));
        assert_eq!(status.completion_time, Some(time("2026-05-01T02:01:05Z")));
        assert_eq!(duration(&status), Some(std::time::Duration::from_secs(60)));
        assert_eq!(
            status.duration,
            Some(format_duration(std::time::Duration::from_secs(60)))
        );
    }

    #[test]
    fn a_success_without_a_size_names_only_the_snapshot() {
        let mut result = confirmed();
        result.size_bytes = None;
        let status = finished(JobOutcome::Succeeded, Some(AgentReport::Result(Box::new(result))));
        assert_eq!(status.message.as_deref(), Some("snapshot 4f2a9c"));
        assert_eq!(status.size_bytes, None);
    }

    #[test]
    fn a_completed_job_whose_result_has_no_snapshot_id_is_a_failure() {
        let mut result = confirmed();
        result.snapshot_id = None;
        let status = finished(JobOutcome::Succeeded, Some(AgentReport::Result(Box::new(result))));
        assert_failed_with(
            &status,
            "the agent reported success but confirmed no snapshot id; nothing is recorded as backed up",
        );
        assert_eq!(status.snapshot_id, None);
    }

    #[test]
    fn a_completed_job_whose_result_is_not_ok_is_a_failure_with_the_agents_message() {
        let mut result = confirmed();
        result.ok = false;
        result.message = Some("restic: repository is already locked".into());
        let status = finished(JobOutcome::Succeeded, Some(AgentReport::Result(Box::new(result))));
        assert_failed_with(&status, "restic: repository is already locked");
    }

    #[test]
    fn a_completed_job_without_any_report_is_a_failure() {
        let status = finished(JobOutcome::Succeeded, None);
        assert_failed_with(
            &status,
            "the backup Job ended without a finished agent container (deleted or evicted?)",
        );
        assert_eq!(status.start_time, Some(time("2026-05-01T02:00:00Z")));
        assert_eq!(duration(&status), Some(std::time::Duration::from_secs(65)));
    }

    #[test]
    fn a_completed_job_with_only_a_log_tail_is_a_failure_with_that_tail() {
        let report = AgentReport::Unstructured("pg_dump: error: connection refused".into());
        let status = finished(JobOutcome::Succeeded, Some(report));
        assert_failed_with(&status, "pg_dump: error: connection refused");
    }

    #[test]
    fn a_failed_job_is_a_failure_even_with_a_good_looking_result() {
        let status = finished(
            JobOutcome::Failed,
            Some(AgentReport::Result(Box::new(confirmed()))),
        );
        let snapshot = confirmed().snapshot_id.unwrap();
        assert_failed_with(
            &status,
            &format!(
                "the backup Job failed although the agent reported snapshot {snapshot}; the snapshot is not trusted"
            ),
        );
        let mut failed = confirmed();
        failed.ok = false;
        failed.message = Some("killed after the snapshot".into());
        let status = finished(JobOutcome::Failed, Some(AgentReport::Result(Box::new(failed))));
        assert_failed_with(&status, "killed after the snapshot");
    }

    #[test]
    fn waiting_keeps_the_phase_it_had() {
        let mut fresh = BackupStatus::default();
        waiting(&mut fresh, "BackupPolicy p does not exist in namespace n");
        assert_eq!(fresh.phase, Some(BackupPhase::Pending));
        let mut started = running();
        waiting(&mut started, "secret missing");
        assert_eq!(started.phase, Some(BackupPhase::Running));
        assert_eq!(started.message.as_deref(), Some("secret missing"));
    }

    #[test]
    fn only_successes_are_announced_as_normal_and_timed() {
        let ok = finished(
            JobOutcome::Succeeded,
            Some(AgentReport::Result(Box::new(confirmed()))),
        );
        assert_eq!(
            result_event(&ok),
            (
                EventType::Normal,
                "Succeeded",
                "snapshot 4f2a9c, 1234 bytes".into()
            )
        );
        assert_eq!(success_seconds(&ok), Some(60.0));
        let failed = finished(JobOutcome::Failed, None);
        assert_eq!(result_event(&failed).0, EventType::Warning);
        assert_eq!(result_event(&failed).1, "Failed");
        assert_eq!(success_seconds(&failed), None);
        assert!(is_finished(&ok) && is_finished(&failed) && !is_finished(&running()));
    }
}
