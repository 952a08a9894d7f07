//! `lifeboat agent backup`: a database dump run by `restic backup --stdin-from-command`, or a directory.
//!
//! The rule that keeps backups honest: restic records a snapshot only if the command it runs exits 0,
//! and that command is the agent's own wrapper (`stream.rs`), which exits 0 only when the dump tool
//! succeeded and restic took all of its output. A failed or killed dump leaves no snapshot at all, so
//! database snapshots need no "incomplete" marker and no second restic run to confirm them (each restic
//! run spends ~0.7 s deriving the repository key). The wrapper reports size and sha256, which go into
//! the result (the Backup's status) and are checked against restic's own byte count.
//!
//! Then the repository is made to describe itself: on disaster day the cluster, and with it the Backup's
//! status, may be gone, so size and sha256 are also written onto the snapshot as tags (see
//! `record_digest` for why tags rather than a sidecar file).

use std::ffi::OsString;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::cli::{BackupArgs, Engine, Kind, PgScope};
use super::database::Database;
use super::error::{error_summary, last_meaningful_line, AgentError};
use super::process::{Finished, Redactor};
use super::restic::{
    self, parse_summary, tag, Restic, TAG_DATABASE, TAG_FORMAT, TAG_INCOMPLETE, TAG_KIND, TAG_SHA256,
    TAG_SIZE,
};
use super::result::AgentResult;
use super::signals::StopSignal;
use super::stream::{Report, ReportDir};

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
        tags.push(tag(TAG_DATABASE, &db.database));
    }

    let report_dir = ReportDir::create().map_err(|e| {
        AgentError::internal(
            "creating a directory for the dump's report (set TMPDIR to a writable volume)",
            e,
        )
    })?;
    let wrapper = wrapper_command(dump_command.as_std(), &report_dir)?;
    let mut restic_tool = restic.spawn_backup_command(
        &filename,
        &args.snapshot_host,
        &tags,
        &wrapper.env,
        &wrapper.command,
    )?;
    let restic_stdout = super::progress::keep_restic_backup_output(restic_tool.child.stdout.take());

    let restic_status = tokio::select! {
        status = restic_tool.child.wait() => status,
        signal = stop.requested() => {
            // restic, interrupted, cancels the command (the wrapper, whose dump tool dies with it) and
            // records nothing; interrupted rather than killed, so it removes its lock on the way out.
            let _ = restic_tool.stop(RESTIC_GRACE).await;
            discard_stray_snapshot(&restic, restic_stdout).await;
            return Err(AgentError::Interrupted { signal });
        }
    };
    restic_status.map_err(|e| AgentError::internal("waiting for restic", e))?;
    let restic_done = restic_tool.wait().await?;
    let stdout = restic_stdout.await.unwrap_or_default();
    let summary = parse_summary(&stdout);
    let report = report_dir.read();

    if !restic_done.status.success() {
        if let Some(id) = summary.as_ref().and_then(|s| s.snapshot_id.clone()) {
            eprintln!("lifeboat: removing snapshot {id} of a failed backup");
            let _ = restic.forget(&[id]).await;
        }
        return Err(backup_failure(
            &restic,
            &db,
            &tool_name,
            &restic_done,
            report.as_ref(),
        ));
    }
    let Some(snapshot_id) = summary.as_ref().and_then(|s| s.snapshot_id.clone()) else {
        return Err(AgentError::ResticFailed {
            command: "backup".into(),
            status: "success".into(),
            detail: "restic reported no snapshot id".into(),
        });
    };
    // restic only records a snapshot when the wrapper exited 0, which it does only with a whole dump;
    // the report and restic's count must still agree before the snapshot counts as a backup.
    let measured = match report {
        Some(report) if report.ok => report,
        _ => {
            let _ = restic.forget(std::slice::from_ref(&snapshot_id)).await;
            return Err(AgentError::internal(
                "confirming the snapshot",
                "the dump's size and sha256 were not reported (is restic >= 0.17?)",
            ));
        }
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
    let snapshot_id = record_digest(&restic, snapshot_id, measured.size, &measured.sha256).await;
    result.snapshot_id = Some(snapshot_id);
    result.size_bytes = Some(measured.size);
    result.sha256 = Some(measured.sha256);
    Ok(())
}

/// The dump's size and sha256 written onto its snapshot as `lifeboat-size=<bytes>` and
/// `lifeboat-sha256=<hex>`; returns the snapshot's id afterwards.
///
/// Tags rather than a sidecar file: `restic snapshots` shows them next to the snapshot, `restic copy`
/// and retention carry them along with it, and restores read them from the listing they already make.
/// A sidecar would be a second snapshot that retention, `latest` and people would all have to pair with
/// its dump. The price is `restic tag`'s exclusive lock and one more key derivation (~0.7 s); it waits
/// for the lock like every run (`--retry-lock`, which backup Jobs set), and it rewrites the snapshot
/// under a new id and deletes the old one, so the id returned is the only one left.
///
/// A dump whose tags could not be written is still a whole, confirmed backup: it is kept (and reported
/// under its first id), with its sha256 in the result; its restores can check only its size.
async fn record_digest(restic: &Restic, snapshot_id: String, size: u64, sha256: &str) -> String {
    let add = digest_tags(size, sha256);
    match restic.retag(&snapshot_id, &add, &[]).await {
        Ok(final_id) => final_id,
        Err(error) => {
            eprintln!(
                "lifeboat: warning: could not store size and sha256 on snapshot {snapshot_id} ({error}); \
                 the sha256 is only in this result, restores of the snapshot can check its size only"
            );
            snapshot_id
        }
    }
}

/// The tags a dump's snapshot carries for restores and for people without the cluster.
pub fn digest_tags(size: u64, sha256: &str) -> Vec<String> {
    vec![format!("{TAG_SIZE}={size}"), format!("{TAG_SHA256}={sha256}")]
}

/// `lifeboat agent stream --report … -- <dump tool>` for restic to run, and what restic's environment
/// must carry for it. The tool's environment changes come from the `Command` `Database` built: values
/// it sets (the password) ride in restic's environment, never on a command line; variables it removes
/// (restic's secrets) the wrapper removes again for the tool.
fn wrapper_command(dump: &std::process::Command, report_dir: &ReportDir) -> Result<Wrapper, AgentError> {
    let exe = std::env::current_exe()
        .map_err(|e| AgentError::internal("finding the agent's own program for restic to run", e))?;
    let mut command: Vec<OsString> = vec![
        exe.into(),
        "agent".into(),
        "stream".into(),
        "--report".into(),
        report_dir.path().into(),
    ];
    let mut env = Vec::new();
    for (name, value) in dump.get_envs() {
        match value {
            Some(value) => env.push((name.to_owned(), value.to_owned())),
            None => {
                command.push("--unset".into());
                command.push(name.to_owned());
            }
        }
    }
    // The repository location may carry credentials; the tool has no use for it.
    command.extend(["--unset".into(), "RESTIC_REPOSITORY".into()]);
    command.push("--".into());
    command.push(dump.get_program().to_owned());
    command.extend(dump.get_args().map(ToOwned::to_owned));
    Ok(Wrapper { env, command })
}

/// The wrapper's command line and what restic's environment must add for it.
struct Wrapper {
    env: Vec<(OsString, OsString)>,
    command: Vec<OsString>,
}

/// Why a backup failed, from restic's exit and the wrapper's report: the dump tool's own cause when it
/// failed first, restic's otherwise (no report at all means restic failed before starting the dump).
fn backup_failure(
    restic: &Restic,
    db: &Database,
    tool_name: &str,
    restic_done: &Finished,
    report: Option<&Report>,
) -> AgentError {
    let Some(report) = report else {
        return restic.failure("backup", restic_done);
    };
    if let Some(error) = &report.spawn_error {
        return AgentError::ToolMissing {
            tool: tool_name.to_string(),
            source: std::io::Error::other(error.clone()),
        };
    }
    // A restic that died or stopped reading first (lock, disk full) breaks the dump's pipe: its cause
    // comes first.
    if report.tool_succeeded || report.writer_closed_early {
        return restic.failure("backup", restic_done);
    }
    let stderr = db.redactor.redact(&report.stderr);
    db.failure_cause(&stderr)
        .unwrap_or_else(|| AgentError::DumpFailed {
            tool: tool_name.to_string(),
            status: report.status.clone(),
            detail: error_summary(&stderr),
        })
}

/// restic was interrupted before it could finish, so it should have written nothing; should a future
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
