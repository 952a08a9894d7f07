//! The Backup controller: one Job running `lifeboat agent backup`, and its result as status.
//!
//! Read the world → decide → act: the Backup, its policy, its Job and the Job's Pods are read; the
//! status to write and whether to create the Job follow; intent (phase Running with the Job's name) is
//! written before the Job is created, so a restarted operator finds and follows the same Job.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use super::children::create_ignoring_existing;
use super::events::publish;
use super::secrets::{first_missing_secret, policy_secrets};
use super::status::{child_name, report_stalled, write_status};
use super::{Context, ReconcileError};
use crate::agent::result::AgentResult;
use crate::api::backup::{BackupPhase, BackupStatus};
use crate::api::{Backup, BackupPolicy};
use crate::conditions::{set_health, Health};
use crate::duration::format_duration;
use crate::jobs::{self, AgentReport, JobOutcome, JobState};

const KIND: &str = "Backup";

pub fn job_name(backup: &str) -> String {
    child_name(backup, "backup", 63)
}

pub async fn reconcile(backup: Arc<Backup>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.metrics.reconciled(KIND);
    let namespace = backup.namespace().ok_or_else(|| ReconcileError::NotNamespaced {
        kind: KIND,
        name: backup.name_any(),
    })?;
    let backups: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    let current = backup.status.clone().unwrap_or_default();
    if matches!(current.phase, Some(BackupPhase::Succeeded | BackupPhase::Failed)) {
        return Ok(Action::await_change());
    }
    let now = Time(jiff::Timestamp::now());
    let generation = backup.metadata.generation;
    let mut status = current.clone();
    status.observed_generation = generation;

    // The policy gives source, repository and Job settings.
    let policy_name = &backup.spec.policy_ref.name;
    let Some(policy) = find_policy(&ctx, &namespace, policy_name).await? else {
        let message = format!("BackupPolicy {policy_name} does not exist in namespace {namespace}");
        return wait_for_a_person(&backups, &backup, status, "PolicyNotFound", message, &ctx, &now).await;
    };
    let job_name = job_name(&backup.name_any());
    // Status is written (phase Running) before the Job is created, so a Backup without a phase has no
    // Job yet and needs no lookup.
    let state = match current.phase {
        None => JobState::Missing,
        Some(_) => jobs::follow_job(&ctx.client, &namespace, &job_name, jobs::AGENT_CONTAINER).await?,
    };
    if let JobState::Missing = state {
        // Checked afresh before every Job (not from the policy's cache of recent checks): a Job whose
        // Secret is missing would sit in CreateContainerConfigError instead of failing.
        let needed = policy_secrets(&policy.spec);
        if let Some(problem) = first_missing_secret(&ctx.client, &namespace, &needed).await? {
            return wait_for_a_person(&backups, &backup, status, "SecretMissing", problem, &ctx, &now).await;
        }
        // Intent first: a restart between these two writes finds phase Running and creates the same Job.
        status.phase = Some(BackupPhase::Running);
        status.job_name = Some(job_name.clone());
        status.start_time.get_or_insert(now.clone());
        status.message = Some(format!("backing up through Job {job_name}"));
        set_health(
            &mut status.conditions.0,
            Health::Progressing {
                reason: "Running",
                message: format!("Job {job_name} runs the agent"),
            },
            generation,
            &now,
        );
        write_status(
            &backups,
            &backup,
            Some(&current),
            &status,
            &ctx.settings.manager_name,
        )
        .await?;
        let job = backup_job(&backup, &policy, &namespace, &job_name, &ctx);
        let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
        if create_ignoring_existing(&jobs_api, &job).await? {
            publish(
                &ctx,
                backup.as_ref(),
                EventType::Normal,
                "Started",
                format!("Job {job_name} started"),
            )
            .await;
        }
        return Ok(Action::await_change());
    }

    match state {
        JobState::Missing => Ok(Action::await_change()),
        JobState::Running(_) => {
            status.phase = Some(BackupPhase::Running);
            status.job_name = Some(job_name.clone());
            set_health(
                &mut status.conditions.0,
                Health::Progressing {
                    reason: "Running",
                    message: format!("Job {job_name} runs the agent"),
                },
                generation,
                &now,
            );
            write_status(
                &backups,
                &backup,
                Some(&current),
                &status,
                &ctx.settings.manager_name,
            )
            .await?;
            Ok(Action::await_change())
        }
        JobState::Finished { outcome, last, .. } => {
            let report = last.map(|terminated| AgentReport::from_terminated(&terminated));
            finish(&mut status, outcome, report, &now);
            write_status(
                &backups,
                &backup,
                Some(&current),
                &status,
                &ctx.settings.manager_name,
            )
            .await?;
            announce_result(&ctx, &backup, &policy, &status).await;
            Ok(Action::await_change())
        }
    }
}

/// The Backup's policy from the BackupPolicy controller's cache, or from the API when the cache does
/// not have it (yet): a Backup made by hand right after its policy must not be told the policy is missing.
async fn find_policy(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<Arc<BackupPolicy>>, ReconcileError> {
    let key = kube::runtime::reflector::ObjectRef::new(name).within(namespace);
    if let Some(policy) = ctx.stores.policies.get(&key) {
        return Ok(Some(policy));
    }
    let policies: Api<BackupPolicy> = Api::namespaced(ctx.client.clone(), namespace);
    Ok(policies.get_opt(name).await?.map(Arc::new))
}

/// The terminal status from the Job's outcome and the agent's report. A Job that completed without a
/// successful result is a failure: no success is reported that the agent did not confirm.
pub fn finish(status: &mut BackupStatus, outcome: JobOutcome, report: Option<AgentReport>, now: &Time) {
    let generation = status.observed_generation;
    status.completion_time = Some(now.clone());
    match (outcome, report) {
        (JobOutcome::Succeeded, Some(AgentReport::Result(result)))
            if result.ok && result.snapshot_id.is_some() =>
        {
            apply_result(status, &result);
            status.phase = Some(BackupPhase::Succeeded);
            let size = result
                .size_bytes
                .map(|s| format!(", {s} bytes"))
                .unwrap_or_default();
            status.message = Some(format!(
                "snapshot {}{size}",
                result.snapshot_id.clone().unwrap_or_default()
            ));
            set_health(
                &mut status.conditions.0,
                Health::Ready {
                    reason: "Succeeded",
                    message: status.message.clone().unwrap_or_default(),
                },
                generation,
                now,
            );
        }
        (_, report) => {
            let message = match report {
                Some(AgentReport::Result(result)) => {
                    apply_result(status, &result);
                    result
                        .message
                        .clone()
                        .unwrap_or_else(|| "the agent reported a failure without a message".into())
                }
                Some(AgentReport::Unstructured(text)) => text,
                None => {
                    "the backup Job ended without a finished agent container (deleted or evicted?)".into()
                }
            };
            status.phase = Some(BackupPhase::Failed);
            status.message = Some(message.clone());
            set_health(
                &mut status.conditions.0,
                Health::Stalled {
                    reason: "BackupFailed",
                    message,
                },
                generation,
                now,
            );
        }
    }
    if let (Some(start), Some(end)) = (&status.start_time, &status.completion_time) {
        let elapsed = end.0.duration_since(start.0);
        status.duration = Some(format_duration(std::time::Duration::from_secs(
            elapsed.as_secs().max(0) as u64,
        )));
    }
}

fn apply_result(status: &mut BackupStatus, result: &AgentResult) {
    status.snapshot_id = result.snapshot_id.clone();
    status.size_bytes = result.size_bytes.and_then(|s| i64::try_from(s).ok());
    status.sha256 = result.sha256.clone();
    if let Ok(start) = result.start_time.parse::<jiff::Timestamp>() {
        status.start_time = Some(Time(start));
    }
}

fn backup_job(backup: &Backup, policy: &BackupPolicy, namespace: &str, job_name: &str, ctx: &Context) -> Job {
    let invocation = jobs::backup_invocation(&policy.name_any(), namespace, &backup.name_any(), &policy.spec);
    let labels = [
        (jobs::POLICY_LABEL.to_owned(), policy.name_any()),
        (jobs::BACKUP_LABEL.to_owned(), backup.name_any()),
        (jobs::COMPONENT_LABEL.to_owned(), "backup".to_owned()),
    ]
    .into();
    let owner = backup
        .controller_owner_ref(&())
        .expect("a Backup read from the API has a name and uid");
    jobs::agent_job(
        jobs::AgentJob {
            name: job_name.to_owned(),
            namespace,
            owner,
            labels,
            image: &ctx.settings.agent_image,
            command: &ctx.settings.agent_command,
        },
        policy.spec.job_template.as_ref(),
        invocation,
        policy.spec.repository.restic.env_from.clone(),
    )
}

async fn wait_for_a_person(
    backups: &Api<Backup>,
    backup: &Backup,
    mut status: BackupStatus,
    reason: &'static str,
    message: String,
    ctx: &Context,
    now: &Time,
) -> Result<Action, ReconcileError> {
    status.phase = Some(status.phase.unwrap_or(BackupPhase::Pending));
    status.message = Some(message.clone());
    report_stalled(ctx, backups, backup, status, reason, message, now).await?;
    // Fixed by a person (a Secret created, a policy applied): look again soon, without a hot loop.
    Ok(Action::requeue(std::time::Duration::from_secs(20)))
}

async fn announce_result(ctx: &Context, backup: &Backup, policy: &BackupPolicy, status: &BackupStatus) {
    let succeeded = status.phase == Some(BackupPhase::Succeeded);
    let (kind, reason) = if succeeded {
        (EventType::Normal, "Succeeded")
    } else {
        (EventType::Warning, "Failed")
    };
    publish(
        ctx,
        backup,
        kind,
        reason,
        status.message.clone().unwrap_or_default(),
    )
    .await;
    if succeeded {
        if let (Some(start), Some(end)) = (&status.start_time, &status.completion_time) {
            let seconds = end.0.duration_since(start.0).as_secs_f64().max(0.0);
            let labels = crate::metrics::PolicyLabels {
                namespace: backup.namespace().unwrap_or_default(),
                policy: policy.name_any(),
            };
            ctx.metrics
                .duration_seconds
                .get_or_create(&labels)
                .observe(seconds);
        }
    }
}
