//! Creating and deleting the objects a controller owns, idempotently: a reconcile may run twice for the
//! same intent (a restart, a requeue), and the second create or delete must be harmless.

use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Creates `object`; true when this call created it, false when one of that name already existed.
pub async fn create_ignoring_existing<K>(api: &Api<K>, object: &K) -> Result<bool, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(response)) if response.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Deletes `name` in the background (its dependents follow); one that is already gone is fine.
pub async fn delete_ignoring_absent<K>(api: &Api<K>, name: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    delete_with(api, name, &DeleteParams::background()).await
}

/// Deletes `name` only if it is still the object with `uid`: a newer object that took the same name
/// answers 409 and is left alone, like an absent one.
pub async fn delete_exactly<K>(api: &Api<K>, name: &str, uid: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match delete_with(api, name, &params).await {
        Err(kube::Error::Api(response)) if response.code == 409 => Ok(()),
        other => other,
    }
}

async fn delete_with<K>(api: &Api<K>, name: &str, params: &DeleteParams) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(response)) if response.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}
