//! The pre-switch backup: a Backup child through the named BackupPolicy, judged like the runbook's
//! `test -s backup.sql` before anything irreversible happens.

use std::time::Duration;

use kube::{Api, Resource};

use super::machine::Step;
use super::steps::{limit, step_age, SLOW_POLL};
use super::{Progress, Run, CUTOVER_LABEL};
use crate::api::backup::{BackupPhase, BackupSpec, BackupStatus, BackupTrigger};
use crate::api::common::LocalObjectRef;
use crate::api::Backup;
use crate::controller::children::create_ignoring_existing;
use crate::controller::status::child_name;
use crate::controller::ReconcileError;
use crate::duration::format_duration;

/// Default of `backup.timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

pub fn backup_name(cutover: &str) -> String {
    // The Backup's own Job adds "-backup": keep room for it within 63.
    child_name(cutover, "pre-switch", 56)
}

pub(super) async fn backup(run: &mut Run<'_>, step: &Step) -> Result<Progress, ReconcileError> {
    let Some(wanted) = run.cutover.spec.backup.clone() else {
        return Ok(Progress::Skipped("no backup configured".into()));
    };
    let name = backup_name(&run.name());
    if run.status.backup_ref.is_none() {
        run.status.backup_ref = Some(LocalObjectRef { name: name.clone() });
        run.save().await?;
    }
    let backups: Api<Backup> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
    let Some(existing) = backups.get_opt(&name).await? else {
        let owner = run
            .cutover
            .controller_owner_ref(&())
            .expect("a Cutover read from the API has a name and uid");
        let mut backup = Backup::new(
            &name,
            BackupSpec {
                policy_ref: wanted.policy_ref.clone(),
                trigger: BackupTrigger::PreCutover,
                reason: Some(format!("before Cutover {}", run.name())),
            },
        );
        backup.metadata.namespace = Some(run.namespace.clone());
        backup.metadata.owner_references = Some(vec![owner]);
        backup.metadata.labels = Some([(CUTOVER_LABEL.to_owned(), run.name())].into());
        create_ignoring_existing(&backups, &backup).await?;
        return Ok(Progress::Wait {
            after: SLOW_POLL,
            message: format!(
                "Backup {name} created from BackupPolicy {}",
                wanted.policy_ref.name
            ),
        });
    };
    let status: BackupStatus = existing.status.unwrap_or_default();
    let timeout = limit(wanted.timeout.as_ref(), DEFAULT_TIMEOUT);
    Ok(backup_progress(&name, status, step_age(run, step), timeout))
}

/// How far the Backup got: judged once it finished, failed once it overran `timeout` (counted from
/// the step's start), otherwise waiting with what the Backup controller says it is doing.
fn backup_progress(name: &str, status: BackupStatus, age: Duration, timeout: Duration) -> Progress {
    match status.phase {
        Some(BackupPhase::Succeeded) => judge_backup(name, &status),
        Some(BackupPhase::Failed) => Progress::Failed(format!(
            "Backup {name} failed: {}; no switch without a valid snapshot",
            status.message.unwrap_or_default()
        )),
        _ if age > timeout => Progress::Failed(format!(
            "Backup {name} did not finish within {}",
            format_duration(timeout)
        )),
        _ => {
            let doing = status
                .message
                .unwrap_or_else(|| "waiting for the Backup controller".into());
            Progress::Wait {
                after: SLOW_POLL,
                message: format!("Backup {name}: {doing}"),
            }
        }
    }
}

/// The runbook's `test -s backup.sql`: a snapshot that exists and is not empty.
fn judge_backup(name: &str, status: &BackupStatus) -> Progress {
    match (&status.snapshot_id, status.size_bytes) {
        (Some(snapshot), Some(size)) if size > 0 => {
            Progress::Done(format!("Backup {name}: snapshot {snapshot}, {size} bytes"))
        }
        (Some(snapshot), _) => Progress::Failed(format!(
            "Backup {name}: snapshot {snapshot} is empty; no switch without a valid snapshot"
        )),
        (None, _) => Progress::Failed(format!(
            "Backup {name} succeeded without a snapshot id; no switch without a valid snapshot"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_snapshotless_backup_stops_the_cutover() {
        let ok = BackupStatus {
            snapshot_id: Some("abcd1234".into()),
            size_bytes: Some(2048),
            ..Default::default()
        };
        assert!(matches!(judge_backup("b", &ok), Progress::Done(_)));
        let empty = BackupStatus {
            snapshot_id: Some("abcd1234".into()),
            size_bytes: Some(0),
            ..Default::default()
        };
        assert!(matches!(judge_backup("b", &empty), Progress::Failed(m) if m.contains("empty")));
        assert!(
            matches!(judge_backup("b", &BackupStatus::default()), Progress::Failed(m) if m.contains("snapshot id"))
        );
    }

    #[test]
    fn a_running_backup_waits_until_its_timeout() {
        let minute = Duration::from_secs(60);
        let running = BackupStatus {
            phase: Some(BackupPhase::Running),
            message: Some("dumping".into()),
            ..Default::default()
        };
        assert_eq!(
            backup_progress("b", running.clone(), minute, 2 * minute),
            Progress::Wait {
                after: SLOW_POLL,
                message: "Backup b: dumping".into()
            }
        );
        assert_eq!(
            backup_progress("b", BackupStatus::default(), minute, 2 * minute),
            Progress::Wait {
                after: SLOW_POLL,
                message: "Backup b: waiting for the Backup controller".into()
            }
        );
        assert_eq!(
            backup_progress("b", running, 3 * minute, 2 * minute),
            Progress::Failed("Backup b did not finish within 2m".into())
        );
    }

    #[test]
    fn a_failed_backup_fails_the_step_even_before_its_timeout() {
        let failed = BackupStatus {
            phase: Some(BackupPhase::Failed),
            message: Some("pg_dump exited 1".into()),
            ..Default::default()
        };
        assert_eq!(
            backup_progress("b", failed, Duration::ZERO, Duration::from_secs(60)),
            Progress::Failed("Backup b failed: pg_dump exited 1; no switch without a valid snapshot".into())
        );
    }
}
