//! Jobs running a user's own container once: Cutover checks, migrations and rollback steps, and the
//! Restore's smoke test. No retries unless the step asks (a migration is not blindly rerun).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, SecurityContext};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::{run_once_job, RunLimits};

use crate::api::common::JobStep;

pub struct UserStepJob<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub labels: BTreeMap<String, String>,
    pub owner: OwnerReference,
    /// The container's name, which `kubectl logs -c` and the termination-message reader use.
    pub container: &'a str,
    /// Variables Lifeboat provides (e.g. where a restored database is); the step's own come after them,
    /// so a user may override ours.
    pub provided_env: Vec<EnvVar>,
}

pub fn user_step_job(job: UserStepJob<'_>, step: &JobStep) -> Job {
    let mut env = job.provided_env;
    env.extend(step.env.iter().cloned());
    let container = Container {
        name: job.container.to_owned(),
        image: Some(step.image.clone()),
        command: Some(step.command.clone()),
        args: (!step.args.is_empty()).then(|| step.args.clone()),
        env: (!env.is_empty()).then_some(env),
        env_from: (!step.env_from.is_empty()).then(|| step.env_from.clone()),
        resources: step.resources.clone(),
        // Restricted's defaults but runAsNonRoot: many application and migration images run as root or
        // name their user (which the kubelet cannot check), and a step that cannot start would only fail
        // the Cutover. In a namespace that enforces `restricted`, set runAsNonRoot/runAsUser here.
        security_context: Some(step.security_context.clone().unwrap_or_else(|| SecurityContext {
            run_as_non_root: None,
            ..super::hardening::restricted_container(false)
        })),
        // A report written to /dev/termination-log is kept; a crash leaves its log tail instead.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    let limits = RunLimits {
        backoff_limit: step.backoff_limit.unwrap_or(0),
        active_deadline_seconds: step.active_deadline_seconds,
    };
    let pod = PodSpec {
        containers: vec![container],
        service_account_name: step.service_account_name.clone(),
        node_selector: (!step.node_selector.is_empty()).then(|| step.node_selector.clone()),
        tolerations: (!step.tolerations.is_empty()).then(|| step.tolerations.clone()),
        // The Pod-level seccomp default only: whether the image runs as non-root is the step's
        // securityContext's business (see above).
        security_context: Some(k8s_openapi::api::core::v1::PodSecurityContext {
            seccomp_profile: super::hardening::restricted_pod().seccomp_profile,
            ..Default::default()
        }),
        ..Default::default()
    };
    run_once_job(job.name, job.namespace, job.labels, job.owner, limits, pod)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_variables_follow_ours_and_nothing_is_retried_unless_asked() {
        let step: JobStep = serde_json::from_value(serde_json::json!({
            "image": "app:2",
            "command": ["python", "manage.py", "migrate"],
            "env": [{"name": "PGHOST", "value": "mine"}]
        }))
        .unwrap();
        let job = user_step_job(
            UserStepJob {
                name: "c-migration",
                namespace: "shop",
                labels: [("a".to_owned(), "b".to_owned())].into(),
                owner: OwnerReference::default(),
                container: "step",
                provided_env: vec![crate::jobs::plain_env("PGHOST", "ours")],
            },
            &step,
        );
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        let pod = spec.template.spec.unwrap();
        let env = pod.containers[0].env.clone().unwrap();
        assert_eq!(env.len(), 2);
        assert_eq!(
            env[1].value.as_deref(),
            Some("mine"),
            "the user's value comes last and wins"
        );
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    }
}
