//! The plugin's command line: kubectl's usual flags, one subcommand per everyday task.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use super::{actions, kube_client, logs, restore, snapshots, status, PluginError};

/// Lifeboat for kubectl: status of backups, drills and Cutovers, and the actions people take on them.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-lifeboat",
    bin_name = "kubectl lifeboat",
    version,
    max_term_width = 100
)]
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
    /// Roll a Cutover back now (during its checks or stabilization window, or one left Failed on the new
    /// side): refused while it has not switched traffic.
    Rollback { cutover: String },
    /// Restore a Backup (`backup/NAME`) or a policy's snapshot (`policy/NAME`, newest unless --snapshot)
    /// into a database on the policy's server. A bare NAME is a Backup, else a policy.
    Restore {
        source: String,
        /// The database to restore into. If it has tables, the Restore fails touching nothing, unless
        /// --confirm-overwrite repeats its name.
        #[arg(long = "to", value_name = "DATABASE")]
        database: String,
        /// A restic snapshot id (8 or 64 hex digits) of the policy, instead of its newest.
        #[arg(long)]
        snapshot: Option<String>,
        /// Another server than the policy's source.
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        port: Option<i32>,
        /// Another user than the policy's (e.g. one that may create databases).
        #[arg(long)]
        user: Option<String>,
        /// The password for --user, as SECRET/KEY.
        #[arg(long, value_name = "SECRET/KEY")]
        password_secret: Option<String>,
        /// Replace the database even if it has tables: repeat its name. Asked for at a terminal when the
        /// target is the database the policy backs up.
        #[arg(long, value_name = "DATABASE")]
        confirm_overwrite: Option<String>,
        /// Follow the Restore until it ends (exit 1 unless it Succeeded), at most this long, e.g. 30m.
        #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "1h",
              value_parser = duration)]
        wait: Option<std::time::Duration>,
    },
    /// List a policy's snapshots, read from its repository by a short Job (no local restic needed).
    Snapshots {
        policy: String,
        #[arg(short, long, value_enum)]
        output: Option<Format>,
        /// How long the listing Job may take.
        #[arg(long, default_value = "5m", value_parser = duration)]
        timeout: std::time::Duration,
    },
    /// Print what the Jobs of a Backup, a Restore or a Cutover (or one of its steps, e.g. migration,
    /// preflight/db-ready, backup) wrote.
    Logs {
        #[arg(value_enum)]
        kind: super::logs::LogsOf,
        name: String,
        step: Option<String>,
    },
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

/// A duration as Lifeboat's specs write them (`90s`, `5m`, `1h30m`).
fn duration(text: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse_duration(text).map_err(|e| e.to_string())
}

impl Format {
    /// `value` as JSON or YAML; `what` names it in an error.
    pub fn render<T: serde::Serialize>(self, value: &T, what: &'static str) -> Result<String, PluginError> {
        let rendered = match self {
            Format::Json => serde_json::to_string_pretty(value).map_err(|e| e.to_string()),
            Format::Yaml => serde_norway::to_string(value).map_err(|e| e.to_string()),
        };
        rendered.map_err(|message| PluginError::Output { what, message })
    }
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
        PluginCommand::Abort { cutover } => actions::stop(&session, &cutover, actions::Stop::Abort).await,
        PluginCommand::Rollback { cutover } => {
            actions::stop(&session, &cutover, actions::Stop::Rollback).await
        }
        PluginCommand::Restore {
            source,
            database,
            snapshot,
            host,
            port,
            user,
            password_secret,
            confirm_overwrite,
            wait,
        } => {
            let request = restore::RestoreRequest {
                source,
                snapshot,
                database,
                host,
                port,
                user,
                password_secret,
                confirm_overwrite,
                wait,
            };
            restore::restore(&session, request).await
        }
        PluginCommand::Snapshots {
            policy,
            output,
            timeout,
        } => snapshots::list(&session, &policy, output, timeout).await,
        PluginCommand::Logs { kind, name, step } => logs::show(&session, kind, &name, step.as_deref()).await,
        PluginCommand::Watch { cutover } => super::watch::watch(&session, &cutover).await,
        PluginCommand::Completion { .. } => unreachable!("handled above"),
    }
}
