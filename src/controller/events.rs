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
        match recorder.publish(&event, &reference).await {
            Ok(()) => {}
            // The object goes with its namespace: nobody will read this Event, and a warning per
            // object of a deleted namespace would bury the log lines that matter.
            Err(error) if in_terminating_namespace(&error) => {
                tracing::debug!(%error, "no Event in a terminating namespace");
            }
            Err(error) => tracing::warn!(%error, "could not publish an Event"),
        }
    });
}

fn in_terminating_namespace(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.details.as_ref().is_some_and(|details| {
            details
                .causes
                .iter()
                .any(|cause| cause.reason == "NamespaceTerminating")
        }),
        _ => false,
    }
}
