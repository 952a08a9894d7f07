//! Stopping the writers before a rollback changes data, and bringing the old side back afterwards:
//! the compose runbook's emergency restore ("stop the app, restore, start the old version"). Without
//! it a restore would replace the database while the old side kept writing into it, losing writes
//! that status never mentioned.
//!
//! The replica counts are recorded in status before anything is scaled, so a restarted operator
//! brings each Deployment back to what it had, not to the zero it finds.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::Selector;
use kube::Api;

use super::machine::Step;
use super::steps::{limit, step_age, POLL};
use super::traffic::{side_ready, DEFAULT_READINESS_TIMEOUT};
use super::{now, step_jobs, Progress, Run};
use crate::api::cutover::{CutoverSpec, StoppedWriter};
use crate::controller::ReconcileError;
use crate::duration::format_duration;

/// Default of `rollback.quiesce.timeout`.
const DEFAULT_QUIESCE_TIMEOUT: Duration = Duration::from_secs(300);

/// The Deployments to stop, each with whether it comes back: `from` and the listed ones do, `to` (the
/// side that failed) does not.
pub(super) fn writers(spec: &CutoverSpec) -> Vec<(String, bool)> {
    let mut writers: Vec<(String, bool)> = Vec::new();
    let listed = spec.rollback.quiesce.iter().flat_map(|q| q.deployments.iter());
    let candidates = spec
        .from
        .deployment
        .iter()
        .chain(listed)
        .chain(spec.to.deployment.iter());
    for name in candidates {
        if !writers.iter().any(|(known, _)| known == name) {
            // `to` stays down even when also listed under quiesce: it is the side that failed.
            let resume = spec.to.deployment.as_ref() != Some(name);
            writers.push((name.clone(), resume));
        }
    }
    writers
}

pub(super) async fn stop_writers(run: &mut Run<'_>, step: &Step) -> Result<Progress, ReconcileError> {
    let spec = run.cutover.spec.clone();
    let deployments: Api<Deployment> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
    // Intent first: the replica counts, read once, before the first scale.
    let recorded = recorded_writers(run);
    let mut missing = Vec::new();
    let mut new = Vec::new();
    for (name, resume) in writers(&spec) {
        if recorded.iter().any(|w| w.deployment == name) {
            continue;
        }
        match deployments.get_opt(&name).await? {
            Some(deployment) => new.push(StoppedWriter {
                deployment: name,
                replicas: deployment.spec.replicas.unwrap_or(1),
                resume,
            }),
            None => missing.push(name),
        }
    }
    if !new.is_empty() {
        if let Some(rollback) = run.status.rollback.as_mut() {
            rollback.stopped_writers.extend(new);
        }
        run.save().await?;
    }
    let stopped = recorded_writers(run);
    let mut running = Vec::new();
    for writer in &stopped {
        let Some(deployment) = deployments.get_opt(&writer.deployment).await? else {
            continue;
        };
        if deployment.spec.replicas != Some(0) {
            scale(
                &deployments,
                &writer.deployment,
                0,
                &run.ctx.settings.manager_name,
            )
            .await?;
        }
        let pods = pods_of(run, &deployment).await?;
        if pods > 0 {
            running.push(format!("{pods} Pods of Deployment {}", writer.deployment));
        }
    }
    let timeout = limit(
        spec.rollback.quiesce.as_ref().and_then(|q| q.timeout.as_ref()),
        DEFAULT_QUIESCE_TIMEOUT,
    );
    if !running.is_empty() {
        return match waiting_for_writers(&running, step_age(run, step), timeout) {
            Progress::Failed(message) => Ok(Progress::Failed(
                undo(run, &deployments, &stopped, message).await?,
            )),
            other => Ok(other),
        };
    }
    if let Some(job) = spec.rollback.quiesce.as_ref().and_then(|q| q.job.clone()) {
        match step_jobs::rollback_job(run, step_jobs::QUIESCE_JOB, &job).await? {
            Progress::Done(_) => {}
            Progress::Failed(message) => {
                let message = format!("the quiesce Job failed ({message}); the database was not touched");
                return Ok(Progress::Failed(
                    undo(run, &deployments, &stopped, message).await?,
                ));
            }
            other => return Ok(other),
        }
    }
    if stopped.is_empty()
        && spec
            .rollback
            .quiesce
            .as_ref()
            .and_then(|q| q.job.as_ref())
            .is_none()
    {
        return Ok(Progress::Done(format!(
            "no writer to stop: no Deployment named in from.deployment, to.deployment or \
             rollback.quiesce{}; whatever still writes to the database during the restore loses its writes",
            missing_note(&missing)
        )));
    }
    if let Some(rollback) = run.status.rollback.as_mut() {
        // Status keeps whole seconds: rounded up, the stated window of lost writes never ends early.
        rollback
            .writers_stopped_time
            .get_or_insert_with(|| Time(ceil_to_second(now().0)));
    }
    Ok(Progress::Done(format!(
        "stopped {}: no Pod of them is left{}",
        describe(&stopped, |w| format!("{} (was {})", w.deployment, w.replicas)),
        missing_note(&missing)
    )))
}

/// A stop that failed gives every writer its replicas back, `to` included (traffic may still be on
/// it): a rollback that cannot restore must not leave the app down as well.
async fn undo(
    run: &Run<'_>,
    deployments: &Api<Deployment>,
    stopped: &[StoppedWriter],
    problem: String,
) -> Result<String, ReconcileError> {
    for writer in stopped {
        if deployments.get_opt(&writer.deployment).await?.is_some() {
            let replicas = writer.replicas;
            scale(
                deployments,
                &writer.deployment,
                replicas,
                &run.ctx.settings.manager_name,
            )
            .await?;
        }
    }
    Ok(format!(
        "{problem}; scaled {} back, traffic stays where it was",
        describe(stopped, |w| format!("{} to {}", w.deployment, w.replicas))
    ))
}

fn ceil_to_second(time: jiff::Timestamp) -> jiff::Timestamp {
    let whole = jiff::Timestamp::from_second(time.as_second()).unwrap_or(time);
    if whole == time {
        return whole;
    }
    jiff::Timestamp::from_second(time.as_second() + 1).unwrap_or(time)
}

/// Writers still running wait, until the quiesce timeout, which fails the rollback before any data
/// is touched.
fn waiting_for_writers(running: &[String], age: Duration, timeout: Duration) -> Progress {
    let what = running.join(", ");
    if age > timeout {
        return Progress::Failed(format!(
            "{what} still running after {}; the database was not touched",
            format_duration(timeout)
        ));
    }
    Progress::Wait {
        after: POLL,
        message: format!("waiting for {what} to end before changing the database"),
    }
}

pub(super) async fn resume(run: &mut Run<'_>, step: &Step) -> Result<Progress, ReconcileError> {
    let deployments: Api<Deployment> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
    let stopped = recorded_writers(run);
    let from = run.cutover.spec.from.clone();
    for writer in stopped.iter().filter(|w| w.resume) {
        let Some(deployment) = deployments.get_opt(&writer.deployment).await? else {
            continue;
        };
        let wanted = resumed_replicas(writer, from.deployment.as_deref());
        if deployment.spec.replicas != Some(wanted) {
            scale(
                &deployments,
                &writer.deployment,
                wanted,
                &run.ctx.settings.manager_name,
            )
            .await?;
        }
    }
    let timeout = limit(
        run.cutover.spec.readiness_timeout.as_ref(),
        DEFAULT_READINESS_TIMEOUT,
    );
    let resumed = describe(
        &stopped.iter().filter(|w| w.resume).cloned().collect::<Vec<_>>(),
        |w| {
            format!(
                "{} to {}",
                w.deployment,
                resumed_replicas(w, from.deployment.as_deref())
            )
        },
    );
    let kept_down: Vec<StoppedWriter> = stopped.iter().filter(|w| !w.resume).cloned().collect();
    let kept = if kept_down.is_empty() {
        String::new()
    } else {
        format!(
            "; {} stays at 0 replicas (it failed): scale it up once fixed",
            describe(&kept_down, |w| w.deployment.clone())
        )
    };
    Ok(match side_ready(run, &from).await? {
        Ok(ready) => Progress::Done(format!("scaled {resumed}; {ready}{kept}")),
        Err(missing) if step_age(run, step) > timeout => Progress::Failed(format!(
            "the old side is not ready within {} after scaling {resumed}: {missing}",
            format_duration(timeout)
        )),
        Err(missing) => Progress::Wait {
            after: POLL,
            message: format!("scaled {resumed}; {missing}"),
        },
    })
}

/// The replicas a writer comes back with: what it had, but at least one for `from`, which takes the
/// traffic back (a Cutover aborted long after someone scaled blue down must not end with nothing serving).
fn resumed_replicas(writer: &StoppedWriter, from: Option<&str>) -> i32 {
    if from == Some(writer.deployment.as_str()) {
        return writer.replicas.max(1);
    }
    writer.replicas
}

fn recorded_writers(run: &Run<'_>) -> Vec<StoppedWriter> {
    run.status
        .rollback
        .as_ref()
        .map(|r| r.stopped_writers.clone())
        .unwrap_or_default()
}

async fn scale(api: &Api<Deployment>, name: &str, replicas: i32, manager: &str) -> Result<(), kube::Error> {
    let params = PatchParams {
        field_manager: Some(manager.to_owned()),
        ..Default::default()
    };
    let patch = serde_json::json!({"spec": {"replicas": replicas}});
    api.patch_scale(name, &params, &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Pods of `deployment` that may still write: running or starting ones and terminating ones (a Pod in
/// its grace period may still write), not those that ended (Succeeded/Failed, e.g. evicted).
async fn pods_of(run: &Run<'_>, deployment: &Deployment) -> Result<usize, ReconcileError> {
    let Ok(selector) = Selector::try_from(deployment.spec.selector.clone()) else {
        // The API server validates selectors, so this is not expected; if it happens, the writers are
        // not known to be gone, which waits and then fails the step (and undoes it), data untouched.
        return Ok(1);
    };
    if selector.selects_all() {
        return Ok(0);
    }
    let pods: Api<Pod> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
    let listed = pods
        .list(&ListParams::default().labels_from(&selector))
        .await?
        .items;
    Ok(listed
        .iter()
        .filter(|pod| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .count())
}

fn describe(writers: &[StoppedWriter], each: impl Fn(&StoppedWriter) -> String) -> String {
    if writers.is_empty() {
        return "nothing".into();
    }
    writers.iter().map(each).collect::<Vec<_>>().join(", ")
}

fn missing_note(missing: &[String]) -> String {
    if missing.is_empty() {
        return String::new();
    }
    format!(" (Deployment {} does not exist)", missing.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(extra: serde_json::Value) -> CutoverSpec {
        let mut base = json!({
            "trafficSwitch": {"service": {"name": "web"}},
            "from": {"selector": {"track": "blue"}, "deployment": "web-blue"},
            "to": {"selector": {"track": "green"}, "deployment": "web-green"},
        });
        for (key, value) in extra.as_object().unwrap() {
            base[key] = value.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn both_sides_and_the_listed_workers_stop_and_all_but_the_failed_side_come_back() {
        let spec = spec(json!({"rollback": {"restoreDatabase": true,
            "quiesce": {"deployments": ["worker", "web-blue"]}}}));
        assert_eq!(
            writers(&spec),
            [
                ("web-blue".to_owned(), true),
                ("worker".to_owned(), true),
                ("web-green".to_owned(), false)
            ]
        );
    }

    #[test]
    fn the_failed_side_stays_down_even_when_listed_among_the_writers() {
        let spec = spec(json!({"rollback": {"restoreDatabase": true,
            "quiesce": {"deployments": ["web-green", "worker"]}}}));
        assert_eq!(
            writers(&spec),
            [
                ("web-blue".to_owned(), true),
                ("web-green".to_owned(), false),
                ("worker".to_owned(), true)
            ]
        );
    }

    #[test]
    fn the_old_side_comes_back_with_at_least_one_replica() {
        let writer = |name: &str, replicas| StoppedWriter {
            deployment: name.into(),
            replicas,
            resume: true,
        };
        assert_eq!(resumed_replicas(&writer("web-blue", 0), Some("web-blue")), 1);
        assert_eq!(resumed_replicas(&writer("web-blue", 3), Some("web-blue")), 3);
        assert_eq!(resumed_replicas(&writer("worker", 0), Some("web-blue")), 0);
    }

    #[test]
    fn the_stop_time_is_rounded_up_to_the_second() {
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(
            ceil_to_second(at("2026-12-03T10:00:00.2Z")),
            at("2026-12-03T10:00:01Z")
        );
        assert_eq!(
            ceil_to_second(at("2026-12-03T10:00:00Z")),
            at("2026-12-03T10:00:00Z")
        );
    }

    #[test]
    fn writers_still_running_wait_until_the_timeout_then_fail_touching_nothing() {
        let running = ["1 Pods of Deployment web-blue".to_owned()];
        let timeout = Duration::from_secs(300);
        assert_eq!(
            waiting_for_writers(&running, Duration::from_secs(10), timeout),
            Progress::Wait {
                after: POLL,
                message: "waiting for 1 Pods of Deployment web-blue to end before changing the database"
                    .into()
            }
        );
        assert_eq!(
            waiting_for_writers(&running, Duration::from_secs(301), timeout),
            Progress::Failed(
                "1 Pods of Deployment web-blue still running after 5m; the database was not touched".into()
            )
        );
    }
}
