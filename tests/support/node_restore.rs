//! The Restore and RestoreDrill suites on the real node: PostgreSQL and MariaDB as Pods from the test
//! images, backed up once by hand through a BackupPolicy into a restic repository on a host-directory
//! claim (so the test can read and damage it from the host), and scratch servers from the same images.
#![allow(dead_code)]

use std::path::PathBuf;

use lifeboat::api::Backup;
use serde_json::{json, Value};

use super::installed::{InstalledOperator, MARIADB_IMAGE, POSTGRES_IMAGE};
use super::real_node::{
    create_database, host_claim, mariadb, mariadb_sql, pod_ready, postgres, postgres_ready, psql_in,
    DB_PASSWORD, MARIADB_PASSWORD,
};
use super::restore::{backed_up_once, create_policy, crm_rows_sql, hotel_rows_sql};
use super::{secret, Cluster, TestNamespace};

/// The restic repositories' password (the host-side tests' own, so `agent::Repo` opens them).
pub use super::agent::RESTIC_PASSWORD;

/// A source database in a Pod, backed up once.
pub struct BackedUp {
    pub database: String,
    /// The restic repository's directory on the host (the claim `backups` is a host directory).
    pub repository: PathBuf,
    pub backup: Backup,
}

/// The PostgreSQL Pod's `database`, as a BackupPolicy's source or a Restore's target.
pub fn postgres_database(database: &str) -> Value {
    json!({"postgres": {"host": "db", "database": database, "user": "postgres",
                        "passwordSecretRef": {"name": "db", "key": "password"}}})
}

/// The restic repository `/repository/<name>` on claim `backups`.
pub fn claim_repository(name: &str) -> Value {
    json!({"restic": {"repository": format!("/repository/{name}"), "persistentVolumeClaim": "backups",
                      "passwordSecretRef": {"name": "restic", "key": "password"}, "initialize": true}})
}

/// A scratch PostgreSQL from the test image, started as the image starts (its entrypoint reads the
/// POSTGRES_* variables the operator sets).
pub fn scratch_postgres() -> Value {
    json!({"engine": "postgres", "image": POSTGRES_IMAGE, "readyTimeout": "90s"})
}

/// A scratch MariaDB from the test image.
pub fn scratch_mariadb() -> Value {
    json!({"engine": "mysql", "image": MARIADB_IMAGE, "readyTimeout": "90s"})
}

/// The PostgreSQL Pod, its Secrets and the claim `backups`, ready for use.
pub async fn postgres_with_backups_claim(
    cluster: &Cluster,
    ns: &TestNamespace,
    operator: &InstalledOperator,
) -> PathBuf {
    secret(ns, "db", "password", DB_PASSWORD).await;
    secret(ns, "restic", "password", RESTIC_PASSWORD).await;
    postgres(ns).await;
    let claim = host_claim(cluster, ns, "backups").await;
    postgres_ready(ns, operator).await;
    claim
}

/// `hotel_<ns>` in the PostgreSQL Pod with the hotel rows, backed up once by policy `hotel-db`.
pub async fn backed_up_database(
    cluster: &Cluster,
    ns: &TestNamespace,
    operator: &InstalledOperator,
) -> BackedUp {
    let claim = postgres_with_backups_claim(cluster, ns, operator).await;
    let database = format!("hotel_{}", ns.name.replace('-', "_"));
    create_database(cluster, ns, &database);
    psql_in(cluster, ns, &database, &hotel_rows_sql());
    let source = postgres_database(&database);
    let backup = backed_up_once(ns, "hotel-db", source, claim_repository("hotel-db"), operator).await;
    BackedUp {
        database,
        repository: claim.join("hotel-db"),
        backup,
    }
}

/// Only a BackupPolicy `hotel-db` of the PostgreSQL Pod (and its Secrets and claim), for Restores that
/// must fail before reading any snapshot.
pub async fn policy_without_backups(cluster: &Cluster, ns: &TestNamespace, operator: &InstalledOperator) {
    postgres_with_backups_claim(cluster, ns, operator).await;
    create_policy(
        ns,
        "hotel-db",
        postgres_database("postgres"),
        claim_repository("hotel-db"),
    )
    .await;
}

/// `hotel_<ns>` in the PostgreSQL Pod with the hotel rows and policy `hotel-db` over it, never run:
/// a Cutover's pre-switch Backup is its first. Returns the database's name and the repository's
/// directory on the host.
pub async fn hotel_policy(
    cluster: &Cluster,
    ns: &TestNamespace,
    operator: &InstalledOperator,
) -> (String, PathBuf) {
    let claim = postgres_with_backups_claim(cluster, ns, operator).await;
    let database = format!("hotel_{}", ns.name.replace('-', "_"));
    create_database(cluster, ns, &database);
    psql_in(cluster, ns, &database, &hotel_rows_sql());
    create_policy(
        ns,
        "hotel-db",
        postgres_database(&database),
        claim_repository("hotel-db"),
    )
    .await;
    (database, claim.join("hotel-db"))
}

/// `crm_<ns>` in a MariaDB Pod with the CRM rows, backed up once by policy `crm-db`.
pub async fn backed_up_mariadb(
    cluster: &Cluster,
    ns: &TestNamespace,
    operator: &InstalledOperator,
) -> BackedUp {
    secret(ns, "my", "password", MARIADB_PASSWORD).await;
    secret(ns, "restic", "password", RESTIC_PASSWORD).await;
    mariadb(ns).await;
    let claim = host_claim(cluster, ns, "backups").await;
    let database = format!("crm_{}", ns.name.replace('-', "_"));
    pod_ready(ns, "mariadb", operator).await;
    mariadb_sql(cluster, ns, None, &format!("create database `{database}`"));
    mariadb_sql(cluster, ns, Some(&database), &crm_rows_sql());
    let source = json!({"mysql": {"host": "mariadb", "database": database, "user": "root",
                                  "passwordSecretRef": {"name": "my", "key": "password"}}});
    let backup = backed_up_once(ns, "crm-db", source, claim_repository("crm-db"), operator).await;
    BackedUp {
        database,
        repository: claim.join("crm-db"),
        backup,
    }
}
