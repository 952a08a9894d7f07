//! The rollback steps past the switch back (which is in `traffic.rs`): checking that the old side
//! answers again, and restoring the database from the pre-switch Backup.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Resource};

use super::machine::Step;
use super::steps::{limit, step_age, POLL, SLOW_POLL};
use super::traffic::{side_ready, DEFAULT_READINESS_TIMEOUT};
use super::{now, Progress, Run, CUTOVER_LABEL};
use crate::api::backup_policy::BackupSource;
use crate::api::common::{HttpCheck, LocalObjectRef};
use crate::api::cutover::TimeWindow;
use crate::api::restore::RestorePhase;
use crate::api::{Backup, BackupPolicy, Restore};
use crate::controller::children::create_ignoring_existing;
use crate::controller::status::child_name;
use crate::controller::ReconcileError;
use crate::duration::format_duration;

/// The runbook's rollback step 2 (`curl -fsS …/health`): the old side answers again. Its Deployment
/// is ready and every spec.verify HTTP check gets its expected status (they address the switched
/// Service, now on `from`); body matches are left out, as they usually assert the new version.
pub(super) async fn verify_from(run: &mut Run<'_>, step: &Step) -> Result<Progress, ReconcileError> {
    let timeout = limit(
        run.cutover.spec.readiness_timeout.as_ref(),
        DEFAULT_READINESS_TIMEOUT,
    );
    let from = run.cutover.spec.from.clone();
    let mut problem = side_ready(run, &from).await?.err();
    let mut passed = Vec::new();
    if problem.is_none() {
        let checks: Vec<(String, HttpCheck)> = run
            .cutover
            .spec
            .verify
            .iter()
            .filter_map(|c| c.http.clone().map(|h| (c.name.clone(), h)))
            .collect();
        for (name, check) in checks {
            let check = HttpCheck {
                expect_body_contains: None,
                ..check
            };
            match crate::checks::run_http_check(&check).await {
                Ok(_) => passed.push(name),
                Err(failure) => {
                    problem = Some(format!("{name}: {failure}"));
                    break;
                }
            }
        }
    }
    Ok(old_side_progress(problem, &passed, step_age(run, step), timeout))
}

/// Healthy is done (naming the checks that passed); unhealthy waits until `timeout`, then fails.
fn old_side_progress(
    problem: Option<String>,
    passed: &[String],
    age: Duration,
    timeout: Duration,
) -> Progress {
    match problem {
        None if passed.is_empty() => Progress::Done("the old side is ready".into()),
        None => Progress::Done(format!("the old side is ready and passes {}", passed.join(", "))),
        Some(problem) if age > timeout => Progress::Failed(format!(
            "the old side is not healthy within {}: {problem}",
            format_duration(timeout)
        )),
        Some(problem) => Progress::Wait {
            after: POLL,
            message: problem,
        },
    }
}

pub(super) async fn restore_database(run: &mut Run<'_>) -> Result<Progress, ReconcileError> {
    let Some(backup) = run.status.backup_ref.clone() else {
        return Ok(Progress::Skipped("no pre-switch Backup".into()));
    };
    let name = child_name(&run.name(), "rollback-restore", 56);
    if run.status.restore_ref.is_none() {
        run.status.restore_ref = Some(LocalObjectRef { name: name.clone() });
        run.save().await?;
    }
    let restores: Api<Restore> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
    let Some(existing) = restores.get_opt(&name).await? else {
        let Some(policy_ref) = run
            .cutover
            .spec
            .backup
            .as_ref()
            .map(|b| b.policy_ref.name.clone())
        else {
            return Ok(Progress::Failed(
                "no spec.backup.policyRef to restore into".into(),
            ));
        };
        let policies: Api<BackupPolicy> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
        let Some(policy) = policies.get_opt(&policy_ref).await? else {
            return Ok(Progress::Failed(format!(
                "BackupPolicy {policy_ref} does not exist; restore Backup {} by hand",
                backup.name
            )));
        };
        let mut restore = match rollback_restore(
            &name,
            &run.namespace,
            &run.name(),
            &backup.name,
            &policy.spec.source,
        ) {
            Ok(restore) => restore,
            Err(error) => return Ok(Progress::Failed(format!("cannot build the Restore: {error}"))),
        };
        let owner = run
            .cutover
            .controller_owner_ref(&())
            .expect("a Cutover read from the API has a name and uid");
        restore.metadata.owner_references = Some(vec![owner]);
        create_ignoring_existing(&restores, &restore).await?;
        return Ok(Progress::Wait {
            after: SLOW_POLL,
            message: format!("Restore {name} of Backup {} created", backup.name),
        });
    };
    let status = existing.status.unwrap_or_default();
    Ok(match status.phase {
        Some(RestorePhase::Succeeded) => {
            let backups: Api<Backup> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
            let backup_start = backups
                .get_opt(&backup.name)
                .await?
                .and_then(|b| b.status)
                .and_then(|s| s.start_time);
            let restored_at = status.completion_time.clone().unwrap_or_else(now);
            if let Some(rollback) = run.status.rollback.as_mut() {
                let lost = lost_writes(backup_start, rollback.writers_stopped_time.clone(), restored_at);
                rollback.database_restored = true;
                rollback.data_loss_warning = Some(data_loss_warning(
                    &backup.name,
                    lost.as_ref(),
                    rollback.writers_stopped_time.is_some(),
                ));
                rollback.lost_writes = lost;
            }
            Progress::Done(format!("Restore {name} restored Backup {}", backup.name))
        }
        Some(RestorePhase::Failed) => Progress::Failed(format!(
            "Restore {name} failed: {}",
            status.message.unwrap_or_default()
        )),
        _ => Progress::Wait {
            after: SLOW_POLL,
            message: format!(
                "Restore {name}: {}",
                status
                    .message
                    .unwrap_or_else(|| "waiting for the Restore controller".into())
            ),
        },
    })
}

/// The Restore of Backup `backup` into the policy's own database (owner reference not yet set).
/// Built as JSON so this stays independent of the Restore type's optional fields.
fn rollback_restore(
    name: &str,
    namespace: &str,
    cutover: &str,
    backup: &str,
    source: &BackupSource,
) -> Result<Restore, serde_json::Error> {
    let (target, database) = if let Some(postgres) = &source.postgres {
        (
            serde_json::json!({"postgres": postgres.connection}),
            Some(postgres.connection.database.clone()),
        )
    } else if let Some(mysql) = &source.mysql {
        (serde_json::json!({"mysql": mysql}), Some(mysql.database.clone()))
    } else {
        (serde_json::json!({"files": source.files}), None)
    };
    let mut spec = serde_json::json!({
        "source": {"backupRef": {"name": backup}},
        "target": target,
        // The rollback replaces the migrated database with the pre-switch snapshot, by design.
        "dropExisting": true,
    });
    if let Some(database) = database {
        spec["confirmOverwrite"] = serde_json::json!(database);
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Restore",
        "metadata": {"name": name, "namespace": namespace, "labels": {CUTOVER_LABEL: cutover}},
        "spec": spec,
    }))
}

/// The writes the restore discarded: those after the pre-switch backup began and before the writers
/// stopped — or, when nothing could be stopped, before the restore ended.
fn lost_writes(
    backup_start: Option<Time>,
    writers_stopped: Option<Time>,
    restored: Time,
) -> Option<TimeWindow> {
    Some(TimeWindow {
        from: backup_start?,
        until: writers_stopped.unwrap_or(restored),
    })
}

/// What the restore cost, in words, for status and the rollback's Event.
fn data_loss_warning(backup: &str, lost: Option<&TimeWindow>, writers_stopped: bool) -> String {
    let Some(window) = lost else {
        return format!(
            "the database is back at the pre-switch snapshot (Backup {backup}): data written after it is lost"
        );
    };
    let until = if writers_stopped {
        format!("{}, when the writers were stopped,", window.until.0)
    } else {
        format!(
            "{}, when the restore finished (no writer could be stopped)",
            window.until.0
        )
    };
    format!(
        "the database is back at the pre-switch snapshot (Backup {backup}): writes from {} (the backup's \
         start) until {until} are lost",
        window.from.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_old_side_is_healthy_when_ready_and_passing_the_verify_checks() {
        let timeout = Duration::from_secs(600);
        assert_eq!(
            old_side_progress(None, &[], Duration::ZERO, timeout),
            Progress::Done("the old side is ready".into())
        );
        assert_eq!(
            old_side_progress(None, &["health".into(), "home".into()], Duration::ZERO, timeout),
            Progress::Done("the old side is ready and passes health, home".into())
        );
        assert_eq!(
            old_side_progress(Some("health: 503".into()), &[], timeout, timeout),
            Progress::Wait {
                after: POLL,
                message: "health: 503".into()
            }
        );
        assert_eq!(
            old_side_progress(Some("health: 503".into()), &[], 2 * timeout, timeout),
            Progress::Failed("the old side is not healthy within 10m: health: 503".into())
        );
    }

    #[test]
    fn the_rollback_restore_overwrites_the_policy_database_by_name() {
        let source: BackupSource = serde_json::from_value(json!({"postgres": {
            "host": "db.hotel.svc", "database": "hotel", "user": "app",
            "passwordSecretRef": {"name": "db", "key": "password"},
        }}))
        .unwrap();
        let restore = rollback_restore("c-rollback-restore", "hotel", "c", "c-pre-switch", &source).unwrap();
        let value = serde_json::to_value(&restore).unwrap();
        assert_eq!(value["metadata"]["labels"][CUTOVER_LABEL], "c");
        assert_eq!(value["spec"]["source"]["backupRef"]["name"], "c-pre-switch");
        assert_eq!(value["spec"]["target"]["postgres"]["database"], "hotel");
        assert_eq!(value["spec"]["dropExisting"], true);
        assert_eq!(value["spec"]["confirmOverwrite"], "hotel");
    }

    #[test]
    fn the_lost_writes_run_from_the_backup_to_the_writers_stop_or_else_the_restore() {
        let t = |s: i64| Time(jiff::Timestamp::from_second(1_800_000_000 + s).unwrap());
        let stopped = lost_writes(Some(t(0)), Some(t(60)), t(90)).unwrap();
        assert_eq!((stopped.from.clone(), stopped.until.clone()), (t(0), t(60)));
        assert_eq!(
            data_loss_warning("c-pre-switch", Some(&stopped), true),
            "the database is back at the pre-switch snapshot (Backup c-pre-switch): writes from \
             2027-01-15T08:00:00Z (the backup's start) until 2027-01-15T08:01:00Z, when the writers were \
             stopped, are lost"
        );
        let unstopped = lost_writes(Some(t(0)), None, t(90)).unwrap();
        assert_eq!(unstopped.until, t(90));
        assert!(data_loss_warning("b", Some(&unstopped), false).contains("no writer could be stopped"));
        assert!(lost_writes(None, Some(t(60)), t(90)).is_none());
        assert!(data_loss_warning("b", None, true).ends_with("data written after it is lost"));
    }
}
