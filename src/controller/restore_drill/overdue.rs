//! Whether a drill is Overdue: no drill has started since the slot after the last one, plus a grace
//! period. A drill that silently stops running (a stuck Restore skipping every slot, an operator that
//! was down, suspended and forgotten) leaves a passing lastDrill that grows old; auditors ask for the
//! newest one. (A drill whose policy is gone is Stalled instead, which already asks for a person.)

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::conditions::Desired;
use crate::duration::format_duration;
use crate::schedule::Schedule;

pub const OVERDUE: &str = "Overdue";
/// Used without spec.overdueGrace: a drill an hour late is worth a look, whatever its schedule.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// The Overdue condition, and while on time the moment it would turn overdue (worth waking up for).
#[derive(Debug, PartialEq)]
pub struct Punctuality {
    pub condition: Desired,
    pub overdue: bool,
    pub overdue_at: Option<Timestamp>,
}

/// Judges the drill against its schedule: `last_start` is the start of the newest drill (finished or
/// running), `None` before the first; the drill's creation stands in for it then.
pub fn punctuality(
    schedule: &Schedule,
    grace: Duration,
    last_start: Option<Timestamp>,
    created: Timestamp,
    now: Timestamp,
) -> Punctuality {
    let since = last_start.unwrap_or(created);
    let last = match last_start {
        Some(at) => format!("the last drill started at {at}"),
        None => format!("no drill has run since the RestoreDrill was created at {since}"),
    };
    let Ok(due) = schedule.next_slot_after(since) else {
        return Punctuality {
            condition: Desired::new(
                OVERDUE,
                false,
                "NoNextSlot",
                format!("{last}; the schedule has no next slot"),
            ),
            overdue: false,
            overdue_at: None,
        };
    };
    let overdue_at = due + SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
    if now >= overdue_at {
        Punctuality {
            condition: Desired::new(
                OVERDUE,
                true,
                "DrillOverdue",
                format!(
                    "{last}; the next was due at {due} and has not started within the grace of {}",
                    format_duration(grace)
                ),
            ),
            overdue: true,
            overdue_at: None,
        }
    } else {
        Punctuality {
            condition: Desired::new(
                OVERDUE,
                false,
                "OnSchedule",
                format!("{last}; the next is due at {due} (Overdue from {overdue_at})"),
            ),
            overdue: false,
            overdue_at: Some(overdue_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn monthly() -> Schedule {
        Schedule::parse("0 3 1 * *", Some("Europe/Prague")).unwrap()
    }

    #[test]
    fn a_monthly_drill_that_ran_this_month_is_on_time_until_next_month_plus_the_grace() {
        let last = at("2026-11-01T02:00:00Z"); // 03:00 in Prague
        let judged = punctuality(
            &monthly(),
            DEFAULT_GRACE,
            Some(last),
            last,
            at("2026-11-20T00:00:00Z"),
        );
        assert!(!judged.overdue);
        assert_eq!(judged.condition.reason, "OnSchedule");
        // December 1st 03:00 in Prague is 02:00 UTC, plus the hour of grace.
        assert_eq!(judged.overdue_at, Some(at("2026-12-01T03:00:00Z")));
    }

    #[test]
    fn a_drill_that_missed_its_slot_by_more_than_the_grace_is_overdue_naming_both_times() {
        let last = at("2026-11-01T02:00:00Z");
        let judged = punctuality(
            &monthly(),
            DEFAULT_GRACE,
            Some(last),
            last,
            at("2026-12-01T03:00:00Z"),
        );
        assert!(judged.overdue);
        assert_eq!(judged.condition.reason, "DrillOverdue");
        let message = &judged.condition.message;
        assert!(message.contains("2026-11-01T02:00:00Z"), "{message}");
        assert!(message.contains("2026-12-01T02:00:00Z"), "{message}");
    }

    #[test]
    fn within_the_grace_a_late_drill_is_not_yet_overdue() {
        let last = at("2026-11-01T02:00:00Z");
        let judged = punctuality(
            &monthly(),
            DEFAULT_GRACE,
            Some(last),
            last,
            at("2026-12-01T02:59:59Z"),
        );
        assert!(!judged.overdue);
    }

    #[test]
    fn before_the_first_drill_the_creation_time_counts_as_the_last_run() {
        let created = at("2026-11-10T00:00:00Z");
        let schedule = monthly();
        let judged = punctuality(
            &schedule,
            DEFAULT_GRACE,
            None,
            created,
            at("2026-11-30T00:00:00Z"),
        );
        assert!(!judged.overdue);
        let judged = punctuality(
            &schedule,
            DEFAULT_GRACE,
            None,
            created,
            at("2026-12-02T00:00:00Z"),
        );
        assert!(judged.overdue);
        assert!(
            judged.condition.message.contains("no drill has run"),
            "{:?}",
            judged.condition
        );
    }

    #[test]
    fn a_running_drill_counts_as_started() {
        // The December drill started on time and still runs: due only in January.
        let running_since = at("2026-12-01T02:00:01Z");
        let judged = punctuality(
            &monthly(),
            DEFAULT_GRACE,
            Some(running_since),
            at("2026-01-01T00:00:00Z"),
            at("2026-12-01T09:00:00Z"),
        );
        assert!(!judged.overdue);
    }
}
