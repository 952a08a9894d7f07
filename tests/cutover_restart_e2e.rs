//! The Cutover's memory is its status: the chart-installed operator is killed (SIGKILL to its container,
//! as a node failure or the OOM killer deals it) during the migration, while awaiting approval and while
//! stabilizing, and each time the restarted one finishes the Cutover without repeating what must not be
//! repeated — one pre-switch Backup, one migration run. (Its own test binary: it owns its operator.)

// lifeboat-test: alone (kills its operator; hack/run-tests.sh)

mod support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use lifeboat::api::cutover::{ActiveSide, CutoverPhase, StepPhase};
use lifeboat::api::{Backup, Cutover};
use serde_json::json;
use support::cutover::{approver, cutover, ended, phase, step_names, step_security, wait_for};
use support::installed::InstalledOperator;
use support::node_web::{answer, answers_soon, blue_and_green};
use support::real_node::busybox_image;

#[tokio::test]
async fn killing_the_operator_mid_cutover_resumes_without_repeating_a_step() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = support::real_node::namespace(&cluster, "cut-restart").await;
    blue_and_green(&cluster, &ns, operator).await;
    support::node_restore::hotel_policy(&cluster, &ns, operator).await;
    let health = format!("http://web.{}.svc/health", ns.name);

    let cutovers: Api<Cutover> = ns.api();
    let spec = json!({
        "backup": {"policyRef": {"name": "hotel-db"}},
        // Long enough to be killed in the middle of.
        "migration": {"job": {"securityContext": step_security(), "image": busybox_image(), "command": ["sh", "-c",
            "sleep 4; printf '{\"migrated\": 7}' > /dev/termination-log"]}},
        "approval": {"required": true},
        "verify": [{"name": "health", "http": {"url": health.clone()}}],
        "stabilization": {"duration": "8s", "interval": "1s", "http": [{"name": "healthz", "url": health}]}
    });
    cutovers
        .create(&PostParams::default(), &cutover("release-3-0", spec))
        .await
        .unwrap();

    wait_for(
        "Migrating",
        &cutovers,
        "release-3-0",
        Duration::from_secs(90),
        operator,
        |c| phase(c) == Some(CutoverPhase::Migrating),
    )
    .await;
    operator.kill();
    wait_for(
        "AwaitingApproval",
        &cutovers,
        "release-3-0",
        Duration::from_secs(60),
        operator,
        |c| phase(c) == Some(CutoverPhase::AwaitingApproval),
    )
    .await;
    operator.kill();
    // The new leader must have reconciled this Cutover before "still waiting" means anything: each
    // reconcile ends by exporting the phase it left the Cutover in, and a fresh process has no series.
    let reconciled_waiting = format!(
        "lifeboat_cutover_phase{{namespace=\"{}\",cutover=\"release-3-0\",phase=\"AwaitingApproval\"}} 1",
        ns.name
    );
    support::wait::eventually(
        "the restarted operator reconciles the waiting Cutover",
        Duration::from_secs(60),
        operator,
        async || match operator.metrics() {
            metrics if metrics.contains(&reconciled_waiting) => Ok(()),
            metrics => Err(metrics
                .lines()
                .filter(|l| l.contains("release-3-0") && l.ends_with(" 1"))
                .collect::<Vec<_>>()
                .join("; ")),
        },
    )
    .await;
    let still = cutovers.get("release-3-0").await.unwrap();
    assert_eq!(
        phase(&still),
        Some(CutoverPhase::AwaitingApproval),
        "a restart is no GO"
    );
    assert_eq!(answer(&cluster, &ns).as_deref(), Some("blue"));

    let go = json!({"spec": {"approval": {"required": true, "approvedBy": "bob", "reason": "window open"}}});
    approver(&cluster, &ns, "bob", &[])
        .await
        .patch("release-3-0", &PatchParams::default(), &Patch::Merge(&go))
        .await
        .unwrap();
    wait_for(
        "Stabilizing",
        &cutovers,
        "release-3-0",
        Duration::from_secs(60),
        operator,
        |c| {
            phase(c) == Some(CutoverPhase::Stabilizing)
                && c.status
                    .as_ref()
                    .unwrap()
                    .stabilization
                    .as_ref()
                    .is_some_and(|s| s.rounds >= 2)
        },
    )
    .await;
    operator.kill();
    let done = wait_for(
        "Succeeded",
        &cutovers,
        "release-3-0",
        Duration::from_secs(60),
        operator,
        ended,
    )
    .await;
    let status = done.status.clone().unwrap();
    assert_eq!(
        status.phase,
        Some(CutoverPhase::Succeeded),
        "{}",
        serde_json::to_string_pretty(&status).unwrap()
    );
    assert_eq!(status.active, Some(ActiveSide::To));
    assert!(answers_soon(&cluster, &ns, "green").await);

    // Every step once, in order, each succeeded.
    assert_eq!(
        step_names(&done),
        [
            "backup",
            "migration",
            "readiness",
            "approval",
            "switch",
            "verify/health",
            "stabilization"
        ]
        .map(|name| (name.to_owned(), StepPhase::Succeeded))
    );
    // One Backup, one migration Job that ran once; its report kept across the restart.
    let backups: Api<Backup> = ns.api();
    assert_eq!(backups.list(&ListParams::default()).await.unwrap().items.len(), 1);
    let jobs: Api<Job> = ns.api();
    let migrations = jobs
        .list(&ListParams::default().labels("app.kubernetes.io/component=migration"))
        .await
        .unwrap()
        .items;
    assert_eq!(migrations.len(), 1);
    let pods: Api<Pod> = ns.api();
    let runs = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=migration"))
        .await
        .unwrap()
        .items;
    assert_eq!(runs.len(), 1, "the migration ran once");
    assert!(status
        .migration
        .unwrap()
        .report
        .unwrap()
        .contains("\"migrated\": 7"));
    assert_eq!(status.approval.unwrap().approved_by, "bob");
    // The window ran from the step's first start (wall clock), and the rounds before the kill count.
    let record = status.stabilization.unwrap();
    assert!(record.rounds >= 3, "{record:?}");
    let window = status.steps.iter().find(|s| s.name == "stabilization").unwrap();
    let lasted = window
        .completion_time
        .as_ref()
        .unwrap()
        .0
        .duration_since(window.start_time.0);
    assert!(lasted.as_secs() >= 8, "{window:?}");
}
