//! `lifeboat agent restore`: a snapshot back into a database (`restic dump | pg_restore/psql/mariadb`)
//! or a directory, with the sha256 recorded at backup time checked on the stream.

use std::process::Stdio;

use super::cli::{Engine, Kind, RestoreArgs};
use super::database::Database;
use super::error::{error_summary, AgentError};
use super::process::{enlarge_pipe, pump, Redactor, Tool};
use super::restic::{Restic, Snapshot, TAG_FORMAT, TAG_KIND, TAG_SHA256, TAG_SIZE};
use super::result::AgentResult;
use super::signals::StopSignal;
use super::verify;

pub async fn run(
    args: &RestoreArgs,
    result: &mut AgentResult,
    redactor: &mut Redactor,
    stop: &StopSignal,
) -> Result<(), AgentError> {
    result.kind = Some(args.target.as_str().to_string());
    for tag in &args.tags {
        if tag.is_empty() || tag.contains(',') {
            return Err(AgentError::InvalidArguments(format!(
                "tag filter {tag:?} must be non-empty and without commas"
            )));
        }
    }
    // Parsed before anything is touched: a typo in the checks must not cost a full restore to find.
    let checks = verify::load_spec(&args.checks)?;
    if checks.is_some() && args.target == Kind::Files {
        return Err(AgentError::InvalidArguments(
            "verification checks need a database target, not files".into(),
        ));
    }

    // No separate repository probe: listing snapshots fails with the same classified causes.
    let restic = Restic::new(&args.repo, redactor)?;
    let snapshot = select_snapshot(&restic, args).await?;
    result.snapshot_id = Some(snapshot.id.clone());
    result.snapshot_time = Some(snapshot.time.clone());

    let engine = match args.target {
        Kind::Files => return files(&restic, &snapshot, args, result).await,
        Kind::Postgres => Engine::Postgres,
        Kind::Mysql => Engine::Mysql,
    };
    let format = snapshot_format(&snapshot, engine)?;
    let db = Database::from_args(engine, &args.db, format != "dumpall", redactor)?;
    stream(&restic, &db, &snapshot, &format, args, result, stop).await?;

    if let Some(spec) = checks {
        let results = verify::run_checks(&db, &spec).await?;
        let failed = verify::failure(&results);
        result.set_checks(results);
        if let Some(error) = failed {
            return Err(error);
        }
    }
    Ok(())
}

/// The snapshot to restore: an explicit id, or the newest complete one carrying every requested tag and
/// made from the same kind of source.
async fn select_snapshot(restic: &Restic, args: &RestoreArgs) -> Result<Snapshot, AgentError> {
    let snapshot = if args.snapshot == "latest" {
        let mut filter = args.tags.clone();
        filter.push(format!("{TAG_KIND}={}", args.target.as_str()));
        let snapshots = restic.snapshots(&filter).await?;
        snapshots
            .into_iter()
            .rfind(|s| args.allow_unverified || s.is_complete())
            .ok_or_else(|| AgentError::SnapshotNotFound {
                selector: format!(
                    "latest complete {} snapshot with tags [{}]",
                    args.target.as_str(),
                    args.tags.join(", ")
                ),
            })?
    } else {
        restic
            .snapshot(&args.snapshot)
            .await?
            .ok_or_else(|| AgentError::SnapshotNotFound {
                selector: format!("id {}", args.snapshot),
            })?
    };
    if let Some(kind) = snapshot.tag_value(TAG_KIND) {
        if kind != args.target.as_str() {
            return Err(AgentError::InvalidArguments(format!(
                "snapshot {} holds a {kind} backup and cannot be restored into a {} target",
                short(&snapshot.id),
                args.target.as_str()
            )));
        }
    }
    if !args.allow_unverified && !snapshot.is_complete() {
        let why = if snapshot.tag_value(TAG_KIND).is_some() {
            "was not confirmed by its backup (the Job failed or was killed before it finished)"
        } else {
            "was not made by the Lifeboat agent, so there is no size or sha256 to check it against"
        };
        return Err(AgentError::SnapshotUnverified {
            snapshot: short(&snapshot.id).to_string(),
            why: why.into(),
        });
    }
    Ok(snapshot)
}

/// The dump format, from the agent's tag or, for snapshots made by hand, from the file name.
fn snapshot_format(snapshot: &Snapshot, engine: Engine) -> Result<String, AgentError> {
    if let Some(format) = snapshot.tag_value(TAG_FORMAT) {
        return Ok(format.to_string());
    }
    let path = snapshot.paths.first().map(String::as_str).unwrap_or_default();
    match (engine, path.rsplit('.').next()) {
        (Engine::Postgres, Some("pgdump" | "dump")) => Ok("custom".into()),
        (Engine::Postgres, Some("sql")) => Ok("plain".into()),
        (Engine::Mysql, Some("sql")) => Ok("sql".into()),
        _ => Err(AgentError::InvalidArguments(format!(
            "cannot tell the dump format of snapshot {} ({path}): it has no {TAG_FORMAT} tag",
            short(&snapshot.id)
        ))),
    }
}

async fn stream(
    restic: &Restic,
    db: &Database,
    snapshot: &Snapshot,
    format: &str,
    args: &RestoreArgs,
    result: &mut AgentResult,
    stop: &StopSignal,
) -> Result<(), AgentError> {
    let path = snapshot.paths.first().ok_or_else(|| {
        AgentError::InvalidArguments(format!("snapshot {} has no path", short(&snapshot.id)))
    })?;
    if format != "dumpall" {
        db.prepare_target(args.drop_database, args.create_database)
            .await?;
    }
    let (loader_name, loader_command) = db.load_command(format, args.no_owner);
    let mut loader = Tool::spawn(
        &loader_name,
        loader_command,
        Stdio::piped(),
        Stdio::null(),
        &db.redactor,
    )?;
    let mut loader_stdin = loader
        .child
        .stdin
        .take()
        .ok_or_else(|| AgentError::internal(format!("starting {loader_name}"), "no stdin pipe"))?;
    enlarge_pipe(&loader_stdin);
    let mut dump = restic.spawn_dump(&snapshot.id, path)?;
    let mut dump_stdout = dump
        .child
        .stdout
        .take()
        .ok_or_else(|| AgentError::internal("starting restic dump", "no stdout pipe"))?;
    enlarge_pipe(&dump_stdout);

    let pumped = tokio::select! {
        pumped = pump(&mut dump_stdout, &mut loader_stdin, true) => pumped,
        signal = stop.requested() => {
            // The loader runs in one transaction (single database): killing it rolls the restore back.
            loader.kill();
            let _ = loader.wait().await;
            // Interrupted rather than killed, so restic removes its lock on the way out.
            let _ = dump.stop(std::time::Duration::from_secs(5)).await;
            return Err(AgentError::Interrupted { signal });
        }
    };
    let dump_done = dump.wait().await?;
    let dump_ok = dump_done.status.success() && pumped.is_ok();
    if !dump_ok {
        // Without the whole dump the loader must not commit: kill it before it sees end of input.
        loader.kill();
        let _ = loader.wait().await;
        drop(loader_stdin);
        if let Err(error) = pumped {
            return Err(AgentError::internal("reading restic dump", error));
        }
        return Err(restic.failure("dump", &dump_done));
    }
    drop(loader_stdin);
    let loader_done = loader.wait().await?;
    let measured = pumped.map_err(|e| AgentError::internal("reading restic dump", e))?;
    if !loader_done.status.success() {
        return Err(db
            .failure_cause(&loader_done.stderr)
            .unwrap_or_else(|| AgentError::LoadFailed {
                tool: loader_name.clone(),
                status: loader_done.describe_status(),
                detail: error_summary(&loader_done.stderr),
            }));
    }
    result.size_bytes = Some(measured.size);
    result.sha256 = Some(measured.sha256.clone());
    check_recorded(snapshot, measured.size, &measured.sha256)
}

/// Compares what was read with what the backup recorded. restic already authenticates every blob, so a
/// mismatch means the snapshot is not the dump the backup saw (or a bug), and the restore must not be
/// trusted.
fn check_recorded(snapshot: &Snapshot, size: u64, sha256: &str) -> Result<(), AgentError> {
    let expected_size = snapshot.tag_value(TAG_SIZE).and_then(|s| s.parse::<u64>().ok());
    let expected_sha = snapshot.tag_value(TAG_SHA256);
    let size_ok = expected_size.is_none_or(|expected| expected == size);
    let sha_ok = expected_sha.is_none_or(|expected| expected.eq_ignore_ascii_case(sha256));
    if size_ok && sha_ok {
        return Ok(());
    }
    Err(AgentError::ChecksumMismatch {
        snapshot: short(&snapshot.id).to_string(),
        expected_size: expected_size.unwrap_or(0),
        expected_sha256: expected_sha.unwrap_or("(none)").to_string(),
        actual_size: size,
        actual_sha256: sha256.to_string(),
    })
}

async fn files(
    restic: &Restic,
    snapshot: &Snapshot,
    args: &RestoreArgs,
    result: &mut AgentResult,
) -> Result<(), AgentError> {
    let target = args.path.as_ref().ok_or_else(|| {
        AgentError::InvalidArguments("files restore needs --path (the directory to restore into)".into())
    })?;
    std::fs::create_dir_all(target)
        .map_err(|e| AgentError::internal(format!("creating {}", target.display()), e))?;
    let source = snapshot.paths.first().ok_or_else(|| {
        AgentError::InvalidArguments(format!("snapshot {} has no path", short(&snapshot.id)))
    })?;
    restic.restore_path(&snapshot.id, source, target).await?;
    result.size_bytes = snapshot.tag_value(TAG_SIZE).and_then(|s| s.parse().ok());
    Ok(())
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(tags: &[&str], path: &str) -> Snapshot {
        Snapshot {
            id: "0123456789abcdef".into(),
            time: "2026-01-01T00:00:00Z".into(),
            paths: vec![path.into()],
            tags: Some(tags.iter().map(|t| t.to_string()).collect()),
            original: None,
        }
    }

    #[test]
    fn a_changed_dump_is_refused() {
        let s = snapshot(&["lifeboat-size=3", "lifeboat-sha256=abc"], "/x.pgdump");
        assert!(check_recorded(&s, 3, "ABC").is_ok());
        let error = check_recorded(&s, 4, "abc").expect_err("size differs");
        assert_eq!(error.reason(), super::super::error::Reason::ChecksumMismatch);
    }

    #[test]
    fn hand_made_snapshots_get_their_format_from_the_file_name() {
        assert_eq!(
            snapshot_format(&snapshot(&[], "/hotel.pgdump"), Engine::Postgres)
                .ok()
                .as_deref(),
            Some("custom")
        );
        assert_eq!(
            snapshot_format(&snapshot(&[], "/crm.sql"), Engine::Mysql)
                .ok()
                .as_deref(),
            Some("sql")
        );
        assert!(snapshot_format(&snapshot(&[], "/crm.bin"), Engine::Mysql).is_err());
    }
}
