//! Which snapshot a Restore restores: a Backup's (once it succeeded) or a policy's newest or named one,
//! and how that snapshot is named in status and Events.

use crate::api::backup::BackupPhase;
use crate::api::Backup;
use crate::snapshot_id::short_id;

/// The snapshot to restore, resolved from the Restore's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSource {
    pub policy: String,
    /// A restic id, or `latest` (then `tags` select the policy's snapshots).
    pub snapshot: String,
    pub tags: Vec<String>,
    /// The sha256 a Backup's status recorded for its snapshot: the restore checks the stream against it
    /// (`--expect-sha256`), as well as against the `lifeboat-sha256` tag the backup stored on the snapshot
    /// (absent on snapshots of agents that did not store it yet).
    pub sha256: Option<String>,
}

pub fn latest_of_policy(policy: &str, namespace: &str, snapshot: Option<&str>) -> ResolvedSource {
    ResolvedSource {
        policy: policy.to_owned(),
        snapshot: snapshot.unwrap_or("latest").to_owned(),
        // The tags every backup Job of this policy writes (jobs::backup_invocation).
        tags: vec![format!("policy={policy}"), format!("namespace={namespace}")],
        sha256: None,
    }
}

impl ResolvedSource {
    /// The sha256 of a resolved Backup (its status), for a restore of exactly that snapshot.
    pub fn with_sha256(mut self, sha256: Option<String>) -> ResolvedSource {
        self.sha256 = sha256.filter(|s| !s.is_empty());
        self
    }
}

impl ResolvedSource {
    /// The snapshot as a person reads it.
    pub fn describe(&self) -> String {
        if self.snapshot == "latest" {
            format!("the newest snapshot of policy {}", self.policy)
        } else {
            format!("snapshot {} of policy {}", short_id(&self.snapshot), self.policy)
        }
    }
}

/// What `source.backupRef` leaves the restore with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromBackup {
    /// The Backup succeeded: its policy (the repository), snapshot and measured sha256.
    Snapshot {
        policy: String,
        id: String,
        sha256: Option<String>,
    },
    /// The Backup has not finished yet.
    Waiting(String),
    /// Nothing to restore from it: the reason and message of the failed Restore.
    Invalid(&'static str, String),
}

/// The snapshot of Backup `name` (`backup` as read, `None` when it does not exist).
pub fn from_backup(name: &str, namespace: &str, backup: Option<&Backup>) -> FromBackup {
    let Some(backup) = backup else {
        return FromBackup::Invalid(
            "BackupNotFound",
            format!("Backup {name} does not exist in namespace {namespace}"),
        );
    };
    let status = backup.status.clone().unwrap_or_default();
    match status.phase {
        Some(BackupPhase::Succeeded) => match status.snapshot_id {
            // The sha256 the backup measured: the restore checks the stream against it.
            Some(id) => FromBackup::Snapshot {
                policy: backup.spec.policy_ref.name.clone(),
                id,
                sha256: status.sha256.clone(),
            },
            None => FromBackup::Invalid(
                "SnapshotNotFound",
                format!("Backup {name} succeeded but records no snapshot"),
            ),
        },
        Some(BackupPhase::Failed) => {
            let why = status.message.unwrap_or_default();
            FromBackup::Invalid(
                "BackupFailed",
                format!("Backup {name} failed, so there is nothing to restore: {why}"),
            )
        }
        _ => FromBackup::Waiting(format!("waiting for Backup {name} to finish")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(status: serde_json::Value) -> Backup {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "lifeboat.dev/v1alpha1",
            "kind": "Backup",
            "metadata": {"name": "nightly", "namespace": "hotel"},
            "spec": {"policyRef": {"name": "hotel-db"}},
            "status": status,
        }))
        .expect("valid Backup")
    }

    #[test]
    fn a_succeeded_backup_gives_its_snapshot_and_sha256() {
        let done =
            backup(serde_json::json!({"phase": "Succeeded", "snapshotId": "4f42669d8c2f", "sha256": "ab"}));
        assert_eq!(
            from_backup("nightly", "hotel", Some(&done)),
            FromBackup::Snapshot {
                policy: "hotel-db".into(),
                id: "4f42669d8c2f".into(),
                sha256: Some("ab".into()),
            }
        );
        let no_snapshot = backup(serde_json::json!({"phase": "Succeeded"}));
        assert!(matches!(
            from_backup("nightly", "hotel", Some(&no_snapshot)),
            FromBackup::Invalid("SnapshotNotFound", _)
        ));
    }

    #[test]
    fn a_running_backup_is_waited_for_and_a_failed_or_missing_one_fails_the_restore() {
        let running = backup(serde_json::json!({"phase": "Running"}));
        assert_eq!(
            from_backup("nightly", "hotel", Some(&running)),
            FromBackup::Waiting("waiting for Backup nightly to finish".into())
        );
        let failed = backup(serde_json::json!({"phase": "Failed", "message": "disk full"}));
        assert_eq!(
            from_backup("nightly", "hotel", Some(&failed)),
            FromBackup::Invalid(
                "BackupFailed",
                "Backup nightly failed, so there is nothing to restore: disk full".into()
            )
        );
        assert_eq!(
            from_backup("nightly", "hotel", None),
            FromBackup::Invalid(
                "BackupNotFound",
                "Backup nightly does not exist in namespace hotel".into()
            )
        );
    }

    #[test]
    fn the_newest_snapshot_is_found_by_the_policys_tags_and_a_named_one_is_shown_short() {
        let latest = latest_of_policy("hotel-db", "hotel", None);
        assert_eq!(latest.tags, ["policy=hotel-db", "namespace=hotel"]);
        assert_eq!(latest.describe(), "the newest snapshot of policy hotel-db");
        let named =
            latest_of_policy("hotel-db", "hotel", Some("4f42669d8c2f0000")).with_sha256(Some(String::new()));
        assert_eq!(named.describe(), "snapshot 4f42669d of policy hotel-db");
        assert_eq!(named.sha256, None, "an empty sha256 is none");
    }
}
