//! The BackupPolicy controller: creates a Backup per schedule slot, keeps history, runs retention,
//! and reports freshness (Stale), size anomalies and the last success — in status, Events and metrics.
//!
//! One reconcile reads top to bottom: validate the spec, read this policy's Backups, record what
//! finished, handle the schedule slot, run repository maintenance, judge freshness and health, then
//! write status, metrics and notifications. The decisions are pure functions in [`plan`] and
//! [`health`]; this file reads the world and acts on them.

pub mod health;
pub mod holds;
pub mod maintenance;
pub mod notices;
pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use super::children::{create_ignoring_existing, delete_exactly};
use super::context::wait_for_cache;
use super::secrets::{first_missing_secret, policy_secrets};
use super::status::{report_stalled, write_status};
use super::{Context, ReconcileError};
use crate::api::backup::{BackupPhase, BackupSpec, BackupTrigger};
use crate::api::backup_policy::{BackupPolicyStatus, NotificationEvent};
use crate::api::{Backup, BackupPolicy};
use crate::conditions::{self, set_health};
use crate::controller::events::publish;
use crate::controller::notifications::notify;
use crate::jobs;
use crate::metrics::PolicyLabels;
use crate::schedule::Schedule;
use crate::slots::{self, SlotDecision, SlotInput};
pub use plan::Notice;
use plan::{completion, is_finished};

const KIND: &str = "BackupPolicy";
pub const STALE: &str = "Stale";
pub const SIZE_ANOMALY: &str = "SizeAnomaly";
/// Annotation of a scheduled Backup: the slot it was created for (RFC 3339).
pub const SCHEDULED_SLOT: &str = "lifeboat.dev/scheduled-slot";

pub async fn reconcile(policy: Arc<BackupPolicy>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.metrics.reconciled(KIND);
    let name = policy.name_any();
    let namespace = policy.namespace().ok_or_else(|| ReconcileError::NotNamespaced {
        kind: KIND,
        name: name.clone(),
    })?;
    let policies: Api<BackupPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let now = Timestamp::now();
    let now_time = Time(now);
    let current = policy.status.clone().unwrap_or_default();
    // What status already records is exported at once: a new leader serves it even while the rest of
    // this reconcile waits (for its caches, a Job, the API server).
    export_metrics(&ctx, &namespace, &name, &current);
    let mut status = current.clone();
    status.observed_generation = policy.metadata.generation;

    let schedule = match validate(&ctx, &policy, &namespace).await? {
        Ok(schedule) => schedule,
        Err(problem) => {
            let status = report_stalled(
                &ctx,
                &policies,
                &policy,
                status,
                problem.reason,
                problem.message,
                &now_time,
            )
            .await?;
            export_metrics(&ctx, &namespace, &name, &status);
            return Ok(problem.retry.map_or_else(Action::await_change, Action::requeue));
        }
    };

    let backups = read_backups(&ctx, &namespace, &name).await?;
    status.active = backups
        .iter()
        .filter(|b| !is_finished(b))
        .map(|b| b.name_any())
        .collect();
    let mut notices = record_results(&ctx, &policy, &backups, &mut status, &now_time).await;

    let created = policy
        .metadata
        .creation_timestamp
        .clone()
        .map(|t| t.0)
        .unwrap_or(now);
    let next_slot = match handle_slot(&ctx, &policy, &schedule, &backups, &mut status, created, now).await? {
        SlotStep::Continue { next_slot } => next_slot,
        // At a slot the Backup is created and nothing else: status, history and freshness follow in the
        // reconcile its creation triggers (which finds it, annotated with its slot), so with hundreds of
        // policies due at once each makes one API call before the next starts.
        SlotStep::CreatedBackup => return Ok(Action::requeue(Duration::from_secs(1))),
    };
    let backups_api: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    enforce_history(&backups_api, &policy, &backups).await?;

    // Repository maintenance: the integrity check on its own schedule, and finished Jobs cleaned up.
    if let Some(message) = maintenance::record_check(&ctx, &policy, &mut status).await? {
        notices.push(Notice {
            event: NotificationEvent::Failure,
            headline: "repository check FAILED".into(),
            detail: message,
        });
    }
    if let Some(message) = maintenance::record_retention(&ctx, &policy, &mut status).await? {
        notices.push(Notice {
            event: NotificationEvent::Failure,
            headline: "retention (restic forget --prune) FAILED".into(),
            detail: message,
        });
    }
    health::judge_repository(&mut status, &now_time);
    let next_check = maintenance::schedule_check(&ctx, &policy, &mut status, now).await?;
    maintenance::clean_up_finished_jobs(&ctx, &policy).await?;

    let fresh_until = judge_freshness(&ctx, &policy, &current, &mut status, created, now, &mut notices).await;
    let health = health::overall_health(&status, &backups, policy.spec.suspend);
    set_health(
        &mut status.conditions.0,
        health,
        status.observed_generation,
        &now_time,
    );
    notices.extend(health::recovery(&current.conditions.0, &status.conditions.0));
    // Tried before the status write, which records the outcome: an operator that dies in between derives
    // the same notices again from the unchanged status (at least once, never lost).
    let announcements = notices::announcements(&policy, notices);
    let has_due = status
        .notifications
        .iter()
        .any(|r| crate::notify::delivery::is_due(r, now));
    if (!announcements.is_empty() || has_due) && notices::cache_lags(&policies, &policy).await? {
        // A status from before our last write would send again what that write recorded as sent.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let next_notification = notify(
        &ctx,
        policy.as_ref(),
        policy.spec.notifications.as_ref().map(|n| &n.webhook),
        &mut status.notifications,
        announcements,
    )
    .await;

    write_status(
        &policies,
        &policy,
        Some(&current),
        &status,
        &ctx.settings.manager_name,
    )
    .await?;
    export_metrics(&ctx, &namespace, &name, &status);

    let running = !status.active.is_empty();
    Ok(
        match [
            health::wake_up(now, next_slot, next_check, fresh_until, running),
            next_notification,
        ]
        .into_iter()
        .flatten()
        .min()
        {
            Some(at) => Action::requeue(health::until(now, at)),
            None => Action::await_change(),
        },
    )
}

/// A spec problem only the controller can find: a condition, an Event, and when to look again.
struct Problem {
    reason: &'static str,
    message: String,
    retry: Option<Duration>,
}

/// Validates what only the controller can check: the schedule parses and the referenced Secrets exist.
/// The Secrets are checked when the spec changes, while they are missing, and every few minutes, not
/// on every reconcile: at a slot the only API call on the way to the Backup is its create.
async fn validate(
    ctx: &Context,
    policy: &BackupPolicy,
    namespace: &str,
) -> Result<Result<Schedule, Problem>, ReconcileError> {
    let schedule = match Schedule::parse(&policy.spec.schedule.0, policy.spec.time_zone.as_deref()) {
        Ok(schedule) => schedule,
        Err(error) => {
            return Ok(Err(Problem {
                reason: "InvalidSchedule",
                message: error.to_string(),
                retry: None,
            }));
        }
    };
    let uid = policy.uid().unwrap_or_default();
    let generation = policy.metadata.generation;
    if !ctx.secrets_verified.is_fresh(&uid, generation) {
        let needed = policy_secrets(&policy.spec);
        if let Some(problem) = first_missing_secret(&ctx.client, namespace, &needed).await? {
            ctx.secrets_verified.forget(&uid);
            return Ok(Err(Problem {
                reason: "SecretMissing",
                message: problem,
                // Fixed by a person creating the Secret: look again soon, without a hot loop.
                retry: Some(Duration::from_secs(20)),
            }));
        }
        ctx.secrets_verified.record_pass(&uid, generation);
    }
    Ok(Ok(schedule))
}

/// This policy's Backups, oldest first, from the Backup controller's cache (complete once its first
/// list arrived; a Backup created a moment ago may be missing, which the deterministic slot names and
/// the 409 on create make harmless).
async fn read_backups(
    ctx: &Context,
    namespace: &str,
    policy: &str,
) -> Result<Vec<Arc<Backup>>, ReconcileError> {
    wait_for_cache(&ctx.stores.backups, "Backup").await?;
    let mut backups: Vec<Arc<Backup>> = ctx.stores.backups.state_filter(|b| {
        b.metadata.namespace.as_deref() == Some(namespace) && b.spec.policy_ref.name == policy
    });
    backups.sort_by_key(|b| b.metadata.creation_timestamp.clone().map(|t| t.0));
    Ok(backups)
}

/// Folds newly finished Backups into status (see [`plan::record_results`]), announces a size anomaly
/// and starts retention after a new success. Returns what is worth a notification.
async fn record_results(
    ctx: &Context,
    policy: &BackupPolicy,
    backups: &[Arc<Backup>],
    status: &mut BackupPolicyStatus,
    now: &Time,
) -> Vec<Notice> {
    let recorded = plan::record_results(policy.spec.size_anomaly.as_ref(), backups, status, now);
    if let Some(message) = recorded.anomaly_event {
        publish(ctx, policy, EventType::Warning, "SizeAnomaly", message).await;
    }
    if let Some(backup) = recorded.new_success {
        if let Err(error) = maintenance::start_retention(ctx, policy, backups, status, &backup).await {
            tracing::warn!(%error, policy = %policy.name_any(), "could not start retention");
        }
    }
    recorded.notices
}

/// What handling the schedule slot leaves for the rest of the reconcile.
enum SlotStep {
    /// A slot's Backup was just created: this reconcile ends there.
    CreatedBackup,
    Continue {
        next_slot: Option<Timestamp>,
    },
}

/// Decides which slot is due (see [`slots::decide_slot`]) and acts on it: creates its Backup, replaces
/// the running ones, or records a skipped slot with a Warning Event.
async fn handle_slot(
    ctx: &Context,
    policy: &BackupPolicy,
    schedule: &Schedule,
    backups: &[Arc<Backup>],
    status: &mut BackupPolicyStatus,
    created: Timestamp,
    now: Timestamp,
) -> Result<SlotStep, ReconcileError> {
    let backups_api: Api<Backup> =
        Api::namespaced(ctx.client.clone(), &policy.namespace().unwrap_or_default());
    let running = status.active.clone();
    let handled_until = plan::handled_until(backups, status, created);
    let jitter = slots::jitter_for(
        &policy.uid().unwrap_or_default(),
        parse_optional(&policy.spec.jitter),
    );
    let (decision, next) = slots::decide_slot(&SlotInput {
        schedule,
        now,
        handled_until,
        starting_deadline: policy
            .spec
            .starting_deadline_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64)),
        suspend: policy.spec.suspend,
        concurrency: policy.spec.concurrency_policy,
        running: &running,
        jitter,
    });
    status.next_schedule_time = if policy.spec.suspend { None } else { next.map(Time) };
    match decision {
        SlotDecision::Wait => {}
        SlotDecision::Run { slot } => match create_slot_backup(ctx, policy, &backups_api, slot).await? {
            Created::New(_) => return Ok(SlotStep::CreatedBackup),
            // Already there (made before a restart, or our cache lags): record the slot now.
            Created::Existed(name) => {
                status.last_schedule_time = Some(Time(slot));
                if !status.active.contains(&name) {
                    status.active.push(name);
                }
            }
        },
        SlotDecision::Replace { slot, running } => {
            for old in backups.iter().filter(|b| running.contains(&b.name_any())) {
                delete_exactly(&backups_api, &old.name_any(), &old.uid().unwrap_or_default()).await?;
            }
            publish(
                ctx,
                policy,
                EventType::Normal,
                "Replaced",
                format!("replaced running {}", running.join(", ")),
            )
            .await;
            let created = create_slot_backup(ctx, policy, &backups_api, slot).await?.name();
            status.last_schedule_time = Some(Time(slot));
            status.active.retain(|name| !running.contains(name));
            status.active.push(created);
        }
        SlotDecision::SkipBusy { slot } => {
            status.last_schedule_time = Some(Time(slot));
            let note = format!(
                "skipped the {slot} slot: {} still running (concurrencyPolicy Forbid)",
                running.join(", ")
            );
            publish(ctx, policy, EventType::Warning, "SkippedBusy", note).await;
        }
        SlotDecision::SkipMissed { slot } => {
            status.last_schedule_time = Some(Time(slot));
            let note =
                format!("missed the {slot} slot by more than startingDeadlineSeconds; waiting for the next");
            publish(ctx, policy, EventType::Warning, "MissedSchedule", note).await;
        }
    }
    Ok(SlotStep::Continue { next_slot: next })
}

/// Sets the Stale condition from the RPO (removed without one), publishes its change and returns, while
/// fresh, the moment the policy would turn stale.
async fn judge_freshness(
    ctx: &Context,
    policy: &BackupPolicy,
    current: &BackupPolicyStatus,
    status: &mut BackupPolicyStatus,
    created: Timestamp,
    now: Timestamp,
    notices: &mut Vec<Notice>,
) -> Option<Timestamp> {
    let Some(rpo) = parse_optional(&policy.spec.rpo) else {
        conditions::remove(&mut status.conditions.0, STALE);
        return None;
    };
    let freshness = health::freshness(
        rpo,
        policy.spec.rpo.as_ref().map(|r| r.0.as_str()).unwrap_or_default(),
        status.last_successful_backup.as_ref().map(|s| s.time.0),
        created,
        now,
        conditions::is_true(&current.conditions.0, STALE),
    );
    conditions::apply(
        &mut status.conditions.0,
        freshness.condition,
        status.observed_generation,
        &Time(now),
    );
    notices.extend(freshness.notice);
    if let Some((kind, reason, message)) = freshness.event {
        publish(ctx, policy, kind, reason, message).await;
    }
    freshness.fresh_until
}

/// What creating a slot's Backup found.
enum Created {
    New(String),
    Existed(String),
}

impl Created {
    fn name(self) -> String {
        match self {
            Created::New(name) | Created::Existed(name) => name,
        }
    }
}

async fn create_slot_backup(
    ctx: &Context,
    policy: &BackupPolicy,
    api: &Api<Backup>,
    slot: Timestamp,
) -> Result<Created, ReconcileError> {
    let name = plan::backup_name_for_slot(&policy.name_any(), slot);
    let backup = Backup {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([(jobs::POLICY_LABEL.to_owned(), policy.name_any())].into()),
            annotations: Some([(SCHEDULED_SLOT.to_owned(), slot.to_string())].into()),
            owner_references: policy.controller_owner_ref(&()).map(|owner| vec![owner]),
            ..Default::default()
        },
        spec: BackupSpec {
            policy_ref: crate::api::common::LocalObjectRef {
                name: policy.name_any(),
            },
            trigger: BackupTrigger::Scheduled,
            reason: Some(format!("scheduled slot {slot}")),
        },
        status: None,
    };
    // Created before a restart: the deterministic name makes this a no-op.
    if !create_ignoring_existing(api, &backup).await? {
        return Ok(Created::Existed(name));
    }
    publish(
        ctx,
        policy,
        EventType::Normal,
        "Scheduled",
        format!("created Backup {name} for the {slot} slot"),
    )
    .await;
    Ok(Created::New(name))
}

/// Deletes the oldest finished scheduled Backups beyond the history limits (hand-made ones are kept:
/// they are the user's). Their Jobs go with them through owner references.
async fn enforce_history(
    api: &Api<Backup>,
    policy: &BackupPolicy,
    backups: &[Arc<Backup>],
) -> Result<(), ReconcileError> {
    for (phase, limit) in [
        (
            BackupPhase::Succeeded,
            policy.spec.successful_backups_history_limit,
        ),
        (BackupPhase::Failed, policy.spec.failed_backups_history_limit),
    ] {
        let mut finished: Vec<&Arc<Backup>> = backups
            .iter()
            .filter(|b| {
                b.labels()
                    .get(jobs::POLICY_LABEL)
                    .is_some_and(|p| *p == policy.name_any())
            })
            .filter(|b| b.status.as_ref().and_then(|s| s.phase) == Some(phase))
            // A held Backup stays: its object is what keeps its snapshot out of retention.
            .filter(|b| b.annotations().get(holds::HOLD_ANNOTATION).map(String::as_str) != Some("true"))
            .collect();
        finished.sort_by_key(|b| completion(b));
        let excess = finished.len().saturating_sub(limit.max(0) as usize);
        for old in finished.into_iter().take(excess) {
            // As the cache saw it: the uid precondition keeps a lagging cache from deleting a newer
            // object that took the same name.
            delete_exactly(api, &old.name_any(), &old.uid().unwrap_or_default()).await?;
        }
    }
    Ok(())
}

/// Metrics are derived from status, so they are right after a restart.
fn export_metrics(ctx: &Context, namespace: &str, policy: &str, status: &BackupPolicyStatus) {
    ctx.metrics
        .exported(crate::metrics::ExportedKind::BackupPolicy, namespace, policy);
    ctx.metrics
        .backup
        .export(&PolicyLabels::new(namespace, policy), status);
}

fn parse_optional(duration: &Option<crate::duration::DurationString>) -> Option<Duration> {
    duration.as_ref().and_then(|d| d.parse().ok())
}
