//! The scratch database's objects: a Secret with a generated password, a Pod running the server and a
//! Service in front of it (deterministic names, so a restarted operator finds the same objects), and the
//! connection the agent uses to reach it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodSecurityContext, PodSpec,
    Probe, Secret, SecurityContext, Service, ServicePort, ServiceSpec, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;

use crate::api::common::{ScratchDatabase, ScratchEngine, SecretKeyRef};
use crate::api::restore::ScratchStatus;
use crate::controller::restore::connection::Connection;
use crate::controller::status::child_name;
use crate::jobs::{self, plain_env, secret_env};

pub const PASSWORD_KEY: &str = "password";
pub const COMPONENT: &str = "scratch-database";
/// The `postgres` and `mysql` users of the official server images.
const OFFICIAL_IMAGE_UID: i64 = 999;

/// The names and address of a Restore's scratch server (deterministic, so a restarted operator finds
/// the same objects).
pub fn scratch_status(restore: &str, namespace: &str, spec: &ScratchDatabase) -> ScratchStatus {
    // A Service name is a DNS label: at most 63 characters.
    let name = child_name(restore, "scratch", 63);
    ScratchStatus {
        pod: name.clone(),
        service: name.clone(),
        secret: name.clone(),
        host: format!("{name}.{namespace}.svc"),
        port: spec.port(),
        database: spec.database().to_owned(),
        user: spec.user().to_owned(),
        removed: false,
    }
}

fn metadata(
    name: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    owner: &OwnerReference,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    }
}

/// 32 hex characters from the kernel's CSPRNG: the password exists only in this Secret.
pub fn generate_password() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

pub fn secret(
    scratch: &ScratchStatus,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    owner: &OwnerReference,
    password: &str,
) -> Secret {
    Secret {
        metadata: metadata(&scratch.secret, namespace, labels, owner),
        data: Some([(PASSWORD_KEY.to_owned(), ByteString(password.as_bytes().to_vec()))].into()),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

pub fn pod(
    spec: &ScratchDatabase,
    scratch: &ScratchStatus,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    owner: &OwnerReference,
) -> Pod {
    let password = SecretKeyRef {
        name: scratch.secret.clone(),
        key: PASSWORD_KEY.to_owned(),
    };
    let mut env: Vec<EnvVar> = vec![
        EnvVar {
            name: "POD_IP".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        plain_env("LIFEBOAT_SCRATCH_PORT", scratch.port.to_string()),
    ];
    // The variables the official images' entrypoints read.
    match spec.engine {
        ScratchEngine::Postgres => {
            env.push(secret_env("POSTGRES_PASSWORD", &password));
            env.push(plain_env("POSTGRES_USER", &scratch.user));
            env.push(plain_env("POSTGRES_DB", &scratch.database));
            env.push(plain_env("PGPORT", scratch.port.to_string()));
        }
        ScratchEngine::Mysql => {
            env.push(secret_env("MARIADB_ROOT_PASSWORD", &password));
            env.push(secret_env("MYSQL_ROOT_PASSWORD", &password));
            env.push(plain_env("MARIADB_DATABASE", &scratch.database));
            env.push(plain_env("MYSQL_DATABASE", &scratch.database));
            env.push(plain_env("MARIADB_TCP_PORT", scratch.port.to_string()));
        }
    }
    env.extend(spec.env.iter().cloned());
    let container = Container {
        name: "database".into(),
        image: Some(spec.image().to_owned()),
        command: (!spec.command.is_empty()).then(|| spec.command.clone()),
        args: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("database".into()),
            container_port: scratch.port,
            ..Default::default()
        }]),
        // The official images listen on TCP only after initialisation (their set-up server uses the Unix
        // socket), so an open port means ready for the restore.
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(scratch.port),
                host: None,
            }),
            period_seconds: Some(1),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        resources: spec.resources.clone(),
        security_context: Some(spec.security_context.clone().unwrap_or_else(|| SecurityContext {
            run_as_user: Some(OFFICIAL_IMAGE_UID),
            run_as_group: Some(OFFICIAL_IMAGE_UID),
            ..jobs::restricted_container(false)
        })),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    Pod {
        metadata: metadata(&scratch.pod, namespace, labels, owner),
        spec: Some(PodSpec {
            containers: vec![container],
            // A crashed server fails the restore at once with its log, rather than restarting forever.
            restart_policy: Some("Never".into()),
            // Throwaway data: no reason to wait for a clean shutdown.
            termination_grace_period_seconds: Some(5),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                seccomp_profile: jobs::restricted_pod().seccomp_profile,
                ..Default::default()
            }),
            node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
            tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
            ..Default::default()
        }),
        status: None,
    }
}

pub fn service(
    scratch: &ScratchStatus,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    owner: &OwnerReference,
) -> Service {
    Service {
        metadata: metadata(&scratch.service, namespace, labels, owner),
        spec: Some(ServiceSpec {
            selector: Some(labels.clone()),
            ports: Some(vec![ServicePort {
                name: Some("database".into()),
                port: scratch.port,
                target_port: Some(IntOrString::Int(scratch.port)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// How the agent reaches the scratch server: its Service, with the generated password by reference.
pub fn scratch_connection(engine: ScratchEngine, scratch: &ScratchStatus) -> Connection {
    Connection::Database {
        engine,
        host: scratch.host.clone(),
        port: scratch.port,
        database: scratch.database.clone(),
        user: scratch.user.clone(),
        password: SecretKeyRef {
            name: scratch.secret.clone(),
            key: PASSWORD_KEY.to_owned(),
        },
        ssl_mode: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_server_gets_the_official_images_variables_and_a_password_by_reference() {
        let spec: ScratchDatabase = serde_norway::from_str("{engine: postgres}").unwrap();
        let scratch = scratch_status("hotel-db-1767225600", "hotel", &spec);
        assert_eq!(scratch.host, "hotel-db-1767225600-scratch.hotel.svc");
        assert_eq!(
            (scratch.port, scratch.database.as_str(), scratch.user.as_str()),
            (5432, "restore", "postgres")
        );
        let owner = OwnerReference {
            name: "r".into(),
            ..Default::default()
        };
        let labels = BTreeMap::from([("lifeboat.dev/restore".to_owned(), "r".to_owned())]);
        let pod = pod(&spec, &scratch, "hotel", &labels, &owner);
        let container = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(container.image.as_deref(), Some("postgres:16"));
        assert!(
            container.command.is_none(),
            "the image's own entrypoint by default"
        );
        let env = container.env.as_ref().unwrap();
        let password = env.iter().find(|e| e.name == "POSTGRES_PASSWORD").unwrap();
        assert!(
            password.value.is_none(),
            "never a literal password in the Pod spec"
        );
        assert!(env
            .iter()
            .any(|e| e.name == "POSTGRES_DB" && e.value.as_deref() == Some("restore")));
        let password = generate_password().unwrap();
        assert_eq!(password.len(), 32);
        assert_ne!(password, generate_password().unwrap());
    }
}
