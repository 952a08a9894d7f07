//! Snapshots that retention must not forget although the keep rules would: a Cutover's pre-switch
//! snapshot while the Cutover runs and for `backup.holdAfterEnd` (default 24h) after it ended — its
//! rollback restores exactly that snapshot —, the snapshot a Restore (or a drill's) still running reads,
//! and any Backup a user annotated `lifeboat.dev/hold: "true"`.
//! The pre-switch snapshot carries the policy's tags, so without a hold a long stabilization window plus
//! `keepLast` forgot the very snapshot a rollback needs.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::api::backup_policy::SnapshotHold;
use crate::api::{Backup, Cutover, Restore};

/// A user's explicit hold on a Backup's snapshot; removing the annotation releases it.
pub const HOLD_ANNOTATION: &str = "lifeboat.dev/hold";
/// Default of a Cutover's `backup.holdAfterEnd`.
pub const DEFAULT_HOLD_AFTER_END: Duration = Duration::from_secs(24 * 3600);

/// The holds on `policy`'s snapshots at `now`, from the namespace's Backups (of this policy), Cutovers
/// and Restores.
pub fn holds(
    policy: &str,
    backups: &[Arc<Backup>],
    cutovers: &[Cutover],
    restores: &[Restore],
    now: Timestamp,
) -> Vec<SnapshotHold> {
    let snapshot_of = |name: &str| {
        backups
            .iter()
            .find(|b| b.name_any() == name)
            .and_then(|b| b.status.as_ref()?.snapshot_id.clone())
    };
    let mut holds = Vec::new();
    for cutover in cutovers {
        let Some(wanted) = &cutover.spec.backup else {
            continue;
        };
        if wanted.policy_ref.name != policy {
            continue;
        }
        let status = cutover.status.clone().unwrap_or_default();
        let Some(backup) = status.backup_ref.map(|r| r.name) else {
            continue;
        };
        let Some(snapshot_id) = snapshot_of(&backup) else {
            continue;
        };
        let keep_for = wanted
            .hold_after_end
            .as_ref()
            .and_then(|d| d.parse().ok())
            .unwrap_or(DEFAULT_HOLD_AFTER_END);
        let until = status.completion_time.map(|ended| {
            let span = jiff::SignedDuration::try_from(keep_for).unwrap_or(jiff::SignedDuration::MAX);
            Time(ended.0.saturating_add(span).unwrap_or(Timestamp::MAX))
        });
        if until.as_ref().is_some_and(|until| until.0 <= now) {
            continue;
        }
        holds.push(SnapshotHold {
            snapshot_id,
            backup,
            held_by: format!("Cutover {}", cutover.name_any()),
            until,
        });
    }
    for restore in restores {
        let status = restore.status.clone().unwrap_or_default();
        if status.completion_time.is_some() {
            continue;
        }
        let source = &restore.spec.source;
        let (backup, snapshot_id) = if let Some(by_backup) = &source.backup_ref {
            (by_backup.name.clone(), snapshot_of(&by_backup.name))
        } else if source.policy_ref.as_ref().is_some_and(|p| p.name == policy) {
            let pinned = source.snapshot.clone().filter(|s| s != "latest");
            (String::new(), pinned.or(status.snapshot_id))
        } else {
            continue;
        };
        let Some(snapshot_id) = snapshot_id else { continue };
        holds.push(SnapshotHold {
            snapshot_id,
            backup,
            held_by: format!("Restore {}", restore.name_any()),
            until: None,
        });
    }
    for backup in backups {
        if backup.annotations().get(HOLD_ANNOTATION).map(String::as_str) != Some("true") {
            continue;
        }
        let Some(snapshot_id) = backup.status.as_ref().and_then(|s| s.snapshot_id.clone()) else {
            continue;
        };
        holds.push(SnapshotHold {
            snapshot_id,
            backup: backup.name_any(),
            held_by: format!("annotation {HOLD_ANNOTATION}"),
            until: None,
        });
    }
    holds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(name: &str, snapshot: &str, hold: bool) -> Arc<Backup> {
        let mut backup: Backup = serde_json::from_value(serde_json::json!({
            "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"policyRef": {"name": "shop-db"}},
            "status": {"phase": "Succeeded", "snapshotId": snapshot}
        }))
        .unwrap();
        if hold {
            backup
                .annotations_mut()
                .insert(HOLD_ANNOTATION.into(), "true".into());
        }
        Arc::new(backup)
    }

    fn cutover(name: &str, policy: &str, ended: Option<&str>, hold_after_end: Option<&str>) -> Cutover {
        let mut backup = serde_json::json!({"policyRef": {"name": policy}});
        if let Some(hold) = hold_after_end {
            backup["holdAfterEnd"] = hold.into();
        }
        let mut status = serde_json::json!({"backupRef": {"name": format!("{name}-pre-switch")}});
        if let Some(ended) = ended {
            status["completionTime"] = ended.into();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Cutover",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"trafficSwitch": {"service": {"name": "web"}},
                     "from": {"selector": {"track": "blue"}}, "to": {"selector": {"track": "green"}},
                     "backup": backup},
            "status": status
        }))
        .unwrap()
    }

    fn now() -> Timestamp {
        "2026-12-02T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_running_cutover_holds_its_pre_switch_snapshot_without_an_end() {
        let backups = [
            backup("release-pre-switch", "aaaa1111", false),
            backup("nightly", "bbbb2222", false),
        ];
        let held = holds(
            "shop-db",
            &backups,
            &[cutover("release", "shop-db", None, None)],
            &[],
            now(),
        );
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].snapshot_id, "aaaa1111");
        assert_eq!(held[0].held_by, "Cutover release");
        assert_eq!(held[0].until, None);
    }

    #[test]
    fn an_ended_cutover_holds_for_its_hold_after_end_then_releases() {
        let backups = [backup("release-pre-switch", "aaaa1111", false)];
        let recent = cutover("release", "shop-db", Some("2026-12-02T11:00:00Z"), Some("2h"));
        let held = holds("shop-db", &backups, &[recent], &[], now());
        assert_eq!(
            held[0].until.as_ref().map(|t| t.0.to_string()),
            Some("2026-12-02T13:00:00Z".to_owned())
        );
        let long_ago = cutover("release", "shop-db", Some("2026-11-30T11:00:00Z"), None);
        assert!(
            holds("shop-db", &backups, &[long_ago], &[], now()).is_empty(),
            "24h by default"
        );
    }

    #[test]
    fn another_policys_cutover_and_unannotated_backups_hold_nothing() {
        let backups = [
            backup("release-pre-switch", "aaaa1111", false),
            backup("mine", "cccc3333", true),
        ];
        let held = holds(
            "shop-db",
            &backups,
            &[cutover("release", "other-db", None, None)],
            &[],
            now(),
        );
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(
            (held[0].backup.as_str(), held[0].held_by.as_str()),
            ("mine", "annotation lifeboat.dev/hold")
        );
    }

    #[test]
    fn a_running_restore_holds_what_it_reads_and_a_finished_one_nothing() {
        let backups = [backup("nightly", "bbbb2222", false)];
        let restore = |name: &str, source: serde_json::Value, completed: bool| -> Restore {
            let mut status = serde_json::json!({"phase": "Running"});
            if completed {
                status["completionTime"] = "2026-12-02T11:00:00Z".into();
            }
            serde_json::from_value(serde_json::json!({
                "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Restore",
                "metadata": {"name": name, "namespace": "shop"},
                "spec": {"source": source, "target": {"scratch": {"engine": "postgres"}}},
                "status": status
            }))
            .unwrap()
        };
        let restores = [
            restore(
                "by-backup",
                serde_json::json!({"backupRef": {"name": "nightly"}}),
                false,
            ),
            restore(
                "pinned",
                serde_json::json!({"policyRef": {"name": "shop-db"}, "snapshot": "cccc3333"}),
                false,
            ),
            restore(
                "done",
                serde_json::json!({"backupRef": {"name": "nightly"}}),
                true,
            ),
        ];
        let held = holds("shop-db", &backups, &[], &restores, now());
        let ids: Vec<_> = held
            .iter()
            .map(|h| (h.snapshot_id.as_str(), h.held_by.as_str()))
            .collect();
        assert_eq!(
            ids,
            [("bbbb2222", "Restore by-backup"), ("cccc3333", "Restore pinned")]
        );
    }
}
