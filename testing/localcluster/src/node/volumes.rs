//! A Pod's volumes as directories on this machine.
//!
//! | volume | host directory |
//! |---|---|
//! | `emptyDir` | `<pod dir>/volumes/<name>` |
//! | `secret`, `configMap`, `downwardAPI`, `projected` | `<pod dir>/volumes/<name>`, files written at start |
//! | `hostPath` | the path itself (created if missing) |
//! | `persistentVolumeClaim` | the bound PV's `hostPath`/`local` path, else `<state dir>/pvcs/<ns>/<claim>` |
//!
//! The container sees each directory at its `mountPath` through a bind mount (see [`super::process`]).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount, Volume,
};
use kube::api::PostParams;
use kube::{Api, Client};

use super::env::{field_value, PodFacts};

/// Why a volume cannot be set up; the Pod waits in `ContainerCreating` with this message and the node
/// retries.
#[derive(Debug, Clone, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume \"{volume}\" : {message}")]
pub struct VolumeError {
    pub volume: String,
    pub message: String,
}

pub struct VolumeContext<'a> {
    pub client: &'a Client,
    pub pod: &'a Pod,
    pub pod_dir: &'a Path,
    pub state_dir: &'a Path,
    pub facts: &'a PodFacts,
}

/// Directory on the host for a PersistentVolumeClaim that has no PV with a local path.
pub fn claim_dir(state_dir: &Path, namespace: &str, claim: &str) -> PathBuf {
    state_dir.join("pvcs").join(namespace).join(claim)
}

/// Materialize every volume of the Pod; returns volume name → host path.
pub async fn materialize(ctx: &VolumeContext<'_>) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let mut out = BTreeMap::new();
    for volume in ctx.pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = materialize_one(ctx, volume)
            .await
            .map_err(|message| VolumeError {
                volume: volume.name.clone(),
                message,
            })?;
        out.insert(volume.name.clone(), path);
    }
    Ok(out)
}

async fn materialize_one(ctx: &VolumeContext<'_>, v: &Volume) -> Result<PathBuf, String> {
    let ns = ctx.pod.metadata.namespace.as_deref().unwrap_or("default");
    let dir = ctx.pod_dir.join("volumes").join(&v.name);
    let io = |e: std::io::Error| e.to_string();
    if v.empty_dir.is_some() {
        fs::create_dir_all(&dir).map_err(io)?;
        return Ok(dir);
    }
    if let Some(hp) = &v.host_path {
        let path = PathBuf::from(&hp.path);
        match hp.type_.as_deref().unwrap_or("") {
            "FileOrCreate" => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(io)?;
                }
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io)?;
            }
            "" | "DirectoryOrCreate" => fs::create_dir_all(&path).map_err(io)?,
            _ if !path.exists() => {
                return Err(format!("hostPath type check failed: {} does not exist", hp.path))
            }
            _ => {}
        }
        return Ok(path);
    }
    if let Some(pvc) = &v.persistent_volume_claim {
        return claim_path(ctx, ns, &pvc.claim_name).await;
    }
    // Everything else is files written into a fresh directory.
    let mut files: Vec<(String, Vec<u8>, Option<i32>)> = Vec::new();
    let default_mode;
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        default_mode = s.default_mode;
        let data = secret_data(ctx.client, ns, &name)
            .await
            .map_err(|e| e.to_string())?;
        files.extend(select_keys(
            data,
            s.items.as_deref(),
            s.optional.unwrap_or(false),
            "secret",
            &name,
        )?);
    } else if let Some(c) = &v.config_map {
        default_mode = c.default_mode;
        let data = config_map_data(ctx.client, ns, &c.name)
            .await
            .map_err(|e| e.to_string())?;
        files.extend(select_keys(
            data,
            c.items.as_deref(),
            c.optional.unwrap_or(false),
            "configmap",
            &c.name,
        )?);
    } else if let Some(d) = &v.downward_api {
        default_mode = d.default_mode;
        for item in d.items.iter().flatten() {
            if let Some(f) = &item.field_ref {
                let value = field_value(ctx.pod, f, ctx.facts).map_err(|e| e.0)?;
                files.push((item.path.clone(), value.into_bytes(), item.mode));
            }
        }
    } else if let Some(p) = &v.projected {
        default_mode = p.default_mode;
        for source in p.sources.iter().flatten() {
            if let Some(s) = &source.secret {
                let data = secret_data(ctx.client, ns, &s.name)
                    .await
                    .map_err(|e| e.to_string())?;
                files.extend(select_keys(
                    data,
                    s.items.as_deref(),
                    s.optional.unwrap_or(false),
                    "secret",
                    &s.name,
                )?);
            }
            if let Some(c) = &source.config_map {
                let data = config_map_data(ctx.client, ns, &c.name)
                    .await
                    .map_err(|e| e.to_string())?;
                files.extend(select_keys(
                    data,
                    c.items.as_deref(),
                    c.optional.unwrap_or(false),
                    "configmap",
                    &c.name,
                )?);
            }
            if let Some(d) = &source.downward_api {
                for item in d.items.iter().flatten() {
                    if let Some(f) = &item.field_ref {
                        let value = field_value(ctx.pod, f, ctx.facts).map_err(|e| e.0)?;
                        files.push((item.path.clone(), value.into_bytes(), item.mode));
                    }
                }
            }
            if let Some(t) = &source.service_account_token {
                let token = service_account_token(ctx, t.audience.clone(), t.expiration_seconds)
                    .await
                    .map_err(|e| format!("failed to fetch token: {e}"))?;
                files.push((t.path.clone(), token.into_bytes(), None));
            }
        }
    } else {
        return Err(
            "volume type not supported by the local node (supported: emptyDir, secret, configMap, \
                    downwardAPI, projected, hostPath, persistentVolumeClaim)"
                .to_string(),
        );
    }
    write_files(&dir, &files, default_mode.unwrap_or(0o644)).map_err(io)?;
    Ok(dir)
}

/// Write fresh ServiceAccount tokens into the Pod's projected volumes. Files are replaced by rename inside
/// the volume's directory, which stays the one mounted in the containers.
pub async fn refresh_tokens(ctx: &VolumeContext<'_>) -> Result<(), VolumeError> {
    for v in ctx.pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = ctx.pod_dir.join("volumes").join(&v.name);
        let sources = v.projected.iter().flat_map(|p| p.sources.iter().flatten());
        for t in sources.filter_map(|s| s.service_account_token.as_ref()) {
            let fail = |message: String| VolumeError {
                volume: v.name.clone(),
                message,
            };
            let token = service_account_token(ctx, t.audience.clone(), t.expiration_seconds)
                .await
                .map_err(|e| fail(format!("failed to fetch token: {e}")))?;
            let path = dir.join(t.path.trim_start_matches('/'));
            let tmp = path.with_extension("refresh");
            fs::write(&tmp, token)
                .and_then(|()| fs::rename(&tmp, &path))
                .map_err(|e| fail(e.to_string()))?;
        }
    }
    Ok(())
}

/// Replace the directory's contents with `files` (keys removed from a Secret disappear on restart).
fn write_files(
    dir: &Path,
    files: &[(String, Vec<u8>, Option<i32>)],
    default_mode: i32,
) -> std::io::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)?;
    for (rel, content, mode) in files {
        let path = dir.join(rel.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, content)?;
        fs::set_permissions(
            &path,
            fs::Permissions::from_mode(mode.unwrap_or(default_mode) as u32 & 0o7777),
        )?;
    }
    Ok(())
}

type Files = Vec<(String, Vec<u8>, Option<i32>)>;

fn select_keys(
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    kind: &str,
    name: &str,
) -> Result<Files, String> {
    let Some(data) = data else {
        return if optional {
            Ok(Vec::new())
        } else {
            Err(format!("{kind} \"{name}\" not found"))
        };
    };
    match items {
        None => Ok(data.into_iter().map(|(k, v)| (k, v, None)).collect()),
        Some(items) => items
            .iter()
            .filter_map(|item| match data.get(&item.key) {
                Some(v) => Some(Ok((item.path.clone(), v.clone(), item.mode))),
                None if optional => None,
                None => Some(Err(format!(
                    "configmap references non-existent config key: {}",
                    item.key
                ))),
            })
            .collect(),
    }
}

async fn claim_path(ctx: &VolumeContext<'_>, ns: &str, claim: &str) -> Result<PathBuf, String> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let pvc = pvcs
        .get_opt(claim)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
    let fallback = claim_dir(ctx.state_dir, ns, claim);
    let volume_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    let path = if volume_name.is_empty() {
        fallback
    } else {
        let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
        let pv = pvs.get_opt(&volume_name).await.map_err(|e| e.to_string())?;
        let spec = pv.and_then(|pv| pv.spec);
        let local = spec.as_ref().and_then(|s| {
            s.host_path
                .as_ref()
                .map(|h| h.path.clone())
                .or_else(|| s.local.as_ref().map(|l| l.path.clone()))
        });
        local.map(PathBuf::from).unwrap_or(fallback)
    };
    fs::create_dir_all(&path).map_err(|e| e.to_string())?;
    Ok(path)
}

pub async fn secret_data(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?.map(|s| {
        let mut data: BTreeMap<String, Vec<u8>> = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        // stringData is write-only, but an apiserver that echoes it back should not lose it.
        for (k, v) in s.string_data.unwrap_or_default() {
            data.insert(k, v.into_bytes());
        }
        data
    }))
}

pub async fn config_map_data(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?.map(|c| {
        let mut data: BTreeMap<String, Vec<u8>> = c
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        for (k, v) in c.binary_data.unwrap_or_default() {
            data.insert(k, v.0);
        }
        data
    }))
}

/// A token bound to the Pod, as the kubelet requests for projected `serviceAccountToken` sources.
async fn service_account_token(
    ctx: &VolumeContext<'_>,
    audience: Option<String>,
    expiration_seconds: Option<i64>,
) -> Result<String, kube::Error> {
    let pod = ctx.pod;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: audience.filter(|a| !a.is_empty()).map(|a| vec![a]),
            expiration_seconds: Some(expiration_seconds.unwrap_or(3607)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let response = api
        .create_token_request(&sa, &PostParams::default(), &request)
        .await?;
    Ok(response.status.and_then(|s| s.token).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_select_and_rename_keys_and_missing_objects_fail_unless_optional() {
        let data: BTreeMap<String, Vec<u8>> =
            [("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())].into();
        let items = [KeyToPath {
            key: "b".into(),
            path: "sub/b.txt".into(),
            mode: Some(0o600),
            ..Default::default()
        }];
        let files = select_keys(Some(data.clone()), Some(&items), false, "secret", "s").unwrap();
        assert_eq!(files, vec![("sub/b.txt".to_string(), b"2".to_vec(), Some(0o600))]);
        assert_eq!(
            select_keys(Some(data), None, false, "secret", "s").unwrap().len(),
            2
        );
        assert_eq!(
            select_keys(None, None, false, "secret", "s").unwrap_err(),
            "secret \"s\" not found"
        );
        assert!(select_keys(None, None, true, "secret", "s").unwrap().is_empty());
    }

    #[test]
    fn files_replace_the_previous_contents_with_their_modes() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("v");
        write_files(&vol, &[("old".into(), b"x".to_vec(), None)], 0o644).unwrap();
        write_files(&vol, &[("d/new".into(), b"y".to_vec(), Some(0o400))], 0o644).unwrap();
        assert!(!vol.join("old").exists());
        assert_eq!(fs::read(vol.join("d/new")).unwrap(), b"y");
        assert_eq!(
            fs::metadata(vol.join("d/new")).unwrap().permissions().mode() & 0o777,
            0o400
        );
    }
}
