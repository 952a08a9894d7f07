//! Steps carried out by a user's container in a Job: checks with `job:` (preflight, verify) and the
//! migration. The Job is created once under a deterministic name, so a restarted operator finds it.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ContainerStateTerminated;
use kube::{Api, Resource};

use super::steps::SLOW_POLL;
use super::{Progress, Run, CUTOVER_LABEL};
use crate::api::common::JobStep;
use crate::api::cutover::{Check, MigrationRecord};
use crate::controller::children::create_ignoring_existing;
use crate::controller::status::child_name;
use crate::controller::ReconcileError;
use crate::jobs::{self, JobOutcome, JobState, UserStepJob, COMPONENT_LABEL};

/// The most of a step's termination message kept as its report.
const REPORT_LIMIT: usize = 4096;
/// The user's container in a step Job.
const STEP_CONTAINER: &str = "step";
/// The purposes (Job name suffix and component label) of the rollback's Jobs.
pub(super) const QUIESCE_JOB: &str = "rollback-quiesce";
pub(super) const ROLLBACK_JOB: &str = "rollback-job";

/// The Job that step `step` of Cutover `cutover` runs in, if it runs in one of its own (the backup step
/// and the rollback's restore run in a Backup's and a Restore's Jobs): what `kubectl lifeboat logs` reads.
pub fn step_job_name(cutover: &str, step: &str) -> Option<String> {
    let suffix = match step {
        "migration" => "migration".to_owned(),
        "rollback/job" => ROLLBACK_JOB.to_owned(),
        "rollback/stop-writers" => QUIESCE_JOB.to_owned(),
        _ => match step.split_once('/') {
            Some((purpose @ ("preflight" | "verify"), check)) => format!("{purpose}-{check}"),
            _ => return None,
        },
    };
    Some(child_name(cutover, &suffix, 63))
}

/// A preflight or verify check: an HTTP request made here, or a Job.
pub(super) async fn run_check(
    run: &mut Run<'_>,
    check: &Check,
    purpose: &str,
) -> Result<Progress, ReconcileError> {
    if let Some(http) = &check.http {
        return Ok(match crate::checks::run_http_check(http).await {
            Ok(summary) => Progress::Done(summary),
            Err(problem) => Progress::Failed(problem),
        });
    }
    let Some(job) = &check.job else {
        return Ok(Progress::Failed("the check has neither http nor job".into()));
    };
    let name = step_job_name(&run.name(), &format!("{purpose}/{}", check.name)).expect("a check step");
    let (progress, _) = job_step(run, &name, purpose, job).await?;
    Ok(progress)
}

/// The migration Job; its report (termination message) is kept in `status.migration`.
pub(super) async fn migration(run: &mut Run<'_>) -> Result<Progress, ReconcileError> {
    let Some(migration) = run.cutover.spec.migration.clone() else {
        return Ok(Progress::Skipped("no migration".into()));
    };
    let name = step_job_name(&run.name(), "migration").expect("the migration step");
    if run.status.migration.is_none() {
        run.status.migration = Some(MigrationRecord {
            job_name: name.clone(),
            report: None,
        });
        run.save().await?;
    }
    let (progress, report) = job_step(run, &name, "migration", &migration.job).await?;
    if report.is_some() {
        if let Some(record) = run.status.migration.as_mut() {
            record.report = report;
        }
    }
    Ok(progress)
}

/// A rollback Job (`rollback.job`, `rollback.quiesce.job`) named after its `purpose`.
pub(super) async fn rollback_job(
    run: &mut Run<'_>,
    purpose: &str,
    job: &JobStep,
) -> Result<Progress, ReconcileError> {
    let name = child_name(&run.name(), purpose, 63);
    let (progress, _) = job_step(run, &name, purpose, job).await?;
    Ok(progress)
}

/// Creates the step's Job if missing and reads how it ended, with its termination message.
async fn job_step(
    run: &Run<'_>,
    name: &str,
    purpose: &str,
    step: &JobStep,
) -> Result<(Progress, Option<String>), ReconcileError> {
    let state = jobs::follow_job(&run.ctx.client, &run.namespace, name, STEP_CONTAINER).await?;
    let (outcome, last) = match state {
        JobState::Missing => {
            let api: Api<Job> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
            create_ignoring_existing(&api, &step_job(run, name, purpose, step)).await?;
            let message = format!("Job {name} started");
            return Ok((
                Progress::Wait {
                    after: SLOW_POLL,
                    message,
                },
                None,
            ));
        }
        JobState::Running(_) => {
            let message = format!("Job {name} is running");
            return Ok((
                Progress::Wait {
                    after: SLOW_POLL,
                    message,
                },
                None,
            ));
        }
        JobState::Finished { outcome, last, .. } => (outcome, last),
    };
    let report = last.and_then(|terminated| step_report(&terminated));
    // A failure is explained by the last lines the container printed (the log tail FallbackToLogsOnError
    // put in its termination message): its stderr and stdout may have landed in either order.
    let said = report.as_deref().map(|r| match outcome {
        JobOutcome::Succeeded => jobs::last_line(r, 200),
        _ => jobs::last_lines(r, 3, 300),
    });
    let progress = finished_job(name, &outcome, said.as_deref());
    Ok((progress, report))
}

/// What a finished step Job means: done only if it succeeded; either way with what the container said
/// last (`said`), so the step's message says it.
fn finished_job(name: &str, outcome: &JobOutcome, said: Option<&str>) -> Progress {
    let said = said.map(|line| format!(": {line}")).unwrap_or_default();
    match outcome {
        JobOutcome::Succeeded => Progress::Done(format!("Job {name} succeeded{said}")),
        _ => Progress::Failed(format!("Job {name} failed{said}")),
    }
}

/// A step container's termination message (its report), at most 4 KiB.
fn step_report(terminated: &ContainerStateTerminated) -> Option<String> {
    let message = terminated.message.as_deref()?;
    let trimmed = message.trim();
    if trimmed.is_empty() {
        return None;
    }
    let mut end = trimmed.len().min(REPORT_LIMIT);
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    Some(trimmed[..end].to_owned())
}

/// A Job running a user's container once (no retries unless asked: a migration is not blindly rerun).
fn step_job(run: &Run<'_>, name: &str, purpose: &str, step: &JobStep) -> Job {
    let labels: std::collections::BTreeMap<String, String> = [
        (CUTOVER_LABEL.to_owned(), run.name()),
        (COMPONENT_LABEL.to_owned(), purpose.to_owned()),
    ]
    .into();
    let owner = run
        .cutover
        .controller_owner_ref(&())
        .expect("a Cutover read from the API has a name and uid");
    jobs::user_step_job(
        UserStepJob {
            name,
            namespace: &run.namespace,
            labels,
            owner,
            container: STEP_CONTAINER,
            provided_env: Vec::new(),
        },
        step,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminated(message: Option<&str>) -> ContainerStateTerminated {
        ContainerStateTerminated {
            message: message.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn a_report_is_the_trimmed_termination_message_cut_at_4_kib() {
        assert_eq!(step_report(&terminated(None)), None);
        assert_eq!(step_report(&terminated(Some("  \n "))), None);
        assert_eq!(
            step_report(&terminated(Some("\nmigrated 3 tables\n"))).as_deref(),
            Some("migrated 3 tables")
        );
        // Cut on a character boundary: "é" is two bytes, so 4096 bytes would split one.
        let long = format!("a{}", "é".repeat(3000));
        let report = step_report(&terminated(Some(&long))).unwrap();
        assert_eq!(report.len(), 4095);
    }

    #[test]
    fn a_finished_job_says_how_it_ended_and_its_last_line() {
        assert_eq!(
            finished_job("m", &JobOutcome::Succeeded, Some("all done")),
            Progress::Done("Job m succeeded: all done".into())
        );
        assert_eq!(
            finished_job("m", &JobOutcome::Failed, None),
            Progress::Failed("Job m failed".into())
        );
    }
}
