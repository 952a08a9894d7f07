//! The Restore controller: a snapshot back into a database (an existing server, or a scratch server it
//! starts), verified, with every step in status.
//!
//! Read the world → decide → act, one step per reconcile: resolve the snapshot; for a scratch target
//! start the server and wait until it is ready (Provisioning); for an existing database nobody
//! confirmed overwriting, check that it is empty (Checking); run `lifeboat agent restore` with the
//! verify checks (Running); record the result (Succeeded/Failed) and remove the scratch server. The
//! phase and the child's name are written to status before each child is created, and every child has a
//! deterministic name, so a restarted operator follows the same objects.

mod cleanup;
pub mod connection;
#[cfg(test)]
mod fixtures;
pub mod invocation;
pub mod plan;
pub mod scratch;
pub mod smoke;
pub mod source;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use self::connection::Connection;
use self::plan::GuardVerdict;
use self::scratch::{provision_scratch, Provisioned};
use self::smoke::smoke_test;
use self::source::{FromBackup, ResolvedSource};
use super::status::{child_name, write_status};
use super::{Context, ReconcileError};
use crate::api::common::SecretKeyRef;
use crate::api::restore::{RestorePhase, RestoreStatus};
use crate::api::{Backup, BackupPolicy, Restore};
use crate::conditions::{set_health, Health};
use crate::controller::children::create_ignoring_existing;
use crate::controller::events::publish;
use crate::controller::secrets::first_missing_secret;
use crate::jobs::{self, follow_job, AgentReport, Invocation, JobOutcome, JobState, AGENT_CONTAINER};

const KIND: &str = "Restore";
pub const RESTORE_LABEL: &str = "lifeboat.dev/restore";
/// Default time a scratch server has to accept connections.
const SCRATCH_READY_TIMEOUT: Duration = Duration::from_secs(300);

pub fn job_name(restore: &str) -> String {
    child_name(restore, "restore", 63)
}

pub fn check_job_name(restore: &str) -> String {
    child_name(restore, "check", 63)
}

pub fn smoke_job_name(restore: &str) -> String {
    child_name(restore, "smoke", 63)
}

pub fn drop_job_name(restore: &str) -> String {
    child_name(restore, "drop", 63)
}

/// What one reconcile sees and changes, so each step reads as the runbook step it is.
struct Run<'a> {
    ctx: &'a Context,
    restore: &'a Restore,
    api: Api<Restore>,
    namespace: String,
    current: RestoreStatus,
    status: RestoreStatus,
    now: Time,
}

impl Run<'_> {
    fn name(&self) -> String {
        self.restore.name_any()
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        Api::namespaced(self.ctx.client.clone(), &self.namespace)
    }

    /// Writes the status if it changed; the object's status is then what was written.
    async fn save(&mut self) -> Result<(), ReconcileError> {
        write_status(
            &self.api,
            self.restore,
            Some(&self.current),
            &self.status,
            &self.ctx.settings.manager_name,
        )
        .await?;
        self.current = self.status.clone();
        Ok(())
    }

    async fn progress(
        &mut self,
        phase: RestorePhase,
        reason: &'static str,
        message: String,
    ) -> Result<(), ReconcileError> {
        self.status.phase = Some(phase);
        self.status.message = Some(message.clone());
        let generation = self.status.observed_generation;
        set_health(
            &mut self.status.conditions.0,
            Health::Progressing { reason, message },
            generation,
            &self.now,
        );
        self.save().await
    }

    fn labels(&self, component: &str) -> BTreeMap<String, String> {
        [
            (RESTORE_LABEL.to_owned(), self.name()),
            (jobs::COMPONENT_LABEL.to_owned(), component.to_owned()),
            ("app.kubernetes.io/managed-by".to_owned(), "lifeboat".to_owned()),
        ]
        .into()
    }

    /// Ends the Restore as Failed, removes what it created, and says so.
    async fn fail(&mut self, reason: &str, message: String) -> Result<Action, ReconcileError> {
        let now = self.now.clone();
        plan::fail(&mut self.status, reason, message, &now);
        self.conclude().await
    }

    /// The end of a Restore: status, cleanup, Event and metric.
    async fn conclude(&mut self) -> Result<Action, ReconcileError> {
        self.save().await?;
        let succeeded = self.status.phase == Some(RestorePhase::Succeeded);
        let (type_, reason) = if succeeded {
            (EventType::Normal, "Succeeded")
        } else {
            (EventType::Warning, "Failed")
        };
        let note = match (&self.status.reason, &self.status.message) {
            (Some(code), Some(message)) if !succeeded => format!("{code}: {message}"),
            (_, message) => message.clone().unwrap_or_default(),
        };
        publish(self.ctx, self.restore, type_, reason, note).await;
        if let (Some(start), Some(end)) = (&self.status.start_time, &self.status.completion_time) {
            let seconds = end.0.duration_since(start.0).as_secs_f64().max(0.0);
            let labels = crate::metrics::RestoreLabels {
                namespace: self.namespace.clone(),
                target: self.restore.spec.target.kind().to_owned(),
                result: if succeeded { "succeeded" } else { "failed" }.to_owned(),
            };
            self.ctx
                .metrics
                .restore_duration_seconds
                .get_or_create(&labels)
                .observe(seconds);
        }
        self.clean_up().await
    }
}

pub async fn reconcile(restore: Arc<Restore>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.metrics.reconciled(KIND);
    let namespace = restore.namespace().ok_or_else(|| ReconcileError::NotNamespaced {
        kind: KIND,
        name: restore.name_any(),
    })?;
    // The watch cache may lag our own last status write by a moment; acting on a stale phase could undo
    // a finished Restore, so the status is read fresh.
    let api: Api<Restore> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(fresh) = api.get_opt(&restore.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let restore = Arc::new(fresh);
    let current = restore.status.clone().unwrap_or_default();
    let mut status = current.clone();
    status.observed_generation = restore.metadata.generation;
    let mut run = Run {
        ctx: &ctx,
        restore: &restore,
        api,
        namespace,
        current,
        status,
        now: Time(jiff::Timestamp::now()),
    };
    if run.current.phase.is_some_and(RestorePhase::is_finished) {
        // A crash between the result and the cleanup ends here, so the cleanup still happens.
        return run.clean_up().await;
    }
    let now = run.now.clone();
    run.status.start_time.get_or_insert(now);
    run.status.phase.get_or_insert(RestorePhase::Pending);

    // 1. Which snapshot, from which repository.
    let source = match resolve_source(&run).await? {
        Resolution::Ready(source, policy) => (source, policy),
        Resolution::Waiting(message) => {
            run.progress(RestorePhase::Pending, "WaitingForBackup", message)
                .await?;
            return Ok(Action::requeue(Duration::from_secs(10)));
        }
        Resolution::Invalid(reason, message) => return run.fail(reason, message).await,
    };
    let (source, policy) = source;
    if let Some(snapshot) = Some(&source.snapshot).filter(|s| *s != "latest") {
        run.status.snapshot_id.get_or_insert_with(|| snapshot.clone());
    }

    // 2. The Secrets the Jobs need (named, never read).
    let mut needed = vec![(
        "repository password",
        policy.spec.repository.restic.password_secret_ref.clone(),
    )];
    if let Some(Connection::Database { password, .. }) = connection::existing_connection(&run.restore.spec) {
        needed.push(("target database password", password));
    }
    let restore_job_name = job_name(&run.name());
    let restore_job = follow_job(
        &run.ctx.client,
        &run.namespace,
        &restore_job_name,
        AGENT_CONTAINER,
    )
    .await?;
    // Once the restore Job exists, its outcome decides (a Secret deleted meanwhile does not).
    if matches!(restore_job, JobState::Missing) {
        let needed: Vec<(&str, &SecretKeyRef)> = needed.iter().map(|(what, r)| (*what, r)).collect();
        if let Some(problem) = first_missing_secret(&run.ctx.client, &run.namespace, &needed).await? {
            return run.fail("SecretMissing", problem).await;
        }
    }

    // 3. The target: a scratch server is started and must be ready first.
    let connection = match &run.restore.spec.target.scratch {
        Some(spec) => {
            let spec = spec.clone();
            match provision_scratch(&mut run, &spec).await? {
                Provisioned::Ready(connection) => connection,
                Provisioned::Wait(after) => return Ok(Action::requeue(after)),
                Provisioned::Failed(message) => return run.fail("ScratchNotReady", message).await,
            }
        }
        None => match connection::existing_connection(&run.restore.spec) {
            Some(connection) => connection,
            None => {
                return run
                    .fail("InvalidTarget", "the Restore has no target".into())
                    .await
            }
        },
    };
    run.status.target = Some(connection.describe());

    // 4. A restore already under way is followed to its end.
    match restore_job {
        JobState::Missing => {}
        JobState::Running(job) => return still_restoring(&mut run, &restore_job_name, &job).await,
        JobState::Finished { outcome, last, .. } => {
            let report = last.map(|terminated| AgentReport::from_terminated(&terminated));
            return restore_ended(&mut run, outcome, report, &connection).await;
        }
    }

    // 5. The overwrite guard: an unconfirmed existing database must be empty.
    let jobs_api: Api<Job> = run.api();
    if plan::needs_guard(&run.restore.spec) {
        let guard_name = check_job_name(&run.name());
        let checking = format!(
            "checking that {} is empty (Job {guard_name})",
            connection.describe()
        );
        match follow_job(&run.ctx.client, &run.namespace, &guard_name, AGENT_CONTAINER).await? {
            JobState::Missing => {
                run.status.check_job_name = Some(guard_name.clone());
                run.progress(RestorePhase::Checking, "CheckingTarget", checking)
                    .await?;
                let job = agent_job(
                    &run,
                    &guard_name,
                    "restore-check",
                    invocation::guard_invocation(&connection),
                    &policy,
                );
                create_ignoring_existing(&jobs_api, &job).await?;
                return Ok(Action::await_change());
            }
            JobState::Running(job) => {
                run.progress(RestorePhase::Checking, "CheckingTarget", checking)
                    .await?;
                return Ok(jobs::recheck_running(&job));
            }
            JobState::Finished { last, .. } => {
                let report = last.map(|terminated| AgentReport::from_terminated(&terminated));
                match plan::guard_verdict(report.as_ref()) {
                    GuardVerdict::Empty | GuardVerdict::Missing => {}
                    GuardVerdict::NotEmpty { tables } => {
                        let database = run
                            .restore
                            .spec
                            .target
                            .existing_database()
                            .unwrap_or_default()
                            .to_owned();
                        let count = tables
                            .map(|n| format!("{n} tables"))
                            .unwrap_or_else(|| "tables".into());
                        let message = format!(
                            "refusing to restore into {}: it already has {count}. Nothing was changed. To replace it, \
                             create a new Restore with spec.confirmOverwrite: {database}",
                            connection.describe()
                        );
                        return run.fail("TargetNotEmpty", message).await;
                    }
                    GuardVerdict::Unusable { reason, message } => return run.fail(&reason, message).await,
                }
            }
        }
    }

    // 6. The restore (and verification) itself. Intent first: phase Running and the Job's name.
    let prepare = plan::prepare_for(&run.restore.spec);
    let invocation = invocation::restore_invocation(
        &source,
        &policy.spec,
        &connection,
        prepare,
        run.restore
            .spec
            .target
            .scratch
            .as_ref()
            .map(|scratch| scratch.engine),
        run.restore.spec.verify.as_ref(),
    );
    run.status.job_name = Some(restore_job_name.clone());
    let what = source.describe();
    run.progress(
        RestorePhase::Running,
        "Restoring",
        format!(
            "restoring {what} into {} (Job {restore_job_name})",
            connection.describe()
        ),
    )
    .await?;
    let job = agent_job(&run, &restore_job_name, "restore", invocation, &policy);
    let created = create_ignoring_existing(&jobs_api, &job).await?;
    // A restart here finds the Job by its name and follows it: one restore, not two.
    crate::controller::crash_point::reached("restore-job-created");
    if created {
        let note = format!(
            "Job {restore_job_name} restores {what} into {}",
            connection.describe()
        );
        publish(run.ctx, run.restore, EventType::Normal, "Started", note).await;
    }
    Ok(Action::await_change())
}

enum Resolution {
    Ready(ResolvedSource, Box<BackupPolicy>),
    Waiting(String),
    Invalid(&'static str, String),
}

async fn resolve_source(run: &Run<'_>) -> Result<Resolution, ReconcileError> {
    let spec = &run.restore.spec.source;
    let namespace = &run.namespace;
    let (policy_name, snapshot, sha256) = if let Some(backup_ref) = &spec.backup_ref {
        let backups: Api<Backup> = run.api();
        let backup = backups.get_opt(&backup_ref.name).await?;
        match source::from_backup(&backup_ref.name, namespace, backup.as_ref()) {
            FromBackup::Snapshot { policy, id, sha256 } => (policy, Some(id), sha256),
            FromBackup::Waiting(message) => return Ok(Resolution::Waiting(message)),
            FromBackup::Invalid(reason, message) => return Ok(Resolution::Invalid(reason, message)),
        }
    } else if let Some(policy_ref) = &spec.policy_ref {
        (policy_ref.name.clone(), spec.snapshot.clone(), None)
    } else {
        return Ok(Resolution::Invalid(
            "InvalidSource",
            "set source.backupRef or source.policyRef".into(),
        ));
    };
    let policies: Api<BackupPolicy> = run.api();
    let Some(policy) = policies.get_opt(&policy_name).await? else {
        return Ok(Resolution::Invalid(
            "PolicyNotFound",
            format!("BackupPolicy {policy_name} does not exist in namespace {namespace}: it names the repository to restore from"),
        ));
    };
    Ok(Resolution::Ready(
        source::latest_of_policy(&policy_name, namespace, snapshot.as_deref()).with_sha256(sha256),
        Box::new(policy),
    ))
}

/// The restore Job runs: status says into what, and which Job.
async fn still_restoring(run: &mut Run<'_>, name: &str, job: &Job) -> Result<Action, ReconcileError> {
    run.status.job_name = Some(name.to_owned());
    if let Some(progress) = jobs::agent_progress(&run.ctx.client, &run.namespace, name).await {
        run.status.progress = Some(progress);
    }
    let target = run.status.target.clone().unwrap_or_default();
    run.progress(
        RestorePhase::Running,
        "Restoring",
        format!("restoring into {target} (Job {name})"),
    )
    .await?;
    Ok(jobs::recheck_for_progress(job))
}

/// The restore Job ended: its result decides, and a verified restore goes on to its smoke test.
async fn restore_ended(
    run: &mut Run<'_>,
    outcome: JobOutcome,
    report: Option<AgentReport>,
    connection: &Connection,
) -> Result<Action, ReconcileError> {
    run.status.progress = None;
    let verify_requested = run
        .restore
        .spec
        .verify
        .as_ref()
        .is_some_and(invocation::has_checks);
    let now = run.now.clone();
    plan::finish(&mut run.status, outcome, report, verify_requested, &now);
    match run.restore.spec.smoke.clone() {
        Some(step) if run.status.phase == Some(RestorePhase::Succeeded) => {
            smoke_test(run, &step, connection).await
        }
        _ => run.conclude().await,
    }
}

fn agent_job(
    run: &Run<'_>,
    name: &str,
    component: &str,
    invocation: Invocation,
    policy: &BackupPolicy,
) -> Job {
    let owner = run
        .restore
        .controller_owner_ref(&())
        .expect("a Restore read from the API has a name and uid");
    let mut labels = run.labels(component);
    labels.insert(jobs::POLICY_LABEL.to_owned(), policy.name_any());
    let mut template = run
        .restore
        .spec
        .job_template
        .clone()
        .or_else(|| policy.spec.job_template.clone())
        .unwrap_or_default();
    // No retry by default: a failed load changed nothing (single transaction) and fails the same way
    // again, and a drill should report the first failure rather than double its RTO.
    template.backoff_limit.get_or_insert(0);
    jobs::agent_job(
        jobs::AgentJob {
            name: name.to_owned(),
            namespace: &run.namespace,
            owner,
            labels,
            image: &run.ctx.settings.agent_image,
            image_pull_secrets: &run.ctx.settings.agent_image_pull_secrets,
            command: &run.ctx.settings.agent_command,
        },
        Some(&template),
        invocation,
        policy.spec.repository.restic.env_from.clone(),
    )
}
