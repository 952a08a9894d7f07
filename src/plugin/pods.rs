//! A Job's Pods and what their containers wrote, for `logs` and `snapshots`.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::ResourceExt;

use super::kube_client::Session;
use super::PluginError;

/// The Pods of Job `job`, oldest first (a retried Job has one per attempt).
pub async fn job_pods(session: &Session, job: &str) -> Result<Vec<Pod>, PluginError> {
    let mut pods = session
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .map_err(PluginError::api(format!("the Pods of Job {job}")))?
        .items;
    pods.sort_by_key(|pod| pod.creation_timestamp().map(|t| t.0));
    Ok(pods)
}

/// What container `container` of `pod` wrote (stdout and stderr, as `kubectl logs` shows them).
pub async fn log(session: &Session, pod: &Pod, container: Option<&str>) -> Result<String, PluginError> {
    let name = pod.name_any();
    let params = LogParams {
        container: container.map(str::to_owned),
        ..Default::default()
    };
    session
        .api::<Pod>()
        .logs(&name, &params)
        .await
        .map_err(PluginError::api(format!("the log of Pod {name}")))
}
