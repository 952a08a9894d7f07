//! Prometheus metrics on the operator's `/metrics`. Backup health gauges are set from the policies'
//! status on every reconcile, so they are right after a restart or a move to another node.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub namespace: String,
    pub policy: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RestoreLabels {
    pub namespace: String,
    /// postgres, mysql, files or scratch.
    pub target: String,
    /// succeeded or failed.
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DrillLabels {
    pub namespace: String,
    pub drill: String,
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
    pub repository_healthy: Family<PolicyLabels, Gauge>,
    pub failures_total: Family<PolicyLabels, Counter>,
    pub duration_seconds: Family<PolicyLabels, Histogram>,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub cutover: CutoverMetrics,
    pub restore_duration_seconds: Family<RestoreLabels, Histogram>,
    pub drill_last_rto_seconds: Family<DrillLabels, Gauge<f64, AtomicU64>>,
    pub drill_last_rpo_seconds: Family<DrillLabels, Gauge<f64, AtomicU64>>,
    pub drill_passed: Family<DrillLabels, Gauge>,
    pub drill_last_timestamp: Family<DrillLabels, Gauge<f64, AtomicU64>>,
    /// Every object that has series, so a deleted one's series can be removed (see `forget`).
    exported: Mutex<BTreeSet<Exported>>,
}

/// An object whose series the operator exports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Exported {
    pub kind: ExportedKind,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExportedKind {
    BackupPolicy,
    RestoreDrill,
    Cutover,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("lifeboat");
        let last_success_timestamp = Family::<PolicyLabels, Gauge<f64, AtomicU64>>::default();
        let last_size_bytes = Family::<PolicyLabels, Gauge>::default();
        let stale = Family::<PolicyLabels, Gauge>::default();
        let repository_healthy = Family::<PolicyLabels, Gauge>::default();
        let failures_total = Family::<PolicyLabels, Counter>::default();
        let duration_seconds = Family::<PolicyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
            ])
        });
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let restore_duration_seconds = Family::<RestoreLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
            ])
        });
        let drill_last_rto_seconds = Family::<DrillLabels, Gauge<f64, AtomicU64>>::default();
        let drill_last_rpo_seconds = Family::<DrillLabels, Gauge<f64, AtomicU64>>::default();
        let drill_passed = Family::<DrillLabels, Gauge>::default();
        let drill_last_timestamp = Family::<DrillLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "backup_last_success_timestamp_seconds",
            "Unix time of the newest successful backup of a policy (from its status)",
            last_success_timestamp.clone(),
        );
        registry.register(
            "backup_last_size_bytes",
            "Size of the newest successful backup's dump",
            last_size_bytes.clone(),
        );
        registry.register(
            "backup_stale",
            "1 when the newest successful backup is older than the policy's RPO",
            stale.clone(),
        );
        registry.register(
            "repository_healthy",
            "1 when the policy's newest restic check and retention run passed, 0 when one failed (absent until one ran)",
            repository_healthy.clone(),
        );
        // A counter that follows status.failedBackups (which only grows), so after a restart it resumes
        // from the recorded count instead of from zero; prometheus-client adds the `_total` suffix.
        registry.register(
            "backup_failures",
            "Failed backups of a policy since it was created (from its status)",
            failures_total.clone(),
        );
        registry.register(
            "backup_duration_seconds",
            "Duration of successful backups",
            duration_seconds.clone(),
        );
        registry.register(
            "restore_duration_seconds",
            "Duration of Restores from start to verified (or failed), by target kind and result",
            restore_duration_seconds.clone(),
        );
        // The drill gauges come from each RestoreDrill's status.lastDrill, so they survive restarts.
        registry.register(
            "drill_last_rto_seconds",
            "Measured RTO of the newest finished drill: drill start to verified data",
            drill_last_rto_seconds.clone(),
        );
        registry.register(
            "drill_last_rpo_seconds",
            "Measured RPO of the newest finished drill: age of the restored snapshot at drill start",
            drill_last_rpo_seconds.clone(),
        );
        registry.register(
            "drill_passed",
            "1 when the newest finished drill restored, verified and met its RTO and RPO, else 0",
            drill_passed.clone(),
        );
        registry.register(
            "drill_last_timestamp_seconds",
            "Unix time the newest finished drill started",
            drill_last_timestamp.clone(),
        );
        registry.register("reconciles", "Reconciles by kind", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconcile errors by kind and error",
            reconcile_errors.clone(),
        );
        let cutover = CutoverMetrics::register(&mut registry);
        Self {
            registry,
            last_success_timestamp,
            last_size_bytes,
            stale,
            repository_healthy,
            failures_total,
            duration_seconds,
            reconciles,
            reconcile_errors,
            cutover,
            restore_duration_seconds,
            drill_last_rto_seconds,
            drill_last_rpo_seconds,
            drill_passed,
            drill_last_timestamp,
            exported: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Notes that `kind` `namespace/name` has series now.
    pub fn exported(&self, kind: ExportedKind, namespace: &str, name: &str) {
        let object = Exported {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.exported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(object);
    }

    /// The objects with series.
    pub fn exported_objects(&self) -> Vec<Exported> {
        self.exported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Removes every series of a deleted object: a deleted policy must not alert as stale forever, a
    /// deleted Cutover must not stay RolledBack on a dashboard.
    pub fn forget(&self, object: &Exported) {
        let namespace = object.namespace.clone();
        match object.kind {
            ExportedKind::BackupPolicy => {
                let labels = PolicyLabels {
                    namespace,
                    policy: object.name.clone(),
                };
                self.last_success_timestamp.remove(&labels);
                self.last_size_bytes.remove(&labels);
                self.stale.remove(&labels);
                self.repository_healthy.remove(&labels);
                self.failures_total.remove(&labels);
                self.duration_seconds.remove(&labels);
            }
            ExportedKind::RestoreDrill => {
                let labels = DrillLabels {
                    namespace,
                    drill: object.name.clone(),
                };
                self.drill_last_rto_seconds.remove(&labels);
                self.drill_last_rpo_seconds.remove(&labels);
                self.drill_passed.remove(&labels);
                self.drill_last_timestamp.remove(&labels);
            }
            ExportedKind::Cutover => {
                for phase in crate::api::cutover::CutoverPhase::ALL {
                    self.cutover.phase.remove(&CutoverLabels {
                        namespace: namespace.clone(),
                        cutover: object.name.clone(),
                        phase: phase.name().to_owned(),
                    });
                }
            }
        }
        self.exported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(object);
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
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub fn reconcile_failed(&self, kind: &str, error: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_owned(),
                error: error.to_owned(),
            })
            .inc();
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CutoverLabels {
    pub namespace: String,
    pub cutover: String,
    pub phase: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The step kind (preflight, backup, migration, …), not the check name: bounded cardinality.
    pub step: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

/// Cutover metrics. The phase gauge is set from each Cutover's status on every reconcile.
pub struct CutoverMetrics {
    pub phase: Family<CutoverLabels, Gauge>,
    pub step_duration_seconds: Family<StepLabels, Histogram>,
    pub rollbacks: Family<NamespaceLabels, Counter>,
    pub traffic_restore_seconds: Histogram,
    pub approval_to_switch_seconds: Histogram,
}

impl CutoverMetrics {
    fn register(registry: &mut Registry) -> Self {
        let seconds = || Histogram::new([0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 3600.0]);
        let metrics = Self {
            phase: Family::default(),
            step_duration_seconds: Family::new_with_constructor(seconds),
            rollbacks: Family::default(),
            traffic_restore_seconds: seconds(),
            approval_to_switch_seconds: seconds(),
        };
        registry.register(
            "cutover_phase",
            "1 for the phase each Cutover is in (from its status), 0 for the others",
            metrics.phase.clone(),
        );
        registry.register(
            "cutover_step_duration_seconds",
            "Duration of finished Cutover steps by kind",
            metrics.step_duration_seconds.clone(),
        );
        registry.register(
            "cutover_rollbacks",
            "Cutover rollbacks started",
            metrics.rollbacks.clone(),
        );
        registry.register(
            "cutover_traffic_restore_seconds",
            "From the first failing check of a rollback's run of failures to traffic back on the old side",
            metrics.traffic_restore_seconds.clone(),
        );
        registry.register(
            "cutover_approval_to_switch_seconds",
            "From the recorded approval to traffic switched",
            metrics.approval_to_switch_seconds.clone(),
        );
        metrics
    }
}

impl Metrics {
    pub fn cutover_phase(&self, namespace: &str, cutover: &str, phase: crate::api::cutover::CutoverPhase) {
        self.exported(ExportedKind::Cutover, namespace, cutover);
        for each in crate::api::cutover::CutoverPhase::ALL {
            let name = each.name().to_owned();
            let labels = CutoverLabels {
                namespace: namespace.to_owned(),
                cutover: cutover.to_owned(),
                phase: name,
            };
            self.cutover
                .phase
                .get_or_create(&labels)
                .set(i64::from(each == phase));
        }
    }

    pub fn cutover_step_duration(&self, step: &str, seconds: f64) {
        self.cutover
            .step_duration_seconds
            .get_or_create(&StepLabels {
                step: step.to_owned(),
            })
            .observe(seconds);
    }

    pub fn cutover_rollback(&self, namespace: &str) {
        self.cutover
            .rollbacks
            .get_or_create(&NamespaceLabels {
                namespace: namespace.to_owned(),
            })
            .inc();
    }

    pub fn cutover_traffic_restored(&self, seconds: f64) {
        self.cutover.traffic_restore_seconds.observe(seconds);
    }

    pub fn cutover_approval_to_switch(&self, seconds: f64) {
        self.cutover.approval_to_switch_seconds.observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_object_leaves_no_series_and_others_keep_theirs() {
        let metrics = Metrics::default();
        for policy in ["gone", "kept"] {
            let labels = PolicyLabels {
                namespace: "shop".into(),
                policy: policy.into(),
            };
            metrics.stale.get_or_create(&labels).set(1);
            metrics.exported(ExportedKind::BackupPolicy, "shop", policy);
        }
        metrics.cutover_phase("shop", "release-1", crate::api::cutover::CutoverPhase::RolledBack);
        for object in metrics.exported_objects() {
            if object.name != "kept" {
                metrics.forget(&object);
            }
        }
        let text = metrics.encode();
        assert!(!text.contains("policy=\"gone\""), "{text}");
        assert!(!text.contains("cutover=\"release-1\""), "{text}");
        assert!(text.contains("policy=\"kept\""), "{text}");
        assert_eq!(metrics.exported_objects().len(), 1);
    }
}
