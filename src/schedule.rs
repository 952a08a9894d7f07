//! Cron schedules with a time zone: the one place where schedule strings become instants.
//!
//! We use `croner` (standard 5-field cron, `@daily`-style nicknames, DST rules that match vixie cron)
//! with its `jiff` support, so schedule instants are the same `jiff` type k8s-openapi 0.29 uses for
//! `metav1.Time` and no chrono conversion boundary is needed.

use std::str::FromStr;

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// The pattern the CRD schema checks: five whitespace-separated fields or a nickname. It cannot catch
/// every mistake (`61 * * * *`), which the controller reports as a condition, but it refuses the common
/// ones: six fields with seconds, a missing field, stray characters.
pub const CRON_PATTERN: &str = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[0-9A-Za-z*?,/#-]+( +[0-9A-Za-z*?,/#-]+){4})$";

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule {schedule:?} is not a valid 5-field cron expression: {reason}")]
    InvalidCron { schedule: String, reason: String },
    #[error("time zone {0:?} is not a known IANA time zone (for example Europe/Prague or UTC)")]
    UnknownTimeZone(String),
    #[error("schedule {0:?} has no future occurrence")]
    NoNextOccurrence(String),
}

/// A parsed cron schedule bound to a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
    zone: TimeZone,
}

impl Schedule {
    /// Parses `schedule` (5 fields, no seconds) in `time_zone` (IANA name; `None` means UTC).
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Self, ScheduleError> {
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(schedule.trim())
            .map_err(|error| ScheduleError::InvalidCron {
                schedule: schedule.to_owned(),
                reason: error.to_string(),
            })?;
        let zone = match time_zone {
            None | Some("") | Some("UTC") => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|_| ScheduleError::UnknownTimeZone(name.to_owned()))?,
        };
        Ok(Self {
            text: schedule.to_owned(),
            cron,
            zone,
        })
    }

    /// The first slot strictly after `instant`.
    pub fn next_slot_after(&self, instant: Timestamp) -> Result<Timestamp, ScheduleError> {
        let start = instant.to_zoned(self.zone.clone());
        self.cron
            .find_next_occurrence(&start, false)
            .map(|next: Zoned| next.timestamp())
            .map_err(|_| ScheduleError::NoNextOccurrence(self.text.clone()))
    }

    /// The most recent slot at or before `instant`, if any within the search range.
    pub fn last_slot_at_or_before(&self, instant: Timestamp) -> Option<Timestamp> {
        let start = instant.to_zoned(self.zone.clone());
        self.cron
            .find_previous_occurrence(&start, true)
            .ok()
            .map(|slot: Zoned| slot.timestamp())
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(schedule: &str) -> Result<Self, Self::Err> {
        Self::parse(schedule, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_nightly_dump_in_prague_runs_at_two_local_time() {
        let schedule = Schedule::parse("0 2 * * *", Some("Europe/Prague")).unwrap();
        // Winter: UTC+1, so 02:00 local is 01:00Z.
        assert_eq!(
            schedule.next_slot_after(at("2026-01-10T12:00:00Z")).unwrap(),
            at("2026-01-11T01:00:00Z")
        );
        // Summer: UTC+2.
        assert_eq!(
            schedule.next_slot_after(at("2026-07-10T12:00:00Z")).unwrap(),
            at("2026-07-11T00:00:00Z")
        );
    }

    #[test]
    fn a_slot_skipped_by_spring_forward_still_runs_once() {
        // 2026-03-29 02:30 does not exist in Prague (clocks jump 02:00 → 03:00); vixie cron runs it at 03:00.
        let schedule = Schedule::parse("30 2 * * *", Some("Europe/Prague")).unwrap();
        let next = schedule.next_slot_after(at("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(next, at("2026-03-29T01:00:00Z"), "runs once, right after the gap");
        let after = schedule.next_slot_after(next).unwrap();
        assert_eq!(after, at("2026-03-30T00:30:00Z"));
    }

    #[test]
    fn a_slot_repeated_by_fall_back_runs_once() {
        // 2026-10-25 02:30 happens twice in Prague; a fixed-time job must run once.
        let schedule = Schedule::parse("30 2 * * *", Some("Europe/Prague")).unwrap();
        let first = schedule.next_slot_after(at("2026-10-24T12:00:00Z")).unwrap();
        let second = schedule.next_slot_after(first).unwrap();
        assert_eq!(
            second.duration_since(first).as_hours(),
            25,
            "{first} then {second}"
        );
    }

    #[test]
    fn nicknames_and_steps_work() {
        let daily = Schedule::parse("@daily", None).unwrap();
        assert_eq!(
            daily.next_slot_after(at("2026-05-01T10:00:00Z")).unwrap(),
            at("2026-05-02T00:00:00Z")
        );
        let every_fifteen = Schedule::parse("*/15 * * * *", None).unwrap();
        assert_eq!(
            every_fifteen.next_slot_after(at("2026-05-01T10:07:00Z")).unwrap(),
            at("2026-05-01T10:15:00Z")
        );
        assert_eq!(
            every_fifteen.last_slot_at_or_before(at("2026-05-01T10:15:00Z")),
            Some(at("2026-05-01T10:15:00Z"))
        );
    }

    #[test]
    fn malformed_schedules_are_refused_not_run_hourly() {
        for bad in [
            "0 0 2 * * *",
            "0 2 * *",
            "61 * * * *",
            "0 25 * * *",
            "every day",
            "",
        ] {
            assert!(
                matches!(Schedule::parse(bad, None), Err(ScheduleError::InvalidCron { .. })),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn unknown_time_zones_are_named_in_the_error() {
        let error = Schedule::parse("0 2 * * *", Some("Europe/Atlantis")).unwrap_err();
        assert!(error.to_string().contains("Europe/Atlantis"), "{error}");
    }
}
