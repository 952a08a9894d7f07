//! Prometheus metrics on the operator's `/metrics`. Backup health gauges are set from the policies'
//! status on every reconcile, so they are right after a restart or a move to another node.

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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    pub error: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub last_success_timestamp: Family<PolicyLabels, Gauge<f64, AtomicU64>>,
    pub last_size_bytes: Family<PolicyLabels, Gauge>,
    pub stale: Family<PolicyLabels, Gauge>,
    pub failures_total: Family<PolicyLabels, Gauge>,
    pub duration_seconds: Family<PolicyLabels, Histogram>,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("lifeboat");
        let last_success_timestamp = Family::<PolicyLabels, Gauge<f64, AtomicU64>>::default();
        let last_size_bytes = Family::<PolicyLabels, Gauge>::default();
        let stale = Family::<PolicyLabels, Gauge>::default();
        let failures_total = Family::<PolicyLabels, Gauge>::default();
        let duration_seconds = Family::<PolicyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0])
        });
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "backup_last_success_timestamp_seconds",
            "Unix time of the newest successful backup of a policy (from its status)",
            last_success_timestamp.clone(),
        );
        registry.register("backup_last_size_bytes", "Size of the newest successful backup's dump", last_size_bytes.clone());
        registry.register("backup_stale", "1 when the newest successful backup is older than the policy's RPO", stale.clone());
        // A gauge from status.failedBackups rather than an in-memory counter, so it survives restarts;
        // use increase()/changes() on it as on a counter.
        registry.register("backup_failures", "Failed backups of a policy since it was created (from its status)", failures_total.clone());
        registry.register("backup_duration_seconds", "Duration of successful backups", duration_seconds.clone());
        registry.register("reconciles", "Reconciles by kind", reconciles.clone());
        registry.register("reconcile_errors", "Reconcile errors by kind and error", reconcile_errors.clone());
        Self {
            registry,
            last_success_timestamp,
            last_size_bytes,
            stale,
            failures_total,
            duration_seconds,
            reconciles,
            reconcile_errors,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn reconciled(&self, kind: &str) {
        self.reconciles.get_or_create(&ReconcileLabels { kind: kind.to_owned() }).inc();
    }

    pub fn reconcile_failed(&self, kind: &str, error: &str) {
        self.reconcile_errors.get_or_create(&ErrorLabels { kind: kind.to_owned(), error: error.to_owned() }).inc();
    }
}
