//! The operator process as a rolling update treats it: SIGTERM, and another replica takes over.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use support::operator::Operator;

async fn lease(leases: &Api<Lease>) -> Option<k8s_openapi::api::coordination::v1::LeaseSpec> {
    leases
        .get_opt(&Operator::lease_name())
        .await
        .unwrap()
        .and_then(|lease| lease.spec)
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    lease(leases)
        .await
        .and_then(|spec| spec.holder_identity)
        .filter(|holder| !holder.is_empty())
}

async fn wait_for_log(operator: &Operator, text: &str) {
    let start = Instant::now();
    while !std::fs::read_to_string(&operator.log)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the operator never logged {text:?}; log:\n{}",
            operator.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_holder_other_than(leases: &Api<Lease>, previous: &str, operator: &Operator) -> String {
    let start = Instant::now();
    loop {
        if let Some(holder) = holder(leases).await.filter(|h| h != previous) {
            return holder;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no other replica took the Lease; log:\n{}",
            operator.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The latest renewTime (and the lease duration) seen while `holder` held the Lease, or once it released
/// it (a renewal just before the release would otherwise fall between two reads).
static RENEWAL: std::sync::Mutex<(Option<jiff::Timestamp>, i64)> = std::sync::Mutex::new((None, 15));

async fn latest_renewal_by(leases: Api<Lease>, holder: String) {
    loop {
        if let Some(spec) = lease(&leases).await {
            let current = spec.holder_identity.as_deref().unwrap_or_default();
            if current == holder || current.is_empty() {
                if let Some(renewed) = spec.renew_time {
                    let duration = spec.lease_duration_seconds.unwrap_or(15).into();
                    *RENEWAL.lock().unwrap() = (Some(renewed.0), duration);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two replicas on one Lease (as `replicas: 2`, or a surge rolling update, run them): when the leader
/// is stopped it releases the Lease, and the standby takes it long before the Lease would have expired.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_takes_over_as_soon_as_the_stopped_leader_releases_the_lease() {
    let cluster = support::cluster_with_crds();
    let leases: Api<Lease> = Api::namespaced(cluster.client().await.unwrap(), "lifeboat-system");
    let leader = std::sync::Arc::new(Operator::start(&cluster));
    // The controllers install their SIGTERM handling when they start, just after "leading" is logged.
    wait_for_log(&leader, "leading").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = holder(&leases).await.expect("the leader holds the Lease");
    let standby = Operator::start(&cluster);
    wait_for_log(&standby, "waiting for the leader Lease").await;

    // The leader keeps renewing while it stops (its controllers finish what they are doing first), so
    // "before the Lease would have expired" is measured from the last renewal it made, watched here.
    let last_renewal = tokio::spawn(latest_renewal_by(leases.clone(), first.clone()));
    let status = tokio::task::spawn_blocking({
        let leader = leader.clone();
        move || leader.stop_gracefully()
    })
    .await
    .unwrap();
    assert!(
        status.success(),
        "operator exited with {status}; log:\n{}",
        leader.log_tail()
    );
    assert!(
        leader.log_tail().contains("released the leader Lease"),
        "log:\n{}",
        leader.log_tail()
    );
    let second = wait_for_holder_other_than(&leases, &first, &standby).await;
    last_renewal.abort();
    let (renewed, duration) = *RENEWAL.lock().unwrap();
    let expires = renewed.expect("the leader renewed its Lease") + jiff::SignedDuration::from_secs(duration);
    let acquired = lease(&leases).await.unwrap().acquire_time.expect("acquireTime").0;
    assert!(
        acquired < expires,
        "{second} took the Lease at {acquired}, not before the stopped leader's Lease expired at {expires}; \
         standby log:\n{}",
        standby.log_tail()
    );
    wait_for_log(&standby, "leading").await;
}
