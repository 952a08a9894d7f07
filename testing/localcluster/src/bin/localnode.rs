//! The local node of the test cluster: registers a Node and runs the Pods bound to it as local
//! processes, with a Service proxy. Started by `hack/cluster-up.sh`; see testing/localcluster/README.md.

use std::path::PathBuf;

use clap::Parser;
use localcluster::node::{self, Capacity, NodeConfig};

#[derive(Debug, Parser)]
#[command(about = "Run the local cluster's Pods as local processes")]
struct Args {
    /// Kubeconfig with rights to Nodes, Leases, Pods (and their status), Secrets, ConfigMaps, Services,
    /// PersistentVolumes(Claims) and ServiceAccount tokens; the cluster's admin kubeconfig is fine.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Directory for Pod files, volumes and the Service table.
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long, default_value = "lifeboat-local")]
    node_name: String,
    /// The Node's InternalIP, the Pods' hostIP, and the IP of hostNetwork Pods.
    #[arg(long, default_value = "127.0.0.1")]
    host_ip: String,
    #[arg(long, default_value = "v1.37.2")]
    kubelet_version: String,
    #[arg(long, default_value = "32")]
    cpu: String,
    #[arg(long, default_value = "128Gi")]
    memory: String,
    #[arg(long, default_value = "250")]
    max_pods: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = NodeConfig {
        kubeconfig: args.kubeconfig,
        state_dir: args.state_dir,
        node_name: args.node_name,
        host_ip: args.host_ip,
        kubelet_version: args.kubelet_version,
        capacity: Capacity {
            cpu: args.cpu,
            memory: args.memory,
            pods: args.max_pods,
            ..Capacity::default()
        },
    };
    match node::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
