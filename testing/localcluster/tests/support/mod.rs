//! Helpers shared by the local node's tests: objects from YAML, polling, a tiny HTTP client, and a look
//! at the machine's processes.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use k8s_openapi::NamespaceResourceScope;
use kube::api::PostParams;
use kube::Api;
use localcluster::TestNamespace;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Create an object of the test's namespace from YAML.
pub async fn create<K>(ns: &TestNamespace, yaml: &str) -> K
where
    K: kube::Resource<Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let object: K = serde_norway::from_str(yaml).expect("test YAML parses");
    ns.api::<K>()
        .create(&PostParams::default(), &object)
        .await
        .expect("object is created")
}

/// Poll `check` every 50ms until it returns `Some`, or panic after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn pod(ns: &TestNamespace, name: &str) -> Option<Pod> {
    ns.api::<Pod>().get_opt(name).await.ok().flatten()
}

pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The terminated state of the Pod's container `container`, once it has one.
pub fn terminated(pod: &Pod, container: &str) -> Option<ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)?
        .state
        .as_ref()?
        .terminated
        .clone()
}

/// Wait for a Pod to finish (Succeeded or Failed) and return it.
pub async fn finished_pod(ns: &TestNamespace, name: &str) -> Pod {
    eventually(
        Duration::from_secs(30),
        &format!("Pod {name} to finish"),
        || async {
            pod(ns, name)
                .await
                .filter(|p| matches!(phase(p), "Succeeded" | "Failed"))
        },
    )
    .await
}

/// GET `url` (plain http://ip:port/path) with a fresh connection; returns status code and body.
pub async fn http_get(url: &str) -> std::io::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(authority))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut response))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Pids of the processes on this machine started for the Pod `pod` (the node sets HOSTNAME to the Pod's
/// name, and marks its processes with LIFEBOAT_LOCALNODE_STATE_DIR).
pub fn processes_of_pod(pod: &str) -> Vec<i32> {
    let hostname = format!("HOSTNAME={pod}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        let ours = vars
            .iter()
            .any(|v| v.starts_with(b"LIFEBOAT_LOCALNODE_STATE_DIR="));
        // Zombies have an empty environ; they are gone for our purposes once reaped by the node.
        if ours && vars.contains(&hostname.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

/// Names of the Pods of a Job.
pub async fn job_pods(ns: &TestNamespace, job: &str) -> Vec<Pod> {
    let lp = kube::api::ListParams::default().labels(&format!("job-name={job}"));
    ns.api::<Pod>()
        .list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

pub fn api<K>(ns: &TestNamespace) -> Api<K>
where
    K: kube::Resource<Scope = NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    ns.api::<K>()
}
