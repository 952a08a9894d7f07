//! The real node `lifeboat-node` (kubelet, containerd, runc, CNI bridge, kube-proxy, CoreDNS; started by
//! `hack/cluster-up.sh` through `hack/node-up.sh`): what a user or operator would check on it. The network
//! guard that keeps every Pod and Service address on this machine, the host's kernel settings left as they
//! were, the node Ready at the right version, Pods running under the restricted Pod Security level with
//! Service DNS, ClusterIP traffic, logs and exec, and how long a Pod takes from create to Running.
//!
//! Runs as root (the cluster scripts need it for the real node). Every address dialled here is either
//! loopback or inside the node's own network namespace.

// lifeboat-test: alone (measures Pod start times on an idle node; hack/run-tests.sh)

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use support::real_node::busybox_image;

const NODE: &str = "lifeboat-node";
const TAINT_KEY: &str = "lifeboat.dev/real-node";

fn node_dir() -> PathBuf {
    localcluster::control_plane::cluster_dir().join("real-node")
}

/// The local cluster, with the real node running (cluster-up.sh starts it when run as root, unless
/// LIFEBOAT_REAL_NODE=0).
fn cluster_with_real_node() -> support::Cluster {
    let cluster = support::cluster_with_crds();
    let netns = node_dir().join("ns/net");
    let bound = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .contains(&format!(" {} ", netns.display()));
    assert!(
        bound,
        "the real node is not running ({} is not a bound network namespace): hack/cluster-up.sh starts it \
         when run as root, unless LIFEBOAT_REAL_NODE=0",
        netns.display()
    );
    cluster
}

fn versions_env(key: &str) -> String {
    let text = std::fs::read_to_string(support::repo_path("hack/versions.env")).expect("hack/versions.env");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing from hack/versions.env"))
        .trim()
        .to_owned()
}

fn run(what: &str, program: &str, args: &[&str]) -> String {
    support::run_ok(what, Command::new(program).args(args))
}

/// `ip route get ADDRESS` in the host namespace: the route a packet to ADDRESS would take, or the refusal.
fn host_route_to(address: &str) -> String {
    let output = Command::new("ip")
        .args(["route", "get", address])
        .output()
        .expect("ip route get");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Check 1: No packet to a Pod or Service address can leave the machine: blackhole routes for both
/// ranges in the host namespace, pod and node addresses routed only over the node's veth, no default
/// route inside the node's network namespace.
#[test]
fn pod_and_service_addresses_cannot_leave_the_machine() {
    let _cluster = cluster_with_real_node();
    let routes = run(
        "ip route show table all",
        "ip",
        &["route", "show", "table", "all"],
    );
    for range in ["198.18.0.0/15", "10.96.0.0/16"] {
        assert!(
            routes.lines().any(|line| {
                let line = line.trim();
                (line.starts_with("blackhole ") || line.starts_with("unreachable "))
                    && line.split_whitespace().nth(1) == Some(range)
            }),
            "no blackhole/unreachable guard route for {range} in the host namespace:\n{routes}"
        );
    }
    // Addresses in the ranges, on and off the node's subnets: each is either refused by the guard or routed
    // over the node's veth, never over another interface.
    for address in [
        "198.18.0.99",
        "198.18.1.1",
        "198.18.7.7",
        "198.19.255.1",
        "10.96.0.1",
        "10.96.0.10",
    ] {
        let route = host_route_to(address);
        let guarded = route.contains("blackhole")
            || route.contains("unreachable")
            || route.contains("Invalid argument")
            || route.contains("No route to host");
        assert!(
            guarded || route.contains("dev lbn-host"),
            "a packet to {address} would leave through: {route}"
        );
    }
    assert!(
        host_route_to("10.96.0.1").contains("blackhole")
            || host_route_to("10.96.0.1").contains("Invalid argument"),
        "Service addresses must hit the guard in the host namespace: {}",
        host_route_to("10.96.0.1")
    );

    let netns = node_dir().join("ns/net");
    let netns_arg = format!("--net={}", netns.display());
    let inside = run(
        "routes inside the node's network namespace",
        "nsenter",
        &[&netns_arg, "--", "ip", "route", "show", "table", "all"],
    );
    assert!(
        inside.contains("198.18.1.0/30"),
        "the node's netns has no route to the veth:\n{inside}"
    );
    assert!(
        !inside.lines().any(|line| line.starts_with("default")),
        "the node's network namespace has a default route:\n{inside}"
    );
}

/// Check 2: The kubelet wants vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1 (and a few
/// more): the host keeps the values it had before the node started.
#[test]
fn the_host_kernel_settings_are_unchanged() {
    let _cluster = cluster_with_real_node();
    let path = node_dir().join("host-sysctls.before");
    let before = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let mut checked = 0;
    for line in before.lines().filter(|line| !line.trim().is_empty()) {
        let (key, value) = line.split_once('=').expect("key=value");
        let now = std::fs::read_to_string(format!("/proc/sys/{key}")).expect("read sysctl");
        assert_eq!(
            now.trim(),
            value.trim(),
            "host {key} changed since the node started"
        );
        checked += 1;
    }
    for key in ["vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"] {
        assert!(
            before.contains(&format!("{key}=")),
            "{key} not recorded in {}",
            path.display()
        );
    }
    assert!(checked >= 3);
}

/// Check 3: The node is Ready and its kubelet is the version the cluster is built from.
#[test]
fn the_real_node_is_ready_at_the_pinned_version() {
    let cluster = cluster_with_real_node();
    let wanted = versions_env("KUBERNETES_VERSION");
    let jsonpath = concat!(
        r#"{.status.nodeInfo.kubeletVersion} {.status.conditions[?(@.type=="Ready")].status} "#,
        r#"{.status.nodeInfo.containerRuntimeVersion}"#
    );
    let out = support::run_ok(
        "kubectl get node",
        cluster
            .kubectl()
            .args(["get", "node", NODE, "-o", &format!("jsonpath={jsonpath}")]),
    );
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        fields.first().copied(),
        Some(wanted.as_str()),
        "kubelet version: {out}"
    );
    assert_eq!(
        fields.get(1).copied(),
        Some("True"),
        "node {NODE} not Ready: {out}"
    );
    let containerd = versions_env("CONTAINERD_VERSION");
    let runtime = fields.get(2).copied().unwrap_or_default();
    assert!(
        runtime
            .trim_start_matches("containerd://")
            .trim_start_matches('v')
            == containerd.trim_start_matches('v'),
        "container runtime {runtime:?}, wanted containerd {containerd}: {out}"
    );
    if let Ok(seconds) = std::fs::read_to_string(node_dir().join("node-ready-seconds")) {
        println!(
            "node {NODE} became Ready {}s after the kubelet started",
            seconds.trim()
        );
    }
}

/// A Pod for the real node that passes the restricted Pod Security level.
fn real_node_pod(name: &str, labels: serde_json::Value, command: &str, port: Option<u16>) -> Pod {
    let mut container = serde_json::json!({
        "name": "main",
        "image": busybox_image(),
        "imagePullPolicy": "Never",
        "command": ["/bin/sh", "-c", command],
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"}
        }
    });
    if let Some(port) = port {
        container["ports"] = serde_json::json!([{"containerPort": port, "name": "http"}]);
        container["readinessProbe"] = serde_json::json!({"tcpSocket": {"port": port}, "periodSeconds": 1});
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": NODE},
            "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container]
        }
    }))
    .expect("a Pod")
}

async fn restricted_namespace(cluster: &support::Cluster, prefix: &str) -> support::TestNamespace {
    let ns = cluster.namespace(prefix).await.expect("namespace");
    support::run_ok(
        "label the namespace restricted",
        cluster.kubectl().args([
            "label",
            "namespace",
            &ns.name,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        ]),
    );
    ns
}

fn kubectl_in(cluster: &support::Cluster, ns: &str, args: &[&str]) -> std::process::Output {
    cluster
        .kubectl()
        .arg("-n")
        .arg(ns)
        .args(args)
        .output()
        .expect("kubectl")
}

/// Check 4: Under the restricted level: a server Pod behind a Service and a client Pod run on the real
/// node; from the client the Service's DNS name resolves to its ClusterIP and the ClusterIP answers;
/// `kubectl logs` and `kubectl exec` work.
#[tokio::test]
async fn pods_get_service_dns_clusterip_traffic_logs_and_exec() {
    let cluster = cluster_with_real_node();
    let ns = restricted_namespace(&cluster, "real-node").await;
    let pods = ns.api::<Pod>();

    // The restricted level is enforced: a root Pod is refused.
    let mut root_pod = real_node_pod("root", serde_json::json!({}), "sleep 1", None);
    root_pod.spec.as_mut().unwrap().containers[0].security_context = None;
    let refused = pods.create(&PostParams::default(), &root_pod).await;
    assert!(
        refused.is_err(),
        "a Pod violating the restricted level was admitted"
    );

    let server = real_node_pod(
        "server",
        serde_json::json!({"app": "web"}),
        concat!(
            "echo lifeboat-server-starting; mkdir -p /tmp/www; ",
            "echo \"hello from $(hostname)\" >/tmp/www/index.html; exec httpd -f -p 8080 -h /tmp/www"
        ),
        Some(8080),
    );
    let client = real_node_pod("client", serde_json::json!({}), "exec sleep 3600", None);
    pods.create(&PostParams::default(), &server)
        .await
        .expect("create server");
    pods.create(&PostParams::default(), &client)
        .await
        .expect("create client");
    let service: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    let service = ns
        .api::<k8s_openapi::api::core::v1::Service>()
        .create(&PostParams::default(), &service)
        .await
        .expect("create Service");
    let cluster_ip = service.spec.and_then(|s| s.cluster_ip).expect("a ClusterIP");

    let wait = kubectl_in(
        &cluster,
        &ns.name,
        &[
            "wait",
            "--for=condition=Ready",
            "pod/server",
            "pod/client",
            "--timeout=90s",
        ],
    );
    if let Err(message) = support::ensure_success("Pods Ready on the real node", &wait) {
        let describe = kubectl_in(&cluster, &ns.name, &["describe", "pods"]);
        panic!("{message}\n{}", String::from_utf8_lossy(&describe.stdout));
    }
    for name in ["server", "client"] {
        let pod = pods.get(name).await.unwrap();
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some(NODE), "{name} runs elsewhere");
        let ip = pod.status.and_then(|s| s.pod_ip).unwrap_or_default();
        assert!(
            ip.starts_with("198.18.0."),
            "{name} has pod IP {ip:?}, not one of the node's bridge"
        );
    }

    // logs
    let logs = kubectl_in(&cluster, &ns.name, &["logs", "server"]);
    support::ensure_success("kubectl logs", &logs).unwrap();
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("lifeboat-server-starting"),
        "logs: {logs:?}"
    );

    // exec, and who the container runs as
    let id = kubectl_in(&cluster, &ns.name, &["exec", "client", "--", "id", "-u"]);
    support::ensure_success("kubectl exec", &id).unwrap();
    assert_eq!(String::from_utf8_lossy(&id.stdout).trim(), "65532");

    // DNS: the Service's name resolves to its ClusterIP (retried: endpoints may lag the Pods a moment).
    let fqdn = format!("web.{}.svc.cluster.local", ns.name);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last;
    loop {
        let out = kubectl_in(&cluster, &ns.name, &["exec", "client", "--", "nslookup", &fqdn]);
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && last.contains(&cluster_ip) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{fqdn} did not resolve to {cluster_ip}:\n{last}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The short name through the Pod's search path, too.
    let short = kubectl_in(&cluster, &ns.name, &["exec", "client", "--", "nslookup", "web"]);
    let short_out = String::from_utf8_lossy(&short.stdout);
    assert!(
        short_out.contains(&cluster_ip),
        "short name `web` did not resolve: {short_out}\n{last}"
    );

    // The ClusterIP answers, by name and by address (kube-proxy in the node's namespace). Debian's static
    // busybox wget crashes with its own -T timeout: `timeout` bounds it instead.
    for url in [format!("http://{fqdn}/"), format!("http://{cluster_ip}/")] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = kubectl_in(
                &cluster,
                &ns.name,
                &[
                    "exec", "client", "--", "timeout", "5", "wget", "-q", "-O", "-", &url,
                ],
            );
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && body.contains("hello from server") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{url} did not answer from the client Pod: {body}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // Names outside the cluster are refused by the cluster DNS itself (CoreDNS forwards nowhere).
    let outside = kubectl_in(
        &cluster,
        &ns.name,
        &["exec", "client", "--", "nslookup", "example.com."],
    );
    let answer = String::from_utf8_lossy(&outside.stdout);
    assert!(
        !outside.status.success() && answer.contains("10.96.0.10") && answer.contains("REFUSED"),
        "example.com was not refused by the cluster DNS: {answer}"
    );
}

/// Check 5: Pod create -> Running on the real node, one Pod at a time, 20 times: p50 and p99 printed,
/// not asserted.
#[tokio::test]
async fn pod_create_to_running_times() {
    let cluster = cluster_with_real_node();
    let ns = restricted_namespace(&cluster, "real-node-timing").await;
    let pods = ns.api::<Pod>();
    let mut times = Vec::new();
    for i in 0..20 {
        let name = format!("p{i}");
        let pod = real_node_pod(&name, serde_json::json!({}), "exec sleep 3600", None);
        let started = Instant::now();
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create Pod");
        loop {
            let phase = pods
                .get(&name)
                .await
                .ok()
                .and_then(|p| p.status)
                .and_then(|s| s.phase);
            if phase.as_deref() == Some("Running") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{name} not Running after 60 s (phase {phase:?})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        times.push(started.elapsed());
    }
    times.sort();
    let pick = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "real node: Pod create -> Running over {} Pods: p50 {:.2}s, p99 {:.2}s (min {:.2}s, max {:.2}s)",
        times.len(),
        pick(0.5).as_secs_f64(),
        pick(0.99).as_secs_f64(),
        times[0].as_secs_f64(),
        times[times.len() - 1].as_secs_f64()
    );
    for i in 0..20 {
        let _ = pods.delete(&format!("p{i}"), &DeleteParams::default()).await;
    }
}
