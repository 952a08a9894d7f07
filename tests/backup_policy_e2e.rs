//! End to end, as a platform engineer sees it: a BackupPolicy applied to the local cluster backs up a real
//! PostgreSQL into a real restic repository through Jobs on the local node, run by `lifeboat operator`
//! under its own ServiceAccount and ClusterRole; the snapshot restores with plain restic + pg_restore.

mod support;

use std::time::Duration;

use kube::api::{ListParams, PostParams};
use kube::Api;
use lifeboat::api::backup::BackupPhase;
use lifeboat::api::{Backup, BackupPolicy};
use serde_json::json;
use support::conditions::condition;
use support::operator::Operator;
use support::wait::eventually;

fn policy(name: &str, database: &str, repository: &str) -> BackupPolicy {
    let pg = support::agent::postgres();
    serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": name},
        "spec": {
            "schedule": "* * * * *",
            "source": {"postgres": {"host": "127.0.0.1", "port": pg.port, "database": database, "user": "postgres",
                                     "passwordSecretRef": {"name": "db", "key": "password"}}},
            "repository": {"restic": {"repository": repository, "initialize": true,
                                       "passwordSecretRef": {"name": "restic", "key": "password"}}},
            "retention": {"keepLast": 2},
            "rpo": "1h",
            "successfulBackupsHistoryLimit": 2
        }
    }))
    .unwrap()
}

/// The shared operator is restarted by one test while others wait on it: those hold this for reading.
static OPERATOR_RESTART: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

#[tokio::test]
async fn a_scheduled_policy_backs_up_postgres_and_the_snapshot_restores_with_plain_tools() {
    let cluster = support::cluster_with_crds();
    let operator = Operator::shared(&cluster);
    let ns = cluster.namespace("bp-e2e").await.unwrap();
    let pg = support::agent::postgres();
    let database = format!("hotel_{}", ns.name.replace('-', "_"));
    pg.create_database(&database);
    pg.psql(
        &database,
        "create table guests(id serial primary key, name text not null); \
                        insert into guests(name) select 'guest ' || g from generate_series(1, 500) g;",
    );
    let repo = support::agent::Repo::uninitialised();
    support::secret(&ns, "db", "password", support::agent::PG_PASSWORD).await;
    support::secret(&ns, "restic", "password", support::agent::RESTIC_PASSWORD).await;

    let policies: Api<BackupPolicy> = ns.api();
    policies
        .create(
            &PostParams::default(),
            &policy("hotel-db", &database, &repo.repository_arg()),
        )
        .await
        .unwrap();

    // Status is written on the first reconcile, before any backup ran.
    let first = eventually("first status", Duration::from_secs(20), operator, || async {
        let p = policies.get("hotel-db").await.map_err(|e| e.to_string())?;
        p.status
            .as_ref()
            .and_then(|s| s.next_schedule_time.clone())
            .map(|_| p.clone())
            .ok_or_else(|| format!("{:?}", p.status))
    })
    .await;
    assert_eq!(
        first.status.as_ref().unwrap().observed_generation,
        first.metadata.generation
    );

    // Within the next minute's slot (+ the Job), a Backup succeeds and the policy records it.
    let done = eventually(
        "a successful scheduled backup",
        Duration::from_secs(150),
        operator,
        || async {
            let p = policies.get("hotel-db").await.map_err(|e| e.to_string())?;
            match p.status.as_ref().and_then(|s| s.last_successful_backup.clone()) {
                Some(summary) => Ok((p, summary)),
                None => Err(format!("{:?}", p.status)),
            }
        },
    )
    .await;
    let (policy_now, summary) = done;
    assert_eq!(
        condition(&policy_now, "Ready").map(|c| c.0),
        Some("True".into()),
        "{:?}",
        policy_now.status
    );
    assert_eq!(condition(&policy_now, "Stale").map(|c| c.0), Some("False".into()));
    assert!(
        summary.size_bytes > 0 && summary.sha256.len() == 64,
        "{summary:?}"
    );

    let backups: Api<Backup> = ns.api();
    let backup = backups.get(&summary.name).await.unwrap();
    let backup_status = backup.status.clone().unwrap();
    assert_eq!(backup_status.phase, Some(BackupPhase::Succeeded));
    assert_eq!(
        backup_status.snapshot_id.as_deref(),
        Some(summary.snapshot_id.as_str())
    );
    assert!(
        summary.name.starts_with("hotel-db-"),
        "deterministic slot name: {}",
        summary.name
    );

    // The snapshot is in the repository with the policy's tags, and restores with plain tools, as the
    // DR runbook does it: restic dump | pg_restore.
    let snapshots = repo.snapshots();
    let snapshot = snapshots
        .iter()
        .find(|s| s["id"].as_str() == Some(summary.snapshot_id.as_str()))
        .unwrap_or_else(|| panic!("{} not in {snapshots:?}", summary.snapshot_id));
    let tags: Vec<&str> = snapshot["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(tags.contains(&"policy=hotel-db"), "{tags:?}");
    assert!(
        tags.contains(&format!("namespace={}", ns.name).as_str()),
        "{tags:?}"
    );
    let file = snapshot["paths"][0]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_owned();
    let restored = format!("{database}_restored");
    pg.create_database(&restored);
    let dump = repo.restic(&["dump", &summary.snapshot_id, &file]);
    assert!(
        dump.status.success(),
        "restic dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let mut pg_restore = std::process::Command::new(support::agent::pg_bin("pg_restore"))
        .args([
            "--exit-on-error",
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "postgres",
            "-d",
            &restored,
        ])
        .env("PGPASSWORD", support::agent::PG_PASSWORD)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut pg_restore.stdin.take().unwrap(), &dump.stdout).unwrap();
    assert!(pg_restore.wait().unwrap().success());
    assert_eq!(
        pg.table_content(&restored, "guests"),
        pg.table_content(&database, "guests")
    );

    // `kubectl get bp` shows it, Events tell the story, and the metrics show the success.
    let table = support::run_ok(
        "kubectl get bp",
        cluster.kubectl().args(["get", "bp", "-n", &ns.name]),
    );
    assert_eq!(support::table_column(&table, "READY"), ["True"], "{table}");
    assert_eq!(support::table_column(&table, "STALE"), ["False"], "{table}");
    let events = support::run_ok(
        "kubectl get events",
        cluster.kubectl().args([
            "get",
            "events",
            "-n",
            &ns.name,
            "-o",
            "custom-columns=REASON:.reason,OBJ:.regarding.name",
        ]),
    );
    for reason in ["Scheduled", "Started", "Succeeded"] {
        assert!(events.contains(reason), "no {reason} Event:\n{events}");
    }
    let metrics = operator.metrics();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("lifeboat_backup_last_success_timestamp_seconds") && l.contains(&ns.name))
        .unwrap_or_else(|| panic!("no last-success metric for {}:\n{metrics}", ns.name));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        (value - summary.time.0.as_second() as f64).abs() < 1.0,
        "{line} vs {}",
        summary.time.0
    );

    // A restarted operator neither loses the record nor creates the same slot twice.
    let _no_other_test_waits = OPERATOR_RESTART.write().await;
    operator.restart();
    let after = eventually(
        "metrics after a restart",
        Duration::from_secs(45),
        operator,
        || async {
            let metrics = operator.metrics();
            metrics
                .lines()
                .find(|l| {
                    l.starts_with("lifeboat_backup_last_success_timestamp_seconds") && l.contains(&ns.name)
                })
                .map(str::to_owned)
                .ok_or(metrics)
        },
    )
    .await;
    assert!(
        after.contains(&format!("{}", summary.time.0.as_second())),
        "the gauge comes from status: {after}"
    );
    let names: Vec<String> = backups
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|b| b.metadata.name.clone().unwrap())
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(names.len(), unique.len(), "{names:?}");
}

#[tokio::test]
async fn a_missing_secret_is_a_condition_and_an_event_and_clears_once_created() {
    let cluster = support::cluster_with_crds();
    // The other test of this file restarts the shared operator; this one's timings assume it runs.
    let _operator_stays = OPERATOR_RESTART.read().await;
    let operator = Operator::shared(&cluster);
    let ns = cluster.namespace("bp-secret").await.unwrap();
    let repo = support::agent::Repo::uninitialised();
    support::secret(&ns, "db", "password", support::agent::PG_PASSWORD).await;
    let policies: Api<BackupPolicy> = ns.api();
    policies
        .create(
            &PostParams::default(),
            &policy("crm-db", "postgres", &repo.repository_arg()),
        )
        .await
        .unwrap();

    let stalled = eventually("Stalled=True", Duration::from_secs(20), operator, || async {
        let p = policies.get("crm-db").await.map_err(|e| e.to_string())?;
        condition(&p, "Stalled")
            .filter(|c| c.0 == "True")
            .ok_or_else(|| format!("{:?}", p.status))
    })
    .await;
    assert_eq!(stalled.1, "SecretMissing");
    assert!(
        stalled.2.contains("restic") && stalled.2.contains("does not exist"),
        "{}",
        stalled.2
    );
    let events = support::run_ok(
        "events",
        cluster.kubectl().args([
            "get",
            "events",
            "-n",
            &ns.name,
            "-o",
            "custom-columns=R:.reason,N:.note",
        ]),
    );
    assert!(events.contains("SecretMissing"), "{events}");
    assert!(
        !events.contains(support::agent::PG_PASSWORD),
        "no secret values in Events"
    );

    support::secret(&ns, "restic", "password", support::agent::RESTIC_PASSWORD).await;
    eventually(
        "recovery once the Secret exists",
        Duration::from_secs(45),
        operator,
        || async {
            let p = policies.get("crm-db").await.map_err(|e| e.to_string())?;
            let stalled = condition(&p, "Stalled");
            let ready = condition(&p, "Ready");
            (stalled.is_none() && ready.as_ref().is_some_and(|r| r.0 == "True"))
                .then_some(())
                .ok_or_else(|| format!("{:?}", p.status))
        },
    )
    .await;
}
