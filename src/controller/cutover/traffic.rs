//! The traffic steps: the new side's readiness, the switch to it, and the switch back. The mechanics
//! of reading and patching the switched object are in `switch.rs`; these decide when and record why.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
use kube::Api;
use serde_json::Value;

use super::machine::Step;
use super::steps::{limit, step_age, POLL};
use super::switch::{self, Target};
use super::{elapsed, now, Progress, Run};
use crate::api::cutover::{ActiveSide, CutoverSpec, Side};
use crate::controller::ReconcileError;
use crate::duration::format_duration;

/// Default of `trafficSwitch.settle`.
const DEFAULT_SETTLE: Duration = Duration::from_secs(5);
/// Default of `readinessTimeout` (also bounds the rollback's wait for the old side).
pub(super) const DEFAULT_READINESS_TIMEOUT: Duration = Duration::from_secs(600);
/// Past this many characters a switched value is cut in messages.
const COMPACT_LIMIT: usize = 300;

pub(super) async fn readiness(run: &mut Run<'_>, step: &Step) -> Result<Progress, ReconcileError> {
    let timeout = limit(
        run.cutover.spec.readiness_timeout.as_ref(),
        DEFAULT_READINESS_TIMEOUT,
    );
    let to = run.cutover.spec.to.clone();
    let verdict = side_ready(run, &to).await?;
    Ok(readiness_progress(verdict, step_age(run, step), timeout))
}

/// Ready is done; not ready waits (polling: Pods becoming Ready wake nothing) until `timeout`.
fn readiness_progress(verdict: Result<String, String>, age: Duration, timeout: Duration) -> Progress {
    match verdict {
        Ok(summary) => Progress::Done(summary),
        Err(missing) if age > timeout => Progress::Failed(format!(
            "not ready within {}: {missing}",
            format_duration(timeout)
        )),
        Err(missing) => Progress::Wait {
            after: POLL,
            message: missing,
        },
    }
}

/// Whether a side can take traffic: its Deployment rolled out with every Pod Ready, or (without a
/// Deployment) at least one Pod matching its selector and all of them Ready.
pub(super) async fn side_ready(run: &Run<'_>, side: &Side) -> Result<Result<String, String>, ReconcileError> {
    let selector = label_selector(side);
    let pods: Api<Pod> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
    let listed = pods.list(&ListParams::default().labels(&selector)).await?.items;
    if let Some(name) = &side.deployment {
        let deployments: Api<Deployment> = Api::namespaced(run.ctx.client.clone(), &run.namespace);
        return Ok(match deployments.get_opt(name).await? {
            None => Err(format!("Deployment {name} does not exist")),
            Some(deployment) => crate::checks::deployment_ready(&deployment, &listed),
        });
    }
    Ok(pods_ready(&selector, &listed))
}

fn label_selector(side: &Side) -> String {
    side.selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Without a Deployment: at least one live Pod, and every live one Ready (terminating Pods are gone).
fn pods_ready(selector: &str, listed: &[Pod]) -> Result<String, String> {
    let live: Vec<&Pod> = listed
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let ready = live.iter().filter(|p| crate::checks::pod_ready(p)).count();
    if !live.is_empty() && ready == live.len() {
        Ok(format!("{ready} Pods matching {selector} Ready"))
    } else {
        Err(format!("{ready}/{} Pods matching {selector} Ready", live.len()))
    }
}

pub(super) async fn switch_to(run: &mut Run<'_>) -> Result<Progress, ReconcileError> {
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
    let change = switch_change(&target, &spec, &previous, &desired);
    if spec.dry_run {
        return Ok(Progress::Skipped(format!("dry run: would change {change}")));
    }
    // The readiness gate may have passed hours ago (an approval waits): the new side must still be
    // able to serve at the moment traffic moves, or the switch is an outage until the checks catch it.
    if current != desired {
        if let Err(missing) = side_ready(run, &spec.to).await? {
            return Ok(Progress::Failed(format!(
                "the new side is no longer ready, nothing was switched: {missing}"
            )));
        }
    }
    if run.status.previous_target.is_none() {
        run.status.previous_target = Some(previous.to_string());
        run.save().await?;
    }
    if current != desired {
        crate::controller::crash_point::reached("switch-write");
        switch::write(
            &client,
            &run.namespace,
            &target,
            &desired,
            &run.ctx.settings.manager_name,
        )
        .await?;
        if let Some(approved) = &run.status.approval {
            let seconds = elapsed(&approved.time, &now()).as_secs_f64();
            run.ctx.metrics.cutover_approval_to_switch(seconds);
        }
    }
    run.status.active = Some(ActiveSide::To);
    let written = match run.status.switch_time.clone() {
        Some(written) => written,
        None => {
            let written = now();
            run.status.switch_time = Some(written.clone());
            run.save().await?;
            written
        }
    };
    Ok(settled(run, &written, change))
}

/// What the switch changes, for the step's message and Events.
fn switch_change(target: &Target, spec: &CutoverSpec, previous: &Value, desired: &Value) -> String {
    match (target, &spec.from.service, &spec.to.service) {
        (Target::Service(_), _, _) | (_, None, _) | (_, _, None) => {
            format!(
                "{} {} → {}",
                target.describe(),
                compact(previous),
                compact(desired)
            )
        }
        // Rules are long; the Services they point at say what changed (the rules are in previousTarget).
        (_, Some(from), Some(to)) => format!("{} Service {from} → {to}", target.describe()),
    }
}

pub(super) async fn switch_back(run: &mut Run<'_>) -> Result<Progress, ReconcileError> {
    let spec = run.cutover.spec.clone();
    let Some(target) = Target::of(&spec) else {
        return Ok(Progress::Failed("spec.trafficSwitch names nothing".into()));
    };
    let Some(recorded) = run.status.previous_target.clone() else {
        return Ok(Progress::Skipped("traffic was never switched".into()));
    };
    let previous: Value = match serde_json::from_str(&recorded) {
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
        // Deleted by someone else (a GitOps prune, a kubectl delete): recreating it is theirs to do,
        // Lifeboat does not know the rest of the object. Say what would route to the old side.
        return Ok(Progress::Failed(format!(
            "{} no longer exists, so no traffic reaches either side: recreate it with {recorded} to serve \
             the old side",
            target.describe()
        )));
    };
    if current != previous {
        crate::controller::crash_point::reached("switch-back-write");
        switch::write(
            &client,
            &run.namespace,
            &target,
            &previous,
            &run.ctx.settings.manager_name,
        )
        .await?;
    }
    let restored = match run.status.switch_back_time.clone() {
        Some(restored) => restored,
        None => {
            let restored = now();
            run.status.switch_back_time = Some(restored.clone());
            run.save().await?;
            restored
        }
    };
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
                .cutover_traffic_restored(elapsed(&since, &restored).as_secs_f64());
        }
    }
    let change = switch_back_change(&target, &spec, &previous);
    Ok(settled(run, &restored, change))
}

/// What the switch back restored, for the step's message and Events.
fn switch_back_change(target: &Target, spec: &CutoverSpec, previous: &Value) -> String {
    let restored_to = match (target, &spec.from.service) {
        (Target::Service(_), _) | (_, None) => compact(previous),
        (_, Some(from)) => format!("the recorded rules (Service {from})"),
    };
    format!("{} back to {restored_to}", target.describe())
}

/// A route change is done once traffic had `trafficSwitch.settle` (counted from the recorded write) to
/// follow it; until then the step waits, so the checks that follow reach the side they are meant for.
fn settled(run: &Run<'_>, written: &Time, change: String) -> Progress {
    let settle = limit(run.cutover.spec.traffic_switch.settle.as_ref(), DEFAULT_SETTLE);
    settle_progress(elapsed(written, &now()), settle, change)
}

fn settle_progress(age: Duration, settle: Duration, change: String) -> Progress {
    if age < settle {
        return Progress::Wait {
            after: settle - age,
            message: format!("{change}; giving traffic {} to follow", format_duration(settle)),
        };
    }
    Progress::Done(change)
}

/// A selector as `{k=v,…}`; anything else as JSON, cut at 300 characters.
fn compact(value: &Value) -> String {
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
            // Counted in characters: a byte count added "…" to multibyte text that was not cut.
            match text.char_indices().nth(COMPACT_LIMIT) {
                Some((cut, _)) => format!("{}…", &text[..cut]),
                None => text,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::switch::tests::spec;
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_print_like_kubectl_labels() {
        assert_eq!(
            compact(&json!({"app": "web", "track": "green"})),
            "{app=web,track=green}"
        );
        let long = compact(&json!([{"host": "x".repeat(400)}]));
        assert_eq!(long.chars().count(), 301);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn a_route_change_waits_for_the_settle_time_from_the_write() {
        let settle = Duration::from_secs(5);
        assert_eq!(
            settle_progress(
                Duration::from_secs(2),
                settle,
                "Service web selector a → b".into()
            ),
            Progress::Wait {
                after: Duration::from_secs(3),
                message: "Service web selector a → b; giving traffic 5s to follow".into()
            }
        );
        assert_eq!(
            settle_progress(settle, settle, "changed".into()),
            Progress::Done("changed".into())
        );
    }

    #[test]
    fn a_side_not_ready_waits_until_the_readiness_timeout() {
        let timeout = Duration::from_secs(600);
        assert_eq!(
            readiness_progress(Ok("ready".into()), 2 * timeout, timeout),
            Progress::Done("ready".into())
        );
        assert_eq!(
            readiness_progress(Err("1/2 Pods".into()), timeout, timeout),
            Progress::Wait {
                after: POLL,
                message: "1/2 Pods".into()
            }
        );
        assert_eq!(
            readiness_progress(Err("1/2 Pods".into()), timeout + POLL, timeout),
            Progress::Failed("not ready within 10m: 1/2 Pods".into())
        );
    }

    #[test]
    fn without_a_deployment_a_side_needs_live_pods_all_ready() {
        let pod = |ready: bool, terminating: bool| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "deletionTimestamp": terminating.then_some("2026-01-01T00:00:00Z")},
                "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
            .unwrap()
        };
        assert_eq!(
            pods_ready("app=web", &[]),
            Err("0/0 Pods matching app=web Ready".into())
        );
        assert_eq!(
            pods_ready("app=web", &[pod(true, false), pod(false, true)]),
            Ok("1 Pods matching app=web Ready".into())
        );
        assert_eq!(
            pods_ready("app=web", &[pod(true, false), pod(false, false)]),
            Err("1/2 Pods matching app=web Ready".into())
        );
    }

    #[test]
    fn a_service_switch_shows_selectors_and_a_route_switch_the_services() {
        let service = spec(json!({"service": {"name": "web"}}));
        let target = Target::of(&service).unwrap();
        let blue = json!({"app": "web", "track": "blue"});
        let green = json!({"app": "web", "track": "green"});
        assert_eq!(
            switch_change(&target, &service, &blue, &green),
            "Service web selector {app=web,track=blue} → {app=web,track=green}"
        );
        assert_eq!(
            switch_back_change(&target, &service, &blue),
            "Service web selector back to {app=web,track=blue}"
        );
        let route = spec(json!({"httpRoute": {"name": "web"}}));
        let target = Target::of(&route).unwrap();
        assert_eq!(
            switch_change(&target, &route, &json!([]), &json!([])),
            "HTTPRoute web backendRefs Service web-blue → web-green"
        );
        assert_eq!(
            switch_back_change(&target, &route, &json!([])),
            "HTTPRoute web backendRefs back to the recorded rules (Service web-blue)"
        );
    }

    #[test]
    fn long_values_are_cut_at_the_limit_in_characters() {
        let short_multibyte = Value::String("ř".repeat(200));
        assert!(!compact(&short_multibyte).ends_with('…'), "200 characters fit");
        let long = Value::String("ř".repeat(400));
        let cut = compact(&long);
        assert!(cut.ends_with('…'));
        assert_eq!(cut.chars().count(), COMPACT_LIMIT + 1);
    }
}
