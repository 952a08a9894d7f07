//! `lifeboat agent backup`: a database dump streamed into `restic backup --stdin`, or a directory.
//!
//! The rule that keeps backups honest: restic only records a snapshot when its stdin reaches end of file,
//! and the agent closes that stdin only after the dump tool has exited successfully. A failed dump gets
//! restic interrupted with its input still open, so no snapshot exists at all. The snapshot is created
//! tagged `lifeboat-incomplete`; size and sha256 are added and that tag removed only once both tools
//! succeeded, so a Job killed between the two steps leaves a snapshot that is visibly unfinished.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::ChildStdout;
use tokio::task::JoinHandle;

use super::cli::{BackupArgs, Engine, Kind, PgScope};
use super::database::Database;
use super::error::{error_summary, last_meaningful_line, AgentError};
use super::process::{enlarge_pipe, pump, Measured, Redactor, Tool};
use super::restic::{
    self, parse_summary, Restic, TAG_DATABASE, TAG_FORMAT, TAG_INCOMPLETE, TAG_KIND, TAG_SHA256, TAG_SIZE,
};
use super::result::AgentResult;
use super::signals::StopSignal;

/// How long restic gets to exit cleanly (and remove its lock) after being interrupted.
const RESTIC_GRACE: Duration = Duration::from_secs(10);

pub async fn run(
    args: &BackupArgs,
    result: &mut AgentResult,
    redactor: &mut Redactor,
    stop: &StopSignal,
) -> Result<(), AgentError> {
    restic::validate_tags(&args.tags)?;
    result.kind = Some(args.source.as_str().to_string());
    match args.source {
        Kind::Postgres => stream(Engine::Postgres, args, result, redactor, stop).await,
        Kind::Mysql => stream(Engine::Mysql, args, result, redactor, stop).await,
        Kind::Files => files(args, result, redactor).await,
    }
}

async fn stream(
    engine: Engine,
    args: &BackupArgs,
    result: &mut AgentResult,
    redactor: &mut Redactor,
    stop: &StopSignal,
) -> Result<(), AgentError> {
    let database_required = !(engine == Engine::Postgres && args.pg_scope != PgScope::Database);
    let db = Database::from_args(engine, &args.db, database_required, redactor)?;
    let restic = Restic::new(&args.repo, redactor)?;
    restic.prepare_for_backup(args.init_repository).await?;

    let (tool_name, dump_command, default_filename, format) =
        db.dump_command(args.pg_scope, args.pg_format, args.pg_compress);
    let filename = args.stdin_filename.clone().unwrap_or(default_filename);
    let mut tags = args.tags.clone();
    tags.push(format!("{TAG_KIND}={}", args.source.as_str()));
    tags.push(format!("{TAG_FORMAT}={format}"));
    if !db.database.is_empty() {
        tags.push(format!("{TAG_DATABASE}={}", db.database));
    }
    tags.push(TAG_INCOMPLETE.to_string());

    let mut restic_tool = restic.spawn_backup_stdin(&filename, &args.snapshot_host, &tags)?;
    let mut restic_stdin = restic_tool
        .child
        .stdin
        .take()
        .ok_or_else(|| AgentError::internal("starting restic", "no stdin pipe"))?;
    enlarge_pipe(&restic_stdin);
    let restic_stdout = collect_stdout(restic_tool.child.stdout.take());

    let mut dump = match Tool::spawn(&tool_name, dump_command, Stdio::null(), Stdio::piped(), redactor) {
        Ok(dump) => dump,
        Err(error) => {
            let _ = restic_tool.stop(RESTIC_GRACE).await;
            return Err(error);
        }
    };
    let mut dump_stdout = dump
        .child
        .stdout
        .take()
        .ok_or_else(|| AgentError::internal(format!("starting {tool_name}"), "no stdout pipe"))?;
    enlarge_pipe(&dump_stdout);

    let pumped = tokio::select! {
        pumped = pump(&mut dump_stdout, &mut restic_stdin, false) => pumped,
        signal = stop.requested() => {
            // restic first, while its input is still open: it must not see end of file and commit.
            // Interrupted rather than killed, so it removes its lock on the way out.
            dump.kill();
            let _ = restic_tool.stop(RESTIC_GRACE).await;
            let _ = dump.wait().await;
            drop(restic_stdin);
            return Err(AgentError::Interrupted { signal });
        }
    };
    drop(dump_stdout);
    let dump_done = dump.wait().await?;

    let dump_ok = dump_done.status.success() && pumped.is_ok();
    let measured = match (&pumped, dump_ok) {
        (Ok(measured), true) => measured.clone(),
        _ => {
            // The dump failed: stop restic before it sees the end of its input, so it records nothing.
            let restic_died_first = matches!(restic_tool.child.try_wait(), Ok(Some(_)));
            let restic_done = restic_tool.stop(RESTIC_GRACE).await?;
            drop(restic_stdin);
            discard_stray_snapshot(&restic, restic_stdout).await;
            let pumped =
                pumped.map_err(|e| AgentError::internal(format!("reading the output of {tool_name}"), e))?;
            // A restic that died first (lock, disk full) breaks the dump's pipe: its cause comes first.
            if restic_died_first || pumped.writer_closed_early {
                return Err(restic.failure("backup", &restic_done));
            }
            return Err(db
                .failure_cause(&dump_done.stderr)
                .unwrap_or_else(|| AgentError::DumpFailed {
                    tool: tool_name.clone(),
                    status: dump_done.describe_status(),
                    detail: error_summary(&dump_done.stderr),
                }));
        }
    };

    // The commit point: end of input tells restic the dump is whole.
    drop(restic_stdin);
    let restic_done = restic_tool.wait().await?;
    let stdout = restic_stdout.await.unwrap_or_default();
    let summary = parse_summary(&stdout);
    if !restic_done.status.success() || measured.writer_closed_early {
        if let Some(id) = summary.as_ref().and_then(|s| s.snapshot_id.clone()) {
            let _ = restic.forget(&[id]).await;
        }
        return Err(restic.failure("backup", &restic_done));
    }
    let Some(snapshot_id) = summary.as_ref().and_then(|s| s.snapshot_id.clone()) else {
        return Err(AgentError::ResticFailed {
            command: "backup".into(),
            status: "success".into(),
            detail: "restic reported no snapshot id".into(),
        });
    };
    if let Some(summary) = &summary {
        if summary.total_bytes_processed != measured.size {
            let _ = restic.forget(std::slice::from_ref(&snapshot_id)).await;
            return Err(AgentError::internal(
                "confirming the snapshot",
                format!(
                    "restic stored {} bytes but the dump was {} bytes",
                    summary.total_bytes_processed, measured.size
                ),
            ));
        }
        result.added_bytes = Some(added_bytes(summary));
    }
    let final_id = confirm(&restic, &snapshot_id, &measured).await?;
    result.snapshot_id = Some(final_id);
    result.size_bytes = Some(measured.size);
    result.sha256 = Some(measured.sha256);
    Ok(())
}

/// Records size and sha256 and removes the incomplete marker. If that fails the snapshot is forgotten:
/// a dump nobody can check is not a backup to count on.
async fn confirm(restic: &Restic, snapshot_id: &str, measured: &Measured) -> Result<String, AgentError> {
    let add = vec![
        format!("{TAG_SIZE}={}", measured.size),
        format!("{TAG_SHA256}={}", measured.sha256),
    ];
    match restic.retag(snapshot_id, &add, &[TAG_INCOMPLETE]).await {
        Ok(id) => Ok(id),
        Err(error) => {
            let _ = restic.forget(&[snapshot_id.to_string()]).await;
            Err(error)
        }
    }
}

/// restic was interrupted before its input ended, so it should have written nothing; should a future
/// restic behave otherwise, the snapshot it reports is removed rather than left looking like a backup.
async fn discard_stray_snapshot(restic: &Restic, stdout: JoinHandle<String>) {
    let stdout = stdout.await.unwrap_or_default();
    if let Some(id) = parse_summary(&stdout).and_then(|s| s.snapshot_id) {
        eprintln!("lifeboat: removing snapshot {id} of a failed dump");
        let _ = restic.forget(&[id]).await;
    }
}

/// What the repository grew by: the packed (compressed) size, which restic < 0.15 does not report.
fn added_bytes(summary: &super::restic::BackupSummary) -> u64 {
    if summary.data_added_packed > 0 {
        summary.data_added_packed
    } else {
        summary.data_added
    }
}

/// Keeps restic's JSON stdout (status lines are dropped: only the summary matters, and a long backup
/// prints thousands of them).
fn collect_stdout(stdout: Option<ChildStdout>) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut kept = String::new();
        let Some(stdout) = stdout else { return kept };
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if !line.contains("\"message_type\":\"status\"") {
                kept.push_str(&line);
                kept.push('\n');
            }
        }
        kept
    })
}

async fn files(
    args: &BackupArgs,
    result: &mut AgentResult,
    redactor: &mut Redactor,
) -> Result<(), AgentError> {
    let path = args.path.as_ref().ok_or_else(|| {
        AgentError::InvalidArguments("files backup needs --path (the directory to back up)".into())
    })?;
    if !path.is_dir() {
        return Err(AgentError::InvalidArguments(format!(
            "{} is not a directory: check the volume mount and --path",
            path.display()
        )));
    }
    let restic = Restic::new(&args.repo, redactor)?;
    restic.prepare_for_backup(args.init_repository).await?;
    let mut tags = args.tags.clone();
    tags.push(format!("{TAG_KIND}=files"));
    tags.push(TAG_INCOMPLETE.to_string());
    let (finished, summary) = restic
        .backup_path(path, &args.snapshot_host, &tags, &args.excludes)
        .await?;
    let snapshot_id = summary.as_ref().and_then(|s| s.snapshot_id.clone());
    // Exit code 3: restic wrote a snapshot but could not read some files. That is not a backup of the
    // directory, so it is removed and the unreadable files named.
    if !finished.status.success() {
        if let Some(id) = snapshot_id {
            let _ = restic.forget(&[id]).await;
        }
        if finished.status.code() == Some(3) {
            return Err(AgentError::ResticFailed {
                command: "backup".into(),
                status: "exit code 3 (some files could not be read)".into(),
                detail: last_meaningful_line(&finished.stderr),
            });
        }
        return Err(restic.failure("backup", &finished));
    }
    let (Some(snapshot_id), Some(summary)) = (snapshot_id, summary) else {
        return Err(AgentError::ResticFailed {
            command: "backup".into(),
            status: "success".into(),
            detail: "restic reported no snapshot id".into(),
        });
    };
    let add = vec![format!("{TAG_SIZE}={}", summary.total_bytes_processed)];
    let final_id = match restic.retag(&snapshot_id, &add, &[TAG_INCOMPLETE]).await {
        Ok(id) => id,
        Err(error) => {
            let _ = restic.forget(&[snapshot_id]).await;
            return Err(error);
        }
    };
    result.snapshot_id = Some(final_id);
    result.size_bytes = Some(summary.total_bytes_processed);
    result.added_bytes = Some(added_bytes(&summary));
    Ok(())
}
