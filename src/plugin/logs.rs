//! `kubectl lifeboat logs backup|restore|cutover NAME [STEP]`: what the Jobs behind an object wrote,
//! found from its status (no Job or Pod names to look up), each attempt under a header.

use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use kube::ResourceExt;

use super::kube_client::Session;
use super::{pods, PluginError};
use crate::api::{Backup, Cutover, Restore};
use crate::controller::cutover::{step_job_name, CUTOVER_LABEL};
use crate::jobs::BACKUP_LABEL;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogsOf {
    Backup,
    Restore,
    Cutover,
}

pub async fn show(session: &Session, of: LogsOf, name: &str, step: Option<&str>) -> Result<(), PluginError> {
    let jobs = match (of, step) {
        (LogsOf::Backup, None) => backup_jobs(session, name).await?,
        (LogsOf::Restore, None) => restore_jobs(session, name).await?,
        (LogsOf::Cutover, step) => cutover_jobs(session, name, step).await?,
        (_, Some(_)) => {
            return Err(PluginError::Refused(
                "a step names a part of a Cutover: `logs cutover NAME STEP`".into(),
            ))
        }
    };
    let mut printed = 0;
    for job in &jobs {
        for pod in pods::job_pods(session, job).await? {
            let containers: Vec<String> = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
                .collect();
            for container in containers {
                println!("==> Job {job}, Pod {}, container {container} <==", pod.name_any());
                let log = pods::log(session, &pod, Some(&container)).await?;
                print!("{log}");
                if !log.is_empty() && !log.ends_with('\n') {
                    println!();
                }
                printed += 1;
            }
        }
    }
    if printed == 0 {
        return Err(PluginError::Refused(format!(
            "no Pod logs left for {} (Jobs: {}); finished Jobs and their Pods may have been cleaned up",
            describe(of, name, step),
            if jobs.is_empty() {
                "none".to_owned()
            } else {
                jobs.join(", ")
            }
        )));
    }
    Ok(())
}

fn describe(of: LogsOf, name: &str, step: Option<&str>) -> String {
    let kind = match of {
        LogsOf::Backup => "Backup",
        LogsOf::Restore => "Restore",
        LogsOf::Cutover => "Cutover",
    };
    match step {
        Some(step) => format!("step {step} of {kind} {name}"),
        None => format!("{kind} {name}"),
    }
}

async fn backup_jobs(session: &Session, name: &str) -> Result<Vec<String>, PluginError> {
    let backup = session
        .api::<Backup>()
        .get(name)
        .await
        .map_err(PluginError::api(format!(
            "Backup {name} in namespace {}",
            session.namespace
        )))?;
    if let Some(job) = backup.status.and_then(|s| s.job_name) {
        return Ok(vec![job]);
    }
    labelled_jobs(session, &format!("{BACKUP_LABEL}={name}")).await
}

/// The Restore's Jobs in the order they run: the overwrite check, the restore, the smoke test, the drop.
async fn restore_jobs(session: &Session, name: &str) -> Result<Vec<String>, PluginError> {
    let restore = session
        .api::<Restore>()
        .get(name)
        .await
        .map_err(PluginError::api(format!(
            "Restore {name} in namespace {}",
            session.namespace
        )))?;
    let status = restore.status.unwrap_or_default();
    Ok([
        status.check_job_name,
        status.job_name,
        status.smoke_job_name,
        status.drop_job_name,
    ]
    .into_iter()
    .flatten()
    .collect())
}

/// A Cutover's step Jobs (all of them, oldest first, or one step's); the backup step and the rollback's
/// restore lead to their Backup's and Restore's Jobs.
async fn cutover_jobs(session: &Session, name: &str, step: Option<&str>) -> Result<Vec<String>, PluginError> {
    let cutover = session
        .api::<Cutover>()
        .get(name)
        .await
        .map_err(PluginError::api(format!(
            "Cutover {name} in namespace {}",
            session.namespace
        )))?;
    let status = cutover.status.unwrap_or_default();
    match step {
        Some("backup") => match status.backup_ref {
            Some(backup) => backup_jobs(session, &backup.name).await,
            None => Err(PluginError::Refused(format!("Cutover {name} made no Backup"))),
        },
        Some("rollback/restore-database") => match status.restore_ref {
            Some(restore) => restore_jobs(session, &restore.name).await,
            None => Err(PluginError::Refused(format!("Cutover {name} made no Restore"))),
        },
        Some(step) => match step_job_name(name, step) {
            Some(job) => Ok(vec![job]),
            None => {
                let with_jobs: Vec<&str> = status
                    .steps
                    .iter()
                    .map(|s| s.name.as_str())
                    .filter(|s| {
                        step_job_name(name, s).is_some()
                            || *s == "backup"
                            || *s == "rollback/restore-database"
                    })
                    .collect();
                Err(PluginError::Refused(format!(
                    "step {step} of Cutover {name} runs no Job; steps with logs: {}",
                    if with_jobs.is_empty() {
                        "none yet".to_owned()
                    } else {
                        with_jobs.join(", ")
                    }
                )))
            }
        },
        None => {
            let mut jobs = labelled_jobs(session, &format!("{CUTOVER_LABEL}={name}")).await?;
            if let Some(backup) = &status.backup_ref {
                jobs.extend(backup_jobs(session, &backup.name).await?);
            }
            if let Some(restore) = &status.restore_ref {
                jobs.extend(restore_jobs(session, &restore.name).await?);
            }
            in_creation_order(session, jobs).await
        }
    }
}

/// Job names sorted by when the Jobs were made (names of Jobs already gone last).
async fn in_creation_order(session: &Session, names: Vec<String>) -> Result<Vec<String>, PluginError> {
    let mut dated = Vec::new();
    for name in names {
        let job = session
            .api::<Job>()
            .get_opt(&name)
            .await
            .map_err(PluginError::api(format!("Job {name}")))?;
        let created = job.and_then(|j| j.creation_timestamp()).map(|t| t.0);
        dated.push((created.is_none(), created, name));
    }
    dated.sort();
    Ok(dated.into_iter().map(|(_, _, name)| name).collect())
}

async fn labelled_jobs(session: &Session, selector: &str) -> Result<Vec<String>, PluginError> {
    let mut jobs = session
        .api::<Job>()
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(PluginError::api(format!("the Jobs labelled {selector}")))?
        .items;
    jobs.sort_by_key(|job| job.creation_timestamp().map(|t| t.0));
    Ok(jobs.iter().map(ResourceExt::name_any).collect())
}
