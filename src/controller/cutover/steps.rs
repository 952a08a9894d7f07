//! Carrying out one step: look at the world (a Job, a Backup, a Deployment, an HTTP endpoint), act if
//! the step's intent is recorded and the action is missing, and say how far the step got.
//!
//! This file only dispatches; each kind of step lives in its own module, and the helpers every step
//! shares (poll intervals, limits, how long the step has been running) are here.

use std::time::Duration;

use super::machine::Step;
use super::{
    approval, backup, elapsed, now, quiesce, rollback, stabilization, step_jobs, traffic, Progress, Run,
};
use crate::controller::ReconcileError;
use crate::duration::DurationString;

/// How soon to look again at something that changes without an Event (Pods, HTTP endpoints).
pub(super) const POLL: Duration = Duration::from_secs(2);
/// Watch events (owned Jobs, Backups, Restores; edits of the Cutover) wake the controller sooner.
pub(super) const SLOW_POLL: Duration = Duration::from_secs(30);

/// A duration from the spec, or `default` when it is absent or does not parse.
pub(super) fn limit(duration: Option<&DurationString>, default: Duration) -> Duration {
    duration.and_then(|d| d.parse().ok()).unwrap_or(default)
}

/// How long `step` has been running, counted from the start of its latest record.
pub(super) fn step_age(run: &Run<'_>, step: &Step) -> Duration {
    let name = step.name();
    run.status
        .steps
        .iter()
        .rev()
        .find(|r| r.name == name)
        .map(|r| elapsed(&r.start_time, &now()))
        .unwrap_or_default()
}

pub(super) async fn evaluate(run: &mut Run<'_>, step: &Step) -> Result<Progress, ReconcileError> {
    let spec = run.cutover.spec.clone();
    let dry = spec.dry_run;
    match step {
        Step::Preflight(name) => match spec.preflight.iter().find(|c| &c.name == name) {
            Some(check) => step_jobs::run_check(run, check, "preflight").await,
            None => Ok(Progress::Skipped("no longer in spec.preflight".into())),
        },
        Step::Verify(name) if dry => Ok(Progress::Skipped(format!(
            "dry run: would check {name} after the switch"
        ))),
        Step::Verify(name) => match spec.verify.iter().find(|c| &c.name == name) {
            Some(check) => step_jobs::run_check(run, check, "verify").await,
            None => Ok(Progress::Skipped("no longer in spec.verify".into())),
        },
        Step::Backup if dry => {
            let policy = spec
                .backup
                .as_ref()
                .map(|b| b.policy_ref.name.clone())
                .unwrap_or_default();
            Ok(Progress::Skipped(format!(
                "dry run: would back up through BackupPolicy {policy}"
            )))
        }
        Step::Backup => backup::backup(run, step).await,
        Step::Migration if dry => Ok(Progress::Skipped("dry run: would run the migration Job".into())),
        Step::Migration => step_jobs::migration(run).await,
        Step::Readiness => traffic::readiness(run, step).await,
        Step::Approval if dry => Ok(Progress::Skipped("dry run: would wait for approval".into())),
        Step::Approval => approval::approval(run, step).await,
        Step::Switch => traffic::switch_to(run).await,
        Step::Stabilization if dry => Ok(Progress::Skipped("dry run: would watch the new side".into())),
        Step::Stabilization => stabilization::stabilization(run, step).await,
        Step::StopWriters => quiesce::stop_writers(run, step).await,
        Step::RestoreDatabase => rollback::restore_database(run).await,
        Step::RollbackJob => match &spec.rollback.job {
            Some(job) => step_jobs::rollback_job(run, step_jobs::ROLLBACK_JOB, job).await,
            None => Ok(Progress::Skipped("no rollback.job".into())),
        },
        Step::Resume => quiesce::resume(run, step).await,
        Step::SwitchBack => traffic::switch_back(run).await,
        Step::VerifyFrom => rollback::verify_from(run, step).await,
    }
}
