//! The optional smoke Job after a verified restore: the user's container, told where the restored
//! database is. The DR runbook's RTO includes "a basic smoke test", so the Restore ends only after it.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, EnvVar};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource};

use super::connection::{engine_name, Connection};
use super::plan;
use super::{smoke_job_name, Run};
use crate::api::common::{JobStep, ScratchEngine};
use crate::api::restore::RestorePhase;
use crate::controller::children::create_ignoring_existing;
use crate::controller::events::publish;
use crate::controller::ReconcileError;
use crate::jobs::{self, plain_env, secret_env, user_step_job, JobOutcome, JobState, UserStepJob};

/// The user's container in the smoke Job.
const SMOKE_CONTAINER: &str = "smoke";

/// The restored database's address and credentials, under Lifeboat's names and the client libraries'
/// own (libpq's PG*, the MySQL clients' MYSQL_*), so most test tools need no flags. The password comes
/// from its Secret by reference.
pub fn database_env(connection: &Connection) -> Vec<EnvVar> {
    let Connection::Database {
        engine,
        host,
        port,
        database,
        user,
        password,
        ..
    } = connection
    else {
        return Vec::new();
    };
    let mut env = vec![
        plain_env("LIFEBOAT_DB_ENGINE", engine_name(*engine)),
        plain_env("LIFEBOAT_DB_HOST", host),
        plain_env("LIFEBOAT_DB_PORT", port.to_string()),
        plain_env("LIFEBOAT_DB_NAME", database),
        plain_env("LIFEBOAT_DB_USER", user),
        secret_env("LIFEBOAT_DB_PASSWORD", password),
    ];
    match engine {
        ScratchEngine::Postgres => {
            env.push(plain_env("PGHOST", host));
            env.push(plain_env("PGPORT", port.to_string()));
            env.push(plain_env("PGDATABASE", database));
            env.push(plain_env("PGUSER", user));
            env.push(secret_env("PGPASSWORD", password));
        }
        ScratchEngine::Mysql => {
            env.push(plain_env("MYSQL_HOST", host));
            env.push(plain_env("MYSQL_TCP_PORT", port.to_string()));
            env.push(secret_env("MYSQL_PWD", password));
        }
    }
    env
}

pub fn smoke_job(
    step: &JobStep,
    connection: &Connection,
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    owner: OwnerReference,
) -> Job {
    user_step_job(
        UserStepJob {
            name,
            namespace,
            labels,
            owner,
            container: SMOKE_CONTAINER,
            provided_env: database_env(connection),
        },
        step,
    )
}

/// The last line the smoke container wrote (its termination message, or its log tail on failure).
pub fn last_words(terminated: &ContainerStateTerminated) -> Option<String> {
    let line = jobs::last_line(terminated.message.as_deref().unwrap_or_default(), 300);
    match line {
        line if !line.is_empty() => Some(line),
        _ if terminated.exit_code == 0 => None,
        _ => Some(format!("exit code {}", terminated.exit_code)),
    }
}

/// After a verified restore: the smoke Job, whose end is the Restore's end.
pub(super) async fn smoke_test(
    run: &mut Run<'_>,
    step: &JobStep,
    connection: &Connection,
) -> Result<Action, ReconcileError> {
    let name = smoke_job_name(&run.name());
    let state = jobs::follow_job(&run.ctx.client, &run.namespace, &name, SMOKE_CONTAINER).await?;
    let (outcome, last, completed_at) = match state {
        JobState::Missing | JobState::Running(_) => {
            // Restored and verified, not yet finished: the result so far stays in status.
            run.status.completion_time = None;
            run.status.duration = None;
            run.status.smoke_job_name = Some(name.clone());
            let message = format!("smoke testing {} (Job {name})", connection.describe());
            run.progress(RestorePhase::SmokeTesting, "SmokeTesting", message)
                .await?;
            return match state {
                JobState::Running(job) => Ok(jobs::recheck_running(&job)),
                _ => {
                    start_smoke_job(run, step, connection, &name).await?;
                    Ok(Action::await_change())
                }
            };
        }
        JobState::Finished {
            outcome,
            last,
            completed_at,
        } => (outcome, last, completed_at),
    };
    let said = last.and_then(|terminated| last_words(&terminated));
    let ended = completed_at.unwrap_or_else(|| run.now.clone());
    if outcome == JobOutcome::Succeeded {
        let restored = run.status.message.clone().unwrap_or_default();
        let now = run.now.clone();
        plan::succeed_after_smoke(&mut run.status, ended, &restored, said.as_deref(), &now);
        run.conclude().await
    } else {
        let message = format!(
            "the smoke test Job {name} failed: {}",
            said.unwrap_or_else(|| "see its log".into())
        );
        run.now = ended;
        run.fail("SmokeFailed", message).await
    }
}

async fn start_smoke_job(
    run: &Run<'_>,
    step: &JobStep,
    connection: &Connection,
    name: &str,
) -> Result<(), ReconcileError> {
    let owner = run
        .restore
        .controller_owner_ref(&())
        .expect("a Restore read from the API has a name and uid");
    let job = smoke_job(
        step,
        connection,
        name,
        &run.namespace,
        run.labels("restore-smoke"),
        owner,
    );
    let jobs_api: Api<Job> = run.api();
    if create_ignoring_existing(&jobs_api, &job).await? {
        publish(
            run.ctx,
            run.restore,
            EventType::Normal,
            "SmokeStarted",
            format!("Job {name} smoke tests the restored data"),
        )
        .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::SecretKeyRef;

    #[test]
    fn the_smoke_job_finds_the_restored_database_in_its_environment_without_a_literal_password() {
        let connection = Connection::Database {
            engine: ScratchEngine::Postgres,
            host: "r-scratch.hotel.svc".into(),
            port: 5432,
            database: "restore".into(),
            user: "postgres".into(),
            password: SecretKeyRef {
                name: "r-scratch".into(),
                key: "password".into(),
            },
            ssl_mode: None,
        };
        let step: JobStep = serde_norway::from_str(
            "{image: app:2, command: [./smoke.sh], env: [{name: PGDATABASE, value: other}]}",
        )
        .unwrap();
        let job = smoke_job(
            &step,
            &connection,
            "r-smoke",
            "hotel",
            BTreeMap::new(),
            OwnerReference::default(),
        );
        let env = job.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        let value = |name: &str| {
            env.iter()
                .rev()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(value("PGHOST").as_deref(), Some("r-scratch.hotel.svc"));
        assert_eq!(
            value("PGDATABASE").as_deref(),
            Some("other"),
            "the user's value wins"
        );
        let password = env.iter().find(|e| e.name == "PGPASSWORD").unwrap();
        assert!(password.value.is_none() && password.value_from.is_some());
    }
}
