//! Progress of a running agent Job, read from its Pod's log (the agent prints `lifeboat-progress:` lines;
//! it has no API access of its own), for the Progress column of Backups and Restores.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::runtime::controller::Action;
use kube::{Api, Client, ResourceExt};

use super::AGENT_CONTAINER;
use crate::agent::progress::newest_progress;
use crate::api::common::TransferProgress;

/// How often a running transfer's progress is copied to status: the bound on status writes it causes.
const PROGRESS_RECHECK: Duration = Duration::from_secs(10);
/// Progress lines come every 2 s among the tools' own stderr lines: the newest is within these.
const TAIL_LINES: i64 = 50;

/// The agent's newest report, or None when there is none yet or the log cannot be read (then the
/// column stays as it was; the run itself is followed through the Job, not the log).
pub async fn agent_progress(client: &Client, namespace: &str, job: &str) -> Option<TransferProgress> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut running = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .ok()?
        .items
        .into_iter()
        .filter(|pod| pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .collect::<Vec<_>>();
    running.sort_by_key(|pod| pod.creation_timestamp().map(|t| t.0));
    let pod = running.last()?;
    let params = LogParams {
        container: Some(AGENT_CONTAINER.to_owned()),
        tail_lines: Some(TAIL_LINES),
        ..Default::default()
    };
    let log = match pods.logs(&pod.name_any(), &params).await {
        Ok(log) => log,
        Err(error) => {
            tracing::debug!(%error, job, "cannot read the agent's log for its progress");
            return None;
        }
    };
    let progress = newest_progress(&log)?;
    Some(TransferProgress::new(
        progress.bytes_done,
        progress.total_bytes,
        progress.bytes_per_second,
        jiff::Timestamp::now(),
    ))
}

/// Like [`super::recheck_running`], but once the agent runs, looked at again every `PROGRESS_RECHECK` to
/// copy its progress (a Job's end is still a watch event, seen at once).
pub fn recheck_for_progress(job: &k8s_openapi::api::batch::v1::Job) -> Action {
    if job.status.as_ref().and_then(|s| s.ready).unwrap_or(0) == 0 {
        super::recheck_running(job)
    } else {
        Action::requeue(PROGRESS_RECHECK)
    }
}
