//! End to end, as the hotel cutover runbook reads: blue and green Deployments of the test web app behind
//! a Service on the local cluster's real node, Lifeboat installed by its chart, and a Cutover that moves
//! the traffic — observed through the Service (the API server's Service proxy picks one of its ready
//! endpoints), as a user's curl sees it. Checks and step Jobs run in the cluster: the operator resolves
//! `<service>.<namespace>.svc` through cluster DNS.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use lifeboat::api::backup::{BackupPhase, BackupTrigger};
use lifeboat::api::cutover::{ActiveSide, CutoverPhase, StepPhase};
use lifeboat::api::{Backup, Cutover};
use serde_json::{json, Value};
use support::conditions::condition;
use support::cutover::{apply, approver, cutover, ended, phase, step_names, step_security, wait_for};
use support::installed::{InstalledOperator, LIFEBOAT_IMAGE};
use support::node_web::{answer, answers_soon, blue_and_green, set_fault};
use support::real_node::namespace;
use support::wait::OperatorLog;
use support::Cluster;

/// Service `web`'s selector now.
async fn selector(ns: &support::TestNamespace) -> Value {
    let services: Api<Service> = ns.api();
    serde_json::to_value(services.get("web").await.unwrap().spec.unwrap().selector).unwrap()
}

/// A Service `name` in front of the `track` side of the web app.
async fn track_service(ns: &support::TestNamespace, name: &str, track: &str) {
    let service = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": {"app": "web", "track": track}, "ports": [{"port": 80, "targetPort": 8080}]}
    });
    ns.api::<Service>()
        .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&service))
        .await
        .unwrap();
}

/// The chart-installed operator of this test binary, a namespace on the real node, blue and green.
async fn blue_green_on_the_node(
    prefix: &str,
) -> (Cluster, &'static InstalledOperator, support::TestNamespace) {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, prefix).await;
    blue_and_green(&cluster, &ns, operator).await;
    (cluster, operator, ns)
}

#[tokio::test]
async fn a_cutover_moves_traffic_to_green_following_the_runbook_and_logs_every_step() {
    let (cluster, operator, ns) = blue_green_on_the_node("cut-happy").await;
    support::node_restore::hotel_policy(&cluster, &ns, operator).await;
    let svc = |name: &str, path: &str| format!("http://{name}.{}.svc{path}", ns.name);

    let cutovers: Api<Cutover> = ns.api();
    let spec = json!({
        "preflight": [
            {"name": "verify-deploy", "job": {"securityContext": step_security(), "image": LIFEBOAT_IMAGE, "command": ["sh", "-c",
                "echo 'verify-deploy: 12 checks PASS'; echo 'verify-deploy: 12 checks PASS' > /dev/termination-log"]}},
            {"name": "uat", "http": {"url": svc("web-green", "/health"), "retries": 2}}
        ],
        "backup": {"policyRef": {"name": "hotel-db"}, "timeout": "2m"},
        "migration": {"job": {"securityContext": step_security(), "image": LIFEBOAT_IMAGE, "command": ["sh", "-c",
            "echo migrating; printf '{\"migrated\": 42, \"failed\": 0}' > /dev/termination-log"]}},
        "verify": [
            {"name": "health", "http": {"url": svc("web", "/health")}},
            {"name": "version", "http": {"url": svc("web", "/version"), "expectBodyContains": "green"}},
            {"name": "smoke", "job": {"securityContext": step_security(), "image": LIFEBOAT_IMAGE, "command": ["sh", "-c", "echo smoke PASS"]}}
        ],
        "stabilization": {"duration": "4s", "interval": "1s", "failureThreshold": 2,
                          "http": [{"name": "healthz", "url": svc("web", "/health")}]}
    });
    cutovers
        .create(&PostParams::default(), &cutover("release-2-4", spec))
        .await
        .unwrap();

    let done = wait_for(
        "Succeeded",
        &cutovers,
        "release-2-4",
        Duration::from_secs(120),
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

    // Traffic is on green, as a client sees it.
    assert!(answers_soon(&cluster, &ns, "green").await);
    assert_eq!(selector(&ns).await, json!({"app": "web", "track": "green"}));
    assert_eq!(
        status.previous_target.as_deref(),
        Some(r#"{"app":"web","track":"blue"}"#)
    );

    // The deployment log: every step, in runbook order, each with its times and result.
    let names: Vec<String> = status.steps.iter().map(|s| s.name.clone()).collect();
    assert_eq!(
        names,
        [
            "preflight/verify-deploy",
            "preflight/uat",
            "backup",
            "migration",
            "readiness",
            "switch",
            "verify/health",
            "verify/version",
            "verify/smoke",
            "stabilization"
        ]
    );
    for step in &status.steps {
        assert_eq!(step.phase, StepPhase::Succeeded, "{step:?}");
        assert!(
            step.completion_time.as_ref().unwrap().0 >= step.start_time.0,
            "{step:?}"
        );
        assert!(step.message.as_ref().is_some_and(|m| !m.is_empty()), "{step:?}");
    }
    let message = |name: &str| {
        status
            .steps
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .message
            .clone()
            .unwrap()
    };
    // The checks after the switch ran only once traffic had trafficSwitch.settle (default 5s) to follow.
    let step = |name: &str| status.steps.iter().find(|s| s.name == name).unwrap();
    let settled = step("verify/health")
        .start_time
        .0
        .duration_since(step("switch").start_time.0);
    assert!(
        settled >= jiff::SignedDuration::from_secs(4),
        "verify started {settled} after the switch"
    );
    assert!(
        message("preflight/verify-deploy").contains("12 checks PASS"),
        "{}",
        message("preflight/verify-deploy")
    );
    assert!(
        message("switch").contains("track=blue") && message("switch").contains("track=green"),
        "{}",
        message("switch")
    );

    // One pre-switch Backup, a real non-empty snapshot; the migration's report is kept.
    let backup_name = status.backup_ref.as_ref().unwrap().name.clone();
    let backups: Api<Backup> = ns.api();
    let backup = backups.get(&backup_name).await.unwrap();
    assert_eq!(backup.spec.trigger, BackupTrigger::PreCutover);
    let backup_status = backup.status.unwrap();
    assert_eq!(backup_status.phase, Some(BackupPhase::Succeeded));
    assert!(backup_status.size_bytes.unwrap() > 0);
    assert!(message("backup").contains(backup_status.snapshot_id.as_deref().unwrap()));
    assert_eq!(backups.list(&Default::default()).await.unwrap().items.len(), 1);
    let report = status.migration.as_ref().unwrap().report.clone().unwrap();
    assert_eq!(serde_json::from_str::<Value>(&report).unwrap()["migrated"], 42);

    // The stabilization window ran its rounds; conditions are kstatus Ready.
    assert!(
        status.stabilization.as_ref().unwrap().rounds >= 4,
        "{:?}",
        status.stabilization
    );
    assert_eq!(
        condition(&done, "Ready").map(|c| (c.0, c.1)),
        Some(("True".into(), "Succeeded".into()))
    );
    assert_eq!(condition(&done, "Reconciling"), None);
    assert_eq!(
        support::kstatus(&done),
        ("Current".into(), "Resource is Ready".into())
    );
    assert!(status.completion_time.is_some() && status.observed_generation == done.metadata.generation);

    // Blue stays running until someone retires it.
    let deployments: Api<Deployment> = ns.api();
    let blue = deployments.get("web-blue").await.unwrap();
    assert_eq!(blue.spec.replicas, Some(1));

    let metrics = operator.metrics();
    let succeeded = format!(
        "lifeboat_cutover_phase{{namespace=\"{}\",cutover=\"release-2-4\",phase=\"Succeeded\"}} 1",
        ns.name
    );
    assert!(metrics.contains(&succeeded), "{metrics}");
    // (Step durations are observed by whichever operator finished the step: only the family is certain.)
    assert!(
        metrics.contains("# TYPE lifeboat_cutover_step_duration_seconds histogram"),
        "{metrics}"
    );
}

#[tokio::test]
async fn green_failing_during_stabilization_is_rolled_back_to_blue_automatically() {
    let (cluster, operator, ns) = blue_green_on_the_node("cut-rollback").await;
    let svc = |path: &str| format!("http://web.{}.svc{path}", ns.name);

    let cutovers: Api<Cutover> = ns.api();
    let spec = json!({
        "verify": [{"name": "health", "http": {"url": svc("/health")}}],
        "stabilization": {"duration": "2m", "interval": "1s", "failureThreshold": 2,
                          "http": [{"name": "healthz", "url": svc("/health"), "timeout": "2s"}]}
    });
    cutovers
        .create(&PostParams::default(), &cutover("release-2-5", spec))
        .await
        .unwrap();
    let stabilizing = wait_for(
        "Stabilizing",
        &cutovers,
        "release-2-5",
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
    // Work under way: kstatus InProgress (the object as the wait saw it, in Stabilizing).
    assert_eq!(
        support::kstatus(&stabilizing).0,
        "InProgress",
        "{:?}",
        stabilizing.status
    );
    assert!(answers_soon(&cluster, &ns, "green").await);

    // Green's /health starts failing.
    set_fault(&cluster, &ns, "web-green", "unhealthy");
    let broke = Instant::now();
    let mut back_on_blue = None;
    while broke.elapsed() < Duration::from_secs(20) {
        if answer(&cluster, &ns).as_deref() == Some("blue") {
            back_on_blue = Some(broke.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(back_on_blue) = back_on_blue else {
        let status = cutovers.get("release-2-5").await.unwrap().status;
        panic!(
            "traffic never came back to blue\n{}\n{}",
            serde_json::to_string_pretty(&status).unwrap(),
            operator.log_tail()
        );
    };
    // Two failed rounds one second apart, then the switch: well under the 20 s above.
    assert!(
        back_on_blue < Duration::from_secs(6),
        "traffic back on blue after {back_on_blue:?}"
    );

    let done = wait_for(
        "RolledBack",
        &cutovers,
        "release-2-5",
        Duration::from_secs(60),
        operator,
        |c| {
            matches!(
                phase(c),
                Some(CutoverPhase::RolledBack | CutoverPhase::Failed | CutoverPhase::Succeeded)
            )
        },
    )
    .await;
    let status = done.status.clone().unwrap();
    assert_eq!(
        status.phase,
        Some(CutoverPhase::RolledBack),
        "{}",
        serde_json::to_string_pretty(&status).unwrap()
    );
    assert_eq!(status.active, Some(ActiveSide::From));
    assert_eq!(selector(&ns).await, json!({"app": "web", "track": "blue"}));
    let rollback = status.rollback.clone().unwrap();
    assert_eq!(rollback.failed_check.as_deref(), Some("healthz"));
    assert!(
        rollback.reason.contains("healthz") && rollback.reason.contains("500"),
        "{}",
        rollback.reason
    );
    assert!(rollback.traffic_restored_time.is_some() && rollback.completion_time.is_some());
    assert!(!rollback.database_restored);
    let steps = step_names(&done);
    assert_eq!(
        steps[steps.len() - 3..],
        [
            ("stabilization".to_owned(), StepPhase::Failed),
            ("rollback/switch-back".to_owned(), StepPhase::Succeeded),
            ("rollback/verify-from".to_owned(), StepPhase::Succeeded),
        ]
    );
    assert_eq!(
        condition(&done, "Stalled").map(|c| (c.0, c.1)),
        Some(("True".into(), "RolledBack".into()))
    );
    assert_eq!(condition(&done, "Ready").map(|c| c.0), Some("False".into()));
    // Flux's health check fails at once, naming the rollback, instead of waiting for a timeout.
    assert_eq!(support::kstatus(&done).0, "Failed", "{:?}", done.status);
    assert!(operator
        .metrics()
        .contains("lifeboat_cutover_traffic_restore_seconds_count"));
}

#[tokio::test]
async fn a_failing_preflight_is_no_go_and_never_touches_the_service() {
    let (cluster, operator, ns) = blue_green_on_the_node("cut-nogo").await;
    let services: Api<Service> = ns.api();
    let version_before = services.get("web").await.unwrap().metadata.resource_version;

    let cutovers: Api<Cutover> = ns.api();
    let spec = json!({
        "preflight": [
            {"name": "verify-deploy", "job": {"securityContext": step_security(), "image": LIFEBOAT_IMAGE, "command": ["sh", "-c",
                "echo 'check 1 PASS'; echo 'check 2 FAIL: DEBUG is on' >&2; exit 3"]}},
            {"name": "uat", "http": {"url": format!("http://web-green.{}.svc/health", ns.name)}}
        ],
        "verify": [{"name": "health", "http": {"url": format!("http://web.{}.svc/health", ns.name)}}]
    });
    cutovers
        .create(&PostParams::default(), &cutover("release-bad", spec))
        .await
        .unwrap();
    let done = wait_for(
        "Failed",
        &cutovers,
        "release-bad",
        Duration::from_secs(60),
        operator,
        |c| {
            matches!(
                phase(c),
                Some(CutoverPhase::Failed | CutoverPhase::Succeeded | CutoverPhase::RolledBack)
            )
        },
    )
    .await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.phase, Some(CutoverPhase::Failed));
    assert_eq!(
        step_names(&done),
        [("preflight/verify-deploy".to_owned(), StepPhase::Failed)]
    );
    let message = status.steps[0].message.clone().unwrap();
    assert!(
        message.contains("DEBUG is on"),
        "the Job's own words explain the NO-GO: {message}"
    );
    assert!(status.previous_target.is_none() && status.rollback.is_none());
    assert_eq!(status.active, Some(ActiveSide::From));
    let stalled = done
        .status
        .as_ref()
        .unwrap()
        .conditions
        .0
        .iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap()
        .clone();
    assert!(
        stalled.message.contains("NO-GO") && stalled.message.contains("not touched"),
        "{}",
        stalled.message
    );

    // The Service was never written.
    assert_eq!(
        services.get("web").await.unwrap().metadata.resource_version,
        version_before
    );
    assert_eq!(answer(&cluster, &ns).as_deref(), Some("blue"));
}

#[tokio::test]
async fn approval_gates_the_switch_until_someone_says_go() {
    let (cluster, operator, ns) = blue_green_on_the_node("cut-approve").await;

    let cutovers: Api<Cutover> = ns.api();
    let spec = json!({
        "approval": {"required": true, "timeout": "10m"},
        "verify": [{"name": "health", "http": {"url": format!("http://web.{}.svc/health", ns.name)}}]
    });
    cutovers
        .create(&PostParams::default(), &cutover("release-2-6", spec.clone()))
        .await
        .unwrap();
    let waiting = wait_for(
        "AwaitingApproval",
        &cutovers,
        "release-2-6",
        Duration::from_secs(60),
        operator,
        |c| phase(c) == Some(CutoverPhase::AwaitingApproval),
    )
    .await;
    // Waiting for a person is not work under way: kstatus (Flux `wait: true`) reads it as Current, so a
    // Kustomization does not time out on a change board; Ready stays unset, so `kubectl wait
    // --for=condition=Ready` still waits for the end.
    assert_eq!(
        condition(&waiting, "AwaitingApproval").map(|c| (c.0, c.1)),
        Some(("True".into(), "AwaitingApproval".into()))
    );
    assert_eq!(condition(&waiting, "Ready"), None);
    assert_eq!(support::kstatus(&waiting).0, "Current", "{:?}", waiting.status);
    // It stays there, traffic untouched.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = cutovers.get("release-2-6").await.unwrap();
    assert_eq!(phase(&still), Some(CutoverPhase::AwaitingApproval));
    assert_eq!(answer(&cluster, &ns).as_deref(), Some("blue"));

    // GO, by annotation (what `kubectl annotate` or the plugin does).
    let go = json!({"metadata": {"annotations": {"lifeboat.dev/approved-by": "alice", "lifeboat.dev/approval-reason": "CAB-1234 signed off"}}});
    let alice = approver(&cluster, &ns, "alice", &[]).await;
    let approved_at = Instant::now();
    alice
        .patch("release-2-6", &PatchParams::default(), &Patch::Merge(&go))
        .await
        .unwrap();
    let mut switched = None;
    while approved_at.elapsed() < Duration::from_secs(10) {
        if answer(&cluster, &ns).as_deref() == Some("green") {
            switched = Some(approved_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let switched = switched.unwrap_or_else(|| panic!("no switch after approval\n{}", operator.log_tail()));
    assert!(
        switched < Duration::from_secs(3),
        "approval to switch took {switched:?}"
    );
    let done = wait_for(
        "Succeeded",
        &cutovers,
        "release-2-6",
        Duration::from_secs(30),
        operator,
        |c| phase(c) == Some(CutoverPhase::Succeeded),
    )
    .await;
    let approval = done.status.as_ref().unwrap().approval.clone().unwrap();
    assert_eq!(approval.approved_by, "alice");
    assert_eq!(approval.reason.as_deref(), Some("CAB-1234 signed off"));

    // Without a GO in time, the Cutover ends as NO-GO with nothing switched.
    let mut late = spec;
    late["approval"]["timeout"] = json!("2s");
    late["to"] = json!({"selector": {"app": "web", "track": "green"}, "deployment": "web-green"});
    cutovers
        .create(&PostParams::default(), &cutover("release-2-7", late))
        .await
        .unwrap();
    let expired = wait_for(
        "NO-GO",
        &cutovers,
        "release-2-7",
        Duration::from_secs(30),
        operator,
        |c| phase(c) == Some(CutoverPhase::Failed),
    )
    .await;
    let steps = step_names(&expired);
    assert_eq!(steps.last().unwrap(), &("approval".to_owned(), StepPhase::Failed));
    assert!(expired.status.unwrap().previous_target.is_none());
}

/// The Django plan's sign-off: DevOps, Dev and QA each approve before production is switched. Who may
/// sign for which group is the admission policy's part (tests/approval_policy_e2e.rs); here the operator
/// counts the sign-offs.
#[tokio::test]
async fn a_switch_waits_for_a_sign_off_from_each_required_group() {
    let (cluster, operator, ns) = blue_green_on_the_node("cut-signoff").await;
    let cutovers: Api<Cutover> = ns.api();
    let spec = json!({
        "approval": {"required": true, "requiredGroups": ["devops", "dev", "qa"]},
        "verify": [{"name": "health", "http": {"url": format!("http://web.{}.svc/health", ns.name)}}]
    });
    cutovers
        .create(&PostParams::default(), &cutover("release-3-0", spec))
        .await
        .unwrap();
    // Each person applies only their own sign-off (a map-list keyed by `by`, merged by server-side apply).
    let sign = |by: &str, group: &str| {
        json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "Cutover", "metadata": {"name": "release-3-0"},
               "spec": {"approval": {"approvals": [{"by": by, "group": group}]}}})
    };
    let waiting_for = |cutover: &Cutover| {
        let steps = &cutover.status.as_ref().unwrap().steps;
        steps
            .last()
            .and_then(|step| step.message.clone())
            .unwrap_or_default()
    };
    wait_for(
        "AwaitingApproval",
        &cutovers,
        "release-3-0",
        Duration::from_secs(60),
        operator,
        |c| phase(c) == Some(CutoverPhase::AwaitingApproval),
    )
    .await;
    for (by, group) in [("alice", "devops"), ("bob", "dev")] {
        approver(&cluster, &ns, by, &[group])
            .await
            .patch(
                "release-3-0",
                &PatchParams::apply(by),
                &Patch::Apply(sign(by, group)),
            )
            .await
            .unwrap();
    }
    // Two of three groups: still waiting, saying for whom, traffic untouched.
    let partial = wait_for(
        "the wait naming qa",
        &cutovers,
        "release-3-0",
        Duration::from_secs(30),
        operator,
        |c| waiting_for(c).contains("(a sign-off for qa)"),
    )
    .await;
    assert_eq!(
        phase(&partial),
        Some(CutoverPhase::AwaitingApproval),
        "{}",
        waiting_for(&partial)
    );
    assert_eq!(answer(&cluster, &ns).as_deref(), Some("blue"));

    approver(&cluster, &ns, "carol", &["qa"])
        .await
        .patch(
            "release-3-0",
            &PatchParams::apply("carol"),
            &Patch::Apply(sign("carol", "qa")),
        )
        .await
        .unwrap();
    let done = wait_for(
        "Succeeded",
        &cutovers,
        "release-3-0",
        Duration::from_secs(60),
        operator,
        |c| phase(c) == Some(CutoverPhase::Succeeded),
    )
    .await;
    assert_eq!(answer(&cluster, &ns).as_deref(), Some("green"));
    let approval = done.status.unwrap().approval.unwrap();
    assert_eq!(approval.approved_by, "alice (devops), bob (dev), carol (qa)");
}

#[tokio::test]
async fn a_dry_run_walks_the_checks_and_changes_nothing() {
    let (_cluster, operator, ns) = blue_green_on_the_node("cut-dry").await;
    let services: Api<Service> = ns.api();
    let version_before = services.get("web").await.unwrap().metadata.resource_version;

    let cutovers: Api<Cutover> = ns.api();
    let spec = json!({
        "dryRun": true,
        "preflight": [{"name": "uat", "http": {"url": format!("http://web-green.{}.svc/health", ns.name)}}],
        "backup": {"policyRef": {"name": "hotel-db"}},
        "migration": {"job": {"securityContext": step_security(), "image": LIFEBOAT_IMAGE, "command": ["sh", "-c", "exit 1"]}},
        "approval": {"required": true},
        "verify": [{"name": "health", "http": {"url": format!("http://web.{}.svc/health", ns.name)}}],
        "stabilization": {"duration": "1h"}
    });
    cutovers
        .create(&PostParams::default(), &cutover("plan-2-4", spec))
        .await
        .unwrap();
    let done = wait_for(
        "Succeeded",
        &cutovers,
        "plan-2-4",
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
    assert_eq!(
        step_names(&done),
        [
            ("preflight/uat".to_owned(), StepPhase::Succeeded),
            ("backup".to_owned(), StepPhase::Skipped),
            ("migration".to_owned(), StepPhase::Skipped),
            ("readiness".to_owned(), StepPhase::Succeeded),
            ("approval".to_owned(), StepPhase::Skipped),
            ("switch".to_owned(), StepPhase::Skipped),
            ("verify/health".to_owned(), StepPhase::Skipped),
            ("stabilization".to_owned(), StepPhase::Skipped),
        ]
    );
    let plan = status
        .steps
        .iter()
        .find(|s| s.name == "switch")
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(
        plan.contains("would change Service web selector {app=web,track=blue} → {app=web,track=green}"),
        "{plan}"
    );
    assert!(status.previous_target.is_none() && status.backup_ref.is_none() && status.migration.is_none());
    assert_eq!(
        services.get("web").await.unwrap().metadata.resource_version,
        version_before
    );
    let backups: Api<Backup> = ns.api();
    assert!(backups.list(&Default::default()).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn abort_before_the_switch_stops_and_after_it_rolls_back() {
    let (cluster, operator, ns) = blue_green_on_the_node("cut-abort").await;
    let cutovers: Api<Cutover> = ns.api();
    let abort = json!({"spec": {"abort": true}});

    // Waiting for a GO: abort ends it, traffic untouched.
    cutovers
        .create(
            &PostParams::default(),
            &cutover("waits", json!({"approval": {"required": true}})),
        )
        .await
        .unwrap();
    wait_for(
        "AwaitingApproval",
        &cutovers,
        "waits",
        Duration::from_secs(60),
        operator,
        |c| phase(c) == Some(CutoverPhase::AwaitingApproval),
    )
    .await;
    cutovers
        .patch("waits", &PatchParams::default(), &Patch::Merge(&abort))
        .await
        .unwrap();
    let stopped = wait_for(
        "Failed",
        &cutovers,
        "waits",
        Duration::from_secs(20),
        operator,
        |c| phase(c) == Some(CutoverPhase::Failed),
    )
    .await;
    assert!(stopped.status.as_ref().unwrap().previous_target.is_none());
    assert_eq!(answer(&cluster, &ns).as_deref(), Some("blue"));

    // Watching green: abort switches back to blue.
    let spec = json!({"stabilization": {"duration": "10m", "interval": "1s",
                      "http": [{"name": "healthz", "url": format!("http://web.{}.svc/health", ns.name)}]}});
    cutovers
        .create(&PostParams::default(), &cutover("watches", spec))
        .await
        .unwrap();
    wait_for(
        "Stabilizing",
        &cutovers,
        "watches",
        Duration::from_secs(60),
        operator,
        |c| phase(c) == Some(CutoverPhase::Stabilizing),
    )
    .await;
    assert!(answers_soon(&cluster, &ns, "green").await);
    cutovers
        .patch("watches", &PatchParams::default(), &Patch::Merge(&abort))
        .await
        .unwrap();
    let rolled = wait_for(
        "RolledBack",
        &cutovers,
        "watches",
        Duration::from_secs(20),
        operator,
        |c| phase(c) == Some(CutoverPhase::RolledBack),
    )
    .await;
    assert!(rolled
        .status
        .as_ref()
        .unwrap()
        .rollback
        .as_ref()
        .unwrap()
        .reason
        .contains("spec.abort"));
    assert!(answers_soon(&cluster, &ns, "blue").await);
}

#[tokio::test]
async fn an_ingress_backend_is_switched_and_restored_on_rollback() {
    use k8s_openapi::api::networking::v1::Ingress;
    let (_cluster, operator, ns) = blue_green_on_the_node("cut-ingress").await;
    track_service(&ns, "web-blue", "blue").await;
    let ingresses: Api<Ingress> = ns.api();
    let rule = |host: &str| {
        json!({"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web-blue", "port": {"number": 80}}}}]}})
    };
    apply(
        &ingresses,
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
                             "spec": {"rules": [rule("hotel.example"), rule("legacy.example")]}}),
    )
    .await;
    let backends = || async {
        let ingress = ingresses.get("web").await.unwrap();
        ingress
            .spec
            .unwrap()
            .rules
            .unwrap()
            .iter()
            .map(|r| {
                r.http.as_ref().unwrap().paths[0]
                    .backend
                    .service
                    .as_ref()
                    .unwrap()
                    .name
                    .clone()
            })
            .collect::<Vec<_>>()
    };
    let spec = |verify: Value| {
        json!({
            "trafficSwitch": {"ingress": {"name": "web", "host": "hotel.example"}},
            "from": {"selector": {"app": "web", "track": "blue"}, "deployment": "web-blue", "service": "web-blue"},
            "to": {"selector": {"app": "web", "track": "green"}, "deployment": "web-green", "service": "web-green"},
            "verify": verify,
        })
    };
    let cutovers: Api<Cutover> = ns.api();

    // A failing check after the switch puts the recorded rules back.
    let failing = json!([{"name": "version", "http": {"url": format!("http://web-green.{}.svc/version", ns.name), "expectBodyContains": "3.0"}}]);
    cutovers
        .create(&PostParams::default(), &cutover("try-1", spec(failing)))
        .await
        .unwrap();
    let rolled = wait_for(
        "RolledBack",
        &cutovers,
        "try-1",
        Duration::from_secs(60),
        operator,
        |c| {
            matches!(
                phase(c),
                Some(CutoverPhase::RolledBack | CutoverPhase::Failed | CutoverPhase::Succeeded)
            )
        },
    )
    .await;
    assert_eq!(
        phase(&rolled),
        Some(CutoverPhase::RolledBack),
        "{:?}",
        rolled.status
    );
    let switch = rolled
        .status
        .as_ref()
        .unwrap()
        .steps
        .iter()
        .find(|s| s.name == "switch")
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(switch.contains("Ingress web backends"), "{switch}");
    assert_eq!(backends().await, ["web-blue", "web-blue"]);

    // A healthy one moves only the hotel.example rule to green.
    let healthy = json!([{"name": "version", "http": {"url": format!("http://web-green.{}.svc/version", ns.name), "expectBodyContains": "green"}}]);
    cutovers
        .create(&PostParams::default(), &cutover("try-2", spec(healthy)))
        .await
        .unwrap();
    wait_for(
        "Succeeded",
        &cutovers,
        "try-2",
        Duration::from_secs(60),
        operator,
        |c| phase(c) == Some(CutoverPhase::Succeeded),
    )
    .await;
    assert_eq!(backends().await, ["web-green", "web-blue"]);
}

#[tokio::test]
async fn a_migration_pod_security_refuses_fails_the_cutover_at_once_saying_what_to_set() {
    // The test namespace enforces Pod Security `restricted`; the migration does not say it runs as
    // non-root, so the Job controller is refused every Pod it tries to create.
    let (cluster, operator, ns) = blue_green_on_the_node("cut-psa").await;
    let cutovers: Api<Cutover> = ns.api();
    let spec = json!({
        "migration": {"job": {"image": LIFEBOAT_IMAGE, "command": ["sh", "-c", "echo migrated"]}}
    });
    cutovers
        .create(&PostParams::default(), &cutover("release-6-0", spec))
        .await
        .unwrap();
    // The refusal never relents, so it ends the step at once rather than leaving a Job without Pods.
    let done = wait_for(
        "ended",
        &cutovers,
        "release-6-0",
        Duration::from_secs(60),
        operator,
        ended,
    )
    .await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.phase, Some(CutoverPhase::Failed), "{status:#?}");
    let migration = status
        .steps
        .iter()
        .find(|s| s.name == "migration")
        .expect("a migration step");
    let message = migration.message.clone().unwrap_or_default();
    assert!(
        message.contains("PodSecurity") && message.contains("runAsNonRoot"),
        "the step says what Pod Security wants: {message}"
    );
    assert_eq!(
        answer(&cluster, &ns).as_deref(),
        Some("blue"),
        "nothing was switched"
    );
}

#[tokio::test]
async fn a_service_deleted_mid_stabilization_ends_the_cutover_failed_saying_so() {
    let (_cluster, operator, ns) = blue_green_on_the_node("cut-svc-gone").await;
    let cutovers: Api<Cutover> = ns.api();
    let spec = json!({
        "stabilization": {"duration": "5m", "interval": "1s", "failureThreshold": 2,
                          "http": [{"name": "healthz", "url": format!("http://web.{}.svc/health", ns.name),
                                    "timeout": "2s"}]},
        "rollback": {"automatic": true}
    });
    cutovers
        .create(&PostParams::default(), &cutover("release-7-0", spec))
        .await
        .unwrap();
    wait_for(
        "Stabilizing",
        &cutovers,
        "release-7-0",
        Duration::from_secs(60),
        operator,
        |c| phase(c) == Some(CutoverPhase::Stabilizing),
    )
    .await;

    // Someone deletes the Service the Cutover switched (a GitOps prune, a mistaken kubectl delete).
    let services: Api<Service> = ns.api();
    services.delete("web", &Default::default()).await.unwrap();
    let done = wait_for(
        "ended",
        &cutovers,
        "release-7-0",
        Duration::from_secs(90),
        operator,
        ended,
    )
    .await;
    let status = done.status.clone().unwrap();
    // The checks fail, the rollback cannot switch back a Service that is gone: the end says exactly that.
    assert_eq!(status.phase, Some(CutoverPhase::Failed), "{status:#?}");
    let said = serde_json::to_string(&status).unwrap();
    assert!(
        said.contains("Service web selector no longer exists, so no traffic reaches either side")
            && said.contains(r#"recreate it with {\"app\":\"web\",\"track\":\"blue\"}"#),
        "the status names the missing Service: {said}"
    );
    assert!(
        services.get_opt("web").await.unwrap().is_none(),
        "Lifeboat did not recreate it"
    );
}

#[tokio::test]
async fn green_scaled_to_zero_while_awaiting_approval_is_never_switched_to() {
    let (cluster, operator, ns) = blue_green_on_the_node("cut-zero").await;
    let cutovers: Api<Cutover> = ns.api();
    let spec = json!({
        "approval": {"required": true, "timeout": "10m"},
        "verify": [{"name": "health", "http": {"url": format!("http://web.{}.svc/health", ns.name)}}],
        "readinessTimeout": "5s"
    });
    cutovers
        .create(&PostParams::default(), &cutover("release-8-0", spec))
        .await
        .unwrap();
    wait_for(
        "AwaitingApproval",
        &cutovers,
        "release-8-0",
        Duration::from_secs(60),
        operator,
        |c| phase(c) == Some(CutoverPhase::AwaitingApproval),
    )
    .await;

    // While the change board deliberates, someone scales green to zero; then the GO comes.
    let deployments: Api<Deployment> = ns.api();
    deployments
        .patch(
            "web-green",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 0}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let go = json!({"metadata": {"annotations": {"lifeboat.dev/approved-by": "alice"}}});
    approver(&cluster, &ns, "alice", &[])
        .await
        .patch("release-8-0", &PatchParams::default(), &Patch::Merge(&go))
        .await
        .unwrap();
    let done = wait_for(
        "ended",
        &cutovers,
        "release-8-0",
        Duration::from_secs(60),
        operator,
        ended,
    )
    .await;
    let status = done.status.clone().unwrap();
    // Traffic must never have gone to a side with no Pods.
    let switched = status
        .steps
        .iter()
        .any(|s| s.name == "switch" && s.phase == StepPhase::Succeeded);
    assert!(!switched, "switched to a green with no Pods: {status:#?}");
    assert_eq!(status.phase, Some(CutoverPhase::Failed), "{status:#?}");
    let switch = status
        .steps
        .iter()
        .find(|s| s.name == "switch")
        .expect("a switch step");
    let message = switch.message.clone().unwrap_or_default();
    assert!(
        message.contains("no longer ready, nothing was switched") && message.contains("web-green"),
        "{message}"
    );
    assert_eq!(answer(&cluster, &ns).as_deref(), Some("blue"));
}
