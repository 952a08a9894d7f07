//! The controllers of `lifeboat operator`, one module per kind, and the loop that runs them while this
//! replica holds the leader Lease.

pub mod backoff;
pub mod backup;
pub mod backup_policy;
pub mod children;
pub mod context;
pub mod crash_point;
pub mod cutover;
pub mod error;
pub mod events;
pub mod forget;
pub mod leadership;
pub mod notifications;
pub mod restore;
pub mod restore_drill;
pub mod secrets;
pub mod status;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client};

use crate::api::{Backup, BackupPolicy};
use crate::metrics::Metrics;
pub use context::{Context, Settings, Stores};
pub use error::{error_policy, reconciled, ReconcileError};
use leadership::Leadership;

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("cannot connect to the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    #[error("leader election on Lease {namespace}/{name}: {source}")]
    LeaderElection {
        namespace: String,
        name: String,
        source: kube_lease_manager::LeaseManagerError,
    },
    #[error("the health and metrics server on {address}: {source}")]
    Http {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("lost the leader Lease; exiting so a fresh replica takes over cleanly")]
    LostLeadership,
}

/// Where the operator's Lease lives and how it listens.
pub struct RunOptions {
    pub settings: Settings,
    pub http_address: SocketAddr,
    pub lease_namespace: String,
    pub lease_name: String,
    pub leader_election: bool,
    /// Namespaces to reconcile; empty means all.
    pub watch_namespaces: Vec<String>,
}

/// Runs the operator until it is signalled or loses leadership.
pub async fn run(options: RunOptions) -> Result<(), OperatorError> {
    let client = Client::try_default().await.map_err(OperatorError::Client)?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));

    let http_state = crate::http::HttpState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let address = options.http_address;
    let http = tokio::spawn(async move { crate::http::serve(address, http_state).await });

    let mut leadership = if options.leader_election {
        // A standby is ready (it serves /metrics and takes over in seconds); it only reconciles as leader.
        ready.store(true, Ordering::Relaxed);
        tracing::info!(
            "waiting for the leader Lease {}/{}",
            options.lease_namespace,
            options.lease_name
        );
        // A standby told to stop (its Pod deleted in a rollout) must not take the Lease while it stops:
        // it would lead, unaware of the signal, until the kubelet kills it.
        let acquire = Leadership::acquire(&client, &options.lease_namespace, &options.lease_name);
        let leadership = tokio::select! {
            acquired = acquire => acquired?,
            () = stop_signal() => {
                tracing::info!("stopping before leading: signalled while waiting for the Lease");
                return Ok(());
            }
        };
        tracing::info!("leading");
        Some(leadership)
    } else {
        None
    };
    ready.store(true, Ordering::Relaxed);

    let settings = options.settings;
    let controllers = async {
        if options.watch_namespaces.is_empty() {
            run_controllers(client, None, metrics, settings).await;
        } else {
            let each = options.watch_namespaces.iter().map(|namespace| {
                run_controllers(
                    client.clone(),
                    Some(namespace.as_str()),
                    metrics.clone(),
                    settings.clone(),
                )
            });
            futures::future::join_all(each).await;
        }
    };
    let lost = async {
        match leadership.as_mut() {
            Some(leadership) => leadership.lost().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        () = controllers => Ok(()),
        () = lost => Err(OperatorError::LostLeadership),
        served = http => match served {
            Ok(Err(source)) => Err(OperatorError::Http { address, source }),
            _ => Ok(()),
        },
    };
    if let Some(leadership) = leadership {
        // A replacement that starts after this one (a deleted or evicted Pod's) then leads at once.
        leadership.release().await;
    }
    outcome
}

/// SIGTERM (the kubelet stopping the Pod) or SIGINT (Ctrl-C), whichever comes first.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut terminate), Ok(mut interrupt)) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        // Without signal handling the process still stops: the kubelet's SIGKILL after the grace period.
        _ => std::future::pending().await,
    }
}

/// The controllers over one namespace, or all of them, sharing one Context (with the reflector stores
/// of this scope's BackupPolicy and Backup controllers).
async fn run_controllers(client: Client, namespace: Option<&str>, metrics: Arc<Metrics>, settings: Settings) {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        }
    }
    let watch_config = watcher::Config::default().any_semantic();
    let config = controller_config(&settings);
    let jobs = api::<Job>(&client, namespace);
    let backups = Controller::new(api::<Backup>(&client, namespace), watch_config.clone())
        .with_config(config.clone())
        .owns(
            jobs.clone(),
            watcher::Config::default().labels(crate::jobs::BACKUP_LABEL),
        );
    let policies = Controller::new(api::<BackupPolicy>(&client, namespace), watch_config.clone())
        .with_config(config.clone())
        // Every Backup of a policy, not only the ones it owns: a hand-made or pre-Cutover Backup's success
        // counts for freshness and starts retention like a scheduled one.
        .watches(
            api::<Backup>(&client, namespace),
            watcher::Config::default(),
            |backup: Backup| {
                let namespace = backup.metadata.namespace.clone().unwrap_or_default();
                Some(ObjectRef::<BackupPolicy>::new(&backup.spec.policy_ref.name).within(&namespace))
            },
        )
        .owns(
            jobs.clone(),
            watcher::Config::default().labels(crate::jobs::POLICY_LABEL),
        );
    let stores = Stores {
        policies: policies.store(),
        backups: backups.store(),
    };
    let context = Arc::new(Context::new(client.clone(), metrics, settings, stores));

    let backups = backups
        .shutdown_on_signal()
        .run(
            |o, c| reconciled(backup::reconcile, o, c),
            error_policy::<Backup>,
            context.clone(),
        )
        .for_each(report_watch_error);
    let policies = policies
        .shutdown_on_signal()
        .run(
            |o, c| reconciled(backup_policy::reconcile, o, c),
            error_policy::<BackupPolicy>,
            context.clone(),
        )
        .for_each(report_watch_error);
    // Cutover: its Jobs (by label), its pre-switch Backup and rollback Restore wake it.
    let cutovers = Controller::new(api::<crate::api::Cutover>(&client, namespace), watch_config);
    let drills = Controller::new(
        api::<crate::api::RestoreDrill>(&client, namespace),
        watcher::Config::default().any_semantic(),
    );
    let caches = forget::Caches {
        policies: context.stores.policies.clone(),
        drills: drills.store(),
        cutovers: cutovers.store(),
    };
    let forget = forget::forget_deleted_objects(&context.metrics, caches);
    let cutovers = cutovers
        .with_config(config.clone())
        .owns(
            jobs.clone(),
            watcher::Config::default().labels(cutover::CUTOVER_LABEL),
        )
        .owns(
            api::<Backup>(&client, namespace),
            watcher::Config::default().labels(cutover::CUTOVER_LABEL),
        )
        .owns(
            api::<crate::api::Restore>(&client, namespace),
            watcher::Config::default().labels(cutover::CUTOVER_LABEL),
        )
        .shutdown_on_signal()
        .run(
            |o, c| reconciled(cutover::reconcile, o, c),
            error_policy::<crate::api::Cutover>,
            context.clone(),
        )
        .for_each(report_watch_error);
    // Restores own their Jobs and their scratch database Pods (readiness wakes them up).
    let restores = Controller::new(
        api::<crate::api::Restore>(&client, namespace),
        watcher::Config::default().any_semantic(),
    )
    .with_config(config.clone())
    .owns(jobs, watcher::Config::default().labels(restore::RESTORE_LABEL))
    .owns(
        api::<k8s_openapi::api::core::v1::Pod>(&client, namespace),
        watcher::Config::default().labels(restore::RESTORE_LABEL),
    )
    .shutdown_on_signal()
    .run(
        |o, c| reconciled(restore::reconcile, o, c),
        error_policy::<crate::api::Restore>,
        context.clone(),
    )
    .for_each(report_watch_error);
    let drills = drills
        .with_config(config.clone())
        .owns(
            api::<crate::api::Restore>(&client, namespace),
            watcher::Config::default().labels(restore_drill::DRILL_LABEL),
        )
        .shutdown_on_signal()
        .run(
            |o, c| reconciled(restore_drill::reconcile, o, c),
            error_policy::<crate::api::RestoreDrill>,
            context.clone(),
        )
        .for_each(report_watch_error);
    // The sweep never ends: the controllers' end (shutdown on a signal) ends the operator.
    tokio::select! {
        _ = async { tokio::join!(backups, policies, cutovers, restores, drills) } => {}
        _ = forget => {}
    }
}

fn controller_config(settings: &Settings) -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(settings.reconcile_concurrency)
}

/// Reconcile errors are logged by `error_policy`; what else a controller's stream yields is logged here,
/// so a watch that keeps failing (RBAC, an object that no longer parses) is not silent while the caches
/// stay empty.
async fn report_watch_error<T, E: std::fmt::Display>(
    result: Result<T, kube::runtime::controller::Error<E, kube::runtime::watcher::Error>>,
) {
    if let Err(kube::runtime::controller::Error::QueueError(error)) = result {
        tracing::warn!(%error, "watch failed; retrying");
    }
}
