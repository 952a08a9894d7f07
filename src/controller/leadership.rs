//! Leader election on a Lease (kube-lease-manager), plus the two things it leaves to us: releasing the
//! Lease when we stop, and noticing promptly that another replica released it. kube-lease-manager re-reads
//! a Lease held by someone else only once its cached copy expired, so a standby would wait out the whole
//! lease duration even after the leader let go; like client-go's candidates, a standby here polls the
//! Lease and, when it names no holder, starts a fresh manager that takes it at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::OperatorError;

/// How long a Lease lasts without renewal: a crashed leader is replaced after at most this long.
const LEASE_DURATION_SECONDS: u64 = 15;
/// The leader renews this long before expiry.
const LEASE_GRACE_SECONDS: u64 = 5;
/// How often a standby looks whether the leader released the Lease (client-go's retry period).
const STANDBY_POLL: Duration = Duration::from_secs(2);
/// How long a stopping operator waits for its Lease to be released (within the Pod's grace period).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Who holds the Lease, as `kubectl get lease` shows it: the Pod's name (as client-go's `<host>_<uuid>`),
/// so a person sees which replica leads; the suffix tells this process from an earlier one of the same
/// Pod (a restarted container) so the two are never mistaken for each other.
fn identity(pod: Option<String>) -> String {
    let process = jiff::Timestamp::now().as_nanosecond() as u64 ^ u64::from(std::process::id());
    match pod.filter(|pod| !pod.is_empty()) {
        Some(pod) => format!("{pod}_{process:x}"),
        None => format!("lifeboat_{process:x}"),
    }
}

/// This replica's hold on the Lease.
pub struct Leadership {
    channel: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
}

impl Leadership {
    /// Waits until this replica holds the Lease `namespace/name`.
    pub async fn acquire(client: &Client, namespace: &str, name: &str) -> Result<Leadership, OperatorError> {
        let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
        let identity = identity(std::env::var("LIFEBOAT_POD_NAME").ok());
        loop {
            let manager = LeaseManagerBuilder::new(client.clone(), name)
                .with_identity(identity.clone())
                .with_namespace(namespace)
                .with_duration(LEASE_DURATION_SECONDS)
                .with_grace(LEASE_GRACE_SECONDS)
                .build()
                .await
                .map_err(|source| OperatorError::LeaderElection {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    source,
                })?;
            let (mut channel, task) = manager.watch().await;
            let leading = async {
                while !*channel.borrow_and_update() {
                    if channel.changed().await.is_err() {
                        return false;
                    }
                }
                true
            };
            tokio::select! {
                leading = leading => {
                    if !leading {
                        return Err(OperatorError::LostLeadership);
                    }
                    return Ok(Leadership { channel, task });
                }
                () = released(&leases, name) => {
                    // A fresh manager reads the Lease anew and takes it; this one would sleep until expiry.
                    drop(channel);
                    let _ = task.await;
                    tracing::info!("the leader released the Lease; taking it");
                }
            }
        }
    }

    /// Resolves when this replica no longer holds the Lease.
    pub async fn lost(&mut self) {
        loop {
            if self.channel.changed().await.is_err() || !*self.channel.borrow() {
                return;
            }
        }
    }

    /// Lets go of the Lease, so a replacement leads at once instead of after the lease duration.
    pub async fn release(self) {
        // Closing the channel makes the lease manager release the Lease and end its task.
        drop(self.channel);
        match tokio::time::timeout(RELEASE_TIMEOUT, self.task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released the leader Lease"),
            Ok(Ok(Err(error))) => tracing::warn!("could not release the leader Lease: {error}"),
            Ok(Err(error)) => tracing::warn!("the leader Lease task failed: {error}"),
            Err(_) => tracing::warn!("the leader Lease was not released in time; it expires on its own"),
        }
    }
}

/// Resolves once the Lease exists and names no holder (its leader released it).
async fn released(leases: &Api<Lease>, name: &str) {
    loop {
        tokio::time::sleep(STANDBY_POLL).await;
        if let Ok(Some(lease)) = leases.get_opt(name).await {
            let holder = lease.spec.and_then(|spec| spec.holder_identity);
            if holder.is_none_or(|holder| holder.is_empty()) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_names_the_pod_that_holds_it() {
        let held = identity(Some("lifeboat-75c555667f-cwnn2".into()));
        assert!(held.starts_with("lifeboat-75c555667f-cwnn2_"), "{held}");
        assert!(identity(None).starts_with("lifeboat_"));
        assert_ne!(
            identity(Some("p".into())),
            identity(Some("p".into())),
            "each process its own"
        );
    }
}
