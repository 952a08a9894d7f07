//! Do the Secrets a Job will need exist? Checked before a Job is created: a Job whose Secret is
//! missing sits in CreateContainerConfigError instead of failing, so the owner is told instead, by name
//! (never by value: the operator reads whether a key exists, not what it holds).

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::api::backup_policy::BackupPolicySpec;
use crate::api::common::SecretKeyRef;

/// The Secret keys a backup of `spec` needs, each with what it is for.
pub fn policy_secrets(spec: &BackupPolicySpec) -> Vec<(&'static str, &SecretKeyRef)> {
    let mut needed = vec![("repository password", &spec.repository.restic.password_secret_ref)];
    if let Some(postgres) = &spec.source.postgres {
        needed.push(("database password", &postgres.connection.password_secret_ref));
    }
    if let Some(mysql) = &spec.source.mysql {
        needed.push(("database password", &mysql.password_secret_ref));
    }
    needed
}

/// The first of `needed` that does not exist in `namespace`, as a sentence for status and Events.
pub async fn first_missing_secret(
    client: &Client,
    namespace: &str,
    needed: &[(&str, &SecretKeyRef)],
) -> Result<Option<String>, kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for (what, reference) in needed {
        let secret = secrets.get_opt(&reference.name).await?;
        if let Some(problem) = describe_missing(what, reference, namespace, secret.as_ref()) {
            return Ok(Some(problem));
        }
    }
    Ok(None)
}

fn describe_missing(
    what: &str,
    reference: &SecretKeyRef,
    namespace: &str,
    secret: Option<&Secret>,
) -> Option<String> {
    let Some(secret) = secret else {
        return Some(format!(
            "the {what} Secret {} does not exist in namespace {namespace}",
            reference.name
        ));
    };
    let has_key = secret
        .data
        .as_ref()
        .is_some_and(|d| d.contains_key(&reference.key))
        || secret
            .string_data
            .as_ref()
            .is_some_and(|d| d.contains_key(&reference.key));
    (!has_key).then(|| {
        format!(
            "the {what} Secret {} has no key {:?}",
            reference.name, reference.key
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn reference() -> SecretKeyRef {
        SecretKeyRef {
            name: "db".into(),
            key: "password".into(),
        }
    }

    #[test]
    fn a_missing_secret_or_key_is_named_and_a_present_key_passes() {
        assert_eq!(
            describe_missing("database password", &reference(), "shop", None).as_deref(),
            Some("the database password Secret db does not exist in namespace shop")
        );
        let mut secret = Secret::default();
        assert_eq!(
            describe_missing("database password", &reference(), "shop", Some(&secret)).as_deref(),
            Some("the database password Secret db has no key \"password\"")
        );
        secret.data = Some([("password".to_owned(), ByteString(b"s3cret".to_vec()))].into());
        assert_eq!(
            describe_missing("database password", &reference(), "shop", Some(&secret)),
            None
        );
    }
}
