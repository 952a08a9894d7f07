//! The stabilization window after the switch: rounds of HTTP checks and Prometheus queries against
//! the new side, every `interval` for `duration`; `failureThreshold` failed rounds in a row roll back.
//! The window ends only once it has observed all its rounds: a gap without rounds (the leader crashed
//! and its Lease had to run out) extends it, so no stretch of `duration` goes unwatched.
//!
//! The rounds' bookkeeping and the window's verdict are pure ([`record_round`]); the step only runs a
//! round when one is due and writes down what it found.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::machine::Step;
use super::steps::limit;
use super::{elapsed, now, Progress, Run};
use crate::api::cutover::{Stabilization, StabilizationRecord};
use crate::controller::ReconcileError;

/// Default of `stabilization.duration` when it does not parse.
const DEFAULT_DURATION: Duration = Duration::from_secs(1800);
/// Default of `stabilization.interval`.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// How long one Prometheus query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn stabilization(run: &mut Run<'_>, step: &Step) -> Result<Progress, ReconcileError> {
    let Some(window) = run.cutover.spec.stabilization.clone() else {
        return Ok(Progress::Skipped("no stabilization".into()));
    };
    let duration = window.duration.parse().unwrap_or(DEFAULT_DURATION);
    let interval = limit(window.interval.as_ref(), DEFAULT_INTERVAL);
    let mut record = run.status.stabilization.clone().unwrap_or_default();
    record.expected_rounds = expected_rounds(duration, interval);
    let now = now();
    let due = next_round_in(&record, interval, &now);
    if !due.is_zero() {
        return Ok(Progress::Wait {
            after: due,
            message: progress_message(&record),
        });
    }
    let failure = round(&window).await;
    let started = run
        .status
        .steps
        .iter()
        .rev()
        .find(|r| r.name == step.name())
        .map(|r| r.start_time.clone())
        .unwrap_or(now.clone());
    let verdict = record_round(
        &mut record,
        failure,
        window.failure_threshold,
        (duration, interval),
        &started,
        &now,
    );
    run.status.stabilization = Some(record.clone());
    Ok(verdict_progress(verdict, &record))
}

/// One round of the watch: every HTTP check and Prometheus query; the first failure, if any.
async fn round(window: &Stabilization) -> Option<(String, String)> {
    for check in &window.http {
        if let Err(problem) = crate::checks::run_http_check(&check.check).await {
            return Some((check.name.clone(), problem));
        }
    }
    if let Some(prometheus) = &window.prometheus {
        for query in &prometheus.queries {
            let value =
                crate::checks::prometheus_value(&prometheus.address, &query.query, QUERY_TIMEOUT).await;
            let judged = value.and_then(|v| crate::checks::within(v, query.min, query.max));
            if let Err(problem) = judged {
                return Some((query.name.clone(), problem));
            }
        }
    }
    None
}

/// How long until the next stabilization round is due; zero means now.
pub fn next_round_in(record: &StabilizationRecord, interval: Duration, now: &Time) -> Duration {
    match &record.last_round_time {
        None => Duration::ZERO,
        Some(last) => interval.saturating_sub(elapsed(last, now)),
    }
}

/// One round at the window's start and one every `interval` until `duration` has passed.
pub fn expected_rounds(duration: Duration, interval: Duration) -> i32 {
    let interval = interval.as_millis().max(1);
    let rounds = duration.as_millis().div_ceil(interval) + 1;
    i32::try_from(rounds).unwrap_or(i32::MAX)
}

/// What a finished round means for the watch window.
#[derive(Debug, Clone, PartialEq)]
pub enum Watch {
    /// Keep watching; the next round is due after this long.
    Continue(Duration),
    /// The window passed with the last round healthy.
    Passed(String),
    /// failureThreshold rounds in a row failed.
    Failed(String),
}

/// Records one round (`failure` = the first failed check and what it saw) and judges the window.
/// The window only ends on a healthy round: an unresolved run of failures keeps it open until the
/// threshold decides.
pub fn record_round(
    record: &mut StabilizationRecord,
    failure: Option<(String, String)>,
    threshold: i32,
    window: (Duration, Duration),
    started: &Time,
    now: &Time,
) -> Watch {
    let (duration, interval) = window;
    record.rounds += 1;
    record.last_round_time = Some(now.clone());
    match failure {
        Some((check, message)) => {
            if record.consecutive_failures == 0 {
                record.failing_since = Some(now.clone());
            }
            record.consecutive_failures += 1;
            record.failed_check = Some(check.clone());
            record.last_failure = Some(format!("{check}: {message}"));
            if record.consecutive_failures >= threshold.max(1) {
                return Watch::Failed(format!(
                    "{} failed rounds in a row (threshold {threshold}); last: {check}: {message}",
                    record.consecutive_failures
                ));
            }
        }
        None => {
            record.consecutive_failures = 0;
            record.failing_since = None;
        }
    }
    let watched = elapsed(started, now);
    let observed_all = record.rounds >= record.expected_rounds;
    if record.consecutive_failures == 0 && watched >= duration && observed_all {
        let failures = record
            .last_failure
            .as_ref()
            .map(|f| format!("; last failure seen: {f}"))
            .unwrap_or_default();
        // Late rounds are normal (checks take time); more than an interval late means unwatched time.
        let extended = if watched > duration + interval {
            format!(
                " (the window ran {} to observe them: time without rounds does not count)",
                crate::duration::format_duration(watched)
            )
        } else {
            String::new()
        };
        return Watch::Passed(format!(
            "{} rounds over {}, healthy at the end{extended}{failures}",
            record.rounds,
            crate::duration::format_duration(duration)
        ));
    }
    Watch::Continue(interval)
}

/// The step's progress after a round: still watching (saying how the rounds go), passed or failed.
fn verdict_progress(verdict: Watch, record: &StabilizationRecord) -> Progress {
    match verdict {
        Watch::Continue(after) => Progress::Wait {
            after,
            message: progress_message(record),
        },
        Watch::Passed(message) => Progress::Done(message),
        Watch::Failed(message) => Progress::Failed(message),
    }
}

fn progress_message(record: &StabilizationRecord) -> String {
    let round = match record.expected_rounds {
        0 => format!("round {}", record.rounds),
        expected => format!("round {} of {expected}", record.rounds),
    };
    match (&record.last_failure, record.consecutive_failures) {
        (Some(failure), n) if n > 0 => format!("{round}: {n} failed in a row; {failure}"),
        _ => format!("{round}: healthy"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap())
    }

    #[test]
    fn stabilization_rolls_back_after_threshold_consecutive_failures_only() {
        let window = (Duration::from_secs(6), Duration::from_secs(1));
        let mut record = StabilizationRecord::default();
        let fail = || Some(("healthz".to_owned(), "answered 500".to_owned()));
        assert_eq!(
            record_round(&mut record, fail(), 3, window, &t(0), &t(0)),
            Watch::Continue(Duration::from_secs(1))
        );
        assert_eq!(
            record_round(&mut record, fail(), 3, window, &t(0), &t(1)),
            Watch::Continue(Duration::from_secs(1))
        );
        // A healthy round resets the run.
        assert_eq!(
            record_round(&mut record, None, 3, window, &t(0), &t(2)),
            Watch::Continue(Duration::from_secs(1))
        );
        assert_eq!(record.consecutive_failures, 0);
        assert!(record.failing_since.is_none());
        record_round(&mut record, fail(), 3, window, &t(0), &t(3));
        record_round(&mut record, fail(), 3, window, &t(0), &t(4));
        let Watch::Failed(message) = record_round(&mut record, fail(), 3, window, &t(0), &t(5)) else {
            panic!()
        };
        assert!(
            message.contains("3 failed rounds in a row") && message.contains("healthz"),
            "{message}"
        );
        assert_eq!(record.failing_since, Some(t(3)));
        assert_eq!(record.failed_check.as_deref(), Some("healthz"));
    }

    #[test]
    fn stabilization_passes_at_the_end_of_the_window_on_a_healthy_round() {
        let window = (Duration::from_secs(6), Duration::from_secs(1));
        let mut record = StabilizationRecord::default();
        for second in 0..6 {
            assert!(matches!(
                record_round(&mut record, None, 3, window, &t(0), &t(second)),
                Watch::Continue(_)
            ));
        }
        record_round(
            &mut record,
            Some(("healthz".into(), "timeout".into())),
            3,
            window,
            &t(0),
            &t(6),
        );
        assert!(matches!(
            record_round(&mut record, None, 3, window, &t(0), &t(7)),
            Watch::Passed(_)
        ));
        assert_eq!(
            next_round_in(&record, Duration::from_secs(1), &t(7)),
            Duration::from_secs(1)
        );
        assert_eq!(
            next_round_in(&record, Duration::from_secs(1), &t(9)),
            Duration::ZERO
        );
    }

    #[test]
    fn a_window_expects_a_round_at_its_start_and_one_per_interval() {
        assert_eq!(
            expected_rounds(Duration::from_secs(20), Duration::from_secs(2)),
            11
        );
        assert_eq!(
            expected_rounds(Duration::from_secs(25), Duration::from_secs(1)),
            26
        );
        assert_eq!(
            expected_rounds(Duration::from_secs(3600), Duration::from_secs(420)),
            10
        );
    }

    #[test]
    fn a_leader_gap_extends_the_window_until_its_rounds_are_observed() {
        let window = (Duration::from_secs(6), Duration::from_secs(1));
        let mut record = StabilizationRecord {
            expected_rounds: expected_rounds(window.0, window.1),
            ..Default::default()
        };
        for second in [0, 1, 2] {
            record_round(&mut record, None, 3, window, &t(0), &t(second));
        }
        // The leader died; the next one resumes long after the window's wall-clock end.
        for second in [10, 11, 12] {
            assert_eq!(
                record_round(&mut record, None, 3, window, &t(0), &t(second)),
                Watch::Continue(Duration::from_secs(1)),
                "round {} at {second}s of a 6s window with a gap is not the end",
                record.rounds
            );
        }
        // A failure after the wall-clock end is still seen, and still counts toward rollback.
        let fail = || Some(("healthz".to_owned(), "answered 500".to_owned()));
        record_round(&mut record, fail(), 2, window, &t(0), &t(13));
        assert!(matches!(
            record_round(&mut record, fail(), 2, window, &t(0), &t(14)),
            Watch::Failed(_)
        ));

        let mut healthy = StabilizationRecord {
            expected_rounds: 7,
            ..Default::default()
        };
        for second in [0, 1, 2, 10, 11, 12] {
            record_round(&mut healthy, None, 3, window, &t(0), &t(second));
        }
        let Watch::Passed(message) = record_round(&mut healthy, None, 3, window, &t(0), &t(13)) else {
            panic!("7 of 7 rounds observed and healthy")
        };
        assert!(
            message.contains("7 rounds over 6s") && message.contains("ran 13s"),
            "{message}"
        );
        assert_eq!(progress_message(&healthy), "round 7 of 7: healthy");
    }

    #[test]
    fn a_continuing_watch_says_how_the_rounds_go() {
        let mut record = StabilizationRecord::default();
        let window = (Duration::from_secs(60), Duration::from_secs(10));
        let verdict = record_round(&mut record, None, 3, window, &t(0), &t(0));
        assert_eq!(
            verdict_progress(verdict, &record),
            Progress::Wait {
                after: Duration::from_secs(10),
                message: "round 1: healthy".into()
            }
        );
        let failure = Some(("healthz".to_owned(), "answered 500".to_owned()));
        let verdict = record_round(&mut record, failure, 3, window, &t(0), &t(10));
        assert_eq!(
            verdict_progress(verdict, &record),
            Progress::Wait {
                after: Duration::from_secs(10),
                message: "round 2: 1 failed in a row; healthz: answered 500".into()
            }
        );
        assert_eq!(
            verdict_progress(Watch::Failed("3 failed".into()), &record),
            Progress::Failed("3 failed".into())
        );
    }
}
