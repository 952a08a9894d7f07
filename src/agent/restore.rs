//! `lifeboat agent restore`: a snapshot back into a database (`restic dump | pg_restore/psql/mariadb`)
//! or a directory, with the sha256 recorded at backup time checked on the stream.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdout;

use super::cli::{Engine, Kind, RestoreArgs};
use super::database::Database;
use super::error::{error_summary, AgentError};
use super::loader::Loader;
use super::process::{enlarge_pipe, pump_holding_back, Redactor, Tool};
use super::restic::{Restic, Snapshot, TAG_FORMAT, TAG_KIND, TAG_SHA256, TAG_SIZE};
use super::result::AgentResult;
use super::signals::StopSignal;
use super::tar;
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

    let restic = Restic::new(&args.repo, redactor)?;
    if let Some(sha) = &args.expect_sha256 {
        if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(AgentError::InvalidArguments(format!(
                "--expect-sha256 {sha:?} is not a sha256 (64 hex digits)"
            )));
        }
    }
    let engine = match args.target {
        Kind::Files => {
            // No separate repository probe: listing snapshots fails with the same classified causes.
            let lookup = lookup(&restic, args).await?;
            let snapshot = accept(lookup.snapshot, args)?;
            result.snapshot_id = Some(snapshot.id.clone());
            result.snapshot_time = Some(snapshot.time.clone());
            return files(&restic, &snapshot, args, result).await;
        }
        Kind::Postgres => Engine::Postgres,
        Kind::Mysql => Engine::Mysql,
    };
    if args.wait_for_database > 0 {
        // Before the dump starts: restic need not hold a stream open while the server comes up.
        Database::from_args(engine, &args.db, false, redactor)?
            .wait_until_reachable(Duration::from_secs(args.wait_for_database), stop)
            .await?;
    }
    let db = stream(&restic, engine, args, result, redactor, stop).await?;

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

/// The tags `latest` must carry: the caller's, and the target's kind.
fn latest_filter(args: &RestoreArgs) -> Vec<String> {
    let mut filter = args.tags.clone();
    filter.push(format!("{TAG_KIND}={}", args.target.as_str()));
    filter
}

struct Lookup {
    snapshot: Snapshot,
    /// The snapshot is what `restic dump latest --tag …` picks (the newest matching one), so a dump of
    /// `latest` started before the listing finished streams this snapshot.
    is_newest: bool,
}

/// The snapshot to restore: an explicit id, or the newest complete one carrying every requested tag and
/// made from the same kind of source.
async fn lookup(restic: &Restic, args: &RestoreArgs) -> Result<Lookup, AgentError> {
    if args.snapshot != "latest" {
        let snapshot =
            restic
                .snapshot(&args.snapshot)
                .await?
                .ok_or_else(|| AgentError::SnapshotNotFound {
                    selector: format!("id {}", args.snapshot),
                })?;
        return Ok(Lookup {
            snapshot,
            is_newest: true,
        });
    }
    let snapshots = restic.snapshots(&latest_filter(args)).await?;
    let newest = snapshots.last().map(|s| s.id.clone());
    let snapshot = snapshots
        .into_iter()
        .rfind(|s| args.allow_unverified || s.is_complete())
        .ok_or_else(|| AgentError::SnapshotNotFound {
            selector: format!(
                "latest complete {} snapshot with tags [{}]",
                args.target.as_str(),
                args.tags.join(", ")
            ),
        })?;
    let is_newest = newest.as_deref() == Some(snapshot.id.as_str());
    Ok(Lookup { snapshot, is_newest })
}

/// Refuses a snapshot of another kind, or one the agent did not complete (unless allowed).
fn accept(snapshot: Snapshot, args: &RestoreArgs) -> Result<Snapshot, AgentError> {
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

/// What a snapshot's stream must be: sizes from restic's summary and the `lifeboat-size` tag, sha256 from
/// the `lifeboat-sha256` tag the backup stored in the repository and from the caller (the Backup's
/// status), so a drill or a `latest` restore, which has no Backup to ask, still checks the sha256.
struct Expected {
    sizes: Vec<u64>,
    sha256: Vec<String>,
}

impl Expected {
    fn of(snapshot: &Snapshot, args: &RestoreArgs) -> Expected {
        let mut sha256: Vec<String> = snapshot
            .tag_value(TAG_SHA256)
            .map(str::to_string)
            .into_iter()
            .collect();
        sha256.extend(args.expect_sha256.iter().cloned());
        Expected {
            sizes: snapshot.expected_sizes(),
            sha256,
        }
    }

    fn size_ok(&self, size: u64) -> bool {
        self.sizes.iter().all(|expected| *expected == size)
    }

    fn sha_ok(&self, sha256: &str) -> bool {
        self.sha256
            .iter()
            .all(|expected| expected.eq_ignore_ascii_case(sha256))
    }

    fn mismatch(&self, snapshot: &Snapshot, size: u64, sha256: &str) -> AgentError {
        AgentError::ChecksumMismatch {
            snapshot: short(&snapshot.id).to_string(),
            expected_size: self
                .sizes
                .iter()
                .copied()
                .find(|s| *s != size)
                .or(self.sizes.first().copied())
                .unwrap_or(0),
            expected_sha256: self
                .sha256
                .iter()
                .find(|s| !s.eq_ignore_ascii_case(sha256))
                .or(self.sha256.first())
                .cloned()
                .unwrap_or_else(|| "(none)".into()),
            actual_size: size,
            actual_sha256: sha256.to_string(),
        }
    }
}

/// A running `restic dump … /` and the dump file's header read from it.
struct Dump {
    tool: Tool,
    stdout: ChildStdout,
}

impl Dump {
    fn start(restic: &Restic, snapshot: &str, tags: &[String]) -> Result<Dump, AgentError> {
        let mut tool = restic.spawn_dump_archive(snapshot, tags)?;
        let stdout = tool
            .child
            .stdout
            .take()
            .ok_or_else(|| AgentError::internal("starting restic dump", "no stdout pipe"))?;
        enlarge_pipe(&stdout);
        Ok(Dump { tool, stdout })
    }

    /// Interrupted rather than killed, so restic removes its lock on the way out.
    async fn stop(self) {
        drop(self.stdout);
        let _ = self.tool.stop(DUMP_GRACE).await;
    }
}

/// The end of the dump kept from the loader until the whole stream is checked: pg_restore's custom
/// format tells it where the archive ends, so with every byte it would commit before the agent knew the
/// sha256 was right.
const HOLD_BACK_BYTES: u64 = 64 * 1024;

/// How long `restic dump` gets to exit cleanly (and remove its lock) after being interrupted.
const DUMP_GRACE: Duration = Duration::from_secs(5);

/// The snapshot into the database: `restic dump` starts at the same moment as the snapshot listing
/// (each restic run spends ~0.7 s deriving the repository key), and its stream is held until the listing
/// has said which snapshot it is and whether it may be restored.
async fn stream(
    restic: &Restic,
    engine: Engine,
    args: &RestoreArgs,
    result: &mut AgentResult,
    redactor: &mut Redactor,
    stop: &StopSignal,
) -> Result<Database, AgentError> {
    let latest = args.snapshot == "latest";
    let filter = if latest { latest_filter(args) } else { vec![] };
    let mut dump = Dump::start(restic, &args.snapshot, &filter)?;
    let checked = async {
        let lookup = lookup(restic, args).await?;
        let is_newest = lookup.is_newest;
        let snapshot = accept(lookup.snapshot, args)?;
        let format = snapshot_format(&snapshot, engine)?;
        Ok::<_, AgentError>((snapshot, format, is_newest))
    }
    .await;
    let (snapshot, format, is_newest) = match checked {
        Ok(checked) => checked,
        Err(error) => {
            dump.stop().await;
            return Err(error);
        }
    };
    result.snapshot_id = Some(snapshot.id.clone());
    result.snapshot_time = Some(snapshot.time.clone());
    let expected = Expected::of(&snapshot, args);
    if expected.sha256.is_empty() {
        // Snapshots of agents that did not store the digest yet (and ones whose tagging failed).
        eprintln!(
            "lifeboat: snapshot {} has no stored sha256 and none was given: checking its size only",
            short(&snapshot.id)
        );
    }
    let path = snapshot.paths.first().cloned().unwrap_or_default();
    let matches =
        |entry: &tar::Entry| entry.name == path.trim_start_matches('/') && expected.size_ok(entry.size);

    let db = match Database::from_args(engine, &args.db, format != "dumpall", redactor) {
        Ok(db) => db,
        Err(error) => {
            dump.stop().await;
            return Err(error);
        }
    };
    if !is_newest {
        // `latest` is a snapshot restores must not take (unfinished, say): dump the chosen one by id.
        eprintln!(
            "lifeboat: the newest matching snapshot is not restorable, restoring {} instead",
            short(&snapshot.id)
        );
        dump.stop().await;
        dump = Dump::start(restic, &snapshot.id, &[])?;
    }
    if format != "dumpall" {
        if let Err(error) = db.prepare_target(args.drop_database, args.create_database).await {
            dump.stop().await;
            return Err(error);
        }
    }
    let (mut dump, mut entry) = header_or_failure(dump, restic, &snapshot).await?;
    // restic stamps a `--stdin` file with its snapshot's time (rounded to the second by Go's tar writer):
    // a different time means `latest` resolved to another snapshot, even one of exactly the same size.
    let same_snapshot = |entry: &tar::Entry| {
        snapshot
            .timestamp()
            .is_some_and(|time| (entry.mtime - time.as_second()).abs() <= 1)
    };
    if latest && is_newest && (!matches(&entry) || !same_snapshot(&entry)) {
        // A backup finished between the listing and the dump, so `latest` streams another snapshot (a
        // snapshot made by hand, whose file keeps its own mtime, is also dumped again by id: slower, safe).
        eprintln!(
            "lifeboat: `latest` changed while the restore started, restoring {} by id",
            short(&snapshot.id)
        );
        dump.stop().await;
        (dump, entry) = header_or_failure(Dump::start(restic, &snapshot.id, &[])?, restic, &snapshot).await?;
    }
    if !matches(&entry) {
        dump.stop().await;
        if entry.name != path.trim_start_matches('/') {
            return Err(AgentError::InvalidArguments(format!(
                "snapshot {} holds {} where its listing says {path}",
                short(&snapshot.id),
                entry.name
            )));
        }
        return Err(expected.mismatch(&snapshot, entry.size, "(not read)"));
    }

    let mut loader = match Loader::start(&db, &format, args.no_owner).await {
        Ok(started) => started,
        Err(error) => {
            dump.stop().await;
            return Err(error);
        }
    };
    let mut loader_stdin = match loader.take_stdin() {
        Ok(stdin) => stdin,
        Err(error) => {
            loader.kill();
            dump.stop().await;
            return Err(error);
        }
    };

    let Dump {
        tool: dump_tool,
        stdout: mut dump_stdout,
    } = dump;
    let copied = async {
        let (measured, held) =
            pump_holding_back(&mut dump_stdout, &mut loader_stdin, entry.size, HOLD_BACK_BYTES).await?;
        let single = tar::finish(&mut dump_stdout, entry.size).await?;
        Ok::<_, std::io::Error>((measured, held, single))
    };
    let pumped = tokio::select! {
        pumped = copied => pumped,
        signal = stop.requested() => {
            // The loader runs in one transaction (single database): killing it rolls the restore back.
            loader.kill();
            let _ = loader.wait().await;
            let _ = dump_tool.stop(DUMP_GRACE).await;
            return Err(AgentError::Interrupted { signal });
        }
    };
    drop(dump_stdout);
    let dump_done = dump_tool.wait().await?;
    let dump_ok = dump_done.status.success() && pumped.is_ok();
    if !dump_ok {
        // Without the whole dump the loader must not commit: kill it before it sees end of input.
        loader.kill();
        let _ = loader.wait().await;
        drop(loader_stdin);
        return match pumped {
            Err(error) if dump_done.status.success() => {
                Err(AgentError::internal("reading restic dump", error))
            }
            _ => Err(restic.failure("dump", &dump_done)),
        };
    }
    let (measured, held, single) = pumped.map_err(|e| AgentError::internal("reading restic dump", e))?;
    result.size_bytes = Some(measured.size);
    result.sha256 = Some(measured.sha256.clone());
    // Checked before the loader sees the end of its input, so a wrong stream is never committed.
    let verdict = if measured.size != entry.size {
        Err(AgentError::internal(
            "reading restic dump",
            format!("the stream ended after {} of {} bytes", measured.size, entry.size),
        ))
    } else if !single {
        Err(AgentError::InvalidArguments(format!(
            "snapshot {} holds more than one file: it is not a dump",
            short(&snapshot.id)
        )))
    } else if !expected.size_ok(measured.size) || !expected.sha_ok(&measured.sha256) {
        if latest
            && is_newest
            && expected.size_ok(measured.size)
            && latest_moved(restic, args, &snapshot).await
        {
            Err(AgentError::LatestChanged {
                snapshot: short(&snapshot.id).to_string(),
                expected_sha256: expected.sha256.first().cloned().unwrap_or_default(),
                actual_sha256: measured.sha256.clone(),
            })
        } else {
            Err(expected.mismatch(&snapshot, measured.size, &measured.sha256))
        }
    } else {
        Ok(())
    };
    if let Err(error) = verdict {
        loader.kill();
        let _ = loader.wait().await;
        return Err(error);
    }
    // The tail the loader needs to finish; a loader that already stopped reports its own failure below.
    if !measured.writer_closed_early {
        let _ = loader_stdin.write_all(&held).await;
        let _ = loader_stdin.flush().await;
    }
    drop(loader_stdin);
    let (failed_tool, loader_done) = loader.wait().await?;
    if !loader_done.status.success() {
        return Err(db
            .failure_cause(&loader_done.stderr)
            .unwrap_or_else(|| AgentError::LoadFailed {
                tool: failed_tool,
                status: loader_done.describe_status(),
                detail: error_summary(&loader_done.stderr),
            }));
    }
    Ok(db)
}

/// Whether a newer snapshot than `chosen` matches the `latest` filter now: then a stream of `latest`
/// that does not match `chosen` came from that newer snapshot, not from damage. Asked only after a
/// mismatch, so the common path pays no extra restic run.
async fn latest_moved(restic: &Restic, args: &RestoreArgs, chosen: &Snapshot) -> bool {
    match restic.snapshots(&latest_filter(args)).await {
        Ok(snapshots) => snapshots.last().is_some_and(|newest| newest.id != chosen.id),
        Err(_) => false,
    }
}

/// The dump file's header, or why there is none: restic's own failure (no such snapshot, locked,
/// unreachable) when it exited non-zero, else the snapshot is not a single-file dump.
async fn header_or_failure(
    mut dump: Dump,
    restic: &Restic,
    snapshot: &Snapshot,
) -> Result<(Dump, tar::Entry), AgentError> {
    let detail = match tar::first_file(&mut dump.stdout).await {
        Ok(Some(entry)) => return Ok((dump, entry)),
        Ok(None) => "it holds no file".to_string(),
        Err(error) => error.to_string(),
    };
    let Dump { mut tool, stdout } = dump;
    drop(stdout);
    // restic closed its output: it is exiting, normally on its own.
    let finished = if tokio::time::timeout(DUMP_GRACE, tool.child.wait()).await.is_ok() {
        tool.wait().await?
    } else {
        tool.stop(DUMP_GRACE).await?
    };
    if !finished.status.success() && !finished.killed_by_us {
        return Err(restic.failure("dump", &finished));
    }
    Err(AgentError::InvalidArguments(format!(
        "snapshot {} is not a single dump file: {detail}",
        short(&snapshot.id)
    )))
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
            summary: None,
        }
    }

    fn restore_args(extra: &[&str]) -> RestoreArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: RestoreArgs,
        }
        let mut argv = vec!["x", "--target", "postgres", "--repository", "/r"];
        argv.extend(extra);
        Cli::parse_from(argv).args
    }

    #[test]
    fn a_changed_dump_is_refused() {
        let s = snapshot(&["lifeboat-size=3", "lifeboat-sha256=abc"], "/x.pgdump");
        let expected = Expected::of(&s, &restore_args(&[]));
        assert!(expected.size_ok(3) && expected.sha_ok("ABC"));
        assert!(!expected.size_ok(4));
        let error = expected.mismatch(&s, 4, "abc");
        assert_eq!(error.reason(), super::super::error::Reason::ChecksumMismatch);
    }

    #[test]
    fn the_sha256_from_the_backup_status_and_the_summary_size_are_both_checked() {
        let mut s = snapshot(&["lifeboat-kind=postgres"], "/x.pgdump");
        s.summary = Some(crate::agent::restic::SnapshotSummary {
            total_bytes_processed: 7,
            total_files_processed: 1,
        });
        let sha = "a".repeat(64);
        let expected = Expected::of(&s, &restore_args(&["--expect-sha256", &sha]));
        assert!(expected.size_ok(7) && !expected.size_ok(8));
        assert!(expected.sha_ok(&sha.to_uppercase()) && !expected.sha_ok(&"b".repeat(64)));
    }

    #[test]
    fn a_restore_without_a_backup_to_ask_checks_the_sha256_stored_with_the_snapshot() {
        let stored = "c".repeat(64);
        let tag = format!("lifeboat-sha256={stored}");
        let s = snapshot(&["lifeboat-kind=postgres", "lifeboat-size=9", &tag], "/x.pgdump");
        // A drill or a `latest` restore: no --expect-sha256.
        let expected = Expected::of(&s, &restore_args(&["--tag", "policy=hotel"]));
        assert!(expected.sha_ok(&stored));
        assert!(!expected.sha_ok(&"d".repeat(64)), "the stored sha256 is checked");
        let error = expected.mismatch(&s, 9, &"d".repeat(64)).to_string();
        assert!(
            error.contains(&stored) && error.contains(&"d".repeat(64)),
            "{error}"
        );

        // A Backup's status and the repository that disagree: the stream must match both.
        let other = "e".repeat(64);
        let both = Expected::of(&s, &restore_args(&["--expect-sha256", &other]));
        assert!(!both.sha_ok(&stored) && !both.sha_ok(&other));
    }

    #[test]
    fn a_snapshot_without_a_stored_sha256_is_checked_by_size_only() {
        let s = snapshot(&["lifeboat-kind=postgres", "lifeboat-size=9"], "/x.pgdump");
        let expected = Expected::of(&s, &restore_args(&[]));
        assert!(expected.sha256.is_empty());
        assert!(expected.sha_ok(&"d".repeat(64)) && expected.size_ok(9) && !expected.size_ok(10));
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
