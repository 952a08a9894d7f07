//! The rest of a BackupPolicy's life, each scenario as a user would check it, on the real node with the
//! chart-installed operator: MariaDB backups, a wrong password that is fixed, retention, suspend, RPO
//! staleness, and cleanup on deletion. The databases are Pods of the test images, the repositories
//! restic on host-directory claims (so the test reads and damages them from the host). Schedules are
//! every minute, so the scenarios run concurrently in one test to share the minute boundaries (each
//! panics with its own name and what it last saw).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use lifeboat::api::backup::BackupPhase;
use lifeboat::api::{Backup, BackupPolicy};
use serde_json::{json, Value};
use support::agent::{Repo, RESTIC_PASSWORD};
use support::conditions::condition;
use support::installed::InstalledOperator;
use support::node_restore::{claim_repository, postgres_database, postgres_with_backups_claim};
use support::node_web::ChatWebhook;
use support::real_node::{
    create_database, host_claim, mariadb, mariadb_sql, namespace, pod_ready, psql_in, DB_PASSWORD,
    MARIADB_PASSWORD,
};
use support::wait::eventually;
use support::{Cluster, TestNamespace};

/// A namespace of its own on the real node with the PostgreSQL Pod, its Secrets and the claim
/// `backups`; returns the claim's directory on the host.
async fn with_postgres(
    cluster: &Cluster,
    prefix: &str,
    operator: &InstalledOperator,
) -> (TestNamespace, PathBuf) {
    let ns = namespace(cluster, prefix).await;
    let claim = postgres_with_backups_claim(cluster, &ns, operator).await;
    (ns, claim)
}

/// A namespace with only what a policy that never gets to run a dump needs: its Secrets and claim.
async fn without_database(cluster: &Cluster, prefix: &str) -> TestNamespace {
    let ns = namespace(cluster, prefix).await;
    support::secret(&ns, "db", "password", DB_PASSWORD).await;
    support::secret(&ns, "restic", "password", RESTIC_PASSWORD).await;
    host_claim(cluster, &ns, "backups").await;
    ns
}

/// A PostgreSQL database of the test's own with one table and one row; returns its name.
fn one_row_database(cluster: &Cluster, ns: &TestNamespace, prefix: &str) -> String {
    let database = format!("{prefix}_{}", ns.name.replace('-', "_"));
    create_database(cluster, ns, &database);
    psql_in(
        cluster,
        ns,
        &database,
        "create table t(id int); insert into t values (1);",
    );
    database
}

/// Policy `name` every minute, into `/repository/<name>` on the claim, with `extra` spec fields.
async fn create_policy(ns: &TestNamespace, name: &str, source: Value, extra: Value) {
    let mut spec = json!({
        "schedule": "* * * * *",
        "source": source,
        "repository": claim_repository(name),
    });
    for (key, value) in extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    let policy: BackupPolicy = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    let api: Api<BackupPolicy> = ns.api();
    api.create(&PostParams::default(), &policy).await.unwrap();
}

/// `eventually`, with the scenario's name in the failure.
async fn wait_for<T>(
    scenario: &str,
    what: &str,
    timeout: Duration,
    operator: &InstalledOperator,
    check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    eventually(&format!("[{scenario}] {what}"), timeout, operator, check).await
}

/// A pack file of a local restic repository (`data/<xx>/<id>`).
fn first_pack(repository: &Path) -> PathBuf {
    let mut packs: Vec<_> = std::fs::read_dir(repository.join("data"))
        .expect("the repository has data/")
        .flatten()
        .flat_map(|dir| std::fs::read_dir(dir.path()).into_iter().flatten().flatten())
        .map(|entry| entry.path())
        .collect();
    packs.sort();
    packs.into_iter().next().expect("the repository has a pack file")
}

async fn backups_of(ns: &TestNamespace, policy: &str) -> Vec<Backup> {
    let api: Api<Backup> = ns.api();
    let list = api.list(&ListParams::default()).await.unwrap().items;
    list.into_iter()
        .filter(|b| b.spec.policy_ref.name == policy)
        .collect()
}

fn phase(backup: &Backup) -> Option<BackupPhase> {
    backup.status.as_ref().and_then(|s| s.phase)
}

/// MariaDB is backed up with mariadb-dump, and deleting the policy removes its Backups and Jobs.
async fn mariadb_backup_then_deletion_cleans_up(cluster: &Cluster, operator: &InstalledOperator) {
    let scenario = "mariadb";
    let ns = namespace(cluster, "bp-mariadb").await;
    support::secret(&ns, "my", "password", MARIADB_PASSWORD).await;
    support::secret(&ns, "restic", "password", RESTIC_PASSWORD).await;
    mariadb(&ns).await;
    let claim = host_claim(cluster, &ns, "backups").await;
    pod_ready(&ns, "mariadb", operator).await;
    let database = format!("crm_{}", ns.name.replace('-', "_"));
    mariadb_sql(cluster, &ns, None, &format!("create database `{database}`"));
    mariadb_sql(cluster, &ns, Some(&database), "create table contacts(id int primary key, email varchar(80)); insert into contacts values (1,'a@example.com'),(2,'b@example.com');");
    let source = json!({"mysql": {"host": "mariadb", "database": database, "user": "root",
                                  "passwordSecretRef": {"name": "my", "key": "password"}}});
    create_policy(&ns, "crm-db", source, json!({"check": {"schedule": "* * * * *"}})).await;
    let repo = Repo::at(claim.join("crm-db"));
    let policies: Api<BackupPolicy> = ns.api();
    let summary = wait_for(
        scenario,
        "a successful MariaDB backup",
        Duration::from_secs(150),
        operator,
        async || {
            let p = policies.get("crm-db").await.map_err(|e| e.to_string())?;
            p.status
                .as_ref()
                .and_then(|s| s.last_successful_backup.clone())
                .ok_or_else(|| format!("{:?}", p.status))
        },
    )
    .await;
    let snapshots = repo.snapshots();
    let snapshot = snapshots
        .iter()
        .find(|s| s["id"].as_str() == Some(summary.snapshot_id.as_str()))
        .expect("snapshot in repo");
    let file = snapshot["paths"][0]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_owned();
    let dump = repo.restic(&["dump", &summary.snapshot_id, &file]);
    let sql = String::from_utf8_lossy(&dump.stdout);
    assert!(
        sql.contains("CREATE TABLE `contacts`") && sql.contains("b@example.com"),
        "[{scenario}] dump lacks the data"
    );

    // The repository check runs on its own schedule and its verdict lands in status.
    let check = wait_for(
        scenario,
        "a repository check result",
        Duration::from_secs(150),
        operator,
        async || {
            let p = policies.get("crm-db").await.map_err(|e| e.to_string())?;
            p.status
                .as_ref()
                .and_then(|s| s.last_check.clone())
                .ok_or_else(|| format!("{:?}", p.status))
        },
    )
    .await;
    assert!(
        check.passed,
        "[{scenario}] restic check of a healthy repository: {check:?}"
    );

    // A damaged repository (a pack file gone, as a bad disk or a wrong lifecycle rule would do) turns
    // the policy unhealthy at the next check, with a metric to alert on; repaired, it heals.
    let pack = first_pack(&repo.path);
    // Beside the repository on the same volume (a rename, and one that restic does not see).
    let kept = claim.join("kept-pack");
    std::fs::rename(&pack, &kept).expect("move a pack file away");
    let unhealthy = wait_for(
        scenario,
        "RepositoryHealthy=False after the pack file went missing",
        Duration::from_secs(180),
        operator,
        async || {
            let p = policies.get("crm-db").await.map_err(|e| e.to_string())?;
            match condition(&p, "RepositoryHealthy") {
                Some(c) if c.0 == "False" => Ok(p),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let ready = condition(&unhealthy, "Ready").expect("Ready");
    assert_eq!(
        (ready.0.as_str(), ready.1.as_str()),
        ("False", "RepositoryUnhealthy"),
        "[{scenario}] {ready:?}"
    );
    let gauge = format!(
        "lifeboat_repository_healthy{{namespace=\"{}\",policy=\"crm-db\"}}",
        ns.name
    );
    let gauge_at = async |value: u8| {
        wait_for(
            scenario,
            &format!("the repository_healthy metric at {value}"),
            Duration::from_secs(30),
            operator,
            async || {
                let metrics = operator.metrics();
                metrics
                    .contains(&format!("{gauge} {value}"))
                    .then_some(())
                    .ok_or_else(|| {
                        metrics
                            .lines()
                            .filter(|l| l.contains("repository_healthy"))
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
            },
        )
        .await
    };
    gauge_at(0).await;
    std::fs::rename(&kept, &pack).expect("put the pack file back");
    wait_for(
        scenario,
        "RepositoryHealthy=True after the repair",
        Duration::from_secs(180),
        operator,
        async || {
            let p = policies.get("crm-db").await.map_err(|e| e.to_string())?;
            match (condition(&p, "RepositoryHealthy"), condition(&p, "Ready")) {
                (Some(repo), Some(ready)) if repo.0 == "True" && ready.0 == "True" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    // The gauge follows the status write (exported right after it), so it is waited for, not read once.
    gauge_at(1).await;

    // Deleting the policy deletes its Backups and their Jobs (owner references, garbage collector).
    policies
        .delete("crm-db", &DeleteParams::foreground())
        .await
        .unwrap();
    let jobs: Api<Job> = ns.api();
    wait_for(
        scenario,
        "Backups and Jobs gone after deletion",
        Duration::from_secs(60),
        operator,
        async || {
            let backups = backups_of(&ns, "crm-db").await.len();
            let jobs_left = jobs
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            (backups == 0 && jobs_left == 0)
                .then_some(())
                .ok_or(format!("{backups} Backups, {jobs_left} Jobs left"))
        },
    )
    .await;
}

/// A wrong database password fails the backup with a message that says so; once the Secret is fixed
/// the next slot succeeds and the policy is Ready again.
async fn wrong_password_is_reported_and_recovers(cluster: &Cluster, operator: &InstalledOperator) {
    let scenario = "wrong-password";
    let (ns, claim) = with_postgres(cluster, "bp-password", operator).await;
    let database = one_row_database(cluster, &ns, "pw");
    let repo = Repo::at(claim.join("pw-db"));
    // The policy reads its password from Secret `app-db`, which holds a wrong one at first.
    support::secret(&ns, "app-db", "password", "not-the-password").await;
    let webhook = ChatWebhook::failing_first(cluster, &ns, 0, operator).await;
    support::secret(&ns, "chat", "url", &webhook.url).await;
    let mut source = postgres_database(&database);
    source["postgres"]["passwordSecretRef"]["name"] = json!("app-db");
    create_policy(&ns, "pw-db", source,
        json!({"notifications": {"webhook": {"urlSecretRef": {"name": "chat", "key": "url"}}, "events": ["Failure", "Recovery"]}})).await;
    let policies: Api<BackupPolicy> = ns.api();
    let (status, reason, message) = wait_for(
        scenario,
        "Ready=False after a failed backup",
        Duration::from_secs(150),
        operator,
        async || {
            let p = policies.get("pw-db").await.map_err(|e| e.to_string())?;
            condition(&p, "Ready")
                .filter(|c| c.1 == "BackupFailed")
                .ok_or_else(|| format!("{:?}", p.status))
        },
    )
    .await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "BackupFailed"));
    assert!(
        message.contains("password"),
        "[{scenario}] the message names the cause: {message}"
    );
    assert!(
        !message.contains("not-the-password"),
        "[{scenario}] no secret in status"
    );
    let failed = policies.get("pw-db").await.unwrap().status.unwrap();
    assert_eq!(failed.failed_backups, Some(1), "[{scenario}] {failed:?}");
    // The repository was initialised before the dump failed (or not at all): either way no snapshot.
    assert!(
        !repo.path.join("config").exists() || repo.snapshots().is_empty(),
        "[{scenario}] no snapshot from a failed dump"
    );

    let failure_note = wait_for(
        scenario,
        "a failure notification",
        Duration::from_secs(30),
        operator,
        async || {
            webhook
                .received()
                .into_iter()
                .find(|body| body.contains("FAILED"))
                .ok_or(format!("{:?}", webhook.received()))
        },
    )
    .await;
    let text = serde_json::from_str::<Value>(&failure_note).unwrap()["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        text.contains("pw-db") && text.contains("password"),
        "[{scenario}] Slack-style text: {text}"
    );
    assert!(
        !text.contains("not-the-password"),
        "[{scenario}] no secret in notifications"
    );

    support::secret(&ns, "app-db", "password", DB_PASSWORD).await;
    wait_for(
        scenario,
        "Ready=True after the Secret is fixed",
        Duration::from_secs(150),
        operator,
        async || {
            let p = policies.get("pw-db").await.map_err(|e| e.to_string())?;
            condition(&p, "Ready")
                .filter(|c| c.0 == "True")
                .ok_or_else(|| format!("{:?}", p.status))
        },
    )
    .await;
    wait_for(
        scenario,
        "a recovery notification",
        Duration::from_secs(30),
        operator,
        async || {
            webhook
                .received()
                .into_iter()
                .find(|body| body.contains("recovered"))
                .ok_or(format!("{:?}", webhook.received()))
        },
    )
    .await;
}

/// keepLast 2 leaves exactly two snapshots of the policy in the repository after three backups, and the
/// history limit keeps exactly one Succeeded Backup object.
async fn retention_and_history_keep_what_they_say(cluster: &Cluster, operator: &InstalledOperator) {
    let scenario = "retention";
    let (ns, claim) = with_postgres(cluster, "bp-retention", operator).await;
    let database = one_row_database(cluster, &ns, "ret");
    let repo = Repo::at(claim.join("ret-db"));
    create_policy(
        &ns,
        "ret-db",
        postgres_database(&database),
        json!({"retention": {"keepLast": 2}, "successfulBackupsHistoryLimit": 1}),
    )
    .await;
    let policies: Api<BackupPolicy> = ns.api();
    let mut seen = std::collections::BTreeSet::new();
    wait_for(
        scenario,
        "three successful backups",
        Duration::from_secs(240),
        operator,
        async || {
            let p = policies.get("ret-db").await.map_err(|e| e.to_string())?;
            if let Some(last) = p.status.as_ref().and_then(|s| s.last_successful_backup.as_ref()) {
                seen.insert(last.name.clone());
            }
            (seen.len() >= 3).then_some(()).ok_or(format!("{seen:?}"))
        },
    )
    .await;
    let jobs: Api<Job> = ns.api();
    wait_for(
        scenario,
        "two snapshots left and one Succeeded Backup",
        Duration::from_secs(60),
        operator,
        async || {
            let prunes_running = jobs
                .list(&ListParams::default().labels("app.kubernetes.io/component=retention"))
                .await
                .map_err(|e| e.to_string())?
                .items
                .iter()
                .any(|j| j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0);
            let snapshots = repo.snapshots().len();
            let kept = backups_of(&ns, "ret-db")
                .await
                .iter()
                .filter(|b| phase(b) == Some(BackupPhase::Succeeded))
                .count();
            (!prunes_running && snapshots == 2 && kept == 1)
                .then_some(())
                .ok_or(format!("{snapshots} snapshots, {kept} Succeeded Backups"))
        },
    )
    .await;
}

/// A suspended policy creates no Backups and shows no next slot; resuming it schedules again.
async fn suspend_stops_new_backups(cluster: &Cluster, operator: &InstalledOperator) {
    let scenario = "suspend";
    // Only Backups are counted here: whether their dumps succeed does not matter.
    let ns = without_database(cluster, "bp-suspend").await;
    create_policy(
        &ns,
        "sus-db",
        postgres_database("postgres"),
        json!({"suspend": true}),
    )
    .await;
    let policies: Api<BackupPolicy> = ns.api();
    let ready = wait_for(
        scenario,
        "status",
        Duration::from_secs(20),
        operator,
        async || {
            let p = policies.get("sus-db").await.map_err(|e| e.to_string())?;
            condition(&p, "Ready")
                .map(|c| (p.clone(), c))
                .ok_or_else(|| format!("{:?}", p.status))
        },
    )
    .await;
    assert_eq!(ready.1 .1, "Suspended");
    assert!(ready.0.status.as_ref().unwrap().next_schedule_time.is_none());
    tokio::time::sleep(Duration::from_secs(70)).await;
    assert!(
        backups_of(&ns, "sus-db").await.is_empty(),
        "[{scenario}] a suspended policy made a Backup"
    );

    policies
        .patch(
            "sus-db",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"suspend": false}})),
        )
        .await
        .unwrap();
    wait_for(
        scenario,
        "a Backup after resuming",
        Duration::from_secs(75),
        operator,
        async || {
            let count = backups_of(&ns, "sus-db").await.len();
            (count > 0).then_some(()).ok_or(format!("{count} Backups"))
        },
    )
    .await;
}

/// A policy whose last success is older than its RPO turns Stale, with an Event and the metric.
async fn an_rpo_miss_turns_the_policy_stale(cluster: &Cluster, operator: &InstalledOperator) {
    let scenario = "stale";
    let ns = without_database(cluster, "bp-stale").await;
    // Yearly schedule: no backup will run during the test, so nothing succeeds within the 5 s RPO.
    create_policy(
        &ns,
        "old-db",
        postgres_database("postgres"),
        json!({"schedule": "0 0 1 1 *", "rpo": "5s"}),
    )
    .await;
    let policies: Api<BackupPolicy> = ns.api();
    let stale = wait_for(
        scenario,
        "Stale=True",
        Duration::from_secs(30),
        operator,
        async || {
            let p = policies.get("old-db").await.map_err(|e| e.to_string())?;
            condition(&p, "Stale")
                .filter(|c| c.0 == "True")
                .map(|_| p.clone())
                .ok_or_else(|| format!("{:?}", p.status))
        },
    )
    .await;
    assert_eq!(
        condition(&stale, "Ready").map(|c| (c.0, c.1)),
        Some(("False".into(), "Stale".into()))
    );
    let metric = wait_for(
        scenario,
        "lifeboat_backup_stale 1",
        Duration::from_secs(10),
        operator,
        async || {
            let metrics = operator.metrics();
            metrics
                .lines()
                .find(|l| {
                    l.starts_with("lifeboat_backup_stale{") && l.contains(&ns.name) && l.ends_with(" 1")
                })
                .map(str::to_owned)
                .ok_or(metrics)
        },
    )
    .await;
    assert!(metric.contains("policy=\"old-db\""), "{metric}");
    let events = support::run_ok(
        "events",
        cluster
            .kubectl()
            .args(["get", "events", "-n", &ns.name, "-o", "custom-columns=R:.reason"]),
    );
    assert!(
        events.lines().any(|l| l.trim() == "Stale"),
        "[{scenario}] no Stale Event:\n{events}"
    );

    // A deleted policy stops alerting: every series of it leaves /metrics.
    policies.delete("old-db", &DeleteParams::default()).await.unwrap();
    let series_of_it = |metrics: &str| -> Vec<String> {
        metrics
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains(&format!("namespace=\"{}\"", ns.name)))
            .filter(|l| l.contains("policy=\"old-db\""))
            .map(str::to_owned)
            .collect()
    };
    wait_for(
        scenario,
        "no series of the deleted policy",
        Duration::from_secs(60),
        operator,
        async || {
            let left = series_of_it(&operator.metrics());
            left.is_empty().then_some(()).ok_or_else(|| left.join("\n"))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_lives_through_failures_retention_suspension_staleness_and_deletion() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    tokio::join!(
        mariadb_backup_then_deletion_cleans_up(&cluster, operator),
        wrong_password_is_reported_and_recovers(&cluster, operator),
        retention_and_history_keep_what_they_say(&cluster, operator),
        suspend_stops_new_backups(&cluster, operator),
        an_rpo_miss_turns_the_policy_stale(&cluster, operator),
    );
}
