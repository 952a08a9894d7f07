//! Stopping the writers before a rollback changes data, and bringing the old side back afterwards:
//! the compose runbook's emergency restore ("stop the app, restore, start the old version"). Without
//! it a restore would replace the database while the old side kept writing into it, losing writes
//! that status never mentioned.
//!
//! The replica counts are recorded in status before anything is scaled, so a restarted operator
//! brings each Deployment back to what it had, not to the zero it finds.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
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
        .map(|d| (d.clone(), true))
        .chain(spec.to.deployment.iter().map(|d| (d.clone(), false)));
    for (name, resume) in candidates {
        if !writers.iter().any(|(known, _)| *known == name) {
            writers.push((name, resume));
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
        return Ok(waiting_for_writers(&running, step_age(run, step), timeout));
    }
    if let Some(job) = spec.rollback.quiesce.as_ref().and_then(|q| q.job.clone()) {
        match step_jobs::rollback_job(run, "rollback-quiesce", &job).await? {
            Progress::Done(_) => {}
            Progress::Failed(message) => {
                return Ok(Progress::Failed(format!(
                    "the quiesce Job failed ({message}); the database was not touched and the Deployments \
                     stay at zero"
                )))
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
        rollback.writers_stopped_time.get_or_insert_with(now);
    }
    Ok(Progress::Done(format!(
        "stopped {}: no Pod of them is left{}",
        describe(&stopped, |w| format!("{} (was {})", w.deployment, w.replicas)),
        missing_note(&missing)
    )))
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
    for writer in stopped.iter().filter(|w| w.resume) {
        let Some(deployment) = deployments.get_opt(&writer.deployment).await? else {
            continue;
        };
        if deployment.spec.replicas != Some(writer.replicas) {
            scale(
                &deployments,
                &writer.deployment,
                writer.replicas,
                &run.ctx.settings.manager_name,
            )
            .await?;
        }
    }
    let from = run.cutover.spec.from.clone();
    let timeout = limit(
        run.cutover.spec.readiness_timeout.as_ref(),
        DEFAULT_READINESS_TIMEOUT,
    );
    let resumed = describe(
        &stopped.iter().filter(|w| w.resume).cloned().collect::<Vec<_>>(),
        |w| format!("{} to {}", w.deployment, w.replicas),
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

/// Pods of `deployment`, terminating ones included: a Pod in its grace period may still write.
async fn pods_of(run: &Run<'_>, deployment: &Deployment) -> Result<usize, ReconcileError> {
    let labels: BTreeMap<String, String> = deployment.spec.selector.match_labels.clone().unwrap_or_default();
    if labels.is_empty() {
        return Ok(0);
    }
    let selector = labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods: Api<Pod> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
    Ok(pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .len())
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
