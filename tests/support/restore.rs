//! Shared by the Restore and RestoreDrill end-to-end tests: the rows a restore must bring back, and a
//! source backed up once by a hand-made Backup of a BackupPolicy (through the operator, as users do).
//! The databases themselves are Pods on the real node (`node_restore`).
#![allow(dead_code)]

use std::time::Duration;

use kube::api::PostParams;
use kube::Api;
use lifeboat::api::backup::BackupPhase;
use lifeboat::api::{Backup, BackupPolicy};
use serde_json::{json, Value};

use super::wait::{eventually, OperatorLog};
use super::{Cluster, TestNamespace};

pub const ROWS: i64 = 500;

/// The rows every restore test brings back: `guests` (ROWS rows, with an md5 note each) and `rooms`
/// (12 rows), as PostgreSQL SQL.
pub fn hotel_rows_sql() -> String {
    format!(
        "create table guests(id serial primary key, name text not null, note text); \
         insert into guests(name, note) select 'guest ' || g, md5(g::text) from generate_series(1, {ROWS}) g; \
         create table rooms(number int primary key, beds int not null); \
         insert into rooms select g, 1 + g % 3 from generate_series(1, 12) g;"
    )
}

/// `customers` with ROWS rows, as MariaDB SQL.
pub fn crm_rows_sql() -> String {
    format!(
        "create table customers(id int primary key, name varchar(64) not null); \
         insert into customers select seq, concat('customer ', seq) from seq_1_to_{ROWS};"
    )
}

/// A BackupPolicy `policy` of `source` into `repository` whose schedule is far away (the tests'
/// backups are made by hand, so nothing runs behind their back), and one hand-made Backup
/// `<policy>-by-hand`; returns the Backup once it succeeded.
pub async fn backed_up_once(
    ns: &TestNamespace,
    policy: &str,
    source: Value,
    repository: Value,
    operator: &dyn OperatorLog,
) -> Backup {
    create_policy(ns, policy, source, repository).await;
    let name = format!("{policy}-by-hand");
    let backup: Backup = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup",
        "metadata": {"name": name},
        "spec": {"policyRef": {"name": policy}, "reason": "restore test"}
    }))
    .unwrap();
    let backups: Api<Backup> = ns.api();
    backups.create(&PostParams::default(), &backup).await.unwrap();
    eventually(
        &format!("Backup {name} to succeed"),
        Duration::from_secs(120),
        operator,
        || async {
            let b = backups.get(&name).await.map_err(|e| e.to_string())?;
            match b.status.as_ref().and_then(|s| s.phase) {
                Some(BackupPhase::Succeeded) => Ok(b),
                Some(BackupPhase::Failed) => panic!("the Backup failed: {:?}", b.status),
                _ => Err(format!("{:?}", b.status)),
            }
        },
    )
    .await
}

/// A BackupPolicy `policy` whose schedule never comes during a test (1 January): its Backups are the
/// ones a test asks for.
pub async fn create_policy(ns: &TestNamespace, policy: &str, source: Value, repository: Value) {
    let object: BackupPolicy = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": policy},
        "spec": {"schedule": "0 0 1 1 *", "source": source, "repository": repository}
    }))
    .unwrap();
    let policies: Api<BackupPolicy> = ns.api();
    policies.create(&PostParams::default(), &object).await.unwrap();
}

/// Event reasons and notes on objects of the namespace.
pub fn events(cluster: &Cluster, namespace: &str) -> String {
    super::run_ok(
        "kubectl get events",
        cluster.kubectl().args([
            "get",
            "events",
            "-n",
            namespace,
            "-o",
            "custom-columns=REASON:.reason,OBJ:.involvedObject.name,NOTE:.message",
        ]),
    )
}
