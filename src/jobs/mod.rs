//! Every Job Lifeboat runs is built and followed here: the agent's Jobs (`lifeboat agent …` with the
//! repository's environment), the user's step Jobs (Cutover checks and migrations, the Restore smoke
//! test), and reading how a Job ended from its Pods' termination messages.
//!
//! Secrets reach a Job only as `secretKeyRef` environment variables: the operator never reads a
//! password, and nothing secret is in a Job's arguments.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

mod agent;
mod env;
mod follow;
mod hardening;
mod progress;
mod user_step;

pub use agent::{agent_job, backup_invocation, tag_why, AgentJob, Invocation};
pub use env::{plain_env, restic_env, secret_env};
pub use follow::{
    follow_job, job_outcome, last_line, last_lines, newest_agent_report, newest_terminated, recheck_running,
    AgentReport, JobOutcome, JobState,
};
pub use hardening::{restricted_container, restricted_pod, scratch_volume};
pub use progress::{agent_progress, recheck_for_progress};
pub use user_step::{user_step_job, UserStepJob};

pub const POLICY_LABEL: &str = "lifeboat.dev/policy";
pub const BACKUP_LABEL: &str = "lifeboat.dev/backup";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Where a files source or target's PersistentVolumeClaim is mounted in the agent's Pod.
pub const DATA_MOUNT: &str = "/data";
/// The agent's container in every agent Job.
pub const AGENT_CONTAINER: &str = "agent";

/// The Job around one Pod that runs once (`restartPolicy: Never`), owned by the object it serves, with
/// the same labels on the Job and its Pods (so `kubectl get pods -l` finds them).
pub fn run_once_job(
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    owner: OwnerReference,
    limits: RunLimits,
    pod: PodSpec,
) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(limits.backoff_limit),
            active_deadline_seconds: limits.active_deadline_seconds,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    ..pod
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// How often a Job's Pod may be retried and how long the Job may run.
pub struct RunLimits {
    pub backoff_limit: i32,
    pub active_deadline_seconds: Option<i64>,
}

/// `/data` plus the path inside the claim (`/` is the claim's root).
pub fn data_path(path_in_claim: &str) -> String {
    if path_in_claim == "/" {
        DATA_MOUNT.to_owned()
    } else {
        format!("{DATA_MOUNT}{path_in_claim}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_claim_root_is_the_mount_itself() {
        assert_eq!(super::data_path("/"), "/data");
        assert_eq!(super::data_path("/uploads"), "/data/uploads");
    }
}
