//! The real control plane for tests: started once per test run by `hack/cluster-up.sh` (which returns at
//! once when the cluster is already up, e.g. after `just cluster-up`), then one namespace per test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("hack/cluster-up.sh failed ({status}); its log is in {log_dir}: {stderr}")]
    StartFailed {
        status: String,
        log_dir: String,
        stderr: String,
    },
    #[error("could not run {command}: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("could not read kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("kube client: {0}")]
    Client(#[from] kube::Error),
    #[error("namespace {namespace}: the default ServiceAccount did not appear within {seconds}s")]
    NoDefaultServiceAccount { namespace: String, seconds: u64 },
}

/// The repository's root (this crate lives in `testing/localcluster`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root exists")
}

/// `$LIFEBOAT_CLUSTER_DIR`, as `hack/lib.sh` computes it.
pub fn cluster_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("LIFEBOAT_CLUSTER_DIR") {
        return PathBuf::from(dir);
    }
    cache_dir().join("cluster")
}

/// `$LIFEBOAT_CACHE`: built binaries live in its `bin/`.
pub fn cache_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("LIFEBOAT_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".to_owned());
    PathBuf::from(home).join(".cache/lifeboat")
}

/// The started cluster: its admin kubeconfig, for clients and for `kubectl`.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub kubeconfig: PathBuf,
}

static STARTED: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Starts the local cluster unless it is up, once per test process. Blocking on purpose: it runs before
/// any test talks to the cluster, and a `#[tokio::test]` runtime may be single-threaded.
pub fn ensure() -> Result<Cluster, ClusterError> {
    let started = STARTED.get_or_init(|| start_cluster().map_err(|error| error.to_string()));
    match started {
        Ok(kubeconfig) => Ok(Cluster {
            kubeconfig: kubeconfig.clone(),
        }),
        Err(message) => Err(ClusterError::StartFailed {
            status: "earlier attempt".to_owned(),
            log_dir: cluster_dir().display().to_string(),
            stderr: message.clone(),
        }),
    }
}

fn start_cluster() -> Result<PathBuf, ClusterError> {
    let script = repo_root().join("hack/cluster-up.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|source| ClusterError::Spawn {
            command: script.display().to_string(),
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        return Err(ClusterError::StartFailed {
            status: output.status.to_string(),
            log_dir: cluster_dir().display().to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    let kubeconfig = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    Ok(PathBuf::from(kubeconfig))
}

impl Cluster {
    /// A fresh client. Each test gets its own: a client is tied to the runtime it was created on, and
    /// every `#[tokio::test]` has its own runtime.
    pub async fn client(&self) -> Result<Client, ClusterError> {
        Ok(Client::try_from(self.config().await?)?)
    }

    /// A fresh client that acts as `user` in `groups` (impersonation, as `kubectl --as … --as-group …`):
    /// what the API server's authorization and admission see of a person behind OIDC or a certificate.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> Result<Client, ClusterError> {
        let mut config = self.config().await?;
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| (*g).to_owned()).collect());
        Ok(Client::try_from(config)?)
    }

    async fn config(&self) -> Result<Config, ClusterError> {
        let kubeconfig =
            Kubeconfig::read_from(&self.kubeconfig).map_err(|source| ClusterError::Kubeconfig {
                path: self.kubeconfig.display().to_string(),
                source,
            })?;
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|source| ClusterError::Kubeconfig {
                path: self.kubeconfig.display().to_string(),
                source,
            })
    }

    /// `kubectl` (the one built with the cluster) pointed at this cluster.
    pub fn kubectl(&self) -> Command {
        let bin = cache_dir().join("bin");
        let mut command = Command::new(bin.join("kubectl"));
        command.env("KUBECONFIG", &self.kubeconfig);
        command
    }

    /// `helm` (built with the cluster) pointed at this cluster.
    pub fn helm(&self) -> Command {
        let mut command = Command::new(cache_dir().join("bin/helm"));
        command.env("KUBECONFIG", &self.kubeconfig);
        command
    }

    /// Creates a namespace of its own for one test (`<prefix>-<random>`) and waits until Pods can be
    /// created in it (the controller-manager has made its `default` ServiceAccount). It is deleted when
    /// the returned value is dropped. It enforces Pod Security `restricted`, as the namespaces of
    /// careful users do: every Pod Lifeboat makes must pass it by default.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace, ClusterError> {
        self.namespace_enforcing(prefix, Some("restricted")).await
    }

    async fn namespace_enforcing(
        &self,
        prefix: &str,
        level: Option<&str>,
    ) -> Result<TestNamespace, ClusterError> {
        let client = self.client().await?;
        let name = format!("{prefix}-{}", random_suffix());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let mut labels: std::collections::BTreeMap<String, String> =
            [("lifeboat.dev/test".to_owned(), "true".to_owned())].into();
        if let Some(level) = level {
            labels.insert("pod-security.kubernetes.io/enforce".to_owned(), level.to_owned());
            labels.insert(
                "pod-security.kubernetes.io/enforce-version".to_owned(),
                "latest".to_owned(),
            );
        }
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels),
                ..Default::default()
            },
            ..Default::default()
        };
        namespaces.create(&PostParams::default(), &namespace).await?;
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        let seconds = 30;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        while accounts.get_opt("default").await?.is_none() {
            if tokio::time::Instant::now() > deadline {
                return Err(ClusterError::NoDefaultServiceAccount {
                    namespace: name,
                    seconds,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(TestNamespace {
            name,
            client,
            keep: std::env::var_os("LIFEBOAT_KEEP_NAMESPACES").is_some(),
        })
    }
}

/// A namespace owned by one test.
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
    keep: bool,
}

impl TestNamespace {
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace now (and waits for nothing).
    pub async fn delete(self) -> Result<(), ClusterError> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        namespaces.delete(&self.name, &DeleteParams::background()).await?;
        Ok(())
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // Fire and forget through kubectl: Drop cannot await, and a failed cleanup must not fail a test.
        if let Ok(cluster) = ensure() {
            let _ = cluster
                .kubectl()
                .args([
                    "delete",
                    "namespace",
                    &self.name,
                    "--wait=false",
                    "--ignore-not-found",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{:08x}", hasher.finish() as u32)
}
