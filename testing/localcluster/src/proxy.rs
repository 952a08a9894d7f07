//! The Service proxy: every Service with a selector gets a loopback address (127.0.20.x) that listens on
//! its TCP ports and forwards each connection to a ready endpoint, round-robin.
//!
//! Endpoints are computed from the Pods directly (ready, not terminating, labels matching the selector,
//! `targetPort` resolved by number or container port name) rather than read from EndpointSlices: the API
//! server refuses loopback addresses in EndpointSlices, so the EndpointSlice controller cannot publish our
//! Pods' addresses. The result is the same set the controller would compute, and it follows a selector
//! change as soon as the watch delivers it (milliseconds).
//!
//! The table is published in `<state dir>/services.json` (see [`crate::services`]), and as
//! `<state dir>/hosts/<ns>` files that Pods see as their `/etc/hosts`, so a process in a Pod can connect to
//! `<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc` or `<svc>.<ns>.svc.cluster.local`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::node::ipam::{Allocator, SERVICE_RANGE};
use crate::services::{self, PortEntry, ServiceEntry, ServiceTable};

/// Run the proxy until aborted.
pub async fn run(client: Client, state_dir: PathBuf) {
    let (services_store, services_writer) = reflector::store::<Service>();
    let (pods_store, pods_writer) = reflector::store::<Pod>();
    let service_events = reflector::reflector(
        services_writer,
        watcher(Api::<Service>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map(|_| ())
    .boxed();
    let pod_events = reflector::reflector(
        pods_writer,
        watcher(Api::<Pod>::all(client), watcher::Config::default()),
    )
    .default_backoff()
    .map(|_| ())
    .boxed();
    let mut events = futures::stream::select(service_events, pod_events);

    let mut proxy = Proxy::new(state_dir);
    // Events come in bursts (a list, a rollout); recompute once per burst.
    while events.next().await.is_some() {
        while let Some(Some(())) = futures::FutureExt::now_or_never(events.next()) {}
        proxy.sync(&services_store, &pods_store);
    }
}

struct Listener {
    backends: Arc<RwLock<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

struct Proxy {
    state_dir: PathBuf,
    addresses: Allocator,
    assigned: BTreeMap<(String, String), Ipv4Addr>,
    listeners: HashMap<(String, String, u16), Listener>,
    /// What was last published (`None` before the first publication).
    table: Option<ServiceTable>,
}

impl Proxy {
    fn new(state_dir: PathBuf) -> Self {
        let mut addresses = Allocator::new(SERVICE_RANGE);
        let mut assigned = BTreeMap::new();
        // Keep the addresses of an earlier run, so a test's resolved URL survives a node restart.
        if let Ok(previous) = services::load_in(&state_dir) {
            for s in previous.services {
                if let Ok(ip) = s.address.parse::<Ipv4Addr>() {
                    if addresses.allocate(Some(ip)) == Some(ip) {
                        assigned.insert((s.namespace, s.name), ip);
                    }
                }
            }
        }
        Proxy {
            state_dir,
            addresses,
            assigned,
            listeners: HashMap::new(),
            table: None,
        }
    }

    fn sync(&mut self, services: &Store<Service>, pods: &Store<Pod>) {
        let pods = pods.state();
        let mut table = ServiceTable::default();
        for svc in services.state() {
            let Some(entry) = desired_entry(&svc, &pods, |ns, name| self.address_for(ns, name)) else {
                continue;
            };
            table.services.push(entry);
        }
        table
            .services
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        if self.table.as_ref() == Some(&table) {
            return;
        }

        // Listeners: open new ones, update backends, close the ones of deleted Services or ports.
        let mut wanted = HashMap::new();
        for s in &table.services {
            for p in &s.ports {
                let backends: Vec<SocketAddr> = p.endpoints.iter().filter_map(|e| e.parse().ok()).collect();
                wanted.insert(
                    (s.namespace.clone(), s.name.clone(), p.port),
                    (s.address.clone(), backends),
                );
            }
        }
        self.listeners.retain(|key, l| {
            let keep = wanted.contains_key(key);
            if !keep {
                l.task.abort();
            }
            keep
        });
        for (key, (address, backends)) in wanted {
            match self.listeners.get(&key) {
                Some(l) => *l.backends.write().unwrap_or_else(|e| e.into_inner()) = backends,
                None => {
                    let Ok(ip) = address.parse::<Ipv4Addr>() else {
                        continue;
                    };
                    match listen(SocketAddr::from((ip, key.2)), backends) {
                        Ok(l) => {
                            self.listeners.insert(key, l);
                        }
                        Err(e) => {
                            tracing::warn!(service = %format!("{}/{}", key.0, key.1), port = key.2, error = %e, "cannot listen")
                        }
                    }
                }
            }
        }
        let live: Vec<(String, String)> = table
            .services
            .iter()
            .map(|s| (s.namespace.clone(), s.name.clone()))
            .collect();
        let gone: Vec<(String, String)> = self
            .assigned
            .keys()
            .filter(|k| !live.contains(k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(ip) = self.assigned.remove(&key) {
                self.addresses.release(ip);
            }
        }
        if let Err(e) = self.publish(&table) {
            tracing::warn!(error = %e, "publishing the Service table failed");
        }
        self.table = Some(table);
    }

    fn address_for(&mut self, namespace: &str, name: &str) -> Option<Ipv4Addr> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(ip) = self.assigned.get(&key) {
            return Some(*ip);
        }
        let ip = self.addresses.allocate(None)?;
        self.assigned.insert(key, ip);
        Some(ip)
    }

    fn publish(&self, table: &ServiceTable) -> std::io::Result<()> {
        let path = services::table_path(&self.state_dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(table)?)?;
        std::fs::rename(&tmp, &path)?;
        let hosts_dir = self.state_dir.join("hosts");
        if let Ok(entries) = std::fs::read_dir(&hosts_dir) {
            for entry in entries.flatten() {
                if let Some(ns) = entry.file_name().to_str() {
                    write_in_place(&entry.path(), &render_hosts(table, ns))?;
                }
            }
        }
        Ok(())
    }
}

/// The table entry for a Service, or `None` when the proxy does not serve it (no selector, ExternalName).
fn desired_entry(
    svc: &Service,
    pods: &[Arc<Pod>],
    mut address_for: impl FnMut(&str, &str) -> Option<Ipv4Addr>,
) -> Option<ServiceEntry> {
    let spec = svc.spec.as_ref()?;
    let selector = spec.selector.as_ref().filter(|s| !s.is_empty())?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let namespace = svc.namespace()?;
    let name = svc.name_any();
    let members: Vec<&Pod> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|p| selector.iter().all(|(k, v)| p.labels().get(k) == Some(v)))
        .filter(|p| is_ready_endpoint(p))
        .collect();
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            let port = u16::try_from(p.port).ok()?;
            let endpoints = members
                .iter()
                .filter_map(|pod| {
                    let ip = pod.status.as_ref()?.pod_ip.clone()?;
                    let target = target_port(pod, p.target_port.as_ref(), port)?;
                    Some(format!("{ip}:{target}"))
                })
                .collect();
            Some(PortEntry {
                name: p.name.clone(),
                port,
                endpoints,
            })
        })
        .collect();
    let address = address_for(&namespace, &name)?;
    Some(ServiceEntry {
        namespace,
        name,
        address: address.to_string(),
        ports,
    })
}

fn is_ready_endpoint(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    pod.metadata.deletion_timestamp.is_none()
        && status.pod_ip.is_some()
        && status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn target_port(pod: &Pod, target: Option<&IntOrString>, service_port: u16) -> Option<u16> {
    match target {
        None => Some(service_port),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
        Some(IntOrString::String(name)) => name.parse().ok().or_else(|| {
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str()))
                        .then(|| u16::try_from(p.container_port).ok())
                        .flatten()
                })
        }),
    }
}

fn listen(addr: SocketAddr, backends: Vec<SocketAddr>) -> std::io::Result<Listener> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(std_listener)?;
    let backends = Arc::new(RwLock::new(backends));
    let shared = backends.clone();
    let next = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(async move {
        loop {
            let Ok((inbound, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let candidates = shared.read().unwrap_or_else(|e| e.into_inner()).clone();
            let start = next.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(forward(inbound, candidates, start));
        }
    });
    Ok(Listener { backends, task })
}

/// Forward one connection to the first backend (round-robin from `start`) that accepts it; with no
/// backend the connection is closed, as kube-proxy rejects connections to a Service without endpoints.
async fn forward(mut inbound: TcpStream, backends: Vec<SocketAddr>, start: usize) {
    for i in 0..backends.len() {
        let backend = backends[(start + i) % backends.len()];
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(backend)).await {
            Ok(Ok(mut outbound)) => {
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                return;
            }
            _ => continue,
        }
    }
}

/// The `/etc/hosts` of Pods in `namespace`: the machine's own, then every Service the proxy serves.
fn render_hosts(table: &ServiceTable, namespace: &str) -> String {
    let mut out = std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| "127.0.0.1 localhost\n".into());
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("# Services of the local cluster (lifeboat local node proxy)\n");
    for s in &table.services {
        let (n, ns) = (&s.name, &s.namespace);
        out.push_str(&format!(
            "{} {n}.{ns}.svc.cluster.local {n}.{ns}.svc {n}.{ns}",
            s.address
        ));
        if ns == namespace {
            out.push_str(&format!(" {n}"));
        }
        out.push('\n');
    }
    out
}

/// Rewrite a file keeping its inode: it is bind mounted into running Pods.
fn write_in_place(path: &Path, content: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(content.as_bytes())
}

/// The hosts file for Pods of `namespace`, created from the current table if it does not exist yet.
pub fn hosts_file_for(state_dir: &Path, namespace: &str) -> std::io::Result<PathBuf> {
    let dir = state_dir.join("hosts");
    let path = dir.join(namespace);
    if !path.exists() {
        std::fs::create_dir_all(&dir)?;
        let table = services::load_in(state_dir).unwrap_or_default();
        std::fs::write(&path, render_hosts(&table, namespace))?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Arc<Pod> {
        Arc::new(serde_norway::from_str(yaml).unwrap())
    }

    const READY: &str =
        "status: {phase: Running, podIP: 127.0.10.ADDR, conditions: [{type: Ready, status: 'True'}]}";

    #[test]
    fn endpoints_are_the_ready_pods_matching_the_selector() {
        let svc: Service = serde_norway::from_str(
            "metadata: {name: web, namespace: shop}
spec: {selector: {app: web, color: blue}, ports: [{port: 80, targetPort: http}, {port: 81, protocol: UDP}]}",
        )
        .unwrap();
        let mk = |name: &str, color: &str, ip: &str, ready: bool| {
            let status = READY
                .replace("ADDR", ip)
                .replace("'True'", if ready { "'True'" } else { "'False'" });
            pod(&format!(
                "metadata: {{name: {name}, namespace: shop, labels: {{app: web, color: {color}}}}}
spec: {{containers: [{{name: c, ports: [{{name: http, containerPort: 8080}}]}}]}}
{status}"
            ))
        };
        let pods = vec![
            mk("blue-1", "blue", "1", true),
            mk("blue-2", "blue", "2", false),
            mk("green-1", "green", "3", true),
        ];
        let entry = desired_entry(&svc, &pods, |_, _| Some(Ipv4Addr::new(127, 0, 20, 1))).unwrap();
        assert_eq!(entry.ports.len(), 1, "UDP ports are not proxied");
        assert_eq!(entry.ports[0].endpoints, vec!["127.0.10.1:8080"]);
    }

    #[test]
    fn hosts_files_name_services_in_every_form_and_short_in_their_namespace() {
        let table = ServiceTable {
            services: vec![ServiceEntry {
                namespace: "shop".into(),
                name: "db".into(),
                address: "127.0.20.9".into(),
                ports: vec![],
            }],
        };
        let hosts = render_hosts(&table, "shop");
        assert!(hosts.contains("127.0.20.9 db.shop.svc.cluster.local db.shop.svc db.shop db\n"));
        assert!(render_hosts(&table, "other").contains("db.shop\n"));
    }
}
