//! The pure decisions of the Restore controller: how to reach the target, the agent's arguments, what
//! the overwrite guard found, whether a scratch server is ready, and the terminal status. No API calls
//! here, so every rule has a unit test.

use std::time::Duration;

use k8s_openapi::api::core::v1::{EnvVar, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::agent::result::AgentResult;
use crate::api::backup_policy::BackupPolicySpec;
use crate::api::common::{QueryCheck, ScratchEngine, SecretKeyRef, VerifySpec};
use crate::api::restore::{RestorePhase, RestoreSpec, RestoreStatus, ScratchStatus, Verification};
use crate::conditions::{set_health, Health};
use crate::duration::format_duration;
use crate::jobs::{self, plain_env, secret_env, AgentReport, Invocation, JobOutcome};

/// How long a restore Job retries a Ready scratch server that does not answer yet.
const SCRATCH_ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// The guard's check that the target has no tables (its name in the agent's result is `query:empty`).
const EMPTY_CHECK: &str = "empty";

/// How the agent reaches the target.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    Database {
        engine: ScratchEngine,
        host: String,
        port: i32,
        database: String,
        user: String,
        password: SecretKeyRef,
        ssl_mode: Option<String>,
    },
    Files {
        claim: String,
        path: String,
    },
}

impl Connection {
    /// The target as a person reads it in status and Events (no credentials).
    pub fn describe(&self) -> String {
        match self {
            Connection::Database {
                engine,
                host,
                port,
                database,
                ..
            } => {
                format!("{} database {database} on {host}:{port}", engine_name(*engine))
            }
            Connection::Files { claim, path } => format!("directory {path} on PersistentVolumeClaim {claim}"),
        }
    }
}

fn engine_name(engine: ScratchEngine) -> &'static str {
    match engine {
        ScratchEngine::Postgres => "postgres",
        ScratchEngine::Mysql => "mysql",
    }
}

/// The connection of a target on an existing server or volume (scratch targets come from their status).
pub fn existing_connection(spec: &RestoreSpec) -> Option<Connection> {
    let target = &spec.target;
    if let Some(pg) = &target.postgres {
        return Some(Connection::Database {
            engine: ScratchEngine::Postgres,
            host: pg.host.clone(),
            port: pg.port,
            database: pg.database.clone(),
            user: pg.user.clone(),
            password: pg.password_secret_ref.clone(),
            ssl_mode: pg.ssl_mode.clone(),
        });
    }
    if let Some(my) = &target.mysql {
        return Some(Connection::Database {
            engine: ScratchEngine::Mysql,
            host: my.host.clone(),
            port: my.port,
            database: my.database.clone(),
            user: my.user.clone(),
            password: my.password_secret_ref.clone(),
            ssl_mode: None,
        });
    }
    target.files.as_ref().map(|files| Connection::Files {
        claim: files.persistent_volume_claim.clone(),
        path: files.path.clone(),
    })
}

pub fn scratch_connection(engine: ScratchEngine, scratch: &ScratchStatus) -> Connection {
    Connection::Database {
        engine,
        host: scratch.host.clone(),
        port: scratch.port,
        database: scratch.database.clone(),
        user: scratch.user.clone(),
        password: SecretKeyRef {
            name: scratch.secret.clone(),
            key: super::scratch::PASSWORD_KEY.to_owned(),
        },
        ssl_mode: None,
    }
}

/// What the agent does to the target database before loading the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepare {
    /// Drop it and create it empty (`--drop-database`).
    Recreate,
    /// Create it when missing (`--create-database`).
    CreateIfMissing,
    /// Nothing (files).
    Nothing,
}

/// Whether the overwrite guard must look at the target before anything is written: an existing
/// database whose replacement nobody confirmed.
pub fn needs_guard(spec: &RestoreSpec) -> bool {
    spec.target.existing_database().is_some() && spec.confirm_overwrite.is_none()
}

/// How to prepare the target once it is known to be safe: a confirmed overwrite replaces the
/// database; an empty or missing one is created (and recreated with dropExisting).
pub fn prepare_for(spec: &RestoreSpec) -> Prepare {
    if spec.target.files.is_some() {
        Prepare::Nothing
    } else if spec.confirm_overwrite.is_some() || spec.drop_existing {
        Prepare::Recreate
    } else {
        Prepare::CreateIfMissing
    }
}

/// The snapshot to restore, resolved from the Restore's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSource {
    pub policy: String,
    /// A restic id, or `latest` (then `tags` select the policy's snapshots).
    pub snapshot: String,
    pub tags: Vec<String>,
    /// The sha256 a Backup's status recorded for its snapshot: the restore checks the stream against it
    /// (`--expect-sha256`). Database snapshots carry no sha256 tag since the agent stopped re-tagging them.
    pub sha256: Option<String>,
}

pub fn latest_of_policy(policy: &str, namespace: &str, snapshot: Option<&str>) -> ResolvedSource {
    ResolvedSource {
        policy: policy.to_owned(),
        snapshot: snapshot.unwrap_or("latest").to_owned(),
        // The tags every backup Job of this policy writes (jobs::backup_invocation).
        tags: vec![format!("policy={policy}"), format!("namespace={namespace}")],
        sha256: None,
    }
}

impl ResolvedSource {
    /// The sha256 of a resolved Backup (its status), for a restore of exactly that snapshot.
    pub fn with_sha256(mut self, sha256: Option<String>) -> ResolvedSource {
        self.sha256 = sha256.filter(|s| !s.is_empty());
        self
    }
}

fn connection_args(args: &mut Vec<String>, env: &mut Vec<EnvVar>, connection: &Connection) {
    if let Connection::Database {
        engine,
        host,
        port,
        database,
        user,
        password,
        ssl_mode,
    } = connection
    {
        args.extend(["--target".into(), engine_name(*engine).into()]);
        args.extend(["--host".into(), host.clone(), "--port".into(), port.to_string()]);
        args.extend([
            "--database".into(),
            database.clone(),
            "--user".into(),
            user.clone(),
        ]);
        env.push(secret_env("LIFEBOAT_DB_PASSWORD", password));
        if let Some(mode) = ssl_mode {
            env.push(plain_env("PGSSLMODE", mode));
        }
    }
}

/// `lifeboat agent restore …`: the snapshot into the target, then the verify checks, in one run (so the
/// measured restore time includes verification, as the RTO does).
pub fn restore_invocation(
    source: &ResolvedSource,
    policy: &BackupPolicySpec,
    connection: &Connection,
    prepare: Prepare,
    scratch: Option<ScratchEngine>,
    verify: Option<&VerifySpec>,
) -> Invocation {
    let Invocation {
        mut args,
        mut env,
        volumes: _,
        mounts: _,
    } = Invocation::against_repository("restore", &policy.repository.restic);
    let mut claim_mount = Invocation::default();
    match connection {
        Connection::Database { .. } => connection_args(&mut args, &mut env, connection),
        Connection::Files { claim, path } => {
            args.extend(["--target".into(), "files".into()]);
            args.extend(["--path".into(), jobs::data_path(path)]);
            claim_mount.mount_claim(claim, false);
        }
    }
    let Invocation { volumes, mounts, .. } = claim_mount;
    args.extend(["--snapshot".into(), source.snapshot.clone()]);
    if source.snapshot == "latest" {
        for tag in &source.tags {
            args.extend(["--tag".into(), tag.clone()]);
        }
    } else if let Some(sha256) = &source.sha256 {
        // Only with a pinned id: the sha256 belongs to that snapshot, not to whatever `latest` is.
        args.extend(["--expect-sha256".into(), sha256.clone()]);
    }
    match prepare {
        Prepare::Recreate => args.push("--drop-database".into()),
        Prepare::CreateIfMissing => args.push("--create-database".into()),
        Prepare::Nothing => {}
    }
    // A scratch PostgreSQL has none of production's roles: restore without ownership and grants.
    if scratch == Some(ScratchEngine::Postgres) {
        args.push("--no-owner".into());
    }
    if scratch.is_some() {
        // A Ready scratch Pod only means its port is open: MariaDB listens while its init file still
        // runs, so the agent keeps trying for a while before calling the server unreachable.
        args.extend([
            "--wait-for-database".into(),
            SCRATCH_ANSWER_TIMEOUT.as_secs().to_string(),
        ]);
    }
    if let Some(verify) = verify.filter(|v| has_checks(v)) {
        // JSON of the spec as the user wrote it: the agent parses the same type.
        args.extend([
            "--checks".into(),
            serde_json::to_string(verify).unwrap_or_default(),
        ]);
    }
    Invocation {
        args,
        env,
        volumes,
        mounts,
    }
}

pub fn has_checks(verify: &VerifySpec) -> bool {
    verify.min_tables.is_some() || !verify.tables.is_empty() || !verify.queries.is_empty()
}

/// `lifeboat agent verify …` with a query that is true only for a database without tables: the
/// overwrite guard, run read-only before anything is written.
pub fn guard_invocation(connection: &Connection) -> Invocation {
    let mut args: Vec<String> = vec!["agent".into(), "verify".into()];
    let mut env = Vec::new();
    connection_args(&mut args, &mut env, connection);
    let sql = match connection {
        Connection::Database { engine: ScratchEngine::Mysql, .. } => {
            "select count(*) = 0 from information_schema.tables where table_schema = database()"
        }
        _ => "select count(*) = 0 from information_schema.tables where table_schema not in ('pg_catalog', 'information_schema')",
    };
    // minTables 0 always passes; its message carries the table count for the refusal message.
    let checks = VerifySpec {
        min_tables: Some(0),
        tables: Vec::new(),
        queries: vec![QueryCheck {
            name: EMPTY_CHECK.into(),
            sql: sql.into(),
        }],
    };
    args.extend([
        "--checks".into(),
        serde_json::to_string(&checks).unwrap_or_default(),
    ]);
    Invocation {
        args,
        env,
        ..Default::default()
    }
}

/// `sh -c '… | psql|mariadb'` dropping the target database: dropAfter's cleanup of a `verify_`
/// database. The agent has no drop mode yet, so this runs the database client of the agent image
/// directly; the name is quoted as an identifier in Rust and reaches the shell only as data (an
/// environment variable piped to the client), never as shell text.
pub fn drop_invocation(connection: &Connection) -> Option<Invocation> {
    let Connection::Database {
        engine,
        host,
        port,
        database,
        user,
        password,
        ssl_mode,
    } = connection
    else {
        return None;
    };
    let (sql, client, password_variable) = match engine {
        ScratchEngine::Postgres => (
            format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE);",
                database.replace('"', "\"\"")
            ),
            r#"psql -X -q -v ON_ERROR_STOP=1 -h "$LIFEBOAT_DB_HOST" -p "$LIFEBOAT_DB_PORT" -U "$LIFEBOAT_DB_USER" -d postgres"#,
            "PGPASSWORD",
        ),
        ScratchEngine::Mysql => (
            format!("DROP DATABASE IF EXISTS `{}`;", database.replace('`', "``")),
            r#""$(command -v mariadb || command -v mysql)" -h "$LIFEBOAT_DB_HOST" -P "$LIFEBOAT_DB_PORT" -u "$LIFEBOAT_DB_USER""#,
            "MYSQL_PWD",
        ),
    };
    let mut env = vec![
        plain_env("LIFEBOAT_DB_HOST", host),
        plain_env("LIFEBOAT_DB_PORT", port.to_string()),
        plain_env("LIFEBOAT_DB_USER", user),
        plain_env("LIFEBOAT_DROP_SQL", sql),
        secret_env(password_variable, password),
    ];
    if let Some(mode) = ssl_mode {
        env.push(plain_env("PGSSLMODE", mode));
    }
    let script = format!(
        r#"set -e; printf '%s\n' "$LIFEBOAT_DROP_SQL" | {client}; echo "dropped $LIFEBOAT_DROP_SQL""#
    );
    Some(Invocation {
        args: vec!["-c".into(), script],
        env,
        ..Default::default()
    })
}

/// What the overwrite guard found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardVerdict {
    /// The database exists and has no tables.
    Empty,
    /// The database does not exist (the restore creates it).
    Missing,
    /// The database has tables: refuse.
    NotEmpty { tables: Option<i64> },
    /// The guard could not look (server unreachable, wrong password, …).
    Unusable { reason: String, message: String },
}

pub fn guard_verdict(report: Option<&AgentReport>) -> GuardVerdict {
    let result = match report {
        Some(AgentReport::Result(result)) => result,
        Some(AgentReport::Unstructured(text)) => {
            return GuardVerdict::Unusable {
                reason: "CheckFailed".into(),
                message: text.clone(),
            };
        }
        None => {
            return GuardVerdict::Unusable {
                reason: "CheckFailed".into(),
                message: "the target check Job ended without a finished agent container".into(),
            }
        }
    };
    if result.ok {
        return GuardVerdict::Empty;
    }
    let reason = reason_of(result);
    let empty_check = result
        .checks
        .iter()
        .find(|c| c.name == format!("query:{EMPTY_CHECK}"));
    match (reason.as_str(), empty_check) {
        ("DatabaseMissing", _) => GuardVerdict::Missing,
        ("VerifyFailed", Some(check)) if !check.passed => {
            let tables = result
                .checks
                .iter()
                .find(|c| c.name == "minTables")
                .and_then(|c| c.message.as_deref())
                .and_then(|m| m.split_whitespace().next())
                .and_then(|n| n.parse().ok());
            GuardVerdict::NotEmpty { tables }
        }
        _ => GuardVerdict::Unusable {
            reason,
            message: result
                .message
                .clone()
                .unwrap_or_else(|| "the target check failed without a message".into()),
        },
    }
}

fn reason_of(result: &AgentResult) -> String {
    result
        .reason
        .map(|r| format!("{r:?}"))
        .unwrap_or_else(|| "Failed".into())
}

/// Whether the scratch server can take the restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScratchReadiness {
    Ready,
    Starting(String),
    Failed(String),
}

pub fn scratch_readiness(pod: Option<&Pod>, waited: Duration, timeout: Duration) -> ScratchReadiness {
    let timed_out = |why: String| {
        if waited > timeout {
            ScratchReadiness::Failed(format!(
                "the scratch database was not ready within {} ({why})",
                format_duration(timeout)
            ))
        } else {
            ScratchReadiness::Starting(why)
        }
    };
    let Some(pod) = pod else {
        return timed_out("its Pod does not exist yet".into());
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    if matches!(status.phase.as_deref(), Some("Failed" | "Succeeded"))
        || pod.metadata.deletion_timestamp.is_some()
    {
        let detail = status
            .container_statuses
            .iter()
            .flatten()
            .filter_map(|c| c.state.as_ref().and_then(|s| s.terminated.as_ref()))
            .map(|t| {
                let message = t
                    .message
                    .as_deref()
                    .map(|m| jobs::last_line(m, 300))
                    .unwrap_or_default();
                format!(
                    "exit code {}{}",
                    t.exit_code,
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(": {message}")
                    }
                )
            })
            .next()
            .unwrap_or_else(|| "stopped".into());
        return ScratchReadiness::Failed(format!("the scratch database Pod {name} stopped ({detail})"));
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if ready {
        return ScratchReadiness::Ready;
    }
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref().and_then(|s| s.waiting.as_ref()))
        .map(|w| {
            format!(
                "{}{}",
                w.reason.clone().unwrap_or_default(),
                w.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
            )
        })
        .next();
    timed_out(waiting.unwrap_or_else(|| {
        format!(
            "Pod {name} is {}",
            status.phase.unwrap_or_else(|| "Pending".into())
        )
    }))
}

/// A terminal failure decided by the controller (not by the agent).
pub fn fail(status: &mut RestoreStatus, reason: &str, message: String, now: &Time) {
    status.phase = Some(RestorePhase::Failed);
    status.reason = Some(reason.to_owned());
    status.message = Some(message.clone());
    status.completion_time = Some(now.clone());
    set_duration(status);
    let generation = status.observed_generation;
    set_health(
        &mut status.conditions.0,
        Health::Stalled {
            reason: "RestoreFailed",
            message,
        },
        generation,
        now,
    );
}

/// The terminal status from the restore Job's outcome and the agent's report. Only a result the agent
/// confirmed is a success.
pub fn finish(
    status: &mut RestoreStatus,
    outcome: JobOutcome,
    report: Option<AgentReport>,
    verify_requested: bool,
    now: &Time,
) {
    let generation = status.observed_generation;
    let result = match &report {
        Some(AgentReport::Result(result)) => Some(result.as_ref()),
        _ => None,
    };
    if let Some(result) = result {
        status.snapshot_id = result.snapshot_id.clone().or(status.snapshot_id.take());
        if let Some(time) = result
            .snapshot_time
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        {
            status.snapshot_time = Some(Time(time));
        }
        // Checks that ran are recorded, pass or fail; a restore that failed before verifying has none.
        if !result.checks.is_empty() || (verify_requested && result.ok) {
            status.verification = Some(Verification {
                passed: result.ok && outcome == JobOutcome::Succeeded,
                checks: result.checks.clone(),
            });
        }
    }
    // The agent's own completion time: the operator may notice the Job's end a little later, and the
    // measured RTO should not include that.
    let completed = result
        .and_then(|r| r.completion_time.parse::<jiff::Timestamp>().ok())
        .map(Time)
        .unwrap_or_else(|| now.clone());
    match (outcome, result) {
        (JobOutcome::Succeeded, Some(result)) if result.ok => {
            status.phase = Some(RestorePhase::Succeeded);
            status.reason = None;
            status.completion_time = Some(completed);
            set_duration(status);
            let checks = match &status.verification {
                Some(v) => format!(", {} checks passed", v.checks.len()),
                None => String::new(),
            };
            let snapshot = status.snapshot_id.as_deref().map(short_id).unwrap_or("?");
            let message = format!(
                "restored snapshot {snapshot} in {}{checks}",
                status.duration.clone().unwrap_or_default()
            );
            status.message = Some(message.clone());
            set_health(
                &mut status.conditions.0,
                Health::Ready {
                    reason: "Succeeded",
                    message,
                },
                generation,
                now,
            );
        }
        _ => {
            let (reason, message) = match report {
                Some(AgentReport::Result(result)) => (
                    reason_of(&result),
                    result
                        .message
                        .clone()
                        .unwrap_or_else(|| "the agent reported a failure without a message".into()),
                ),
                Some(AgentReport::Unstructured(text)) => ("AgentFailed".into(), text),
                None => (
                    "JobFailed".into(),
                    "the restore Job ended without a finished agent container (deleted or evicted?)".into(),
                ),
            };
            fail(status, &reason, message, &completed);
        }
    }
}

/// A restore that was verified and then passed its smoke test: it ends when the smoke test ended.
pub fn succeed_after_smoke(
    status: &mut RestoreStatus,
    ended: Time,
    restored: &str,
    said: Option<&str>,
    now: &Time,
) {
    status.phase = Some(RestorePhase::Succeeded);
    status.reason = None;
    status.completion_time = Some(ended);
    set_duration(status);
    let said = said.map(|s| format!(" ({s})")).unwrap_or_default();
    let message = format!("{restored}; smoke test passed{said}");
    status.message = Some(message.clone());
    let generation = status.observed_generation;
    set_health(
        &mut status.conditions.0,
        Health::Ready {
            reason: "Succeeded",
            message,
        },
        generation,
        now,
    );
}

fn set_duration(status: &mut RestoreStatus) {
    if let (Some(start), Some(end)) = (&status.start_time, &status.completion_time) {
        let elapsed = end.0.duration_since(start.0).as_secs_f64().max(0.0);
        status.duration = Some(format_duration(Duration::from_secs_f64(elapsed)));
    }
}

pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::result::Mode;
    use crate::api::common::CheckResult;

    fn spec(yaml: &str) -> RestoreSpec {
        serde_norway::from_str(yaml).expect("valid Restore spec")
    }

    const EXISTING: &str = "
source: {policyRef: {name: hotel-db}}
target: {postgres: {host: db.hotel.svc, database: hotel, user: kajovo, passwordSecretRef: {name: db, key: password}}}
";

    fn policy() -> BackupPolicySpec {
        serde_norway::from_str(
            "
schedule: '0 2 * * *'
source: {postgres: {host: db, database: hotel, user: kajovo, passwordSecretRef: {name: db, key: password}}}
repository: {restic: {repository: /backups/hotel, passwordSecretRef: {name: restic, key: password}}}
",
        )
        .expect("valid policy")
    }

    fn result(
        ok: bool,
        reason: Option<crate::agent::error::Reason>,
        checks: Vec<CheckResult>,
    ) -> AgentReport {
        let mut result = AgentResult::new(Mode::Verify, "2026-11-23T10:00:00Z".parse().unwrap());
        result.ok = ok;
        result.reason = reason;
        result.set_checks(checks);
        AgentReport::Result(Box::new(result))
    }

    fn check(name: &str, passed: bool, message: &str) -> CheckResult {
        CheckResult {
            name: name.into(),
            passed,
            message: Some(message.into()),
        }
    }

    #[test]
    fn an_unconfirmed_existing_database_is_checked_before_anything_is_written() {
        let unconfirmed = spec(EXISTING);
        assert!(needs_guard(&unconfirmed));
        assert_eq!(prepare_for(&unconfirmed), Prepare::CreateIfMissing);
        let confirmed = spec(&format!("{EXISTING}confirmOverwrite: hotel\n"));
        assert!(!needs_guard(&confirmed));
        assert_eq!(prepare_for(&confirmed), Prepare::Recreate);
        let scratch = spec("source: {policyRef: {name: p}}\ntarget: {scratch: {engine: postgres}}\n");
        assert!(!needs_guard(&scratch));
    }

    #[test]
    fn the_guard_refuses_tables_and_accepts_an_empty_or_missing_database() {
        use crate::agent::error::Reason;
        let tables = result(
            false,
            Some(Reason::VerifyFailed),
            vec![
                check("minTables", true, "3 tables, at least 0 required"),
                check("query:empty", false, "returned \"f\""),
            ],
        );
        assert_eq!(
            guard_verdict(Some(&tables)),
            GuardVerdict::NotEmpty { tables: Some(3) }
        );
        assert_eq!(
            guard_verdict(Some(&result(true, None, vec![]))),
            GuardVerdict::Empty
        );
        assert_eq!(
            guard_verdict(Some(&result(false, Some(Reason::DatabaseMissing), vec![]))),
            GuardVerdict::Missing
        );
        let unreachable = guard_verdict(Some(&result(false, Some(Reason::DatabaseUnreachable), vec![])));
        assert!(
            matches!(unreachable, GuardVerdict::Unusable { ref reason, .. } if reason == "DatabaseUnreachable"),
            "{unreachable:?}"
        );
        assert!(matches!(guard_verdict(None), GuardVerdict::Unusable { .. }));
    }

    #[test]
    fn the_restore_job_names_the_snapshot_the_target_and_the_checks_but_no_secret() {
        let restore = spec(&format!(
            "{EXISTING}verify: {{minTables: 2, tables: [{{name: guests, minRows: 5}}]}}\n"
        ));
        let connection = existing_connection(&restore).unwrap();
        let source = latest_of_policy("hotel-db", "hotel", None);
        let call = restore_invocation(
            &source,
            &policy(),
            &connection,
            Prepare::CreateIfMissing,
            None,
            restore.verify.as_ref(),
        );
        let args = call.args.join(" ");
        assert!(args.starts_with("agent restore --target postgres --host db.hotel.svc --port 5432 --database hotel --user kajovo"), "{args}");
        assert!(
            args.contains("--snapshot latest --tag policy=hotel-db --tag namespace=hotel --create-database"),
            "{args}"
        );
        assert!(
            args.contains(r#"--checks {"minTables":2,"tables":[{"name":"guests","minRows":5}]}"#),
            "{args}"
        );
        let password = call
            .env
            .iter()
            .find(|e| e.name == "LIFEBOAT_DB_PASSWORD")
            .unwrap();
        assert!(password.value.is_none() && password.value_from.is_some());

        let pinned = latest_of_policy("hotel-db", "hotel", Some("4f42669d"));
        let args = restore_invocation(
            &pinned,
            &policy(),
            &connection,
            Prepare::Recreate,
            Some(ScratchEngine::Postgres),
            None,
        )
        .args
        .join(" ");
        assert!(
            args.contains("--snapshot 4f42669d --drop-database --no-owner --wait-for-database 60"),
            "{args}"
        );
        assert!(!args.contains("--tag") && !args.contains("--checks"), "{args}");

        let sha = "ab".repeat(32);
        let of_backup =
            latest_of_policy("hotel-db", "hotel", Some("4f42669d")).with_sha256(Some(sha.clone()));
        let args = restore_invocation(&of_backup, &policy(), &connection, Prepare::Nothing, None, None)
            .args
            .join(" ");
        assert!(
            args.contains(&format!("--snapshot 4f42669d --expect-sha256 {sha}")),
            "{args}"
        );
    }

    #[test]
    fn dropping_a_verify_database_quotes_its_name_and_never_puts_it_in_shell_text() {
        let restore = spec(&EXISTING.replace("database: hotel", "database: 'verify_\"x'"));
        let call = drop_invocation(&existing_connection(&restore).unwrap()).unwrap();
        let sql = call
            .env
            .iter()
            .find(|e| e.name == "LIFEBOAT_DROP_SQL")
            .and_then(|e| e.value.clone())
            .unwrap();
        assert_eq!(sql, r#"DROP DATABASE IF EXISTS "verify_""x" WITH (FORCE);"#);
        assert!(!call.args[1].contains("verify_"), "{}", call.args[1]);
        assert!(call
            .env
            .iter()
            .any(|e| e.name == "PGPASSWORD" && e.value_from.is_some()));
    }

    #[test]
    fn the_guard_query_fits_the_engine() {
        let restore = spec(EXISTING);
        let args = guard_invocation(&existing_connection(&restore).unwrap())
            .args
            .join(" ");
        assert!(args.starts_with("agent verify --target postgres"), "{args}");
        assert!(
            args.contains("pg_catalog") && args.contains(r#""minTables":0"#),
            "{args}"
        );
    }

    #[test]
    fn a_verified_restore_succeeds_and_a_failed_check_fails_it_with_every_result() {
        use crate::agent::error::Reason;
        let now = Time("2026-11-23T10:05:00Z".parse().unwrap());
        let mut status = RestoreStatus {
            start_time: Some(Time("2026-11-23T10:00:00Z".parse().unwrap())),
            ..Default::default()
        };
        let mut ok = AgentResult::new(Mode::Restore, "2026-11-23T10:00:10Z".parse().unwrap());
        ok.ok = true;
        ok.snapshot_id = Some("4f42669d8c2f0000".into());
        ok.snapshot_time = Some("2026-11-23T02:00:00Z".into());
        ok.completion_time = "2026-11-23T10:01:30Z".into();
        ok.set_checks(vec![check("table:guests", true, "500 rows, at least 1 required")]);
        finish(
            &mut status,
            JobOutcome::Succeeded,
            Some(AgentReport::Result(Box::new(ok))),
            true,
            &now,
        );
        assert_eq!(status.phase, Some(RestorePhase::Succeeded));
        assert_eq!(
            status.duration.as_deref(),
            Some("1m30s"),
            "the agent's completion, not the operator's"
        );
        assert_eq!(
            status.snapshot_time,
            Some(Time("2026-11-23T02:00:00Z".parse().unwrap()))
        );
        assert!(status.verification.as_ref().unwrap().passed);

        let mut status = RestoreStatus {
            start_time: Some(Time("2026-11-23T10:00:00Z".parse().unwrap())),
            ..Default::default()
        };
        let failed = result(
            false,
            Some(Reason::VerifyFailed),
            vec![
                check("table:guests", false, "0 rows"),
                check("minTables", true, "1 tables"),
            ],
        );
        finish(&mut status, JobOutcome::Failed, Some(failed), true, &now);
        assert_eq!(status.phase, Some(RestorePhase::Failed));
        assert_eq!(status.reason.as_deref(), Some("VerifyFailed"));
        let verification = status.verification.unwrap();
        assert!(!verification.passed);
        assert_eq!(verification.checks.len(), 2);

        let mut status = RestoreStatus::default();
        finish(&mut status, JobOutcome::Succeeded, None, false, &now);
        assert_eq!(status.phase, Some(RestorePhase::Failed), "no result, no success");
    }

    #[test]
    fn a_scratch_server_that_never_gets_ready_fails_after_its_timeout() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r-scratch"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}
        }))
        .unwrap();
        let timeout = Duration::from_secs(60);
        assert!(matches!(
            scratch_readiness(Some(&pod), Duration::from_secs(5), timeout),
            ScratchReadiness::Starting(_)
        ));
        assert!(matches!(
            scratch_readiness(Some(&pod), Duration::from_secs(61), timeout),
            ScratchReadiness::Failed(_)
        ));
        let crashed: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r-scratch"},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "database", "image": "postgres:16", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "message": "initdb: error: cannot be run as root"}}}]}
        }))
        .unwrap();
        match scratch_readiness(Some(&crashed), Duration::from_secs(1), timeout) {
            ScratchReadiness::Failed(message) => {
                assert!(message.contains("cannot be run as root"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let ready: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r-scratch"}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        assert_eq!(
            scratch_readiness(Some(&ready), Duration::ZERO, timeout),
            ScratchReadiness::Ready
        );
    }
}
