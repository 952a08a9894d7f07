//! The BackupPolicy controller: creates a Backup per schedule slot, keeps history, runs retention,
//! and reports freshness (Stale), size anomalies and the last success — in status, Events and metrics.

pub mod maintenance;
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
use crate::api::backup_policy::{BackupPolicyStatus, BackupSummary, FailureSummary, NotificationEvent};
use crate::api::{Backup, BackupPolicy};
use crate::conditions::{self, set_health, Desired, Health};
use crate::controller::events::publish;
use crate::jobs;
use crate::metrics::PolicyLabels;
use crate::schedule::Schedule;
use crate::slots::{self, SlotDecision, SlotInput};

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
    let backups_api: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    let now = Timestamp::now();
    let now_time = Time(now);
    let generation = policy.metadata.generation;
    let current = policy.status.clone().unwrap_or_default();
    let mut status = current.clone();
    status.observed_generation = generation;

    // Validate what only the controller can check; each problem is a condition and an Event.
    let schedule = match Schedule::parse(&policy.spec.schedule.0, policy.spec.time_zone.as_deref()) {
        Ok(schedule) => schedule,
        Err(error) => {
            return stalled(
                &policies,
                &policy,
                status,
                "InvalidSchedule",
                error.to_string(),
                &ctx,
                &now_time,
                None,
            )
            .await;
        }
    };
    // The referenced Secrets are checked when the spec changes, while they are missing, and every few
    // minutes, not on every reconcile: at a slot the only API call on the way to the Backup is its create.
    let uid = policy.uid().unwrap_or_default();
    if !ctx.secrets_verified.is_fresh(&uid, generation) {
        let needed = policy_secrets(&policy.spec);
        if let Some(problem) = first_missing_secret(&ctx.client, &namespace, &needed).await? {
            ctx.secrets_verified.forget(&uid);
            let retry = Some(Duration::from_secs(20));
            return stalled(
                &policies,
                &policy,
                status,
                "SecretMissing",
                problem,
                &ctx,
                &now_time,
                retry,
            )
            .await;
        }
        ctx.secrets_verified.record_pass(&uid, generation);
    }

    // Read the world: this policy's Backups, from the Backup controller's cache (complete once its first
    // list arrived; a Backup created a moment ago may be missing, which the deterministic slot names and
    // the 409 on create make harmless).
    wait_for_cache(&ctx.stores.backups, "Backup").await?;
    let mut backups: Vec<Arc<Backup>> = ctx.stores.backups.state_filter(|b| {
        b.metadata.namespace.as_deref() == Some(namespace.as_str()) && b.spec.policy_ref.name == name
    });
    backups.sort_by_key(|b| b.metadata.creation_timestamp.clone().map(|t| t.0));
    let running: Vec<String> = backups
        .iter()
        .filter(|b| !is_finished(b))
        .map(|b| b.name_any())
        .collect();
    status.active = running.clone();

    let mut notices = record_results(&ctx, &policy, &backups, &mut status, &now_time).await;

    // The schedule.
    let created = policy
        .metadata
        .creation_timestamp
        .clone()
        .map(|t| t.0)
        .unwrap_or(now);
    // A slot is handled once recorded in status or once its Backup exists (the reconcile that creates a
    // slot's Backup records nothing else; see below).
    let newest_created_slot = backups
        .iter()
        .filter_map(|b| b.annotations().get(SCHEDULED_SLOT))
        .filter_map(|slot| slot.parse::<Timestamp>().ok())
        .max();
    if let Some(slot) = newest_created_slot {
        if status.last_schedule_time.as_ref().is_none_or(|t| t.0 < slot) {
            status.last_schedule_time = Some(Time(slot));
        }
    }
    // Never before the policy existed: Backups of a deleted namesake may still await garbage collection.
    let handled_until = status
        .last_schedule_time
        .clone()
        .map_or(created, |t| t.0.max(created));
    let jitter = slots::jitter_for(
        &policy.uid().unwrap_or_default(),
        parse_optional(&policy.spec.jitter),
    );
    let (decision, next) = slots::decide_slot(&SlotInput {
        schedule: &schedule,
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
        SlotDecision::Run { slot } => {
            // At a slot the Backup is created and nothing else: status, history and freshness follow in
            // the reconcile its creation triggers (which finds it, annotated with its slot, above), so
            // with hundreds of policies due at once each makes one API call before the next starts.
            match create_slot_backup(&ctx, &policy, &backups_api, slot).await? {
                Created::New(_) => return Ok(Action::requeue(Duration::from_secs(1))),
                // Already there (made before a restart, or our cache lags): record the slot now.
                Created::Existed(name) => {
                    status.last_schedule_time = Some(Time(slot));
                    if !status.active.contains(&name) {
                        status.active.push(name);
                    }
                }
            }
        }
        SlotDecision::Replace { slot, running } => {
            for old in backups.iter().filter(|b| running.contains(&b.name_any())) {
                delete_exactly(&backups_api, &old.name_any(), &old.uid().unwrap_or_default()).await?;
            }
            publish(
                &ctx,
                policy.as_ref(),
                EventType::Normal,
                "Replaced",
                format!("replaced running {}", running.join(", ")),
            )
            .await;
            let created = create_slot_backup(&ctx, &policy, &backups_api, slot)
                .await?
                .name();
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
            publish(&ctx, policy.as_ref(), EventType::Warning, "SkippedBusy", note).await;
        }
        SlotDecision::SkipMissed { slot } => {
            status.last_schedule_time = Some(Time(slot));
            let note =
                format!("missed the {slot} slot by more than startingDeadlineSeconds; waiting for the next");
            publish(&ctx, policy.as_ref(), EventType::Warning, "MissedSchedule", note).await;
        }
    }

    enforce_history(&backups_api, &policy, &backups).await?;

    // Repository maintenance: the integrity check on its own schedule, and finished Jobs cleaned up.
    if let Some(message) = maintenance::record_check(&ctx, &policy, &mut status).await? {
        notices.push(Notice {
            event: NotificationEvent::Failure,
            headline: "repository check FAILED".into(),
            detail: message,
        });
    }
    let next_check = maintenance::schedule_check(&ctx, &policy, &mut status, now).await?;
    maintenance::clean_up_finished_jobs(&ctx, &policy).await?;

    // Freshness.
    let mut wake_up = match (next, next_check) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(rpo) = parse_optional(&policy.spec.rpo) {
        let last_success = status.last_successful_backup.as_ref().map(|s| s.time.0);
        let (stale, turns_stale_at) = plan::staleness(rpo, last_success, created, now);
        let was_stale = conditions::is_true(&current.conditions.0, STALE);
        let message = match (stale, last_success) {
            (true, Some(at)) => format!(
                "the newest successful backup ({at}) is older than the RPO {}",
                policy.spec.rpo.as_ref().map(|r| r.0.as_str()).unwrap_or_default()
            ),
            (true, None) => format!(
                "no successful backup within the RPO {} since the policy was created",
                policy.spec.rpo.as_ref().map(|r| r.0.as_str()).unwrap_or_default()
            ),
            (false, _) => format!("the newest successful backup is within the RPO until {turns_stale_at}"),
        };
        let reason = if stale { "RPOExceeded" } else { "WithinRPO" };
        conditions::apply(
            &mut status.conditions.0,
            Desired::new(STALE, stale, reason, message.clone()),
            generation,
            &now_time,
        );
        if stale && !was_stale {
            notices.push(Notice {
                event: NotificationEvent::Stale,
                headline: "is STALE".into(),
                detail: message.clone(),
            });
            publish(&ctx, policy.as_ref(), EventType::Warning, "Stale", message).await;
        } else if !stale && was_stale {
            publish(&ctx, policy.as_ref(), EventType::Normal, "Fresh", message).await;
        }
        if !stale {
            wake_up = Some(wake_up.map_or(turns_stale_at, |w| w.min(turns_stale_at)));
        }
    } else {
        conditions::remove(&mut status.conditions.0, STALE);
    }

    let health = overall_health(&status, &backups, policy.spec.suspend);
    set_health(&mut status.conditions.0, health, generation, &now_time);
    let was_ready = conditions::find(&current.conditions.0, conditions::READY)
        .map(|c| (c.status == "True", c.reason.clone()));
    if let (Some((false, reason)), true) = (
        was_ready,
        conditions::is_true(&status.conditions.0, conditions::READY),
    ) {
        if reason == "BackupFailed" || reason == "Stale" {
            let detail = conditions::find(&status.conditions.0, conditions::READY)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            notices.push(Notice {
                event: NotificationEvent::Recovery,
                headline: "recovered".into(),
                detail,
            });
        }
    }
    write_status(
        &policies,
        &policy,
        Some(&current),
        &status,
        &ctx.settings.manager_name,
    )
    .await?;
    export_metrics(&ctx, &namespace, &name, &status);
    notify(&ctx, &policy, &namespace, notices).await;

    // Requeue exactly for the next slot or the moment the policy would turn Stale (Backup and Job
    // changes wake it earlier through the watches).
    // While Backups run, look again every few seconds: the watch that wakes this controller is not the
    // one that fills the Backup cache, so a finish can be seen here before the cache has it.
    if !status.active.is_empty() {
        let soon = now + ACTIVE_RECHECK;
        wake_up = Some(wake_up.map_or(soon, |w| w.min(soon)));
    }
    Ok(match wake_up {
        Some(at) => Action::requeue(until(now, at)),
        None => Action::await_change(),
    })
}

/// How often a policy with running Backups re-reads them (from the cache: no API call).
const ACTIVE_RECHECK: Duration = Duration::from_secs(5);

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

fn is_finished(backup: &Backup) -> bool {
    matches!(
        backup.status.as_ref().and_then(|s| s.phase),
        Some(BackupPhase::Succeeded | BackupPhase::Failed)
    )
}

fn completion(backup: &Backup) -> Option<Timestamp> {
    backup
        .status
        .as_ref()
        .and_then(|s| s.completion_time.clone())
        .map(|t| t.0)
}

/// Something a person may want to hear about (spec.notifications.events chooses which).
pub struct Notice {
    pub event: NotificationEvent,
    pub headline: String,
    pub detail: String,
}

/// Sends the chosen notices to the policy's webhook. A failed delivery becomes a Warning Event (the URL
/// is never in it); it is not retried, so a flapping webhook cannot hold up reconciles.
async fn notify(ctx: &Context, policy: &BackupPolicy, namespace: &str, notices: Vec<Notice>) {
    let Some(notifications) = &policy.spec.notifications else {
        return;
    };
    for notice in notices
        .into_iter()
        .filter(|n| notifications.events.contains(&n.event))
    {
        let payload = crate::notify::message(namespace, &policy.name_any(), &notice.headline, &notice.detail);
        if let Err(error) = crate::notify::send(
            &ctx.client,
            namespace,
            &notifications.webhook.url_secret_ref,
            &payload,
        )
        .await
        {
            publish(
                ctx,
                policy,
                EventType::Warning,
                "NotificationFailed",
                format!("{:?} notification not delivered: {error}", notice.event),
            )
            .await;
        }
    }
}

/// Folds newly finished Backups into the policy's memory: last success (with the size-anomaly check and
/// retention), last failure and the failure count. Returns what is worth a notification.
async fn record_results(
    ctx: &Context,
    policy: &BackupPolicy,
    backups: &[Arc<Backup>],
    status: &mut BackupPolicyStatus,
    now: &Time,
) -> Vec<Notice> {
    let mut notices = Vec::new();
    let generation = status.observed_generation;
    let known_success = status.last_successful_backup.as_ref().map(|s| s.time.0);
    let newest_success = backups
        .iter()
        .filter(|b| b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Succeeded))
        .filter_map(|b| completion(b).map(|at| (at, b)))
        .max_by_key(|(at, _)| *at);
    if let Some((at, backup)) = newest_success.filter(|(at, _)| known_success.is_none_or(|known| *at > known))
    {
        let result = backup.status.clone().unwrap_or_default();
        let size = result.size_bytes.unwrap_or(0);
        status.last_successful_backup = Some(BackupSummary {
            name: backup.name_any(),
            time: Time(at),
            snapshot_id: result.snapshot_id.clone().unwrap_or_default(),
            size_bytes: size,
            sha256: result.sha256.clone().unwrap_or_default(),
            duration: result.duration.clone().unwrap_or_default(),
        });
        if let Some(band) = &policy.spec.size_anomaly {
            match plan::size_anomaly(band, &status.recent_sizes, size) {
                Some(message) => {
                    conditions::apply(
                        &mut status.conditions.0,
                        Desired::new(SIZE_ANOMALY, true, "SizeOutsideBand", message.clone()),
                        generation,
                        now,
                    );
                    notices.push(Notice {
                        event: NotificationEvent::Anomaly,
                        headline: "made a backup of unusual size".into(),
                        detail: message.clone(),
                    });
                    publish(
                        ctx,
                        policy,
                        EventType::Warning,
                        "SizeAnomaly",
                        format!("{}: {message}", backup.name_any()),
                    )
                    .await;
                }
                None => conditions::apply(
                    &mut status.conditions.0,
                    Desired::new(SIZE_ANOMALY, false, "SizeWithinBand", format!("{size} bytes")),
                    generation,
                    now,
                ),
            }
            status.recent_sizes.push(size);
            let window = band.window.max(1) as usize;
            let excess = status.recent_sizes.len().saturating_sub(window);
            status.recent_sizes.drain(..excess);
        }
        if let Err(error) = maintenance::start_retention(ctx, policy, &backup.name_any()).await {
            tracing::warn!(%error, policy = %policy.name_any(), "could not start retention");
        }
    }

    let known_failure = status.last_failure.as_ref().map(|f| f.time.0);
    let new_failures: Vec<&Arc<Backup>> = backups
        .iter()
        .filter(|b| b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Failed))
        .filter(|b| completion(b).is_some_and(|at| known_failure.is_none_or(|known| at > known)))
        .collect();
    if let Some(newest) = new_failures.iter().max_by_key(|b| completion(b)) {
        status.failed_backups = Some(status.failed_backups.unwrap_or(0) + new_failures.len() as i64);
        let message = newest
            .status
            .as_ref()
            .and_then(|s| s.message.clone())
            .unwrap_or_default();
        notices.push(Notice {
            event: NotificationEvent::Failure,
            headline: format!("backup {} FAILED", newest.name_any()),
            detail: message.clone(),
        });
        status.last_failure = Some(FailureSummary {
            name: newest.name_any(),
            time: Time(completion(newest).unwrap_or(now.0)),
            message,
        });
    }
    notices
}

/// Ready when the newest finished Backup succeeded (or none ran yet) and the policy is not stale.
fn overall_health(status: &BackupPolicyStatus, backups: &[Arc<Backup>], suspended: bool) -> Health {
    if conditions::is_true(&status.conditions.0, STALE) {
        let message = conditions::find(&status.conditions.0, STALE)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        return Health::NotReady {
            reason: "Stale",
            message,
        };
    }
    let newest_finished = backups
        .iter()
        .filter(|b| is_finished(b))
        .max_by_key(|b| completion(b));
    if let Some(failed) =
        newest_finished.filter(|b| b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Failed))
    {
        let message = format!(
            "{} failed: {}",
            failed.name_any(),
            failed
                .status
                .as_ref()
                .and_then(|s| s.message.clone())
                .unwrap_or_default()
        );
        return Health::NotReady {
            reason: "BackupFailed",
            message,
        };
    }
    if suspended {
        return Health::Ready {
            reason: "Suspended",
            message: "suspended: no new backups are scheduled".into(),
        };
    }
    match (&status.last_successful_backup, &status.next_schedule_time) {
        (Some(last), _) => Health::Ready {
            reason: "BackupSucceeded",
            message: format!("{} succeeded at {}", last.name, last.time.0),
        },
        (None, Some(next)) => Health::Ready {
            reason: "Scheduled",
            message: format!("the first backup is scheduled for {}", next.0),
        },
        (None, None) => Health::Ready {
            reason: "Scheduled",
            message: "waiting for the first slot".into(),
        },
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

#[allow(clippy::too_many_arguments)]
async fn stalled(
    api: &Api<BackupPolicy>,
    policy: &BackupPolicy,
    status: BackupPolicyStatus,
    reason: &'static str,
    message: String,
    ctx: &Context,
    now: &Time,
    retry: Option<Duration>,
) -> Result<Action, ReconcileError> {
    let status = report_stalled(ctx, api, policy, status, reason, message, now).await?;
    export_metrics(
        ctx,
        &policy.namespace().unwrap_or_default(),
        &policy.name_any(),
        &status,
    );
    Ok(retry.map_or_else(Action::await_change, Action::requeue))
}

/// Metrics are derived from status, so they are right after a restart.
fn export_metrics(ctx: &Context, namespace: &str, policy: &str, status: &BackupPolicyStatus) {
    let labels = PolicyLabels {
        namespace: namespace.to_owned(),
        policy: policy.to_owned(),
    };
    let metrics = &ctx.metrics;
    if let Some(last) = &status.last_successful_backup {
        metrics
            .last_success_timestamp
            .get_or_create(&labels)
            .set(last.time.0.as_millisecond() as f64 / 1000.0);
        metrics
            .last_size_bytes
            .get_or_create(&labels)
            .set(last.size_bytes);
    }
    metrics
        .stale
        .get_or_create(&labels)
        .set(i64::from(conditions::is_true(&status.conditions.0, STALE)));
    metrics
        .failures_total
        .get_or_create(&labels)
        .set(status.failed_backups.unwrap_or(0));
}

fn parse_optional(duration: &Option<crate::duration::DurationString>) -> Option<Duration> {
    duration.as_ref().and_then(|d| d.parse().ok())
}

fn until(now: Timestamp, at: Timestamp) -> Duration {
    let wait = at.duration_since(now).as_secs_f64().max(0.0);
    // A little after the instant itself, so the slot is due when we look.
    Duration::from_secs_f64(wait) + Duration::from_millis(50)
}
