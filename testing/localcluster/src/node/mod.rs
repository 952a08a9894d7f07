//! The local node: a small kubelet that runs the Pods bound to it as local processes.
//!
//! It registers a Node (Ready, with capacity, kept alive by a Lease), watches the Pods bound to it and
//! runs each in its own task ([`pod::run_pod`]), provisions PersistentVolumes for claims
//! ([`provisioner`]), and runs the Service proxy ([`crate::proxy`]). It talks to the API server with
//! the admin kubeconfig it is given (a test cluster; a real kubelet would use a node identity).
//!
//! Files under the state dir (`$LIFEBOAT_CLUSTER_DIR/node`):
//! - `pods/<ns>_<pod>_<uid>/<container>.log`: stdout and stderr of the container, across restarts;
//! - `pods/<ns>_<pod>_<uid>/volumes/<volume>`: emptyDir, Secret, ConfigMap, … volumes;
//! - `pvcs/<ns>/<claim>`: PersistentVolumeClaims;
//! - `services.json`: the Service proxy's table (see [`crate::services`]);
//! - `hosts/<ns>`: the `/etc/hosts` a Pod of that namespace sees (Service names → proxy addresses).

pub mod container;
pub mod env;
pub mod ipam;
pub mod logs;
pub mod pod;
pub mod probe;
pub mod process;
pub mod provisioner;
pub mod registration;
pub mod status;
pub mod volumes;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::Instrument;

use self::ipam::Allocator;
use self::process::Registry;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("building a client from kubeconfig {path}: {source}")]
    Client { path: PathBuf, source: kube::Error },
    #[error("registering Node {node}: {source}")]
    Register { node: String, source: kube::Error },
    #[error("preparing the state dir {path}: {source}")]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("another local node is already running with state dir {0} (it holds {0}/localnode.lock)")]
    AlreadyRunning(PathBuf),
    #[error(
        "this machine cannot give a process a private mount namespace ({0}); the local node needs root and \
         unshare(CLONE_NEWNS)"
    )]
    NoMountNamespace(std::io::Error),
}

/// How the node is started (flags of the `localnode` binary).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub kubeconfig: PathBuf,
    pub state_dir: PathBuf,
    pub node_name: String,
    /// Reported as the Node's InternalIP and the Pods' hostIP; hostNetwork Pods get it as their IP.
    pub host_ip: String,
    pub capacity: Capacity,
    /// Advertised kubelet version.
    pub kubelet_version: String,
}

/// What the Node advertises; deliberately generous so tests are not limited by a small machine.
#[derive(Debug, Clone)]
pub struct Capacity {
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    pub ephemeral_storage: String,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            cpu: "32".into(),
            memory: "128Gi".into(),
            pods: "250".into(),
            ephemeral_storage: "200Gi".into(),
        }
    }
}

/// What every Pod task shares.
pub struct NodeContext {
    pub client: Client,
    pub node_name: String,
    pub state_dir: PathBuf,
    pub host_ip: String,
    /// Where Pods reach the API server (`KUBERNETES_SERVICE_HOST`/`_PORT`).
    pub api_host: String,
    pub api_port: u16,
    pub pod_ips: Mutex<Allocator>,
    pub processes: Registry,
    /// PATH given to containers (images are ignored, so the machine's PATH).
    pub path: String,
    /// Set on SIGTERM: the node stops starting processes and writing to the API, so that its Pods are
    /// left as they are (a kubelet that stops does not fail or delete its Pods).
    pub shutting_down: std::sync::atomic::AtomicBool,
}

impl NodeContext {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl NodeContext {
    /// Variables every container gets before its own `envFrom`/`env`.
    pub fn base_env(&self, pod: &Pod, pod_ip: &str) -> Vec<(String, String)> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let (host, port) = (self.api_host.clone(), self.api_port.to_string());
        vec![
            ("PATH".into(), self.path.clone()),
            ("HOME".into(), "/root".into()),
            ("HOSTNAME".into(), name),
            ("POD_IP".into(), pod_ip.to_string()),
            ("KUBERNETES_SERVICE_HOST".into(), host.clone()),
            ("KUBERNETES_SERVICE_PORT".into(), port.clone()),
            ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.clone()),
            ("KUBERNETES_PORT".into(), format!("tcp://{host}:{port}")),
            (
                process::STATE_DIR_ENV.into(),
                self.state_dir.display().to_string(),
            ),
        ]
    }

    /// The `/etc/hosts` for Pods of `namespace`, kept current by the Service proxy.
    pub fn hosts_file(&self, namespace: &str) -> Option<PathBuf> {
        crate::proxy::hosts_file_for(&self.state_dir, namespace).ok()
    }
}

/// Run the node until SIGTERM or SIGINT; then kill every Pod process and return.
pub async fn run(config: NodeConfig) -> Result<(), Error> {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(&config.kubeconfig).map_err(|source| Error::Kubeconfig {
            path: config.kubeconfig.clone(),
            source,
        })?;
    let server = kubeconfig
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .unwrap_or_default();
    let client_config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|source| Error::Kubeconfig {
            path: config.kubeconfig.clone(),
            source,
        })?;
    let client = Client::try_from(client_config).map_err(|source| Error::Client {
        path: config.kubeconfig.clone(),
        source,
    })?;
    let (api_host, api_port) = host_and_port(&server).unwrap_or_else(|| ("127.0.0.1".into(), 6443));

    let state_err = |source| Error::StateDir {
        path: config.state_dir.clone(),
        source,
    };
    std::fs::create_dir_all(config.state_dir.join("pods")).map_err(state_err)?;
    // Two nodes on one state dir would both run every Pod.
    let _lock = lock_state_dir(&config.state_dir)?;
    let leftovers = process::kill_leftovers(&config.state_dir);
    if leftovers > 0 {
        tracing::warn!(leftovers, "killed processes left by an earlier run of this node");
    }
    check_mount_namespaces(&config.state_dir).await?;

    let ctx = Arc::new(NodeContext {
        client: client.clone(),
        node_name: config.node_name.clone(),
        state_dir: config.state_dir.clone(),
        host_ip: config.host_ip.clone(),
        api_host,
        api_port,
        pod_ips: Mutex::new(Allocator::new(ipam::POD_RANGE)),
        processes: Registry::default(),
        path: std::env::var("PATH")
            .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        shutting_down: Default::default(),
    });

    registration::register(&client, &config)
        .await
        .map_err(|source| Error::Register {
            node: config.node_name.clone(),
            source,
        })?;
    let mut background = tokio::task::JoinSet::new();
    background.spawn(registration::keep_alive(client.clone(), config.clone()));
    background.spawn(provisioner::run(client.clone(), config.state_dir.clone()));
    background.spawn(crate::proxy::run(client.clone(), config.state_dir.clone()));
    background.spawn(watch_pods(ctx.clone()));
    tracing::info!(node = %config.node_name, state_dir = %config.state_dir.display(), "local node running");

    shutdown_signal().await;
    tracing::info!("shutting down: killing every Pod process");
    ctx.shutting_down.store(true, std::sync::atomic::Ordering::SeqCst);
    ctx.processes.kill_all(Duration::from_secs(5)).await;
    // A process started in the meantime (an exec probe, a restart) is caught by its marker.
    process::kill_leftovers(&config.state_dir);
    background.abort_all();
    Ok(())
}

/// Start a task per Pod bound to this node and keep it informed.
async fn watch_pods(ctx: Arc<NodeContext>) {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut workers: HashMap<String, watch::Sender<Pod>> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "watching Pods failed; retrying");
                continue;
            }
        };
        match event {
            Event::Init => listed.clear(),
            Event::InitApply(pod) | Event::Apply(pod) => {
                let Some(uid) = pod.metadata.uid.clone() else {
                    continue;
                };
                listed.insert(uid.clone());
                match workers.get(&uid) {
                    Some(tx) => {
                        tx.send_replace(pod);
                    }
                    None => {
                        let span = tracing::info_span!(
                            "pod",
                            pod = %format!(
                                "{}/{}",
                                pod.metadata.namespace.as_deref().unwrap_or(""),
                                pod.metadata.name.as_deref().unwrap_or("")
                            )
                        );
                        let (tx, rx) = watch::channel(pod);
                        workers.insert(uid, tx);
                        tokio::spawn(pod::run_pod(ctx.clone(), rx).instrument(span));
                    }
                }
            }
            Event::InitDone => workers.retain(|uid, _| listed.contains(uid)),
            Event::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid {
                    // Dropping the sender tells the Pod task the object is gone.
                    workers.remove(&uid);
                }
            }
        }
    }
}

/// Fail early, with a clear message, on a machine where volumes could not be mounted.
async fn check_mount_namespaces(state_dir: &std::path::Path) -> Result<(), Error> {
    let probe_dir = state_dir.join("mount-check");
    let _ = std::fs::create_dir_all(probe_dir.join("target"));
    let _ = std::fs::create_dir_all(probe_dir.join("source"));
    let launch = process::Launch {
        program: "true".into(),
        args: vec![],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        working_dir: "/".into(),
        mounts: vec![process::BindMount {
            source: probe_dir.join("source"),
            target: probe_dir.join("target"),
            read_only: true,
        }],
        log: None,
    };
    let status = process::spawn(&launch)
        .map_err(Error::NoMountNamespace)?
        .wait()
        .await;
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(Error::NoMountNamespace(std::io::Error::other(format!(
            "check exited with {s}"
        )))),
        Err(e) => Err(Error::NoMountNamespace(e)),
    }
}

/// An exclusive lock on the state dir, held for the life of the returned file.
fn lock_state_dir(state_dir: &std::path::Path) -> Result<std::fs::File, Error> {
    use std::os::fd::AsRawFd;
    let path = state_dir.join("localnode.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| Error::StateDir {
            path: path.clone(),
            source,
        })?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Error::AlreadyRunning(state_dir.to_path_buf()));
    }
    Ok(file)
}

fn host_and_port(server: &str) -> Option<(String, u16)> {
    let rest = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))?;
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    Some((
        host.trim_start_matches('[').trim_end_matches(']').to_string(),
        port.parse().ok()?,
    ))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_server_address_comes_from_the_kubeconfig_server() {
        assert_eq!(
            host_and_port("https://127.0.0.1:16443"),
            Some(("127.0.0.1".into(), 16443))
        );
        assert_eq!(host_and_port("https://[::1]:6443/"), Some(("::1".into(), 6443)));
        assert_eq!(host_and_port("https://example"), None);
    }
}
