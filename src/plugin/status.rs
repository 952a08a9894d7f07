//! `kubectl lifeboat status`: policies, drills and Cutovers on one screen, or as JSON/YAML.

use jiff::Timestamp;
use kube::api::ListParams;
use kube::ResourceExt;
use serde::Serialize;

use super::cli::Format;
use super::kube_client::Session;
use super::{table, PluginError};
use crate::api::backup::BackupPhase;
use crate::api::{Backup, BackupPolicy, Cutover, RestoreDrill};
use crate::conditions;
use crate::duration::format_duration;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    backup_policies: Vec<PolicyRow>,
    restore_drills: Vec<DrillRow>,
    cutovers: Vec<CutoverRow>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyRow {
    namespace: String,
    name: String,
    /// Time of the newest successful backup.
    last_success: Option<String>,
    /// How old that backup is now, e.g. 3h12m.
    age: Option<String>,
    rpo: Option<String>,
    /// What needs a look: stale, size anomaly, repository unhealthy, failing, suspended.
    problems: Vec<String>,
    /// A Backup of the policy running now, with its progress, e.g. `orders-manual-x: 4.4 MiB at 1.0 MiB/s`.
    running: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DrillRow {
    namespace: String,
    name: String,
    last_drill: Option<String>,
    measured_rto: Option<String>,
    rto_target: Option<String>,
    measured_rpo: Option<String>,
    rpo_target: Option<String>,
    passed: Option<bool>,
    overdue: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CutoverRow {
    namespace: String,
    name: String,
    phase: Option<String>,
    step: Option<String>,
    active: Option<String>,
    /// The running step's message: what it waits for.
    waiting_for: Option<String>,
}

pub async fn show(session: &Session, format: Option<Format>) -> Result<(), PluginError> {
    let report = gather(session).await?;
    let text = match format {
        Some(format) => format.render(&report, "the status")?,
        None => screen(&report, session.all_namespaces),
    };
    println!("{}", text.trim_end());
    Ok(())
}

async fn gather(session: &Session) -> Result<Report, PluginError> {
    let params = ListParams::default();
    let policies = session
        .list_api::<BackupPolicy>()
        .list(&params)
        .await
        .map_err(PluginError::api("listing BackupPolicies"))?;
    let drills = session
        .list_api::<RestoreDrill>()
        .list(&params)
        .await
        .map_err(PluginError::api("listing RestoreDrills"))?;
    let backups = session
        .list_api::<Backup>()
        .list(&params)
        .await
        .map_err(PluginError::api("listing Backups"))?;
    let cutovers = session
        .list_api::<Cutover>()
        .list(&params)
        .await
        .map_err(PluginError::api("listing Cutovers"))?;
    let now = Timestamp::now();
    Ok(Report {
        backup_policies: policies
            .items
            .iter()
            .map(|p| policy_row(p, &backups.items, now))
            .collect(),
        restore_drills: drills.items.iter().map(drill_row).collect(),
        cutovers: cutovers.items.iter().map(cutover_row).collect(),
    })
}

/// The policy's running Backup (the newest, if several), with how far it is.
fn running_backup(policy: &BackupPolicy, backups: &[Backup]) -> Option<String> {
    backups
        .iter()
        .filter(|b| b.namespace() == policy.namespace() && b.spec.policy_ref.name == policy.name_any())
        .filter(|b| b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Running))
        .max_by_key(|b| b.creation_timestamp().map(|t| t.0))
        .map(|b| {
            let progress = b.status.as_ref().and_then(|s| s.progress.as_ref());
            match progress {
                Some(progress) => format!("{}: {}", b.name_any(), progress.summary),
                None => b.name_any(),
            }
        })
}

fn policy_row(policy: &BackupPolicy, backups: &[Backup], now: Timestamp) -> PolicyRow {
    let status = policy.status.clone().unwrap_or_default();
    let found = |type_| conditions::find(&status.conditions.0, type_).map(|c| c.status == "True");
    let mut problems = Vec::new();
    if found("Stale") == Some(true) {
        problems.push("STALE".to_owned());
    }
    if found("SizeAnomaly") == Some(true) {
        problems.push("size anomaly".to_owned());
    }
    if found("RepositoryHealthy") == Some(false) {
        problems.push("repository unhealthy".to_owned());
    }
    let failing = match (&status.last_failure, &status.last_successful_backup) {
        (Some(failure), Some(success)) => failure.time.0 > success.time.0,
        (Some(_), None) => true,
        _ => false,
    };
    if failing {
        problems.push("last backup failed".to_owned());
    }
    if policy.spec.suspend {
        problems.push("suspended".to_owned());
    }
    let last = status.last_successful_backup.as_ref();
    PolicyRow {
        namespace: policy.namespace().unwrap_or_default(),
        name: policy.name_any(),
        last_success: last.map(|b| b.time.0.to_string()),
        age: last.map(|b| age(now, b.time.0)),
        rpo: policy.spec.rpo.as_ref().map(|r| r.0.clone()),
        problems,
        running: running_backup(policy, backups),
    }
}

fn drill_row(drill: &RestoreDrill) -> DrillRow {
    let status = drill.status.clone().unwrap_or_default();
    let last = status.last_drill.as_ref();
    DrillRow {
        namespace: drill.namespace().unwrap_or_default(),
        name: drill.name_any(),
        last_drill: last.map(|d| d.start_time.0.to_string()),
        measured_rto: last.and_then(|d| d.measured_rto.clone()),
        rto_target: drill.spec.rto.as_ref().map(|d| d.0.clone()),
        measured_rpo: last.and_then(|d| d.measured_rpo.clone()),
        rpo_target: drill.spec.rpo.as_ref().map(|d| d.0.clone()),
        passed: last.and_then(|d| d.passed),
        overdue: conditions::is_true(&status.conditions.0, "Overdue"),
    }
}

fn cutover_row(cutover: &Cutover) -> CutoverRow {
    let status = cutover.status.clone().unwrap_or_default();
    let running = status
        .steps
        .last()
        .filter(|step| step.completion_time.is_none())
        .and_then(|step| step.message.clone());
    CutoverRow {
        namespace: cutover.namespace().unwrap_or_default(),
        name: cutover.name_any(),
        phase: status.phase.map(|p| p.name().to_owned()),
        step: status.step.clone(),
        active: status.active.map(|side| format!("{side:?}").to_lowercase()),
        waiting_for: running,
    }
}

fn age(now: Timestamp, then: Timestamp) -> String {
    let seconds = now.duration_since(then).as_secs().max(0) as u64;
    // Whole minutes past an hour: "3h12m", not "3h12m7s".
    let rounded = if seconds >= 3600 {
        seconds / 60 * 60
    } else {
        seconds
    };
    format_duration(std::time::Duration::from_secs(rounded))
}

fn screen(report: &Report, all_namespaces: bool) -> String {
    let with_namespace = |namespace: &str, mut row: Vec<String>| {
        if all_namespaces {
            row.insert(0, namespace.to_owned());
        }
        row
    };
    let header = |columns: &[&'static str]| -> Vec<&'static str> {
        let mut header = columns.to_vec();
        if all_namespaces {
            header.insert(0, "NAMESPACE");
        }
        header
    };
    let dash = || "-".to_owned();
    let mut out = String::new();

    out.push_str("BACKUP POLICIES\n");
    let rows: Vec<Vec<String>> = report
        .backup_policies
        .iter()
        .map(|p| {
            let age = match (&p.age, &p.rpo) {
                (Some(age), Some(rpo)) => format!("{age} / {rpo}"),
                (Some(age), None) => age.clone(),
                (None, Some(rpo)) => format!("never / {rpo}"),
                (None, None) => "never".into(),
            };
            let mut state = if p.problems.is_empty() {
                "ok".into()
            } else {
                p.problems.join(", ")
            };
            if let Some(running) = &p.running {
                state.push_str(&format!("; backing up {running}"));
            }
            with_namespace(&p.namespace, vec![p.name.clone(), age, state])
        })
        .collect();
    out.push_str(&section(&header(&["NAME", "AGE / RPO", "STATE"]), &rows));

    out.push_str("\nRESTORE DRILLS\n");
    let versus = |measured: &Option<String>, target: &Option<String>| match (measured, target) {
        (Some(m), Some(t)) => format!("{m} / {t}"),
        (Some(m), None) => m.clone(),
        (None, Some(t)) => format!("- / {t}"),
        (None, None) => dash(),
    };
    let rows: Vec<Vec<String>> = report
        .restore_drills
        .iter()
        .map(|d| {
            let result = match (d.passed, d.overdue) {
                (_, true) => "OVERDUE".into(),
                (Some(true), _) => "passed".into(),
                (Some(false), _) => "FAILED".into(),
                (None, _) => "not run yet".into(),
            };
            with_namespace(
                &d.namespace,
                vec![
                    d.name.clone(),
                    d.last_drill.clone().unwrap_or_else(dash),
                    versus(&d.measured_rto, &d.rto_target),
                    versus(&d.measured_rpo, &d.rpo_target),
                    result,
                ],
            )
        })
        .collect();
    out.push_str(&section(
        &header(&["NAME", "LAST DRILL", "RTO / TARGET", "RPO / TARGET", "RESULT"]),
        &rows,
    ));

    out.push_str("\nCUTOVERS\n");
    let rows: Vec<Vec<String>> = report
        .cutovers
        .iter()
        .map(|c| {
            with_namespace(
                &c.namespace,
                vec![
                    c.name.clone(),
                    c.phase.clone().unwrap_or_else(|| "Pending".into()),
                    c.step.clone().unwrap_or_else(dash),
                    c.active.clone().unwrap_or_else(dash),
                    c.waiting_for.clone().unwrap_or_default(),
                ],
            )
        })
        .collect();
    out.push_str(&section(
        &header(&["NAME", "PHASE", "STEP", "ACTIVE", "WAITING FOR"]),
        &rows,
    ));
    out
}

fn section(header: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "(none)\n".to_owned();
    }
    table::render(header, rows)
}
