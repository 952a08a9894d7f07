//! Lifeboat: a Kubernetes operator that turns backup, restore-drill and blue-green cutover runbooks into
//! custom resources that controllers carry out and report on.

pub mod agent;
pub mod api;
pub mod apiref;
pub mod checks;
pub mod conditions;
pub mod controller;
pub mod crdgen;
pub mod duration;
pub mod http;
pub mod http_client;
pub mod jobs;
pub mod metrics;
pub mod notify;
pub mod plugin;
pub mod probe;
pub mod schedule;
pub mod size;
pub mod slots;
pub mod snapshot_id;
