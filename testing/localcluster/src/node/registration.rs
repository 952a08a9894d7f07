//! The Node object and its Lease: what makes the scheduler and the node lifecycle controller treat this
//! process as a healthy kubelet.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use super::NodeConfig;

const LEASE_NAMESPACE: &str = "kube-node-lease";
const LEASE_DURATION_SECONDS: i32 = 40;
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// The kubelet reports status at least every 5 minutes when nothing changes; a minute keeps the
/// heartbeat readable for people looking at `kubectl get node -o yaml`.
const STATUS_EVERY: Duration = Duration::from_secs(60);

/// Create the Node (or adopt an existing one of that name) and mark it Ready.
pub async fn register(client: &Client, config: &NodeConfig) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(node_labels(&config.node_name)),
            annotations: Some(BTreeMap::from([(
                "lifeboat.dev/local-node".to_string(),
                "Pods run as local processes; see testing/localcluster/README.md".to_string(),
            )])),
            ..Default::default()
        },
        ..Default::default()
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    write_status(&nodes, config).await?;
    renew_lease(client, config).await
}

/// Renew the Lease every 10s and refresh the status every minute; runs until aborted.
pub async fn keep_alive(client: Client, config: NodeConfig) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut last_status = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        if let Err(e) = renew_lease(&client, &config).await {
            tracing::warn!(error = %e, "renewing the node Lease failed");
        }
        if last_status.elapsed() >= STATUS_EVERY {
            match write_status(&nodes, &config).await {
                Ok(()) => last_status = tokio::time::Instant::now(),
                Err(e) => tracing::warn!(error = %e, "writing the Node status failed"),
            }
        }
    }
}

fn node_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "kubernetes.io/arch".to_string(),
            std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64"),
        ),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
    ])
}

async fn write_status(nodes: &Api<Node>, config: &NodeConfig) -> Result<(), kube::Error> {
    let status = node_status(config, Timestamp::now());
    let patch = serde_json::json!({ "status": status });
    nodes
        .patch_status(
            &config.node_name,
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await?;
    Ok(())
}

/// The status a healthy kubelet reports.
pub fn node_status(config: &NodeConfig, now: Timestamp) -> NodeStatus {
    let c = &config.capacity;
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(c.cpu.clone())),
        ("memory".to_string(), Quantity(c.memory.clone())),
        ("pods".to_string(), Quantity(c.pods.clone())),
        (
            "ephemeral-storage".to_string(),
            Quantity(c.ephemeral_storage.clone()),
        ),
    ]);
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: None,
    };
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let os_image = read("/etc/os-release")
        .lines()
        .find_map(|l| {
            l.strip_prefix("PRETTY_NAME=")
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into());
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "local node is posting ready status",
            ),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: config.host_ip.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: config.node_name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: node_labels("")["kubernetes.io/arch"].clone(),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            container_runtime_version: format!("localnode://{}", env!("CARGO_PKG_VERSION")),
            kernel_version: read("/proc/sys/kernel/osrelease"),
            kubelet_version: config.kubelet_version.clone(),
            machine_id: read("/etc/machine-id"),
            operating_system: "linux".into(),
            os_image,
            system_uuid: config.node_name.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn renew_lease(client: &Client, config: &NodeConfig) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let now = MicroTime(Timestamp::now());
    let patch = serde_json::json!({ "spec": { "renewTime": now, "holderIdentity": config.node_name } });
    match leases
        .patch(&config.node_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => return Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e),
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let node_uid = nodes.get(&config.node_name).await?.metadata.uid;
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            namespace: Some(LEASE_NAMESPACE.into()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: config.node_name.clone(),
                    uid,
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.node_name.clone()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(now),
            ..Default::default()
        }),
    };
    match leases.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
