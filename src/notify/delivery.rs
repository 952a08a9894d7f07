//! Notification delivery with retries: a notification is queued in the object's status as `Pending`,
//! tried at once, and on failure retried with exponential backoff by later reconciles until it is
//! delivered or [`MAX_ATTEMPTS`] have failed. The queue lives in status, so a restart resumes it; each
//! reconcile makes at most one attempt per due notification, so a dead webhook never holds one up for
//! longer than a request's timeout.
//!
//! Delivery is at least once: an operator that dies after a POST and before its status write sends again.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::notifications::{DeliveryState, NotificationRecord, Webhook};

/// Attempts before a notification is given up (about 2.5 minutes of retries with [`FIRST_RETRY`]).
pub const MAX_ATTEMPTS: i32 = 5;
/// The wait after the first failed attempt; each further failure doubles it.
pub const FIRST_RETRY: Duration = Duration::from_secs(10);
/// The longest wait between attempts.
pub const LONGEST_RETRY: Duration = Duration::from_secs(300);
/// Notifications kept in status; the oldest finished ones go first.
pub const KEPT: usize = 10;

/// The wait after `failed_attempts` failed attempts: 10 s, 20 s, 40 s, … up to [`LONGEST_RETRY`].
pub fn retry_delay(failed_attempts: i32) -> Duration {
    let doublings = failed_attempts.saturating_sub(1).clamp(0, 16) as u32;
    FIRST_RETRY.saturating_mul(2u32.pow(doublings)).min(LONGEST_RETRY)
}

/// Queues a notification, due at once, and trims the list to [`KEPT`] (finished ones first, so a pending
/// one is dropped only when the list holds nothing else).
pub fn enqueue(records: &mut Vec<NotificationRecord>, event: &str, message: String, now: Timestamp) {
    records.push(NotificationRecord {
        event: event.to_owned(),
        message,
        time: Time(now),
        state: DeliveryState::Pending,
        attempts: 0,
        last_attempt_time: None,
        next_attempt_time: Some(Time(now)),
        last_error: None,
    });
    while records.len() > KEPT {
        let oldest_finished = records.iter().position(|r| r.state != DeliveryState::Pending);
        records.remove(oldest_finished.unwrap_or(0));
    }
}

/// Whether `record` should be tried now.
pub fn is_due(record: &NotificationRecord, now: Timestamp) -> bool {
    record.state == DeliveryState::Pending && record.next_attempt_time.as_ref().is_none_or(|t| t.0 <= now)
}

/// Records one attempt's outcome: delivered, retried after [`retry_delay`], or given up.
pub fn record_attempt(record: &mut NotificationRecord, outcome: Result<(), String>, now: Timestamp) {
    record.attempts += 1;
    record.last_attempt_time = Some(Time(now));
    match outcome {
        Ok(()) => {
            record.state = DeliveryState::Delivered;
            record.next_attempt_time = None;
        }
        Err(error) => {
            record.last_error = Some(error);
            if record.attempts >= MAX_ATTEMPTS {
                record.state = DeliveryState::GaveUp;
                record.next_attempt_time = None;
            } else {
                let wait = retry_delay(record.attempts);
                record.next_attempt_time = Some(Time(now + wait));
            }
        }
    }
}

/// Gives up every pending notification (its webhook was removed from the spec).
pub fn give_up_pending(records: &mut [NotificationRecord], why: &str) {
    for record in records.iter_mut().filter(|r| r.state == DeliveryState::Pending) {
        record.state = DeliveryState::GaveUp;
        record.next_attempt_time = None;
        record.last_error = Some(why.to_owned());
    }
}

/// When the earliest pending notification is due, for the reconcile's requeue.
pub fn next_due(records: &[NotificationRecord]) -> Option<Timestamp> {
    records
        .iter()
        .filter(|r| r.state == DeliveryState::Pending)
        .filter_map(|r| r.next_attempt_time.as_ref().map(|t| t.0))
        .min()
}

/// Tries every due notification once through `webhook` (none configured: pending ones are given up).
/// Returns a line per notification given up in this call, for a Warning Event.
pub async fn deliver_due(
    client: &kube::Client,
    namespace: &str,
    webhook: Option<&Webhook>,
    records: &mut [NotificationRecord],
) -> Vec<String> {
    let Some(webhook) = webhook else {
        give_up_pending(records, "spec.notifications was removed");
        return Vec::new();
    };
    let mut given_up = Vec::new();
    for record in records.iter_mut() {
        let now = Timestamp::now();
        if !is_due(record, now) {
            continue;
        }
        let outcome = super::send(
            client,
            namespace,
            &webhook.url_secret_ref,
            &super::payload(&record.message),
        )
        .await
        .map_err(|error| error.to_string());
        record_attempt(record, outcome, Timestamp::now());
        if record.state == DeliveryState::GaveUp {
            given_up.push(format!(
                "{} notification not delivered after {} attempts: {}",
                record.event,
                record.attempts,
                record.last_error.as_deref().unwrap_or("unknown error")
            ));
        }
    }
    given_up
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn queued(now: Timestamp) -> Vec<NotificationRecord> {
        let mut records = Vec::new();
        enqueue(&mut records, "Failure", "backup FAILED".into(), now);
        records
    }

    #[test]
    fn the_wait_doubles_from_ten_seconds_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=7).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(retry_delay(i32::MAX), LONGEST_RETRY);
    }

    #[test]
    fn a_queued_notification_is_due_at_once() {
        let now = at("2026-12-03T08:00:00Z");
        let records = queued(now);
        assert!(is_due(&records[0], now));
        assert_eq!(next_due(&records), Some(now));
    }

    #[test]
    fn a_webhook_that_fails_twice_is_retried_with_backoff_and_then_delivered() {
        let mut now = at("2026-12-03T08:00:00Z");
        let mut records = queued(now);
        record_attempt(&mut records[0], Err("the webhook answered HTTP 500".into()), now);
        assert_eq!(records[0].state, DeliveryState::Pending);
        assert!(!is_due(&records[0], now + Duration::from_secs(9)));
        now += Duration::from_secs(10);
        assert!(is_due(&records[0], now));
        record_attempt(&mut records[0], Err("the webhook answered HTTP 500".into()), now);
        assert_eq!(next_due(&records), Some(now + Duration::from_secs(20)));
        now += Duration::from_secs(20);
        record_attempt(&mut records[0], Ok(()), now);
        let record = &records[0];
        assert_eq!((record.state, record.attempts), (DeliveryState::Delivered, 3));
        assert_eq!(record.next_attempt_time, None);
        assert_eq!(next_due(&records), None);
    }

    #[test]
    fn a_notification_is_given_up_after_the_last_attempt_fails() {
        let now = at("2026-12-03T08:00:00Z");
        let mut records = queued(now);
        for _ in 0..MAX_ATTEMPTS {
            assert_eq!(records[0].state, DeliveryState::Pending);
            record_attempt(&mut records[0], Err("connection failed".into()), now);
        }
        assert_eq!(records[0].state, DeliveryState::GaveUp);
        assert_eq!(records[0].last_error.as_deref(), Some("connection failed"));
        assert!(!is_due(&records[0], now + Duration::from_secs(3600)));
        assert_eq!(next_due(&records), None);
    }

    #[test]
    fn the_list_keeps_pending_notifications_over_old_finished_ones() {
        let now = at("2026-12-03T08:00:00Z");
        let mut records = queued(now);
        for n in 0..KEPT {
            enqueue(&mut records, "Stale", format!("stale {n}"), now);
            let newest = records.len() - 1;
            record_attempt(&mut records[newest], Ok(()), now);
        }
        assert_eq!(records.len(), KEPT);
        assert_eq!(records[0].event, "Failure", "the pending one stays");
        assert_eq!(records[1].message, "stale 1", "the oldest delivered one went");
    }

    #[test]
    fn removing_the_webhook_gives_up_what_is_pending() {
        let now = at("2026-12-03T08:00:00Z");
        let mut records = queued(now);
        give_up_pending(&mut records, "spec.notifications was removed");
        assert_eq!(records[0].state, DeliveryState::GaveUp);
        assert_eq!(next_due(&records), None);
    }
}
