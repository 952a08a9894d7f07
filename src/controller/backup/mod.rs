//! The Backup controller: one Job running `lifeboat agent backup`, and its result as status.
//!
//! Read the world → decide → act: the Backup, its policy, its Job and the Job's Pods are read; the
//! status to write and whether to create the Job follow; intent (phase Running with the Job's name) is
//! written before the Job is created, so a restarted operator finds and follows the same Job.

pub mod plan;

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
use crate::api::backup::BackupStatus;
use crate::api::{Backup, BackupPolicy};
use crate::jobs::{self, AgentReport, JobState};

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
    if plan::is_finished(&current) {
        return Ok(Action::await_change());
    }
    let now = Time(jiff::Timestamp::now());
    let mut status = current.clone();
    status.observed_generation = backup.metadata.generation;

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
    // Decide the status first; write it; only then act (intent before the side effect).
    let job_missing = matches!(state, JobState::Missing);
    let mut next = Action::await_change();
    match state {
        JobState::Missing => {
            // Checked afresh before every Job (not from the policy's cache of recent checks): a Job
            // whose Secret is missing would sit in CreateContainerConfigError instead of failing.
            let needed = policy_secrets(&policy.spec);
            if let Some(problem) = first_missing_secret(&ctx.client, &namespace, &needed).await? {
                return wait_for_a_person(&backups, &backup, status, "SecretMissing", problem, &ctx, &now)
                    .await;
            }
            // Intent first: a restart between the status write and the create finds phase Running
            // and creates the same Job.
            plan::start(&mut status, &job_name, &now);
        }
        JobState::Running(job) => {
            plan::still_running(&mut status, &job_name, &now);
            if let Some(progress) = jobs::agent_progress(&ctx.client, &namespace, &job_name).await {
                status.progress = Some(progress);
            }
            next = jobs::recheck_for_progress(&job);
        }
        JobState::Finished { outcome, last, .. } => {
            let report = last.map(|terminated| AgentReport::from_terminated(&terminated));
            plan::finish(&mut status, outcome, report, &now);
            status.progress = None;
        }
    }
    write_status(
        &backups,
        &backup,
        Some(&current),
        &status,
        &ctx.settings.manager_name,
    )
    .await?;
    if job_missing {
        let job = backup_job(&backup, &policy, &namespace, &job_name, &ctx);
        let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
        if create_ignoring_existing(&jobs_api, &job).await? {
            let note = format!("Job {job_name} started");
            publish(&ctx, backup.as_ref(), EventType::Normal, "Started", note).await;
        }
    } else if plan::is_finished(&status) {
        announce_result(&ctx, &backup, &policy, &status).await;
    }
    Ok(next)
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

fn backup_job(backup: &Backup, policy: &BackupPolicy, namespace: &str, job_name: &str, ctx: &Context) -> Job {
    let mut invocation =
        jobs::backup_invocation(&policy.name_any(), namespace, &backup.name_any(), &policy.spec);
    let trigger = format!("{:?}", backup.spec.trigger);
    jobs::tag_why(&mut invocation, &trigger, backup.spec.reason.as_deref());
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
            image_pull_secrets: &ctx.settings.agent_image_pull_secrets,
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
    plan::waiting(&mut status, &message);
    report_stalled(ctx, backups, backup, status, reason, message, now).await?;
    // Fixed by a person (a Secret created, a policy applied): look again soon, without a hot loop.
    Ok(Action::requeue(std::time::Duration::from_secs(20)))
}

async fn announce_result(ctx: &Context, backup: &Backup, policy: &BackupPolicy, status: &BackupStatus) {
    let (kind, reason, message) = plan::result_event(status);
    publish(ctx, backup, kind, reason, message).await;
    if let Some(seconds) = plan::success_seconds(status) {
        let labels =
            crate::metrics::PolicyLabels::new(&backup.namespace().unwrap_or_default(), &policy.name_any());
        ctx.metrics.backup.backup_succeeded(&labels, seconds);
    }
}
