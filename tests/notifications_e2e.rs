//! Notifications as a person on call sees them: a flapping chat webhook still gets the message, retried
//! with backoff, and the object's status says how delivery went, without the webhook's URL. On the real
//! node: the chart-installed operator posts to a webhook stand-in reached through its Service and
//! cluster DNS.

mod support;

use std::time::Duration;

use kube::api::PostParams;
use kube::Api;
use lifeboat::api::notifications::DeliveryState;
use lifeboat::api::{BackupPolicy, RestoreDrill};
use serde_json::json;
use support::installed::InstalledOperator;
use support::node_web::ChatWebhook;
use support::real_node::namespace;
use support::wait::eventually;

/// A policy that never runs a backup in the test's lifetime (yearly schedule) and whose RPO of a few
/// seconds passes at once, so it turns Stale and notifies.
fn stale_policy(name: &str) -> BackupPolicy {
    serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": name},
        "spec": {
            "schedule": "0 0 1 1 *",
            "source": {"postgres": {"host": "db", "database": "hotel", "user": "postgres",
                                     "passwordSecretRef": {"name": "db", "key": "password"}}},
            "repository": {"restic": {"repository": "/nonexistent/repo",
                                       "passwordSecretRef": {"name": "restic", "key": "password"}}},
            "rpo": "3s",
            "notifications": {"webhook": {"urlSecretRef": {"name": "chat", "key": "url"}}, "events": ["Stale"]}
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn a_webhook_that_fails_twice_gets_the_stale_notice_on_the_third_attempt_recorded_in_status() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "notify-retry").await;
    let webhook = ChatWebhook::failing_first(&cluster, &ns, 2, operator).await;
    // The URL carries a token, as Slack's do: it must not leak into status.
    let url = format!("{}?token=s3cr3t-token", webhook.url);
    support::secret(&ns, "chat", "url", &url).await;
    support::secret(&ns, "db", "password", "unused").await;
    support::secret(&ns, "restic", "password", "unused").await;
    let policies: Api<BackupPolicy> = ns.api();
    policies
        .create(&PostParams::default(), &stale_policy("retry"))
        .await
        .unwrap();

    // Attempts at once, 10 s later and 20 s after that: about 30 s.
    let record = eventually(
        "the Stale notification delivered",
        Duration::from_secs(90),
        operator,
        async || {
            let p = policies.get("retry").await.map_err(|e| e.to_string())?;
            let notifications = p
                .status
                .as_ref()
                .map(|s| s.notifications.clone())
                .unwrap_or_default();
            notifications
                .iter()
                .find(|r| r.event == "Stale" && r.state == DeliveryState::Delivered)
                .cloned()
                .ok_or(format!("{notifications:?}"))
        },
    )
    .await;
    assert_eq!(record.attempts, 3, "{record:?}");
    assert_eq!(
        record.last_error.as_deref(),
        Some("the webhook answered HTTP 500"),
        "{record:?}"
    );
    let received = webhook.received();
    assert_eq!(received.len(), 3, "{received:?}");
    assert!(
        received.iter().all(|body| body.contains("is STALE")),
        "{received:?}"
    );

    let status = serde_json::to_string(&policies.get("retry").await.unwrap().status).unwrap();
    assert!(
        !status.contains("s3cr3t-token") && !status.contains(&webhook.url),
        "{status}"
    );
}

/// A suspended drill whose every-minute slot passes without a drill: one second of grace later it is
/// Overdue (Ready=False with the same words), and the chat hears about it once.
#[tokio::test]
async fn a_drill_that_misses_its_slot_turns_overdue_and_notifies() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "notify-drill").await;
    let webhook = ChatWebhook::failing_first(&cluster, &ns, 0, operator).await;
    support::secret(&ns, "chat", "url", &webhook.url).await;
    let drill: RestoreDrill = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "RestoreDrill", "metadata": {"name": "late"},
        "spec": {
            "schedule": "* * * * *",
            "policyRef": {"name": "hotel-db"},
            "target": {"scratch": support::node_restore::scratch_postgres()},
            "suspend": true,
            "overdueGrace": "1s",
            "notifications": {"webhook": {"urlSecretRef": {"name": "chat", "key": "url"}}}
        }
    }))
    .unwrap();
    let drills: Api<RestoreDrill> = ns.api();
    drills.create(&PostParams::default(), &drill).await.unwrap();

    let late = eventually(
        "the drill Overdue",
        Duration::from_secs(100),
        operator,
        async || {
            let d = drills.get("late").await.map_err(|e| e.to_string())?;
            let conditions = d
                .status
                .as_ref()
                .map(|s| s.conditions.0.clone())
                .unwrap_or_default();
            conditions
                .iter()
                .any(|c| c.type_ == "Overdue" && c.status == "True")
                .then_some(d.clone())
                .ok_or(format!("{conditions:?}"))
        },
    )
    .await;
    let status = late.status.unwrap();
    let overdue = status.conditions.0.iter().find(|c| c.type_ == "Overdue").unwrap();
    assert_eq!(overdue.reason, "DrillOverdue");
    assert!(
        overdue.message.contains("no drill has run") && overdue.message.contains("was due at"),
        "{overdue:?}"
    );
    let ready = status.conditions.0.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Overdue"),
        "{ready:?}"
    );

    let body = eventually(
        "the Overdue notification",
        Duration::from_secs(20),
        operator,
        async || {
            webhook
                .received()
                .into_iter()
                .find(|b| b.contains("OVERDUE"))
                .ok_or(format!("{:?}", webhook.received()))
        },
    )
    .await;
    assert!(body.contains("RestoreDrill") && body.contains("late"), "{body}");
    let delivered = eventually(
        "the delivery recorded",
        Duration::from_secs(20),
        operator,
        async || {
            let d = drills.get("late").await.map_err(|e| e.to_string())?;
            let records = d.status.map(|s| s.notifications).unwrap_or_default();
            records
                .iter()
                .any(|r| r.event == "Overdue" && r.state == DeliveryState::Delivered && r.attempts == 1)
                .then_some(())
                .ok_or(format!("{records:?}"))
        },
    )
    .await;
    let () = delivered;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(webhook.received().len(), 1, "told once: {:?}", webhook.received());
}

/// A Cutover waiting for a GO tells the chat how to give it; without one in time it ends NO-GO, and the
/// chat hears that too, each recorded as delivered.
#[tokio::test]
async fn a_cutover_announces_awaiting_approval_with_how_to_approve_and_then_no_go() {
    use lifeboat::api::cutover::CutoverPhase;
    use lifeboat::api::Cutover;
    use support::cutover::{cutover, phase, wait_for};

    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "notify-cut").await;
    support::node_web::blue_and_green(&cluster, &ns, operator).await;
    let webhook = ChatWebhook::failing_first(&cluster, &ns, 0, operator).await;
    support::secret(&ns, "chat", "url", &webhook.url).await;
    let cutovers: Api<Cutover> = ns.api();
    let spec = json!({
        "approval": {"required": true, "timeout": "5s"},
        "notifications": {"webhook": {"urlSecretRef": {"name": "chat", "key": "url"}}}
    });
    cutovers
        .create(&PostParams::default(), &cutover("release-3-0", spec))
        .await
        .unwrap();
    let ended = wait_for(
        "NO-GO",
        &cutovers,
        "release-3-0",
        Duration::from_secs(90),
        operator,
        |c| {
            phase(c) == Some(CutoverPhase::Failed)
                && c.status.as_ref().is_some_and(|s| {
                    s.notifications.len() == 2
                        && s.notifications
                            .iter()
                            .all(|r| r.state == DeliveryState::Delivered)
                })
        },
    )
    .await;
    let records = ended.status.unwrap().notifications;
    let events: Vec<&str> = records.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events, ["AwaitingApproval", "NoGo"], "{records:?}");
    // Each message once (a retried one arrives after later ones, so the order is not asserted).
    let received = webhook.received();
    assert_eq!(received.len(), 2, "{received:?} {records:?}");
    let how_to_approve = format!("kubectl lifeboat approve -n {} release-3-0", ns.name);
    assert!(
        received
            .iter()
            .any(|body| body.contains("AWAITING APPROVAL") && body.contains(&how_to_approve)),
        "{received:?}"
    );
    assert!(
        received
            .iter()
            .any(|body| body.contains("is NO-GO") && body.contains("no approval within")),
        "{received:?}"
    );
    println!("delivery records: {records:?}");
}
