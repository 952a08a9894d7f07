//! The RestoreDrill controller: on its schedule, a Restore of the policy's newest snapshot into the
//! drill's target; when it ends, the measured RTO and RPO against the targets in status (lastDrill, a
//! bounded history, conditions Ready/RTOMet/RPOMet), Events and metrics. The disaster-recovery
//! runbook's monthly drill, done every time and recorded.

pub mod overdue;
pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use self::plan::Objectives;
use super::children::{create_ignoring_existing, delete_ignoring_absent};
use super::status::{report_stalled, write_status};
use super::{Context, ReconcileError};
use crate::api::backup_policy::ConcurrencyPolicy;
use crate::api::restore::RestorePhase;
use crate::api::restore_drill::{DrillEvent, DrillResult, RestoreDrillStatus};
use crate::api::{BackupPolicy, Restore, RestoreDrill};
use crate::conditions::{self, set_health, Health};
use crate::controller::events::publish;
use crate::controller::notifications::{notify, Announcement};
use crate::metrics::DrillLabels;
use crate::schedule::Schedule;
use crate::slots::{decide_slot, SlotDecision, SlotInput};

const KIND: &str = "RestoreDrill";
pub const DRILL_LABEL: &str = "lifeboat.dev/drill";
/// When the drill started, on each of its Restores: the start of the measured RTO and the instant the
/// RPO is measured at.
pub const START_ANNOTATION: &str = "lifeboat.dev/drill-start";

pub async fn reconcile(drill: Arc<RestoreDrill>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.metrics.reconciled(KIND);
    let name = drill.name_any();
    let namespace = drill.namespace().ok_or_else(|| ReconcileError::NotNamespaced {
        kind: KIND,
        name: name.clone(),
    })?;
    let drills: Api<RestoreDrill> = Api::namespaced(ctx.client.clone(), &namespace);
    let restores: Api<Restore> = Api::namespaced(ctx.client.clone(), &namespace);
    // Read fresh rather than from the watch cache, which may lag our last status write: a stale status
    // would fold the same drill twice (a second Event) or look at a slot already handled.
    let Some(fresh) = drills.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let drill = Arc::new(fresh);
    let now = Timestamp::now();
    let now_time = Time(now);
    let generation = drill.metadata.generation;
    let current = drill.status.clone().unwrap_or_default();
    let mut status = current.clone();
    status.observed_generation = generation;
    let objectives = Objectives::of(&drill.spec);

    let schedule = match Schedule::parse(&drill.spec.schedule.0, drill.spec.time_zone.as_deref()) {
        Ok(schedule) => schedule,
        Err(error) => {
            return stalled(
                &drills,
                &drill,
                status,
                "InvalidSchedule",
                error.to_string(),
                &ctx,
                None,
            )
            .await
        }
    };

    // Read the world: this drill's Restores.
    let owned: Vec<Restore> = restores
        .list(&ListParams::default().labels(&format!("{DRILL_LABEL}={name}")))
        .await?
        .items
        .into_iter()
        .filter(|r| {
            r.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == drill.metadata.uid.as_ref())
        })
        .collect();
    let finished = |r: &Restore| {
        r.status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(RestorePhase::is_finished)
    };

    // Fold finished drills into the record.
    let known = |n: &str| {
        status.history.iter().any(|h| h.restore == n)
            || status.last_drill.as_ref().is_some_and(|l| l.restore == n)
    };
    let new_results: Vec<_> = owned
        .iter()
        .filter(|r| finished(r) && !known(&r.name_any()))
        .map(|r| {
            plan::drill_result(
                &r.name_any(),
                drill_start(r),
                r.status.as_ref().expect("finished has status"),
                &objectives,
            )
        })
        .collect();
    let mut announcements: Vec<(DrillEvent, String, String)> =
        new_results.iter().filter_map(result_announcement).collect();
    for result in &new_results {
        let reason = plan::verdict_reason(result);
        let type_ = if result.passed == Some(true) {
            EventType::Normal
        } else {
            EventType::Warning
        };
        publish(
            &ctx,
            drill.as_ref(),
            type_,
            reason,
            format!(
                "{}: {}",
                result.restore,
                result.message.clone().unwrap_or_default()
            ),
        )
        .await;
    }
    let limit = drill.spec.history_limit.max(0) as usize;
    plan::record(&mut status.history, &mut status.last_drill, new_results, limit);
    let running: Vec<String> = owned
        .iter()
        .filter(|r| !finished(r))
        .map(|r| r.name_any())
        .collect();
    status.active = running.first().cloned();

    // The schedule: one drill at a time; a slot that comes while one runs is skipped.
    let created = drill
        .metadata
        .creation_timestamp
        .clone()
        .map(|t| t.0)
        .unwrap_or(now);
    let handled_until = status.last_schedule_time.clone().map(|t| t.0).unwrap_or(created);
    let (decision, next) = decide_slot(&SlotInput {
        schedule: &schedule,
        now,
        handled_until,
        starting_deadline: None,
        suspend: drill.spec.suspend,
        concurrency: ConcurrencyPolicy::Forbid,
        running: &running,
        jitter: Duration::ZERO,
    });
    status.next_schedule_time = if drill.spec.suspend { None } else { next.map(Time) };
    match decision {
        SlotDecision::Run { slot } | SlotDecision::Replace { slot, .. } => {
            let policies: Api<BackupPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
            if policies.get_opt(&drill.spec.policy_ref.name).await?.is_none() {
                let message = format!(
                    "BackupPolicy {} does not exist in namespace {namespace}",
                    drill.spec.policy_ref.name
                );
                return stalled(
                    &drills,
                    &drill,
                    status,
                    "PolicyNotFound",
                    message,
                    &ctx,
                    Some(Duration::from_secs(30)),
                )
                .await;
            }
            let restore_name = create_drill_restore(&ctx, &drill, &restores, slot, now).await?;
            status.last_schedule_time = Some(Time(slot));
            status.active = Some(restore_name);
        }
        SlotDecision::SkipBusy { slot } | SlotDecision::SkipMissed { slot } => {
            status.last_schedule_time = Some(Time(slot));
            let note = format!(
                "skipped the {slot} drill: {} is still running",
                running.join(", ")
            );
            publish(&ctx, drill.as_ref(), EventType::Warning, "SkippedBusy", note).await;
        }
        SlotDecision::Wait => {}
    }

    plan::apply_objective_conditions(
        &mut status.conditions.0,
        status.last_drill.as_ref(),
        &objectives,
        generation,
        &now_time,
    );
    let last_start = owned
        .iter()
        .map(drill_start)
        .chain(status.last_drill.as_ref().map(|l| l.start_time.0))
        .max();
    let grace = drill
        .spec
        .overdue_grace
        .as_ref()
        .and_then(|g| g.parse().ok())
        .unwrap_or(overdue::DEFAULT_GRACE);
    let punctuality = overdue::punctuality(&schedule, grace, last_start, created, now);
    if punctuality.overdue && !conditions::is_true(&current.conditions.0, overdue::OVERDUE) {
        let message = punctuality.condition.message.clone();
        publish(
            &ctx,
            drill.as_ref(),
            EventType::Warning,
            "Overdue",
            message.clone(),
        )
        .await;
        announcements.push((DrillEvent::Overdue, "is OVERDUE".into(), message));
    }
    let overdue_message = punctuality.overdue.then(|| punctuality.condition.message.clone());
    conditions::apply(
        &mut status.conditions.0,
        punctuality.condition,
        generation,
        &now_time,
    );
    let health = overall_health(&status, drill.spec.suspend, overdue_message);
    set_health(&mut status.conditions.0, health, generation, &now_time);
    // Tried before the status write, which records the outcome (see the BackupPolicy controller).
    let chosen = drill.spec.notifications.as_ref().map_or_else(Vec::new, |n| {
        announcements
            .into_iter()
            .filter(|(event, _, _)| n.events.contains(event))
            .map(|(event, headline, detail)| Announcement {
                event: format!("{event:?}"),
                headline,
                detail,
            })
            .collect()
    });
    let next_notification = notify(
        &ctx,
        drill.as_ref(),
        drill.spec.notifications.as_ref().map(|n| &n.webhook),
        &mut status.notifications,
        chosen,
    )
    .await;
    write_status(
        &drills,
        &drill,
        Some(&current),
        &status,
        &ctx.settings.manager_name,
    )
    .await?;
    export_metrics(&ctx, &drill, &status);

    // Only after the record is written: drop the oldest finished Restores beyond the history limit.
    let mut done: Vec<&Restore> = owned.iter().filter(|r| finished(r)).collect();
    done.sort_by_key(|r| std::cmp::Reverse(drill_start(r)));
    for old in done.into_iter().skip(limit) {
        delete_ignoring_absent(&restores, &old.name_any()).await?;
    }

    let next_slot = next.filter(|_| !drill.spec.suspend);
    let wake_up = [next_slot, punctuality.overdue_at, next_notification]
        .into_iter()
        .flatten()
        .min();
    Ok(match wake_up {
        Some(at) => Action::requeue(
            Duration::from_secs_f64(at.duration_since(now).as_secs_f64().max(0.0))
                + Duration::from_millis(50),
        ),
        None => Action::await_change(),
    })
}

/// What a newly finished drill is worth telling: a failure, or a pass that missed its RTO or RPO.
fn result_announcement(result: &DrillResult) -> Option<(DrillEvent, String, String)> {
    if result.passed == Some(true) {
        return None;
    }
    let detail = format!(
        "{}: {}",
        result.restore,
        result.message.clone().unwrap_or_default()
    );
    let missed: Vec<&str> = [(result.rto_met, "RTO"), (result.rpo_met, "RPO")]
        .into_iter()
        .filter(|(met, _)| *met == Some(false))
        .map(|(_, name)| name)
        .collect();
    Some(if missed.is_empty() {
        (DrillEvent::Failure, "drill FAILED".into(), detail)
    } else {
        (
            DrillEvent::ObjectiveMissed,
            format!("drill MISSED its {}", missed.join(" and ")),
            detail,
        )
    })
}

fn drill_start(restore: &Restore) -> Timestamp {
    restore
        .annotations()
        .get(START_ANNOTATION)
        .and_then(|t| t.parse().ok())
        .or_else(|| restore.metadata.creation_timestamp.clone().map(|t| t.0))
        .unwrap_or_else(Timestamp::now)
}

async fn create_drill_restore(
    ctx: &Context,
    drill: &RestoreDrill,
    api: &Api<Restore>,
    slot: Timestamp,
    now: Timestamp,
) -> Result<String, ReconcileError> {
    let name = plan::restore_name_for_slot(&drill.name_any(), slot);
    let restore = drill_restore(drill, &name, now);
    // Created before a restart: the deterministic name makes this a no-op.
    let created = create_ignoring_existing(api, &restore).await?;
    crate::controller::crash_point::reached("drill-restore-created");
    if created {
        publish(
            ctx,
            drill,
            EventType::Normal,
            "DrillStarted",
            format!("created Restore {name} for the {slot} drill"),
        )
        .await;
    }
    Ok(name)
}

/// The Restore that is one run of `drill`, started `now`: labelled and owned by the drill, so its result
/// is folded into the drill's record like a scheduled one (`kubectl lifeboat drill now` makes these too).
pub fn drill_restore(drill: &RestoreDrill, name: &str, now: Timestamp) -> Restore {
    Restore {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                [
                    (DRILL_LABEL.to_owned(), drill.name_any()),
                    (
                        crate::jobs::POLICY_LABEL.to_owned(),
                        drill.spec.policy_ref.name.clone(),
                    ),
                ]
                .into(),
            ),
            annotations: Some([(START_ANNOTATION.to_owned(), now.to_string())].into()),
            owner_references: drill.controller_owner_ref(&()).map(|owner| vec![owner]),
            ..Default::default()
        },
        spec: plan::restore_spec_for(&drill.spec),
        status: None,
    }
}

/// Ready when the last drill passed (or none has run yet) and the drill is not overdue: a passing drill
/// from long ago is no evidence that restores work today.
fn overall_health(status: &RestoreDrillStatus, suspended: bool, overdue: Option<String>) -> Health {
    if let Some(message) = overdue {
        return Health::NotReady {
            reason: "Overdue",
            message,
        };
    }
    match &status.last_drill {
        Some(last) if last.passed == Some(true) => Health::Ready {
            reason: plan::verdict_reason(last),
            message: last.message.clone().unwrap_or_default(),
        },
        Some(last) => {
            let why = last.message.clone().unwrap_or_default();
            Health::NotReady {
                reason: "DrillFailed",
                message: format!("{} failed: {why}", last.restore),
            }
        }
        None if suspended => Health::Ready {
            reason: "Suspended",
            message: "suspended: no drills are scheduled".into(),
        },
        None => match (&status.active, &status.next_schedule_time) {
            (Some(active), _) => Health::Ready {
                reason: "FirstDrillRunning",
                message: format!("the first drill runs as Restore {active}"),
            },
            (None, Some(next)) => Health::Ready {
                reason: "Scheduled",
                message: format!("the first drill is scheduled for {}", next.0),
            },
            (None, None) => Health::Ready {
                reason: "Scheduled",
                message: "waiting for the first slot".into(),
            },
        },
    }
}

async fn stalled(
    api: &Api<RestoreDrill>,
    drill: &RestoreDrill,
    status: RestoreDrillStatus,
    reason: &'static str,
    message: String,
    ctx: &Context,
    retry: Option<Duration>,
) -> Result<Action, ReconcileError> {
    let now = Time(Timestamp::now());
    let status = report_stalled(ctx, api, drill, status, reason, message, &now).await?;
    export_metrics(ctx, drill, &status);
    Ok(retry.map_or_else(Action::await_change, Action::requeue))
}

/// Metrics are derived from spec and status, so they are right after a restart.
fn export_metrics(ctx: &Context, drill: &RestoreDrill, status: &RestoreDrillStatus) {
    let (namespace, name) = (drill.namespace().unwrap_or_default(), drill.name_any());
    ctx.metrics
        .exported(crate::metrics::ExportedKind::RestoreDrill, &namespace, &name);
    ctx.metrics
        .drill
        .export(&DrillLabels::new(&namespace, &name), &drill.spec, status);
}
