//! Environment variables of Job containers: plain values, Secret references (never values), and the
//! restic repository's pair every agent Job carries.

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};

use crate::api::backup_policy::ResticRepository;
use crate::api::common::SecretKeyRef;

/// A variable filled by the kubelet from a Secret key; a missing key fails the Pod rather than passing
/// an empty password.
pub fn secret_env(name: &str, secret: &SecretKeyRef) -> EnvVar {
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

pub fn plain_env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// `RESTIC_REPOSITORY` and `RESTIC_PASSWORD` (by reference). Backend credentials come from the
/// repository's `envFrom`, which [`super::agent_job`] adds.
pub fn restic_env(restic: &ResticRepository) -> Vec<EnvVar> {
    vec![
        plain_env("RESTIC_REPOSITORY", &restic.repository),
        secret_env("RESTIC_PASSWORD", &restic.password_secret_ref),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restic_password_is_a_reference_never_a_value() {
        let restic = ResticRepository {
            repository: "/repo".into(),
            password_secret_ref: SecretKeyRef {
                name: "restic".into(),
                key: "password".into(),
            },
            persistent_volume_claim: None,
            env_from: Vec::new(),
            initialize: false,
        };
        let env = restic_env(&restic);
        assert_eq!(env[0].value.as_deref(), Some("/repo"));
        assert_eq!(env[1].name, "RESTIC_PASSWORD");
        assert!(env[1].value.is_none());
        let selector = env[1]
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .unwrap();
        assert_eq!(
            (selector.name.as_str(), selector.key.as_str()),
            ("restic", "password")
        );
        assert_eq!(selector.optional, Some(false));
    }
}
