use clap::{Parser, Subcommand};

/// Lifeboat: backups, restore drills and blue-green cutovers as Kubernetes custom resources.
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controllers, the health and metrics server and leader election.
    Operator(OperatorArgs),
    /// Run one step of the data path inside a Job.
    #[command(subcommand)]
    Agent(lifeboat::agent::AgentCommand),
    /// GET a URL and succeed on a 2xx answer (the chart's `helm test` runs it; the image has no curl).
    Probe {
        url: String,
        /// Also require this text in the body.
        #[arg(long)]
        expect: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 10)]
        timeout_seconds: u64,
    },
    /// Print the CustomResourceDefinitions generated from the Rust types as a YAML stream.
    Crds {
        /// Write one file per kind into this directory instead of printing to stdout.
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
        /// Also write the API reference (Markdown, every field by its path) to this file.
        #[arg(long)]
        api_reference: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The operator's log: level from RUST_LOG (default info), in the chosen format.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        // Colours only on a terminal: in a container's log they are escape codes in every line.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
        // Flattened: `message` and the event's fields at the top level, as collectors index them.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}

#[derive(Debug, clap::Args)]
struct OperatorArgs {
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "LIFEBOAT_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    http_address: std::net::SocketAddr,
    /// `text` for people, `json` (one object per line) for log collectors such as Loki or Elasticsearch.
    #[arg(long, env = "LIFEBOAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Image of the agent Jobs when a policy's jobTemplate names none.
    #[arg(
        long,
        env = "LIFEBOAT_AGENT_IMAGE",
        default_value = "ghcr.io/lifeboat-dev/lifeboat:0.1.0"
    )]
    agent_image: String,
    /// The agent program inside that image.
    #[arg(long, env = "LIFEBOAT_AGENT_COMMAND", default_value = "lifeboat")]
    agent_command: String,
    /// Comma-separated Secrets to pull the agent image with (each must exist in the Job's namespace).
    #[arg(
        long,
        env = "LIFEBOAT_AGENT_IMAGE_PULL_SECRETS",
        default_value = "",
        value_delimiter = ','
    )]
    agent_image_pull_secrets: Vec<String>,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "LIFEBOAT_NAMESPACE", default_value = "lifeboat-system")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, env = "LIFEBOAT_LEASE_NAME", default_value = "lifeboat-operator")]
    lease_name: String,
    /// Run without leader election (a single replica).
    #[arg(long)]
    no_leader_election: bool,
    /// Comma-separated namespaces to reconcile; empty means all.
    #[arg(
        long,
        env = "LIFEBOAT_WATCH_NAMESPACES",
        default_value = "",
        value_delimiter = ','
    )]
    watch_namespaces: Vec<String>,
    /// Objects of one kind reconciled at once (each may hold a connection to the API server).
    #[arg(long, env = "LIFEBOAT_RECONCILE_CONCURRENCY", default_value_t = 32,
          value_parser = clap::value_parser!(u16).range(1..))]
    reconcile_concurrency: u16,
}

async fn operator(args: OperatorArgs) -> i32 {
    let settings = lifeboat::controller::Settings {
        agent_image: args.agent_image,
        agent_command: args.agent_command,
        agent_image_pull_secrets: args
            .agent_image_pull_secrets
            .into_iter()
            .filter(|name| !name.trim().is_empty())
            .collect(),
        reconcile_concurrency: args.reconcile_concurrency,
        ..Default::default()
    };
    let options = lifeboat::controller::RunOptions {
        settings,
        http_address: args.http_address,
        lease_namespace: args.lease_namespace,
        lease_name: args.lease_name,
        leader_election: !args.no_leader_election,
        watch_namespaces: args
            .watch_namespaces
            .into_iter()
            .filter(|n| !n.trim().is_empty())
            .collect(),
    };
    match lifeboat::controller::run(options).await {
        Ok(()) => 0,
        Err(error) => {
            tracing::error!(%error, "operator stopped");
            1
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Installed or linked as `kubectl-lifeboat`, the binary is the kubectl plugin.
    if lifeboat::plugin::invoked_as_plugin() {
        return lifeboat::plugin::run(lifeboat::plugin::PluginCli::parse()).await;
    }
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Operator(args) => {
            init_logging(args.log_format);
            operator(args).await
        }
        Command::Agent(command) => lifeboat::agent::run(command).await,
        Command::Probe {
            url,
            expect,
            timeout_seconds,
        } => {
            let timeout = std::time::Duration::from_secs(timeout_seconds);
            match lifeboat::probe::probe(&url, expect.as_deref(), timeout).await {
                Ok(line) => {
                    println!("{line}");
                    0
                }
                Err(error) => {
                    eprintln!("lifeboat probe: {error}");
                    1
                }
            }
        }
        Command::Crds {
            out_dir,
            api_reference,
        } => {
            let reference = match &api_reference {
                Some(path) => std::fs::write(path, lifeboat::apiref::markdown()).map_err(|source| {
                    lifeboat::crdgen::CrdGenError::Write {
                        path: path.display().to_string(),
                        source,
                    }
                }),
                None => Ok(()),
            };
            match reference.and_then(|()| lifeboat::crdgen::write(out_dir.as_deref())) {
                Ok(()) => 0,
                Err(error) => {
                    eprintln!("lifeboat crds: {error}");
                    1
                }
            }
        }
    };
    std::process::exit(code);
}
