//! The operator as a rolling update or a drained node treats it, on the real node: two replicas from the
//! chart, the leader's Pod deleted (the kubelet sends SIGTERM), and the standby leads long before the
//! Lease would have expired, because the stopping leader releases it. (Its own test binary: it installs
//! the chart.)

// lifeboat-test: alone (installs two replicas and stops the leader; hack/run-tests.sh)

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;

use support::installed::InstalledOperator;
use support::{cluster_with_crds, run_ok};

const LEASE: &str = "lifeboat-operator";

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|lease| lease.spec)
        .and_then(|spec| spec.holder_identity)
        .filter(|holder| !holder.is_empty())
}

#[tokio::test]
async fn deleting_the_leader_pod_hands_the_lease_to_the_standby_before_it_would_expire() {
    let cluster = cluster_with_crds();
    let operator = InstalledOperator::helm_with(&cluster, "lifeboat-ha", json!({"replicas": 2}));
    // What the chart's NOTES tell a user to run: its test Pod probes /readyz and /metrics through the
    // Service and cluster DNS, in the operator's image.
    let tested = operator.helm_test();
    let probed = format!(
        "GET http://lifeboat-metrics.{}.svc:8080/metrics: 200",
        operator.namespace
    );
    assert!(
        tested.contains("Phase:          Succeeded") && tested.contains(&probed),
        "{tested}"
    );
    let leases: Api<Lease> = Api::namespaced(cluster.client().await.unwrap(), &operator.namespace);

    let start = Instant::now();
    let first = loop {
        if let Some(holder) = holder(&leases).await {
            break holder;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no replica took the Lease"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let pods = run_ok(
        "kubectl get pods",
        cluster.kubectl().args([
            "-n",
            &operator.namespace,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=lifeboat,app.kubernetes.io/component=operator",
            "-o",
            "name",
        ]),
    );
    assert_eq!(pods.lines().count(), 2, "two replicas: {pods}");
    // The holder is `<pod>_<process>`: `kubectl get lease` tells which replica leads.
    let leader_pod = pods
        .lines()
        .map(|pod| pod.trim_start_matches("pod/"))
        .find(|pod| first.starts_with(&format!("{pod}_")))
        .unwrap_or_else(|| panic!("the Lease holder {first} names one of the replicas: {pods}"))
        .to_owned();

    // The leader's last words, followed until its container ends: a stopping leader says it released
    // the Lease (the Pod and its log are gone once it has been deleted).
    let mut following = cluster
        .kubectl()
        .args(["-n", &operator.namespace, "logs", "-f", &leader_pod])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    let mut leader_log = following.stdout.take().expect("piped stdout");
    let last_words = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut leader_log, &mut text);
        text
    });

    let held = leases.get(LEASE).await.unwrap().spec.unwrap();
    let renewed = held.renew_time.expect("renewTime").0;
    let expires = renewed + jiff::SignedDuration::from_secs(held.lease_duration_seconds.unwrap_or(15).into());
    run_ok(
        "kubectl delete pod",
        cluster.kubectl().args([
            "-n",
            &operator.namespace,
            "delete",
            "pod",
            &leader_pod,
            "--wait=false",
        ]),
    );

    let start = Instant::now();
    let second = loop {
        if let Some(holder) = holder(&leases).await.filter(|h| *h != first) {
            break holder;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no other replica took the Lease after the leader's Pod was deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let acquired = leases
        .get(LEASE)
        .await
        .unwrap()
        .spec
        .unwrap()
        .acquire_time
        .expect("acquireTime")
        .0;
    assert!(
        acquired < expires,
        "{second} took the Lease at {acquired}, not before the deleted leader's Lease expired at {expires}"
    );
    let start = Instant::now();
    while !last_words.is_finished() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = following.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = following.wait();
    let said = last_words.join().unwrap_or_default();
    assert!(
        said.contains("released the leader Lease"),
        "the stopped leader did not say it released the Lease:\n{said}"
    );
}
