//! Measurements of the local node, run on demand:
//! `cargo test -p localcluster --test local_node_measurements -- --ignored --nocapture --test-threads 1`

mod support;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::apps::v1::Deployment;
use localcluster::control_plane::cluster_dir;
use localcluster::ensure;
use support::*;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement: about a minute"]
async fn time_from_kubectl_apply_of_a_job_to_its_process_starting() {
    let cluster = ensure().expect("the local cluster starts");
    let ns = cluster.namespace("measure-start").await.unwrap();
    let mut latencies = Vec::new();
    for i in 0..20 {
        let yaml = format!(
            r#"
apiVersion: batch/v1
kind: Job
metadata: {{name: start-{i}, namespace: {ns}}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - {{name: main, image: ignored, command: [sh, -c, 'date +%s%N > /dev/termination-log']}}
"#,
            ns = ns.name
        );
        let applied_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let mut kubectl = cluster
            .kubectl()
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        kubectl.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
        assert!(kubectl.wait().unwrap().success());
        let job = format!("start-{i}");
        let pod = eventually(Duration::from_secs(30), "the Job's Pod to finish", || async {
            job_pods(&ns, &job)
                .await
                .into_iter()
                .find(|p| phase(p) == "Succeeded")
        })
        .await;
        let started: u128 = terminated(&pod, "main")
            .unwrap()
            .message
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        latencies.push(Duration::from_nanos((started - applied_at) as u64));
    }
    latencies.sort();
    println!(
        "kubectl apply of a Job → process start, 20 runs: median {:?}, min {:?}, max {:?}",
        latencies[10], latencies[0], latencies[19]
    );
}

fn node_rss_kib() -> u64 {
    let pid = std::fs::read_to_string(cluster_dir().join("localnode.pid")).expect("localnode.pid");
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).expect("the node runs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement: starts 50 Pods"]
async fn resident_memory_of_the_node_with_50_pods() {
    let cluster = ensure().expect("the local cluster starts");
    let ns = cluster.namespace("measure-rss").await.unwrap();
    let before = node_rss_kib();
    create::<Deployment>(
        &ns,
        r#"
metadata: {name: fifty}
spec:
  replicas: 50
  selector: {matchLabels: {app: fifty}}
  template:
    metadata: {labels: {app: fifty}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: ignored
        command: [sleep, "3600"]
        readinessProbe: {exec: {command: ["true"]}, periodSeconds: 2}
"#,
    )
    .await;
    let deployments = api::<Deployment>(&ns);
    eventually(Duration::from_secs(180), "50 ready replicas", || async {
        let d = deployments.get("fifty").await.ok()?;
        (d.status?.ready_replicas == Some(50)).then_some(())
    })
    .await;
    // Let a few probe rounds and status writes happen.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let with_pods = node_rss_kib();
    println!(
        "local node RSS: {} MiB idle, {} MiB with 50 running Pods",
        before / 1024,
        with_pods / 1024
    );
}
