//! The rollback point survives retention: a Cutover's pre-switch snapshot carries its policy's tags, so
//! `keepLast: 1` plus nightly backups during a long stabilization window used to forget exactly the
//! snapshot a rollback restores. The policy's retention now holds it while the Cutover runs.

mod support;

use std::time::Duration;

use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use lifeboat::api::backup::BackupPhase;
use lifeboat::api::cutover::CutoverPhase;
use lifeboat::api::{Backup, BackupPolicy, Cutover};
use serde_json::json;
use support::cutover::{cutover, ended, phase, step_security, wait_for};
use support::installed::{InstalledOperator, LIFEBOAT_IMAGE};
use support::node_web::{blue_and_green, set_fault};
use support::real_node::{psql_in, DB_PASSWORD};
use support::restore::ROWS;
use support::wait::eventually;

#[tokio::test]
async fn keep_last_one_during_a_long_stabilization_keeps_the_snapshot_a_rollback_restores() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = support::real_node::namespace(&cluster, "cut-hold").await;
    blue_and_green(&cluster, &ns, operator).await;
    let (database, repository) = support::node_restore::hotel_policy(&cluster, &ns, operator).await;
    let repo = support::agent::Repo::at(repository);
    let policies: Api<BackupPolicy> = ns.api();
    policies
        .patch(
            "hotel-db",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"retention": {"keepLast": 1}}})),
        )
        .await
        .unwrap();
    let count = || {
        psql_in(&cluster, &ns, &database, "select count(*) from guests")
            .trim()
            .to_owned()
    };
    assert_eq!(count(), ROWS.to_string());

    // The migration deletes all guests but 150 (psql of the lifeboat image against the Pod `db`);
    // green stays healthy for a long watch window.
    let migrate = format!(
        "psql -X -h db -U postgres -d {database} -v ON_ERROR_STOP=1 -c \"delete from guests where id > 150\""
    );
    let svc = |path: &str| format!("http://web.{}.svc{path}", ns.name);
    let spec = json!({
        "backup": {"policyRef": {"name": "hotel-db"}},
        "migration": {"job": {"securityContext": step_security(), "image": LIFEBOAT_IMAGE, "command": ["sh", "-c", migrate],
                              "env": [{"name": "PGPASSWORD", "value": DB_PASSWORD}]}},
        "stabilization": {"duration": "30m", "interval": "1s", "failureThreshold": 2,
                          "http": [{"name": "healthz", "url": svc("/health"), "timeout": "2s"}]},
        "rollback": {"automatic": true, "restoreDatabase": true}
    });
    let cutovers: Api<Cutover> = ns.api();
    cutovers
        .create(&PostParams::default(), &cutover("release-2-5", spec))
        .await
        .unwrap();
    let stabilizing = wait_for(
        "Stabilizing",
        &cutovers,
        "release-2-5",
        Duration::from_secs(120),
        operator,
        |c| phase(c) == Some(CutoverPhase::Stabilizing) || ended(c),
    )
    .await;
    assert_eq!(
        phase(&stabilizing),
        Some(CutoverPhase::Stabilizing),
        "{}",
        serde_json::to_string_pretty(&stabilizing.status).unwrap()
    );
    let backups: Api<Backup> = ns.api();
    let pre_switch = stabilizing.status.unwrap().backup_ref.unwrap().name;
    let rollback_point = backups
        .get(&pre_switch)
        .await
        .unwrap()
        .status
        .unwrap()
        .snapshot_id
        .unwrap();
    assert_eq!(count(), "150", "the migration ran");

    // Three more backups of the policy meanwhile, each followed by its retention (keepLast 1).
    for night in 1..=3 {
        let name = format!("nightly-{night}");
        let backup: Backup = serde_json::from_value(json!({
            "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup", "metadata": {"name": name},
            "spec": {"policyRef": {"name": "hotel-db"}}
        }))
        .unwrap();
        backups.create(&PostParams::default(), &backup).await.unwrap();
        eventually(
            &format!("{name} Succeeded"),
            Duration::from_secs(90),
            operator,
            async || {
                let phase = backups
                    .get(&name)
                    .await
                    .map_err(|e| e.to_string())?
                    .status
                    .and_then(|s| s.phase);
                (phase == Some(BackupPhase::Succeeded))
                    .then_some(())
                    .ok_or(format!("{phase:?}"))
            },
        )
        .await;
        let prune_job = format!("{name}-prune");
        eventually(
            &format!("retention after {name}"),
            Duration::from_secs(90),
            operator,
            async || {
                let policy = policies.get("hotel-db").await.map_err(|e| e.to_string())?;
                let last = policy.status.and_then(|s| s.last_retention);
                match last {
                    Some(run) if run.job_name == prune_job => Ok(run),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }

    // The policy says what it holds and why; the repository still has the rollback point, and retention
    // did forget the other old snapshots.
    let status = policies.get("hotel-db").await.unwrap().status.unwrap();
    assert!(
        status.last_retention.as_ref().is_some_and(|r| r.passed),
        "{:?}",
        status.last_retention
    );
    let hold = status
        .holds
        .iter()
        .find(|h| h.snapshot_id == rollback_point)
        .unwrap_or_else(|| panic!("the rollback point is held: {:?}", status.holds));
    assert_eq!(hold.held_by, "Cutover release-2-5");
    assert_eq!(hold.until, None, "held while the Cutover runs");
    let ids: Vec<String> = repo
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(ids.contains(&rollback_point), "{rollback_point} not in {ids:?}");
    assert_eq!(ids.len(), 2, "the held snapshot and the newest one: {ids:?}");

    // Green fails: the rollback restores the pre-switch snapshot, every guest.
    set_fault(&cluster, &ns, "web-green", "unhealthy");
    let done = wait_for(
        "RolledBack",
        &cutovers,
        "release-2-5",
        Duration::from_secs(180),
        operator,
        ended,
    )
    .await;
    let status = done.status.unwrap();
    assert_eq!(
        status.phase,
        Some(CutoverPhase::RolledBack),
        "{}",
        serde_json::to_string_pretty(&status).unwrap()
    );
    assert!(status.rollback.is_some_and(|r| r.database_restored));
    assert_eq!(count(), ROWS.to_string(), "the pre-switch rows are back");
}
