//! The pure decisions of the BackupPolicy controller: the name of a slot's Backup, whether the policy is
//! stale, whether a backup's size is anomalous. No API calls here, so every rule has a unit test. Which
//! slot is due is decided in [`crate::slots`], shared with the RestoreDrill controller.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::backup_policy::SizeAnomaly;

/// The deterministic name of a slot's Backup: a restarted operator computes the same name and the
/// apiserver refuses a second one.
pub fn backup_name_for_slot(policy: &str, slot: Timestamp) -> String {
    super::super::status::child_name(policy, &slot.as_second().to_string(), 253)
}
/// Whether the policy is stale now, and when it will turn stale if not. Without any success the clock
/// starts at the policy's creation: a policy that never succeeded turns stale after one RPO.
pub fn staleness(
    rpo: Duration,
    last_success: Option<Timestamp>,
    created: Timestamp,
    now: Timestamp,
) -> (bool, Timestamp) {
    let since = last_success.unwrap_or(created);
    let turns_stale_at = since + jiff::SignedDuration::try_from(rpo).unwrap_or(jiff::SignedDuration::MAX);
    (now >= turns_stale_at, turns_stale_at)
}

/// A warning when `size` leaves the band around the median of `recent` (earlier successes).
pub fn size_anomaly(band: &SizeAnomaly, recent: &[i64], size: i64) -> Option<String> {
    if recent.is_empty() {
        return None;
    }
    let mut sorted = recent.to_vec();
    sorted.sort_unstable();
    let middle = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) as f64 / 2.0
    } else {
        sorted[middle] as f64
    };
    if median <= 0.0 {
        return None;
    }
    let ratio = size as f64 / median;
    if ratio < band.min_ratio || ratio > band.max_ratio {
        Some(format!(
            "backup size {size} bytes is {:.0}% of the median of the last {} backups ({median:.0} bytes); expected {:.0}%–{:.0}%",
            ratio * 100.0,
            recent.len(),
            band.min_ratio * 100.0,
            band.max_ratio * 100.0
        ))
    } else {
        None
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_policy_whose_last_success_is_older_than_its_rpo_turns_stale() {
        let rpo = Duration::from_secs(24 * 3600);
        let (stale, at_) = staleness(
            rpo,
            Some(at("2026-05-01T02:00:00Z")),
            at("2026-01-01T00:00:00Z"),
            at("2026-05-02T01:59:00Z"),
        );
        assert!(!stale);
        assert_eq!(at_, at("2026-05-02T02:00:00Z"));
        let (stale, _) = staleness(
            rpo,
            Some(at("2026-05-01T02:00:00Z")),
            at("2026-01-01T00:00:00Z"),
            at("2026-05-02T02:00:01Z"),
        );
        assert!(stale);
        let (never, _) = staleness(rpo, None, at("2026-05-01T00:00:00Z"), at("2026-05-02T00:00:01Z"));
        assert!(never, "a policy that never succeeded is stale after one RPO");
    }

    #[test]
    fn sizes_outside_the_crm_runbook_band_are_anomalies() {
        let band = SizeAnomaly {
            min_ratio: 0.7,
            max_ratio: 1.5,
            window: 5,
        };
        let recent = [100, 110, 90, 105, 95];
        assert_eq!(size_anomaly(&band, &recent, 100), None);
        assert_eq!(size_anomaly(&band, &recent, 71), None);
        let shrunk = size_anomaly(&band, &recent, 60).expect("-40% is an anomaly");
        assert!(shrunk.contains("60%"), "{shrunk}");
        assert!(size_anomaly(&band, &recent, 160).is_some());
        assert_eq!(size_anomaly(&band, &[], 1), None, "no baseline yet");
    }
}
