//! Which schedule slot is due now, shared by the kinds that run on a schedule (BackupPolicy creates a
//! Backup per slot, RestoreDrill a Restore): concurrency policies, missed slots, and a stable jitter.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::backup_policy::ConcurrencyPolicy;
use crate::schedule::Schedule;

/// What the schedule asks for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotDecision {
    /// No slot is due.
    Wait,
    /// Create the Backup of this slot.
    Run { slot: Timestamp },
    /// Delete the running Backups, then create this slot's (concurrencyPolicy Replace).
    Replace { slot: Timestamp, running: Vec<String> },
    /// The slot came while a backup still ran (concurrencyPolicy Forbid): skip it.
    SkipBusy { slot: Timestamp },
    /// The slot was missed by more than startingDeadlineSeconds (the operator was down): skip it.
    SkipMissed { slot: Timestamp },
}

pub struct SlotInput<'a> {
    pub schedule: &'a Schedule,
    pub now: Timestamp,
    /// The last slot already handled (status.lastScheduleTime), or the policy's creation.
    pub handled_until: Timestamp,
    pub starting_deadline: Option<Duration>,
    pub suspend: bool,
    pub concurrency: ConcurrencyPolicy,
    pub running: &'a [String],
    /// This policy's fixed offset from each slot (spec.jitter).
    pub jitter: Duration,
}

/// Decides about the newest due slot only: a policy that missed several slots runs once, not once per
/// missed slot. Returns the decision and when the next slot is due (jitter included).
pub fn decide_slot(input: &SlotInput<'_>) -> (SlotDecision, Option<Timestamp>) {
    let jitter = jiff::SignedDuration::try_from(input.jitter).unwrap_or_default();
    let shifted_now = input.now - jitter;
    let next = input
        .schedule
        .next_slot_after(shifted_now)
        .ok()
        .map(|slot| slot + jitter);
    let due = input
        .schedule
        .last_slot_at_or_before(shifted_now)
        .filter(|slot| *slot > input.handled_until);
    let Some(slot) = due else {
        return (SlotDecision::Wait, next);
    };
    if input.suspend {
        return (SlotDecision::Wait, next);
    }
    if let Some(deadline) = input.starting_deadline {
        let late = input.now.duration_since(slot + jitter);
        if late.as_secs_f64() > deadline.as_secs_f64() {
            return (SlotDecision::SkipMissed { slot }, next);
        }
    }
    let decision = match (input.concurrency, input.running.is_empty()) {
        (_, true) | (ConcurrencyPolicy::Allow, false) => SlotDecision::Run { slot },
        (ConcurrencyPolicy::Forbid, false) => SlotDecision::SkipBusy { slot },
        (ConcurrencyPolicy::Replace, false) => SlotDecision::Replace {
            slot,
            running: input.running.to_vec(),
        },
    };
    (decision, next)
}

/// A stable offset in [0, jitter) from the policy's uid, so many policies with one schedule spread out
/// and each keeps its own offset across restarts.
pub fn jitter_for(uid: &str, jitter: Option<Duration>) -> Duration {
    let Some(jitter) = jitter.filter(|j| !j.is_zero()) else {
        return Duration::ZERO;
    };
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(uid.as_bytes());
    let value = u64::from_be_bytes(digest[..8].try_into().unwrap_or_default());
    Duration::from_millis(value % jitter.as_millis().max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn input<'a>(schedule: &'a Schedule, now: &str, handled: &str, running: &'a [String]) -> SlotInput<'a> {
        SlotInput {
            schedule,
            now: at(now),
            handled_until: at(handled),
            starting_deadline: None,
            suspend: false,
            concurrency: ConcurrencyPolicy::Forbid,
            running,
            jitter: Duration::ZERO,
        }
    }

    #[test]
    fn a_due_slot_runs_once_and_the_next_is_known() {
        let nightly = Schedule::parse("0 2 * * *", None).unwrap();
        let (decision, next) = decide_slot(&input(
            &nightly,
            "2026-05-02T02:00:05Z",
            "2026-05-01T02:00:00Z",
            &[],
        ));
        assert_eq!(
            decision,
            SlotDecision::Run {
                slot: at("2026-05-02T02:00:00Z")
            }
        );
        assert_eq!(next, Some(at("2026-05-03T02:00:00Z")));
        // Once handled, the same slot is not run again.
        let (again, _) = decide_slot(&input(
            &nightly,
            "2026-05-02T02:00:09Z",
            "2026-05-02T02:00:00Z",
            &[],
        ));
        assert_eq!(again, SlotDecision::Wait);
    }

    #[test]
    fn a_new_policy_waits_for_its_first_slot() {
        let nightly = Schedule::parse("0 2 * * *", None).unwrap();
        let (decision, next) = decide_slot(&input(
            &nightly,
            "2026-05-02T10:00:00Z",
            "2026-05-02T09:59:00Z",
            &[],
        ));
        assert_eq!(decision, SlotDecision::Wait);
        assert_eq!(next, Some(at("2026-05-03T02:00:00Z")));
    }

    #[test]
    fn slots_missed_while_the_operator_was_down_run_once_within_the_deadline() {
        let hourly = Schedule::parse("0 * * * *", None).unwrap();
        let mut late = input(&hourly, "2026-05-02T05:10:00Z", "2026-05-02T01:00:00Z", &[]);
        late.starting_deadline = Some(Duration::from_secs(3600));
        assert_eq!(
            decide_slot(&late).0,
            SlotDecision::Run {
                slot: at("2026-05-02T05:00:00Z")
            },
            "only the newest"
        );
        late.starting_deadline = Some(Duration::from_secs(300));
        assert_eq!(
            decide_slot(&late).0,
            SlotDecision::SkipMissed {
                slot: at("2026-05-02T05:00:00Z")
            }
        );
    }

    #[test]
    fn concurrency_policies_decide_about_a_busy_slot() {
        let hourly = Schedule::parse("0 * * * *", None).unwrap();
        let running = vec!["db-1".to_owned()];
        let mut busy = input(&hourly, "2026-05-02T05:00:01Z", "2026-05-02T04:00:00Z", &running);
        assert_eq!(
            decide_slot(&busy).0,
            SlotDecision::SkipBusy {
                slot: at("2026-05-02T05:00:00Z")
            }
        );
        busy.concurrency = ConcurrencyPolicy::Replace;
        assert_eq!(
            decide_slot(&busy).0,
            SlotDecision::Replace {
                slot: at("2026-05-02T05:00:00Z"),
                running: running.clone()
            }
        );
        busy.concurrency = ConcurrencyPolicy::Allow;
        assert_eq!(
            decide_slot(&busy).0,
            SlotDecision::Run {
                slot: at("2026-05-02T05:00:00Z")
            }
        );
    }

    #[test]
    fn a_suspended_policy_creates_nothing_but_still_knows_its_next_slot() {
        let hourly = Schedule::parse("0 * * * *", None).unwrap();
        let mut suspended = input(&hourly, "2026-05-02T05:00:01Z", "2026-05-02T04:00:00Z", &[]);
        suspended.suspend = true;
        let (decision, next) = decide_slot(&suspended);
        assert_eq!(decision, SlotDecision::Wait);
        assert_eq!(next, Some(at("2026-05-02T06:00:00Z")));
    }

    #[test]
    fn jitter_delays_the_slot_by_a_stable_offset() {
        let offset = jitter_for("0b6a-uid", Some(Duration::from_secs(600)));
        assert_eq!(offset, jitter_for("0b6a-uid", Some(Duration::from_secs(600))));
        assert!(offset < Duration::from_secs(600));
        let hourly = Schedule::parse("0 * * * *", None).unwrap();
        let mut early = input(&hourly, "2026-05-02T05:00:00Z", "2026-05-02T04:00:00Z", &[]);
        early.jitter = Duration::from_secs(120);
        early.now = at("2026-05-02T05:01:00Z");
        assert_eq!(
            decide_slot(&early).0,
            SlotDecision::Wait,
            "not before slot + jitter"
        );
        early.now = at("2026-05-02T05:02:00Z");
        assert_eq!(
            decide_slot(&early).0,
            SlotDecision::Run {
                slot: at("2026-05-02T05:00:00Z")
            }
        );
    }
}
