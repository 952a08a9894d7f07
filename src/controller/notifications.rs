//! The reconcilers' one way to notify: queue what happened in the object's status, try what is due, and
//! turn a notification given up into a Warning Event (see [`crate::notify::delivery`]).

use jiff::Timestamp;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::events::publish;
use super::Context;
use crate::api::notifications::{NotificationRecord, Webhook};
use crate::notify::{delivery, message};

/// Something worth telling a person, for any kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    /// The event name, as the kind's `spec.notifications.events` spells it.
    pub event: String,
    pub headline: String,
    pub detail: String,
}

/// Queues `announcements` (already filtered by the spec's events) in `records` and tries every due one.
/// Returns when the next retry is due, for the reconcile's requeue.
pub async fn notify<K>(
    ctx: &Context,
    object: &K,
    webhook: Option<&Webhook>,
    records: &mut Vec<NotificationRecord>,
    announcements: Vec<Announcement>,
) -> Option<Timestamp>
where
    K: Resource<DynamicType = ()>,
{
    let namespace = object.namespace().unwrap_or_default();
    if webhook.is_some() {
        let now = Timestamp::now();
        for announcement in announcements {
            let text = message(
                &K::kind(&()),
                &namespace,
                &object.name_any(),
                &announcement.headline,
                &announcement.detail,
            );
            delivery::enqueue(records, &announcement.event, text, now);
        }
    }
    let given_up = delivery::deliver_due(&ctx.client, &namespace, webhook, records).await;
    for note in given_up {
        publish(ctx, object, EventType::Warning, "NotificationFailed", note).await;
    }
    delivery::next_due(records)
}
