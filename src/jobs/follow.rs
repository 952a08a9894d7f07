//! Following a Job to its end: whether it exists, runs or finished, and what its container said last
//! (the termination message: the agent's JSON result, a step's report, or the log tail that
//! `FallbackToLogsOnError` put there when the container died first).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
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
    if outcome == JobOutcome::Running {
        return Ok(JobState::Running(Box::new(job)));
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let listed = pods
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await?;
    Ok(JobState::Finished {
        outcome,
        last: newest_terminated(&listed.items, container).map(Box::new),
        completed_at: job.status.and_then(|s| s.completion_time),
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
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, PodStatus};

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
    fn a_last_line_is_short() {
        assert_eq!(last_line("a\nb  \n \n", 300), "b");
        assert_eq!(last_line(&"x".repeat(500), 200).len(), 200);
        assert_eq!(last_line("", 10), "");
    }
}
