//! One Pod bound to this node, from scheduling to removal: address, volumes, init containers in order,
//! containers side by side, status, and on deletion the kill and the final removal of the object.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use super::container::{self, Ended, PodShared, Slot};
use super::env::PodFacts;
use super::status::{pod_status, ContainerRuntime, PodRuntime, State};
use super::volumes::{self, VolumeContext};
use super::NodeContext;

/// Directory of a Pod's files (logs, termination messages, volumes): `<state>/pods/<ns>_<name>_<uid>`.
pub fn pod_dir(state_dir: &std::path::Path, pod: &Pod) -> PathBuf {
    state_dir.join("pods").join(format!(
        "{}_{}_{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    ))
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn is_deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Run the Pod. `updates` carries the object as the API server changes it; it closes when the object is
/// gone.
pub async fn run_pod(node: Arc<NodeContext>, mut updates: watch::Receiver<Pod>) {
    let pod = updates.borrow().clone();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(node.client.clone(), &ns);

    if is_terminal(&pod) {
        // Finished before this node (re)started: nothing runs again, but deletion still needs us.
        wait_for_deletion(&mut updates).await;
        if !node.is_shutting_down() {
            remove_object(&api, &pod).await;
        }
        return;
    }

    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    let previous_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    let pod_ip = if host_network {
        Some(node.host_ip.clone())
    } else {
        node.pod_ips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allocate(previous_ip)
            .map(|ip| ip.to_string())
    };
    let restart_policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
    let runtime = Arc::new(Mutex::new(PodRuntime {
        pod_ip: pod_ip.clone(),
        host_ip: node.host_ip.clone(),
        start_time: Timestamp::now(),
        restart_policy: restart_policy.clone(),
        init: spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                let sidecar = c.restart_policy.as_deref() == Some("Always");
                ContainerRuntime::new(
                    &c.name,
                    c.image.as_deref().unwrap_or(""),
                    sidecar,
                    "PodInitializing",
                )
            })
            .collect(),
        containers: spec
            .containers
            .iter()
            .map(|c| {
                let reason = if spec.init_containers.as_ref().is_some_and(|i| !i.is_empty()) {
                    "PodInitializing"
                } else {
                    "ContainerCreating"
                };
                ContainerRuntime::new(&c.name, c.image.as_deref().unwrap_or(""), false, reason)
            })
            .collect(),
        readiness_gates: spec
            .readiness_gates
            .iter()
            .flatten()
            .map(|g| g.condition_type.clone())
            .collect(),
        terminated: false,
    }));
    carry_restart_counts(
        &mut runtime.lock().unwrap_or_else(|e| e.into_inner()),
        pod.status.as_ref(),
    );
    let changed = Arc::new(Notify::new());
    let writer = Arc::new(StatusWriter {
        node: node.clone(),
        api: api.clone(),
        name: name.clone(),
        runtime: runtime.clone(),
        pod: updates.clone(),
        last: tokio::sync::Mutex::new(None),
    });
    let background_writer = {
        let writer = writer.clone();
        let changed = changed.clone();
        tokio::spawn(async move {
            loop {
                changed.notified().await;
                // Let a burst of changes (all containers starting) land in one write.
                tokio::time::sleep(Duration::from_millis(5)).await;
                writer.write().await;
            }
        })
    };
    changed.notify_one();

    let Some(pod_ip) = pod_ip else {
        tracing::error!("no free Pod address left");
        finish(&node, &writer, &runtime, &mut updates, None, &api).await;
        background_writer.abort();
        return;
    };
    let dir = pod_dir(&node.state_dir, &pod);
    let facts = PodFacts {
        pod_ip: pod_ip.clone(),
        host_ip: node.host_ip.clone(),
    };
    let _ = std::fs::create_dir_all(dir.join("work"));

    // Volumes first; a missing Secret keeps the Pod in ContainerCreating until it appears.
    let volumes = loop {
        let ctx = VolumeContext {
            client: &node.client,
            pod: &pod,
            pod_dir: &dir,
            state_dir: &node.state_dir,
            facts: &facts,
        };
        match volumes::materialize(&ctx).await {
            Ok(v) => break v,
            Err(e) => {
                tracing::info!(error = %e, "volumes not ready");
                let message = e.to_string();
                {
                    let mut guard = runtime.lock().unwrap_or_else(|e| e.into_inner());
                    let rt = &mut *guard;
                    for c in rt.containers.iter_mut().chain(rt.init.iter_mut()) {
                        let reason = match &c.state {
                            State::Waiting { reason, .. } => reason.clone(),
                            _ => "ContainerCreating".into(),
                        };
                        c.state = State::Waiting {
                            reason,
                            message: Some(message.clone()),
                        };
                    }
                }
                changed.notify_one();
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = deletion(&mut updates) => {
                        finish(&node, &writer, &runtime, &mut updates, Some(&pod_ip), &api).await;
                        background_writer.abort();
                        return;
                    }
                }
            }
        }
    };

    let token_refresher = {
        let (node, pod, dir, facts) = (node.clone(), pod.clone(), dir.clone(), facts.clone());
        tokio::spawn(async move {
            loop {
                // Tokens last an hour by default; the kubelet renews at 80% of their life.
                tokio::time::sleep(Duration::from_secs(40 * 60)).await;
                let ctx = VolumeContext {
                    client: &node.client,
                    pod: &pod,
                    pod_dir: &dir,
                    state_dir: &node.state_dir,
                    facts: &facts,
                };
                if let Err(e) = volumes::refresh_tokens(&ctx).await {
                    tracing::warn!(error = %e, "refreshing ServiceAccount tokens failed");
                }
            }
        })
    };
    let shared = Arc::new(PodShared {
        node: node.clone(),
        pod: pod.clone(),
        pod_dir: dir,
        volumes,
        facts,
        runtime: runtime.clone(),
        changed: changed.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(None::<Duration>);
    let mut sidecars = JoinSet::new();
    let mut mains = JoinSet::new();

    // Init containers one after the other; restartable ones (sidecars) keep running beside the rest.
    let init_policy = if restart_policy == "Never" {
        "Never"
    } else {
        "OnFailure"
    };
    let mut init_ok = true;
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        let policy = if sidecar { "Always" } else { init_policy }.to_string();
        let task = container::supervise(shared.clone(), c.clone(), Slot::Init(i), policy, stop_rx.clone());
        if sidecar {
            sidecars.spawn(task);
            continue;
        }
        let ended = tokio::select! {
            ended = task => ended,
            _ = deletion(&mut updates) => Ended::Stopped,
        };
        if ended != (Ended::Finished { exit_code: 0 }) {
            init_ok = false;
            break;
        }
    }
    if init_ok && !is_deleting(&updates.borrow()) {
        for (i, c) in spec.containers.iter().enumerate() {
            mains.spawn(container::supervise(
                shared.clone(),
                c.clone(),
                Slot::Main(i),
                restart_policy.clone(),
                stop_rx.clone(),
            ));
        }
        // Until every container is done for good, or the Pod is deleted.
        loop {
            tokio::select! {
                joined = mains.join_next() => if joined.is_none() { break },
                _ = deletion(&mut updates) => break,
            }
        }
    }

    // Sidecars stop when the main containers are done; everything stops on deletion.
    let grace = container::grace_period(&updates.borrow());
    let _ = stop_tx.send(Some(grace));
    while mains.join_next().await.is_some() {}
    while sidecars.join_next().await.is_some() {}
    token_refresher.abort();
    finish(
        &node,
        &writer,
        &runtime,
        &mut updates,
        (!host_network).then_some(&pod_ip),
        &api,
    )
    .await;
    background_writer.abort();
}

/// A Pod that ran under an earlier run of the node: its containers are restarted, and counted so.
fn carry_restart_counts(rt: &mut PodRuntime, previous: Option<&PodStatus>) {
    let Some(previous) = previous else { return };
    let statuses = previous
        .container_statuses
        .iter()
        .flatten()
        .chain(previous.init_container_statuses.iter().flatten());
    for status in statuses {
        let ran = status.container_id.is_some();
        for c in rt
            .containers
            .iter_mut()
            .chain(rt.init.iter_mut())
            .filter(|c| c.name == status.name)
        {
            c.restart_count = status.restart_count + i32::from(ran);
        }
    }
}

/// The Pod will not run again: record its terminal status, give back its address, and once it is being
/// deleted remove the object.
async fn finish(
    node: &NodeContext,
    writer: &StatusWriter,
    runtime: &Mutex<PodRuntime>,
    updates: &mut watch::Receiver<Pod>,
    pod_ip: Option<&String>,
    api: &Api<Pod>,
) {
    if node.is_shutting_down() {
        // The watch ended because the node is stopping, not because the Pod is gone.
        return std::future::pending().await;
    }
    runtime.lock().unwrap_or_else(|e| e.into_inner()).terminated = true;
    writer.write().await;
    if let Some(ip) = pod_ip.and_then(|ip| ip.parse::<Ipv4Addr>().ok()) {
        node.pod_ips.lock().unwrap_or_else(|e| e.into_inner()).release(ip);
    }
    let pod = updates.borrow().clone();
    wait_for_deletion(updates).await;
    remove_object(api, &pod).await;
}

/// Resolves when the Pod is marked for deletion or gone.
async fn deletion(updates: &mut watch::Receiver<Pod>) {
    // An error means the channel closed: the object is already gone.
    let _ = updates.wait_for(is_deleting).await;
}

async fn wait_for_deletion(updates: &mut watch::Receiver<Pod>) {
    deletion(updates).await
}

/// Delete with grace 0 once the processes are gone, as the kubelet does (finalizers such as the Job
/// controller's may keep the object a little longer).
async fn remove_object(api: &Api<Pod>, pod: &Pod) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    for attempt in 0..5 {
        match api.delete(&name, &params).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
            Err(e) => {
                tracing::warn!(pod = %name, error = %e, attempt, "deleting the Pod failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Writes the Pod's status when it differs from what was last written.
struct StatusWriter {
    node: Arc<NodeContext>,
    api: Api<Pod>,
    name: String,
    runtime: Arc<Mutex<PodRuntime>>,
    pod: watch::Receiver<Pod>,
    last: tokio::sync::Mutex<Option<PodStatus>>,
}

impl StatusWriter {
    async fn write(&self) {
        if self.node.is_shutting_down() {
            return;
        }
        let mut last = self.last.lock().await;
        let rt = self.runtime.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut previous = self.pod.borrow().status.clone().unwrap_or_default();
        if let Some(mine) = last.as_ref() {
            // Our own last write may not be in the watch yet: trust it for what we manage.
            let mut conditions: Vec<_> = previous
                .conditions
                .unwrap_or_default()
                .into_iter()
                .filter(|c| !mine.conditions.iter().flatten().any(|m| m.type_ == c.type_))
                .collect();
            conditions.extend(mine.conditions.clone().unwrap_or_default());
            previous.conditions = Some(conditions);
            if matches!(mine.phase.as_deref(), Some("Succeeded" | "Failed")) {
                previous.phase = mine.phase.clone();
            }
        }
        let status = pod_status(&rt, Some(&previous), Timestamp::now());
        if last.as_ref() == Some(&status) {
            return;
        }
        let patch = serde_json::json!({ "status": status });
        for attempt in 0..3 {
            match self
                .api
                .patch_status(&self.name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => {
                    *last = Some(status);
                    return;
                }
                Err(kube::Error::Api(e)) if e.code == 404 => return,
                Err(e) => {
                    tracing::warn!(pod = %self.name, error = %e, attempt, "writing Pod status failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
