//! What a person on call is told about a BackupPolicy that has been working, end to end on the real node
//! with the chart-installed operator (PostgreSQL as a Pod of the test image, a restic repository on a
//! host-directory claim, backups as Jobs of the lifeboat image, the web app image's chat webhook
//! stand-in): a policy whose last success ages past its RPO turns Stale — condition, Ready,
//! metric and a chat message naming the policy — and recovers with the next backup; a backup far larger
//! than the recent ones raises SizeAnomaly, with the metric, an Event and a chat message giving the sizes.
//! Backups are made by hand (a Backup with spec.policyRef, as `kubectl lifeboat backup now` does) under
//! a once-a-year schedule, so nothing runs behind the tests' back.

mod support;

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::Api;
use lifeboat::api::backup::BackupPhase;
use lifeboat::api::notifications::{DeliveryState, NotificationRecord};
use lifeboat::api::{Backup, BackupPolicy};
use serde_json::{json, Value};
use support::conditions::condition;
use support::installed::InstalledOperator;
use support::node_restore::{claim_repository, postgres_database, postgres_with_backups_claim};
use support::node_web::ChatWebhook;
use support::real_node::{create_database, namespace, psql_in};
use support::wait::eventually;
use support::{Cluster, TestNamespace};

/// How long one hand-made backup may take, from its creation to Succeeded.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(120);
/// The RPO of the aging scenario: long enough to see the policy fresh after its backup first.
const RPO_SECONDS: i64 = 45;

/// A namespace on the real node with the PostgreSQL Pod (its Secrets and the repository's claim), a
/// database of the test's own made by `sql`, and the chat webhook whose URL Secret `chat` holds.
async fn scenario(
    cluster: &Cluster,
    prefix: &str,
    sql: &str,
    operator: &InstalledOperator,
) -> (TestNamespace, String, ChatWebhook) {
    let ns = namespace(cluster, prefix).await;
    postgres_with_backups_claim(cluster, &ns, operator).await;
    let database = format!("{prefix}_{}", ns.name.replace('-', "_"));
    create_database(cluster, &ns, &database);
    psql_in(cluster, &ns, &database, sql);
    let webhook = ChatWebhook::failing_first(cluster, &ns, 0, operator).await;
    support::secret(&ns, "chat", "url", &webhook.url).await;
    (ns, database, webhook)
}

/// A policy of `database` that runs once a year (so only hand-made Backups run), notifying the chat
/// webhook of `events`, with `extra` spec fields.
async fn create_policy(ns: &TestNamespace, name: &str, database: &str, events: &[&str], extra: Value) {
    let mut spec = json!({
        "schedule": "0 0 1 1 *",
        "source": postgres_database(database),
        "repository": claim_repository(name),
        "notifications": {"webhook": {"urlSecretRef": {"name": "chat", "key": "url"}}, "events": events},
    });
    for (key, value) in extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    let policy: BackupPolicy = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    let policies: Api<BackupPolicy> = ns.api();
    policies.create(&PostParams::default(), &policy).await.unwrap();
}

/// A backup now, as `kubectl lifeboat backup now` makes it, waited for until it Succeeded.
async fn backup_now(ns: &TestNamespace, policy: &str, name: &str, operator: &InstalledOperator) -> Backup {
    let backup: Backup = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup", "metadata": {"name": name},
        "spec": {"policyRef": {"name": policy}, "trigger": "Manual", "reason": "backup now"}
    }))
    .unwrap();
    let backups: Api<Backup> = ns.api();
    backups.create(&PostParams::default(), &backup).await.unwrap();
    eventually(
        &format!("Backup {name} Succeeded (kubectl get backup {name})"),
        BACKUP_TIMEOUT,
        operator,
        async || {
            let b = backups.get(name).await.map_err(|e| e.to_string())?;
            match b.status.as_ref().and_then(|s| s.phase) {
                Some(BackupPhase::Succeeded) => Ok(b),
                Some(BackupPhase::Failed) => panic!("Backup {name} failed: {:?}", b.status),
                _ => Err(format!("{:?}", b.status)),
            }
        },
    )
    .await
}

/// The policy once its status records `backup` as the last successful backup (the reconcile that does
/// so also judges freshness and the size band).
async fn recorded(
    policies: &Api<BackupPolicy>,
    policy: &str,
    backup: &str,
    operator: &InstalledOperator,
) -> BackupPolicy {
    eventually(
        &format!("status.lastSuccessfulBackup of {policy} naming {backup}"),
        Duration::from_secs(30),
        operator,
        async || {
            let p = policies.get(policy).await.map_err(|e| e.to_string())?;
            let last = p.status.as_ref().and_then(|s| s.last_successful_backup.as_ref());
            (last.map(|l| l.name.as_str()) == Some(backup))
                .then(|| p.clone())
                .ok_or_else(|| format!("{:?}", p.status))
        },
    )
    .await
}

/// Waits until /metrics shows `series{namespace,policy} value`.
async fn series_at(operator: &InstalledOperator, series: &str, namespace: &str, policy: &str, value: u8) {
    let wanted = format!("{series}{{namespace=\"{namespace}\",policy=\"{policy}\"}} {value}");
    eventually(
        &format!("{wanted} in the operator's /metrics"),
        Duration::from_secs(30),
        operator,
        async || {
            let metrics = operator.metrics();
            metrics.lines().any(|l| l == wanted).then_some(()).ok_or_else(|| {
                let of_it: Vec<&str> = metrics
                    .lines()
                    .filter(|l| l.starts_with(series) && l.contains(namespace))
                    .collect();
                format!("{series} lines of the namespace: {of_it:?}")
            })
        },
    )
    .await;
}

/// The chat texts the webhook received (the `text` of each Slack-style body).
fn chat_texts(webhook: &ChatWebhook) -> Vec<String> {
    webhook
        .received()
        .iter()
        .map(|body| {
            serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v["text"].as_str().map(str::to_owned))
                .unwrap_or_else(|| body.clone())
        })
        .collect()
}

/// Waits for a chat text containing every one of `needles`, and returns it.
async fn told(webhook: &ChatWebhook, what: &str, needles: &[&str], operator: &InstalledOperator) -> String {
    eventually(
        &format!("the chat told {what}"),
        Duration::from_secs(30),
        operator,
        async || {
            let texts = chat_texts(webhook);
            texts
                .iter()
                .find(|text| needles.iter().all(|n| text.contains(n)))
                .cloned()
                .ok_or(format!(
                    "the webhook received {texts:?}; wanted all of {needles:?}"
                ))
        },
    )
    .await
}

/// Waits until status.notifications of the policy has a Delivered `event` whose message contains
/// `containing`, and returns it.
async fn delivered(
    policies: &Api<BackupPolicy>,
    policy: &str,
    event: &str,
    containing: &str,
    operator: &InstalledOperator,
) -> NotificationRecord {
    eventually(
        &format!("a Delivered {event} record in status.notifications of {policy}"),
        Duration::from_secs(30),
        operator,
        async || {
            let p = policies.get(policy).await.map_err(|e| e.to_string())?;
            let records = p.status.map(|s| s.notifications).unwrap_or_default();
            records
                .iter()
                .find(|r| {
                    r.event == event && r.state == DeliveryState::Delivered && r.message.contains(containing)
                })
                .cloned()
                .ok_or(format!("{records:?}"))
        },
    )
    .await
}

/// A policy that succeeded and was fresh turns Stale once its RPO passes without another success:
/// Stale=True, Ready=False (reason Stale), lifeboat_backup_stale 1 and a chat message naming it; the
/// next backup makes it fresh and Ready again, and the chat hears it recovered.
#[tokio::test]
async fn a_policy_that_succeeded_then_aged_past_its_rpo_turns_stale_notifies_and_recovers() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let (ns, database, webhook) = scenario(
        &cluster,
        "bp-aged",
        "create table orders(id serial primary key, item text not null); \
         insert into orders(item) select 'item ' || g from generate_series(1, 200) g;",
        operator,
    )
    .await;
    create_policy(
        &ns,
        "aged-db",
        &database,
        &["Stale", "Recovery"],
        json!({"rpo": format!("{RPO_SECONDS}s")}),
    )
    .await;
    let policies: Api<BackupPolicy> = ns.api();

    // Fresh right after its backup: the success is recorded and Stale is False, within the RPO.
    backup_now(&ns, "aged-db", "aged-db-first", operator).await;
    let fresh = recorded(&policies, "aged-db", "aged-db-first", operator).await;
    let summary = fresh
        .status
        .as_ref()
        .and_then(|s| s.last_successful_backup.clone())
        .unwrap();
    let (status, reason, message) = condition(&fresh, "Stale").expect("a Stale condition with an RPO");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "WithinRPO"),
        "kubectl get bp aged-db shows STALE False right after a successful backup: {message}"
    );
    assert!(message.contains("within the RPO until"), "{message}");
    let ready = condition(&fresh, "Ready").expect("Ready");
    assert_eq!(
        (ready.0.as_str(), ready.1.as_str()),
        ("True", "BackupSucceeded"),
        "Ready after the first backup: {ready:?}"
    );
    series_at(operator, "lifeboat_backup_stale", &ns.name, "aged-db", 0).await;

    // Aged: no success within the RPO since that one.
    let stale = eventually(
        "Stale=True once the RPO passed since the last success (kubectl get bp aged-db)",
        Duration::from_secs(RPO_SECONDS as u64 + 45),
        operator,
        async || {
            let p = policies.get("aged-db").await.map_err(|e| e.to_string())?;
            condition(&p, "Stale")
                .filter(|c| c.0 == "True")
                .map(|_| p.clone())
                .ok_or_else(|| format!("{:?}", p.status))
        },
    )
    .await;
    let conditions = &stale.status.as_ref().unwrap().conditions.0;
    let stale_condition = conditions.iter().find(|c| c.type_ == "Stale").unwrap();
    assert_eq!(stale_condition.reason, "RPOExceeded", "{stale_condition:?}");
    assert!(
        stale_condition.message.contains(&format!(
            "the newest successful backup ({}) is older than the RPO {RPO_SECONDS}s",
            summary.time.0
        )),
        "the Stale message names the aged success and the RPO: {stale_condition:?}"
    );
    assert!(
        stale_condition.last_transition_time.0.as_second() >= summary.time.0.as_second() + RPO_SECONDS,
        "stale no sooner than the RPO after the success at {}: {stale_condition:?}",
        summary.time.0
    );
    let ready = condition(&stale, "Ready").expect("Ready");
    assert_eq!(
        (ready.0.as_str(), ready.1.as_str()),
        ("False", "Stale"),
        "Ready of a stale policy: {ready:?}"
    );
    assert_eq!(ready.2, stale_condition.message, "Ready says why it is not ready");
    series_at(operator, "lifeboat_backup_stale", &ns.name, "aged-db", 1).await;

    // The chat hears it, with the policy's name and the same words as the condition.
    let policy_ref = format!("BackupPolicy {}/aged-db", ns.name);
    let headline = format!("{policy_ref} is STALE");
    told(
        &webhook,
        "that the policy is stale",
        &[&headline, &stale_condition.message],
        operator,
    )
    .await;
    let record = delivered(&policies, "aged-db", "Stale", "is older than the RPO", operator).await;
    assert!(
        record.last_error.is_none() && record.attempts >= 1,
        "delivered without errors: {record:?}"
    );

    // A new backup: fresh again, Ready again, and the chat hears it recovered (naming that backup).
    backup_now(&ns, "aged-db", "aged-db-second", operator).await;
    let recovered = recorded(&policies, "aged-db", "aged-db-second", operator).await;
    assert_eq!(
        condition(&recovered, "Stale").map(|c| (c.0, c.1)),
        Some(("False".into(), "WithinRPO".into())),
        "STALE False after a new backup: {:?}",
        recovered.status
    );
    assert_eq!(
        condition(&recovered, "Ready").map(|c| (c.0, c.1)),
        Some(("True".into(), "BackupSucceeded".into())),
        "Ready after the new backup: {:?}",
        recovered.status
    );
    series_at(operator, "lifeboat_backup_stale", &ns.name, "aged-db", 0).await;
    told(
        &webhook,
        "that the policy recovered",
        &[&format!("{policy_ref} recovered"), "aged-db-second"],
        operator,
    )
    .await;
    delivered(&policies, "aged-db", "Recovery", "aged-db-second", operator).await;
}

/// Two backups of the same data set the baseline; a backup ten times their size leaves the band
/// (minRatio 0.7, maxRatio 1.5): SizeAnomaly=True with the sizes in its message, lifeboat_backup_size_anomaly
/// 1, a SizeAnomaly Event and a chat message; the backup itself still counts as the last success.
#[tokio::test]
async fn a_backup_far_larger_than_the_recent_ones_raises_size_anomaly_and_notifies() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    // md5 text is random, so pg_dump's compression cannot hide the growth.
    let (ns, database, webhook) = scenario(
        &cluster,
        "bp-anomaly",
        "create table events(id serial primary key, payload text not null); \
         insert into events(payload) select md5(random()::text) from generate_series(1, 2000);",
        operator,
    )
    .await;
    create_policy(
        &ns,
        "sized-db",
        &database,
        &["Anomaly"],
        json!({"sizeAnomaly": {"minRatio": 0.7, "maxRatio": 1.5, "window": 3}}),
    )
    .await;
    let policies: Api<BackupPolicy> = ns.api();

    // The baseline: the first success has nothing to compare with, the second is within the band.
    let mut baseline = Vec::new();
    for name in ["sized-db-base-1", "sized-db-base-2"] {
        let backup = backup_now(&ns, "sized-db", name, operator).await;
        let size = backup.status.as_ref().and_then(|s| s.size_bytes).unwrap();
        assert!(size > 0, "{name} has a size: {:?}", backup.status);
        baseline.push(size);
        let policy = recorded(&policies, "sized-db", name, operator).await;
        assert_eq!(
            condition(&policy, "SizeAnomaly").map(|c| (c.0, c.1)),
            Some(("False".into(), "SizeWithinBand".into())),
            "{name} of the same data is no anomaly: {:?}",
            policy.status
        );
    }
    let within = policies.get("sized-db").await.unwrap().status.unwrap();
    assert_eq!(
        within.recent_sizes, baseline,
        "status.recentSizes holds the baseline's sizes"
    );
    series_at(operator, "lifeboat_backup_size_anomaly", &ns.name, "sized-db", 0).await;
    assert!(
        webhook.received().is_empty(),
        "no anomaly told for backups within the band: {:?}",
        chat_texts(&webhook)
    );

    // Ten times the data, then a backup now.
    psql_in(
        &cluster,
        &ns,
        &database,
        "insert into events(payload) select md5(random()::text) from generate_series(1, 20000);",
    );
    let grown = backup_now(&ns, "sized-db", "sized-db-grown", operator).await;
    let size = grown.status.as_ref().and_then(|s| s.size_bytes).unwrap();
    let median = (baseline[0] + baseline[1]) as f64 / 2.0;
    let ratio = size as f64 / median;
    assert!(
        ratio > 1.5,
        "the test's data did not grow the dump enough: {size} bytes vs a median of {median} ({baseline:?})"
    );
    let anomalous = recorded(&policies, "sized-db", "sized-db-grown", operator).await;
    let (status, reason, message) = condition(&anomalous, "SizeAnomaly")
        .unwrap_or_else(|| panic!("no SizeAnomaly: {:?}", anomalous.status));
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "SizeOutsideBand"),
        "kubectl describe bp sized-db shows the anomaly: {message}"
    );
    for part in [
        format!("backup size {size} bytes is {:.0}%", ratio * 100.0),
        format!("of the median of the last 2 backups ({median:.0} bytes)"),
        "expected 70%–150%".to_owned(),
    ] {
        assert!(
            message.contains(&part),
            "the SizeAnomaly message says {part:?}: {message}"
        );
    }
    let status = anomalous.status.as_ref().unwrap();
    assert_eq!(
        status.last_successful_backup.as_ref().map(|s| s.size_bytes),
        Some(size),
        "an unusual backup still counts as the last success"
    );
    assert_eq!(
        status.recent_sizes,
        [baseline[0], baseline[1], size],
        "status.recentSizes takes the new size"
    );
    series_at(operator, "lifeboat_backup_size_anomaly", &ns.name, "sized-db", 1).await;

    // `kubectl get events` shows which backup and why.
    let events: Api<Event> = ns.api();
    eventually(
        "a SizeAnomaly Event naming sized-db-grown (kubectl get events)",
        Duration::from_secs(30),
        operator,
        async || {
            let list = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let seen: Vec<(String, String)> = list
                .items
                .iter()
                .map(|e| {
                    (
                        e.reason.clone().unwrap_or_default(),
                        e.note.clone().unwrap_or_default(),
                    )
                })
                .collect();
            seen.iter()
                .any(|(reason, note)| {
                    reason == "SizeAnomaly" && note.starts_with("sized-db-grown: backup size")
                })
                .then_some(())
                .ok_or(format!("{seen:?}"))
        },
    )
    .await;

    // The chat hears it, naming the policy, with the sizes.
    told(
        &webhook,
        "of the unusual backup size",
        &[
            &format!("BackupPolicy {}/sized-db made a backup of unusual size", ns.name),
            &message,
        ],
        operator,
    )
    .await;
    let record = delivered(&policies, "sized-db", "Anomaly", &message, operator).await;
    assert!(
        record.last_error.is_none(),
        "delivered without errors: {record:?}"
    );
}
