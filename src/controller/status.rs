//! Writing status: by server-side apply of the whole status with one field manager, and only when it
//! changed (a controller that reacts to its own identical writes spins forever).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::events::publish;
use super::{Context, ReconcileError};
use crate::conditions::{self, set_health, Health};

/// A kind's status as the shared helpers see it: conditions and the generation they describe.
pub trait ReportedStatus: Serialize + PartialEq + Clone + Default {
    fn conditions(&self) -> &[Condition];
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    fn observed_generation(&self) -> Option<i64>;
}

/// An object whose status a controller writes.
pub trait WithStatus: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug {
    type Status: ReportedStatus;
    fn current_status(&self) -> Option<&Self::Status>;
}

macro_rules! reported_status {
    ($($kind:ty => $status:ty),* $(,)?) => {$(
        impl ReportedStatus for $status {
            fn conditions(&self) -> &[Condition] {
                &self.conditions.0
            }
            fn conditions_mut(&mut self) -> &mut Vec<Condition> {
                &mut self.conditions.0
            }
            fn observed_generation(&self) -> Option<i64> {
                self.observed_generation
            }
        }
        impl WithStatus for $kind {
            type Status = $status;
            fn current_status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
        }
    )*};
}

reported_status! {
    crate::api::Backup => crate::api::backup::BackupStatus,
    crate::api::BackupPolicy => crate::api::backup_policy::BackupPolicyStatus,
    crate::api::Restore => crate::api::restore::RestoreStatus,
    crate::api::RestoreDrill => crate::api::restore_drill::RestoreDrillStatus,
    crate::api::Cutover => crate::api::cutover::CutoverStatus,
}

/// Needs a person: `status` with Stalled=True (`reason`, `message`) is written, and a Warning Event is
/// published the first time this message is reported (not on every requeue while it stays so).
pub async fn report_stalled<K: WithStatus>(
    ctx: &Context,
    api: &Api<K>,
    object: &K,
    mut status: K::Status,
    reason: &'static str,
    message: String,
    now: &Time,
) -> Result<K::Status, ReconcileError> {
    let current = object.current_status().cloned().unwrap_or_default();
    let first_time = conditions::find(current.conditions(), conditions::STALLED)
        .is_none_or(|c| c.status != "True" || c.message != message);
    let generation = status.observed_generation();
    set_health(
        status.conditions_mut(),
        Health::Stalled {
            reason,
            message: message.clone(),
        },
        generation,
        now,
    );
    write_status(api, object, Some(&current), &status, &ctx.settings.manager_name).await?;
    if first_time {
        publish(ctx, object, EventType::Warning, reason, message).await;
    }
    Ok(status)
}

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
