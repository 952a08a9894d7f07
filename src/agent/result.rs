//! The JSON result every mode ends with (format documented in docs/agent-result.md).
//!
//! The controller reads it from the Pod's termination message, which Kubernetes caps at 4096 bytes, so
//! the writer keeps it under `MAX_RESULT_BYTES` by dropping detail before it would ever drop the verdict.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::Reason;
use crate::api::common::CheckResult;

pub const RESULT_VERSION: u32 = 1;
/// Below Kubernetes' 4096-byte termination message limit, with room to spare.
pub const MAX_RESULT_BYTES: usize = 3584;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Backup,
    Restore,
    Verify,
    Prune,
    Check,
    Snapshots,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Backup => "backup",
            Mode::Restore => "restore",
            Mode::Verify => "verify",
            Mode::Prune => "prune",
            Mode::Check => "check",
            Mode::Snapshots => "snapshots",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentResult {
    pub version: u32,
    pub mode: Mode,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339, UTC.
    pub start_time: String,
    pub completion_time: String,
    pub duration_seconds: f64,
    /// postgres, mysql or files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The snapshot written (backup) or read (restore): the full restic id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_time: Option<String>,
    /// Bytes of the dump stream (or of the files, for a file backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// sha256 of the dump stream; absent for file backups, which restic hashes file by file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Bytes restic added to the repository (after deduplication and compression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks_passed: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks_failed: Option<usize>,
    /// Prune: snapshots kept and removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots_kept: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots_removed: Option<usize>,
}

impl AgentResult {
    pub fn new(mode: Mode, started: jiff::Timestamp) -> Self {
        AgentResult {
            version: RESULT_VERSION,
            mode,
            ok: false,
            reason: None,
            message: None,
            start_time: started.to_string(),
            completion_time: started.to_string(),
            duration_seconds: 0.0,
            kind: None,
            snapshot_id: None,
            snapshot_time: None,
            size_bytes: None,
            sha256: None,
            added_bytes: None,
            checks: Vec::new(),
            checks_passed: None,
            checks_failed: None,
            snapshots_kept: None,
            snapshots_removed: None,
        }
    }

    pub fn set_checks(&mut self, checks: Vec<CheckResult>) {
        self.checks_passed = Some(checks.iter().filter(|c| c.passed).count());
        self.checks_failed = Some(checks.iter().filter(|c| !c.passed).count());
        self.checks = checks;
    }

    /// Serialises the result within `MAX_RESULT_BYTES`, shedding detail in order of least use: long
    /// check messages, then passed checks (their count stays), then failed checks, then the message tail.
    pub fn to_bounded_json(&self) -> String {
        let mut result = self.clone();
        let fits = |r: &AgentResult| {
            serde_json::to_string(r)
                .map(|s| s.len() <= MAX_RESULT_BYTES)
                .unwrap_or(false)
        };
        if !fits(&result) {
            for check in &mut result.checks {
                if let Some(message) = &check.message {
                    check.message = Some(super::error::truncate(message, 80));
                }
            }
        }
        if !fits(&result) {
            result.checks.retain(|c| !c.passed);
        }
        while !fits(&result) && !result.checks.is_empty() {
            result.checks.pop();
        }
        if !fits(&result) {
            if let Some(message) = &result.message {
                result.message = Some(super::error::truncate(message, 500));
            }
        }
        serde_json::to_string(&result).unwrap_or_else(|_| {
            format!(
                r#"{{"version":{RESULT_VERSION},"mode":"{}","ok":{}}}"#,
                self.mode.as_str(),
                self.ok
            )
        })
    }
}

/// Writes the result where Kubernetes picks it up. The default path only exists inside a container, so
/// a missing default is not an error; a path the caller chose must be writable.
pub fn write_result(json: &str, path: &Path, explicit: bool) -> Result<(), std::io::Error> {
    if !explicit && !path.exists() {
        return Ok(());
    }
    std::fs::write(path, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started() -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_767_225_600).expect("valid timestamp")
    }

    #[test]
    fn a_result_with_many_checks_stays_under_the_termination_message_limit() {
        let mut result = AgentResult::new(Mode::Restore, started());
        let checks = (0..200)
            .map(|i| CheckResult {
                name: format!("table-{i}-has-rows"),
                passed: i % 7 != 0,
                message: Some("x".repeat(300)),
            })
            .collect();
        result.set_checks(checks);
        result.message = Some("m".repeat(3000));
        let json = result.to_bounded_json();
        assert!(json.len() <= MAX_RESULT_BYTES, "{} bytes", json.len());
        let back: AgentResult = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(back.checks_failed, Some(29));
        assert_eq!(back.checks_passed, Some(171));
    }

    #[test]
    fn the_format_is_versioned_camel_case() {
        let mut result = AgentResult::new(Mode::Backup, started());
        result.ok = true;
        result.snapshot_id = Some("abc".into());
        result.size_bytes = Some(42);
        let json = result.to_bounded_json();
        assert!(
            json.starts_with(r#"{"version":1,"mode":"backup","ok":true,"#),
            "{json}"
        );
        assert!(json.contains(r#""sizeBytes":42"#), "{json}");
    }
}
