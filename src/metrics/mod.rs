//! Prometheus metrics on the operator's `/metrics`. Backup, drill and Cutover health gauges are set from
//! the objects' status on every reconcile, so they are right after a restart or a move to another node.

pub mod backup;
pub mod cutover;
pub mod drill;

pub use backup::{BackupMetrics, PolicyLabels};
pub use cutover::{CutoverLabels, CutoverMetrics};
pub use drill::{DrillLabels, DrillMetrics};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// Buckets of backup and restore durations: seconds for a small database, hours for a large one.
const DURATION_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RestoreLabels {
    pub namespace: String,
    /// postgres, mysql, files or scratch.
    pub target: String,
    /// succeeded or failed.
    pub result: String,
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
    pub backup: BackupMetrics,
    pub drill: DrillMetrics,
    pub cutover: CutoverMetrics,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub restore_duration_seconds: Family<RestoreLabels, Histogram>,
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
        // `lifeboat_build_info`: which version each replica runs, and (by its absence) an operator that
        // is not scraped at all — the OperatorDown alert.
        registry.register(
            "build",
            "The running operator's version",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", option_env!("LIFEBOAT_REVISION").unwrap_or("unknown")),
            ]),
        );
        let backup = BackupMetrics::register(&mut registry);
        let drill = DrillMetrics::register(&mut registry);
        let cutover = CutoverMetrics::register(&mut registry);
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let restore_duration_seconds =
            Family::<RestoreLabels, Histogram>::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        registry.register(
            "restore_duration_seconds",
            "Duration of Restores from start to verified (or failed), by target kind and result",
            restore_duration_seconds.clone(),
        );
        registry.register("reconciles", "Reconciles by kind", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconcile errors by kind and error",
            reconcile_errors.clone(),
        );
        Self {
            registry,
            backup,
            drill,
            cutover,
            reconciles,
            reconcile_errors,
            restore_duration_seconds,
            exported: Mutex::default(),
        }
    }
}

/// A Kubernetes timestamp as Prometheus wants it: seconds since the epoch.
fn seconds_since_epoch(time: &Time) -> f64 {
    time.0.as_millisecond() as f64 / 1000.0
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
            ExportedKind::BackupPolicy => self.backup.forget(&PolicyLabels::new(&namespace, &object.name)),
            ExportedKind::RestoreDrill => self.drill.forget(&DrillLabels::new(&namespace, &object.name)),
            ExportedKind::Cutover => self.cutover.forget(&namespace, &object.name),
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
            metrics.backup.stale.get_or_create(&labels).set(1);
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
