//! Lifeboat: a Kubernetes operator that turns backup, restore-drill and blue-green cutover runbooks into
//! custom resources that controllers carry out and report on.

pub mod agent;
pub mod api;
pub mod crdgen;
pub mod duration;
pub mod schedule;
