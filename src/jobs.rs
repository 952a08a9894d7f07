//! Building the Jobs that run `lifeboat agent …`, and reading their results back from Pod status.
//!
//! Secrets reach the agent only as `secretKeyRef` environment variables: the operator never reads a
//! password, and nothing secret is in a Job's arguments.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PersistentVolumeClaimVolumeSource, Pod, PodSpec, PodTemplateSpec,
    SecretKeySelector, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::agent::result::AgentResult;
use crate::api::backup_policy::{BackupPolicySpec, DumpFormat};
use crate::api::common::{JobTemplate, SecretKeyRef};

pub const POLICY_LABEL: &str = "lifeboat.dev/policy";
pub const BACKUP_LABEL: &str = "lifeboat.dev/backup";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Where a files source's PersistentVolumeClaim is mounted in the agent's Pod.
const DATA_MOUNT: &str = "/data";

/// What the agent Job needs to know besides the policy.
pub struct AgentJob<'a> {
    pub name: String,
    pub namespace: &'a str,
    pub owner: OwnerReference,
    pub labels: BTreeMap<String, String>,
    pub image: &'a str,
    pub command: &'a str,
}

fn secret_env(name: &str, secret: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn plain_env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// The agent arguments, environment and volumes for backing up `policy`'s source, tagged so the
/// snapshots can be found by policy, namespace and Backup.
pub fn backup_invocation(
    policy_name: &str,
    namespace: &str,
    backup_name: &str,
    policy: &BackupPolicySpec,
) -> (Vec<String>, Vec<EnvVar>, Vec<Volume>, Vec<VolumeMount>) {
    // A prune or check holds restic's exclusive lock for a while: wait for it rather than fail the slot.
    let mut args: Vec<String> = vec![
        "agent".into(),
        "backup".into(),
        "--retry-lock".into(),
        "10m".into(),
    ];
    let mut env = vec![
        plain_env("RESTIC_REPOSITORY", &policy.repository.restic.repository),
        secret_env("RESTIC_PASSWORD", &policy.repository.restic.password_secret_ref),
    ];
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let source = &policy.source;
    if let Some(postgres) = &source.postgres {
        let c = &postgres.connection;
        args.extend(["--source".into(), "postgres".into()]);
        args.extend([
            "--host".into(),
            c.host.clone(),
            "--port".into(),
            c.port.to_string(),
        ]);
        args.extend([
            "--database".into(),
            c.database.clone(),
            "--user".into(),
            c.user.clone(),
        ]);
        let format = match postgres.format {
            DumpFormat::Custom => "custom",
            DumpFormat::Plain => "plain",
        };
        args.extend(["--pg-format".into(), format.into()]);
        env.push(secret_env("LIFEBOAT_DB_PASSWORD", &c.password_secret_ref));
        if let Some(mode) = &c.ssl_mode {
            env.push(plain_env("PGSSLMODE", mode));
        }
    } else if let Some(mysql) = &source.mysql {
        args.extend(["--source".into(), "mysql".into()]);
        args.extend([
            "--host".into(),
            mysql.host.clone(),
            "--port".into(),
            mysql.port.to_string(),
        ]);
        args.extend([
            "--database".into(),
            mysql.database.clone(),
            "--user".into(),
            mysql.user.clone(),
        ]);
        env.push(secret_env("LIFEBOAT_DB_PASSWORD", &mysql.password_secret_ref));
    } else if let Some(files) = &source.files {
        args.extend(["--source".into(), "files".into()]);
        let path = format!(
            "{DATA_MOUNT}{}",
            if files.path == "/" {
                ""
            } else {
                files.path.as_str()
            }
        );
        args.extend(["--path".into(), path]);
        volumes.push(Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: files.persistent_volume_claim.clone(),
                read_only: Some(true),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "data".into(),
            mount_path: DATA_MOUNT.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    for (key, value) in [
        ("policy", policy_name),
        ("namespace", namespace),
        ("backup", backup_name),
    ] {
        args.extend(["--tag".into(), format!("{key}={value}")]);
    }
    if policy.repository.restic.initialize {
        args.push("--init-repository".into());
    }
    (args, env, volumes, mounts)
}

/// A Job running the agent once (with the template's retries), owned by the object it serves.
pub fn agent_job(
    job: AgentJob<'_>,
    template: Option<&JobTemplate>,
    args: Vec<String>,
    env: Vec<EnvVar>,
    env_from: Vec<k8s_openapi::api::core::v1::EnvFromSource>,
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
) -> Job {
    let template = template.cloned().unwrap_or_default();
    let image = template.image.clone().unwrap_or_else(|| job.image.to_owned());
    let container = Container {
        name: "agent".into(),
        image: Some(image),
        image_pull_policy: template.image_pull_policy.clone(),
        command: Some(vec![job.command.to_owned()]),
        args: Some(args),
        env: Some(env),
        env_from: (!env_from.is_empty()).then_some(env_from),
        resources: template.resources.clone(),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        // The agent writes its JSON result here; if it dies before that, the log tail explains why.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(job.name),
            namespace: Some(job.namespace.to_owned()),
            labels: Some(job.labels.clone()),
            owner_references: Some(vec![job.owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(template.backoff_limit.unwrap_or(1)),
            active_deadline_seconds: template.active_deadline_seconds,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(job.labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![container],
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    node_selector: (!template.node_selector.is_empty()).then_some(template.node_selector),
                    tolerations: (!template.tolerations.is_empty()).then_some(template.tolerations),
                    security_context: template.security_context,
                    service_account_name: template.service_account_name,
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// How a Job ended, if it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Running,
    Succeeded,
    Failed,
}

pub fn job_outcome(job: &Job) -> JobOutcome {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    let has =
        |type_: &str| conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"));
    if has("Complete") {
        JobOutcome::Succeeded
    } else if has("Failed") {
        JobOutcome::Failed
    } else {
        JobOutcome::Running
    }
}

/// What the newest finished agent container said: its JSON result, or (when it died before writing
/// one) the tail of its log that `FallbackToLogsOnError` put in the termination message.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentReport {
    Result(Box<AgentResult>),
    Unstructured(String),
}

pub fn newest_agent_report(pods: &[Pod]) -> Option<AgentReport> {
    let mut finished: Vec<_> = pods
        .iter()
        .flat_map(|pod| {
            pod.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten()
        })
        .filter(|status| status.name == "agent")
        .filter_map(|status| status.state.as_ref().and_then(|s| s.terminated.clone()))
        .collect();
    finished.sort_by_key(|terminated| terminated.finished_at.clone().map(|t| t.0));
    let newest = finished.pop()?;
    let message = newest.message.unwrap_or_default();
    match serde_json::from_str::<AgentResult>(message.trim()) {
        Ok(result) => Some(AgentReport::Result(Box::new(result))),
        Err(_) if message.trim().is_empty() => Some(AgentReport::Unstructured(format!(
            "the agent exited with code {} without a result{}",
            newest.exit_code,
            newest.reason.map(|r| format!(" ({r})")).unwrap_or_default()
        ))),
        Err(_) => Some(AgentReport::Unstructured(last_line(&message))),
    }
}

fn last_line(text: &str) -> String {
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim();
    line.chars().take(300).collect()
}
