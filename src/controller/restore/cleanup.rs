//! The end of a Restore: its scratch server deleted (unless keepScratch) and, with dropAfter, its
//! `verify_` database dropped, each once and recorded in status, so a restarted operator neither
//! repeats nor forgets them.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::Resource;

use super::connection::existing_connection;
use super::invocation::drop_invocation;
use super::{drop_job_name, Run};
use crate::controller::children::{create_ignoring_existing, delete_ignoring_absent};
use crate::controller::events::publish;
use crate::controller::ReconcileError;
use crate::jobs::{self, follow_job, AgentReport, JobOutcome, JobState, AGENT_CONTAINER};

impl Run<'_> {
    /// Deletes the scratch server once the Restore has ended, unless asked to keep it.
    pub(super) async fn clean_up(&mut self) -> Result<Action, ReconcileError> {
        self.remove_scratch().await?;
        self.drop_target().await
    }

    /// Deletes the scratch server's Pod, Service and Secret (once).
    async fn remove_scratch(&mut self) -> Result<(), ReconcileError> {
        let Some(scratch) = self.status.scratch.clone() else {
            return Ok(());
        };
        if scratch.removed || self.restore.spec.keep_scratch {
            return Ok(());
        }
        delete_ignoring_absent(&self.api::<Pod>(), &scratch.pod).await?;
        delete_ignoring_absent(&self.api::<Service>(), &scratch.service).await?;
        delete_ignoring_absent(&self.api::<Secret>(), &scratch.secret).await?;
        if let Some(recorded) = self.status.scratch.as_mut() {
            recorded.removed = true;
        }
        self.save().await?;
        let note = format!(
            "deleted the scratch database Pod, Service and Secret {}",
            scratch.pod
        );
        publish(self.ctx, self.restore, EventType::Normal, "ScratchRemoved", note).await;
        Ok(())
    }

    /// dropAfter: a Job drops the target database, and its outcome is recorded (once).
    async fn drop_target(&mut self) -> Result<Action, ReconcileError> {
        let spec = &self.restore.spec;
        let connection = existing_connection(spec).filter(|_| spec.drop_after);
        let Some(invocation) = connection.as_ref().and_then(drop_invocation) else {
            return Ok(Action::await_change());
        };
        if self.status.target_dropped.is_some() {
            return Ok(Action::await_change());
        }
        let name = drop_job_name(&self.name());
        // The drop Job's container is jobs::agent_job's, like every agent Job's.
        let (outcome, last) =
            match follow_job(&self.ctx.client, &self.namespace, &name, AGENT_CONTAINER).await? {
                JobState::Missing => {
                    // Intent first, so a restart follows the same Job.
                    self.status.drop_job_name = Some(name.clone());
                    self.save().await?;
                    let owner = self
                        .restore
                        .controller_owner_ref(&())
                        .expect("a Restore read from the API has a name and uid");
                    let template = spec.job_template.clone().unwrap_or_default();
                    let job = jobs::agent_job(
                        jobs::AgentJob {
                            name: name.clone(),
                            namespace: &self.namespace,
                            owner,
                            labels: self.labels("restore-drop"),
                            image: &self.ctx.settings.agent_image,
                            image_pull_secrets: &self.ctx.settings.agent_image_pull_secrets,
                            command: "sh",
                        },
                        Some(&template),
                        invocation,
                        Vec::new(),
                    );
                    create_ignoring_existing(&self.api::<Job>(), &job).await?;
                    return Ok(Action::await_change());
                }
                JobState::Running(job) => return Ok(jobs::recheck_running(&job)),
                JobState::Finished { outcome, last, .. } => (outcome, last),
            };
        let dropped = outcome == JobOutcome::Succeeded;
        self.status.target_dropped = Some(dropped);
        self.save().await?;
        let what = connection.map(|c| c.describe()).unwrap_or_default();
        if dropped {
            publish(
                self.ctx,
                self.restore,
                EventType::Normal,
                "TargetDropped",
                format!("dropped {what} (Job {name})"),
            )
            .await;
        } else {
            let why = match last.map(|terminated| AgentReport::from_terminated(&terminated)) {
                Some(AgentReport::Unstructured(text)) => text,
                _ => "see the Job's log".into(),
            };
            let note = format!("could not drop {what} (Job {name}): {why}");
            publish(self.ctx, self.restore, EventType::Warning, "DropFailed", note).await;
        }
        Ok(Action::await_change())
    }
}
