//! `lifeboat agent snapshots`: one policy's snapshots as the agent sees them, for `kubectl lifeboat
//! snapshots`, which runs this mode in a Job (people need no restic, no repository password and no
//! network path to the repository) and reads the one listing line from the Pod's log.

use serde::{Deserialize, Serialize};

use super::cli::SnapshotsArgs;
use super::error::AgentError;
use super::process::Redactor;
use super::restic::{Restic, Snapshot, TAG_KIND};
use super::result::AgentResult;

/// Starts the one stdout line that carries the listing (the log also has the tools' stderr and the result).
pub const LISTING_PREFIX: &str = "lifeboat-snapshots: ";

/// A snapshot as people pick one to restore: when, which Backup made it, why, how big, and whether the
/// backup that wrote it finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedSnapshot {
    pub id: String,
    pub time: String,
    /// postgres, mysql or files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The dump's size (a database snapshot) or the bytes the backup read (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// False for a snapshot left by a backup that did not finish: never restore from it.
    pub complete: bool,
}

impl From<&Snapshot> for ListedSnapshot {
    fn from(snapshot: &Snapshot) -> Self {
        let tag = |key: &str| snapshot.tag_value(key).map(str::to_owned);
        ListedSnapshot {
            id: snapshot.id.clone(),
            time: snapshot.time.clone(),
            kind: tag(TAG_KIND),
            backup: tag("backup"),
            trigger: tag("trigger"),
            // A tag holds no spaces: the agent wrote them as `_` (and commas as `;`, left as they are).
            reason: tag("reason").map(|r| r.replace('_', " ")),
            bytes: snapshot
                .expected_sizes()
                .first()
                .copied()
                .or_else(|| snapshot.summary.as_ref().map(|s| s.total_bytes_processed)),
            complete: snapshot.is_complete(),
        }
    }
}

pub async fn run(
    args: &SnapshotsArgs,
    result: &mut AgentResult,
    redactor: &Redactor,
) -> Result<(), AgentError> {
    let restic = Restic::new(&args.repo, redactor)?;
    restic.ensure_repository(false).await?;
    let snapshots = restic.snapshots(&args.tags).await?;
    let listed: Vec<ListedSnapshot> = snapshots.iter().map(ListedSnapshot::from).collect();
    let line = serde_json::to_string(&listed).map_err(|e| AgentError::internal("writing the listing", e))?;
    println!("{LISTING_PREFIX}{}", redactor.redact(&line));
    result.snapshots_kept = Some(listed.len());
    Ok(())
}

/// The listing in a Pod's log, if the agent wrote one.
pub fn find_listing(log: &str) -> Option<Result<Vec<ListedSnapshot>, serde_json::Error>> {
    log.lines()
        .rev()
        .find_map(|line| line.strip_prefix(LISTING_PREFIX))
        .map(serde_json::from_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_line_is_found_among_the_tools_output_and_read_back() {
        let snapshot: Snapshot = serde_json::from_value(serde_json::json!({
            "id": "4f1c2a9e00000000000000000000000000000000000000000000000000000000",
            "time": "2026-12-03T10:00:00Z",
            "tags": ["lifeboat-kind=postgres", "backup=orders-manual-x", "trigger=Manual",
                     "reason=before_release_2.4", "policy=orders", "namespace=shop"],
            "summary": {"total_bytes_processed": 4096, "total_files_processed": 1}
        }))
        .unwrap();
        let listed = ListedSnapshot::from(&snapshot);
        assert_eq!(listed.reason.as_deref(), Some("before release 2.4"));
        assert_eq!(listed.bytes, Some(4096));
        assert!(listed.complete);
        let log = format!(
            "[restic] repository 1234 opened\n{LISTING_PREFIX}{}\n{{\"version\":1}}\n",
            serde_json::to_string(&vec![listed.clone()]).unwrap()
        );
        assert_eq!(find_listing(&log).unwrap().unwrap(), vec![listed]);
        assert!(find_listing("no listing here").is_none());
    }
}
