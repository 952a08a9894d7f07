//! The pure decisions of the RestoreDrill controller: the Restore a drill creates, what a finished drill
//! measured (RTO, RPO) and whether it passed, the bounded history and the conditions. No API calls here.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::common::LocalObjectRef;
use crate::api::restore::{RestorePhase, RestoreSource, RestoreSpec, RestoreStatus};
use crate::api::restore_drill::{DrillResult, RestoreDrillSpec};
use crate::conditions::{self, Desired};
use crate::duration::format_duration;
use crate::snapshot_id::short_id;

pub const RTO_MET: &str = "RTOMet";
pub const RPO_MET: &str = "RPOMet";

/// The deterministic name of a slot's Restore: a restarted operator computes the same name and the
/// apiserver refuses a second one.
pub fn restore_name_for_slot(drill: &str, slot: Timestamp) -> String {
    crate::controller::status::child_name(drill, &slot.as_second().to_string(), 253)
}

/// The Restore a drill runs: the policy's newest snapshot into the drill's target. An existing-server
/// target is a `verify_` database the drill owns (the CRD enforces the prefix), so it is replaced
/// without the overwrite guard.
pub fn restore_spec_for(drill: &RestoreDrillSpec) -> RestoreSpec {
    let existing = drill.target.existing_database().map(str::to_owned);
    RestoreSpec {
        source: RestoreSource {
            backup_ref: None,
            policy_ref: Some(LocalObjectRef {
                name: drill.policy_ref.name.clone(),
            }),
            snapshot: None,
        },
        target: drill.target.clone(),
        drop_existing: existing.is_some(),
        confirm_overwrite: existing,
        keep_scratch: drill.target.scratch.is_some() && !drill.cleanup,
        drop_after: drill.target.existing_database().is_some() && drill.cleanup,
        verify: drill.verify.clone(),
        smoke: drill.smoke.clone(),
        job_template: drill.job_template.clone(),
    }
}

/// Targets as written in the spec (invalid text was refused by the CRD; unparsable means no target).
pub struct Objectives {
    pub rto: Option<Duration>,
    pub rpo: Option<Duration>,
}

impl Objectives {
    pub fn of(spec: &RestoreDrillSpec) -> Self {
        Objectives {
            rto: spec.rto.as_ref().and_then(|d| d.parse().ok()),
            rpo: spec.rpo.as_ref().and_then(|d| d.parse().ok()),
        }
    }
}

fn between(from: Timestamp, to: Timestamp) -> Duration {
    Duration::from_secs_f64(to.duration_since(from).as_secs_f64().max(0.0))
}

/// What a finished drill measured, and whether it passed: restored, verified, within the RTO and the RPO.
pub fn drill_result(
    restore_name: &str,
    start: Timestamp,
    status: &RestoreStatus,
    objectives: &Objectives,
) -> DrillResult {
    let succeeded = status.phase == Some(RestorePhase::Succeeded);
    let rto = status
        .completion_time
        .as_ref()
        .filter(|_| succeeded)
        .map(|end| between(start, end.0));
    let rpo = status.snapshot_time.as_ref().map(|taken| between(taken.0, start));
    let failed_checks: Vec<String> = status
        .verification
        .iter()
        .flat_map(|v| v.checks.iter())
        .filter(|c| !c.passed)
        .map(|c| c.name.clone())
        .collect();
    let rto_missed = matches!((rto, objectives.rto), (Some(measured), Some(target)) if measured > target);
    let rpo_missed = matches!((rpo, objectives.rpo), (Some(measured), Some(target)) if measured > target);
    let rpo_unknown = objectives.rpo.is_some() && rpo.is_none();
    let passed = succeeded && !rto_missed && !rpo_missed && !rpo_unknown;

    let verified = status
        .verification
        .as_ref()
        .is_some_and(|v| v.passed && !v.checks.is_empty());
    let mut notes = Vec::new();
    if succeeded {
        let snapshot = status.snapshot_id.as_deref().map(short_id).unwrap_or("?");
        let checks = if verified {
            format!(
                ", {} checks passed",
                status.verification.as_ref().map_or(0, |v| v.checks.len())
            )
        } else {
            // Size and sha256 were checked on the stream and the loader accepted it: nothing more.
            " without verify checks: this proves only that the dump loads, not that its data is right".into()
        };
        notes.push(format!("restored snapshot {snapshot}{checks}"));
    } else {
        let why = status
            .message
            .clone()
            .unwrap_or_else(|| "the restore failed".into());
        notes.push(match &status.reason {
            Some(reason) => format!("restore failed ({reason}): {why}"),
            None => format!("restore failed: {why}"),
        });
    }
    if let (Some(measured), Some(target)) = (rto, objectives.rto) {
        let verdict = if rto_missed { "over" } else { "within" };
        notes.push(format!(
            "RTO {} {verdict} {}",
            format_measured(measured),
            format_duration(target)
        ));
    }
    if let (Some(measured), Some(target)) = (rpo, objectives.rpo) {
        let verdict = if rpo_missed { "over" } else { "within" };
        notes.push(format!(
            "snapshot age {} {verdict} RPO {}",
            format_measured(measured),
            format_duration(target)
        ));
    }
    DrillResult {
        restore: restore_name.to_owned(),
        start_time: Time(start),
        completion_time: status.completion_time.clone(),
        snapshot_id: status.snapshot_id.clone(),
        measured_rto: rto.map(format_measured),
        measured_rpo: rpo.map(format_measured),
        rto_met: objectives.rto.map(|_| succeeded && !rto_missed),
        rpo_met: objectives.rpo.map(|_| !rpo_missed && !rpo_unknown),
        passed: Some(passed),
        verified: Some(verified),
        failed_checks,
        message: Some(notes.join("; ")),
    }
}

/// The reason a finished drill is reported under (its Event and the Ready condition): a pass without
/// verification checks is named apart from a full pass, since all it proved is that the dump loads.
pub fn verdict_reason(result: &DrillResult) -> &'static str {
    match (result.passed, result.verified) {
        (Some(true), Some(false)) => "DrillPassedUnverified",
        (Some(true), _) => "DrillPassed",
        _ => "DrillFailed",
    }
}

/// A measured time, to the millisecond below a minute (a 1.8 s old snapshot is not "1s" old when the
/// RPO is 1s), in the API's duration syntax so it parses back.
pub fn format_measured(duration: Duration) -> String {
    let millis = duration.subsec_millis();
    if duration.as_secs() >= 60 || millis == 0 || duration.as_secs() == 0 {
        return format_duration(duration);
    }
    format!("{}s{millis}ms", duration.as_secs())
}

/// Adds newly finished drills: history newest first and at most `limit` long; the last drill is the
/// newest finished one even when the limit is 0.
pub fn record(
    history: &mut Vec<DrillResult>,
    last: &mut Option<DrillResult>,
    finished: Vec<DrillResult>,
    limit: usize,
) {
    for result in finished {
        if last.as_ref().is_none_or(|l| result.start_time.0 > l.start_time.0) {
            *last = Some(result.clone());
        }
        if !history.iter().any(|h| h.restore == result.restore) {
            history.push(result);
        }
    }
    history.sort_by_key(|h| std::cmp::Reverse(h.start_time.0));
    history.truncate(limit);
}

/// RTOMet and RPOMet from the last drill, against the spec's targets (absent when no target is set).
pub fn apply_objective_conditions(
    conditions: &mut Vec<Condition>,
    last: Option<&DrillResult>,
    objectives: &Objectives,
    generation: Option<i64>,
    now: &Time,
) {
    let Some(last) = last else {
        conditions::remove(conditions, RTO_MET);
        conditions::remove(conditions, RPO_MET);
        return;
    };
    let parse = |text: &Option<String>| text.as_deref().and_then(crate::duration::parse_measured);
    match objectives.rto {
        Some(target) => {
            let met = |measured: Duration| last.rto_met.unwrap_or(measured <= target);
            let desired = match parse(&last.measured_rto) {
                Some(measured) if met(measured) => Desired::new(
                    RTO_MET,
                    true,
                    "WithinRTO",
                    format!(
                        "{} restored and verified in {} (RTO {})",
                        last.restore,
                        format_measured(measured),
                        format_duration(target)
                    ),
                ),
                Some(measured) => Desired::new(
                    RTO_MET,
                    false,
                    "RTOExceeded",
                    format!(
                        "{} took {} to restore and verify, over the RTO {}",
                        last.restore,
                        format_measured(measured),
                        format_duration(target)
                    ),
                ),
                None => Desired::new(
                    RTO_MET,
                    false,
                    "RestoreFailed",
                    format!(
                        "{} did not restore and verify, so no recovery time was achieved",
                        last.restore
                    ),
                ),
            };
            conditions::apply(conditions, desired, generation, now);
        }
        None => conditions::remove(conditions, RTO_MET),
    }
    match objectives.rpo {
        Some(target) => {
            let met = |measured: Duration| last.rpo_met.unwrap_or(measured <= target);
            let desired = match parse(&last.measured_rpo) {
                Some(measured) if met(measured) => {
                    Desired::new(RPO_MET, true, "WithinRPO", format!("the restored snapshot was {} old at drill start (RPO {})", format_measured(measured), format_duration(target)))
                }
                Some(measured) => Desired::new(
                    RPO_MET,
                    false,
                    "RPOExceeded",
                    format!("the restored snapshot was {} old at drill start, over the RPO {}: a disaster then would have lost that much data", format_measured(measured), format_duration(target)),
                ),
                None => Desired::new(RPO_MET, false, "NotMeasured", format!("{} found no snapshot to restore, so the data loss cannot be bounded", last.restore)),
            };
            conditions::apply(conditions, desired, generation, now);
        }
        None => conditions::remove(conditions, RPO_MET),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::CheckResult;
    use crate::api::restore::Verification;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn drill(yaml: &str) -> RestoreDrillSpec {
        serde_norway::from_str(yaml).unwrap()
    }

    fn succeeded(snapshot_time: &str, completion: &str) -> RestoreStatus {
        RestoreStatus {
            phase: Some(RestorePhase::Succeeded),
            snapshot_id: Some("4f42669d8c2f".into()),
            snapshot_time: Some(Time(at(snapshot_time))),
            completion_time: Some(Time(at(completion))),
            verification: Some(Verification {
                passed: true,
                checks: vec![CheckResult {
                    name: "table:guests".into(),
                    passed: true,
                    message: None,
                }],
            }),
            ..Default::default()
        }
    }

    const SPEC: &str = "
schedule: '0 3 1 * *'
policyRef: {name: hotel-db}
target: {scratch: {engine: postgres}}
rto: 2h
rpo: 24h
";

    #[test]
    fn a_drill_measures_rto_from_its_start_and_rpo_as_the_snapshot_age() {
        let objectives = Objectives::of(&drill(SPEC));
        let result = drill_result(
            "d-1",
            at("2026-11-01T03:00:00Z"),
            &succeeded("2026-10-31T02:00:00Z", "2026-11-01T03:12:30Z"),
            &objectives,
        );
        assert_eq!(result.measured_rto.as_deref(), Some("12m30s"));
        assert_eq!(result.measured_rpo.as_deref(), Some("1d1h"));
        assert_eq!(result.passed, Some(false), "25h old > 24h RPO");
        assert!(
            result.message.as_deref().unwrap().contains("over RPO 1d"),
            "{:?}",
            result.message
        );

        let fresh = drill_result(
            "d-2",
            at("2026-11-01T03:00:00Z"),
            &succeeded("2026-11-01T02:00:00Z", "2026-11-01T03:01:00Z"),
            &objectives,
        );
        assert_eq!(fresh.passed, Some(true));
        let mut conditions = Vec::new();
        let now = Time(at("2026-11-01T03:01:00Z"));
        apply_objective_conditions(&mut conditions, Some(&result), &objectives, Some(1), &now);
        assert!(conditions::is_true(&conditions, RTO_MET));
        let rpo = conditions::find(&conditions, RPO_MET).unwrap();
        assert_eq!(
            (rpo.status.as_str(), rpo.reason.as_str()),
            ("False", "RPOExceeded")
        );
    }

    #[test]
    fn a_failed_restore_fails_the_drill_with_its_failed_checks_and_no_rto() {
        let objectives = Objectives::of(&drill(SPEC));
        let status = RestoreStatus {
            phase: Some(RestorePhase::Failed),
            reason: Some("VerifyFailed".into()),
            message: Some("1 of 2 checks failed".into()),
            snapshot_time: Some(Time(at("2026-11-01T02:00:00Z"))),
            completion_time: Some(Time(at("2026-11-01T03:02:00Z"))),
            verification: Some(Verification {
                passed: false,
                checks: vec![
                    CheckResult {
                        name: "table:guests".into(),
                        passed: false,
                        message: None,
                    },
                    CheckResult {
                        name: "minTables".into(),
                        passed: true,
                        message: None,
                    },
                ],
            }),
            ..Default::default()
        };
        let result = drill_result("d-3", at("2026-11-01T03:00:00Z"), &status, &objectives);
        assert_eq!(result.passed, Some(false));
        assert_eq!(result.failed_checks, ["table:guests"]);
        assert!(result.measured_rto.is_none());
        assert_eq!(result.measured_rpo.as_deref(), Some("1h"));
        let mut conditions = Vec::new();
        apply_objective_conditions(
            &mut conditions,
            Some(&result),
            &objectives,
            None,
            &Time(at("2026-11-01T03:02:00Z")),
        );
        assert_eq!(
            conditions::find(&conditions, RTO_MET).unwrap().reason,
            "RestoreFailed"
        );
        assert!(conditions::is_true(&conditions, RPO_MET));
    }

    #[test]
    fn history_is_newest_first_bounded_and_the_last_drill_survives_a_zero_limit() {
        let objectives = Objectives::of(&drill(SPEC));
        let make = |name: &str, start: &str| {
            drill_result(
                name,
                at(start),
                &succeeded("2026-11-01T00:00:00Z", "2026-11-05T00:00:00Z"),
                &objectives,
            )
        };
        let mut history = vec![make("d-1", "2026-11-01T03:00:00Z")];
        let mut last = history.first().cloned();
        record(
            &mut history,
            &mut last,
            vec![
                make("d-3", "2026-11-03T03:00:00Z"),
                make("d-2", "2026-11-02T03:00:00Z"),
            ],
            2,
        );
        let names: Vec<&str> = history.iter().map(|h| h.restore.as_str()).collect();
        assert_eq!(names, ["d-3", "d-2"]);
        assert_eq!(last.as_ref().unwrap().restore, "d-3");
        let mut empty = Vec::new();
        let mut last = None;
        record(
            &mut empty,
            &mut last,
            vec![make("d-4", "2026-11-04T03:00:00Z")],
            0,
        );
        assert!(empty.is_empty());
        assert_eq!(last.unwrap().restore, "d-4");
    }

    #[test]
    fn a_drill_replaces_its_own_verify_database_and_cleans_up_a_scratch_server() {
        let on_server = restore_spec_for(&drill(
            "
schedule: '@monthly'
policyRef: {name: crm-db}
target: {mysql: {host: db, database: verify_crm, user: u, passwordSecretRef: {name: s, key: k}}}
",
        ));
        assert_eq!(on_server.confirm_overwrite.as_deref(), Some("verify_crm"));
        assert!(on_server.drop_existing && on_server.drop_after && !on_server.keep_scratch);
        assert_eq!(on_server.source.policy_ref.unwrap().name, "crm-db");
        let kept = restore_spec_for(&drill(&format!("{SPEC}cleanup: false\n")));
        assert!(kept.keep_scratch && kept.confirm_overwrite.is_none());
        assert_eq!(
            restore_name_for_slot("hotel-db-monthly", at("2026-11-01T02:00:00Z")),
            "hotel-db-monthly-1793498400"
        );
    }

    #[test]
    fn a_drill_without_verify_checks_says_it_proved_only_that_the_dump_loads() {
        let objectives = Objectives::of(&drill(SPEC));
        let mut status = succeeded("2026-11-01T02:00:00Z", "2026-11-01T03:01:00Z");
        status.verification = None;
        let loaded = drill_result("d", at("2026-11-01T03:00:00Z"), &status, &objectives);
        assert_eq!((loaded.passed, loaded.verified), (Some(true), Some(false)));
        assert_eq!(verdict_reason(&loaded), "DrillPassedUnverified");
        let message = loaded.message.as_deref().unwrap();
        assert!(message.contains("proves only that the dump loads"), "{message}");

        let full = drill_result(
            "d",
            at("2026-11-01T03:00:00Z"),
            &succeeded("2026-11-01T02:00:00Z", "2026-11-01T03:01:00Z"),
            &objectives,
        );
        assert_eq!(full.verified, Some(true));
        assert_eq!(verdict_reason(&full), "DrillPassed");
        assert!(!full.message.as_deref().unwrap().contains("only"));

        // Checks that ran but failed are a failed drill, not an unverified pass.
        let mut failing = succeeded("2026-11-01T02:00:00Z", "2026-11-01T03:01:00Z");
        failing.phase = Some(RestorePhase::Failed);
        failing.verification.as_mut().unwrap().passed = false;
        let failed = drill_result("d", at("2026-11-01T03:00:00Z"), &failing, &objectives);
        assert_eq!(verdict_reason(&failed), "DrillFailed");
    }

    /// The RPOMet condition a finished drill's result sets, as of the drill's end.
    fn rpo_condition(result: &DrillResult, objectives: &Objectives) -> Condition {
        let mut conditions = Vec::new();
        apply_objective_conditions(
            &mut conditions,
            Some(result),
            objectives,
            None,
            &Time(at("2026-11-01T03:00:05Z")),
        );
        conditions::find(&conditions, RPO_MET).unwrap().clone()
    }

    #[test]
    fn a_snapshot_a_little_over_a_one_second_rpo_misses_it() {
        let objectives = Objectives::of(&drill(&SPEC.replace("rpo: 24h", "rpo: 1s")));
        let result = drill_result(
            "d",
            at("2026-11-01T03:00:01.800Z"),
            &succeeded("2026-11-01T03:00:00Z", "2026-11-01T03:00:05Z"),
            &objectives,
        );
        assert_eq!(result.measured_rpo.as_deref(), Some("1s800ms"));
        assert_eq!((result.rpo_met, result.passed), (Some(false), Some(false)));
        assert_eq!(rpo_condition(&result, &objectives).reason, "RPOExceeded");
        assert_eq!(
            crate::duration::parse_duration("1s800ms").unwrap(),
            Duration::from_millis(1800)
        );
    }

    #[test]
    fn a_snapshot_taken_as_the_drill_started_meets_the_rpo() {
        // The demo's drill and backup share a schedule: the snapshot is 0ms old, which is a measurement.
        let objectives = Objectives::of(&drill(&SPEC.replace("rpo: 24h", "rpo: 1h")));
        let result = drill_result(
            "d",
            at("2026-11-01T03:00:00Z"),
            &succeeded("2026-11-01T03:00:00Z", "2026-11-01T03:00:05Z"),
            &objectives,
        );
        assert_eq!(result.measured_rpo.as_deref(), Some("0ms"));
        let rpo_met = rpo_condition(&result, &objectives);
        assert_eq!(
            (rpo_met.status.as_str(), rpo_met.reason.as_str()),
            ("True", "WithinRPO")
        );
    }
}
