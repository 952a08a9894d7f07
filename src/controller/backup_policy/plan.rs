//! The pure decisions of the BackupPolicy controller about its Backups: the name of a slot's Backup,
//! which slots are already handled, what newly finished Backups add to status (last success, size
//! anomaly, last failure) and what is worth a notification. No API calls here, so every rule has a unit
//! test. Which slot is due is decided in [`crate::slots`], shared with the RestoreDrill controller;
//! freshness and health in [`super::health`].

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::{SCHEDULED_SLOT, SIZE_ANOMALY};
use crate::api::backup::BackupPhase;
use crate::api::backup_policy::{
    BackupPolicyStatus, BackupSummary, FailureSummary, NotificationEvent, SizeAnomaly,
};
use crate::api::Backup;
use crate::conditions::{self, Desired};

/// Something a person may want to hear about (spec.notifications.events chooses which).
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub event: NotificationEvent,
    pub headline: String,
    pub detail: String,
}

pub fn is_finished(backup: &Backup) -> bool {
    matches!(
        backup.status.as_ref().and_then(|s| s.phase),
        Some(BackupPhase::Succeeded | BackupPhase::Failed)
    )
}

pub fn completion(backup: &Backup) -> Option<Timestamp> {
    backup
        .status
        .as_ref()
        .and_then(|s| s.completion_time.clone())
        .map(|t| t.0)
}

fn phase(backup: &Backup) -> Option<BackupPhase> {
    backup.status.as_ref().and_then(|s| s.phase)
}

/// Records in `last_schedule_time` the newest slot whose Backup exists, and returns the instant up to
/// which slots are handled. A slot is handled once recorded in status or once its Backup exists (the
/// reconcile that creates a slot's Backup records nothing else). Never before the policy existed:
/// Backups of a deleted namesake may still await garbage collection.
pub fn handled_until(
    backups: &[Arc<Backup>],
    status: &mut BackupPolicyStatus,
    created: Timestamp,
) -> Timestamp {
    let newest_created_slot = backups
        .iter()
        .filter_map(|b| b.annotations().get(SCHEDULED_SLOT))
        .filter_map(|slot| slot.parse::<Timestamp>().ok())
        .max();
    if let Some(slot) = newest_created_slot {
        if status.last_schedule_time.as_ref().is_none_or(|t| t.0 < slot) {
            status.last_schedule_time = Some(Time(slot));
        }
    }
    status
        .last_schedule_time
        .clone()
        .map_or(created, |t| t.0.max(created))
}

/// What recording newly finished Backups asks the reconciler to do besides writing status.
#[derive(Debug, Default, PartialEq)]
pub struct Recorded {
    pub notices: Vec<Notice>,
    /// The new last success: retention runs after it.
    pub new_success: Option<String>,
    /// The SizeAnomaly Event's message, when the new success is of unusual size.
    pub anomaly_event: Option<String>,
}

/// Folds newly finished Backups into the policy's memory: last success (with the size-anomaly check and
/// the window of recent sizes), last failure and the failure count.
pub fn record_results(
    size_band: Option<&SizeAnomaly>,
    backups: &[Arc<Backup>],
    status: &mut BackupPolicyStatus,
    now: &Time,
) -> Recorded {
    let mut recorded = Recorded::default();
    let generation = status.observed_generation;
    if size_band.is_none() {
        // Checking was switched off: a verdict of the old band must not stay in status forever.
        conditions::remove(&mut status.conditions.0, SIZE_ANOMALY);
        status.recent_sizes.clear();
    }
    let known_success = status.last_successful_backup.as_ref().map(|s| s.time.0);
    let newest_success = backups
        .iter()
        .filter(|b| phase(b) == Some(BackupPhase::Succeeded))
        .filter_map(|b| completion(b).map(|at| (at, b)))
        .max_by_key(|(at, _)| *at);
    if let Some((at, backup)) = newest_success.filter(|(at, _)| known_success.is_none_or(|known| *at > known))
    {
        let result = backup.status.clone().unwrap_or_default();
        let size = result.size_bytes.unwrap_or(0);
        status.last_successful_backup = Some(BackupSummary {
            name: backup.name_any(),
            time: Time(at),
            snapshot_id: result.snapshot_id.clone().unwrap_or_default(),
            size_bytes: size,
            size: crate::size::human(size.unsigned_abs()),
            sha256: result.sha256.clone().unwrap_or_default(),
            duration: result.duration.clone().unwrap_or_default(),
        });
        if let Some(band) = size_band {
            match size_anomaly(band, &status.recent_sizes, size) {
                Some(message) => {
                    conditions::apply(
                        &mut status.conditions.0,
                        Desired::new(SIZE_ANOMALY, true, "SizeOutsideBand", message.clone()),
                        generation,
                        now,
                    );
                    recorded.notices.push(Notice {
                        event: NotificationEvent::Anomaly,
                        headline: "made a backup of unusual size".into(),
                        detail: message.clone(),
                    });
                    recorded.anomaly_event = Some(format!("{}: {message}", backup.name_any()));
                }
                None => conditions::apply(
                    &mut status.conditions.0,
                    Desired::new(SIZE_ANOMALY, false, "SizeWithinBand", format!("{size} bytes")),
                    generation,
                    now,
                ),
            }
            status.recent_sizes.push(size);
            let window = band.window.max(1) as usize;
            let excess = status.recent_sizes.len().saturating_sub(window);
            status.recent_sizes.drain(..excess);
        }
        recorded.new_success = Some(backup.name_any());
    }

    let known_failure = status.last_failure.as_ref().map(|f| f.time.0);
    let new_failures: Vec<&Arc<Backup>> = backups
        .iter()
        .filter(|b| phase(b) == Some(BackupPhase::Failed))
        .filter(|b| completion(b).is_some_and(|at| known_failure.is_none_or(|known| at > known)))
        .collect();
    if let Some(newest) = new_failures.iter().max_by_key(|b| completion(b)) {
        status.failed_backups = Some(status.failed_backups.unwrap_or(0) + new_failures.len() as i64);
        let message = newest
            .status
            .as_ref()
            .and_then(|s| s.message.clone())
            .unwrap_or_default();
        recorded.notices.push(Notice {
            event: NotificationEvent::Failure,
            headline: format!("backup {} FAILED", newest.name_any()),
            detail: message.clone(),
        });
        status.last_failure = Some(FailureSummary {
            name: newest.name_any(),
            time: Time(completion(newest).unwrap_or(now.0)),
            message,
        });
    }
    recorded
}

/// The deterministic name of a slot's Backup: a restarted operator computes the same name and the
/// apiserver refuses a second one.
pub fn backup_name_for_slot(policy: &str, slot: Timestamp) -> String {
    super::super::status::child_name(policy, &slot.as_second().to_string(), 253)
}
/// A warning when `size` leaves the band around the median of `recent` (earlier successes).
pub fn size_anomaly(band: &SizeAnomaly, recent: &[i64], size: i64) -> Option<String> {
    if recent.is_empty() {
        return None;
    }
    let mut sorted = recent.to_vec();
    sorted.sort_unstable();
    let middle = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) as f64 / 2.0
    } else {
        sorted[middle] as f64
    };
    if median <= 0.0 {
        return None;
    }
    let ratio = size as f64 / median;
    if ratio < band.min_ratio || ratio > band.max_ratio {
        Some(format!(
            "backup size {size} bytes is {:.0}% of the median of the last {} backups ({median:.0} bytes); expected {:.0}%–{:.0}%",
            ratio * 100.0,
            recent.len(),
            band.min_ratio * 100.0,
            band.max_ratio * 100.0
        ))
    } else {
        None
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use crate::api::backup::{BackupSpec, BackupStatus, BackupTrigger};
    use crate::api::common::LocalObjectRef;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn backup(name: &str, slot: Option<&str>, status: Option<BackupStatus>) -> Arc<Backup> {
        Arc::new(Backup {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: slot.map(|s| [(SCHEDULED_SLOT.to_owned(), s.to_owned())].into()),
                ..Default::default()
            },
            spec: BackupSpec {
                policy_ref: LocalObjectRef { name: "p".into() },
                trigger: BackupTrigger::Scheduled,
                reason: None,
            },
            status,
        })
    }

    fn done(name: &str, phase: BackupPhase, when: &str, size: i64, message: &str) -> Arc<Backup> {
        backup(
            name,
            None,
            Some(BackupStatus {
                phase: Some(phase),
                completion_time: Some(Time(at(when))),
                size_bytes: Some(size),
                snapshot_id: Some(format!("snap-{name}")),
                message: Some(message.into()),
                ..Default::default()
            }),
        )
    }

    #[test]
    fn an_existing_slot_backup_counts_as_handled_but_never_before_creation() {
        let created = at("2026-05-01T00:00:00Z");
        let mut status = BackupPolicyStatus::default();
        assert_eq!(handled_until(&[], &mut status, created), created);
        let made = backup("p-1", Some("2026-05-02T02:00:00Z"), None);
        assert_eq!(
            handled_until(&[made], &mut status, created),
            at("2026-05-02T02:00:00Z")
        );
        assert_eq!(status.last_schedule_time, Some(Time(at("2026-05-02T02:00:00Z"))));
        let old_namesake = backup("p-0", Some("2026-04-01T02:00:00Z"), None);
        let mut fresh = BackupPolicyStatus::default();
        assert_eq!(handled_until(&[old_namesake], &mut fresh, created), created);
    }

    #[test]
    fn a_new_success_is_recorded_once_and_starts_retention() {
        let band = SizeAnomaly {
            min_ratio: 0.7,
            max_ratio: 1.5,
            window: 2,
        };
        let mut status = BackupPolicyStatus {
            recent_sizes: vec![100, 100],
            ..Default::default()
        };
        let now = Time(at("2026-05-03T00:00:00Z"));
        let backups = [done(
            "p-1",
            BackupPhase::Succeeded,
            "2026-05-02T02:00:00Z",
            40,
            "snapshot",
        )];
        let recorded = record_results(Some(&band), &backups, &mut status, &now);
        assert_eq!(recorded.new_success.as_deref(), Some("p-1"));
        let event = recorded.anomaly_event.expect("40% of the median is an anomaly");
        assert!(event.starts_with("p-1: backup size 40 bytes is 40%"), "{event}");
        assert_eq!(recorded.notices.len(), 1);
        assert_eq!(recorded.notices[0].event, NotificationEvent::Anomaly);
        assert!(conditions::is_true(&status.conditions.0, SIZE_ANOMALY));
        assert_eq!(
            status.recent_sizes,
            vec![100, 40],
            "the window keeps the newest sizes"
        );
        let summary = status.last_successful_backup.clone().unwrap();
        assert_eq!(
            (summary.name.as_str(), summary.snapshot_id.as_str()),
            ("p-1", "snap-p-1")
        );
        // Seen again: nothing new.
        assert_eq!(
            record_results(Some(&band), &backups, &mut status, &now),
            Recorded::default()
        );
    }

    #[test]
    fn new_failures_are_counted_and_the_newest_is_told() {
        let mut status = BackupPolicyStatus::default();
        let now = Time(at("2026-05-03T00:00:00Z"));
        let backups = [
            done("p-1", BackupPhase::Failed, "2026-05-01T02:00:00Z", 0, "disk full"),
            done(
                "p-2",
                BackupPhase::Failed,
                "2026-05-02T02:00:00Z",
                0,
                "repository locked",
            ),
        ];
        let recorded = record_results(None, &backups, &mut status, &now);
        assert_eq!(recorded.new_success, None);
        assert_eq!(status.failed_backups, Some(2));
        let last = status.last_failure.clone().unwrap();
        assert_eq!(
            (last.name.as_str(), last.message.as_str()),
            ("p-2", "repository locked")
        );
        assert_eq!(recorded.notices[0].headline, "backup p-2 FAILED");
        record_results(None, &backups, &mut status, &now);
        assert_eq!(status.failed_backups, Some(2), "counted once");
    }

    #[test]
    fn sizes_outside_the_crm_runbook_band_are_anomalies() {
        let band = SizeAnomaly {
            min_ratio: 0.7,
            max_ratio: 1.5,
            window: 5,
        };
        let recent = [100, 110, 90, 105, 95];
        assert_eq!(size_anomaly(&band, &recent, 100), None);
        assert_eq!(size_anomaly(&band, &recent, 71), None);
        let shrunk = size_anomaly(&band, &recent, 60).expect("-40% is an anomaly");
        assert!(shrunk.contains("60%"), "{shrunk}");
        assert!(size_anomaly(&band, &recent, 160).is_some());
        assert_eq!(size_anomaly(&band, &[], 1), None, "no baseline yet");
    }

    #[test]
    fn removing_the_size_band_removes_its_verdict() {
        let mut status = BackupPolicyStatus {
            recent_sizes: vec![100, 40],
            ..Default::default()
        };
        let now = Time("2026-05-02T00:00:00Z".parse().unwrap());
        conditions::apply(
            &mut status.conditions.0,
            Desired::new(SIZE_ANOMALY, true, "SizeOutsideBand", "40%"),
            None,
            &now,
        );
        record_results(None, &[], &mut status, &now);
        assert!(conditions::find(&status.conditions.0, SIZE_ANOMALY).is_none());
        assert!(status.recent_sizes.is_empty());
    }
}
