//! The policy's repository maintenance Jobs: retention (`agent prune`) after each successful backup, and
//! the integrity check (`agent check`) on its own schedule; their results, and cleanup of finished ones.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use crate::api::backup_policy::{BackupPolicyStatus, CheckSummary, ConcurrencyPolicy};
use crate::api::{Backup, BackupPolicy, Cutover, Restore};
use crate::controller::children::{create_ignoring_existing, delete_ignoring_absent};
use crate::controller::events::publish;
use crate::controller::status::child_name;
use crate::controller::{Context, ReconcileError};
use crate::jobs::{self, AgentReport, JobOutcome};
use crate::schedule::Schedule;
use crate::slots::{self, SlotDecision, SlotInput};

use super::holds;

pub const RETENTION: &str = "retention";
pub const CHECK: &str = "check";
/// Finished maintenance Jobs kept for `kubectl describe` (their results live in status).
const KEEP_FINISHED: usize = 2;

/// Creates a maintenance Job of `component` named `name`, owned by the policy; an existing one is kept.
async fn create_job(
    ctx: &Context,
    policy: &BackupPolicy,
    name: &str,
    component: &str,
    args: Vec<String>,
) -> Result<bool, kube::Error> {
    let namespace = policy.namespace().unwrap_or_default();
    let Some(owner) = policy.controller_owner_ref(&()) else {
        return Ok(false);
    };
    let labels = [
        (jobs::POLICY_LABEL.to_owned(), policy.name_any()),
        (jobs::COMPONENT_LABEL.to_owned(), component.to_owned()),
    ]
    .into();
    let job = jobs::agent_job(
        jobs::AgentJob {
            name: name.to_owned(),
            namespace: &namespace,
            owner,
            labels,
            image: &ctx.settings.agent_image,
            image_pull_secrets: &ctx.settings.agent_image_pull_secrets,
            command: &ctx.settings.agent_command,
        },
        policy.spec.job_template.as_ref(),
        jobs::Invocation {
            args,
            ..jobs::Invocation::opening(&policy.spec.repository.restic)
        },
        policy.spec.repository.restic.env_from.clone(),
    );
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    create_ignoring_existing(&api, &job).await
}

/// Runs `agent prune` after a successful backup (one Job per success, named after it), keeping the
/// snapshots still held (see [`holds`]; recorded in status first, so what `kubectl get` shows is what the
/// Job was given). The agent waits for restic's lock (--retry-lock), so it never overlaps a backup of the
/// same repository.
pub async fn start_retention(
    ctx: &Context,
    policy: &BackupPolicy,
    backups: &[Arc<Backup>],
    status: &mut BackupPolicyStatus,
    after_backup: &str,
) -> Result<(), kube::Error> {
    let Some(retention) = &policy.spec.retention else {
        return Ok(());
    };
    let namespace = policy.namespace().unwrap_or_default();
    let cutovers = Api::<Cutover>::namespaced(ctx.client.clone(), &namespace)
        .list(&Default::default())
        .await?;
    let restores = Api::<Restore>::namespaced(ctx.client.clone(), &namespace)
        .list(&Default::default())
        .await?;
    status.holds = holds::holds(
        &policy.name_any(),
        backups,
        &cutovers.items,
        &restores.items,
        Timestamp::now(),
    );
    let mut args: Vec<String> = vec![
        "agent".into(),
        "prune".into(),
        "--retry-lock".into(),
        "10m".into(),
    ];
    for (flag, value) in [
        ("--keep-last", retention.keep_last),
        ("--keep-hourly", retention.keep_hourly),
        ("--keep-daily", retention.keep_daily),
        ("--keep-weekly", retention.keep_weekly),
        ("--keep-monthly", retention.keep_monthly),
        ("--keep-yearly", retention.keep_yearly),
    ] {
        if let Some(count) = value.filter(|c| *c > 0) {
            args.extend([flag.to_owned(), count.to_string()]);
        }
    }
    // Only this policy's snapshots: a repository may be shared.
    args.extend([
        "--tag".into(),
        format!("policy={}", policy.name_any()),
        "--tag".into(),
        format!("namespace={namespace}"),
    ]);
    for hold in &status.holds {
        args.extend(["--hold".into(), hold.snapshot_id.clone()]);
    }
    let name = child_name(after_backup, "prune", 63);
    if create_job(ctx, policy, &name, RETENTION, args).await? {
        publish(
            ctx,
            policy,
            EventType::Normal,
            "Retention",
            format!("Job {name} applies the retention rules"),
        )
        .await;
    }
    Ok(())
}

/// Starts the repository check when its slot is due; returns when the next check is due.
pub async fn schedule_check(
    ctx: &Context,
    policy: &BackupPolicy,
    status: &mut BackupPolicyStatus,
    now: Timestamp,
) -> Result<Option<Timestamp>, ReconcileError> {
    let Some(check) = &policy.spec.check else {
        return Ok(None);
    };
    // The main schedule's time zone applies; an invalid check schedule is reported like the main one.
    let Ok(schedule) = Schedule::parse(&check.schedule.0, policy.spec.time_zone.as_deref()) else {
        return Ok(None);
    };
    let created = policy
        .metadata
        .creation_timestamp
        .clone()
        .map(|t| t.0)
        .unwrap_or(now);
    let handled_until = status
        .last_check_schedule_time
        .clone()
        .map(|t| t.0)
        .unwrap_or(created);
    let (decision, next) = slots::decide_slot(&SlotInput {
        schedule: &schedule,
        now,
        handled_until,
        starting_deadline: None,
        suspend: policy.spec.suspend,
        concurrency: ConcurrencyPolicy::Allow,
        running: &[],
        jitter: std::time::Duration::ZERO,
    });
    if let SlotDecision::Run { slot } = decision {
        let mut args: Vec<String> = vec![
            "agent".into(),
            "check".into(),
            "--retry-lock".into(),
            "30m".into(),
        ];
        if let Some(subset) = &check.read_data_subset {
            args.extend(["--read-data-subset".into(), subset.clone()]);
        }
        let name = child_name(&policy.name_any(), &format!("check-{}", slot.as_second()), 63);
        if create_job(ctx, policy, &name, CHECK, args).await? {
            publish(
                ctx,
                policy,
                EventType::Normal,
                "RepositoryCheck",
                format!("Job {name} checks the repository"),
            )
            .await;
        }
        status.last_check_schedule_time = Some(Time(slot));
    }
    Ok(next)
}

/// The finished maintenance Jobs of `component`, oldest first.
async fn finished_jobs(
    ctx: &Context,
    policy: &BackupPolicy,
    component: &str,
) -> Result<Vec<Job>, ReconcileError> {
    let namespace = policy.namespace().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let selector = format!(
        "{}={},{}={component}",
        jobs::POLICY_LABEL,
        policy.name_any(),
        jobs::COMPONENT_LABEL
    );
    let mut finished: Vec<Job> = jobs_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|job| jobs::job_outcome(job) != JobOutcome::Running)
        .collect();
    finished.sort_by_key(|job| job.metadata.creation_timestamp.clone().map(|t| t.0));
    Ok(finished)
}

/// The verdict of the newest finished Job of `component`, when it is not `known` yet.
async fn newest_verdict(
    ctx: &Context,
    policy: &BackupPolicy,
    component: &str,
    known: Option<&CheckSummary>,
) -> Result<Option<CheckSummary>, ReconcileError> {
    let finished = finished_jobs(ctx, policy, component).await?;
    let Some(newest) = finished.last() else {
        return Ok(None);
    };
    let name = newest.name_any();
    if known.is_some_and(|c| c.job_name == name) {
        return Ok(None);
    }
    let namespace = policy.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let listed = pods
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await?;
    let time = newest
        .status
        .as_ref()
        .and_then(|s| s.completion_time.clone())
        .unwrap_or(Time(Timestamp::now()));
    let report = jobs::newest_agent_report(&listed.items);
    Ok(Some(verdict(
        component,
        name,
        jobs::job_outcome(newest),
        report,
        time,
    )))
}

/// A maintenance Job's verdict: passed only when it completed and the agent said so.
fn verdict(
    component: &str,
    job_name: String,
    outcome: JobOutcome,
    report: Option<AgentReport>,
    time: Time,
) -> CheckSummary {
    let failed = |message: String| (false, Some(message));
    let (passed, message) = match (outcome, report) {
        (JobOutcome::Succeeded, Some(AgentReport::Result(result))) if result.ok => (true, None),
        (_, Some(AgentReport::Result(result))) => failed(
            result
                .message
                .clone()
                .unwrap_or_else(|| format!("restic {} failed", restic_command(component))),
        ),
        (_, Some(AgentReport::Unstructured(text))) => failed(text),
        (_, None) => failed(format!(
            "the {component} Job ended without a finished agent container"
        )),
    };
    CheckSummary {
        job_name,
        time,
        passed,
        message,
    }
}

fn restic_command(component: &str) -> &'static str {
    if component == CHECK {
        "check"
    } else {
        "forget --prune"
    }
}

/// Records the newest finished check Job's result in status; returns a failure message when a newly
/// finished check failed.
pub async fn record_check(
    ctx: &Context,
    policy: &BackupPolicy,
    status: &mut BackupPolicyStatus,
) -> Result<Option<String>, ReconcileError> {
    if policy.spec.check.is_none() && status.last_check_schedule_time.is_none() {
        return Ok(None);
    }
    let Some(check) = newest_verdict(ctx, policy, CHECK, status.last_check.as_ref()).await? else {
        return Ok(None);
    };
    let name = check.job_name.clone();
    let message = check.message.clone().unwrap_or_default();
    let passed = check.passed;
    status.last_check = Some(check);
    if passed {
        let note = format!("{name}: restic check passed");
        publish(ctx, policy, EventType::Normal, "RepositoryHealthy", note).await;
        Ok(None)
    } else {
        let note = format!("{name}: {message}");
        publish(ctx, policy, EventType::Warning, "RepositoryCheckFailed", note).await;
        Ok(Some(message))
    }
}

/// Records the newest finished retention Job's result in status (a failing prune used to go unread);
/// returns a failure message when a newly finished one failed.
pub async fn record_retention(
    ctx: &Context,
    policy: &BackupPolicy,
    status: &mut BackupPolicyStatus,
) -> Result<Option<String>, ReconcileError> {
    if policy.spec.retention.is_none() && status.last_retention.is_none() {
        return Ok(None);
    }
    let known = status.last_retention.as_ref();
    let Some(retention) = newest_verdict(ctx, policy, RETENTION, known).await? else {
        return Ok(None);
    };
    let failure = (!retention.passed).then(|| retention.message.clone().unwrap_or_default());
    if let Some(message) = &failure {
        let note = format!("{}: {message}", retention.job_name);
        publish(ctx, policy, EventType::Warning, "RetentionFailed", note).await;
    }
    status.last_retention = Some(retention);
    Ok(failure)
}

/// Deletes finished maintenance Jobs beyond the newest few of each kind (results are in status).
pub async fn clean_up_finished_jobs(ctx: &Context, policy: &BackupPolicy) -> Result<(), ReconcileError> {
    let namespace = policy.namespace().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    // Only the kinds this policy ever ran: every list is an API call on each reconcile.
    let ran_check = policy.spec.check.is_some()
        || policy
            .status
            .as_ref()
            .is_some_and(|s| s.last_check_schedule_time.is_some());
    let components = [(RETENTION, policy.spec.retention.is_some()), (CHECK, ran_check)];
    for component in components.into_iter().filter(|(_, used)| *used).map(|(c, _)| c) {
        let finished = finished_jobs(ctx, policy, component).await?;
        let excess = finished.len().saturating_sub(KEEP_FINISHED);
        for job in finished.into_iter().take(excess) {
            delete_ignoring_absent(&jobs_api, &job.name_any()).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::result::{AgentResult, Mode};

    fn time() -> Time {
        Time("2026-05-01T04:00:00Z".parse().unwrap())
    }

    fn result(ok: bool, message: Option<&str>) -> Option<AgentReport> {
        let mut result = AgentResult::new(Mode::Check, "2026-05-01T04:00:00Z".parse().unwrap());
        result.ok = ok;
        result.message = message.map(str::to_owned);
        Some(AgentReport::Result(Box::new(result)))
    }

    #[test]
    fn a_maintenance_job_passes_only_when_it_completed_and_the_agent_said_so() {
        let passed = verdict(
            CHECK,
            "c-1".into(),
            JobOutcome::Succeeded,
            result(true, None),
            time(),
        );
        assert!(passed.passed);
        let corrupt = verdict(
            CHECK,
            "c-2".into(),
            JobOutcome::Failed,
            result(false, Some("pack 4f2a… does not exist")),
            time(),
        );
        assert_eq!(
            (corrupt.passed, corrupt.message.as_deref()),
            (false, Some("pack 4f2a… does not exist"))
        );
        let silent = verdict(
            RETENTION,
            "r-1".into(),
            JobOutcome::Failed,
            result(false, None),
            time(),
        );
        assert_eq!(silent.message.as_deref(), Some("restic forget --prune failed"));
        let gone = verdict(RETENTION, "r-2".into(), JobOutcome::Failed, None, time());
        assert_eq!(
            gone.message.as_deref(),
            Some("the retention Job ended without a finished agent container")
        );
        let ok_but_failed = verdict(
            CHECK,
            "c-3".into(),
            JobOutcome::Failed,
            result(true, None),
            time(),
        );
        assert!(!ok_but_failed.passed, "a failed Job never passes");
    }
}
