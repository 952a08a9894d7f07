//! The operator dies at a named point between recording an intent and carrying it out
//! (`LIFEBOAT_CRASH_AT`, exit 137 with the leader Lease held, as a killed process), and the next leader
//! finishes the Cutover with the promises intact. (Its own test binary: it owns its operator.)

// lifeboat-test: alone (crashes its operator; hack/run-tests.sh)

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::PostParams;
use kube::Api;
use lifeboat::api::cutover::{CutoverPhase, StepPhase};
use lifeboat::api::Cutover;
use serde_json::json;
use support::cutover::{cutover, ended, step_names, wait_for};
use support::installed::InstalledOperator;
use support::node_web::{answer, blue_and_green};

/// When the field manager last wrote the Service (managedFields, second precision).
async fn written_by(services: &Api<Service>, name: &str, manager: &str) -> Option<jiff::Timestamp> {
    let service = services.get(name).await.unwrap();
    service
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|entry| entry.manager.as_deref() == Some(manager))
        .filter_map(|entry| entry.time.map(|t| t.0))
        .max()
}

#[tokio::test]
async fn a_leader_killed_between_recording_and_writing_the_switch_does_not_cost_the_settle_time() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::helm(&cluster, "lifeboat-cut-crash");
    let ns = support::real_node::namespace(&cluster, "cut-crash").await;
    blue_and_green(&cluster, &ns, &operator).await;
    let health = format!("http://web.{}.svc/health", ns.name);
    let settle = Duration::from_secs(8);

    operator.crash_at("switch-write");
    let cutovers: Api<Cutover> = ns.api();
    let spec = json!({
        "trafficSwitch": {"service": {"name": "web"}, "settle": "8s"},
        "verify": [{"name": "health", "http": {"url": health}}],
    });
    cutovers
        .create(&PostParams::default(), &cutover("release-4-0", spec))
        .await
        .unwrap();

    // The leader records the switch step as running, then dies before writing the Service.
    operator.wait_for_crash_at("switch-write", Duration::from_secs(120));
    let recorded = cutovers.get("release-4-0").await.unwrap();
    assert!(
        step_names(&recorded).contains(&("switch".to_owned(), StepPhase::Running)),
        "the switch was recorded before the crash: {:?}",
        step_names(&recorded)
    );
    assert_eq!(
        answer(&cluster, &ns).as_deref(),
        Some("blue"),
        "nothing was switched"
    );

    // The next leader (after the dead one's Lease ran out) writes the switch and finishes.
    operator.stop_crashing();
    let done = wait_for(
        "Succeeded",
        &cutovers,
        "release-4-0",
        Duration::from_secs(120),
        &operator,
        ended,
    )
    .await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.phase, Some(CutoverPhase::Succeeded), "{status:#?}");
    assert_eq!(answer(&cluster, &ns).as_deref(), Some("green"));

    // verify ran only once traffic had the settle time after the Service was actually written.
    let services: Api<Service> = ns.api();
    let written = written_by(&services, "web", "lifeboat-operator")
        .await
        .expect("the operator wrote the Service");
    let verify_started = status
        .steps
        .iter()
        .find(|s| s.name == "verify/health")
        .map(|s| s.start_time.0)
        .expect("a verify step");
    let waited = verify_started.duration_since(written);
    // managedFields has second precision: allow the write's fraction of a second.
    assert!(
        waited.as_secs_f64() >= settle.as_secs_f64() - 1.0,
        "verify started {waited:?} after the Service was written (settle {settle:?}); steps: {:#?}",
        status.steps
    );
    let switch_time = status.switch_time.expect("status.switchTime").0;
    assert!(
        switch_time.duration_since(written).as_secs_f64().abs() < 2.0,
        "switchTime {switch_time} is the write at {written}"
    );
}
