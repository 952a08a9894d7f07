//! The command lines of a Restore's agent Jobs: the restore itself (with its verify checks), the
//! overwrite guard's read-only look at the target, and dropAfter's drop of a `verify_` database.
//! Passwords reach them only as Secret references.

use std::time::Duration;

use k8s_openapi::api::core::v1::EnvVar;

use super::connection::{engine_name, Connection};
use super::source::ResolvedSource;
use crate::api::backup_policy::BackupPolicySpec;
use crate::api::common::{QueryCheck, ScratchEngine, VerifySpec};
use crate::jobs::{self, plain_env, secret_env, Invocation};

/// How long a restore Job retries a Ready scratch server that does not answer yet.
const SCRATCH_ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// The guard's check that the target has no tables (its name in the agent's result is `query:empty`).
pub const EMPTY_CHECK: &str = "empty";

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
        volumes,
        mounts,
    } = Invocation::against_repository("restore", &policy.repository.restic);
    // The repository's claim (if any), then the target's.
    let mut claim_mount = Invocation {
        volumes,
        mounts,
        ..Default::default()
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::restore::connection::existing_connection;
    use crate::controller::restore::fixtures::{policy, spec, EXISTING};
    use crate::controller::restore::source::latest_of_policy;

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
}
