//! What every reconcile shares: the client, the Event recorder, metrics, the operator's settings and
//! the caches the controllers already keep.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::Client;

use crate::api::{Backup, BackupPolicy};
use crate::metrics::Metrics;

/// Operator settings from its command line and environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Image of the agent Jobs when a jobTemplate names none.
    pub agent_image: String,
    /// The agent's program inside that image (a path on the local cluster's node).
    pub agent_command: String,
    /// Secrets (in each Job's namespace) to pull the agent image with, when a jobTemplate names none.
    pub agent_image_pull_secrets: Vec<String>,
    /// Name recorded as the Events' reporting controller and the status field manager.
    pub manager_name: String,
    /// How many objects of one kind are reconciled at once. kube's client speaks HTTP/1.1, so every
    /// reconcile in flight can hold its own TLS connection to the API server: unbounded, 500 policies
    /// due on the same minute opened hundreds of connections and queued behind their handshakes.
    pub reconcile_concurrency: u16,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            agent_image: "ghcr.io/lifeboat-dev/lifeboat:0.1.0".to_owned(),
            agent_command: "lifeboat".to_owned(),
            agent_image_pull_secrets: Vec::new(),
            manager_name: "lifeboat-operator".to_owned(),
            reconcile_concurrency: 32,
        }
    }
}

/// The reflector stores of the BackupPolicy and Backup controllers. Reading them costs no API call: a
/// policy's reconcile used to LIST its namespace's Backups, which at 500 policies firing on one minute
/// was thousands of requests in the second that matters.
#[derive(Clone)]
pub struct Stores {
    pub policies: Store<BackupPolicy>,
    pub backups: Store<Backup>,
}

/// Waits (bounded) until a store has its first complete list: reading a half-filled cache would make a
/// policy think it has no Backups.
pub async fn wait_for_cache<K>(store: &Store<K>, kind: &'static str) -> Result<(), super::ReconcileError>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let started = std::time::Instant::now();
    match tokio::time::timeout(Duration::from_secs(30), store.wait_until_ready()).await {
        Ok(Ok(())) => {
            if started.elapsed() > Duration::from_secs(2) {
                tracing::info!(kind, waited = ?started.elapsed(), "the cache was slow to fill");
            }
            Ok(())
        }
        _ => Err(super::ReconcileError::CacheNotReady { kind }),
    }
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub stores: Stores,
    pub secrets_verified: VerifiedRecently,
    pub error_backoff: super::backoff::ErrorBackoff,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, settings: Settings, stores: Stores) -> Self {
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
            stores,
            secrets_verified: VerifiedRecently::new(Duration::from_secs(300)),
            error_backoff: Default::default(),
        }
    }
}

/// Remembers which objects passed a check, at which generation, for a while: a check that needs API
/// calls (do the referenced Secrets exist?) then runs when the spec changes, after a failure, and every
/// `ttl` — not on every reconcile. Secrets are not watched: that would need `list` on every Secret.
pub struct VerifiedRecently {
    ttl: Duration,
    passed: Mutex<HashMap<String, (Option<i64>, Instant)>>,
}

impl VerifiedRecently {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            passed: Mutex::new(HashMap::new()),
        }
    }

    /// True when `uid` passed at this `generation` less than `ttl` ago.
    pub fn is_fresh(&self, uid: &str, generation: Option<i64>) -> bool {
        let passed = self
            .passed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        passed
            .get(uid)
            .is_some_and(|(at_generation, at)| *at_generation == generation && at.elapsed() < self.ttl)
    }

    pub fn record_pass(&self, uid: &str, generation: Option<i64>) {
        let mut passed = self
            .passed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Entries of deleted objects expire here rather than pile up.
        let ttl = self.ttl;
        passed.retain(|_, (_, at)| at.elapsed() < ttl);
        passed.insert(uid.to_owned(), (generation, Instant::now()));
    }

    pub fn forget(&self, uid: &str) {
        let mut passed = self
            .passed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        passed.remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::VerifiedRecently;
    use std::time::Duration;

    #[test]
    fn a_pass_holds_for_its_generation_until_it_expires() {
        let checks = VerifiedRecently::new(Duration::from_millis(200));
        assert!(!checks.is_fresh("a", Some(1)));
        checks.record_pass("a", Some(1));
        assert!(checks.is_fresh("a", Some(1)));
        assert!(!checks.is_fresh("a", Some(2)), "a spec change checks again");
        assert!(!checks.is_fresh("b", Some(1)));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!checks.is_fresh("a", Some(1)), "expired");
        checks.record_pass("a", Some(2));
        checks.forget("a");
        assert!(!checks.is_fresh("a", Some(2)));
    }
}
