//! How far a long backup or restore is, for `kubectl get bk/rst` while it runs: the agent prints one
//! `lifeboat-progress: {...}` line to stdout at most every `INTERVAL`, and the operator reads the newest
//! from the Pod's log (the agent has no API access by design) into the object's `status.progress`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::ChildStdout;
use tokio::task::JoinHandle;

/// Starts each progress line.
pub const PROGRESS_PREFIX: &str = "lifeboat-progress: ";
/// Often enough for a person watching `kubectl get -w`, rare enough to keep the log readable.
const INTERVAL: Duration = Duration::from_secs(2);

/// One progress report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Bytes of the dump (or files) read so far.
    pub bytes_done: u64,
    /// The whole size, when known (a restore and a files backup know it; a dump's only at its end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    /// The average rate since the transfer started.
    pub bytes_per_second: u64,
}

/// Prints progress lines at a bounded rate.
pub struct Reporter {
    started: Instant,
    last: Option<Instant>,
    interval: Duration,
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter {
            started: Instant::now(),
            last: None,
            interval: INTERVAL,
        }
    }
}

impl Reporter {
    /// Prints a line for `bytes_done` if the last one is older than the interval (the first waits one
    /// interval too: a transfer that ends sooner needs no progress).
    pub fn report(&mut self, bytes_done: u64, total_bytes: Option<u64>) {
        let now = Instant::now();
        let since = self.last.unwrap_or(self.started);
        if now.duration_since(since) < self.interval {
            return;
        }
        self.last = Some(now);
        let seconds = now.duration_since(self.started).as_secs_f64().max(0.001);
        let progress = Progress {
            bytes_done,
            total_bytes,
            bytes_per_second: (bytes_done as f64 / seconds) as u64,
        };
        if let Ok(line) = serde_json::to_string(&progress) {
            println!("{PROGRESS_PREFIX}{line}");
        }
    }
}

/// How far a `restic backup --json` is, from one of its status lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResticStatus {
    /// Bytes read so far.
    pub bytes_done: u64,
    /// What restic's scan found to read: known for a directory, never for a dump on stdin.
    pub total_bytes: Option<u64>,
}

/// restic's own progress, from one of its `backup --json` status lines (None for any other line).
pub fn restic_status(line: &str) -> Option<ResticStatus> {
    #[derive(Deserialize)]
    struct Status {
        message_type: String,
        #[serde(default)]
        bytes_done: u64,
        #[serde(default)]
        total_bytes: u64,
    }
    serde_json::from_str::<Status>(line)
        .ok()
        .filter(|s| s.message_type == "status")
        .map(|s| ResticStatus {
            bytes_done: s.bytes_done,
            // 0 until the scan has counted anything, and always for stdin.
            total_bytes: Some(s.total_bytes).filter(|total| *total > 0),
        })
}

/// Keeps the JSON stdout of `restic backup --json` for its summary. Status lines are not kept (a long
/// backup prints thousands of them): they become the agent's own progress lines, a few per minute.
pub fn keep_restic_backup_output(stdout: Option<ChildStdout>) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut kept = String::new();
        let Some(stdout) = stdout else { return kept };
        let mut progress = Reporter::default();
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => match restic_status(&line) {
                    Some(status) => progress.report(status.bytes_done, status.total_bytes),
                    None => {
                        kept.push_str(&line);
                        kept.push('\n');
                    }
                },
                Ok(None) => break,
                // A line that is not UTF-8: stop reading lines, but drain the pipe, or restic would
                // block writing to it and never finish.
                Err(_) => {
                    let mut rest = lines.into_inner();
                    let _ = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
                    break;
                }
            }
        }
        kept
    })
}

/// The newest progress line in a log.
pub fn newest_progress(log: &str) -> Option<Progress> {
    log.lines()
        .rev()
        .find_map(|line| line.strip_prefix(PROGRESS_PREFIX))
        .and_then(|json| serde_json::from_str(json).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_status_lines_give_bytes_done_and_total_and_the_newest_progress_line_is_read_back() {
        let status = r#"{"message_type":"status","seconds_elapsed":3,"percent_done":0,"total_files":1,"files_done":0,"total_bytes":0,"bytes_done":7340032}"#;
        assert_eq!(
            restic_status(status),
            Some(ResticStatus {
                bytes_done: 7_340_032,
                total_bytes: None
            })
        );
        let scanned = r#"{"message_type":"status","percent_done":0.5,"total_files":3,"total_bytes":200,"bytes_done":100}"#;
        assert_eq!(
            restic_status(scanned),
            Some(ResticStatus {
                bytes_done: 100,
                total_bytes: Some(200)
            })
        );
        assert_eq!(
            restic_status(r#"{"message_type":"summary","bytes_done":1}"#),
            None
        );
        let log = format!(
            "[pg_dump] starting\n{PROGRESS_PREFIX}{{\"bytesDone\":10,\"bytesPerSecond\":5}}\n\
             {PROGRESS_PREFIX}{{\"bytesDone\":20,\"totalBytes\":40,\"bytesPerSecond\":6}}\n[restic] done\n"
        );
        assert_eq!(
            newest_progress(&log),
            Some(Progress {
                bytes_done: 20,
                total_bytes: Some(40),
                bytes_per_second: 6
            })
        );
        assert_eq!(newest_progress("nothing"), None);
    }

    #[test]
    fn reports_are_spaced_by_the_interval() {
        let mut reporter = Reporter {
            interval: Duration::from_secs(3600),
            ..Reporter::default()
        };
        reporter.last = Some(Instant::now());
        // Within the interval nothing is due; `last` stays where it was.
        let before = reporter.last;
        reporter.report(1, None);
        assert_eq!(reporter.last, before);
        reporter.interval = Duration::ZERO;
        reporter.report(2, None);
        assert!(reporter.last > before);
    }
}
