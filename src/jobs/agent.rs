//! Jobs running `lifeboat agent …`: what the agent is told (an [`Invocation`]) and the Job around it.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, EnvVar, LocalObjectReference, PersistentVolumeClaimVolumeSource, PodSpec,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::env::{plain_env, restic_env, secret_env};
use super::hardening::{self, SCRATCH_MOUNT};
use super::{data_path, run_once_job, RunLimits, AGENT_CONTAINER, DATA_MOUNT};
use crate::api::backup_policy::{BackupPolicySpec, DumpFormat, ResticRepository};
use crate::api::common::JobTemplate;

/// Where a repository's PersistentVolumeClaim is mounted (restic needs it writable even to read: locks).
pub const REPOSITORY_MOUNT: &str = "/repository";
const REPOSITORY_VOLUME: &str = "repository";

/// What the agent Job needs to know besides the policy.
pub struct AgentJob<'a> {
    pub name: String,
    pub namespace: &'a str,
    pub owner: OwnerReference,
    pub labels: BTreeMap<String, String>,
    pub image: &'a str,
    pub command: &'a str,
    /// Pull secrets when the template names none (the operator's `--agent-image-pull-secrets`).
    pub image_pull_secrets: &'a [String],
}

/// One run of the agent: its arguments, environment and the volumes it needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Invocation {
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub volumes: Vec<Volume>,
    pub mounts: Vec<VolumeMount>,
}

impl Invocation {
    /// `lifeboat agent <command> …` with the repository's environment (and its claim, if any).
    pub fn against_repository(command: &str, restic: &ResticRepository) -> Self {
        let mut invocation = Self::opening(restic);
        invocation.args = vec!["agent".into(), command.into()];
        invocation
    }

    /// What any Job that opens the repository needs: its environment and, for a repository on a
    /// PersistentVolumeClaim, the claim mounted at /repository.
    pub fn opening(restic: &ResticRepository) -> Self {
        let mut invocation = Self {
            env: restic_env(restic),
            ..Default::default()
        };
        if let Some(claim) = &restic.persistent_volume_claim {
            invocation.volumes.push(Volume {
                name: REPOSITORY_VOLUME.into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: None,
                }),
                ..Default::default()
            });
            invocation.mounts.push(VolumeMount {
                name: REPOSITORY_VOLUME.into(),
                mount_path: REPOSITORY_MOUNT.into(),
                ..Default::default()
            });
        }
        invocation
    }

    /// Mounts a PersistentVolumeClaim at `/data`, read-only for backups, writable for restores.
    pub fn mount_claim(&mut self, claim: &str, read_only: bool) {
        self.volumes.push(Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.to_owned(),
                read_only: Some(read_only),
            }),
            ..Default::default()
        });
        self.mounts.push(VolumeMount {
            name: "data".into(),
            mount_path: DATA_MOUNT.into(),
            read_only: read_only.then_some(true),
            ..Default::default()
        });
    }

    pub fn flag(&mut self, flag: &str, value: impl Into<String>) {
        self.args.extend([flag.to_owned(), value.into()]);
    }
}

/// The agent invocation that backs up `policy`'s source, tagged so the snapshots can be found by
/// policy, namespace and Backup.
pub fn backup_invocation(
    policy_name: &str,
    namespace: &str,
    backup_name: &str,
    policy: &BackupPolicySpec,
) -> Invocation {
    let mut invocation = Invocation::against_repository("backup", &policy.repository.restic);
    // A prune or check holds restic's exclusive lock for a while: wait for it rather than fail the slot.
    invocation.flag("--retry-lock", "10m");
    let source = &policy.source;
    if let Some(postgres) = &source.postgres {
        let c = &postgres.connection;
        invocation.flag("--source", "postgres");
        invocation.flag("--host", &c.host);
        invocation.flag("--port", c.port.to_string());
        invocation.flag("--database", &c.database);
        invocation.flag("--user", &c.user);
        let format = match postgres.format {
            DumpFormat::Custom => "custom",
            DumpFormat::Plain => "plain",
        };
        invocation.flag("--pg-format", format);
        invocation
            .env
            .push(secret_env("LIFEBOAT_DB_PASSWORD", &c.password_secret_ref));
        if let Some(mode) = &c.ssl_mode {
            invocation.env.push(plain_env("PGSSLMODE", mode));
        }
    } else if let Some(mysql) = &source.mysql {
        invocation.flag("--source", "mysql");
        invocation.flag("--host", &mysql.host);
        invocation.flag("--port", mysql.port.to_string());
        invocation.flag("--database", &mysql.database);
        invocation.flag("--user", &mysql.user);
        invocation
            .env
            .push(secret_env("LIFEBOAT_DB_PASSWORD", &mysql.password_secret_ref));
    } else if let Some(files) = &source.files {
        invocation.flag("--source", "files");
        invocation.flag("--path", data_path(&files.path));
        invocation.mount_claim(&files.persistent_volume_claim, true);
    }
    for (key, value) in [
        ("policy", policy_name),
        ("namespace", namespace),
        ("backup", backup_name),
    ] {
        invocation.flag("--tag", format!("{key}={value}"));
    }
    if policy.repository.restic.initialize {
        invocation.args.push("--init-repository".into());
    }
    invocation
}

/// Records why a backup was made on its snapshot, as tags `trigger=…` and `reason=…`, so `restic
/// snapshots` tells a pre-cutover snapshot from a nightly one without the cluster. Commas become `;`
/// and spaces `_`.
pub fn tag_why(invocation: &mut Invocation, trigger: &str, reason: Option<&str>) {
    invocation.flag("--tag", format!("trigger={trigger}"));
    if let Some(reason) = reason.map(str::trim).filter(|r| !r.is_empty()) {
        // restic splits a --tag value at commas, and a tag without spaces is one shell word on the day
        // someone filters by it.
        let word: String = reason
            .chars()
            .map(|c| match c {
                ',' => ';',
                c if c.is_whitespace() => '_',
                c => c,
            })
            .collect();
        invocation.flag("--tag", format!("reason={word}"));
    }
}

/// A Job running the agent once (with the template's retries), owned by the object it serves.
pub fn agent_job(
    job: AgentJob<'_>,
    template: Option<&JobTemplate>,
    invocation: Invocation,
    env_from: Vec<EnvFromSource>,
) -> Job {
    let Invocation {
        args,
        env,
        volumes,
        mounts,
    } = invocation;
    let template = template.cloned().unwrap_or_default();
    let image = template.image.clone().unwrap_or_else(|| job.image.to_owned());
    let (scratch, scratch_mount) = hardening::scratch_volume();
    let mut env = env;
    // restic keeps its cache under $HOME by default, which the read-only root does not allow.
    env.push(plain_env(
        "RESTIC_CACHE_DIR",
        format!("{SCRATCH_MOUNT}/restic-cache"),
    ));
    env.push(plain_env("TMPDIR", SCRATCH_MOUNT));
    let mut mounts = mounts;
    mounts.push(scratch_mount);
    let mut volumes = volumes;
    volumes.push(scratch);
    let container = Container {
        name: AGENT_CONTAINER.into(),
        image: Some(image),
        image_pull_policy: template.image_pull_policy.clone(),
        command: Some(vec![job.command.to_owned()]),
        args: Some(args),
        env: Some(env),
        env_from: (!env_from.is_empty()).then_some(env_from),
        resources: template.resources.clone(),
        volume_mounts: Some(mounts),
        security_context: Some(
            template
                .container_security_context
                .unwrap_or_else(|| hardening::restricted_container(true)),
        ),
        // The agent writes its JSON result here; if it dies before that, the log tail explains why.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    let limits = RunLimits {
        backoff_limit: template.backoff_limit.unwrap_or(1),
        active_deadline_seconds: template.active_deadline_seconds,
    };
    let image_pull_secrets = if template.image_pull_secrets.is_empty() {
        job.image_pull_secrets
            .iter()
            .map(|name| LocalObjectReference { name: name.clone() })
            .collect()
    } else {
        template.image_pull_secrets
    };
    let pod = PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        node_selector: (!template.node_selector.is_empty()).then_some(template.node_selector),
        tolerations: (!template.tolerations.is_empty()).then_some(template.tolerations),
        security_context: Some(
            template
                .security_context
                .unwrap_or_else(hardening::restricted_pod),
        ),
        image_pull_secrets: (!image_pull_secrets.is_empty()).then_some(image_pull_secrets),
        service_account_name: template.service_account_name,
        ..Default::default()
    };
    run_once_job(&job.name, job.namespace, job.labels, job.owner, limits, pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::backup_policy::BackupPolicySpec;

    fn policy(source: serde_json::Value) -> BackupPolicySpec {
        serde_json::from_value(serde_json::json!({
            "schedule": "0 2 * * *",
            "source": source,
            "repository": {"restic": {
                "repository": "s3:https://s3.example/hotel",
                "passwordSecretRef": {"name": "restic", "key": "password"},
                "envFrom": [{"secretRef": {"name": "s3-credentials"}}]
            }}
        }))
        .expect("a valid BackupPolicy spec")
    }

    fn job_for(spec: &BackupPolicySpec) -> Job {
        let invocation = backup_invocation("hotel-db", "hotel", "hotel-db-1767225600", spec);
        agent_job(
            AgentJob {
                name: "hotel-db-1767225600-backup".into(),
                namespace: "hotel",
                owner: OwnerReference::default(),
                labels: [("lifeboat.dev/backup".to_owned(), "hotel-db-1767225600".to_owned())].into(),
                image: "lifeboat:test",
                command: "lifeboat",
                image_pull_secrets: &[],
            },
            spec.job_template.as_ref(),
            invocation,
            spec.repository.restic.env_from.clone(),
        )
    }

    #[test]
    fn a_database_backup_is_tagged_and_carries_no_secret_value() {
        let spec = policy(serde_json::json!({"postgres": {
            "host": "db.hotel.svc", "database": "hotel", "user": "backup",
            "passwordSecretRef": {"name": "db", "key": "password"}
        }}));
        let job = job_for(&spec);
        let pod = job.spec.as_ref().unwrap().template.spec.clone().unwrap();
        let container = &pod.containers[0];
        let args = container.args.clone().unwrap().join(" ");
        assert!(
            args.starts_with("agent backup --retry-lock 10m --source postgres"),
            "{args}"
        );
        for tag in ["policy=hotel-db", "namespace=hotel", "backup=hotel-db-1767225600"] {
            assert!(args.contains(&format!("--tag {tag}")), "{args}");
        }
        let env = container.env.clone().unwrap();
        let secret_names = ["RESTIC_PASSWORD", "LIFEBOAT_DB_PASSWORD"];
        for variable in &env {
            assert_eq!(
                secret_names.contains(&variable.name.as_str()),
                variable.value.is_none(),
                "{} is a secret exactly when it has no plain value",
                variable.name
            );
        }
        assert_eq!(container.env_from.as_ref().map(Vec::len), Some(1));
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(job.spec.unwrap().backoff_limit, Some(1), "one retry by default");
        let volumes = pod.volumes.unwrap();
        assert_eq!(volumes.len(), 1, "only the scratch emptyDir");
        assert!(volumes[0].empty_dir.is_some());
    }

    #[test]
    fn by_default_the_agent_passes_pod_security_restricted_with_a_read_only_root() {
        let spec = policy(serde_json::json!({"postgres": {
            "host": "db", "database": "hotel", "user": "backup",
            "passwordSecretRef": {"name": "db", "key": "password"}
        }}));
        let pod = job_for(&spec).spec.unwrap().template.spec.unwrap();
        let container = &pod.containers[0];
        let security = container.security_context.clone().unwrap();
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.capabilities.unwrap().drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(security.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let pod_security = pod.security_context.unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true));
        // The only writable place is the emptyDir, and restic's cache and temporary files go there.
        let mounts = container.volume_mounts.clone().unwrap();
        assert!(mounts.iter().any(|m| m.mount_path == "/tmp/lifeboat"));
        let env = container.env.clone().unwrap();
        let value = |name: &str| env.iter().find(|e| e.name == name).and_then(|e| e.value.clone());
        assert_eq!(
            value("RESTIC_CACHE_DIR").as_deref(),
            Some("/tmp/lifeboat/restic-cache")
        );
        assert_eq!(value("TMPDIR").as_deref(), Some("/tmp/lifeboat"));
        assert!(pod.image_pull_secrets.is_none());
    }

    #[test]
    fn why_a_backup_was_made_is_tagged_in_one_piece() {
        let mut invocation = Invocation::default();
        tag_why(
            &mut invocation,
            "Manual",
            Some("before release 2.4, with the new rooms"),
        );
        assert_eq!(
            invocation.args,
            [
                "--tag",
                "trigger=Manual",
                "--tag",
                "reason=before_release_2.4;_with_the_new_rooms"
            ]
        );
        let mut scheduled = Invocation::default();
        tag_why(&mut scheduled, "Scheduled", Some("  "));
        assert_eq!(scheduled.args, ["--tag", "trigger=Scheduled"]);
    }

    #[test]
    fn a_repository_on_a_claim_is_mounted_where_the_repository_path_points() {
        let mut spec =
            policy(serde_json::json!({"files": {"persistentVolumeClaim": "uploads", "path": "/media"}}));
        spec.repository.restic.repository = "/repository/hotel".into();
        spec.repository.restic.persistent_volume_claim = Some("backups".into());
        let pod = job_for(&spec).spec.unwrap().template.spec.unwrap();
        let volumes = pod.volumes.unwrap();
        let claims: Vec<_> = volumes
            .iter()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|c| (c.claim_name.as_str(), c.read_only))
            .collect();
        assert_eq!(claims, [("backups", None), ("uploads", Some(true))]);
        let mounts = pod.containers[0].volume_mounts.clone().unwrap();
        let repository = mounts.iter().find(|m| m.name == "repository").unwrap();
        assert_eq!(
            (repository.mount_path.as_str(), repository.read_only),
            ("/repository", None),
            "restic writes locks even to read"
        );
    }

    #[test]
    fn the_users_security_context_and_pull_secrets_replace_the_defaults() {
        let mut spec = policy(serde_json::json!({"files": {"persistentVolumeClaim": "uploads"}}));
        spec.job_template = Some(
            serde_json::from_value(serde_json::json!({
                "securityContext": {"runAsUser": 33, "fsGroup": 33},
                "containerSecurityContext": {"readOnlyRootFilesystem": false},
                "imagePullSecrets": [{"name": "registry"}]
            }))
            .unwrap(),
        );
        let pod = job_for(&spec).spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.security_context.unwrap().run_as_user, Some(33));
        let security = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(false));
        assert_eq!(security.capabilities, None, "replaced as a whole, not merged");
        assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "registry");
    }

    #[test]
    fn a_files_backup_mounts_its_claim_read_only() {
        let spec =
            policy(serde_json::json!({"files": {"persistentVolumeClaim": "uploads", "path": "/media"}}));
        let pod = job_for(&spec).spec.unwrap().template.spec.unwrap();
        let args = pod.containers[0].args.clone().unwrap().join(" ");
        assert!(args.contains("--source files --path /data/media"), "{args}");
        let volume = &pod.volumes.unwrap()[0];
        let claim = volume.persistent_volume_claim.as_ref().unwrap();
        assert_eq!(
            (claim.claim_name.as_str(), claim.read_only),
            ("uploads", Some(true))
        );
        let mount = &pod.containers[0].volume_mounts.as_ref().unwrap()[0];
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            ("/data", Some(true))
        );
    }
}
