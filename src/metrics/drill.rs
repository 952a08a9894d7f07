//! RestoreDrill series, from each drill's spec (targets) and status (the newest finished drill, Overdue),
//! so they survive restarts.

use super::seconds_since_epoch;
use crate::api::restore_drill::{RestoreDrillSpec, RestoreDrillStatus};
use crate::conditions;
use crate::controller::restore_drill::overdue::OVERDUE;
use crate::duration::{parse_measured, DurationString};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DrillLabels {
    pub namespace: String,
    pub drill: String,
}

impl DrillLabels {
    pub fn new(namespace: &str, drill: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            drill: drill.to_owned(),
        }
    }
}

type SecondsGauge = Family<DrillLabels, Gauge<f64, AtomicU64>>;

pub struct DrillMetrics {
    pub last_rto_seconds: SecondsGauge,
    pub last_rpo_seconds: SecondsGauge,
    pub rto_target_seconds: SecondsGauge,
    pub rpo_target_seconds: SecondsGauge,
    pub passed: Family<DrillLabels, Gauge>,
    pub overdue: Family<DrillLabels, Gauge>,
    pub last_timestamp: SecondsGauge,
}

impl DrillMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            last_rto_seconds: Family::default(),
            last_rpo_seconds: Family::default(),
            rto_target_seconds: Family::default(),
            rpo_target_seconds: Family::default(),
            passed: Family::default(),
            overdue: Family::default(),
            last_timestamp: Family::default(),
        };
        registry.register(
            "drill_last_rto_seconds",
            "Measured RTO of the newest finished drill: drill start to verified data",
            metrics.last_rto_seconds.clone(),
        );
        registry.register(
            "drill_last_rpo_seconds",
            "Measured RPO of the newest finished drill: age of the restored snapshot at drill start",
            metrics.last_rpo_seconds.clone(),
        );
        registry.register(
            "drill_rto_target_seconds",
            "The drill's RTO target (spec.rto; absent without one)",
            metrics.rto_target_seconds.clone(),
        );
        registry.register(
            "drill_rpo_target_seconds",
            "The drill's RPO target (spec.rpo; absent without one)",
            metrics.rpo_target_seconds.clone(),
        );
        registry.register(
            "drill_passed",
            "1 when the newest finished drill restored, verified and met its RTO and RPO, else 0",
            metrics.passed.clone(),
        );
        registry.register(
            "drill_overdue",
            "1 when no drill started within the schedule plus spec.overdueGrace (its Overdue condition)",
            metrics.overdue.clone(),
        );
        registry.register(
            "drill_last_timestamp_seconds",
            "Unix time the newest finished drill started",
            metrics.last_timestamp.clone(),
        );
        metrics
    }

    /// Sets the drill's series from its spec and status.
    pub fn export(&self, labels: &DrillLabels, spec: &RestoreDrillSpec, status: &RestoreDrillStatus) {
        let target = |duration: &Option<DurationString>| duration.as_ref().and_then(|d| d.parse().ok());
        set_or_remove(
            &self.rto_target_seconds,
            labels,
            target(&spec.rto).map(|d| d.as_secs_f64()),
        );
        set_or_remove(
            &self.rpo_target_seconds,
            labels,
            target(&spec.rpo).map(|d| d.as_secs_f64()),
        );
        let overdue = conditions::is_true(&status.conditions.0, OVERDUE);
        self.overdue.get_or_create(labels).set(i64::from(overdue));
        let Some(last) = &status.last_drill else {
            return;
        };
        let measured =
            |text: &Option<String>| text.as_deref().and_then(parse_measured).map(|d| d.as_secs_f64());
        // A failed drill achieved no recovery: no RTO, rather than a stale one.
        set_or_remove(&self.last_rto_seconds, labels, measured(&last.measured_rto));
        set_or_remove(&self.last_rpo_seconds, labels, measured(&last.measured_rpo));
        self.passed
            .get_or_create(labels)
            .set(i64::from(last.passed == Some(true)));
        self.last_timestamp
            .get_or_create(labels)
            .set(seconds_since_epoch(&last.start_time));
    }

    pub(super) fn forget(&self, labels: &DrillLabels) {
        for gauge in [
            &self.last_rto_seconds,
            &self.last_rpo_seconds,
            &self.rto_target_seconds,
            &self.rpo_target_seconds,
            &self.last_timestamp,
        ] {
            gauge.remove(labels);
        }
        self.passed.remove(labels);
        self.overdue.remove(labels);
    }
}

fn set_or_remove(family: &SecondsGauge, labels: &DrillLabels, value: Option<f64>) {
    match value {
        Some(seconds) => {
            family.get_or_create(labels).set(seconds);
        }
        None => {
            family.remove(labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(metrics: &DrillMetrics) -> String {
        let mut registry = Registry::default();
        registry.register("overdue", "", metrics.overdue.clone());
        registry.register("rto_target_seconds", "", metrics.rto_target_seconds.clone());
        registry.register("passed", "", metrics.passed.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn a_drill_that_never_ran_still_reports_overdue_and_its_targets() {
        let metrics = DrillMetrics::register(&mut Registry::default());
        let labels = DrillLabels::new("hotel", "monthly");
        let spec: RestoreDrillSpec = serde_norway::from_str(
            "{schedule: '0 3 1 * *', policyRef: {name: db}, target: {scratch: {engine: postgres}}, rto: 2h}",
        )
        .unwrap();
        let status: RestoreDrillStatus = serde_json::from_value(serde_json::json!({
            "conditions": [{"type": "Overdue", "status": "True", "reason": "DrillOverdue", "message": "late",
                            "lastTransitionTime": "2026-12-01T00:00:00Z"}]
        }))
        .unwrap();
        metrics.export(&labels, &spec, &status);
        let text = series(&metrics);
        assert!(
            text.contains("overdue{namespace=\"hotel\",drill=\"monthly\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rto_target_seconds{namespace=\"hotel\",drill=\"monthly\"} 7200"),
            "{text}"
        );
        assert!(
            !text.contains("passed{"),
            "no drill finished, so none passed or failed:\n{text}"
        );

        // A target removed from the spec is no longer compared against.
        let without_target = RestoreDrillSpec { rto: None, ..spec };
        metrics.export(&labels, &without_target, &status);
        assert!(
            !series(&metrics).contains("rto_target_seconds{"),
            "{}",
            series(&metrics)
        );
    }
}
