//! Shared by the Restore and RestoreDrill end-to-end tests: a PostgreSQL database with known rows, backed
//! up once by a hand-made Backup of a BackupPolicy (through the operator, as users do), and a scratch
//! PostgreSQL "image" for the local node, which runs commands rather than images.
#![allow(dead_code)]

use std::time::Duration;

use kube::api::PostParams;
use kube::Api;
use lifeboat::api::backup::BackupPhase;
use lifeboat::api::{Backup, BackupPolicy};
use serde_json::{json, Value};

use super::agent;
use super::operator::Operator;
use super::wait::{eventually, OperatorLog};
use super::{secret, Cluster, TestNamespace};

pub const ROWS: i64 = 500;

/// A source database, its repository and a policy that backed it up once.
pub struct BackedUp {
    pub database: String,
    pub repo: agent::Repo,
    pub policy: String,
    pub backup: Backup,
}

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

/// Creates `hotel_<ns>` with [`hotel_rows_sql`], a BackupPolicy whose schedule is far away, and a
/// hand-made Backup; returns once the Backup succeeded.
pub async fn backed_up_database(ns: &TestNamespace, operator: &Operator) -> BackedUp {
    let pg = agent::postgres();
    let database = format!("hotel_{}", ns.name.replace('-', "_"));
    pg.create_database(&database);
    pg.psql(&database, &hotel_rows_sql());
    let repo = agent::Repo::uninitialised();
    secret(ns, "db", "password", agent::PG_PASSWORD).await;
    secret(ns, "restic", "password", agent::RESTIC_PASSWORD).await;
    let source = json!({"postgres": {"host": "127.0.0.1", "port": pg.port, "database": database, "user": "postgres",
                                     "passwordSecretRef": {"name": "db", "key": "password"}}});
    let repository = json!({"restic": {"repository": repo.repository_arg(), "initialize": true,
                                       "passwordSecretRef": {"name": "restic", "key": "password"}}});
    let backup = backed_up_once(ns, "hotel-db", source, repository, operator).await;
    BackedUp {
        database,
        repo,
        policy: "hotel-db".into(),
        backup,
    }
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

/// Only a BackupPolicy (and its Secrets), for Restores that must fail before reading any snapshot.
pub async fn policy_without_backups(ns: &TestNamespace) -> agent::Repo {
    let pg = agent::postgres();
    let repo = agent::Repo::uninitialised();
    secret(ns, "db", "password", agent::PG_PASSWORD).await;
    secret(ns, "restic", "password", agent::RESTIC_PASSWORD).await;
    let policy: BackupPolicy = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": "hotel-db"},
        "spec": {
            "schedule": "0 0 1 1 *",
            "source": {"postgres": {"host": "127.0.0.1", "port": pg.port, "database": "postgres", "user": "postgres",
                                     "passwordSecretRef": {"name": "db", "key": "password"}}},
            "repository": {"restic": {"repository": repo.repository_arg(),
                                       "passwordSecretRef": {"name": "restic", "key": "password"}}}
        }
    }))
    .unwrap();
    let policies: Api<BackupPolicy> = ns.api();
    policies.create(&PostParams::default(), &policy).await.unwrap();
    repo
}

/// A RestoreDrill of `hotel-db` (as [`backed_up_database`] makes it) on `schedule` into a scratch
/// PostgreSQL, checking every guest is back; RTO 5m, RPO 1h.
pub fn scratch_drill(name: &str, schedule: &str) -> lifeboat::api::RestoreDrill {
    serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "RestoreDrill", "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "policyRef": {"name": "hotel-db"},
            "target": {"scratch": scratch_postgres()},
            "verify": {"tables": [{"name": "guests", "minRows": ROWS}]},
            "rto": "5m", "rpo": "1h"
        }
    }))
    .unwrap()
}

/// A scratch PostgreSQL for the local node: what `postgres:16`'s entrypoint does (initdb with
/// POSTGRES_USER/POSTGRES_PASSWORD, then the server), as a command, on the Pod's own address.
pub fn scratch_postgres() -> Value {
    let bin = agent::pg_bin_dir().display().to_string();
    let script = format!(
        r#"set -e
dir=$(mktemp -d /tmp/lifeboat-scratch-XXXXXX)
chown postgres "$dir"
cd "$dir"
printf '%s' "$POSTGRES_PASSWORD" > "$dir/pw"
chown postgres "$dir/pw"
runuser -u postgres -- {bin}/initdb -D "$dir/data" -U "$POSTGRES_USER" --pwfile="$dir/pw" --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-sync >/dev/null
echo "host all all 127.0.0.0/8 scram-sha-256" >> "$dir/data/pg_hba.conf"
runuser -u postgres -- {bin}/postgres -D "$dir/data" -k "$dir" -p "$LIFEBOAT_SCRATCH_PORT" -c listen_addresses="$POD_IP" -c fsync=off -c synchronous_commit=off -c full_page_writes=off &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid; rm -rf "$dir"; exit 0' TERM INT
wait $pid
rm -rf "$dir""#
    );
    json!({"engine": "postgres", "image": "postgres:16", "command": ["sh", "-c", script], "readyTimeout": "60s"})
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

/// A scratch MariaDB for the local node: what `mariadb:11`'s entrypoint does (install the data
/// directory, set the root password from MARIADB_ROOT_PASSWORD, create MARIADB_DATABASE), as a command.
pub fn scratch_mariadb() -> Value {
    let script = r#"set -e
dir=$(mktemp -d /tmp/lifeboat-scratch-my-XXXXXX)
cd "$dir"
mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal --skip-test-db --user=root >/dev/null
cat > "$dir/init.sql" <<SQL
DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1';
ALTER USER 'root'@'localhost' IDENTIFIED BY '$MARIADB_ROOT_PASSWORD';
CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$MARIADB_ROOT_PASSWORD';
GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS \`$MARIADB_DATABASE\`;
SQL
/usr/sbin/mariadbd --no-defaults --user=root --datadir="$dir/data" --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" \
  --init-file="$dir/init.sql" --bind-address="$POD_IP" --port="$LIFEBOAT_SCRATCH_PORT" --skip-networking=0 --skip-name-resolve \
  --skip-log-bin --innodb-buffer-pool-size=32M --innodb-flush-log-at-trx-commit=0 --innodb-log-file-size=16M &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid; rm -rf "$dir"; exit 0' TERM INT
wait $pid
rm -rf "$dir""#;
    json!({"engine": "mysql", "image": "mariadb:11", "command": ["sh", "-c", script], "readyTimeout": "60s"})
}

/// A MariaDB database `crm_<ns>` with [`crm_rows_sql`], backed up once through a policy.
pub async fn backed_up_mariadb(ns: &TestNamespace, operator: &Operator) -> BackedUp {
    let my = agent::mariadb();
    let database = format!("crm_{}", ns.name.replace('-', "_"));
    my.create_database(&database);
    my.sql(Some(&database), &crm_rows_sql());
    let repo = agent::Repo::uninitialised();
    secret(ns, "my", "password", agent::MY_PASSWORD).await;
    secret(ns, "restic", "password", agent::RESTIC_PASSWORD).await;
    let source = json!({"mysql": {"host": "127.0.0.1", "port": my.port, "database": database, "user": agent::MY_USER,
                                  "passwordSecretRef": {"name": "my", "key": "password"}}});
    let repository = json!({"restic": {"repository": repo.repository_arg(), "initialize": true,
                                       "passwordSecretRef": {"name": "restic", "key": "password"}}});
    let backup = backed_up_once(ns, "crm-db", source, repository, operator).await;
    BackedUp {
        database,
        repo,
        policy: "crm-db".into(),
        backup,
    }
}
