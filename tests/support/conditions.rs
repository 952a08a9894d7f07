//! Reading the kstatus conditions of Lifeboat objects.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use lifeboat::api::{BackupPolicy, Cutover};

/// What carries conditions: an object (none while it has no status) or the list itself.
pub trait HasConditions {
    fn conditions(&self) -> &[Condition];
}

impl HasConditions for [Condition] {
    fn conditions(&self) -> &[Condition] {
        self
    }
}

impl HasConditions for Vec<Condition> {
    fn conditions(&self) -> &[Condition] {
        self
    }
}

impl HasConditions for BackupPolicy {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions.0)
    }
}

impl HasConditions for Cutover {
    fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions.0)
    }
}

/// The condition of that type as (status, reason, message), if there is one.
pub fn condition<C: HasConditions + ?Sized>(of: &C, type_: &str) -> Option<(String, String, String)> {
    of.conditions()
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}
