//! End to end, as a platform engineer sees it: a BackupPolicy applied to the local cluster backs up a
//! PostgreSQL Pod into a restic repository on a volume through Jobs on the real node, run by the operator
//! as the chart installs it (its image, ServiceAccount and ClusterRole); the snapshot restores with plain
//! restic + pg_restore, run the way the DR runbook runs them, in a Pod of the same image.

// lifeboat-test: alone (restarts the operator; hack/run-tests.sh)

mod support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{ListParams, PostParams};
use kube::Api;
use lifeboat::api::backup::BackupPhase;
use lifeboat::api::{Backup, BackupPolicy};
use serde_json::json;
use support::agent::{Repo, RESTIC_PASSWORD};
use support::conditions::condition;
use support::installed::{InstalledOperator, LIFEBOAT_IMAGE};
use support::node_restore::{claim_repository, postgres_database, postgres_with_backups_claim};
use support::real_node::{
    create_database, host_claim, namespace, postgres, psql_in, restricted_container, table_content,
    DB_PASSWORD,
};
use support::wait::eventually;
use support::{Cluster, TestNamespace};

fn policy(name: &str, database: &str) -> BackupPolicy {
    serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": name},
        "spec": {
            "schedule": "* * * * *",
            "source": postgres_database(database),
            "repository": claim_repository(name),
            "retention": {"keepLast": 2},
            "rpo": "1h",
            "successfulBackupsHistoryLimit": 2
        }
    }))
    .unwrap()
}

/// The DR runbook's restore with plain tools, in a Job of the lifeboat image (restic and pg_restore 17,
/// which reads what the image's pg_dump 17 wrote), into `database` of the PostgreSQL 15 Pod. As
/// docs/disaster-recovery.md says for a client newer than the server: the dump as SQL without its
/// `SET transaction_timeout` line (which PostgreSQL 15 rejects) into psql. The image has no grep: the
/// shell drops the line.
async fn plain_restore(cluster: &Cluster, ns: &TestNamespace, snapshot: &str, file: &str, database: &str) {
    let script =
        "restic --no-lock --cache-dir /tmp/restic -r /repository/hotel-db dump \"$SNAPSHOT\" \"$FILE\" \
                  | pg_restore --file - \
                  | while IFS= read -r line; do \
                      [ \"$line\" = 'SET transaction_timeout = 0;' ] || printf '%s\\n' \"$line\"; done \
                  | psql -X -q -v ON_ERROR_STOP=1 --single-transaction -h db -U postgres -d \"$DATABASE\"";
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "plain-restore"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "restore", "image": LIFEBOAT_IMAGE, "imagePullPolicy": "Never",
                "command": ["dash", "-c", script],
                "env": [{"name": "SNAPSHOT", "value": snapshot}, {"name": "FILE", "value": file},
                        {"name": "DATABASE", "value": database},
                        {"name": "RESTIC_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "restic", "key": "password"}}},
                        {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
                "securityContext": restricted_container(),
                "volumeMounts": [{"name": "backups", "mountPath": "/repository"}, {"name": "tmp", "mountPath": "/tmp"}]
            }],
            "volumes": [{"name": "backups", "persistentVolumeClaim": {"claimName": "backups"}},
                        {"name": "tmp", "emptyDir": {}}]
        }}}
    }))
    .expect("a Job");
    ns.api::<Job>()
        .create(&PostParams::default(), &job)
        .await
        .expect("create the plain-restore Job");
    let waited = cluster
        .kubectl()
        .args([
            "-n",
            &ns.name,
            "wait",
            "--for=condition=Complete",
            "job/plain-restore",
            "--timeout=180s",
        ])
        .output()
        .expect("kubectl wait");
    if !waited.status.success() {
        let logs = cluster
            .kubectl()
            .args(["-n", &ns.name, "logs", "job/plain-restore"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
            .unwrap_or_default();
        panic!(
            "restic dump | pg_restore did not complete: {}\n{logs}",
            String::from_utf8_lossy(&waited.stderr)
        );
    }
}

/// The shared operator is restarted by one test while others wait on it: those hold this for reading.
static OPERATOR_RESTART: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

#[tokio::test]
async fn a_scheduled_policy_backs_up_postgres_and_the_snapshot_restores_with_plain_tools() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "bp-e2e").await;
    let claim = postgres_with_backups_claim(&cluster, &ns, operator).await;
    let database = format!("hotel_{}", ns.name.replace('-', "_"));
    create_database(&cluster, &ns, &database);
    psql_in(
        &cluster,
        &ns,
        &database,
        "create table guests(id serial primary key, name text not null); \
                        insert into guests(name) select 'guest ' || g from generate_series(1, 500) g;",
    );

    let policies: Api<BackupPolicy> = ns.api();
    policies
        .create(&PostParams::default(), &policy("hotel-db", &database))
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

    // The snapshot is in the repository with the policy's tags (read with restic on the host, from the
    // volume's directory), and restores with plain tools, as the DR runbook does it: restic dump |
    // pg_restore.
    let repo = Repo::at(claim.join("hotel-db"));
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
    create_database(&cluster, &ns, &restored);
    plain_restore(&cluster, &ns, &summary.snapshot_id, &file, &restored).await;
    assert_eq!(
        table_content(&cluster, &ns, &restored, "guests"),
        table_content(&cluster, &ns, &database, "guests")
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
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "bp-secret").await;
    support::secret(&ns, "db", "password", DB_PASSWORD).await;
    postgres(&ns).await;
    host_claim(&cluster, &ns, "backups").await;
    let policies: Api<BackupPolicy> = ns.api();
    policies
        .create(&PostParams::default(), &policy("crm-db", "postgres"))
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
    assert!(!events.contains(DB_PASSWORD), "no secret values in Events");

    support::secret(&ns, "restic", "password", RESTIC_PASSWORD).await;
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
