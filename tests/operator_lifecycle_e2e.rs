//! The operator process as a rolling update treats it: SIGTERM, then a new replica.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use support::operator::Operator;

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(&Operator::lease_name())
        .await
        .unwrap()
        .and_then(|lease| lease.spec)
        .and_then(|spec| spec.holder_identity)
        .filter(|holder| !holder.is_empty())
}

async fn wait_for_holder(leases: &Api<Lease>, operator: &Operator) -> String {
    let start = Instant::now();
    loop {
        if let Some(holder) = holder(leases).await {
            return holder;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no operator took the Lease; log:\n{}",
            operator.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_gracefully_stopped_operator_releases_its_lease_for_the_next_replica() {
    let cluster = support::cluster_with_crds();
    let leases: Api<Lease> = Api::namespaced(cluster.client().await.unwrap(), "lifeboat-system");
    let operator = Operator::start(&cluster);
    let first = wait_for_holder(&leases, &operator).await;
    // The controllers install their SIGTERM handling when they start, just after "leading" is logged.
    let start = Instant::now();
    while !std::fs::read_to_string(&operator.log)
        .unwrap_or_default()
        .contains("leading")
    {
        assert!(start.elapsed() < Duration::from_secs(60), "never led");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let status = operator.stop_gracefully();
    assert!(
        status.success(),
        "operator exited with {status}; log:\n{}",
        operator.log_tail()
    );
    // Without the release the Lease would keep naming the stopped replica until it expired (15 s), and
    // nothing would reconcile in between.
    assert_eq!(
        holder(&leases).await,
        None,
        "the stopped operator still holds the Lease; log:\n{}",
        operator.log_tail()
    );
    assert!(operator.log_tail().contains("released the leader Lease"));

    operator.start_again();
    let second = wait_for_holder(&leases, &operator).await;
    assert_ne!(second, first, "a new replica has a new identity");
}
