//! Carrying out one step: look at the world (a Job, a Backup, a Deployment, an HTTP endpoint), act if
//! the step's intent is recorded and the action is missing, and say how far the step got.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::api::ListParams;
use kube::{Api, Resource, ResourceExt};

use super::machine::{self, Step, Watch};
use super::switch::{self, Target};
use super::{now, Progress, Run, CUTOVER_LABEL};
use crate::api::backup::{BackupPhase, BackupSpec, BackupStatus, BackupTrigger};
use crate::api::common::{HttpCheck, JobStep, LocalObjectRef};
use crate::api::cutover::{
    ActiveSide, ApprovalRecord, Check, MigrationRecord, StabilizationRecord, APPROVAL_REASON_ANNOTATION,
    APPROVED_BY_ANNOTATION,
};
use crate::api::restore::RestorePhase;
use crate::api::{Backup, BackupPolicy, Restore};
use crate::controller::children::create_ignoring_existing;
use crate::controller::status::child_name;
use crate::controller::ReconcileError;
use crate::duration::{format_duration, DurationString};
use crate::jobs::{self, JobOutcome, JobState, UserStepJob, COMPONENT_LABEL};

const POLL: Duration = Duration::from_secs(2);
/// Watch events (owned Jobs, Backups, Restores; edits of the Cutover) wake the controller sooner.
const SLOW_POLL: Duration = Duration::from_secs(30);
const REPORT_LIMIT: usize = 4096;
/// The user's container in a step Job.
const STEP_CONTAINER: &str = "step";

fn limit(duration: Option<&DurationString>, default: Duration) -> Duration {
    duration.and_then(|d| d.parse().ok()).unwrap_or(default)
}

fn step_age(run: &Run<'_>, step: &Step) -> Duration {
    let name = step.name();
    run.status
        .steps
        .iter()
        .rev()
        .find(|r| r.name == name)
        .map(|r| machine::elapsed(&r.start_time, &now()))
        .unwrap_or_default()
}

/// Default of `trafficSwitch.settle`.
const DEFAULT_SETTLE: Duration = Duration::from_secs(5);

/// A route change is done once traffic had `trafficSwitch.settle` (counted from the step's start) to
/// follow it; until then the step waits, so the checks that follow reach the side they are meant for.
fn settled(run: &Run<'_>, step: &Step, change: String) -> Progress {
    let settle = limit(run.cutover.spec.traffic_switch.settle.as_ref(), DEFAULT_SETTLE);
    let age = step_age(run, step);
    if age < settle {
        return Progress::Wait {
            after: settle - age,
            message: format!("{change}; giving traffic {} to follow", format_duration(settle)),
        };
    }
    Progress::Done(change)
}

pub(super) async fn evaluate(run: &mut Run<'_>, step: &Step) -> Result<Progress, ReconcileError> {
    let spec = run.cutover.spec.clone();
    let dry = spec.dry_run;
    match step {
        Step::Preflight(name) => match spec.preflight.iter().find(|c| &c.name == name) {
            Some(check) => run_check(run, check, "preflight").await,
            None => Ok(Progress::Skipped("no longer in spec.preflight".into())),
        },
        Step::Verify(name) if dry => Ok(Progress::Skipped(format!(
            "dry run: would check {name} after the switch"
        ))),
        Step::Verify(name) => match spec.verify.iter().find(|c| &c.name == name) {
            Some(check) => run_check(run, check, "verify").await,
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
        Step::Backup => backup(run, step).await,
        Step::Migration if dry => Ok(Progress::Skipped("dry run: would run the migration Job".into())),
        Step::Migration => migration(run).await,
        Step::Readiness => readiness(run, step).await,
        Step::Approval if dry => Ok(Progress::Skipped("dry run: would wait for approval".into())),
        Step::Approval => approval(run, step).await,
        Step::Switch => switch_to(run).await,
        Step::Stabilization if dry => Ok(Progress::Skipped("dry run: would watch the new side".into())),
        Step::Stabilization => stabilization(run, step).await,
        Step::SwitchBack => switch_back(run).await,
        Step::VerifyFrom => verify_from(run, step).await,
        Step::RestoreDatabase => restore_database(run).await,
    }
}

async fn run_check(run: &mut Run<'_>, check: &Check, purpose: &str) -> Result<Progress, ReconcileError> {
    if let Some(http) = &check.http {
        return Ok(match crate::checks::run_http_check(http).await {
            Ok(summary) => Progress::Done(summary),
            Err(problem) => Progress::Failed(problem),
        });
    }
    let Some(job) = &check.job else {
        return Ok(Progress::Failed("the check has neither http nor job".into()));
    };
    let name = child_name(&run.name(), &format!("{purpose}-{}", check.name), 63);
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
        JobState::Finished { outcome, last } => (outcome, last),
    };
    let report = last.and_then(|terminated| step_report(&terminated));
    let said = report
        .as_deref()
        .map(|r| format!(": {}", jobs::last_line(r, 200)))
        .unwrap_or_default();
    let progress = match outcome {
        JobOutcome::Succeeded => Progress::Done(format!("Job {name} succeeded{said}")),
        _ => Progress::Failed(format!("Job {name} failed{said}")),
    };
    Ok((progress, report))
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

pub fn backup_name(cutover: &str) -> String {
    // The Backup's own Job adds "-backup": keep room for it within 63.
    child_name(cutover, "pre-switch", 56)
}

async fn backup(run: &mut Run<'_>, step: &Step) -> Result<Progress, ReconcileError> {
    let Some(wanted) = run.cutover.spec.backup.clone() else {
        return Ok(Progress::Skipped("no backup configured".into()));
    };
    let name = backup_name(&run.name());
    if run.status.backup_ref.is_none() {
        run.status.backup_ref = Some(LocalObjectRef { name: name.clone() });
        run.save().await?;
    }
    let backups: Api<Backup> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
    let Some(existing) = backups.get_opt(&name).await? else {
        let owner = run
            .cutover
            .controller_owner_ref(&())
            .expect("a Cutover read from the API has a name and uid");
        let mut backup = Backup::new(
            &name,
            BackupSpec {
                policy_ref: wanted.policy_ref.clone(),
                trigger: BackupTrigger::PreCutover,
                reason: Some(format!("before Cutover {}", run.name())),
            },
        );
        backup.metadata.namespace = Some(run.namespace.clone());
        backup.metadata.owner_references = Some(vec![owner]);
        backup.metadata.labels = Some([(CUTOVER_LABEL.to_owned(), run.name())].into());
        create_ignoring_existing(&backups, &backup).await?;
        return Ok(Progress::Wait {
            after: SLOW_POLL,
            message: format!(
                "Backup {name} created from BackupPolicy {}",
                wanted.policy_ref.name
            ),
        });
    };
    let status: BackupStatus = existing.status.unwrap_or_default();
    match status.phase {
        Some(BackupPhase::Succeeded) => Ok(judge_backup(&name, &status)),
        Some(BackupPhase::Failed) => Ok(Progress::Failed(format!(
            "Backup {name} failed: {}; no switch without a valid snapshot",
            status.message.unwrap_or_default()
        ))),
        _ => {
            let timeout = limit(wanted.timeout.as_ref(), Duration::from_secs(3600));
            if step_age(run, step) > timeout {
                return Ok(Progress::Failed(format!(
                    "Backup {name} did not finish within {}",
                    format_duration(timeout)
                )));
            }
            let doing = status
                .message
                .unwrap_or_else(|| "waiting for the Backup controller".into());
            Ok(Progress::Wait {
                after: SLOW_POLL,
                message: format!("Backup {name}: {doing}"),
            })
        }
    }
}

/// The runbook's `test -s backup.sql`: a snapshot that exists and is not empty.
fn judge_backup(name: &str, status: &BackupStatus) -> Progress {
    match (&status.snapshot_id, status.size_bytes) {
        (Some(snapshot), Some(size)) if size > 0 => {
            Progress::Done(format!("Backup {name}: snapshot {snapshot}, {size} bytes"))
        }
        (Some(snapshot), _) => Progress::Failed(format!(
            "Backup {name}: snapshot {snapshot} is empty; no switch without a valid snapshot"
        )),
        (None, _) => Progress::Failed(format!(
            "Backup {name} succeeded without a snapshot id; no switch without a valid snapshot"
        )),
    }
}

async fn migration(run: &mut Run<'_>) -> Result<Progress, ReconcileError> {
    let Some(migration) = run.cutover.spec.migration.clone() else {
        return Ok(Progress::Skipped("no migration".into()));
    };
    let name = child_name(&run.name(), "migration", 63);
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

async fn readiness(run: &mut Run<'_>, step: &Step) -> Result<Progress, ReconcileError> {
    let timeout = limit(
        run.cutover.spec.readiness_timeout.as_ref(),
        Duration::from_secs(600),
    );
    let to = run.cutover.spec.to.clone();
    let verdict = side_ready(run, &to).await?;
    Ok(match verdict {
        Ok(summary) => Progress::Done(summary),
        Err(missing) if step_age(run, step) > timeout => Progress::Failed(format!(
            "not ready within {}: {missing}",
            format_duration(timeout)
        )),
        Err(missing) => Progress::Wait {
            after: POLL,
            message: missing,
        },
    })
}

/// Whether a side can take traffic: its Deployment rolled out with every Pod Ready, or (without a
/// Deployment) at least one Pod matching its selector and all of them Ready.
async fn side_ready(
    run: &Run<'_>,
    side: &crate::api::cutover::Side,
) -> Result<Result<String, String>, ReconcileError> {
    let selector = side
        .selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods: Api<Pod> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
    let listed = pods.list(&ListParams::default().labels(&selector)).await?.items;
    if let Some(name) = &side.deployment {
        let deployments: Api<Deployment> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
        return Ok(match deployments.get_opt(name).await? {
            None => Err(format!("Deployment {name} does not exist")),
            Some(deployment) => crate::checks::deployment_ready(&deployment, &listed),
        });
    }
    let live: Vec<&Pod> = listed
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let ready = live.iter().filter(|p| crate::checks::pod_ready(p)).count();
    Ok(if !live.is_empty() && ready == live.len() {
        Ok(format!("{ready} Pods matching {selector} Ready"))
    } else {
        Err(format!("{ready}/{} Pods matching {selector} Ready", live.len()))
    })
}

async fn approval(run: &mut Run<'_>, step: &Step) -> Result<Progress, ReconcileError> {
    let spec = run.cutover.spec.approval.clone().unwrap_or_default();
    let annotations = run.cutover.annotations();
    let by_field = spec
        .approved_by
        .clone()
        .filter(|who| !who.trim().is_empty())
        .map(|who| (who, spec.reason.clone()));
    let by_annotation = annotations
        .get(APPROVED_BY_ANNOTATION)
        .filter(|who| !who.trim().is_empty())
        .map(|who| (who.clone(), annotations.get(APPROVAL_REASON_ANNOTATION).cloned()));
    if let Some((who, reason)) = by_field.or(by_annotation) {
        if run.status.approval.is_none() {
            run.status.approval = Some(ApprovalRecord {
                approved_by: who.clone(),
                reason: reason.clone(),
                time: now(),
            });
        }
        let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
        return Ok(Progress::Done(format!("GO from {who}{why}")));
    }
    let waited = step_age(run, step);
    if let Some(timeout) = spec.timeout.as_ref().and_then(|t| t.parse().ok()) {
        if waited >= timeout {
            return Ok(Progress::Failed(format!(
                "no approval within {}",
                format_duration(timeout)
            )));
        }
        let left = timeout.saturating_sub(waited);
        return Ok(Progress::Wait {
            after: left.min(SLOW_POLL),
            message: format!(
                "awaiting approval for {} more: set spec.approval.approvedBy or annotate {APPROVED_BY_ANNOTATION}=<who>",
                format_duration(left)
            ),
        });
    }
    Ok(Progress::Wait {
        after: SLOW_POLL,
        message: format!(
            "awaiting approval: set spec.approval.approvedBy or annotate {APPROVED_BY_ANNOTATION}=<who>"
        ),
    })
}

async fn switch_to(run: &mut Run<'_>) -> Result<Progress, ReconcileError> {
    let spec = run.cutover.spec.clone();
    let Some(target) = Target::of(&spec) else {
        return Ok(Progress::Failed("spec.trafficSwitch names nothing".into()));
    };
    let client = run.ctx.client.clone();
    let Some(current) = switch::read(&client, &run.namespace, &target).await? else {
        return Ok(Progress::Failed(format!(
            "{}: the object does not exist",
            target.describe()
        )));
    };
    // After a restart mid-switch, the recorded value is the original; `current` may already be `to`.
    let previous = match &run.status.previous_target {
        Some(recorded) => serde_json::from_str(recorded).unwrap_or(current.clone()),
        None => current.clone(),
    };
    let desired = match switch::switched(&target, &previous, &spec) {
        Ok(desired) => desired,
        Err(problem) => return Ok(Progress::Failed(problem)),
    };
    let change = match (&target, &spec.from.service, &spec.to.service) {
        (Target::Service(_), _, _) | (_, None, _) | (_, _, None) => {
            format!(
                "{} {} → {}",
                target.describe(),
                compact(&previous),
                compact(&desired)
            )
        }
        // Rules are long; the Services they point at say what changed (the rules are in previousTarget).
        (_, Some(from), Some(to)) => format!("{} Service {from} → {to}", target.describe()),
    };
    if spec.dry_run {
        return Ok(Progress::Skipped(format!("dry run: would change {change}")));
    }
    if run.status.previous_target.is_none() {
        run.status.previous_target = Some(previous.to_string());
        run.save().await?;
    }
    if current != desired {
        switch::write(
            &client,
            &run.namespace,
            &target,
            &desired,
            &run.ctx.settings.manager_name,
        )
        .await?;
        if let Some(approved) = &run.status.approval {
            let seconds = machine::elapsed(&approved.time, &now()).as_secs_f64();
            run.ctx.metrics.cutover_approval_to_switch(seconds);
        }
    }
    run.status.active = Some(ActiveSide::To);
    Ok(settled(run, &Step::Switch, change))
}

fn compact(value: &serde_json::Value) -> String {
    match value.as_object() {
        Some(map) if map.values().all(|v| v.is_string()) => {
            let pairs: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            format!("{{{}}}", pairs.join(","))
        }
        _ => {
            let text = value.to_string();
            if text.len() > 300 {
                format!(
                    "{}…",
                    &text[..text.char_indices().nth(300).map(|(i, _)| i).unwrap_or(text.len())]
                )
            } else {
                text
            }
        }
    }
}

async fn stabilization(run: &mut Run<'_>, step: &Step) -> Result<Progress, ReconcileError> {
    let Some(window) = run.cutover.spec.stabilization.clone() else {
        return Ok(Progress::Skipped("no stabilization".into()));
    };
    let duration = window.duration.parse().unwrap_or(Duration::from_secs(1800));
    let interval = limit(window.interval.as_ref(), Duration::from_secs(30));
    let mut record = run.status.stabilization.clone().unwrap_or_default();
    let now = now();
    let due = machine::next_round_in(&record, interval, &now);
    if !due.is_zero() {
        return Ok(Progress::Wait {
            after: due,
            message: progress_message(&record),
        });
    }
    let failure = stabilization_round(&window).await;
    let started = run
        .status
        .steps
        .iter()
        .rev()
        .find(|r| r.name == step.name())
        .map(|r| r.start_time.clone())
        .unwrap_or(now.clone());
    let verdict = machine::record_round(
        &mut record,
        failure,
        window.failure_threshold,
        (duration, interval),
        &started,
        &now,
    );
    run.status.stabilization = Some(record.clone());
    Ok(match verdict {
        Watch::Continue(after) => Progress::Wait {
            after,
            message: progress_message(&record),
        },
        Watch::Passed(message) => Progress::Done(message),
        Watch::Failed(message) => Progress::Failed(message),
    })
}

fn progress_message(record: &StabilizationRecord) -> String {
    match (&record.last_failure, record.consecutive_failures) {
        (Some(failure), n) if n > 0 => format!("round {}: {n} failed in a row; {failure}", record.rounds),
        _ => format!("round {}: healthy", record.rounds),
    }
}

/// One round of the watch: every HTTP check and Prometheus query; the first failure, if any.
async fn stabilization_round(window: &crate::api::cutover::Stabilization) -> Option<(String, String)> {
    for check in &window.http {
        if let Err(problem) = crate::checks::run_http_check(&check.check).await {
            return Some((check.name.clone(), problem));
        }
    }
    if let Some(prometheus) = &window.prometheus {
        for query in &prometheus.queries {
            let value =
                crate::checks::prometheus_value(&prometheus.address, &query.query, Duration::from_secs(10))
                    .await;
            let judged = value.and_then(|v| crate::checks::within(v, query.min, query.max));
            if let Err(problem) = judged {
                return Some((query.name.clone(), problem));
            }
        }
    }
    None
}

async fn switch_back(run: &mut Run<'_>) -> Result<Progress, ReconcileError> {
    let spec = run.cutover.spec.clone();
    let Some(target) = Target::of(&spec) else {
        return Ok(Progress::Failed("spec.trafficSwitch names nothing".into()));
    };
    let Some(recorded) = run.status.previous_target.clone() else {
        return Ok(Progress::Skipped("traffic was never switched".into()));
    };
    let previous: serde_json::Value = match serde_json::from_str(&recorded) {
        Ok(value) => value,
        Err(error) => {
            return Ok(Progress::Failed(format!(
                "status.previousTarget is not JSON ({error}); restore {} by hand",
                target.describe()
            )))
        }
    };
    let client = run.ctx.client.clone();
    let Some(current) = switch::read(&client, &run.namespace, &target).await? else {
        return Ok(Progress::Failed(format!(
            "{} no longer exists",
            target.describe()
        )));
    };
    if current != previous {
        switch::write(
            &client,
            &run.namespace,
            &target,
            &previous,
            &run.ctx.settings.manager_name,
        )
        .await?;
    }
    let restored = now();
    run.status.active = Some(ActiveSide::From);
    if let Some(rollback) = run.status.rollback.as_mut() {
        if rollback.traffic_restored_time.is_none() {
            rollback.traffic_restored_time = Some(restored.clone());
            // From the first failing check (stabilization) or the failure's detection to traffic back.
            let since = run
                .status
                .stabilization
                .as_ref()
                .and_then(|s| s.failing_since.clone())
                .unwrap_or(rollback.start_time.clone());
            run.ctx
                .metrics
                .cutover_traffic_restored(machine::elapsed(&since, &restored).as_secs_f64());
        }
    }
    let restored_to = match (&target, &spec.from.service) {
        (Target::Service(_), _) | (_, None) => compact(&previous),
        (_, Some(from)) => format!("the recorded rules (Service {from})"),
    };
    let change = format!("{} back to {restored_to}", target.describe());
    Ok(settled(run, &Step::SwitchBack, change))
}

/// The runbook's rollback step 2 (`curl -fsS …/health`): the old side answers again. Its Deployment
/// is ready and every spec.verify HTTP check gets its expected status (they address the switched
/// Service, now on `from`); body matches are left out, as they usually assert the new version.
async fn verify_from(run: &mut Run<'_>, step: &Step) -> Result<Progress, ReconcileError> {
    let timeout = limit(
        run.cutover.spec.readiness_timeout.as_ref(),
        Duration::from_secs(600),
    );
    let from = run.cutover.spec.from.clone();
    let mut problem = side_ready(run, &from).await?.err();
    let mut passed = Vec::new();
    if problem.is_none() {
        let checks: Vec<(String, HttpCheck)> = run
            .cutover
            .spec
            .verify
            .iter()
            .filter_map(|c| c.http.clone().map(|h| (c.name.clone(), h)))
            .collect();
        for (name, check) in checks {
            let check = HttpCheck {
                expect_body_contains: None,
                ..check
            };
            match crate::checks::run_http_check(&check).await {
                Ok(_) => passed.push(name),
                Err(failure) => {
                    problem = Some(format!("{name}: {failure}"));
                    break;
                }
            }
        }
    }
    Ok(match problem {
        None if passed.is_empty() => Progress::Done("the old side is ready".into()),
        None => Progress::Done(format!("the old side is ready and passes {}", passed.join(", "))),
        Some(problem) if step_age(run, step) > timeout => Progress::Failed(format!(
            "the old side is not healthy within {}: {problem}",
            format_duration(timeout)
        )),
        Some(problem) => Progress::Wait {
            after: POLL,
            message: problem,
        },
    })
}

async fn restore_database(run: &mut Run<'_>) -> Result<Progress, ReconcileError> {
    let Some(backup) = run.status.backup_ref.clone() else {
        return Ok(Progress::Skipped("no pre-switch Backup".into()));
    };
    let name = child_name(&run.name(), "rollback-restore", 56);
    if run.status.restore_ref.is_none() {
        run.status.restore_ref = Some(LocalObjectRef { name: name.clone() });
        run.save().await?;
    }
    let restores: Api<Restore> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
    let Some(existing) = restores.get_opt(&name).await? else {
        let Some(policy_ref) = run
            .cutover
            .spec
            .backup
            .as_ref()
            .map(|b| b.policy_ref.name.clone())
        else {
            return Ok(Progress::Failed(
                "no spec.backup.policyRef to restore into".into(),
            ));
        };
        let policies: Api<BackupPolicy> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
        let Some(policy) = policies.get_opt(&policy_ref).await? else {
            return Ok(Progress::Failed(format!(
                "BackupPolicy {policy_ref} does not exist; restore Backup {} by hand",
                backup.name
            )));
        };
        // Built as JSON so this stays independent of the Restore type's optional fields.
        let source = &policy.spec.source;
        let (target, database) = if let Some(postgres) = &source.postgres {
            (
                serde_json::json!({"postgres": postgres.connection}),
                Some(postgres.connection.database.clone()),
            )
        } else if let Some(mysql) = &source.mysql {
            (serde_json::json!({"mysql": mysql}), Some(mysql.database.clone()))
        } else {
            (serde_json::json!({"files": source.files}), None)
        };
        let owner = run
            .cutover
            .controller_owner_ref(&())
            .expect("a Cutover read from the API has a name and uid");
        let mut spec = serde_json::json!({
            "source": {"backupRef": {"name": backup.name}},
            "target": target,
            // The rollback replaces the migrated database with the pre-switch snapshot, by design.
            "dropExisting": true,
        });
        if let Some(database) = database {
            spec["confirmOverwrite"] = serde_json::json!(database);
        }
        let restore_json = serde_json::json!({
            "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Restore",
            "metadata": {"name": name, "namespace": run.namespace, "labels": {CUTOVER_LABEL: run.name()}},
            "spec": spec,
        });
        let mut restore: Restore = match serde_json::from_value(restore_json) {
            Ok(restore) => restore,
            Err(error) => return Ok(Progress::Failed(format!("cannot build the Restore: {error}"))),
        };
        restore.metadata.owner_references = Some(vec![owner]);
        create_ignoring_existing(&restores, &restore).await?;
        return Ok(Progress::Wait {
            after: SLOW_POLL,
            message: format!("Restore {name} of Backup {} created", backup.name),
        });
    };
    let status = existing.status.unwrap_or_default();
    Ok(match status.phase {
        Some(RestorePhase::Succeeded) => {
            let switched_at = run
                .status
                .steps
                .iter()
                .find(|s| s.name == "switch")
                .map(|s| s.start_time.0.to_string());
            if let Some(rollback) = run.status.rollback.as_mut() {
                rollback.database_restored = true;
                rollback.data_loss_warning = Some(match switched_at {
                    Some(time) => format!(
                        "the database is back at the pre-switch snapshot: data written after {time} is lost"
                    ),
                    None => "the database is back at the pre-switch snapshot: data written after it is lost"
                        .into(),
                });
            }
            Progress::Done(format!("Restore {name} restored Backup {}", backup.name))
        }
        Some(RestorePhase::Failed) => Progress::Failed(format!(
            "Restore {name} failed: {}",
            status.message.unwrap_or_default()
        )),
        _ => Progress::Wait {
            after: SLOW_POLL,
            message: format!(
                "Restore {name}: {}",
                status
                    .message
                    .unwrap_or_else(|| "waiting for the Restore controller".into())
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_snapshotless_backup_stops_the_cutover() {
        let ok = BackupStatus {
            snapshot_id: Some("abcd1234".into()),
            size_bytes: Some(2048),
            ..Default::default()
        };
        assert!(matches!(judge_backup("b", &ok), Progress::Done(_)));
        let empty = BackupStatus {
            snapshot_id: Some("abcd1234".into()),
            size_bytes: Some(0),
            ..Default::default()
        };
        assert!(matches!(judge_backup("b", &empty), Progress::Failed(m) if m.contains("empty")));
        assert!(
            matches!(judge_backup("b", &BackupStatus::default()), Progress::Failed(m) if m.contains("snapshot id"))
        );
    }

    #[test]
    fn selectors_print_like_kubectl_labels() {
        assert_eq!(
            compact(&serde_json::json!({"app": "web", "track": "green"})),
            "{app=web,track=green}"
        );
    }
}
