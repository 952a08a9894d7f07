//! The stabilization window after the switch: rounds of HTTP checks and Prometheus queries against
//! the new side, every `interval` for `duration`; `failureThreshold` failed rounds in a row roll back.
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
    if record.consecutive_failures == 0 && elapsed(started, now) >= duration {
        let failures = record
            .last_failure
            .as_ref()
            .map(|f| format!("; last failure seen: {f}"))
            .unwrap_or_default();
        return Watch::Passed(format!(
            "{} rounds over {}, healthy at the end{failures}",
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
    match (&record.last_failure, record.consecutive_failures) {
        (Some(failure), n) if n > 0 => format!("round {}: {n} failed in a row; {failure}", record.rounds),
        _ => format!("round {}: healthy", record.rounds),
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
