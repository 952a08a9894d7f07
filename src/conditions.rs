//! Status conditions in the Kubernetes convention, written so that kstatus (Flux) and Argo CD judge them
//! correctly: `Ready` (normal polarity), `Reconciling` and `Stalled` (abnormal polarity: present and True
//! only while that is the case), each carrying the generation it was computed from.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// One condition as a reconciler wants it; `lastTransitionTime` is filled by [`apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Desired {
    pub fn new(type_: &'static str, status: bool, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Sets `desired` in `conditions`, keeping `lastTransitionTime` when the status does not change, so that
/// a reconcile that changes nothing writes an identical status (and is skipped).
pub fn apply(conditions: &mut Vec<Condition>, desired: Desired, generation: Option<i64>, now: &Time) {
    let status = if desired.status { "True" } else { "False" }.to_owned();
    let last_transition_time = conditions
        .iter()
        .find(|c| c.type_ == desired.type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    let condition = Condition {
        type_: desired.type_.to_owned(),
        status,
        reason: desired.reason.to_owned(),
        message: desired.message,
        last_transition_time,
        observed_generation: generation,
    };
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => *existing = condition,
        None => conditions.push(condition),
    }
}

/// Removes a condition (kstatus reads an absent `Reconciling`/`Stalled` as False).
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The three kstatus states a reconciler reports.
pub enum Health {
    /// Done and current: Ready=True, no Reconciling, no Stalled.
    Ready { reason: &'static str, message: String },
    /// Work under way: Reconciling=True, Ready=False.
    Progressing { reason: &'static str, message: String },
    /// Needs a person: Stalled=True, Ready=False.
    Stalled { reason: &'static str, message: String },
    /// Not ready but nothing a person must do and nothing under way (e.g. the last backup failed and the
    /// next slot will retry): Ready=False only.
    NotReady { reason: &'static str, message: String },
}

/// Writes `health` as the Ready/Reconciling/Stalled triple.
pub fn set_health(conditions: &mut Vec<Condition>, health: Health, generation: Option<i64>, now: &Time) {
    match health {
        Health::Ready { reason, message } => {
            apply(
                conditions,
                Desired::new(READY, true, reason, message),
                generation,
                now,
            );
            remove(conditions, RECONCILING);
            remove(conditions, STALLED);
        }
        Health::Progressing { reason, message } => {
            apply(
                conditions,
                Desired::new(READY, false, reason, message.clone()),
                generation,
                now,
            );
            apply(
                conditions,
                Desired::new(RECONCILING, true, reason, message),
                generation,
                now,
            );
            remove(conditions, STALLED);
        }
        Health::Stalled { reason, message } => {
            apply(
                conditions,
                Desired::new(READY, false, reason, message.clone()),
                generation,
                now,
            );
            apply(
                conditions,
                Desired::new(STALLED, true, reason, message),
                generation,
                now,
            );
            remove(conditions, RECONCILING);
        }
        Health::NotReady { reason, message } => {
            apply(
                conditions,
                Desired::new(READY, false, reason, message),
                generation,
                now,
            );
            remove(conditions, RECONCILING);
            remove(conditions, STALLED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(text: &str) -> Time {
        Time(text.parse().unwrap())
    }

    #[test]
    fn an_unchanged_status_keeps_its_transition_time() {
        let mut conditions = Vec::new();
        apply(
            &mut conditions,
            Desired::new(READY, true, "BackupSucceeded", "ok"),
            Some(1),
            &time("2026-01-01T00:00:00Z"),
        );
        apply(
            &mut conditions,
            Desired::new(READY, true, "BackupSucceeded", "ok again"),
            Some(2),
            &time("2026-01-02T00:00:00Z"),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, time("2026-01-01T00:00:00Z"));
        assert_eq!(conditions[0].observed_generation, Some(2));
        assert_eq!(conditions[0].message, "ok again");
    }

    #[test]
    fn a_flip_moves_the_transition_time() {
        let mut conditions = Vec::new();
        apply(
            &mut conditions,
            Desired::new(READY, true, "A", ""),
            None,
            &time("2026-01-01T00:00:00Z"),
        );
        apply(
            &mut conditions,
            Desired::new(READY, false, "B", ""),
            None,
            &time("2026-01-02T00:00:00Z"),
        );
        assert_eq!(conditions[0].last_transition_time, time("2026-01-02T00:00:00Z"));
        assert_eq!(conditions[0].status, "False");
    }

    #[test]
    fn kstatus_sees_stalled_and_reconciling_only_while_true() {
        let now = time("2026-01-01T00:00:00Z");
        let mut conditions = Vec::new();
        set_health(
            &mut conditions,
            Health::Progressing {
                reason: "Running",
                message: "m".into(),
            },
            Some(1),
            &now,
        );
        assert!(is_true(&conditions, RECONCILING) && !is_true(&conditions, READY));
        set_health(
            &mut conditions,
            Health::Stalled {
                reason: "SecretMissing",
                message: "m".into(),
            },
            Some(1),
            &now,
        );
        assert!(is_true(&conditions, STALLED) && find(&conditions, RECONCILING).is_none());
        set_health(
            &mut conditions,
            Health::Ready {
                reason: "Succeeded",
                message: "m".into(),
            },
            Some(1),
            &now,
        );
        assert!(is_true(&conditions, READY));
        assert!(find(&conditions, STALLED).is_none() && find(&conditions, RECONCILING).is_none());
    }
}
