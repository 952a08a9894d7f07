//! Reading what a Pod's containers wrote (there is no `kubectl logs` on the local node).

use std::io;
use std::path::{Path, PathBuf};

/// The node's state dir for the cluster in `$LIFEBOAT_CLUSTER_DIR` (default
/// `~/.cache/lifeboat/cluster`): `<cluster dir>/node`.
pub fn default_state_dir() -> PathBuf {
    let cluster = std::env::var_os("LIFEBOAT_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root"));
            home.join(".cache/lifeboat/cluster")
        });
    cluster.join("node")
}

/// Directories of the Pods named `pod` in `namespace` (one per uid: a Pod recreated with the same name
/// has a new one), newest first.
pub fn pod_dirs(state_dir: &Path, namespace: &str, pod: &str) -> io::Result<Vec<PathBuf>> {
    let prefix = format!("{namespace}_{pod}_");
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(state_dir.join("pods"))?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix) && !n[prefix.len()..].contains('_'))
        })
        .map(|e| {
            (
                e.metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH),
                e.path(),
            )
        })
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    Ok(dirs.into_iter().map(|(_, p)| p).collect())
}

/// Path of a container's log (stdout and stderr, appended across restarts) in the newest Pod of that
/// name.
pub fn container_log_path(
    state_dir: &Path,
    namespace: &str,
    pod: &str,
    container: &str,
) -> io::Result<PathBuf> {
    let dir = pod_dirs(state_dir, namespace, pod)?
        .into_iter()
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no Pod {namespace}/{pod} has run on the local node"),
            )
        })?;
    Ok(super::container::log_path(&dir, container))
}

/// What a container wrote, from the node of the default cluster.
pub fn container_log(namespace: &str, pod: &str, container: &str) -> io::Result<String> {
    container_log_in(&default_state_dir(), namespace, pod, container)
}

pub fn container_log_in(state_dir: &Path, namespace: &str, pod: &str, container: &str) -> io::Result<String> {
    let bytes = std::fs::read(container_log_path(state_dir, namespace, pod, container)?)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
