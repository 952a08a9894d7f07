//! Web things on the real node, from the test web app's image (`lifeboat.local/webapp:1`): blue and
//! green Deployments behind Service `web`, and a chat webhook stand-in. The test reaches them through
//! the API server's Service proxy, which picks one of the Service's ready endpoints, as kube-proxy does.
#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::PostParams;
use serde_json::{json, Value};

use super::installed::InstalledOperator;
use super::real_node::{pod_ready, restricted_container};
use super::wait::eventually;
use super::{Cluster, TestNamespace};

pub const WEBAPP_IMAGE: &str = "lifeboat.local/webapp:1";

/// GET `path` of Service `service` (port 80) through the API server's proxy: the body, or None when
/// no endpoint answered or the app answered an error.
pub fn through_service(cluster: &Cluster, namespace: &str, service: &str, path: &str) -> Option<String> {
    let raw = format!("/api/v1/namespaces/{namespace}/services/http:{service}:80/proxy{path}");
    let output = cluster.kubectl().args(["get", "--raw", &raw]).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// GET `path` of Service `service` (port 80) at its ClusterIP from inside the node's network namespace
/// (one the project creates): the way Pods and the operator reach it, through kube-proxy's rules. The
/// body, or None when nothing answered or the app answered an error.
pub fn through_cluster_ip(cluster: &Cluster, namespace: &str, service: &str, path: &str) -> Option<String> {
    let ip = cluster
        .kubectl()
        .args([
            "-n",
            namespace,
            "get",
            "service",
            service,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .output()
        .ok()?;
    let ip = String::from_utf8_lossy(&ip.stdout).trim().to_owned();
    if ip.is_empty() {
        return None;
    }
    let netns = localcluster::control_plane::cluster_dir().join("real-node/ns/net");
    let output = std::process::Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["--", "curl", "-fsS", "--max-time", "2"])
        .arg(format!("http://{ip}:80{path}"))
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A Service `name` on port 80 in front of the app's 8080.
async fn service(ns: &TestNamespace, name: &str, selector: Value) {
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .expect("a Service");
    ns.api::<Service>()
        .create(&PostParams::default(), &service)
        .await
        .expect("create the Service");
}

/// A chat webhook stand-in: Pod and Service `chat`; the operator posts to `url`.
pub struct ChatWebhook {
    pub url: String,
    cluster: Cluster,
    namespace: String,
}

impl ChatWebhook {
    /// Answers HTTP 500 to its first `failures` requests (recorded too), then 200.
    pub async fn failing_first(
        cluster: &Cluster,
        ns: &TestNamespace,
        failures: usize,
        operator: &InstalledOperator,
    ) -> ChatWebhook {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "chat", "labels": {"app": "chat"}},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "chat", "image": WEBAPP_IMAGE, "imagePullPolicy": "Never",
                    "env": [{"name": "VERSION", "value": "chat"},
                            {"name": "HOOK_FAILURES", "value": failures.to_string()}],
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1},
                    "securityContext": restricted_container()
                }]
            }
        }))
        .expect("a Pod");
        ns.api::<Pod>()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create the chat Pod");
        service(ns, "chat", json!({"app": "chat"})).await;
        pod_ready(ns, "chat", operator).await;
        let webhook = ChatWebhook {
            url: format!("http://chat.{}.svc/hooks/lifeboat", ns.name),
            cluster: cluster.clone(),
            namespace: ns.name.clone(),
        };
        // The Service proxy reaches the Pod once its EndpointSlice says ready.
        eventually(
            "the chat Service answers",
            Duration::from_secs(60),
            operator,
            async || {
                webhook
                    .try_received()
                    .map(|_| ())
                    .ok_or_else(|| "no answer".to_owned())
            },
        )
        .await;
        webhook
    }

    fn try_received(&self) -> Option<Vec<String>> {
        let body = through_service(&self.cluster, &self.namespace, "chat", "/hooks/received")?;
        Some(body.lines().map(str::to_owned).collect())
    }

    /// The bodies received so far.
    pub fn received(&self) -> Vec<String> {
        self.try_received().expect("the chat webhook's record")
    }
}

/// Blue (VERSION blue) serving behind Service `web`, green beside it behind `web-green`: Deployments
/// `web-blue` and `web-green` of the web app, one replica each; returns once `web` answers blue.
pub async fn blue_and_green(cluster: &Cluster, ns: &TestNamespace, operator: &InstalledOperator) {
    blue_and_green_with(cluster, ns, operator, |_| Vec::new()).await;
}

/// [`blue_and_green`], each side's Pod with more containers beside the web app (`sidecars(colour)`).
pub async fn blue_and_green_with(
    cluster: &Cluster,
    ns: &TestNamespace,
    operator: &InstalledOperator,
    sidecars: impl Fn(&str) -> Vec<Value>,
) {
    for colour in ["blue", "green"] {
        let mut containers = vec![json!({
            "name": "web", "image": WEBAPP_IMAGE, "imagePullPolicy": "Never",
            "env": [{"name": "VERSION", "value": colour}],
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1},
            "securityContext": restricted_container()
        })];
        containers.extend(sidecars(colour));
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": format!("web-{colour}")},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web", "track": colour}},
                "template": {
                    "metadata": {"labels": {"app": "web", "track": colour}},
                    "spec": {"terminationGracePeriodSeconds": 1, "containers": containers}
                }
            }
        }))
        .expect("a Deployment");
        ns.api::<Deployment>()
            .create(&PostParams::default(), &deployment)
            .await
            .expect("create the Deployment");
    }
    service(ns, "web", json!({"app": "web", "track": "blue"})).await;
    service(ns, "web-green", json!({"app": "web", "track": "green"})).await;
    // Through kube-proxy's rules, as the operator's checks will reach them.
    for (name, colour) in [("web", "blue"), ("web-green", "green")] {
        eventually(
            &format!("{name} answers {colour}"),
            Duration::from_secs(120),
            operator,
            async || {
                let answer = through_cluster_ip(cluster, &ns.name, name, "/version");
                (answer.as_deref().map(str::trim) == Some(colour))
                    .then_some(())
                    .ok_or_else(|| format!("{answer:?}"))
            },
        )
        .await;
    }
}

/// What a client of Service `web` gets from `/version` now (the side serving it), trimmed: a fresh
/// connection to its ClusterIP, through kube-proxy.
pub fn answer(cluster: &Cluster, ns: &TestNamespace) -> Option<String> {
    through_cluster_ip(cluster, &ns.name, "web", "/version").map(|body| body.trim().to_owned())
}

/// Waits (up to 5 s) until Service `web` answers `colour`: kube-proxy follows a selector change within
/// a moment, not within the same instant.
pub async fn answers_soon(cluster: &Cluster, ns: &TestNamespace, colour: &str) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if answer(cluster, ns).as_deref() == Some(colour) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Sets the fault (`ok`, `fail`, `slow`, `unhealthy`) of the app behind `service` (one replica), as
/// testing/webapp documents.
pub fn set_fault(cluster: &Cluster, ns: &TestNamespace, service: &str, mode: &str) {
    let path = format!("/fault?mode={mode}");
    let said = through_service(cluster, &ns.name, service, &path);
    assert!(said.is_some(), "{service} took fault {mode}");
}
