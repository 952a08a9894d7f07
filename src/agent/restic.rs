//! restic, driven through its CLI and its `--json` output.
//!
//! The repository location goes to restic through RESTIC_REPOSITORY (it may carry credentials) and the
//! password through RESTIC_PASSWORD / RESTIC_PASSWORD_FILE, which restic reads from the environment the
//! agent inherited: neither is ever on a command line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use tokio::process::Command;

use super::cli::RepositoryArgs;
use super::error::{classify_restic, last_meaningful_line, AgentError};
use super::process::{describe_status, run_capture, Finished, Redactor, Tool};

/// Marks a snapshot whose content has not been confirmed yet. File backups set it when restic starts and
/// remove it (adding the size) once restic read every file, so a Job killed in between leaves a snapshot
/// that restores and retention recognise as unfinished. Database backups of older agents did the same;
/// today's are written by `restic backup --stdin-from-command`, which records nothing unless the dump
/// succeeded, so they never carry it.
pub const TAG_INCOMPLETE: &str = "lifeboat-incomplete";
pub const TAG_KIND: &str = "lifeboat-kind";
pub const TAG_FORMAT: &str = "lifeboat-format";
pub const TAG_DATABASE: &str = "lifeboat-database";

/// `key=value` as one restic tag. restic splits a `--tag` argument at commas, so a comma in the value
/// (PostgreSQL allows one in a database name) would make two tags; it is written `%2C` (and `%` as
/// `%25`, so the value reads back unchanged).
pub fn tag(key: &str, value: &str) -> String {
    format!("{key}={}", value.replace('%', "%25").replace(',', "%2C"))
}
/// Size and sha256 of a dump, stored on its snapshot after the backup (restores check the stream
/// against them, and people can without Lifeboat: docs/disaster-recovery.md). File backups carry the
/// size only: restic hashes their files one by one.
pub const TAG_SIZE: &str = "lifeboat-size";
pub const TAG_SHA256: &str = "lifeboat-sha256";

/// Environment variables holding database passwords, kept away from restic (it does not need them).
const DATABASE_SECRETS: [&str; 3] = ["PGPASSWORD", "MYSQL_PWD", "LIFEBOAT_DB_PASSWORD"];

/// restic's exit codes since 0.17: they name the cause more reliably than its wording.
const EXIT_REPOSITORY_MISSING: i32 = 10;
const EXIT_LOCK_FAILED: i32 = 11;
const EXIT_WRONG_PASSWORD: i32 = 12;

#[derive(Debug, Clone, Deserialize)]
pub struct Snapshot {
    pub id: String,
    pub time: String,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// For a snapshot rewritten by `restic tag`: the id it had before.
    #[serde(default)]
    pub original: Option<String>,
    /// What restic ≥ 0.17 records about the backup run.
    #[serde(default)]
    pub summary: Option<SnapshotSummary>,
}

/// The part of a snapshot's `summary` the agent uses: for a dump, the size of the stream.
#[derive(Debug, Clone, Deserialize)]
pub struct SnapshotSummary {
    #[serde(default)]
    pub total_bytes_processed: u64,
    #[serde(default)]
    pub total_files_processed: u64,
}

impl Snapshot {
    pub fn tags(&self) -> &[String] {
        self.tags.as_deref().unwrap_or(&[])
    }

    pub fn tag_value(&self, key: &str) -> Option<&str> {
        self.tags()
            .iter()
            .find_map(|tag| tag.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags().iter().any(|t| t == tag)
    }

    /// Complete means made by the agent (it carries the kind tag) and not marked unfinished. Database
    /// snapshots exist only once the dump succeeded; older agents' and file backups carry
    /// `lifeboat-incomplete` until confirmed.
    pub fn is_complete(&self) -> bool {
        self.tag_value(TAG_KIND).is_some() && !self.has_tag(TAG_INCOMPLETE)
    }

    /// The stream sizes this snapshot vouches for: restic's summary (one file: the dump) and the size
    /// tag of older agents. Both must match when both exist.
    pub fn expected_sizes(&self) -> Vec<u64> {
        let mut sizes = Vec::new();
        if let Some(summary) = self.summary.as_ref().filter(|s| s.total_files_processed == 1) {
            sizes.push(summary.total_bytes_processed);
        }
        if let Some(size) = self.tag_value(TAG_SIZE).and_then(|s| s.parse::<u64>().ok()) {
            sizes.push(size);
        }
        sizes
    }

    pub fn timestamp(&self) -> Option<jiff::Timestamp> {
        self.time.parse().ok()
    }
}

/// The summary line of `restic backup --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct BackupSummary {
    pub snapshot_id: Option<String>,
    #[serde(default)]
    pub total_bytes_processed: u64,
    #[serde(default)]
    pub total_files_processed: u64,
    #[serde(default)]
    pub data_added_packed: u64,
    #[serde(default)]
    pub data_added: u64,
}

pub struct Restic {
    program: PathBuf,
    repository: String,
    retry_lock: Option<String>,
    redactor: Redactor,
    /// The repository as shown in messages, with any credentials removed.
    pub display: String,
}

impl Restic {
    pub fn new(args: &RepositoryArgs, redactor: &Redactor) -> Result<Restic, AgentError> {
        if args.repository.trim().is_empty() {
            return Err(AgentError::InvalidArguments(
                "no restic repository: set --repository or RESTIC_REPOSITORY".into(),
            ));
        }
        let has_password = [
            "RESTIC_PASSWORD",
            "RESTIC_PASSWORD_FILE",
            "RESTIC_PASSWORD_COMMAND",
        ]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
        if !has_password {
            return Err(AgentError::InvalidArguments(
                "no restic password: set RESTIC_PASSWORD_FILE (a mounted Secret) or RESTIC_PASSWORD".into(),
            ));
        }
        let mut redactor = redactor.clone();
        let display = redact_url(&args.repository);
        if display != args.repository {
            redactor.add(&args.repository);
        }
        Ok(Restic {
            program: args.restic.clone(),
            repository: args.repository.clone(),
            retry_lock: args.retry_lock.clone(),
            redactor,
            display,
        })
    }

    fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new(&self.program);
        command.env("RESTIC_REPOSITORY", &self.repository);
        for name in DATABASE_SECRETS {
            command.env_remove(name);
        }
        if let Some(retry) = &self.retry_lock {
            command.arg("--retry-lock").arg(retry);
        }
        command.args(args);
        command
    }

    /// The cause of a failed restic run, from its exit code and stderr.
    pub fn failure(&self, subcommand: &str, finished: &Finished) -> AgentError {
        if let Some(cause) = classify_restic(&finished.stderr, &self.display) {
            return cause;
        }
        match finished.status.code() {
            Some(EXIT_REPOSITORY_MISSING) => AgentError::RepositoryNotFound {
                repository: self.display.clone(),
            },
            Some(EXIT_WRONG_PASSWORD) => AgentError::RepositoryWrongPassword {
                repository: self.display.clone(),
            },
            Some(EXIT_LOCK_FAILED) => AgentError::RepositoryLocked {
                repository: self.display.clone(),
                detail: last_meaningful_line(&finished.stderr),
            },
            _ => AgentError::ResticFailed {
                command: subcommand.to_string(),
                status: describe_status(&finished.status),
                detail: last_meaningful_line(&finished.stderr),
            },
        }
    }

    async fn run(&self, args: &[&str]) -> Result<String, AgentError> {
        let (finished, stdout) = run_capture("restic", self.command(args), None, &self.redactor).await?;
        if finished.status.success() {
            Ok(stdout)
        } else {
            Err(self.failure(args.first().copied().unwrap_or("restic"), &finished))
        }
    }

    /// Opens the repository (which proves the password) and, when allowed, creates a missing one.
    pub async fn ensure_repository(&self, init: bool) -> Result<(), AgentError> {
        match self.run(&["cat", "config"]).await {
            Ok(_) => Ok(()),
            Err(AgentError::RepositoryNotFound { .. }) if init => {
                eprintln!("lifeboat: initialising restic repository {}", self.display);
                self.run(&["init"]).await.map(|_| ())
            }
            Err(error) => Err(error),
        }
    }

    /// Makes sure a backup can start. Every restic run derives the repository key (scrypt, ~0.7 s on two
    /// cores), so the repository is probed only when it may have to be created; otherwise `restic
    /// backup`'s own failure names the cause (missing repository, wrong password, lock).
    pub async fn prepare_for_backup(&self, init: bool) -> Result<(), AgentError> {
        if !init {
            return Ok(());
        }
        if let Some(path) = self.local_path() {
            if path.join("config").is_file() {
                return Ok(());
            }
        }
        self.ensure_repository(true).await
    }

    /// The directory of a local repository (`/path` or `local:/path`).
    fn local_path(&self) -> Option<PathBuf> {
        let path = self.repository.strip_prefix("local:").unwrap_or(&self.repository);
        path.starts_with('/').then(|| PathBuf::from(path))
    }

    /// Snapshots carrying every tag in `tags`, oldest first.
    pub async fn snapshots(&self, tags: &[String]) -> Result<Vec<Snapshot>, AgentError> {
        // --no-lock: listing is read-only, and taking a lock costs restic a deliberate 200 ms wait; the
        // dump or restore that follows takes its own lock.
        let mut args = vec!["snapshots", "--json", "--no-lock"];
        let joined = tags.join(",");
        if !tags.is_empty() {
            args.push("--tag");
            args.push(&joined);
        }
        let stdout = self.run(&args).await?;
        let mut snapshots: Vec<Snapshot> = serde_json::from_str(stdout.trim())
            .map_err(|e| AgentError::internal("reading `restic snapshots --json`", e))?;
        snapshots.sort_by_key(|s| s.timestamp());
        Ok(snapshots)
    }

    /// One snapshot by (short) id; `None` when the repository has no such snapshot.
    pub async fn snapshot(&self, id: &str) -> Result<Option<Snapshot>, AgentError> {
        let (finished, stdout) = run_capture(
            "restic",
            self.command(&["snapshots", "--json", "--no-lock", id]),
            None,
            &self.redactor,
        )
        .await?;
        let parsed: Option<Vec<Snapshot>> = serde_json::from_str(stdout.trim()).ok();
        match parsed {
            Some(mut list) if !list.is_empty() => Ok(Some(list.remove(0))),
            // restic exits non-zero for an unknown id but still opened the repository fine.
            _ if finished.stderr.contains("no matching ID found")
                || finished.stderr.contains("not found") =>
            {
                Ok(None)
            }
            Some(_) if finished.status.success() => Ok(None),
            _ => Err(self.failure("snapshots", &finished)),
        }
    }

    /// Rewrites a snapshot's tags; restic gives the rewritten snapshot a new id, which is returned.
    pub async fn retag(&self, id: &str, add: &[String], remove: &[&str]) -> Result<String, AgentError> {
        let joined_add = add.join(",");
        let joined_remove = remove.join(",");
        let mut args = vec!["tag", "--json"];
        if !joined_add.is_empty() {
            args.extend(["--add", joined_add.as_str()]);
        }
        if !joined_remove.is_empty() {
            args.extend(["--remove", joined_remove.as_str()]);
        }
        args.push(id);
        let stdout = self.run(&args).await?;
        #[derive(Deserialize)]
        struct Changed {
            message_type: String,
            new_snapshot_id: Option<String>,
        }
        let changed = stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<Changed>(line).ok())
            .find(|c| c.message_type == "changed")
            .and_then(|c| c.new_snapshot_id);
        if let Some(new_id) = changed {
            return Ok(new_id);
        }
        // restic < 0.17 prints nothing for `tag --json`: find the rewritten snapshot by its `original`.
        let rewritten = self.snapshots(add).await?.into_iter().rev().find(|s| {
            s.original
                .as_deref()
                .is_some_and(|original| original.starts_with(id) || id.starts_with(original))
        });
        rewritten.map(|s| s.id).ok_or_else(|| {
            AgentError::internal(
                format!("tagging snapshot {id}"),
                "restic reported no rewritten snapshot",
            )
        })
    }

    /// Removes snapshots (without pruning their data: the next prune does that).
    pub async fn forget(&self, ids: &[String]) -> Result<(), AgentError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut args = vec!["forget"];
        args.extend(ids.iter().map(String::as_str));
        self.run(&args).await.map(|_| ())
    }

    /// Starts `restic backup --stdin-from-command … -- <command>` (restic ≥ 0.17): restic runs the command
    /// and records a snapshot only if it exits 0. `env` is added to restic's environment for the command
    /// (the database password: restic passes its environment on and never prints it).
    pub fn spawn_backup_command(
        &self,
        filename: &str,
        host: &str,
        tags: &[String],
        env: &[(OsString, OsString)],
        command: &[OsString],
    ) -> Result<Tool, AgentError> {
        let mut args: Vec<OsString> = vec![
            "backup".into(),
            "--json".into(),
            "--stdin-from-command".into(),
            "--stdin-filename".into(),
            filename.into(),
            "--host".into(),
            host.into(),
        ];
        for tag in tags {
            args.push("--tag".into());
            args.push(tag.into());
        }
        args.push("--".into());
        args.extend(command.iter().cloned());
        let mut restic = self.command(&args);
        restic.envs(env.iter().map(|(k, v)| (k, v)));
        Tool::spawn("restic", restic, Stdio::null(), Stdio::piped(), &self.redactor)
    }

    /// Starts `restic dump [--tag …] <snapshot> /`: the whole snapshot as a tar stream. The root rather
    /// than the dump's path, because the path is only known from the snapshot listing that runs at the
    /// same time (`tar.rs` reads the one file back out of the archive).
    pub fn spawn_dump_archive(&self, snapshot: &str, tags: &[String]) -> Result<Tool, AgentError> {
        let mut args = vec!["dump".to_string(), "--archive".into(), "tar".into()];
        if !tags.is_empty() {
            args.push("--tag".into());
            args.push(tags.join(","));
        }
        args.push(snapshot.into());
        args.push("/".into());
        Tool::spawn(
            "restic",
            self.command(&args),
            Stdio::null(),
            Stdio::piped(),
            &self.redactor,
        )
    }

    /// `restic backup <dir>`; returns the summary and restic's exit status (3 = some files unreadable).
    pub async fn backup_path(
        &self,
        path: &Path,
        host: &str,
        tags: &[String],
        excludes: &[String],
    ) -> Result<(Finished, Option<BackupSummary>), AgentError> {
        let mut command = self.command(&["backup", "--json", "--host", host]);
        for tag in tags {
            command.arg("--tag").arg(tag);
        }
        for exclude in excludes {
            command.arg("--exclude").arg(exclude);
        }
        command.arg(path);
        let mut tool = Tool::spawn("restic", command, Stdio::null(), Stdio::piped(), &self.redactor)?;
        let stdout = super::progress::keep_restic_backup_output(tool.child.stdout.take());
        let finished = tool.wait().await?;
        let stdout = stdout.await.unwrap_or_default();
        Ok((finished, parse_summary(&stdout)))
    }

    /// `restic restore <id>:<subfolder> --target <dir> --verify`: the snapshot's directory lands directly
    /// in the target, and restic re-reads what it wrote.
    pub async fn restore_path(
        &self,
        snapshot: &str,
        subfolder: &str,
        target: &Path,
    ) -> Result<(), AgentError> {
        let selector = format!("{snapshot}:{subfolder}");
        let mut command = self.command(&["restore", selector.as_str(), "--verify", "--target"]);
        command.arg(target);
        let (finished, _) = run_capture("restic", command, None, &self.redactor).await?;
        if finished.status.success() {
            Ok(())
        } else {
            Err(self.failure("restore", &finished))
        }
    }

    /// Removes locks of processes that are gone (restic's own staleness rules), so a Job killed earlier
    /// does not block maintenance. Live locks are left alone.
    pub async fn unlock_stale(&self) -> Result<(), AgentError> {
        self.run(&["unlock"]).await.map(|_| ())
    }

    /// `restic forget --json [--prune] <policy flags>`; returns (kept, removed).
    /// What the keep rules would keep and forget among the snapshots carrying all of `tags`
    /// (`restic forget --dry-run`): ids to keep, ids to forget.
    pub async fn retention_plan(
        &self,
        policy: &[String],
        tags: &[String],
    ) -> Result<(Vec<String>, Vec<String>), AgentError> {
        let mut args: Vec<String> = vec!["forget".into(), "--dry-run".into(), "--json".into()];
        args.extend(policy.iter().cloned());
        if !tags.is_empty() {
            args.push("--tag".into());
            args.push(tags.join(","));
        }
        let (finished, stdout) = run_capture("restic", self.command(&args), None, &self.redactor).await?;
        if !finished.status.success() {
            return Err(self.failure("forget", &finished));
        }
        #[derive(Deserialize)]
        struct Listed {
            id: String,
        }
        #[derive(Deserialize)]
        struct Group {
            #[serde(default)]
            keep: Option<Vec<Listed>>,
            #[serde(default)]
            remove: Option<Vec<Listed>>,
        }
        let groups: Vec<Group> = stdout
            .lines()
            .find(|line| line.trim_start().starts_with('['))
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| AgentError::internal("reading restic forget --dry-run --json", e))?
            .unwrap_or_default();
        let ids = |lists: Vec<Option<Vec<Listed>>>| -> Vec<String> {
            lists.into_iter().flatten().flatten().map(|s| s.id).collect()
        };
        let (keep, remove): (Vec<_>, Vec<_>) = groups.into_iter().map(|g| (g.keep, g.remove)).unzip();
        Ok((ids(keep), ids(remove)))
    }

    /// `restic prune`: deletes the data no snapshot references any more.
    pub async fn prune(&self) -> Result<(), AgentError> {
        self.run(&["prune"]).await.map(|_| ())
    }

    /// `restic check [--read-data-subset]`.
    pub async fn check(&self, read_data_subset: Option<&str>) -> Result<(), AgentError> {
        let mut args = vec!["check"];
        if let Some(subset) = read_data_subset {
            args.extend(["--read-data-subset", subset]);
        }
        let (finished, stdout) = run_capture("restic", self.command(&args), None, &self.redactor).await?;
        if finished.status.success() {
            return Ok(());
        }
        // check reports the damage on stdout and only the verdict on stderr; both tell the cause.
        let combined = Finished {
            status: finished.status,
            stderr: format!("{}\n{}", self.redactor.redact(&stdout), finished.stderr),
            killed_by_us: false,
        };
        match self.failure("check", &combined) {
            AgentError::ResticFailed { detail, .. } => Err(AgentError::RepositoryCorrupt {
                repository: self.display.clone(),
                detail,
            }),
            other => Err(other),
        }
    }
}

pub fn parse_summary(stdout: &str) -> Option<BackupSummary> {
    #[derive(Deserialize)]
    struct Typed {
        message_type: String,
    }
    stdout
        .lines()
        .rev()
        .filter(|line| {
            serde_json::from_str::<Typed>(line)
                .map(|t| t.message_type == "summary")
                .unwrap_or(false)
        })
        .find_map(|line| serde_json::from_str::<BackupSummary>(line).ok())
}

/// Hides `user:password@` in URL-like repository strings (`rest:https://u:p@host/`, `s3:…`).
pub fn redact_url(repository: &str) -> String {
    if let Some(scheme_end) = repository.find("://") {
        let rest = &repository[scheme_end + 3..];
        let host_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..host_end].rfind('@') {
            return format!("{}***@{}", &repository[..scheme_end + 3], &rest[at + 1..]);
        }
    }
    repository.to_string()
}

/// User tags are `key=value`; restic splits tags on commas, so a comma would silently make two tags.
pub fn validate_tags(tags: &[String]) -> Result<(), AgentError> {
    for tag in tags {
        let valid = !tag.is_empty()
            && !tag.contains(',')
            && !tag.chars().any(char::is_whitespace)
            && !tag.starts_with("lifeboat-");
        if !valid {
            return Err(AgentError::InvalidArguments(format!(
                "tag {tag:?} must be non-empty, without commas or spaces, and not start with `lifeboat-` (reserved)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_value_with_a_comma_stays_one_tag() {
        assert_eq!(tag("lifeboat-database", "a,b%c"), "lifeboat-database=a%2Cb%25c");
        assert_eq!(tag("lifeboat-database", "shop"), "lifeboat-database=shop");
    }

    #[test]
    fn credentials_in_repository_urls_are_hidden() {
        assert_eq!(
            redact_url("rest:https://bob:hunter2@backup.svc:8000/hotel"),
            "rest:https://***@backup.svc:8000/hotel"
        );
        assert_eq!(redact_url("/var/lib/repo"), "/var/lib/repo");
        assert_eq!(
            redact_url("s3:https://s3.example/bucket@2"),
            "s3:https://s3.example/bucket@2"
        );
    }

    #[test]
    fn a_snapshot_is_complete_only_once_confirmed() {
        let snapshot = |tags: &[&str]| Snapshot {
            id: "x".into(),
            time: "2026-01-01T00:00:00Z".into(),
            paths: vec![],
            tags: Some(tags.iter().map(|t| t.to_string()).collect()),
            original: None,
            summary: None,
        };
        assert!(!snapshot(&["lifeboat-incomplete", "lifeboat-kind=postgres"]).is_complete());
        // An older agent's confirmed snapshot, and today's (complete by existing).
        assert!(
            snapshot(&["lifeboat-kind=postgres", "lifeboat-size=12", "lifeboat-sha256=ab"]).is_complete()
        );
        assert!(snapshot(&["lifeboat-kind=postgres", "lifeboat-format=custom"]).is_complete());
        assert!(!snapshot(&["policy=x"]).is_complete());
        assert_eq!(snapshot(&["lifeboat-size=12"]).tag_value(TAG_SIZE), Some("12"));
    }

    #[test]
    fn reserved_or_ambiguous_tags_are_refused() {
        assert!(validate_tags(&["policy=hotel".into()]).is_ok());
        assert!(validate_tags(&["a=b,c=d".into()]).is_err());
        assert!(validate_tags(&["lifeboat-size=1".into()]).is_err());
    }
}
