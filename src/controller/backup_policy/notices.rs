//! Which of a reconcile's notices go to the policy's webhook, and the guard against telling twice.

use kube::{Api, ResourceExt};

use super::Notice;
use crate::api::BackupPolicy;
use crate::controller::notifications::Announcement;
use crate::controller::ReconcileError;

/// Whether the watch cache's copy of the policy is older than the API's (its status lacks our last
/// write). Read only before notifying, where acting on an old status means telling a person twice.
pub async fn cache_lags(policies: &Api<BackupPolicy>, cached: &BackupPolicy) -> Result<bool, ReconcileError> {
    let fresh = policies.get_opt(&cached.name_any()).await?;
    Ok(fresh.is_some_and(|fresh| fresh.metadata.resource_version != cached.metadata.resource_version))
}

/// The chosen notices as announcements for the policy's webhook (none without one).
pub fn announcements(policy: &BackupPolicy, notices: Vec<Notice>) -> Vec<Announcement> {
    let Some(notifications) = &policy.spec.notifications else {
        return Vec::new();
    };
    notices
        .into_iter()
        .filter(|n| notifications.events.contains(&n.event))
        .map(|notice| Announcement {
            event: format!("{:?}", notice.event),
            headline: notice.headline,
            detail: notice.detail,
        })
        .collect()
}
