//! `kubectl lifeboat snapshots <policy>`: the policy's snapshots, listed from its repository by a Job
//! running `lifeboat agent snapshots` with the policy's own repository settings — the person asking needs
//! no restic, no repository password and no network path to the repository, only the right to create
//! Jobs and read their logs in the namespace (the `edit` role).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Resource, ResourceExt};

use super::cli::Format;
use super::kube_client::Session;
use super::{pods, table, PluginError};
use crate::agent::listing::{find_listing, ListedSnapshot};
use crate::api::BackupPolicy;
use crate::jobs::{self, JobOutcome};

/// Finished listing Jobs stay this long for `kubectl describe` when the plugin could not delete them.
const KEEP_FINISHED_SECONDS: i32 = 600;
const COMPONENT: &str = "snapshots";

pub async fn list(
    session: &Session,
    policy_name: &str,
    format: Option<Format>,
    timeout: Duration,
) -> Result<(), PluginError> {
    let policy = session
        .api::<BackupPolicy>()
        .get(policy_name)
        .await
        .map_err(PluginError::api(format!(
            "BackupPolicy {policy_name} in namespace {}",
            session.namespace
        )))?;
    let (image, command) = agent_image(session, policy_name).await?;
    let job = listing_job(session, &policy, &image, &command);
    let job_name = job.name_any();
    let jobs_api = session.api::<Job>();
    jobs_api
        .create(&PostParams::default(), &job)
        .await
        .map_err(PluginError::api(format!(
            "creating Job {job_name} to list the snapshots"
        )))?;
    let listed = wait_for_listing(session, &job_name, timeout).await;
    if listed.is_ok() {
        // Gone once read; a failed one stays (for its log) until its TTL.
        let _ = jobs_api.delete(&job_name, &DeleteParams::background()).await;
    }
    let snapshots = listed?;
    let text = match format {
        Some(format) => format.render(&snapshots, "the snapshots")?,
        None if snapshots.is_empty() => format!("no snapshots of policy {policy_name} in its repository"),
        None => screen(&snapshots),
    };
    println!("{}", text.trim_end());
    Ok(())
}

/// The image and command the operator runs its agent with, as its newest Job for this policy shows
/// (a private mirror, a pinned digest); else the release image of this plugin's own version.
async fn agent_image(session: &Session, policy: &str) -> Result<(String, String), PluginError> {
    let mut existing = session
        .api::<Job>()
        .list(&ListParams::default().labels(&format!("{}={policy}", jobs::POLICY_LABEL)))
        .await
        .map_err(PluginError::api(format!("the Jobs of policy {policy}")))?
        .items;
    existing.sort_by_key(|job| job.creation_timestamp().map(|t| t.0));
    let from_job = existing.iter().rev().find_map(|job| {
        let container = job
            .spec
            .as_ref()?
            .template
            .spec
            .as_ref()?
            .containers
            .iter()
            .find(|c| c.name == jobs::AGENT_CONTAINER)?;
        Some((
            container.image.clone()?,
            container.command.as_ref()?.first()?.clone(),
        ))
    });
    Ok(from_job.unwrap_or_else(|| {
        (
            format!("ghcr.io/lifeboat-dev/lifeboat:{}", env!("CARGO_PKG_VERSION")),
            "lifeboat".to_owned(),
        )
    }))
}

fn listing_job(session: &Session, policy: &BackupPolicy, image: &str, command: &str) -> Job {
    let policy_name = policy.name_any();
    let name = crate::controller::status::child_name(
        &policy_name,
        &format!("snapshots-{}", jiff::Timestamp::now().as_second()),
        63,
    );
    // Owned (so it goes with the policy) but not controlled, and without blockOwnerDeletion, which the
    // aggregated `edit` role may not set.
    let mut owner = policy
        .controller_owner_ref(&())
        .expect("a policy read from the API has a name and uid");
    owner.controller = None;
    owner.block_owner_deletion = None;
    let restic = &policy.spec.repository.restic;
    let mut job = jobs::agent_job(
        jobs::AgentJob {
            name,
            namespace: &session.namespace,
            owner,
            labels: [
                (jobs::POLICY_LABEL.to_owned(), policy_name.clone()),
                (jobs::COMPONENT_LABEL.to_owned(), COMPONENT.to_owned()),
            ]
            .into(),
            image,
            command,
            image_pull_secrets: &[],
        },
        policy.spec.job_template.as_ref(),
        jobs::Invocation {
            args: vec![
                "agent".into(),
                "snapshots".into(),
                "--tag".into(),
                format!("policy={policy_name}"),
                "--tag".into(),
                format!("namespace={}", session.namespace),
            ],
            ..jobs::Invocation::opening(restic)
        },
        restic.env_from.clone(),
    );
    if let Some(spec) = job.spec.as_mut() {
        spec.ttl_seconds_after_finished = Some(KEEP_FINISHED_SECONDS);
        // Listing is read-only and quick: a failure is reported, not retried.
        spec.backoff_limit = Some(0);
    }
    job
}

async fn wait_for_listing(
    session: &Session,
    job_name: &str,
    timeout: Duration,
) -> Result<Vec<ListedSnapshot>, PluginError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let outcome = loop {
        let job = session
            .api::<Job>()
            .get(job_name)
            .await
            .map_err(PluginError::api(format!("Job {job_name}")))?;
        match jobs::job_outcome(&job) {
            JobOutcome::Running if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            JobOutcome::Running => {
                return Err(PluginError::Refused(format!(
                    "Job {job_name} did not list the snapshots within {}s; see `kubectl -n {} describe job {job_name}`",
                    timeout.as_secs(),
                    session.namespace
                )))
            }
            outcome => break outcome,
        }
    };
    let pods = pods::job_pods(session, job_name).await?;
    let Some(pod) = pods.last() else {
        return Err(PluginError::Refused(format!(
            "Job {job_name} ended without a Pod"
        )));
    };
    if outcome == JobOutcome::Failed {
        let why = match jobs::newest_agent_report(&pods) {
            Some(jobs::AgentReport::Result(result)) => result.message.unwrap_or_default(),
            Some(jobs::AgentReport::Unstructured(text)) => text,
            None => "its Pod did not start".to_owned(),
        };
        return Err(PluginError::Refused(format!(
            "listing the snapshots failed: {why} (Job {job_name}: `kubectl -n {} logs job/{job_name}`)",
            session.namespace
        )));
    }
    let log = pods::log(session, pod, Some(jobs::AGENT_CONTAINER)).await?;
    match find_listing(&log) {
        Some(Ok(snapshots)) => Ok(snapshots),
        Some(Err(error)) => Err(PluginError::Refused(format!(
            "Job {job_name} wrote a listing this plugin cannot read ({error}): is the agent image a \
             different version than the plugin?"
        ))),
        None => Err(PluginError::Refused(format!(
            "Job {job_name} succeeded without a listing in its log: is its image ({}) older than the \
             plugin?",
            pod.spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default()
        ))),
    }
}

fn screen(snapshots: &[ListedSnapshot]) -> String {
    let rows: Vec<Vec<String>> = snapshots
        .iter()
        .map(|s| {
            let time = s
                .time
                .parse::<jiff::Timestamp>()
                .map(|t| t.strftime("%Y-%m-%d %H:%MZ").to_string())
                .unwrap_or_else(|_| s.time.clone());
            let why = match (&s.trigger, &s.reason) {
                (Some(trigger), Some(reason)) => format!("{trigger}: {reason}"),
                (Some(trigger), None) => trigger.clone(),
                (None, reason) => reason.clone().unwrap_or_default(),
            };
            vec![
                s.id.chars().take(8).collect(),
                time,
                s.backup.clone().unwrap_or_else(|| "-".into()),
                s.bytes.map(crate::size::human).unwrap_or_else(|| "-".into()),
                if s.complete { "yes".into() } else { "NO".into() },
                why,
            ]
        })
        .collect();
    // DONE NO: the backup that wrote it did not finish; never restore from it.
    table::render(&["ID", "TIME", "BACKUP", "SIZE", "DONE", "WHY"], &rows)
}
