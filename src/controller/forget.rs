//! Series of deleted objects leave `/metrics`. A deleted object is never reconciled again (the
//! controller finds nothing in its cache to call reconcile with), so its last values would stay: a
//! deleted BackupPolicy would alert as stale forever. A sweep compares the objects with series against
//! the watch caches and removes the series of every object that is gone.

use std::time::Duration;

use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::{BackupPolicy, Cutover, RestoreDrill};
use crate::metrics::{ExportedKind, Metrics};

/// How long a deleted object's series may outlive it.
const SWEEP_EVERY: Duration = Duration::from_secs(15);

pub struct Caches {
    pub policies: Store<BackupPolicy>,
    pub drills: Store<RestoreDrill>,
    pub cutovers: Store<Cutover>,
}

/// Runs for the operator's lifetime.
pub async fn forget_deleted_objects(metrics: &Metrics, caches: Caches) {
    // A cache still filling would make every object look deleted.
    let _ = caches.policies.wait_until_ready().await;
    let _ = caches.drills.wait_until_ready().await;
    let _ = caches.cutovers.wait_until_ready().await;
    let mut every = tokio::time::interval(SWEEP_EVERY);
    loop {
        every.tick().await;
        for object in metrics.exported_objects() {
            let exists = match object.kind {
                ExportedKind::BackupPolicy => cached(&caches.policies, &object.namespace, &object.name),
                ExportedKind::RestoreDrill => cached(&caches.drills, &object.namespace, &object.name),
                ExportedKind::Cutover => cached(&caches.cutovers, &object.namespace, &object.name),
            };
            if !exists {
                metrics.forget(&object);
            }
        }
    }
}

fn cached<K>(store: &Store<K>, namespace: &str, name: &str) -> bool
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(name).within(namespace)).is_some()
}
