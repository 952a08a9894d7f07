//! The plugin's command line: kubectl's usual flags, one subcommand per everyday task.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use super::{actions, kube_client, status, PluginError};

/// Lifeboat for kubectl: status of backups, drills and Cutovers, and the actions people take on them.
#[derive(Debug, Parser)]
#[command(name = "kubectl-lifeboat", bin_name = "kubectl lifeboat", version)]
pub struct PluginCli {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// Where to look, as kubectl takes it.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The namespace (default: the kubeconfig context's).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// Every namespace (for listings).
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The kubeconfig file (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// One screen: policies (last success, age against the RPO, anomalies, repository health), drills
    /// (measured RTO/RPO against targets) and Cutovers (phase, step, active side, what they wait for).
    Status {
        #[arg(short, long, value_enum)]
        output: Option<Format>,
    },
    /// Start something now.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Run a RestoreDrill now, outside its schedule: its result counts like a scheduled drill's.
    #[command(subcommand)]
    Drill(DrillCommand),
    /// Give your GO to a Cutover in your own name (your Kubernetes user, as `kubectl auth whoami` says).
    Approve {
        cutover: String,
        /// Why: a change ticket, "UAT passed", …
        #[arg(long)]
        reason: Option<String>,
        /// The group you sign for, when the Cutover requires sign-offs per group.
        #[arg(long)]
        group: Option<String>,
    },
    /// Stop a Cutover: before the switch it ends with traffic untouched; after it, it rolls back.
    Abort { cutover: String },
    /// Follow a Cutover's steps as they happen until it ends (exit 0 only when it Succeeded).
    Watch { cutover: String },
    /// Print a shell completion script: `source <(kubectl lifeboat completion bash)`.
    Completion { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Create a Backup of a policy now (trigger Manual), e.g. before a risky change.
    Now {
        policy: String,
        /// Recorded with the snapshot as its reason= tag.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Restore the policy's newest snapshot into the drill's target and verify it, now.
    Now { drill: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Json,
    Yaml,
}

pub(super) async fn dispatch(cli: PluginCli) -> Result<(), PluginError> {
    if let PluginCommand::Completion { shell } = cli.command {
        // kubectl runs `kubectl-lifeboat`; shells complete `kubectl-lifeboat` (kubectl's own completion
        // hands `kubectl lifeboat …` to it since kubectl 1.26 through kubectl_complete-lifeboat).
        let mut command = PluginCli::command();
        clap_complete::generate(shell, &mut command, "kubectl-lifeboat", &mut std::io::stdout());
        return Ok(());
    }
    let session = kube_client::Session::connect(&cli.target).await?;
    match cli.command {
        PluginCommand::Status { output } => status::show(&session, output).await,
        PluginCommand::Backup(BackupCommand::Now { policy, reason }) => {
            actions::backup_now(&session, &policy, reason).await
        }
        PluginCommand::Drill(DrillCommand::Now { drill }) => actions::drill_now(&session, &drill).await,
        PluginCommand::Approve {
            cutover,
            reason,
            group,
        } => actions::approve(&session, &cutover, reason, group).await,
        PluginCommand::Abort { cutover } => actions::abort(&session, &cutover).await,
        PluginCommand::Watch { cutover } => super::watch::watch(&session, &cutover).await,
        PluginCommand::Completion { .. } => unreachable!("handled above"),
    }
}
