//! End to end, as the disaster-recovery runbook's "restore into the target database" step: a Restore
//! applied to the local cluster brings a real PostgreSQL backup back through the operator as the chart
//! installs it (its image, ServiceAccount and ClusterRole) on the real node, verifies it, and refuses to
//! overwrite a database that has data unless a person names that database. The databases are Pods from
//! the test images; every Job and scratch server runs the images a user's cluster would.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::PostParams;
use kube::Api;
use lifeboat::api::restore::RestorePhase;
use lifeboat::api::Restore;
use serde_json::{json, Value};
use support::conditions::condition;
use support::installed::{InstalledOperator, POSTGRES_IMAGE};
use support::node_restore::{
    backed_up_database, backed_up_mariadb, policy_without_backups, postgres_database, scratch_mariadb,
    scratch_postgres, RESTIC_PASSWORD,
};
use support::real_node::{create_database, namespace, psql_in, table_content, DB_PASSWORD};
use support::restore::ROWS;
use support::wait::eventually;

fn restore(name: &str, spec: Value) -> Restore {
    serde_json::from_value(json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "Restore", "metadata": {"name": name}, "spec": spec}))
        .unwrap()
}

async fn finished(api: &Api<Restore>, name: &str, operator: &InstalledOperator) -> Restore {
    eventually(
        &format!("Restore {name} to finish"),
        Duration::from_secs(240),
        operator,
        || async {
            let r = api.get(name).await.map_err(|e| e.to_string())?;
            match r.status.as_ref().and_then(|s| s.phase) {
                Some(RestorePhase::Succeeded | RestorePhase::Failed) => Ok(r),
                _ => Err(format!("{:?}", r.status)),
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_restore_into_an_empty_database_brings_back_every_row_and_verifies_it() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "rst-empty").await;
    let source = backed_up_database(&cluster, &ns, operator).await;
    let target = format!("{}_restored", source.database);
    create_database(&cluster, &ns, &target);

    let restores: Api<Restore> = ns.api();
    let spec = json!({
        "source": {"policyRef": {"name": "hotel-db"}, "snapshot": "latest"},
        "target": postgres_database(&target),
        "verify": {"minTables": 2, "tables": [{"name": "guests", "minRows": ROWS}, {"name": "rooms", "minRows": 12}],
                   "queries": [{"name": "notes-intact", "sql": "select count(*) = 0 from guests where note <> md5(id::text)"}]}
    });
    restores
        .create(&PostParams::default(), &restore("hotel-db-restore", spec))
        .await
        .unwrap();
    let done = finished(&restores, "hotel-db-restore", operator).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.phase, Some(RestorePhase::Succeeded), "{status:?}");

    // Every row is back, byte for byte.
    for table in ["guests", "rooms"] {
        assert_eq!(
            table_content(&cluster, &ns, &target, table),
            table_content(&cluster, &ns, &source.database, table),
            "{table}"
        );
    }
    // Status records what the runbook asks to write down.
    let backup_status = source.backup.status.clone().unwrap();
    assert_eq!(
        status.snapshot_id, backup_status.snapshot_id,
        "the newest snapshot is the hand-made backup's"
    );
    let taken = status.snapshot_time.clone().expect("snapshot time").0;
    let backup_start = backup_status.start_time.clone().unwrap().0;
    assert!(
        taken.duration_since(backup_start).as_secs().abs() < 30,
        "{taken} vs backup start {backup_start}"
    );
    assert!(
        status.start_time.is_some() && status.completion_time.is_some() && status.duration.is_some(),
        "{status:?}"
    );
    assert!(
        status.target.as_deref().unwrap().contains(&target),
        "{:?}",
        status.target
    );
    let verification = status.verification.clone().unwrap();
    assert!(verification.passed);
    let names: Vec<&str> = verification.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["minTables", "table:guests", "table:rooms", "query:notes-intact"],
        "every check is reported"
    );
    assert_eq!(
        condition(&status.conditions.0, "Ready").map(|c| c.0),
        Some("True".into())
    );
    assert_eq!(status.observed_generation, done.metadata.generation);

    // The guard looked first (the database was empty), and the restore Job ran after it.
    assert!(status.check_job_name.is_some(), "{status:?}");
    let events = support::restore::events(&cluster, &ns.name);
    for reason in ["Started", "Succeeded"] {
        assert!(
            events
                .lines()
                .any(|l| l.starts_with(reason) && l.contains("hotel-db-restore")),
            "no {reason} Event:\n{events}"
        );
    }
    assert!(!events.contains(DB_PASSWORD) && !events.contains(RESTIC_PASSWORD));
    let metrics = operator.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("lifeboat_restore_duration_seconds_count")
                && l.contains(&ns.name)
                && l.contains("succeeded")),
        "no restore duration metric for {}:\n{metrics}",
        ns.name
    );
    let table = support::run_ok(
        "kubectl get rst",
        cluster.kubectl().args(["get", "rst", "-n", &ns.name]),
    );
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|row| row.contains("Succeeded") && row.contains("true")),
        "{table}"
    );
}

#[tokio::test]
async fn a_restore_refuses_a_database_with_data_until_a_person_names_it() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "rst-guard").await;
    let source = backed_up_database(&cluster, &ns, operator).await;
    // Live data written after the backup: what an accidental restore would destroy.
    psql_in(
        &cluster,
        &ns,
        &source.database,
        "insert into guests(name, note) values ('arrived after the backup', 'x')",
    );
    let live = table_content(&cluster, &ns, &source.database, "guests");

    let restores: Api<Restore> = ns.api();
    let unconfirmed =
        json!({"source": {"policyRef": {"name": "hotel-db"}}, "target": postgres_database(&source.database)});
    restores
        .create(&PostParams::default(), &restore("oops", unconfirmed))
        .await
        .unwrap();
    let refused = finished(&restores, "oops", operator).await;
    let status = refused.status.clone().unwrap();
    assert_eq!(status.phase, Some(RestorePhase::Failed), "{status:?}");
    assert_eq!(status.reason.as_deref(), Some("TargetNotEmpty"), "{status:?}");
    let message = status.message.clone().unwrap();
    assert!(
        message.contains("2 tables") && message.contains(&format!("confirmOverwrite: {}", source.database)),
        "{message}"
    );
    assert!(
        status.job_name.is_none(),
        "no restore Job was created: {status:?}"
    );
    assert_eq!(
        table_content(&cluster, &ns, &source.database, "guests"),
        live,
        "nothing was touched"
    );
    let events = support::restore::events(&cluster, &ns.name);
    assert!(
        events
            .lines()
            .any(|l| l.starts_with("Failed") && l.contains("TargetNotEmpty")),
        "{events}"
    );

    // Named explicitly, the database is replaced by the snapshot: the row written after it is gone.
    let confirmed = json!({"source": {"policyRef": {"name": "hotel-db"}}, "target": postgres_database(&source.database),
                           "confirmOverwrite": source.database, "verify": {"tables": [{"name": "guests", "minRows": ROWS}]}});
    restores
        .create(&PostParams::default(), &restore("on-purpose", confirmed))
        .await
        .unwrap();
    let replaced = finished(&restores, "on-purpose", operator).await;
    assert_eq!(
        replaced.status.as_ref().and_then(|s| s.phase),
        Some(RestorePhase::Succeeded),
        "{:?}",
        replaced.status
    );
    let count = psql_in(&cluster, &ns, &source.database, "select count(*) from guests");
    assert_eq!(count.trim(), ROWS.to_string());
    let after = psql_in(
        &cluster,
        &ns,
        &source.database,
        "select count(*) from guests where name = 'arrived after the backup'",
    );
    assert_eq!(after.trim(), "0");
}

#[tokio::test]
async fn a_missing_snapshot_fails_the_restore_and_removes_its_scratch_server() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "rst-missing").await;
    let _source = backed_up_database(&cluster, &ns, operator).await;
    let restores: Api<Restore> = ns.api();
    let spec = json!({"source": {"policyRef": {"name": "hotel-db"}, "snapshot": "deadbeef"},
                      "target": {"scratch": scratch_postgres()}});
    restores
        .create(&PostParams::default(), &restore("no-such-snapshot", spec))
        .await
        .unwrap();
    let failed = finished(&restores, "no-such-snapshot", operator).await;
    let status = failed.status.clone().unwrap();
    assert_eq!(status.phase, Some(RestorePhase::Failed), "{status:?}");
    assert_eq!(status.reason.as_deref(), Some("SnapshotNotFound"), "{status:?}");
    assert!(
        status.message.as_deref().unwrap_or_default().contains("deadbeef"),
        "{status:?}"
    );

    // What the Restore created for itself is gone once it ended.
    let scratch = eventually(
        "the scratch server to be removed",
        Duration::from_secs(20),
        operator,
        || async {
            let r = restores
                .get("no-such-snapshot")
                .await
                .map_err(|e| e.to_string())?;
            let scratch = r.status.and_then(|s| s.scratch).ok_or("no scratch status")?;
            if scratch.removed {
                Ok(scratch)
            } else {
                Err(format!("{scratch:?}"))
            }
        },
    )
    .await;
    let pods: Api<Pod> = ns.api();
    let pod_gone_or_going = pods
        .get_opt(&scratch.pod)
        .await
        .unwrap()
        .is_none_or(|p| p.metadata.deletion_timestamp.is_some());
    assert!(pod_gone_or_going, "scratch Pod {} still there", scratch.pod);
    let services: Api<Service> = ns.api();
    assert!(services.get_opt(&scratch.service).await.unwrap().is_none());
    let secrets: Api<Secret> = ns.api();
    assert!(secrets.get_opt(&scratch.secret).await.unwrap().is_none());
}

#[tokio::test]
async fn a_mariadb_backup_restores_into_a_scratch_mariadb_with_every_row() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "rst-mariadb").await;
    let source = backed_up_mariadb(&cluster, &ns, operator).await;
    let restores: Api<Restore> = ns.api();
    let spec = json!({
        "source": {"backupRef": {"name": "crm-db-by-hand"}},
        "target": {"scratch": scratch_mariadb()},
        "verify": {"minTables": 1, "tables": [{"name": "customers", "minRows": ROWS}],
                   "queries": [{"name": "names", "sql": format!("select count(*) = {ROWS} from customers where name = concat('customer ', id)")}]}
    });
    restores
        .create(&PostParams::default(), &restore("crm-scratch", spec))
        .await
        .unwrap();
    let done = finished(&restores, "crm-scratch", operator).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.phase, Some(RestorePhase::Succeeded), "{status:?}");
    assert_eq!(
        status.snapshot_id,
        source.backup.status.as_ref().unwrap().snapshot_id,
        "the Backup's own snapshot"
    );
    assert!(
        status
            .target
            .as_deref()
            .unwrap()
            .starts_with("mysql database restore on crm-scratch-scratch."),
        "{:?}",
        status.target
    );
    let verification = status.verification.unwrap();
    assert!(
        verification.passed && verification.checks.len() == 3,
        "{verification:?}"
    );
}

#[tokio::test]
async fn an_unreachable_target_fails_the_restore_with_the_agents_reason() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "rst-unreachable").await;
    policy_without_backups(&cluster, &ns, operator).await;
    // A port nothing listens on, on the loopback of the Pod that checks the target.
    let nothing_listens = 5999;
    let target = json!({"postgres": {"host": "127.0.0.1", "port": nothing_listens, "database": "hotel", "user": "postgres",
                                     "passwordSecretRef": {"name": "db", "key": "password"}}});
    let restores: Api<Restore> = ns.api();
    restores
        .create(
            &PostParams::default(),
            &restore(
                "nowhere",
                json!({"source": {"policyRef": {"name": "hotel-db"}}, "target": target}),
            ),
        )
        .await
        .unwrap();
    let failed = finished(&restores, "nowhere", operator).await;
    let status = failed.status.unwrap();
    assert_eq!(status.phase, Some(RestorePhase::Failed), "{status:?}");
    assert_eq!(
        status.reason.as_deref(),
        Some("DatabaseUnreachable"),
        "{status:?}"
    );
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains(&nothing_listens.to_string()),
        "{status:?}"
    );
    assert!(status.job_name.is_none(), "no restore was attempted: {status:?}");
}

#[tokio::test]
async fn a_scratch_server_that_never_gets_ready_fails_the_restore_and_is_removed() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "rst-never-ready").await;
    policy_without_backups(&cluster, &ns, operator).await;
    // A server that never listens on TCP (its Unix socket only): never ready.
    let scratch = json!({"engine": "postgres", "image": POSTGRES_IMAGE, "args": ["-c", "listen_addresses="],
                         "readyTimeout": "5s"});
    let restores: Api<Restore> = ns.api();
    restores
        .create(
            &PostParams::default(),
            &restore(
                "stuck",
                json!({"source": {"policyRef": {"name": "hotel-db"}}, "target": {"scratch": scratch}}),
            ),
        )
        .await
        .unwrap();
    let failed = finished(&restores, "stuck", operator).await;
    let status = failed.status.unwrap();
    assert_eq!(status.phase, Some(RestorePhase::Failed), "{status:?}");
    assert_eq!(status.reason.as_deref(), Some("ScratchNotReady"), "{status:?}");
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("not ready within 5s"),
        "{status:?}"
    );
    let removed = eventually(
        "the scratch server to be removed",
        Duration::from_secs(20),
        operator,
        || async {
            let r = restores.get("stuck").await.map_err(|e| e.to_string())?;
            let scratch = r.status.and_then(|s| s.scratch).ok_or("no scratch status")?;
            if scratch.removed {
                Ok(scratch)
            } else {
                Err(format!("{scratch:?}"))
            }
        },
    )
    .await;
    let pods: Api<Pod> = ns.api();
    assert!(pods
        .get_opt(&removed.pod)
        .await
        .unwrap()
        .is_none_or(|p| p.metadata.deletion_timestamp.is_some()));
}
