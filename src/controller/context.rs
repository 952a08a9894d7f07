//! What every reconcile shares: the client, the Event recorder, metrics and the operator's settings.

use std::sync::Arc;

use kube::runtime::events::{Recorder, Reporter};
use kube::Client;

use crate::metrics::Metrics;

/// Operator settings from its command line and environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Image of the agent Jobs when a jobTemplate names none.
    pub agent_image: String,
    /// The agent's program inside that image (a path on the local cluster's node).
    pub agent_command: String,
    /// Name recorded as the Events' reporting controller and the status field manager.
    pub manager_name: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            agent_image: "ghcr.io/lifeboat-dev/lifeboat:0.1.0".to_owned(),
            agent_command: "lifeboat".to_owned(),
            manager_name: "lifeboat-operator".to_owned(),
        }
    }
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, settings: Settings) -> Self {
        let reporter = Reporter {
            controller: settings.manager_name.clone(),
            instance: std::env::var("LIFEBOAT_POD_NAME").ok(),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        Self {
            client,
            recorder,
            metrics,
            settings,
        }
    }
}
