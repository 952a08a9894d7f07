//! `lifeboat agent prune` and `lifeboat agent check`: repository upkeep (the CRM runbook's monthly
//! `restic check`, and retention).

use super::cli::{CheckArgs, PruneArgs};
use super::error::AgentError;
use super::process::Redactor;
use super::restic::{Restic, TAG_INCOMPLETE};
use super::result::AgentResult;

/// Unfinished snapshots younger than this may belong to a backup that is confirming right now.
const INCOMPLETE_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_hours(6);

pub async fn prune(
    args: &PruneArgs,
    result: &mut AgentResult,
    redactor: &Redactor,
) -> Result<(), AgentError> {
    let policy = retention_flags(args);
    if policy.is_empty() {
        return Err(AgentError::InvalidArguments(
            "no retention given: pass at least one of --keep-last/--keep-hourly/--keep-daily/--keep-weekly/--keep-monthly/--keep-yearly".into(),
        ));
    }
    for tag in &args.tags {
        if tag.is_empty() || tag.contains(',') {
            return Err(AgentError::InvalidArguments(format!(
                "tag filter {tag:?} must be non-empty and without commas"
            )));
        }
    }
    let restic = Restic::new(&args.repo, redactor)?;
    restic.ensure_repository(false).await?;
    // A Job killed earlier leaves its lock behind; restic removes only locks whose process is gone.
    restic.unlock_stale().await?;

    // Unfinished snapshots would otherwise take retention slots from real backups (keep-last 7 could keep
    // seven failures and forget the last good dump).
    let mut filter = args.tags.clone();
    filter.push(TAG_INCOMPLETE.to_string());
    let cutoff = jiff::Timestamp::now() - INCOMPLETE_GRACE;
    let stale: Vec<String> = restic
        .snapshots(&filter)
        .await?
        .into_iter()
        .filter(|s| s.timestamp().is_some_and(|t| t < cutoff))
        .map(|s| s.id)
        .collect();
    if !stale.is_empty() {
        eprintln!("lifeboat: forgetting {} unfinished snapshot(s)", stale.len());
        restic.forget(&stale).await?;
    }

    // The keep rules decide, then held snapshots are taken out of what they would forget: restic's own
    // --keep-tag would need a tag on the snapshot, and changing a tag rewrites the snapshot's id.
    let (kept, would_forget) = restic.retention_plan(&policy, &args.tags).await?;
    let (held, forget): (Vec<String>, Vec<String>) = would_forget
        .into_iter()
        .partition(|id| args.held.iter().any(|hold| same_snapshot(id, hold)));
    if !held.is_empty() {
        eprintln!(
            "lifeboat: keeping {} held snapshot(s) the rules would forget: {}",
            held.len(),
            held.iter()
                .map(|id| &id[..id.len().min(8)])
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    restic.forget(&forget).await?;
    // As `forget --prune` did: prune (an exclusive lock and a scan of every pack) only when a snapshot went.
    let forgot_any = !forget.is_empty() || !stale.is_empty();
    if !args.no_prune && forgot_any {
        restic.prune().await?;
    }
    result.snapshots_kept = Some(kept.len() + held.len());
    result.snapshots_removed = Some(forget.len() + stale.len());
    Ok(())
}

/// A full snapshot id and an abbreviation of it name the same snapshot.
fn same_snapshot(id: &str, hold: &str) -> bool {
    !hold.is_empty() && (id.starts_with(hold) || hold.starts_with(id))
}

fn retention_flags(args: &PruneArgs) -> Vec<String> {
    [
        ("--keep-last", args.keep_last),
        ("--keep-hourly", args.keep_hourly),
        ("--keep-daily", args.keep_daily),
        ("--keep-weekly", args.keep_weekly),
        ("--keep-monthly", args.keep_monthly),
        ("--keep-yearly", args.keep_yearly),
    ]
    .into_iter()
    .filter_map(|(flag, value)| {
        value
            .filter(|v| *v > 0)
            .map(|v| [flag.to_string(), v.to_string()])
    })
    .flatten()
    .collect()
}

pub async fn check(args: &CheckArgs, redactor: &Redactor) -> Result<(), AgentError> {
    let restic = Restic::new(&args.repo, redactor)?;
    restic.ensure_repository(false).await?;
    restic.unlock_stale().await?;
    restic.check(args.read_data_subset.as_deref()).await
}
