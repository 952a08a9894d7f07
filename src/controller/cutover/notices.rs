//! A Cutover's notifications: queued in status by the save that records the moment (awaiting approval,
//! NO-GO, rollback started and finished, succeeded), then sent after it, so a restart resends rather
//! than forgets; retried with backoff like every kind's (see [`crate::notify::delivery`]).

use jiff::Timestamp;
use kube::runtime::events::EventType;

use super::Run;
use crate::api::cutover::{CutoverPhase, APPROVED_BY_ANNOTATION};
use crate::api::notifications::CutoverEvent;
use crate::controller::ReconcileError;
use crate::notify::{delivery, message};

/// Queues `event` in status when the spec asks for it; the next save records it.
pub(super) fn announce(run: &mut Run<'_>, event: CutoverEvent, headline: &str, detail: String) {
    let chosen = run
        .cutover
        .spec
        .notifications
        .as_ref()
        .is_some_and(|n| n.events.contains(&event));
    if !chosen {
        return;
    }
    let text = message("Cutover", &run.namespace, &run.name(), headline, &detail);
    delivery::enqueue(
        &mut run.status.notifications,
        &format!("{event:?}"),
        text,
        Timestamp::now(),
    );
}

/// The event and headline for how a Cutover ended.
pub(super) fn ending(phase: CutoverPhase, message: &str) -> Option<(CutoverEvent, &'static str)> {
    match phase {
        CutoverPhase::Succeeded => Some((CutoverEvent::Succeeded, "SUCCEEDED")),
        CutoverPhase::RolledBack => Some((CutoverEvent::RolledBack, "ROLLED BACK")),
        CutoverPhase::Failed if message.starts_with("NO-GO") => Some((CutoverEvent::NoGo, "is NO-GO")),
        CutoverPhase::Failed => Some((CutoverEvent::Failed, "FAILED")),
        _ => None,
    }
}

/// What a person must do to say GO, for the AwaitingApproval notification.
pub(super) fn how_to_approve(namespace: &str, name: &str, timeout: Option<&str>) -> String {
    let deadline = timeout
        .map(|t| format!(" Without a GO within {t} it ends as NO-GO."))
        .unwrap_or_default();
    format!(
        "GO with: kubectl lifeboat approve -n {namespace} {name} [--group <group>] [--reason <why>] \
         (or annotate {APPROVED_BY_ANNOTATION}=<your user name>).{deadline}"
    )
}

/// Tries the due notifications and records the outcome. Returns when the next retry is due.
pub(super) async fn deliver(run: &mut Run<'_>) -> Result<Option<Timestamp>, ReconcileError> {
    let now = Timestamp::now();
    if !run.status.notifications.iter().any(|r| delivery::is_due(r, now)) {
        return Ok(delivery::next_due(&run.status.notifications));
    }
    let webhook = run.cutover.spec.notifications.as_ref().map(|n| n.webhook.clone());
    let given_up = delivery::deliver_due(
        &run.ctx.client,
        &run.namespace,
        webhook.as_ref(),
        &mut run.status.notifications,
    )
    .await;
    // Saving recomputes the conditions from `outcome`, known only in the reconcile that finished the
    // Cutover: keep the message they carry now, so recording a delivery does not rewrite a finished
    // Cutover's Ready message.
    if run.outcome.is_none() {
        run.outcome = crate::conditions::find(&run.status.conditions.0, crate::conditions::READY)
            .map(|ready| ready.message.clone());
    }
    run.save().await?;
    for note in given_up {
        run.event(EventType::Warning, "NotificationFailed", note).await;
    }
    Ok(delivery::next_due(&run.status.notifications))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_preflight_notifies_as_no_go_and_a_broken_rollback_as_failed() {
        let no_go = ending(
            CutoverPhase::Failed,
            "NO-GO: preflight/db failed; traffic was not touched",
        );
        assert_eq!(no_go, Some((CutoverEvent::NoGo, "is NO-GO")));
        let failed = ending(CutoverPhase::Failed, "rollback could not restore the database");
        assert_eq!(failed.map(|f| f.0), Some(CutoverEvent::Failed));
        assert_eq!(ending(CutoverPhase::Stabilizing, ""), None);
    }

    #[test]
    fn the_approval_notice_says_how_to_give_the_go() {
        let text = how_to_approve("hotel", "green", Some("30m"));
        assert!(text.contains("kubectl lifeboat approve -n hotel green"), "{text}");
        assert!(text.contains("within 30m"), "{text}");
    }
}
