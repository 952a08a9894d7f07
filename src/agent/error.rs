//! What can go wrong in the data path, phrased for the person who has to fix it.
//!
//! Every failure ends as one line on stderr and one `reason` code in the JSON result, so an operator can
//! alert on the code and a person can act on the line without reading tool logs.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable cause, written as `reason` into the result (see docs/agent-result.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    DatabaseAuthFailed,
    DatabaseUnreachable,
    DatabaseMissing,
    RepositoryLocked,
    RepositoryCorrupt,
    RepositoryWrongPassword,
    RepositoryNotFound,
    RepositoryUnreachable,
    DiskFull,
    DumpFailed,
    LoadFailed,
    ResticFailed,
    ChecksumMismatch,
    SnapshotNotFound,
    SnapshotUnverified,
    VerifyFailed,
    InvalidArguments,
    ToolMissing,
    ClientTooOld,
    Interrupted,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the database at {endpoint} rejected the password for user \"{user}\": check the password Secret and the user name{hint}")]
    DatabaseAuth {
        endpoint: String,
        user: String,
        hint: String,
    },

    #[error("cannot reach the database at {endpoint} ({detail}): check host, port, the Service and any NetworkPolicy")]
    DatabaseUnreachable { endpoint: String, detail: String },

    #[error("database \"{database}\" does not exist at {endpoint}: check the database name, or let the restore create it")]
    DatabaseMissing { endpoint: String, database: String },

    #[error("the database at {endpoint} runs PostgreSQL {server_version} but this image's pg_dump is {client_version}: pg_dump dumps only servers of its own major version or older; run the backup with an image whose PostgreSQL client tools are version {server_major} or newer (jobTemplate.image)")]
    ClientTooOld {
        endpoint: String,
        server_version: String,
        client_version: String,
        server_major: String,
    },

    #[error("restic repository {repository} is locked by another process ({detail}): wait for that job to finish, or run `restic unlock` if it is dead")]
    RepositoryLocked { repository: String, detail: String },

    #[error("restic repository {repository} is damaged ({detail}): run `restic check --read-data` and `restic repair` before trusting it")]
    RepositoryCorrupt { repository: String, detail: String },

    #[error("the restic password does not open repository {repository}: check RESTIC_PASSWORD / RESTIC_PASSWORD_FILE and that this is the right repository")]
    RepositoryWrongPassword { repository: String },

    #[error("there is no restic repository at {repository}: create it with `restic init` or allow the backup to initialise it")]
    RepositoryNotFound { repository: String },

    #[error("cannot reach restic repository {repository} ({detail}): check the URL, the repository server and its credentials")]
    RepositoryUnreachable { repository: String, detail: String },

    #[error("no space left on device while {during} ({detail}): free or grow the volume, or the restic cache (RESTIC_CACHE_DIR)")]
    DiskFull { during: String, detail: String },

    #[error("{tool} failed with {status}: {detail}")]
    DumpFailed {
        tool: String,
        status: String,
        detail: String,
    },

    #[error("{tool} failed with {status} while loading the snapshot: {detail}")]
    LoadFailed {
        tool: String,
        status: String,
        detail: String,
    },

    #[error("restic {command} failed with {status}: {detail}")]
    ResticFailed {
        command: String,
        status: String,
        detail: String,
    },

    #[error("snapshot {snapshot} does not match what was backed up: expected {expected_size} bytes with sha256 {expected_sha256}, read {actual_size} bytes with sha256 {actual_sha256}; do not trust this snapshot, run `restic check --read-data`")]
    ChecksumMismatch {
        snapshot: String,
        expected_size: u64,
        expected_sha256: String,
        actual_size: u64,
        actual_sha256: String,
    },

    #[error("the stream restored as `latest` is not snapshot {snapshot} that the listing chose (expected sha256 {expected_sha256}, read {actual_sha256}): a backup probably finished as the restore started; the loader was stopped before the end of its input, run the restore again or pass --snapshot {snapshot}")]
    LatestChanged {
        snapshot: String,
        expected_sha256: String,
        actual_sha256: String,
    },

    #[error(
        "no snapshot matches {selector}: check the snapshot id or tags, and that a backup has succeeded"
    )]
    SnapshotNotFound { selector: String },

    #[error("snapshot {snapshot} {why}: pass --allow-unverified to restore it anyway")]
    SnapshotUnverified { snapshot: String, why: String },

    #[error("{failed} of {total} verification checks failed: {names}")]
    VerifyFailed {
        failed: usize,
        total: usize,
        names: String,
    },

    #[error("invalid arguments: {0}")]
    InvalidArguments(String),

    #[error("cannot run {tool}: {source}; is it installed in the Job's image and on PATH?")]
    ToolMissing {
        tool: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot read {what} from {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("interrupted by {signal}: nothing was recorded as a successful snapshot")]
    Interrupted { signal: &'static str },

    #[error("{context}: {detail}")]
    Internal { context: String, detail: String },
}

impl AgentError {
    pub fn reason(&self) -> Reason {
        match self {
            AgentError::DatabaseAuth { .. } => Reason::DatabaseAuthFailed,
            AgentError::DatabaseUnreachable { .. } => Reason::DatabaseUnreachable,
            AgentError::DatabaseMissing { .. } => Reason::DatabaseMissing,
            AgentError::RepositoryLocked { .. } => Reason::RepositoryLocked,
            AgentError::RepositoryCorrupt { .. } => Reason::RepositoryCorrupt,
            AgentError::RepositoryWrongPassword { .. } => Reason::RepositoryWrongPassword,
            AgentError::RepositoryNotFound { .. } => Reason::RepositoryNotFound,
            AgentError::RepositoryUnreachable { .. } => Reason::RepositoryUnreachable,
            AgentError::DiskFull { .. } => Reason::DiskFull,
            AgentError::DumpFailed { .. } => Reason::DumpFailed,
            AgentError::LoadFailed { .. } => Reason::LoadFailed,
            AgentError::ResticFailed { .. } => Reason::ResticFailed,
            AgentError::ChecksumMismatch { .. } | AgentError::LatestChanged { .. } => {
                Reason::ChecksumMismatch
            }
            AgentError::SnapshotNotFound { .. } => Reason::SnapshotNotFound,
            AgentError::SnapshotUnverified { .. } => Reason::SnapshotUnverified,
            AgentError::VerifyFailed { .. } => Reason::VerifyFailed,
            AgentError::InvalidArguments(_) | AgentError::ReadFile { .. } => Reason::InvalidArguments,
            AgentError::ToolMissing { .. } => Reason::ToolMissing,
            AgentError::ClientTooOld { .. } => Reason::ClientTooOld,
            AgentError::Interrupted { .. } => Reason::Interrupted,
            AgentError::Internal { .. } => Reason::Internal,
        }
    }

    pub fn internal(context: impl Into<String>, detail: impl ToString) -> Self {
        AgentError::Internal {
            context: context.into(),
            detail: detail.to_string(),
        }
    }
}

/// Where a database client runs, for messages (never includes credentials).
#[derive(Debug, Clone)]
pub struct DbContext {
    pub endpoint: String,
    pub user: String,
    pub database: String,
    /// A fact about the password worth saying when it is refused (never the password itself).
    pub password_ends_with_whitespace: bool,
}

/// Turns the stderr of a database client (pg_dump, psql, pg_restore, mariadb-dump, mariadb) into a cause a
/// person can act on, when the text says which one it is. Both engines' wordings are recognised because
/// the messages are distinct and a Job may use either client.
pub fn classify_database(stderr: &str, ctx: &DbContext) -> Option<AgentError> {
    let lower = stderr.to_lowercase();
    if let Some(disk) = classify_disk_full(stderr, "talking to the database") {
        return Some(disk);
    }
    if let Some(too_old) = classify_version_mismatch(stderr, ctx) {
        return Some(too_old);
    }
    let auth = [
        "password authentication failed",
        "no password supplied",
        "access denied for user",
        "authentication failed for user",
    ];
    if auth.iter().any(|needle| lower.contains(needle)) {
        let hint = if ctx.password_ends_with_whitespace {
            "; the password in the Secret ends with a newline or space, which `echo` and \
             `kubectl create secret --from-file` keep: write the Secret with --from-literal or printf"
        } else {
            ""
        };
        return Some(AgentError::DatabaseAuth {
            endpoint: ctx.endpoint.clone(),
            user: ctx.user.clone(),
            hint: hint.to_owned(),
        });
    }
    let missing = ["unknown database"];
    if missing.iter().any(|needle| lower.contains(needle))
        || (lower.contains("database \"") && lower.contains("\" does not exist"))
    {
        return Some(AgentError::DatabaseMissing {
            endpoint: ctx.endpoint.clone(),
            database: ctx.database.clone(),
        });
    }
    let unreachable = [
        "connection refused",
        "could not connect to server",
        "could not translate host name",
        "can't connect to",
        "unknown server host",
        "unknown mysql server host",
        "no route to host",
        "timeout expired",
        "connection timed out",
        "network is unreachable",
        "lost connection to",
    ];
    if unreachable.iter().any(|needle| lower.contains(needle)) {
        return Some(AgentError::DatabaseUnreachable {
            endpoint: ctx.endpoint.clone(),
            detail: last_meaningful_line(stderr),
        });
    }
    None
}

/// pg_dump refuses a server newer than itself with "aborting because of server version mismatch" and a
/// detail line "server version: 17.2; pg_dump version: 15.18".
fn classify_version_mismatch(stderr: &str, ctx: &DbContext) -> Option<AgentError> {
    if !stderr.contains("server version mismatch") {
        return None;
    }
    let detail = stderr.lines().find(|line| line.contains("server version:"))?;
    // "(server|pg_dump|pg_dumpall) version: 17.2 (Debian 17.2-1)" → "17.2"
    let version_in = |part: &str| {
        let start = part.find("version:")? + "version:".len();
        let version: String = part[start..]
            .trim_start()
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        (!version.is_empty()).then_some(version)
    };
    let (server_part, client_part) = detail.split_once(';')?;
    let server_version = version_in(server_part)?;
    let client_version = version_in(client_part)?;
    let server_major = server_version
        .split('.')
        .next()
        .unwrap_or(&server_version)
        .to_owned();
    Some(AgentError::ClientTooOld {
        endpoint: ctx.endpoint.clone(),
        server_version,
        client_version,
        server_major,
    })
}

/// Turns restic's stderr into a cause. restic's wording has been stable across 0.14–0.19.
pub fn classify_restic(stderr: &str, repository: &str) -> Option<AgentError> {
    let lower = stderr.to_lowercase();
    if let Some(disk) = classify_disk_full(stderr, "writing to the restic repository or its cache") {
        return Some(disk);
    }
    let repository = repository.to_string();
    if lower.contains("wrong password or no key found") {
        return Some(AgentError::RepositoryWrongPassword { repository });
    }
    if lower.contains("repository is already locked") || lower.contains("unable to create lock") {
        return Some(AgentError::RepositoryLocked {
            repository,
            detail: lock_detail(stderr),
        });
    }
    // restic retries a failing backend for minutes, then gives up with the network error; its "unable to open config" then
    // must not read as a missing repository.
    let unreachable = [
        "connection refused",
        "no such host",
        "i/o timeout",
        "network is unreachable",
        "tls:",
    ];
    if unreachable.iter().any(|needle| lower.contains(needle)) {
        return Some(AgentError::RepositoryUnreachable {
            repository,
            detail: last_meaningful_line(stderr),
        });
    }
    let not_found = [
        "is there a repository at the following location",
        "repository does not exist",
        "unable to open config file",
    ];
    if not_found.iter().any(|needle| lower.contains(needle)) {
        return Some(AgentError::RepositoryNotFound { repository });
    }
    let corrupt = [
        "repository contains errors",
        "ciphertext verification failed",
        "invalid data returned",
        "unexpected end of json input",
        "pack file cannot be listed",
        "decrypting blob",
        "load(<data/",
        "blob not found",
        "is damaged",
        "wrong checksum",
        "does not match",
        "list(data) returned error",
    ];
    if corrupt.iter().any(|needle| lower.contains(needle)) {
        return Some(AgentError::RepositoryCorrupt {
            repository,
            detail: last_meaningful_line(stderr),
        });
    }
    None
}

/// ENOSPC reads the same from every tool because they all print strerror.
pub fn classify_disk_full(stderr: &str, during: &str) -> Option<AgentError> {
    let lower = stderr.to_lowercase();
    if lower.contains("no space left on device") || lower.contains("disk full") || lower.contains("errno: 28")
    {
        let detail = stderr
            .lines()
            .find(|line| line.to_lowercase().contains("no space left"))
            .map(|line| truncate(line.trim(), 200))
            .unwrap_or_else(|| last_meaningful_line(stderr));
        return Some(AgentError::DiskFull {
            during: during.to_string(),
            detail,
        });
    }
    None
}

/// restic explains a lock in several lines ("repo already locked, waiting up to…", "lock was created at
/// … by …"); the "created" line tells a person which job to look for.
fn lock_detail(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .find(|line| line.contains("lock was created at") || line.contains("locked exclusively by"))
        .map(|line| truncate(line, 200))
        .unwrap_or_else(|| last_meaningful_line(stderr))
}

/// The last non-empty line of a tool's stderr, without the tool's progress noise: usually the error.
pub fn last_meaningful_line(stderr: &str) -> String {
    let line = stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| {
            !line.is_empty()
                && !line.starts_with("the `unlock` command")
                && !line.starts_with("storage ID")
                && !line.starts_with("pg_restore: warning: errors ignored")
        })
        .unwrap_or("no error output");
    truncate(line, 300)
}

/// The first line that looks like an error, which for psql/pg_restore/mariadb is the root cause (later
/// lines are consequences such as "current transaction is aborted").
pub fn first_error_line(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .find(|line| {
            let lower = line.to_lowercase();
            lower.contains("error") || lower.contains("fatal")
        })
        .map(|line| truncate(line, 300))
        .unwrap_or_else(|| last_meaningful_line(stderr))
}

/// The first error line plus the server's own message when the client quotes it on a later line
/// (pg_dump: "Dumping the contents of table … failed" / "detail: Error message from server: ERROR: …").
pub fn error_summary(stderr: &str) -> String {
    let first = first_error_line(stderr);
    let server = stderr
        .lines()
        .find_map(|line| {
            line.split_once("Error message from server:")
                .map(|(_, message)| message.trim())
        })
        .filter(|message| !message.is_empty() && !first.contains(*message));
    match server {
        Some(message) => truncate(&format!("{first} ({message})"), 400),
        None => first,
    }
}

pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> DbContext {
        DbContext {
            endpoint: "db:5432".into(),
            user: "app".into(),
            database: "shop".into(),
            password_ends_with_whitespace: false,
        }
    }

    #[test]
    fn a_refused_password_with_a_trailing_newline_says_so_without_showing_it() {
        let stderr = "pg_dump: error: connection to server at \"db\" (10.0.0.5), port 5432 failed: \
                      FATAL:  password authentication failed for user \"app\"";
        let plain = classify_database(stderr, &ctx()).unwrap().to_string();
        assert!(!plain.contains("newline"), "{plain}");
        let newline = DbContext {
            password_ends_with_whitespace: true,
            ..ctx()
        };
        let message = classify_database(stderr, &newline).unwrap().to_string();
        assert!(
            message.contains("ends with a newline") && message.contains("--from-literal"),
            "{message}"
        );
    }

    #[test]
    fn a_server_newer_than_pg_dump_names_both_versions_and_what_to_use() {
        let stderr = "pg_dump: error: aborting because of server version mismatch\n\
                      pg_dump: detail: server version: 18.1 (Debian 18.1-1); pg_dump version: 17.7 (Debian 17.7-0+deb13u1)";
        let error = classify_database(stderr, &ctx()).expect("a version mismatch is recognised");
        assert_eq!(error.reason(), Reason::ClientTooOld);
        let message = error.to_string();
        assert!(message.contains("runs PostgreSQL 18.1"), "{message}");
        assert!(message.contains("pg_dump is 17.7"), "{message}");
        assert!(message.contains("version 18 or newer"), "{message}");
    }

    #[test]
    fn postgres_wrong_password_is_an_auth_failure() {
        let stderr = "pg_dump: error: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication failed for user \"app\"";
        assert_eq!(
            classify_database(stderr, &ctx()).map(|e| e.reason()),
            Some(Reason::DatabaseAuthFailed)
        );
    }

    #[test]
    fn mariadb_unknown_database_is_missing() {
        let stderr = "mariadb-dump: Got error: 1049: \"Unknown database 'shop'\" when selecting the database";
        assert_eq!(
            classify_database(stderr, &ctx()).map(|e| e.reason()),
            Some(Reason::DatabaseMissing)
        );
    }

    #[test]
    fn refused_connections_are_unreachable() {
        let pg = "pg_dump: error: connection to server at \"127.0.0.1\", port 1 failed: Connection refused";
        let my = "mariadb-dump: Got error: 2002: \"Can't connect to server on '127.0.0.1' (115)\" when trying to connect";
        for stderr in [pg, my] {
            assert_eq!(
                classify_database(stderr, &ctx()).map(|e| e.reason()),
                Some(Reason::DatabaseUnreachable)
            );
        }
    }

    #[test]
    fn restic_causes_are_told_apart() {
        let cases = [
            (
                "Fatal: wrong password or no key found",
                Reason::RepositoryWrongPassword,
            ),
            (
                "unable to create lock in backend: repository is already locked exclusively by PID 1",
                Reason::RepositoryLocked,
            ),
            (
                "Fatal: repository does not exist: unable to open config file",
                Reason::RepositoryNotFound,
            ),
            ("Fatal: repository contains errors", Reason::RepositoryCorrupt),
            (
                "Save(<data/1234>) returned error: write /repo/data/12: no space left on device",
                Reason::DiskFull,
            ),
        ];
        for (stderr, reason) in cases {
            assert_eq!(
                classify_restic(stderr, "/repo").map(|e| e.reason()),
                Some(reason),
                "{stderr}"
            );
        }
    }

    #[test]
    fn a_dump_error_names_the_server_s_reason() {
        let stderr = "pg_dump: error: Dumping the contents of table \"rows\" failed: PQgetResult() failed.\n\
                      pg_dump: detail: Error message from server: ERROR:  invalid internal value for enum: 16390\n\
                      pg_dump: detail: Command was: COPY public.rows (id) TO stdout;";
        let summary = error_summary(stderr);
        assert!(
            summary.starts_with("pg_dump: error: Dumping the contents of table"),
            "{summary}"
        );
        assert!(summary.contains("invalid internal value for enum"), "{summary}");
    }

    #[test]
    fn messages_stay_one_line_and_short() {
        let long = "x".repeat(1000);
        assert!(last_meaningful_line(&long).chars().count() <= 301);
        assert_eq!(last_meaningful_line("a\n\nthe real error\n\n"), "the real error");
    }
}
