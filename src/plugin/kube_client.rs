//! A client from the kubeconfig, honouring --kubeconfig, --context and the context's namespace.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::cli::Target;
use super::PluginError;

pub struct Session {
    pub client: Client,
    /// The namespace to act in: -n, else the context's, else `default`.
    pub namespace: String,
    /// -A: list every namespace.
    pub all_namespaces: bool,
}

impl Session {
    pub async fn connect(target: &Target) -> Result<Session, PluginError> {
        let options = KubeConfigOptions {
            context: target.context.clone(),
            ..Default::default()
        };
        let kubeconfig = match &target.kubeconfig {
            Some(path) => Kubeconfig::read_from(path),
            None => Kubeconfig::read(),
        }
        .map_err(|error| PluginError::Kubeconfig(error.to_string()))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|error| PluginError::Kubeconfig(error.to_string()))?;
        let namespace = target
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|error| PluginError::Kubeconfig(error.to_string()))?;
        Ok(Session {
            client,
            namespace,
            all_namespaces: target.all_namespaces,
        })
    }

    /// The API of a namespaced kind in the session's namespace.
    pub fn api<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        kube::Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// For listings: every namespace with -A, else the session's.
    pub fn list_api<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        if self.all_namespaces {
            kube::Api::all(self.client.clone())
        } else {
            self.api()
        }
    }
}
