//! Cutover series: the phase gauge mirrors each Cutover's status; step durations, rollbacks and the
//! traffic timings are observed as they happen.

use super::{ExportedKind, Metrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CutoverLabels {
    pub namespace: String,
    pub cutover: String,
    pub phase: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CutoverNameLabels {
    pub namespace: String,
    pub cutover: String,
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
    pub completion_timestamp: Family<CutoverNameLabels, Gauge<f64, AtomicU64>>,
    pub step_duration_seconds: Family<StepLabels, Histogram>,
    pub rollbacks: Family<NamespaceLabels, Counter>,
    pub traffic_restore_seconds: Histogram,
    pub approval_to_switch_seconds: Histogram,
}

impl CutoverMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let seconds = || Histogram::new([0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 3600.0]);
        let metrics = Self {
            phase: Family::default(),
            completion_timestamp: Family::default(),
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
            "cutover_completion_timestamp_seconds",
            "Unix time a Cutover ended (Succeeded, Failed or RolledBack; from its status)",
            metrics.completion_timestamp.clone(),
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

impl CutoverMetrics {
    pub(super) fn forget(&self, namespace: &str, cutover: &str) {
        self.completion_timestamp.remove(&CutoverNameLabels {
            namespace: namespace.to_owned(),
            cutover: cutover.to_owned(),
        });
        for phase in crate::api::cutover::CutoverPhase::ALL {
            self.phase.remove(&CutoverLabels {
                namespace: namespace.to_owned(),
                cutover: cutover.to_owned(),
                phase: phase.name().to_owned(),
            });
        }
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

    /// The end of a finished Cutover, from its status: a rollback alerts for a while after it, not for as
    /// long as the Cutover is kept as a record.
    pub fn cutover_completed(&self, namespace: &str, cutover: &str, completion: Option<&Time>) {
        let labels = CutoverNameLabels {
            namespace: namespace.to_owned(),
            cutover: cutover.to_owned(),
        };
        match completion {
            Some(time) => {
                self.cutover
                    .completion_timestamp
                    .get_or_create(&labels)
                    .set(super::seconds_since_epoch(time));
            }
            None => {
                self.cutover.completion_timestamp.remove(&labels);
            }
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
