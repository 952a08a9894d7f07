//! Writing status: by server-side apply of the whole status with one field manager, and only when it
//! changed (a controller that reacts to its own identical writes spins forever).

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ReconcileError;

pub async fn write_status<K, S>(
    api: &Api<K>,
    object: &K,
    current: Option<&S>,
    desired: &S,
    manager: &str,
) -> Result<(), ReconcileError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(desired) {
        return Ok(());
    }
    let name = object.meta().name.clone().unwrap_or_default();
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": desired,
    });
    match api
        .patch_status(&name, &PatchParams::apply(manager).force(), &Patch::Apply(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // Deleted while we reconciled a cached copy: nothing left to report on.
        Err(kube::Error::Api(response)) if response.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// A short, stable name for a child object: `<parent>-<suffix>`, shortened with a hash when the parent's
/// name would push it past `max` characters (Job names become a label value, limited to 63).
pub fn child_name(parent: &str, suffix: &str, max: usize) -> String {
    let full = format!("{parent}-{suffix}");
    if full.len() <= max {
        return full;
    }
    use sha2::{Digest, Sha256};
    let hash = hex::encode(&Sha256::digest(parent.as_bytes())[..4]);
    let keep = max.saturating_sub(suffix.len() + hash.len() + 2);
    let prefix: String = parent.chars().take(keep).collect();
    format!("{}-{hash}-{suffix}", prefix.trim_end_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::child_name;

    #[test]
    fn long_parents_get_a_short_stable_unique_name() {
        assert_eq!(
            child_name("hotel-db-1767225600", "backup", 63),
            "hotel-db-1767225600-backup"
        );
        let long = "a".repeat(80);
        let name = child_name(&long, "backup", 63);
        assert!(name.len() <= 63, "{name}");
        assert_eq!(name, child_name(&long, "backup", 63));
        assert_ne!(name, child_name(&format!("{long}b"), "backup", 63));
    }
}
