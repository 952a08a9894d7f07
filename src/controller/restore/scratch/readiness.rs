//! Whether a scratch server can take the restore: its Pod Ready, still starting (and why), or failed
//! (stopped, or not ready within its timeout).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::duration::format_duration;
use crate::jobs;

/// Whether the scratch server can take the restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScratchReadiness {
    Ready,
    Starting(String),
    Failed(String),
}

pub fn scratch_readiness(pod: Option<&Pod>, waited: Duration, timeout: Duration) -> ScratchReadiness {
    let timed_out = |why: String| {
        if waited > timeout {
            ScratchReadiness::Failed(format!(
                "the scratch database was not ready within {} ({why})",
                format_duration(timeout)
            ))
        } else {
            ScratchReadiness::Starting(why)
        }
    };
    let Some(pod) = pod else {
        return timed_out("its Pod does not exist yet".into());
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    if matches!(status.phase.as_deref(), Some("Failed" | "Succeeded"))
        || pod.metadata.deletion_timestamp.is_some()
    {
        let detail = status
            .container_statuses
            .iter()
            .flatten()
            .filter_map(|c| c.state.as_ref().and_then(|s| s.terminated.as_ref()))
            .map(|t| {
                let message = t
                    .message
                    .as_deref()
                    .map(|m| jobs::last_line(m, 300))
                    .unwrap_or_default();
                format!(
                    "exit code {}{}",
                    t.exit_code,
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(": {message}")
                    }
                )
            })
            .next()
            .unwrap_or_else(|| "stopped".into());
        return ScratchReadiness::Failed(format!("the scratch database Pod {name} stopped ({detail})"));
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if ready {
        return ScratchReadiness::Ready;
    }
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref().and_then(|s| s.waiting.as_ref()))
        .map(|w| {
            format!(
                "{}{}",
                w.reason.clone().unwrap_or_default(),
                w.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
            )
        })
        .next();
    timed_out(waiting.unwrap_or_else(|| {
        format!(
            "Pod {name} is {}",
            status.phase.unwrap_or_else(|| "Pending".into())
        )
    }))
}

/// How long the scratch server has had to start: since its Pod was created. Not since the Restore
/// started, which may have waited for its Backup longer than the ready timeout before the Pod existed.
pub fn waited_for_server(pod: Option<&Pod>, restore_started: Option<&Time>, now: &Time) -> Duration {
    let started = pod
        .and_then(|p| p.metadata.creation_timestamp.as_ref())
        .or(restore_started)
        .map(|t| t.0)
        .unwrap_or(now.0);
    Duration::from_secs_f64(now.0.duration_since(started).as_secs_f64().max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_server_that_never_gets_ready_fails_after_its_timeout() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r-scratch"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}
        }))
        .unwrap();
        let timeout = Duration::from_secs(60);
        assert!(matches!(
            scratch_readiness(Some(&pod), Duration::from_secs(5), timeout),
            ScratchReadiness::Starting(_)
        ));
        assert!(matches!(
            scratch_readiness(Some(&pod), Duration::from_secs(61), timeout),
            ScratchReadiness::Failed(_)
        ));
        let crashed: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r-scratch"},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "database", "image": "postgres:16", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "message": "initdb: error: cannot be run as root"}}}]}
        }))
        .unwrap();
        match scratch_readiness(Some(&crashed), Duration::from_secs(1), timeout) {
            ScratchReadiness::Failed(message) => {
                assert!(message.contains("cannot be run as root"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let ready: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r-scratch"}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        assert_eq!(
            scratch_readiness(Some(&ready), Duration::ZERO, timeout),
            ScratchReadiness::Ready
        );
    }

    #[test]
    fn the_ready_timeout_counts_from_the_pod_not_from_a_long_wait_for_the_backup() {
        let at = |text: &str| Time(text.parse().unwrap());
        let restore_started = at("2026-05-01T02:00:00Z");
        let now = at("2026-05-01T02:10:05Z");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r-scratch", "creationTimestamp": "2026-05-01T02:10:00Z"}
        }))
        .unwrap();
        assert_eq!(
            waited_for_server(Some(&pod), Some(&restore_started), &now),
            Duration::from_secs(5)
        );
        assert_eq!(
            waited_for_server(None, Some(&restore_started), &now),
            Duration::from_secs(605)
        );
    }
}
