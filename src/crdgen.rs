//! The CustomResourceDefinitions, generated from the Rust types: printed by `lifeboat crds`, committed
//! under `crds/`, and checked for drift by a test.

use std::path::Path;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{Backup, BackupPolicy, Cutover, Restore, RestoreDrill};

#[derive(Debug, thiserror::Error)]
pub enum CrdGenError {
    #[error("could not serialize CRD {name}: {source}")]
    Serialize {
        name: String,
        source: serde_norway::Error,
    },
    #[error("could not write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// Every CRD with the file name it is committed under, in file-name order, so that `lifeboat crds` prints
/// exactly `cat crds/*.yaml`.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("backuppolicies.yaml", BackupPolicy::crd()),
        ("backups.yaml", Backup::crd()),
        ("cutovers.yaml", Cutover::crd()),
        ("restoredrills.yaml", RestoreDrill::crd()),
        ("restores.yaml", Restore::crd()),
    ]
}

/// One CRD as a YAML document (with its `---` separator), as committed.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, CrdGenError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let yaml = serde_norway::to_string(crd).map_err(|source| CrdGenError::Serialize { name, source })?;
    Ok(format!("---\n{yaml}"))
}

/// Prints all CRDs as one YAML stream, or writes one file per kind into `out_dir`.
pub fn write(out_dir: Option<&Path>) -> Result<(), CrdGenError> {
    for (file, crd) in all() {
        let yaml = to_yaml(&crd)?;
        match out_dir {
            Some(dir) => {
                let path = dir.join(file);
                std::fs::write(&path, yaml).map_err(|source| CrdGenError::Write {
                    path: path.display().to_string(),
                    source,
                })?;
            }
            None => print!("{yaml}"),
        }
    }
    Ok(())
}
