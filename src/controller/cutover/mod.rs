//! The Cutover controller: the hotel cutover runbook carried out step by step, with the status as the
//! deployment log.
//!
//! Each reconcile reads the Cutover fresh from the API (the watch cache may lag our own last write),
//! asks [`machine::decide`] what comes next, marks the step Running in status *before* its side effect
//! (a Backup, a Job, a patch of the Service), evaluates it, and records the result — looping through
//! steps that finish at once, so a failed check reaches the rollback without waiting for a watch
//! event. A restarted operator finds the same step Running and resumes it: children have
//! deterministic names, and the switch records the previous target before patching.

mod approval;
mod backup;
pub mod machine;
mod notices;
mod quiesce;
mod rollback;
mod stabilization;
mod step_jobs;
mod steps;
pub mod switch;
mod traffic;
mod transitions;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::{Context, ReconcileError};
use crate::api::cutover::{CutoverPhase, CutoverStatus, StepPhase};
use crate::api::notifications::CutoverEvent;
use crate::api::Cutover;
use machine::{Decision, Step};

const KIND: &str = "Cutover";
/// Label on every Job a Cutover creates (the controller watches Jobs by it).
pub use step_jobs::step_job_name;

pub const CUTOVER_LABEL: &str = "lifeboat.dev/cutover";

/// What a step's evaluation found.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Not finished; look again after this long (or on a watch event).
    Wait {
        after: Duration,
        message: String,
    },
    Done(String),
    /// Not applicable (dry run): what it would have done.
    Skipped(String),
    Failed(String),
}

/// One reconcile's view: the Cutover as last read, and the status as last written.
pub(crate) struct Run<'a> {
    pub ctx: &'a Context,
    pub api: Api<Cutover>,
    pub cutover: Cutover,
    pub namespace: String,
    written: CutoverStatus,
    pub status: CutoverStatus,
    /// How the Cutover ended, for the conditions' message.
    outcome: Option<String>,
}

impl Run<'_> {
    /// Writes the status if it changed: the intent a restart resumes from.
    pub async fn save(&mut self) -> Result<(), ReconcileError> {
        let now = now();
        let message = self.health_message();
        let generation = self.cutover.metadata.generation;
        self.status.observed_generation = generation;
        transitions::set_conditions(&mut self.status, generation, message, &now);
        if self.status == self.written {
            return Ok(());
        }
        // Optimistic concurrency: the write only lands on the Cutover as it was read. A second operator
        // acting on the same Cutover (a deposed leader that has not noticed yet, or test operators
        // sharing a cluster) gets a conflict instead of erasing the intent this one recorded.
        let patch = serde_json::json!({
            "apiVersion": <Cutover as kube::Resource>::api_version(&()),
            "kind": <Cutover as kube::Resource>::kind(&()),
            "metadata": {"resourceVersion": self.cutover.metadata.resource_version},
            "status": self.status,
        });
        let params = PatchParams::apply(&self.ctx.settings.manager_name).force();
        let updated = self
            .api
            .patch_status(&self.name(), &params, &Patch::Apply(&patch))
            .await?;
        self.cutover.metadata.resource_version = updated.metadata.resource_version;
        self.written = self.status.clone();
        Ok(())
    }

    fn health_message(&self) -> String {
        if let Some(outcome) = &self.outcome {
            return outcome.clone();
        }
        let last = self.status.steps.last();
        match (self.status.phase, last) {
            (Some(CutoverPhase::RollingBack | CutoverPhase::RolledBack), _)
                if self.status.rollback.is_some() =>
            {
                let reason = self
                    .status
                    .rollback
                    .as_ref()
                    .map(|r| r.reason.clone())
                    .unwrap_or_default();
                let step = last
                    .map(|s| format!("{}: {}", s.name, s.message.clone().unwrap_or_default()))
                    .unwrap_or_default();
                format!("rollback because {reason}; {step}")
            }
            (_, Some(step)) => format!(
                "{}: {}",
                step.name,
                step.message.clone().unwrap_or_else(|| "running".into())
            ),
            (_, None) => "starting".into(),
        }
    }

    pub fn name(&self) -> String {
        self.cutover.name_any()
    }

    pub async fn event(&self, type_: EventType, reason: &str, note: String) {
        super::events::publish(self.ctx, &self.cutover, type_, reason, note).await;
    }
}

pub fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// The time from `since` to `now`; zero if the clock went backwards.
pub fn elapsed(since: &Time, now: &Time) -> Duration {
    let seconds = now.0.duration_since(since.0).as_secs_f64();
    Duration::from_secs_f64(seconds.max(0.0))
}

pub async fn reconcile(cutover: Arc<Cutover>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.metrics.reconciled(KIND);
    let namespace = cutover.namespace().ok_or_else(|| ReconcileError::NotNamespaced {
        kind: KIND,
        name: cutover.name_any(),
    })?;
    let api: Api<Cutover> = Api::namespaced(ctx.client.clone(), &namespace);
    // A quorum read: acting on a cached status older than our own last write could repeat a step.
    let Some(fresh) = api.get_opt(&cutover.name_any()).await? else {
        return Ok(Action::await_change());
    };
    if fresh.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let status = fresh.status.clone().unwrap_or_default();
    let mut run = Run {
        ctx: &ctx,
        api,
        namespace,
        written: status.clone(),
        status,
        cutover: fresh,
        outcome: None,
    };
    let outcome = match drive(&mut run).await {
        Ok(wait) => notices::deliver(&mut run).await.map(|retry| {
            let retry = retry.map(|at| {
                Duration::from_secs_f64(at.duration_since(jiff::Timestamp::now()).as_secs_f64().max(0.0))
            });
            [wait, retry].into_iter().flatten().min()
        }),
        Err(error) => Err(error),
    };
    let action = match outcome {
        Ok(Some(after)) => Ok(Action::requeue(after)),
        Ok(None) => Ok(Action::await_change()),
        // Someone else wrote the Cutover since it was read: read it again and decide afresh.
        Err(ReconcileError::Kube(kube::Error::Api(response))) if response.code == 409 => {
            Ok(Action::requeue(Duration::from_millis(200)))
        }
        Err(other) => Err(other),
    };
    ctx.metrics
        .cutover_phase(&run.namespace, &run.name(), run.written.phase.unwrap_or_default());
    ctx.metrics
        .cutover_completed(&run.namespace, &run.name(), run.written.completion_time.as_ref());
    action
}

/// Runs steps until one has to wait (returns how long) or the Cutover is finished (`None`).
async fn drive(run: &mut Run<'_>) -> Result<Option<Duration>, ReconcileError> {
    if run.status.start_time.is_none() {
        run.status.start_time = Some(now());
        run.status.phase = Some(CutoverPhase::Pending);
        run.status.active = Some(crate::api::cutover::ActiveSide::From);
        run.save().await?;
        let note = if run.cutover.spec.dry_run {
            "dry run started"
        } else {
            "cutover started"
        };
        run.event(EventType::Normal, "Started", note.into()).await;
    }
    // Bounded: a plan has at most ~70 steps; a loop beyond that is a bug, not progress.
    for _ in 0..128 {
        let decision = machine::decide(&run.cutover.spec, &run.status);
        match decision {
            Decision::Idle => {
                // Finished: the status already says how; writing it again would only churn.
                return Ok(None);
            }
            Decision::Finish { phase, message } => {
                transitions::finish(&mut run.status, phase, &now());
                if let Some((event, headline)) = notices::ending(phase, &message) {
                    notices::announce(run, event, headline, message.clone());
                }
                run.outcome = Some(message.clone());
                run.save().await?;
                let type_ = if phase == CutoverPhase::Succeeded {
                    EventType::Normal
                } else {
                    EventType::Warning
                };
                run.event(type_, phase.name(), message).await;
                return Ok(None);
            }
            Decision::StartRollback { reason, failed_check } => {
                transitions::start_rollback(&mut run.status, reason.clone(), failed_check, &now());
                notices::announce(
                    run,
                    CutoverEvent::RollbackStarted,
                    "is ROLLING BACK",
                    reason.clone(),
                );
                run.save().await?;
                run.ctx.metrics.cutover_rollback(&run.namespace);
                run.event(EventType::Warning, "RollingBack", reason).await;
            }
            Decision::Run(step) => {
                if transitions::begin(&mut run.status, &step, &now()) {
                    if step == Step::Approval {
                        let timeout = run.cutover.spec.approval.as_ref().and_then(|a| a.timeout.clone());
                        let how = notices::how_to_approve(
                            &run.namespace,
                            &run.name(),
                            timeout.as_ref().map(|t| t.0.as_str()),
                        );
                        notices::announce(run, CutoverEvent::AwaitingApproval, "is AWAITING APPROVAL", how);
                    }
                    run.save().await?;
                    run.event(EventType::Normal, "StepStarted", step.name()).await;
                }
                let progress = steps::evaluate(run, &step).await?;
                // The riskiest instant for a restart: the step acted (created its Job or Backup, patched
                // the Service) and its result is not recorded yet. Tests die here at every kind of step.
                super::crash_point::reached(&format!("after:{}", step.kind()));
                if !matches!(progress, Progress::Wait { .. }) {
                    // And the instant the step is over (its effects in memory) but not yet recorded.
                    super::crash_point::reached(&format!("done:{}", step.kind()));
                }
                match progress {
                    Progress::Wait { after, message } => {
                        transitions::note(&mut run.status, &step, message);
                        run.save().await?;
                        return Ok(Some(after));
                    }
                    Progress::Done(message) => finish_step(run, &step, StepPhase::Succeeded, message).await?,
                    Progress::Skipped(message) => {
                        finish_step(run, &step, StepPhase::Skipped, message).await?
                    }
                    Progress::Failed(message) => finish_step(run, &step, StepPhase::Failed, message).await?,
                }
            }
        }
    }
    Ok(Some(Duration::from_secs(1)))
}

async fn finish_step(
    run: &mut Run<'_>,
    step: &Step,
    phase: StepPhase,
    message: String,
) -> Result<(), ReconcileError> {
    let took = transitions::complete(&mut run.status, step, phase, message.clone(), &now());
    run.save().await?;
    run.ctx
        .metrics
        .cutover_step_duration(step.kind(), took.as_secs_f64());
    let (type_, reason) = match phase {
        StepPhase::Failed => (EventType::Warning, "StepFailed"),
        StepPhase::Skipped => (EventType::Normal, "StepSkipped"),
        _ => (EventType::Normal, "StepSucceeded"),
    };
    run.event(type_, reason, format!("{}: {message}", step.name()))
        .await;
    Ok(())
}
