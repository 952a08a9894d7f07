//! The pure judgement of a BackupPolicy after its results are recorded: whether it is fresh (the Stale
//! condition against the RPO), its overall Health, whether it just recovered, and when to look again.
//! No API calls here, so every rule has a unit test.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::events::EventType;
use kube::ResourceExt;

use super::plan::{completion, is_finished, Notice};
use super::STALE;
use crate::api::backup::BackupPhase;
use crate::api::backup_policy::{BackupPolicyStatus, NotificationEvent};
use crate::api::Backup;
use crate::conditions::{self, Desired, Health};

/// How often a policy with running Backups re-reads them (from the cache: no API call).
pub const ACTIVE_RECHECK: Duration = Duration::from_secs(5);

/// Whether the policy is stale now, and when it will turn stale if not. Without any success the clock
/// starts at the policy's creation: a policy that never succeeded turns stale after one RPO.
pub fn staleness(
    rpo: Duration,
    last_success: Option<Timestamp>,
    created: Timestamp,
    now: Timestamp,
) -> (bool, Timestamp) {
    let since = last_success.unwrap_or(created);
    let turns_stale_at = since + jiff::SignedDuration::try_from(rpo).unwrap_or(jiff::SignedDuration::MAX);
    (now >= turns_stale_at, turns_stale_at)
}

/// The Stale condition and what its change is worth telling.
#[derive(Debug, PartialEq)]
pub struct Freshness {
    pub condition: Desired,
    /// An Event when the policy turned stale (Warning) or fresh again (Normal).
    pub event: Option<(EventType, &'static str, String)>,
    pub notice: Option<Notice>,
    /// While fresh: the moment it turns stale, worth waking up for.
    pub fresh_until: Option<Timestamp>,
}

/// Judges freshness against the RPO (`rpo_text` as the user wrote it, for the messages).
pub fn freshness(
    rpo: Duration,
    rpo_text: &str,
    last_success: Option<Timestamp>,
    created: Timestamp,
    now: Timestamp,
    was_stale: bool,
) -> Freshness {
    let (stale, turns_stale_at) = staleness(rpo, last_success, created, now);
    let message = match (stale, last_success) {
        (true, Some(at)) => format!("the newest successful backup ({at}) is older than the RPO {rpo_text}"),
        (true, None) => {
            format!("no successful backup within the RPO {rpo_text} since the policy was created")
        }
        (false, _) => format!("the newest successful backup is within the RPO until {turns_stale_at}"),
    };
    let reason = if stale { "RPOExceeded" } else { "WithinRPO" };
    let (event, notice) = match (stale, was_stale) {
        (true, false) => (
            Some((EventType::Warning, "Stale", message.clone())),
            Some(Notice {
                event: NotificationEvent::Stale,
                headline: "is STALE".into(),
                detail: message.clone(),
            }),
        ),
        (false, true) => (Some((EventType::Normal, "Fresh", message.clone())), None),
        _ => (None, None),
    };
    Freshness {
        condition: Desired::new(STALE, stale, reason, message),
        event,
        notice,
        fresh_until: (!stale).then_some(turns_stale_at),
    }
}

/// Ready when the newest finished Backup succeeded (or none ran yet) and the policy is not stale.
/// The condition saying whether the repository is sound, from the newest check and retention runs.
pub const REPOSITORY_HEALTHY: &str = "RepositoryHealthy";

/// RepositoryHealthy from the maintenance verdicts: a failed check or a failed retention run makes it
/// False (the check speaks for the data, retention for whether old snapshots can be pruned); passing
/// ones make it True; without either it is absent (nothing is known).
pub fn judge_repository(status: &mut BackupPolicyStatus, now: &Time) {
    let generation = status.observed_generation;
    let check = status.last_check.as_ref();
    let retention = status.last_retention.as_ref();
    let desired = match (check, retention) {
        (Some(check), _) if !check.passed => Desired::new(
            REPOSITORY_HEALTHY,
            false,
            "CheckFailed",
            format!(
                "restic check ({}) failed: {}",
                check.job_name,
                check.message.clone().unwrap_or_default()
            ),
        ),
        (_, Some(retention)) if !retention.passed => Desired::new(
            REPOSITORY_HEALTHY,
            false,
            "RetentionFailed",
            format!(
                "retention ({}) failed: {}",
                retention.job_name,
                retention.message.clone().unwrap_or_default()
            ),
        ),
        (Some(check), _) => Desired::new(
            REPOSITORY_HEALTHY,
            true,
            "CheckPassed",
            format!("restic check ({}) passed at {}", check.job_name, check.time.0),
        ),
        (None, Some(retention)) => Desired::new(
            REPOSITORY_HEALTHY,
            true,
            "RetentionSucceeded",
            format!(
                "retention ({}) succeeded at {}",
                retention.job_name, retention.time.0
            ),
        ),
        (None, None) => {
            conditions::remove(&mut status.conditions.0, REPOSITORY_HEALTHY);
            return;
        }
    };
    conditions::apply(&mut status.conditions.0, desired, generation, now);
}

pub fn overall_health(status: &BackupPolicyStatus, backups: &[Arc<Backup>], suspended: bool) -> Health {
    if conditions::is_true(&status.conditions.0, STALE) {
        let message = conditions::find(&status.conditions.0, STALE)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        return Health::NotReady {
            reason: "Stale",
            message,
        };
    }
    // Backups into a repository that fails its check cannot be trusted to restore.
    if let Some(unhealthy) =
        conditions::find(&status.conditions.0, REPOSITORY_HEALTHY).filter(|c| c.status == "False")
    {
        return Health::NotReady {
            reason: "RepositoryUnhealthy",
            message: unhealthy.message.clone(),
        };
    }
    let newest_finished = backups
        .iter()
        .filter(|b| is_finished(b))
        .max_by_key(|b| completion(b));
    if let Some(failed) =
        newest_finished.filter(|b| b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Failed))
    {
        let message = format!(
            "{} failed: {}",
            failed.name_any(),
            failed
                .status
                .as_ref()
                .and_then(|s| s.message.clone())
                .unwrap_or_default()
        );
        return Health::NotReady {
            reason: "BackupFailed",
            message,
        };
    }
    if suspended {
        return Health::Ready {
            reason: "Suspended",
            message: "suspended: no new backups are scheduled".into(),
        };
    }
    match (&status.last_successful_backup, &status.next_schedule_time) {
        (Some(last), _) => Health::Ready {
            reason: "BackupSucceeded",
            message: format!("{} succeeded at {}", last.name, last.time.0),
        },
        (None, Some(next)) => Health::Ready {
            reason: "Scheduled",
            message: format!("the first backup is scheduled for {}", next.0),
        },
        (None, None) => Health::Ready {
            reason: "Scheduled",
            message: "waiting for the first slot".into(),
        },
    }
}

/// A Recovery notice when Ready turned True after a failed backup or staleness had made it False
/// (not after a mere start: Progressing or Stalled are not news worth a webhook).
pub fn recovery(before: &[Condition], after: &[Condition]) -> Option<Notice> {
    let was_ready =
        conditions::find(before, conditions::READY).map(|c| (c.status == "True", c.reason.as_str()));
    let (Some((false, reason)), true) = (was_ready, conditions::is_true(after, conditions::READY)) else {
        return None;
    };
    if reason != "BackupFailed" && reason != "Stale" {
        return None;
    }
    let detail = conditions::find(after, conditions::READY)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    Some(Notice {
        event: NotificationEvent::Recovery,
        headline: "recovered".into(),
        detail,
    })
}

/// When to look again: the next slot, the next repository check or the moment the policy would turn
/// Stale, whichever is first (Backup and Job changes wake it earlier through the watches). While
/// Backups run, every few seconds: the watch that wakes this controller is not the one that fills the
/// Backup cache, so a finish can be seen here before the cache has it.
pub fn wake_up(
    now: Timestamp,
    next_slot: Option<Timestamp>,
    next_check: Option<Timestamp>,
    fresh_until: Option<Timestamp>,
    backups_running: bool,
) -> Option<Timestamp> {
    let recheck = backups_running.then(|| now + ACTIVE_RECHECK);
    [next_slot, next_check, fresh_until, recheck]
        .into_iter()
        .flatten()
        .min()
}

/// How long to wait for `at`: a little after the instant itself, so the slot is due when we look.
pub fn until(now: Timestamp, at: Timestamp) -> Duration {
    let wait = at.duration_since(now).as_secs_f64().max(0.0);
    Duration::from_secs_f64(wait) + Duration::from_millis(50)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;
    use crate::api::backup::{BackupSpec, BackupStatus, BackupTrigger};
    use crate::api::backup_policy::BackupSummary;
    use crate::api::common::LocalObjectRef;
    use crate::conditions::{set_health, READY};

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn finished(name: &str, phase: BackupPhase, done: &str, message: &str) -> Arc<Backup> {
        Arc::new(Backup {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: BackupSpec {
                policy_ref: LocalObjectRef { name: "p".into() },
                trigger: BackupTrigger::Scheduled,
                reason: None,
            },
            status: Some(BackupStatus {
                phase: Some(phase),
                completion_time: Some(Time(at(done))),
                message: Some(message.into()),
                ..Default::default()
            }),
        })
    }

    fn reason_of(health: Health) -> (&'static str, bool, String) {
        match health {
            Health::Ready { reason, message } => (reason, true, message),
            Health::NotReady { reason, message }
            | Health::Progressing { reason, message }
            | Health::Stalled { reason, message } => (reason, false, message),
        }
    }

    #[test]
    fn a_policy_whose_last_success_is_older_than_its_rpo_turns_stale() {
        let (stale, at_) = staleness(
            DAY,
            Some(at("2026-05-01T02:00:00Z")),
            at("2026-01-01T00:00:00Z"),
            at("2026-05-02T01:59:00Z"),
        );
        assert!(!stale);
        assert_eq!(at_, at("2026-05-02T02:00:00Z"));
        let (stale, _) = staleness(
            DAY,
            Some(at("2026-05-01T02:00:00Z")),
            at("2026-01-01T00:00:00Z"),
            at("2026-05-02T02:00:01Z"),
        );
        assert!(stale);
        let (never, _) = staleness(DAY, None, at("2026-05-01T00:00:00Z"), at("2026-05-02T00:00:01Z"));
        assert!(never, "a policy that never succeeded is stale after one RPO");
    }

    #[test]
    fn turning_stale_is_a_warning_and_a_notice_once() {
        let last = Some(at("2026-05-01T02:00:00Z"));
        let created = at("2026-01-01T00:00:00Z");
        let now = at("2026-05-02T03:00:00Z");
        let turned = freshness(DAY, "24h", last, created, now, false);
        assert_eq!(
            turned.condition,
            Desired::new(
                STALE,
                true,
                "RPOExceeded",
                "the newest successful backup (2026-05-01T02:00:00Z) is older than the RPO 24h"
            )
        );
        assert_eq!(
            turned.event.as_ref().map(|e| (e.0, e.1)),
            Some((EventType::Warning, "Stale"))
        );
        assert_eq!(
            turned.notice.as_ref().map(|n| n.event),
            Some(NotificationEvent::Stale)
        );
        assert_eq!(turned.fresh_until, None);
        let still = freshness(DAY, "24h", last, created, now, true);
        assert_eq!(
            (still.event, still.notice),
            (None, None),
            "already stale: nothing new to tell"
        );
    }

    #[test]
    fn a_policy_that_never_succeeded_is_stale_since_its_creation() {
        let f = freshness(
            DAY,
            "1d",
            None,
            at("2026-05-01T00:00:00Z"),
            at("2026-05-03T00:00:00Z"),
            false,
        );
        assert_eq!(
            f.condition.message,
            "no successful backup within the RPO 1d since the policy was created"
        );
    }

    #[test]
    fn turning_fresh_again_is_a_normal_event_and_a_wake_up_time() {
        let f = freshness(
            DAY,
            "24h",
            Some(at("2026-05-02T02:00:00Z")),
            at("2026-01-01T00:00:00Z"),
            at("2026-05-02T03:00:00Z"),
            true,
        );
        assert_eq!(f.condition.reason, "WithinRPO");
        assert_eq!(
            f.condition.message,
            "the newest successful backup is within the RPO until 2026-05-03T02:00:00Z"
        );
        assert_eq!(f.event.map(|e| (e.0, e.1)), Some((EventType::Normal, "Fresh")));
        assert_eq!(
            f.notice, None,
            "recovery is announced by the Ready condition, not here"
        );
        assert_eq!(f.fresh_until, Some(at("2026-05-03T02:00:00Z")));
    }

    #[test]
    fn health_puts_staleness_before_a_failure_and_a_failure_before_success() {
        let mut status = BackupPolicyStatus {
            last_successful_backup: Some(BackupSummary {
                name: "p-1".into(),
                time: Time(at("2026-05-01T02:00:00Z")),
                snapshot_id: "a".into(),
                size_bytes: 1,
                size: "1 B".into(),
                sha256: String::new(),
                duration: "1m".into(),
            }),
            ..Default::default()
        };
        let ok = finished(
            "p-1",
            BackupPhase::Succeeded,
            "2026-05-01T02:00:00Z",
            "snapshot a",
        );
        let failed = finished("p-2", BackupPhase::Failed, "2026-05-02T02:00:00Z", "disk full");
        assert_eq!(
            reason_of(overall_health(&status, std::slice::from_ref(&ok), false)),
            (
                "BackupSucceeded",
                true,
                "p-1 succeeded at 2026-05-01T02:00:00Z".into()
            )
        );
        assert_eq!(
            reason_of(overall_health(&status, &[ok.clone(), failed.clone()], false)),
            ("BackupFailed", false, "p-2 failed: disk full".into())
        );
        assert_eq!(
            reason_of(overall_health(&status, std::slice::from_ref(&ok), true)).0,
            "Suspended"
        );
        conditions::apply(
            &mut status.conditions.0,
            Desired::new(STALE, true, "RPOExceeded", "too old"),
            None,
            &Time(at("2026-05-03T00:00:00Z")),
        );
        assert_eq!(
            reason_of(overall_health(&status, &[ok, failed], false)),
            ("Stale", false, "too old".into())
        );
    }

    #[test]
    fn before_the_first_backup_health_names_the_first_slot() {
        let mut status = BackupPolicyStatus::default();
        assert_eq!(
            reason_of(overall_health(&status, &[], false)),
            ("Scheduled", true, "waiting for the first slot".into())
        );
        status.next_schedule_time = Some(Time(at("2026-05-01T02:00:00Z")));
        assert_eq!(
            reason_of(overall_health(&status, &[], false)).2,
            "the first backup is scheduled for 2026-05-01T02:00:00Z"
        );
    }

    #[test]
    fn recovery_is_news_only_after_a_failure_or_staleness() {
        let now = Time(at("2026-05-01T00:00:00Z"));
        let with = |health: Health| {
            let mut conditions = Vec::new();
            set_health(&mut conditions, health, None, &now);
            conditions
        };
        let ready = with(Health::Ready {
            reason: "BackupSucceeded",
            message: "p-3 succeeded".into(),
        });
        for (reason, news) in [("BackupFailed", true), ("Stale", true), ("Running", false)] {
            let before = with(Health::NotReady {
                reason,
                message: "x".into(),
            });
            let notice = recovery(&before, &ready);
            assert_eq!(notice.is_some(), news, "{reason}");
        }
        let notice = recovery(
            &with(Health::NotReady {
                reason: "Stale",
                message: "x".into(),
            }),
            &ready,
        )
        .unwrap();
        assert_eq!(
            (notice.headline.as_str(), notice.detail.as_str()),
            ("recovered", "p-3 succeeded")
        );
        assert_eq!(recovery(&ready, &ready), None, "already ready");
        assert_eq!(recovery(&[], &ready), None, "a new policy did not recover");
        assert!(conditions::find(&ready, READY).is_some());
    }

    #[test]
    fn the_next_look_is_the_earliest_due_moment() {
        let now = at("2026-05-01T00:00:00Z");
        let slot = Some(at("2026-05-01T02:00:00Z"));
        let check = Some(at("2026-05-01T01:00:00Z"));
        assert_eq!(wake_up(now, slot, check, None, false), check);
        assert_eq!(
            wake_up(now, slot, check, Some(at("2026-05-01T00:30:00Z")), false),
            Some(at("2026-05-01T00:30:00Z"))
        );
        assert_eq!(wake_up(now, slot, None, None, true), Some(now + ACTIVE_RECHECK));
        assert_eq!(wake_up(now, None, None, None, false), None);
        assert_eq!(
            until(now, at("2026-05-01T00:00:10Z")),
            Duration::from_millis(10_050)
        );
        assert_eq!(
            until(now, at("2026-04-30T00:00:00Z")),
            Duration::from_millis(50),
            "past: now"
        );
    }

    fn verdict(job: &str, passed: bool, message: Option<&str>) -> crate::api::backup_policy::CheckSummary {
        crate::api::backup_policy::CheckSummary {
            job_name: job.into(),
            time: Time(at("2026-05-01T04:00:00Z")),
            passed,
            message: message.map(str::to_owned),
        }
    }

    fn repository(status: &BackupPolicyStatus) -> Option<(String, String)> {
        conditions::find(&status.conditions.0, REPOSITORY_HEALTHY)
            .map(|c| (c.status.clone(), c.reason.clone()))
    }

    #[test]
    fn a_failed_check_or_retention_makes_the_repository_unhealthy_and_the_policy_not_ready() {
        let now = Time(at("2026-05-01T04:01:00Z"));
        let mut status = BackupPolicyStatus::default();
        judge_repository(&mut status, &now);
        assert_eq!(
            repository(&status),
            None,
            "nothing known before a check or retention ran"
        );

        status.last_check = Some(verdict("c-1", true, None));
        judge_repository(&mut status, &now);
        assert_eq!(repository(&status), Some(("True".into(), "CheckPassed".into())));

        status.last_retention = Some(verdict("r-1", false, Some("repository is already locked")));
        judge_repository(&mut status, &now);
        assert_eq!(
            repository(&status),
            Some(("False".into(), "RetentionFailed".into()))
        );

        status.last_check = Some(verdict("c-2", false, Some("pack 4f2a does not exist")));
        judge_repository(&mut status, &now);
        assert_eq!(repository(&status), Some(("False".into(), "CheckFailed".into())));
        let ok = finished(
            "p-1",
            BackupPhase::Succeeded,
            "2026-05-01T02:00:00Z",
            "snapshot 4f2a",
        );
        status.last_successful_backup = Some(BackupSummary {
            name: "p-1".into(),
            time: Time(at("2026-05-01T02:00:00Z")),
            snapshot_id: "4f2a".into(),
            size_bytes: 1,
            size: "1 B".into(),
            sha256: String::new(),
            duration: String::new(),
        });
        let (reason, ready, message) = reason_of(overall_health(&status, std::slice::from_ref(&ok), false));
        assert_eq!((reason, ready), ("RepositoryUnhealthy", false));
        assert!(message.contains("pack 4f2a does not exist"), "{message}");

        // Repaired: the next check passes and retention succeeds again.
        status.last_check = Some(verdict("c-3", true, None));
        status.last_retention = Some(verdict("r-2", true, None));
        judge_repository(&mut status, &now);
        assert_eq!(repository(&status), Some(("True".into(), "CheckPassed".into())));
        assert_eq!(
            reason_of(overall_health(&status, &[ok], false)).0,
            "BackupSucceeded"
        );
    }
}
