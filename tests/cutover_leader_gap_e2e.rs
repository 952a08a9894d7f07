//! The stabilization window across a leader gap: the operator is killed during stabilization and the
//! next leader waits for the dead one's Lease to run out (15 s). Time without rounds is not watched
//! time, so the window lasts until it has observed all its rounds; green failing after the window's
//! wall-clock end, inside the time the gap owes, still rolls back. (Its own test binary: it owns its
//! operator.)

// lifeboat-test: alone (kills its operator; hack/run-tests.sh)

mod support;

use std::time::Duration;

use kube::api::PostParams;
use kube::Api;
use lifeboat::api::cutover::CutoverPhase;
use lifeboat::api::Cutover;
use serde_json::json;
use support::cutover::{cutover, ended, phase, wait_for};
use support::installed::InstalledOperator;
use support::node_web::{answer, blue_and_green, set_fault};

#[tokio::test]
async fn a_leader_gap_during_stabilization_extends_the_window_and_a_later_failure_rolls_back() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::helm(&cluster, "lifeboat-cut-gap");
    let ns = support::real_node::namespace(&cluster, "cut-gap").await;
    blue_and_green(&cluster, &ns, &operator).await;
    let health = format!("http://web.{}.svc/health", ns.name);
    let window = Duration::from_secs(20);

    let cutovers: Api<Cutover> = ns.api();
    let spec = json!({
        "trafficSwitch": {"service": {"name": "web"}},
        "stabilization": {"duration": "20s", "interval": "1s", "failureThreshold": 2,
                          "http": [{"name": "healthz", "url": health, "timeout": "2s"}]},
        "rollback": {"automatic": true}
    });
    cutovers
        .create(&PostParams::default(), &cutover("release-5-1", spec))
        .await
        .unwrap();
    let watching = wait_for(
        "Stabilizing",
        &cutovers,
        "release-5-1",
        Duration::from_secs(60),
        &operator,
        |c| {
            phase(c) == Some(CutoverPhase::Stabilizing)
                && c.status
                    .as_ref()
                    .and_then(|s| s.stabilization.as_ref())
                    .is_some_and(|s| s.rounds >= 2)
        },
    )
    .await;
    let status = watching.status.unwrap();
    let window_started = status
        .steps
        .iter()
        .rev()
        .find(|s| s.name == "stabilization")
        .map(|s| s.start_time.0)
        .expect("a stabilization step");
    assert_eq!(
        status.stabilization.as_ref().unwrap().expected_rounds,
        21,
        "20s at 1s intervals: a round at the start and one per second"
    );

    // The leader dies; the next one waits out the Lease (15 s) before it watches again.
    operator.kill();

    // Past the window's wall-clock end: the rounds the gap missed are still owed.
    let wall_end = window_started + jiff::SignedDuration::try_from(window + Duration::from_secs(1)).unwrap();
    let until_then = jiff::Timestamp::now().duration_until(wall_end);
    if until_then.is_positive() {
        tokio::time::sleep(until_then.unsigned_abs()).await;
    }
    let after_wall_end = cutovers.get("release-5-1").await.unwrap();
    let record = after_wall_end
        .status
        .as_ref()
        .and_then(|s| s.stabilization.clone())
        .unwrap_or_default();
    assert_eq!(
        phase(&after_wall_end),
        Some(CutoverPhase::Stabilizing),
        "21 s after it started, a 20 s window with a 15 s gap in it is still watching \
         ({} of {} rounds observed)",
        record.rounds,
        record.expected_rounds
    );
    assert!(
        record.rounds < record.expected_rounds,
        "the gap cost rounds: {record:?}"
    );

    // Green breaks in the time the gap owes: it is seen and rolled back.
    set_fault(&cluster, &ns, "web-green", "unhealthy");
    let done = wait_for(
        "ended",
        &cutovers,
        "release-5-1",
        Duration::from_secs(60),
        &operator,
        ended,
    )
    .await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.phase, Some(CutoverPhase::RolledBack), "{status:#?}");
    assert_eq!(answer(&cluster, &ns).as_deref(), Some("blue"));
    let failure = status.stabilization.unwrap().last_failure.unwrap_or_default();
    assert!(
        failure.contains("healthz"),
        "the rollback names the check: {failure}"
    );
}
