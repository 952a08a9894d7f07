//! Following a Job to its end: whether it exists, runs or finished, and what its container said last
//! (the termination message: the agent's JSON result, a step's report, or the log tail that
//! `FallbackToLogsOnError` put there when the container died first).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::{Api, Client};

use super::AGENT_CONTAINER;
use crate::agent::result::AgentResult;

/// How a Job ended, if it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Running,
    Succeeded,
    Failed,
}

pub fn job_outcome(job: &Job) -> JobOutcome {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    let has =
        |type_: &str| conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"));
    if has("Complete") {
        JobOutcome::Succeeded
    } else if has("Failed") {
        JobOutcome::Failed
    } else {
        JobOutcome::Running
    }
}

/// Where a Job is: not there, still running, or finished with its container's last state (the newest
/// terminated container of that name among the Job's Pods; none when its Pods are gone).
#[derive(Debug, Clone)]
pub enum JobState {
    Missing,
    Running(Box<Job>),
    Finished {
        outcome: JobOutcome,
        last: Option<Box<ContainerStateTerminated>>,
        /// When the Job completed (`status.completionTime`, set for succeeded Jobs).
        completed_at: Option<Time>,
    },
}

/// Reads Job `name` and, once it has finished, its Pods: one GET while it runs, a LIST of its Pods once.
pub async fn follow_job(
    client: &Client,
    namespace: &str,
    name: &str,
    container: &str,
) -> Result<JobState, kube::Error> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let Some(job) = jobs.get_opt(name).await? else {
        return Ok(JobState::Missing);
    };
    let outcome = job_outcome(&job);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    if outcome == JobOutcome::Running {
        // Until a Pod is ready, it may be waiting for something that never comes (an image that is not
        // there, a missing Secret key): one LIST then, none once it runs.
        if job.status.as_ref().and_then(|s| s.ready).unwrap_or(0) == 0 {
            let listed = pods
                .list(&ListParams::default().labels(&format!("job-name={name}")))
                .await?;
            let mut stuck = stuck_container(&listed.items, container, jiff::Timestamp::now());
            if stuck.is_none() && listed.items.is_empty() {
                stuck = pods_refused(client, namespace, &job).await?;
            }
            if let Some(stuck) = stuck {
                return Ok(JobState::Finished {
                    outcome: JobOutcome::Failed,
                    last: Some(Box::new(stuck)),
                    completed_at: None,
                });
            }
        }
        return Ok(JobState::Running(Box::new(job)));
    }
    let listed = pods
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await?;
    Ok(JobState::Finished {
        outcome,
        last: newest_terminated(&listed.items, container).map(Box::new),
        completed_at: job.status.and_then(|s| s.completion_time),
    })
}

/// How soon to look at a running Job again. A Pod waiting for something that never comes (an image
/// that is not on the node) changes neither the Job nor anything else the controllers watch, so
/// without a timer nobody would see it stuck: until one of the Job's Pods is ready it is looked at
/// again every `PENDING_RECHECK`; once one runs, the Job's end is a watch event.
pub fn recheck_running(job: &Job) -> Action {
    if job.status.as_ref().and_then(|s| s.ready).unwrap_or(0) == 0 {
        Action::requeue(PENDING_RECHECK)
    } else {
        Action::await_change()
    }
}

const PENDING_RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

/// Waiting reasons that end only when someone changes something: an image that is not on the node or
/// cannot be pulled, a container that cannot be created (a missing Secret or key, a non-root rule the
/// image breaks).
const STUCK_REASONS: &[&str] = &[
    "ErrImageNeverPull",
    "InvalidImageName",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];
/// How long a Pod may wait with one of them before its Job counts as failed: a registry hiccup or a
/// Secret created a moment late heals within it. `ErrImageNeverPull` and `InvalidImageName` never heal.
const STUCK_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// Why a Job has no Pod at all, when the Job controller was refused creating one: Pod Security
/// admission (a step image that does not say it runs as non-root in a `restricted` namespace) never
/// relents, so it ends the Job at once; other refusals (a quota, a webhook) after `STUCK_AFTER`. Read
/// from the Job controller's `FailedCreate` Events, the only place the refusal is recorded.
async fn pods_refused(
    client: &Client,
    namespace: &str,
    job: &Job,
) -> Result<Option<ContainerStateTerminated>, kube::Error> {
    let Some(uid) = job.metadata.uid.as_deref() else {
        return Ok(None);
    };
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let selector = format!("involvedObject.uid={uid},reason=FailedCreate");
    let listed = events.list(&ListParams::default().fields(&selector)).await?;
    let created = job.metadata.creation_timestamp.as_ref().map(|t| t.0);
    Ok(refusal(&listed.items, created, jiff::Timestamp::now()))
}

fn refusal(
    events: &[Event],
    job_created: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Option<ContainerStateTerminated> {
    let message = events.iter().filter_map(|e| e.message.as_deref()).next_back()?;
    let permanent = message.contains("violates PodSecurity");
    let waited_long = job_created.is_some_and(|created| now.duration_since(created) >= STUCK_AFTER);
    if !(permanent || waited_long) {
        return None;
    }
    Some(ContainerStateTerminated {
        exit_code: 128,
        reason: Some("FailedCreate".to_owned()),
        message: Some(format!("the Job's Pod cannot be created: {message}")),
        ..Default::default()
    })
}

/// A container of `pods` waiting for something that will not come, as the terminated state a failed run
/// leaves (so every follower reports it like any failure): "<reason>: <kubelet's message>", which names
/// the image or the Secret.
pub fn stuck_container(
    pods: &[Pod],
    container: &str,
    now: jiff::Timestamp,
) -> Option<ContainerStateTerminated> {
    pods.iter().find_map(|pod| {
        let waiting_since = pod.metadata.creation_timestamp.as_ref().map(|t| t.0)?;
        let status = pod
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find(|s| s.name == container)?;
        let waiting = status.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        let never_heals = matches!(reason, "ErrImageNeverPull" | "InvalidImageName");
        let waited_long = now.duration_since(waiting_since) >= STUCK_AFTER;
        if !STUCK_REASONS.contains(&reason) || !(never_heals || waited_long) {
            return None;
        }
        let detail = waiting.message.clone().unwrap_or_default();
        Some(ContainerStateTerminated {
            exit_code: 128,
            reason: Some(reason.to_owned()),
            message: Some(format!("container {container} cannot start: {reason}: {detail}")),
            ..Default::default()
        })
    })
}

/// The newest terminated state of `container` among `pods` (a Job with retries has several).
pub fn newest_terminated(pods: &[Pod], container: &str) -> Option<ContainerStateTerminated> {
    let mut finished: Vec<_> = pods
        .iter()
        .flat_map(|pod| {
            pod.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten()
        })
        .filter(|status| status.name == container)
        .filter_map(|status| status.state.as_ref().and_then(|s| s.terminated.clone()))
        .collect();
    finished.sort_by_key(|terminated| terminated.finished_at.clone().map(|t| t.0));
    finished.pop()
}

/// The last non-empty line of `text`, trimmed, at most `max_chars` characters: what a person needs from
/// a log tail in one status line.
pub fn last_line(text: &str, max_chars: usize) -> String {
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim();
    line.chars().take(max_chars).collect()
}

/// The last `count` non-empty lines of `text`, trimmed and joined by " | ", at most `max_chars` (the end
/// kept). A failed container's stdout and stderr reach its log through separate pipes, so their lines
/// can land in either order: the error the container printed last to stderr may come before its last
/// stdout line. A few lines hold both.
pub fn last_lines(text: &str, count: usize, max_chars: usize) -> String {
    let mut lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .rev()
        .take(count)
        .collect();
    lines.reverse();
    let joined = lines.join(" | ");
    let length = joined.chars().count();
    if length <= max_chars {
        return joined;
    }
    let kept: String = joined.chars().skip(length - max_chars + 1).collect();
    format!("…{kept}")
}

/// What the newest finished agent container said: its JSON result, or (when it died before writing
/// one) the tail of its log that `FallbackToLogsOnError` put in the termination message.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentReport {
    Result(Box<AgentResult>),
    Unstructured(String),
}

impl AgentReport {
    pub fn from_terminated(terminated: &ContainerStateTerminated) -> AgentReport {
        let message = terminated.message.clone().unwrap_or_default();
        match serde_json::from_str::<AgentResult>(message.trim()) {
            Ok(result) => AgentReport::Result(Box::new(result)),
            Err(_) if message.trim().is_empty() => AgentReport::Unstructured(format!(
                "the agent exited with code {} without a result{}",
                terminated.exit_code,
                terminated
                    .reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )),
            Err(_) => AgentReport::Unstructured(last_line(&message, 300)),
        }
    }
}

pub fn newest_agent_report(pods: &[Pod]) -> Option<AgentReport> {
    newest_terminated(pods, AGENT_CONTAINER).map(|t| AgentReport::from_terminated(&t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus, PodStatus};

    #[test]
    fn a_pod_refused_by_pod_security_ends_the_job_at_once_other_refusals_after_a_while() {
        let event = |message: &str| Event {
            message: Some(message.into()),
            ..Default::default()
        };
        let created: jiff::Timestamp = "2026-12-03T08:00:00Z".parse().unwrap();
        let soon: jiff::Timestamp = "2026-12-03T08:00:05Z".parse().unwrap();
        let later: jiff::Timestamp = "2026-12-03T08:01:05Z".parse().unwrap();
        let psa = [event(
            "Error creating: pods \"m-abc\" is forbidden: violates PodSecurity \"restricted:latest\": \
             runAsNonRoot != true (pod or container \"step\" must set securityContext.runAsNonRoot=true)",
        )];
        let refused = refusal(&psa, Some(created), soon).expect("Pod Security never relents");
        assert!(refused.message.unwrap().contains("runAsNonRoot"));
        let quota = [event(
            "Error creating: pods \"m-abc\" is forbidden: exceeded quota: pods",
        )];
        assert!(
            refusal(&quota, Some(created), soon).is_none(),
            "a quota may free up"
        );
        assert!(refusal(&quota, Some(created), later).is_some());
        assert!(refusal(&[], Some(created), later).is_none());
    }

    #[test]
    fn a_job_without_a_ready_pod_is_looked_at_again_on_a_timer() {
        let job = |ready: Option<i32>| Job {
            status: Some(k8s_openapi::api::batch::v1::JobStatus {
                ready,
                active: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(recheck_running(&job(None)), Action::requeue(PENDING_RECHECK));
        assert_eq!(recheck_running(&job(Some(0))), Action::requeue(PENDING_RECHECK));
        assert_eq!(recheck_running(&job(Some(1))), Action::await_change());
    }

    fn waiting(reason: &str, created: &str) -> Pod {
        let mut pod = Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: AGENT_CONTAINER.into(),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(reason.into()),
                            message: Some("Container image \"lifeboat:missing\" is not present with pull policy of Never".into()),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        pod.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        pod
    }

    #[test]
    fn an_image_that_is_not_there_fails_the_run_at_once_naming_the_image() {
        let now: jiff::Timestamp = "2026-12-02T12:00:05Z".parse().unwrap();
        let pods = [waiting("ErrImageNeverPull", "2026-12-02T12:00:00Z")];
        let stuck = stuck_container(&pods, AGENT_CONTAINER, now).expect("stuck");
        let report = AgentReport::from_terminated(&stuck);
        let AgentReport::Unstructured(message) = report else {
            panic!("{report:?}")
        };
        assert!(message.contains("ErrImageNeverPull"), "{message}");
        assert!(message.contains("lifeboat:missing"), "{message}");
    }

    #[test]
    fn a_pull_or_secret_that_may_still_heal_gets_a_minute() {
        let created = "2026-12-02T12:00:00Z";
        let pods = [waiting("CreateContainerConfigError", created)];
        let soon: jiff::Timestamp = "2026-12-02T12:00:30Z".parse().unwrap();
        let later: jiff::Timestamp = "2026-12-02T12:01:01Z".parse().unwrap();
        assert!(stuck_container(&pods, AGENT_CONTAINER, soon).is_none());
        assert!(stuck_container(&pods, AGENT_CONTAINER, later).is_some());
        let starting = [waiting("ContainerCreating", created)];
        assert!(stuck_container(&starting, AGENT_CONTAINER, later).is_none());
    }

    fn pod(container: &str, finished_at: i64, exit_code: i32, message: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: container.into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code,
                            message: Some(message.into()),
                            finished_at: Some(Time(jiff::Timestamp::from_second(finished_at).unwrap())),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_newest_attempt_of_the_named_container_speaks() {
        let pods = [
            pod("agent", 200, 1, "second try"),
            pod("agent", 100, 1, "first try"),
            pod("step", 300, 0, "another container"),
        ];
        let newest = newest_terminated(&pods, "agent").unwrap();
        assert_eq!(newest.message.as_deref(), Some("second try"));
        assert!(newest_terminated(&pods, "smoke").is_none());
    }

    #[test]
    fn an_agent_that_died_without_a_result_is_explained_by_its_log_tail_or_exit_code() {
        let log = pod("agent", 1, 137, "restoring…\nfatal: out of memory\n\n");
        assert_eq!(
            newest_agent_report(&[log]),
            Some(AgentReport::Unstructured("fatal: out of memory".into()))
        );
        let silent = pod("agent", 1, 137, "  ");
        assert_eq!(
            newest_agent_report(&[silent]),
            Some(AgentReport::Unstructured(
                "the agent exited with code 137 without a result".into()
            ))
        );
        assert_eq!(newest_agent_report(&[]), None);
    }

    #[test]
    fn the_last_lines_of_a_failure_hold_both_streams_and_stay_short() {
        assert_eq!(
            last_lines("check 2 FAIL: DEBUG is on\ncheck 1 PASS\n\n", 3, 300),
            "check 2 FAIL: DEBUG is on | check 1 PASS"
        );
        assert_eq!(last_lines("a\nb\nc\nd", 2, 300), "c | d");
        let long = last_lines(&"x".repeat(500), 3, 100);
        assert_eq!(long.chars().count(), 100);
        assert!(long.starts_with('…'));
        assert_eq!(last_lines("", 3, 10), "");
    }

    #[test]
    fn a_last_line_is_short() {
        assert_eq!(last_line("a\nb  \n \n", 300), "b");
        assert_eq!(last_line(&"x".repeat(500), 200).len(), 200);
        assert_eq!(last_line("", 10), "");
    }
}
