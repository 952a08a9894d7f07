//! BackupPolicy and Backup series. The gauges mirror each policy's status, so a new leader (or the
//! same one after a restart) serves them as soon as it has read the policy.

use super::{seconds_since_epoch, DURATION_BUCKETS};
use crate::api::backup_policy::BackupPolicyStatus;
use crate::conditions;
use crate::controller::backup_policy::{health::REPOSITORY_HEALTHY, SIZE_ANOMALY, STALE};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub namespace: String,
    pub policy: String,
}

impl PolicyLabels {
    pub fn new(namespace: &str, policy: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            policy: policy.to_owned(),
        }
    }
}

pub struct BackupMetrics {
    pub last_success_timestamp: Family<PolicyLabels, Gauge<f64, AtomicU64>>,
    pub last_failure_timestamp: Family<PolicyLabels, Gauge<f64, AtomicU64>>,
    pub last_size_bytes: Family<PolicyLabels, Gauge>,
    pub stale: Family<PolicyLabels, Gauge>,
    pub size_anomaly: Family<PolicyLabels, Gauge>,
    pub repository_healthy: Family<PolicyLabels, Gauge>,
    pub failures_total: Family<PolicyLabels, Counter>,
    pub duration_seconds: Family<PolicyLabels, Histogram>,
}

impl BackupMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            last_success_timestamp: Family::default(),
            last_failure_timestamp: Family::default(),
            last_size_bytes: Family::default(),
            stale: Family::default(),
            size_anomaly: Family::default(),
            repository_healthy: Family::default(),
            failures_total: Family::default(),
            duration_seconds: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
        };
        registry.register(
            "backup_last_success_timestamp_seconds",
            "Unix time of the newest successful backup of a policy (from its status)",
            metrics.last_success_timestamp.clone(),
        );
        registry.register(
            "backup_last_failure_timestamp_seconds",
            "Unix time of the newest failed backup of a policy (from its status; absent until one failed)",
            metrics.last_failure_timestamp.clone(),
        );
        registry.register(
            "backup_last_size_bytes",
            "Size of the newest successful backup's dump",
            metrics.last_size_bytes.clone(),
        );
        registry.register(
            "backup_stale",
            "1 when the newest successful backup is older than the policy's RPO",
            metrics.stale.clone(),
        );
        registry.register(
            "backup_size_anomaly",
            "1 when the newest backup's size left the policy's sizeAnomaly band (its SizeAnomaly condition)",
            metrics.size_anomaly.clone(),
        );
        registry.register(
            "repository_healthy",
            "1 when the policy's newest restic check and retention run passed, 0 when one failed (absent until one ran)",
            metrics.repository_healthy.clone(),
        );
        // A counter that follows status.failedBackups (which only grows), so after a restart it resumes
        // from the recorded count instead of from zero; prometheus-client adds the `_total` suffix.
        registry.register(
            "backup_failures",
            "Failed backups of a policy since it was created (from its status)",
            metrics.failures_total.clone(),
        );
        registry.register(
            "backup_duration_seconds",
            "Duration of successful backups",
            metrics.duration_seconds.clone(),
        );
        metrics
    }

    /// Sets the policy's series from its status.
    pub fn export(&self, labels: &PolicyLabels, status: &BackupPolicyStatus) {
        let found = |type_| conditions::find(&status.conditions.0, type_);
        let is_true = |type_| conditions::is_true(&status.conditions.0, type_);
        if let Some(last) = &status.last_successful_backup {
            self.last_success_timestamp
                .get_or_create(labels)
                .set(seconds_since_epoch(&last.time));
            self.last_size_bytes.get_or_create(labels).set(last.size_bytes);
        }
        if let Some(failure) = &status.last_failure {
            self.last_failure_timestamp
                .get_or_create(labels)
                .set(seconds_since_epoch(&failure.time));
        }
        self.stale.get_or_create(labels).set(i64::from(is_true(STALE)));
        self.size_anomaly
            .get_or_create(labels)
            .set(i64::from(is_true(SIZE_ANOMALY)));
        let failures = self.failures_total.get_or_create(labels);
        let recorded = u64::try_from(status.failed_backups.unwrap_or(0)).unwrap_or(0);
        if recorded > failures.get() {
            failures.inc_by(recorded - failures.get());
        }
        match found(REPOSITORY_HEALTHY) {
            Some(condition) => {
                let healthy = i64::from(condition.status == "True");
                self.repository_healthy.get_or_create(labels).set(healthy);
            }
            None => {
                self.repository_healthy.remove(labels);
            }
        }
    }

    pub fn backup_succeeded(&self, labels: &PolicyLabels, seconds: f64) {
        self.duration_seconds.get_or_create(labels).observe(seconds);
    }

    pub(super) fn forget(&self, labels: &PolicyLabels) {
        self.last_success_timestamp.remove(labels);
        self.last_failure_timestamp.remove(labels);
        self.last_size_bytes.remove(labels);
        self.stale.remove(labels);
        self.size_anomaly.remove(labels);
        self.repository_healthy.remove(labels);
        self.failures_total.remove(labels);
        self.duration_seconds.remove(labels);
    }
}
