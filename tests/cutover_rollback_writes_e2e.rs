//! A rollback that restores the database while the app is live, as the compose runbook's emergency
//! restore does it: the writers are stopped first (both sides' Deployments scaled to zero), the
//! pre-switch snapshot is restored, the old side comes back, and only then does traffic return. Blue
//! and green (on the real node, the chart-installed operator) each have a writer beside the web app
//! that inserts a row every ~100 ms throughout and logs each committed write into a database the
//! restore does not touch, so the test knows exactly which writes the restore discarded — and checks
//! they all lie in the window status states.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::PostParams;
use kube::Api;
use lifeboat::api::cutover::{ActiveSide, CutoverPhase, RollbackRecord, StepPhase};
use lifeboat::api::Cutover;
use serde_json::{json, Value};
use support::cutover::{cutover, ended_as, step_names, step_security};
use support::installed::{InstalledOperator, LIFEBOAT_IMAGE};
use support::node_web::{answers_soon, blue_and_green_with};
use support::real_node::{psql_in, restricted_container, DB_PASSWORD};
use support::restore::ROWS;
use support::{Cluster, TestNamespace};

/// Where the writers log what they committed: a database of its own on the same server, which a
/// restore of the hotel database leaves alone.
const WRITE_LOG: &str = "writelog";

/// A side's writer: psql of the lifeboat image in a loop, a row into `writes` and, once committed, the
/// row as `id epoch` (commit-side time; ids repeat after a restore resets the sequence, the time does
/// not) into the write log; `pg_sleep` paces it at about ten a second.
fn writer(colour: &str, database: &str) -> Value {
    let script = format!(
        "while :; do \
           line=$(psql -X -tAq -h db -U postgres -d {database} -v ON_ERROR_STOP=1 -c \
             \"insert into writes(color) values ('{colour}') returning id || ' ' || extract(epoch from at)\") \
           && [ -n \"$line\" ] \
           && psql -X -q -h db -U postgres -d {WRITE_LOG} -c \"insert into committed values ('$line')\"; \
           psql -X -q -h db -U postgres -d {WRITE_LOG} -c 'select pg_sleep(0.1)' >/dev/null; \
         done"
    );
    json!({
        "name": "writer", "image": LIFEBOAT_IMAGE, "command": ["sh", "-c", script],
        "env": [{"name": "PGPASSWORD", "value": DB_PASSWORD}],
        "securityContext": restricted_container()
    })
}

/// The hotel database with a `writes` table the app's sides write into, and blue and green writing.
async fn live_hotel(cluster: &Cluster, ns: &TestNamespace, operator: &InstalledOperator) -> String {
    let (database, _repository) = support::node_restore::hotel_policy(cluster, ns, operator).await;
    psql_in(
        cluster,
        ns,
        &database,
        "create table writes(id bigserial primary key, color text not null, \
         at timestamptz not null default clock_timestamp())",
    );
    support::real_node::create_database(cluster, ns, WRITE_LOG);
    psql_in(
        cluster,
        ns,
        WRITE_LOG,
        "create table committed(line text not null)",
    );
    blue_and_green_with(cluster, ns, operator, |colour| vec![writer(colour, &database)]).await;
    database
}

/// Every write the sides logged as committed: the row as `id epoch` and that time in seconds.
fn committed_writes(cluster: &Cluster, ns: &TestNamespace) -> Vec<(String, f64)> {
    psql_in(cluster, ns, WRITE_LOG, "select line from committed")
        .lines()
        .filter_map(|line| {
            let at = line.split_whitespace().nth(1)?.parse::<f64>().ok()?;
            Some((line.trim().to_owned(), at))
        })
        .collect()
}

/// A migration Job that changes the data (drops 50 guests, adds a column) and then exits `exit`.
fn migration(database: &str, exit: i32) -> Value {
    let change = format!(
        "psql -X -h db -U postgres -d {database} -v ON_ERROR_STOP=1 \
         -c \"alter table guests add column vip boolean default false; delete from guests where id > 150\" \
         && exit {exit}"
    );
    json!({"job": {"securityContext": step_security(), "image": LIFEBOAT_IMAGE, "command": ["sh", "-c", change],
                   "env": [{"name": "PGPASSWORD", "value": DB_PASSWORD}]}})
}

fn epoch(time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> f64 {
    time.0.as_second() as f64 + f64::from(time.0.subsec_nanosecond()) / 1e9
}

/// What a person checks after the rollback: the guests are as before the Cutover, every write the
/// app committed is either in the database or inside the lost-writes window status states, nothing
/// was written while the database was being replaced, and blue writes again afterwards.
async fn assert_only_the_stated_window_was_lost(
    cluster: &Cluster,
    ns: &TestNamespace,
    database: &str,
    done: &Cutover,
) {
    let sql = |query: &str| psql_in(cluster, ns, database, query).trim().to_owned();
    assert_eq!(
        sql("select count(*) from guests"),
        ROWS.to_string(),
        "the guests are back"
    );
    assert_eq!(
        sql("select count(*) from information_schema.columns where table_name = 'guests' and column_name = 'vip'"),
        "0",
        "the migrated column is gone"
    );
    let status = done.status.clone().unwrap();
    let rollback: RollbackRecord = status.rollback.clone().unwrap();
    assert!(rollback.database_restored, "{rollback:?}");
    let window = rollback.lost_writes.clone().expect("status.rollback.lostWrites");
    let stopped = rollback.writers_stopped_time.clone().expect("writersStoppedTime");
    assert_eq!(
        window.until, stopped,
        "the lost window ends when the writers stopped"
    );
    let warning = rollback.data_loss_warning.clone().unwrap_or_default();
    assert!(
        warning.contains(&window.from.0.to_string()) && warning.contains(&window.until.0.to_string()),
        "the warning names the window: {warning}"
    );
    let names: Vec<&str> = rollback
        .stopped_writers
        .iter()
        .map(|w| w.deployment.as_str())
        .collect();
    assert_eq!(names, ["web-blue", "web-green"], "{rollback:?}");

    // Blue writes again once it is back: wait for a write that landed after the rollback ended.
    let ended = epoch(status.completion_time.as_ref().unwrap());
    let start = std::time::Instant::now();
    while !committed_writes(cluster, ns)
        .iter()
        .any(|(_, at)| *at > ended + 1.0)
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "blue never wrote again after the rollback"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The log first, the table second: a writer logs a row only after the row committed, so every
    // logged write is in the table unless the restore discarded it. (Read the other way round, a
    // write blue commits between the two reads would look lost.)
    let committed = committed_writes(cluster, ns);
    // The same expression the app logs, so a row and its log line compare as text.
    let kept: std::collections::BTreeSet<String> =
        sql("select id || ' ' || extract(epoch from at) from writes")
            .lines()
            .map(|l| l.trim().to_owned())
            .collect();
    // Status keeps whole seconds: `from` (the backup's start) is rounded down, `until` up.
    let (from, until) = (epoch(&window.from), epoch(&window.until));
    let lost: Vec<(String, f64)> = committed
        .iter()
        .filter(|(id, _)| !kept.contains(id))
        .cloned()
        .collect();
    let outside: Vec<&(String, f64)> = lost.iter().filter(|(_, at)| *at < from || *at > until).collect();
    assert!(
        outside.is_empty(),
        "writes lost outside the stated window {from}..{until}: {outside:?} ({} lost in all)",
        lost.len()
    );
    assert!(
        !lost.is_empty(),
        "the app wrote between the backup and the rollback, so the restore must have discarded some"
    );
    let resumed = status
        .steps
        .iter()
        .find(|s| s.name == "rollback/resume")
        .expect("a resume step");
    let quiet = committed
        .iter()
        .filter(|(_, at)| *at > until && *at < epoch(&resumed.start_time) - 1.0)
        .count();
    assert_eq!(
        quiet, 0,
        "nothing wrote between the writers' stop and their return"
    );
}

async fn replicas(ns: &TestNamespace, name: &str) -> i32 {
    let deployments: Api<Deployment> = ns.api();
    deployments.get(name).await.unwrap().spec.replicas.unwrap_or(1)
}

#[tokio::test]
async fn a_rollback_with_restore_database_stops_the_writers_first_and_states_the_lost_window() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = support::real_node::namespace(&cluster, "cut-live-restore").await;
    let database = live_hotel(&cluster, &ns, operator).await;

    // The migration changes the data; the new version then fails its check after the switch.
    let spec = json!({
        "backup": {"policyRef": {"name": "hotel-db"}},
        "migration": migration(&database, 0),
        "verify": [{"name": "version", "http": {"url": format!("http://web.{}.svc/version", ns.name), "expectBodyContains": "2.5"}}],
        "rollback": {"automatic": true, "restoreDatabase": true}
    });
    let cutovers: Api<Cutover> = ns.api();
    cutovers
        .create(&PostParams::default(), &cutover("release-2-5", spec))
        .await
        .unwrap();
    let done = ended_as(
        &cutovers,
        "release-2-5",
        CutoverPhase::RolledBack,
        Duration::from_secs(240),
        operator,
    )
    .await;
    let status = done.status.clone().unwrap();
    assert_eq!(
        status.rollback.as_ref().unwrap().failed_check.as_deref(),
        Some("version")
    );
    let rollback_steps: Vec<(String, StepPhase)> = step_names(&done)
        .into_iter()
        .filter(|(name, _)| name.starts_with("rollback/"))
        .collect();
    let succeeded = |name: &str| (name.to_owned(), StepPhase::Succeeded);
    assert_eq!(
        rollback_steps,
        [
            succeeded("rollback/stop-writers"),
            succeeded("rollback/restore-database"),
            succeeded("rollback/resume"),
            succeeded("rollback/switch-back"),
            succeeded("rollback/verify-from"),
        ],
        "the runbook's order: stop, restore, start the old version, switch back"
    );
    assert_eq!(status.active, Some(ActiveSide::From));
    assert_only_the_stated_window_was_lost(&cluster, &ns, &database, &done).await;
    assert!(
        answers_soon(&cluster, &ns, "blue").await,
        "traffic is back on blue"
    );
    assert_eq!(replicas(&ns, "web-blue").await, 1, "blue is back at its replicas");
    assert_eq!(
        replicas(&ns, "web-green").await,
        0,
        "green, which failed, stays down"
    );
}

#[tokio::test]
async fn a_migration_that_fails_before_the_switch_restores_with_the_writers_stopped() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = support::real_node::namespace(&cluster, "cut-live-migrate").await;
    let database = live_hotel(&cluster, &ns, operator).await;

    // Half-applied: the migration changed the data, then failed.
    let spec = json!({
        "backup": {"policyRef": {"name": "hotel-db"}},
        "migration": migration(&database, 3),
        "rollback": {"automatic": true, "restoreDatabase": true}
    });
    let cutovers: Api<Cutover> = ns.api();
    cutovers
        .create(&PostParams::default(), &cutover("release-2-6", spec))
        .await
        .unwrap();
    let done = ended_as(
        &cutovers,
        "release-2-6",
        CutoverPhase::RolledBack,
        Duration::from_secs(240),
        operator,
    )
    .await;
    let status = done.status.clone().unwrap();
    assert!(status.previous_target.is_none(), "traffic was never switched");
    assert!(
        !step_names(&done)
            .iter()
            .any(|(name, _)| name == "switch" || name == "rollback/switch-back"),
        "{:?}",
        step_names(&done)
    );
    assert!(
        step_names(&done).contains(&("rollback/stop-writers".to_owned(), StepPhase::Succeeded)),
        "{:?}",
        step_names(&done)
    );
    assert_only_the_stated_window_was_lost(&cluster, &ns, &database, &done).await;
    assert!(answers_soon(&cluster, &ns, "blue").await, "blue serves again");
    assert_eq!(replicas(&ns, "web-blue").await, 1);
}
