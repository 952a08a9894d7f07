//! Events: what a person sees in `kubectl describe` and `kubectl get events`.

use kube::runtime::events::{Event, EventType};
use kube::Resource;

use super::Context;

/// Publishes an Event about `object` in the background. Events are best effort and must not hold up a
/// reconcile: at a busy slot, waiting for each POST doubled the time from the slot to the last Backup.
pub async fn publish<K>(ctx: &Context, object: &K, type_: EventType, reason: &str, note: String)
where
    K: Resource<DynamicType = ()>,
{
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: reason.to_owned(),
        secondary: None,
    };
    let recorder = ctx.recorder.clone();
    let reference = object.object_ref(&());
    tokio::spawn(async move {
        if let Err(error) = recorder.publish(&event, &reference).await {
            tracing::warn!(%error, "could not publish an Event");
        }
    });
}
