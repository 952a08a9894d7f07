//! `lifeboat agent …`: what runs inside every Lifeboat Job (the data path).
//!
//! Each mode does its work, then writes one JSON result (docs/agent-result.md) to the termination message
//! file and exits 0 on success or 1 with a one-line cause on stderr. The modes share the tool handling in
//! `process.rs`, `restic.rs` and `database.rs`.

mod backup;
pub mod cli;
mod database;
pub mod error;
pub mod listing;
mod loader;
mod maintenance;
mod mysql;
mod postgres;
mod process;
pub mod progress;
pub mod restic;
mod restore;
pub mod result;
mod signals;
mod stream;
mod tar;
mod verify;

use std::time::{Duration, Instant};

use clap::Subcommand;

use self::cli::{
    BackupArgs, CheckArgs, OutputArgs, PruneArgs, RestoreArgs, SnapshotsArgs, StreamArgs, VerifyArgs,
    DEFAULT_RESULT_PATH,
};
use self::error::AgentError;
use self::process::Redactor;
use self::result::{write_result, AgentResult, Mode};
use self::signals::StopSignal;

pub use self::error::Reason;

/// The agent's modes.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Stream a database dump or a directory into restic.
    Backup(BackupArgs),
    /// Restore a snapshot into a target database or directory.
    Restore(Box<RestoreArgs>),
    /// Run a Restore's verification checks against a database.
    Verify(VerifyArgs),
    /// Internal: run by `restic backup --stdin-from-command` around the dump tool (see stream.rs).
    #[command(hide = true)]
    Stream(StreamArgs),
    /// Apply retention (`restic forget --prune`).
    Prune(PruneArgs),
    /// Check the repository (`restic check`).
    Check(CheckArgs),
    /// List one policy's snapshots (one `lifeboat-snapshots: [...]` line on stdout).
    Snapshots(SnapshotsArgs),
}

/// After SIGTERM, how long a mode gets to stop its children in a safe order before the agent gives up
/// on it (Kubernetes' default grace period is 30 s).
const STOP_GRACE: Duration = Duration::from_secs(15);

/// Runs one agent mode and returns the process exit code.
pub async fn run(command: AgentCommand) -> i32 {
    if let AgentCommand::Stream(args) = &command {
        // Synchronous on purpose, on the main thread (see stream.rs); no result file of its own.
        return stream::run(args);
    }
    let started = jiff::Timestamp::now();
    let clock = Instant::now();
    let stop = StopSignal::install();
    let mode = mode_of(&command);
    let output = output_of(&command).clone();
    let mut result = AgentResult::new(mode, started);
    let mut redactor = secrets_from_environment();

    let outcome = {
        let work = execute(&command, &mut result, &mut redactor, &stop);
        tokio::pin!(work);
        tokio::select! {
            outcome = &mut work => outcome,
            signal = stop.requested() => match tokio::time::timeout(STOP_GRACE, &mut work).await {
                // The streaming steps stop their tools themselves; whatever a mode reports after the
                // signal is true (a backup confirmed just before it is a real backup).
                Ok(outcome) => outcome,
                Err(_) => Err(AgentError::Interrupted { signal }),
            },
        }
    };

    result.completion_time = jiff::Timestamp::now().to_string();
    result.duration_seconds = (clock.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    let code = match outcome {
        Ok(()) => {
            result.ok = true;
            0
        }
        Err(error) => {
            let message = redactor.redact(&one_line(&error.to_string()));
            eprintln!("lifeboat agent {}: {message}", mode.as_str());
            result.ok = false;
            result.reason = Some(error.reason());
            result.message = Some(message);
            if error.reason() == Reason::InvalidArguments {
                2
            } else {
                1
            }
        }
    };
    let json = redactor.redact(&result.to_bounded_json());
    println!("{json}");
    let explicit = output.result_path.as_os_str() != DEFAULT_RESULT_PATH;
    if let Err(error) = write_result(&json, &output.result_path, explicit) {
        eprintln!(
            "lifeboat agent {}: cannot write the result to {}: {error}",
            mode.as_str(),
            output.result_path.display()
        );
        return if code == 0 { 1 } else { code };
    }
    code
}

async fn execute(
    command: &AgentCommand,
    result: &mut AgentResult,
    redactor: &mut Redactor,
    stop: &StopSignal,
) -> Result<(), AgentError> {
    match command {
        AgentCommand::Backup(args) => backup::run(args, result, redactor, stop).await,
        AgentCommand::Restore(args) => restore::run(args, result, redactor, stop).await,
        AgentCommand::Verify(args) => verify::run(args, result, redactor).await,
        AgentCommand::Prune(args) => maintenance::prune(args, result, redactor).await,
        AgentCommand::Check(args) => maintenance::check(args, redactor).await,
        AgentCommand::Snapshots(args) => listing::run(args, result, redactor).await,
        AgentCommand::Stream(_) => unreachable!("handled before any mode starts"),
    }
}

fn mode_of(command: &AgentCommand) -> Mode {
    match command {
        AgentCommand::Backup(_) => Mode::Backup,
        AgentCommand::Restore(_) => Mode::Restore,
        AgentCommand::Verify(_) => Mode::Verify,
        AgentCommand::Prune(_) => Mode::Prune,
        AgentCommand::Check(_) => Mode::Check,
        AgentCommand::Snapshots(_) => Mode::Snapshots,
        AgentCommand::Stream(_) => Mode::Backup,
    }
}

fn output_of(command: &AgentCommand) -> &OutputArgs {
    match command {
        AgentCommand::Backup(args) => &args.output,
        AgentCommand::Restore(args) => &args.output,
        AgentCommand::Verify(args) => &args.output,
        AgentCommand::Prune(args) => &args.output,
        AgentCommand::Check(args) => &args.output,
        AgentCommand::Snapshots(args) => &args.output,
        AgentCommand::Stream(_) => unreachable!("handled before any mode starts"),
    }
}

/// Every secret the agent could know from its environment, so nothing it prints can contain one.
fn secrets_from_environment() -> Redactor {
    let mut redactor = Redactor::default();
    for name in [
        "RESTIC_PASSWORD",
        "PGPASSWORD",
        "MYSQL_PWD",
        "LIFEBOAT_DB_PASSWORD",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        if let Ok(value) = std::env::var(name) {
            redactor.add(&value);
        }
    }
    if let Ok(path) = std::env::var("RESTIC_PASSWORD_FILE") {
        if let Ok(value) = std::fs::read_to_string(path) {
            redactor.add(value.trim_end_matches(['\n', '\r']));
        }
    }
    redactor
}

/// The cause must fit one log line and one status field.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
