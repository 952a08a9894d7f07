//! The pure decisions of the Restore controller: whether the target needs the overwrite guard and how it
//! is prepared, what the guard found, and the terminal status. No API calls here, so every rule has a
//! unit test. (How the target is reached is `connection`, the agent's command lines `invocation`, the
//! scratch server's readiness `scratch`.)

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::invocation::{Prepare, EMPTY_CHECK};
use crate::agent::result::AgentResult;
use crate::api::restore::{RestorePhase, RestoreSpec, RestoreStatus, Verification};
use crate::conditions::{set_health, Health};
use crate::duration::format_duration;
use crate::jobs::{AgentReport, JobOutcome};
use crate::snapshot_id::short_id;

/// Whether the overwrite guard must look at the target before anything is written: an existing
/// database whose replacement nobody confirmed.
pub fn needs_guard(spec: &RestoreSpec) -> bool {
    spec.target.existing_database().is_some() && spec.confirm_overwrite.is_none()
}

/// How to prepare the target once it is known to be safe: a confirmed overwrite replaces the
/// database; an empty or missing one is created (and recreated with dropExisting).
pub fn prepare_for(spec: &RestoreSpec) -> Prepare {
    if spec.target.files.is_some() {
        Prepare::Nothing
    } else if spec.confirm_overwrite.is_some() || spec.drop_existing {
        Prepare::Recreate
    } else {
        Prepare::CreateIfMissing
    }
}

/// What the overwrite guard found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardVerdict {
    /// The database exists and has no tables.
    Empty,
    /// The database does not exist (the restore creates it).
    Missing,
    /// The database has tables: refuse.
    NotEmpty { tables: Option<i64> },
    /// The guard could not look (server unreachable, wrong password, …).
    Unusable { reason: String, message: String },
}

pub fn guard_verdict(report: Option<&AgentReport>) -> GuardVerdict {
    let result = match report {
        Some(AgentReport::Result(result)) => result,
        Some(AgentReport::Unstructured(text)) => {
            return GuardVerdict::Unusable {
                reason: "CheckFailed".into(),
                message: text.clone(),
            };
        }
        None => {
            return GuardVerdict::Unusable {
                reason: "CheckFailed".into(),
                message: "the target check Job ended without a finished agent container".into(),
            }
        }
    };
    if result.ok {
        return GuardVerdict::Empty;
    }
    let reason = reason_of(result);
    let empty_check = result
        .checks
        .iter()
        .find(|c| c.name == format!("query:{EMPTY_CHECK}"));
    match (reason.as_str(), empty_check) {
        ("DatabaseMissing", _) => GuardVerdict::Missing,
        ("VerifyFailed", Some(check)) if !check.passed => {
            let tables = result
                .checks
                .iter()
                .find(|c| c.name == "minTables")
                .and_then(|c| c.message.as_deref())
                .and_then(|m| m.split_whitespace().next())
                .and_then(|n| n.parse().ok());
            GuardVerdict::NotEmpty { tables }
        }
        _ => GuardVerdict::Unusable {
            reason,
            message: result
                .message
                .clone()
                .unwrap_or_else(|| "the target check failed without a message".into()),
        },
    }
}

fn reason_of(result: &AgentResult) -> String {
    result
        .reason
        .map(|r| format!("{r:?}"))
        .unwrap_or_else(|| "Failed".into())
}

/// A terminal failure decided by the controller (not by the agent).
pub fn fail(status: &mut RestoreStatus, reason: &str, message: String, now: &Time) {
    status.phase = Some(RestorePhase::Failed);
    status.reason = Some(reason.to_owned());
    status.message = Some(message.clone());
    status.completion_time = Some(now.clone());
    set_duration(status);
    let generation = status.observed_generation;
    set_health(
        &mut status.conditions.0,
        Health::Stalled {
            reason: "RestoreFailed",
            message,
        },
        generation,
        now,
    );
}

/// The terminal status from the restore Job's outcome and the agent's report. Only a result the agent
/// confirmed is a success.
pub fn finish(
    status: &mut RestoreStatus,
    outcome: JobOutcome,
    report: Option<AgentReport>,
    verify_requested: bool,
    now: &Time,
) {
    let generation = status.observed_generation;
    let result = match &report {
        Some(AgentReport::Result(result)) => Some(result.as_ref()),
        _ => None,
    };
    if let Some(result) = result {
        status.snapshot_id = result.snapshot_id.clone().or(status.snapshot_id.take());
        if let Some(time) = result
            .snapshot_time
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        {
            status.snapshot_time = Some(Time(time));
        }
        // Checks that ran are recorded, pass or fail; a restore that failed before verifying has none.
        if !result.checks.is_empty() || (verify_requested && result.ok) {
            status.verification = Some(Verification {
                passed: result.ok && outcome == JobOutcome::Succeeded,
                checks: result.checks.clone(),
            });
        }
    }
    // The agent's own completion time: the operator may notice the Job's end a little later, and the
    // measured RTO should not include that.
    let completed = result
        .and_then(|r| r.completion_time.parse::<jiff::Timestamp>().ok())
        .map(Time)
        .unwrap_or_else(|| now.clone());
    match (outcome, result) {
        (JobOutcome::Succeeded, Some(result)) if result.ok => {
            status.phase = Some(RestorePhase::Succeeded);
            status.reason = None;
            status.completion_time = Some(completed);
            set_duration(status);
            let checks = match &status.verification {
                Some(v) => format!(", {} checks passed", v.checks.len()),
                None => String::new(),
            };
            let snapshot = status.snapshot_id.as_deref().map(short_id).unwrap_or("?");
            let message = format!(
                "restored snapshot {snapshot} in {}{checks}",
                status.duration.clone().unwrap_or_default()
            );
            status.message = Some(message.clone());
            set_health(
                &mut status.conditions.0,
                Health::Ready {
                    reason: "Succeeded",
                    message,
                },
                generation,
                now,
            );
        }
        _ => {
            let (reason, message) = match report {
                Some(AgentReport::Result(result)) => (
                    reason_of(&result),
                    result
                        .message
                        .clone()
                        .unwrap_or_else(|| "the agent reported a failure without a message".into()),
                ),
                Some(AgentReport::Unstructured(text)) => ("AgentFailed".into(), text),
                None => (
                    "JobFailed".into(),
                    "the restore Job ended without a finished agent container (deleted or evicted?)".into(),
                ),
            };
            fail(status, &reason, message, &completed);
        }
    }
}

/// A restore that was verified and then passed its smoke test: it ends when the smoke test ended.
pub fn succeed_after_smoke(
    status: &mut RestoreStatus,
    ended: Time,
    restored: &str,
    said: Option<&str>,
    now: &Time,
) {
    status.phase = Some(RestorePhase::Succeeded);
    status.reason = None;
    status.completion_time = Some(ended);
    set_duration(status);
    let said = said.map(|s| format!(" ({s})")).unwrap_or_default();
    let message = format!("{restored}; smoke test passed{said}");
    status.message = Some(message.clone());
    let generation = status.observed_generation;
    set_health(
        &mut status.conditions.0,
        Health::Ready {
            reason: "Succeeded",
            message,
        },
        generation,
        now,
    );
}

fn set_duration(status: &mut RestoreStatus) {
    if let (Some(start), Some(end)) = (&status.start_time, &status.completion_time) {
        let elapsed = end.0.duration_since(start.0).as_secs_f64().max(0.0);
        status.duration = Some(format_duration(Duration::from_secs_f64(elapsed)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::result::Mode;
    use crate::api::common::CheckResult;
    use crate::controller::restore::fixtures::{spec, EXISTING};

    fn result(
        ok: bool,
        reason: Option<crate::agent::error::Reason>,
        checks: Vec<CheckResult>,
    ) -> AgentReport {
        let mut result = AgentResult::new(Mode::Verify, "2026-11-23T10:00:00Z".parse().unwrap());
        result.ok = ok;
        result.reason = reason;
        result.set_checks(checks);
        AgentReport::Result(Box::new(result))
    }

    fn check(name: &str, passed: bool, message: &str) -> CheckResult {
        CheckResult {
            name: name.into(),
            passed,
            message: Some(message.into()),
        }
    }

    #[test]
    fn an_unconfirmed_existing_database_is_checked_before_anything_is_written() {
        let unconfirmed = spec(EXISTING);
        assert!(needs_guard(&unconfirmed));
        assert_eq!(prepare_for(&unconfirmed), Prepare::CreateIfMissing);
        let confirmed = spec(&format!("{EXISTING}confirmOverwrite: hotel\n"));
        assert!(!needs_guard(&confirmed));
        assert_eq!(prepare_for(&confirmed), Prepare::Recreate);
        let scratch = spec("source: {policyRef: {name: p}}\ntarget: {scratch: {engine: postgres}}\n");
        assert!(!needs_guard(&scratch));
    }

    #[test]
    fn the_guard_refuses_tables_and_accepts_an_empty_or_missing_database() {
        use crate::agent::error::Reason;
        let tables = result(
            false,
            Some(Reason::VerifyFailed),
            vec![
                check("minTables", true, "3 tables, at least 0 required"),
                check("query:empty", false, "returned \"f\""),
            ],
        );
        assert_eq!(
            guard_verdict(Some(&tables)),
            GuardVerdict::NotEmpty { tables: Some(3) }
        );
        assert_eq!(
            guard_verdict(Some(&result(true, None, vec![]))),
            GuardVerdict::Empty
        );
        assert_eq!(
            guard_verdict(Some(&result(false, Some(Reason::DatabaseMissing), vec![]))),
            GuardVerdict::Missing
        );
        let unreachable = guard_verdict(Some(&result(false, Some(Reason::DatabaseUnreachable), vec![])));
        assert!(
            matches!(unreachable, GuardVerdict::Unusable { ref reason, .. } if reason == "DatabaseUnreachable"),
            "{unreachable:?}"
        );
        assert!(matches!(guard_verdict(None), GuardVerdict::Unusable { .. }));
    }

    #[test]
    fn a_verified_restore_succeeds_and_a_failed_check_fails_it_with_every_result() {
        use crate::agent::error::Reason;
        let now = Time("2026-11-23T10:05:00Z".parse().unwrap());
        let mut status = RestoreStatus {
            start_time: Some(Time("2026-11-23T10:00:00Z".parse().unwrap())),
            ..Default::default()
        };
        let mut ok = AgentResult::new(Mode::Restore, "2026-11-23T10:00:10Z".parse().unwrap());
        ok.ok = true;
        ok.snapshot_id = Some("4f42669d8c2f0000".into());
        ok.snapshot_time = Some("2026-11-23T02:00:00Z".into());
        ok.completion_time = "2026-11-23T10:01:30Z".into();
        ok.set_checks(vec![check("table:guests", true, "500 rows, at least 1 required")]);
        finish(
            &mut status,
            JobOutcome::Succeeded,
            Some(AgentReport::Result(Box::new(ok))),
            true,
            &now,
        );
        assert_eq!(status.phase, Some(RestorePhase::Succeeded));
        assert_eq!(
            status.duration.as_deref(),
            Some("1m30s"),
            "the agent's completion, not the operator's"
        );
        assert_eq!(
            status.snapshot_time,
            Some(Time("2026-11-23T02:00:00Z".parse().unwrap()))
        );
        assert!(status.verification.as_ref().unwrap().passed);

        let mut status = RestoreStatus {
            start_time: Some(Time("2026-11-23T10:00:00Z".parse().unwrap())),
            ..Default::default()
        };
        let failed = result(
            false,
            Some(Reason::VerifyFailed),
            vec![
                check("table:guests", false, "0 rows"),
                check("minTables", true, "1 tables"),
            ],
        );
        finish(&mut status, JobOutcome::Failed, Some(failed), true, &now);
        assert_eq!(status.phase, Some(RestorePhase::Failed));
        assert_eq!(status.reason.as_deref(), Some("VerifyFailed"));
        let verification = status.verification.unwrap();
        assert!(!verification.passed);
        assert_eq!(verification.checks.len(), 2);

        let mut status = RestoreStatus::default();
        finish(&mut status, JobOutcome::Succeeded, None, false, &now);
        assert_eq!(status.phase, Some(RestorePhase::Failed), "no result, no success");
    }
}
