//! A minimal volume provisioner: every PersistentVolumeClaim without a volume gets a `hostPath` PV under
//! `<state dir>/pvcs/<ns>/<claim>`, pre-bound to it, so the scheduler's volume binding and the PV
//! controller see a bound claim. When the claim is deleted, the PV and its directory go too (the
//! behaviour of a dynamically provisioned volume with the default `Delete` policy).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use super::volumes::claim_dir;

/// Label on the PVs this provisioner creates.
pub const PROVISIONED_BY: &str = "lifeboat.dev/provisioned-by";
const PROVISIONER: &str = "localnode";
/// Annotation holding the host directory of a provisioned PV.
const DIR_ANNOTATION: &str = "lifeboat.dev/host-dir";

pub async fn run(client: Client, state_dir: PathBuf) {
    let claims = watch_claims(client.clone(), state_dir);
    let volumes = reclaim_released(client);
    tokio::join!(claims, volumes);
}

async fn watch_claims(client: Client, state_dir: PathBuf) {
    let api: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let claim = match event {
            Ok(Event::Apply(c) | Event::InitApply(c)) => c,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "watching PersistentVolumeClaims failed; retrying");
                continue;
            }
        };
        if let Some(pv) = volume_for(&claim, &state_dir) {
            let pvs: Api<PersistentVolume> = Api::all(client.clone());
            match pvs.create(&PostParams::default(), &pv).await {
                Ok(_) => tracing::info!(pv = pv.metadata.name.as_deref().unwrap_or(""), "provisioned"),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => tracing::warn!(error = %e, "provisioning a PersistentVolume failed"),
            }
        }
    }
}

/// The PV to create for a claim, if it needs one.
pub fn volume_for(claim: &PersistentVolumeClaim, state_dir: &Path) -> Option<PersistentVolume> {
    let spec = claim.spec.as_ref()?;
    let unbound = spec.volume_name.as_deref().unwrap_or("").is_empty();
    let pending = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
        == "Pending";
    if !unbound || !pending || claim.metadata.deletion_timestamp.is_some() || spec.selector.is_some() {
        return None;
    }
    let ns = claim.metadata.namespace.clone()?;
    let name = claim.metadata.name.clone()?;
    let uid = claim.metadata.uid.clone()?;
    let dir = claim_dir(state_dir, &ns, &name);
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage").cloned())
        .unwrap_or_else(|| Quantity("1Gi".into()));
    Some(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("pvc-{uid}")),
            labels: Some(BTreeMap::from([(
                PROVISIONED_BY.to_string(),
                PROVISIONER.to_string(),
            )])),
            annotations: Some(BTreeMap::from([(
                DIR_ANNOTATION.to_string(),
                dir.display().to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec
                .access_modes
                .clone()
                .or_else(|| Some(vec!["ReadWriteOnce".into()])),
            capacity: Some(BTreeMap::from([("storage".to_string(), storage)])),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(ns),
                name: Some(name),
                uid: Some(uid),
                ..Default::default()
            }),
            host_path: Some(HostPathVolumeSource {
                path: dir.display().to_string(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            persistent_volume_reclaim_policy: Some("Retain".into()),
            storage_class_name: Some(spec.storage_class_name.clone().unwrap_or_default()),
            volume_mode: spec.volume_mode.clone(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Delete our PVs whose claim is gone, with their directories.
async fn reclaim_released(client: Client) {
    let api: Api<PersistentVolume> = Api::all(client);
    let config = watcher::Config::default().labels(&format!("{PROVISIONED_BY}={PROVISIONER}"));
    let mut events = watcher(api.clone(), config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let pv = match event {
            Ok(Event::Apply(pv) | Event::InitApply(pv)) => pv,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "watching PersistentVolumes failed; retrying");
                continue;
            }
        };
        let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        if !released || pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pv.metadata.name.clone().unwrap_or_default();
        if let Some(dir) = pv
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DIR_ANNOTATION))
        {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(pv = %name, error = %e, "removing a released volume's directory failed");
                }
            }
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(pv = %name, "released volume deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(pv = %name, error = %e, "deleting a released volume failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unbound_claim_gets_a_prebound_host_path_volume() {
        let claim: PersistentVolumeClaim = serde_norway::from_str(
            r#"
metadata: {name: data, namespace: shop, uid: u-1}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 2Gi}}
status: {phase: Pending}
"#,
        )
        .unwrap();
        let pv = volume_for(&claim, Path::new("/state")).unwrap();
        let spec = pv.spec.unwrap();
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-u-1"));
        assert_eq!(spec.host_path.unwrap().path, "/state/pvcs/shop/data");
        assert_eq!(spec.claim_ref.unwrap().uid.as_deref(), Some("u-1"));
        assert_eq!(spec.capacity.unwrap()["storage"], Quantity("2Gi".into()));
        assert_eq!(spec.storage_class_name.as_deref(), Some(""));

        let mut bound = claim.clone();
        bound.spec.as_mut().unwrap().volume_name = Some("pv".into());
        assert!(volume_for(&bound, Path::new("/state")).is_none());
    }
}
