//! `kubectl lifeboat watch <cutover>`: the deployment log as it is written — a line per step started,
//! per message changed and per step ended, then the end — like `kubectl get -w`, but of the steps.
//! Exits 0 when the Cutover Succeeded, 1 when it ended otherwise, so a release script can wait on it.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::kube_client::Session;
use super::PluginError;
use crate::api::cutover::{CutoverPhase, CutoverStatus, StepPhase, StepRecord};
use crate::api::Cutover;

/// How often the Cutover is read: steps change at most every few seconds.
const POLL: Duration = Duration::from_secs(1);

/// Follows the Cutover until it ends; an end other than Succeeded is an error (exit status 1).
pub async fn watch(session: &Session, name: &str) -> Result<(), PluginError> {
    let api = session.api::<Cutover>();
    let mut seen = CutoverStatus::default();
    loop {
        let cutover = api.get(name).await.map_err(PluginError::api(format!(
            "Cutover {name} in namespace {}",
            session.namespace
        )))?;
        let status = cutover.status.unwrap_or_default();
        let now = Time(jiff::Timestamp::now());
        for line in news(&seen, &status, &now) {
            println!("{line}");
        }
        match status.phase.filter(|p| p.is_terminal()) {
            Some(CutoverPhase::Succeeded) => return Ok(()),
            Some(phase) => {
                return Err(PluginError::Ended {
                    name: name.to_owned(),
                    phase: phase.name(),
                })
            }
            None => {}
        }
        seen = status;
        tokio::time::sleep(POLL).await;
    }
}

/// What changed from `before` to `now`, a line each: steps started, their messages, their ends, and
/// the phase the Cutover ended in. A changed message is stamped `seen_at`: a step records only when it
/// started and ended, and stamping its start on every later message would make them look simultaneous.
fn news(before: &CutoverStatus, now: &CutoverStatus, seen_at: &Time) -> Vec<String> {
    let mut lines = Vec::new();
    for (index, step) in now.steps.iter().enumerate() {
        let earlier = before.steps.get(index).filter(|s| s.name == step.name);
        if earlier == Some(step) {
            continue;
        }
        let started = earlier.is_none();
        let ended = step.phase != StepPhase::Running && earlier.is_none_or(|e| e.phase == StepPhase::Running);
        if started && step.phase == StepPhase::Running {
            lines.push(line(step, &step.start_time, "started"));
        }
        if ended {
            let at = step.completion_time.as_ref().unwrap_or(&step.start_time);
            lines.push(line(step, at, phase_word(step.phase)));
        } else if !started
            && step.message != earlier.and_then(|e| e.message.clone())
            && step.message.is_some()
        {
            // (A step seen for the first time already said its message in its `started` line.)
            lines.push(line(step, seen_at, "waiting"));
        }
    }
    if let Some(phase) = now.phase.filter(|p| p.is_terminal()) {
        if before.phase != now.phase {
            lines.push(format!(
                "{}  the Cutover {}",
                time_of(now.completion_time.as_ref()),
                phase.name()
            ));
        }
    }
    lines
}

fn line(step: &StepRecord, at: &Time, what: &str) -> String {
    let message = step
        .message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    format!("{}  {:<26} {what}{message}", at.0.strftime("%H:%M:%S"), step.name)
}

fn time_of(time: Option<&Time>) -> String {
    time.map(|t| t.0.strftime("%H:%M:%S").to_string())
        .unwrap_or_else(|| "--:--:--".into())
}

fn phase_word(phase: StepPhase) -> &'static str {
    match phase {
        StepPhase::Running => "running",
        StepPhase::Succeeded => "succeeded",
        StepPhase::Failed => "FAILED",
        StepPhase::Skipped => "skipped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000 + second).unwrap())
    }

    fn step(name: &str, phase: StepPhase, message: Option<&str>, end: Option<i64>) -> StepRecord {
        StepRecord {
            name: name.into(),
            phase,
            start_time: at(0),
            completion_time: end.map(at),
            message: message.map(str::to_owned),
        }
    }

    fn status(steps: Vec<StepRecord>, phase: CutoverPhase) -> CutoverStatus {
        CutoverStatus {
            steps,
            phase: Some(phase),
            ..Default::default()
        }
    }

    #[test]
    fn each_start_message_and_end_is_told_once() {
        let empty = CutoverStatus::default();
        let started = status(
            vec![step("approval", StepPhase::Running, None, None)],
            CutoverPhase::AwaitingApproval,
        );
        assert_eq!(
            news(&empty, &started, &at(1)),
            ["08:00:00  approval                   started"]
        );
        assert!(
            news(&started, &started, &at(1)).is_empty(),
            "nothing new, nothing printed"
        );
        let waiting = status(
            vec![step(
                "approval",
                StepPhase::Running,
                Some("awaiting approval"),
                None,
            )],
            CutoverPhase::AwaitingApproval,
        );
        assert_eq!(
            news(&started, &waiting, &at(3)),
            ["08:00:03  approval                   waiting: awaiting approval"]
        );
        let ended = status(
            vec![step(
                "approval",
                StepPhase::Succeeded,
                Some("approved by bob"),
                Some(5),
            )],
            CutoverPhase::Succeeded,
        );
        assert_eq!(
            news(&waiting, &ended, &at(6)),
            [
                "08:00:05  approval                   succeeded: approved by bob",
                "--:--:--  the Cutover Succeeded"
            ]
        );
    }

    #[test]
    fn a_step_first_seen_with_a_message_is_told_once_and_later_messages_when_seen() {
        let empty = CutoverStatus::default();
        let round = |message: &str| {
            status(
                vec![step("stabilization", StepPhase::Running, Some(message), None)],
                CutoverPhase::Stabilizing,
            )
        };
        let first = round("round 1 of 16: healthy");
        assert_eq!(
            news(&empty, &first, &at(1)),
            ["08:00:00  stabilization              started: round 1 of 16: healthy"]
        );
        assert_eq!(
            news(&first, &round("round 2 of 16: healthy"), &at(2)),
            ["08:00:02  stabilization              waiting: round 2 of 16: healthy"]
        );
    }

    #[test]
    fn a_step_seen_only_after_it_ended_is_told_as_ended() {
        let empty = CutoverStatus::default();
        let failed = status(
            vec![step(
                "verify/health",
                StepPhase::Failed,
                Some("answered 500"),
                Some(2),
            )],
            CutoverPhase::RollingBack,
        );
        assert_eq!(
            news(&empty, &failed, &at(3)),
            ["08:00:02  verify/health              FAILED: answered 500"]
        );
    }
}
