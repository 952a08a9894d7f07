//! Reaching the local cluster's Services from tests: the Service proxy of the local node gives each
//! Service with a selector its own loopback address (127.0.20.x) listening on the Service's ports, and
//! publishes the table in `<state dir>/services.json`.
//!
//! ```no_run
//! # fn main() -> Result<(), localcluster::services::Error> {
//! let url = localcluster::services::resolve_url("http://web.shop.svc:8080/healthz")?;
//! assert!(url.starts_with("http://127.0.20."));
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::node::logs::default_state_dir;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0:?} is not a Service URL: expected scheme://<service>.<namespace>.svc[.cluster.local][:port][/path]")]
    NotAServiceUrl(String),
    #[error(
        "Service {namespace}/{name} is not in the proxy's table {table} (does it exist and have a selector? \
         is the local node running?)"
    )]
    UnknownService {
        namespace: String,
        name: String,
        table: PathBuf,
    },
    #[error("Service {namespace}/{name} has no TCP port {port}")]
    UnknownPort {
        namespace: String,
        name: String,
        port: u16,
    },
    #[error("Service {namespace}/{name} has no ready endpoint after {waited:?}")]
    NoEndpoints {
        namespace: String,
        name: String,
        waited: Duration,
    },
    #[error("reading the Service table {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parsing the Service table {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The proxy's table, as written to `services.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTable {
    pub services: Vec<ServiceEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntry {
    pub namespace: String,
    pub name: String,
    /// Loopback address the proxy listens on for this Service.
    pub address: String,
    pub ports: Vec<PortEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The Service port, which is also the port the proxy listens on.
    pub port: u16,
    /// Ready endpoints (`podIP:targetPort`) connections are forwarded to.
    #[serde(default)]
    pub endpoints: Vec<String>,
}

impl ServiceTable {
    pub fn find(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.services
            .iter()
            .find(|s| s.namespace == namespace && s.name == name)
    }
}

pub fn table_path(state_dir: &Path) -> PathBuf {
    state_dir.join("services.json")
}

/// The table of the default cluster's node (empty when the proxy has not written it yet).
pub fn load() -> Result<ServiceTable, Error> {
    load_in(&default_state_dir())
}

pub fn load_in(state_dir: &Path) -> Result<ServiceTable, Error> {
    let path = table_path(state_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::Parse { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ServiceTable::default()),
        Err(source) => Err(Error::Read { path, source }),
    }
}

/// A Service URL split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrl {
    pub scheme: String,
    pub name: String,
    pub namespace: String,
    pub port: u16,
    /// Everything after the authority, starting with `/` (or empty).
    pub rest: String,
}

/// Parse `scheme://<svc>.<ns>.svc[.cluster.local][:port][/path]` (also `<svc>.<ns>`); the port defaults
/// to 80 for http and 443 for https.
pub fn parse_url(url: &str) -> Result<ServiceUrl, Error> {
    let bad = || Error::NotAServiceUrl(url.to_string());
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let (authority, rest) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (
            authority,
            match scheme {
                "http" => 80,
                "https" => 443,
                _ => return Err(bad()),
            },
        ),
    };
    let host = host.strip_suffix(".cluster.local").unwrap_or(host);
    let host = host.strip_suffix(".svc").unwrap_or(host);
    let (name, namespace) = host.split_once('.').ok_or_else(bad)?;
    if name.is_empty() || namespace.is_empty() || namespace.contains('.') {
        return Err(bad());
    }
    Ok(ServiceUrl {
        scheme: scheme.to_string(),
        name: name.to_string(),
        namespace: namespace.to_string(),
        port,
        rest: rest.to_string(),
    })
}

/// `http://web.shop.svc:8080/x` → `http://127.0.20.3:8080/x`, through the default cluster's proxy table.
pub fn resolve_url(url: &str) -> Result<String, Error> {
    resolve_url_in(&default_state_dir(), url)
}

pub fn resolve_url_in(state_dir: &Path, url: &str) -> Result<String, Error> {
    let parsed = parse_url(url)?;
    let table = load_in(state_dir)?;
    let entry = lookup(&table, &parsed, state_dir)?;
    Ok(format!(
        "{}://{}:{}{}",
        parsed.scheme, entry.address, parsed.port, parsed.rest
    ))
}

/// The local `address:port` for a Service port.
pub fn resolve_addr(namespace: &str, name: &str, port: u16) -> Result<String, Error> {
    let url = format!("tcp://{name}.{namespace}.svc:{port}");
    let parsed = parse_url(&url)?;
    let state_dir = default_state_dir();
    let entry = lookup(&load_in(&state_dir)?, &parsed, &state_dir)?;
    Ok(format!("{}:{port}", entry.address))
}

fn lookup(table: &ServiceTable, url: &ServiceUrl, state_dir: &Path) -> Result<ServiceEntry, Error> {
    let entry = table
        .find(&url.namespace, &url.name)
        .ok_or_else(|| Error::UnknownService {
            namespace: url.namespace.clone(),
            name: url.name.clone(),
            table: table_path(state_dir),
        })?;
    if !entry.ports.iter().any(|p| p.port == url.port) {
        return Err(Error::UnknownPort {
            namespace: url.namespace.clone(),
            name: url.name.clone(),
            port: url.port,
        });
    }
    Ok(entry.clone())
}

/// Like [`resolve_url`], but waits (up to `timeout`) until the Service is in the table with at least one
/// ready endpoint behind the URL's port.
pub async fn resolve_url_when_ready(url: &str, timeout: Duration) -> Result<String, Error> {
    let state_dir = default_state_dir();
    let parsed = parse_url(url)?;
    let start = std::time::Instant::now();
    loop {
        let table = load_in(&state_dir)?;
        let ready = table
            .find(&parsed.namespace, &parsed.name)
            .and_then(|s| s.ports.iter().find(|p| p.port == parsed.port))
            .is_some_and(|p| !p.endpoints.is_empty());
        if ready {
            return resolve_url_in(&state_dir, url);
        }
        if start.elapsed() >= timeout {
            return Err(Error::NoEndpoints {
                namespace: parsed.namespace,
                name: parsed.name,
                waited: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_resolve_to_the_proxy_address_keeping_port_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let table = ServiceTable {
            services: vec![ServiceEntry {
                namespace: "shop".into(),
                name: "web".into(),
                address: "127.0.20.3".into(),
                ports: vec![PortEntry {
                    name: None,
                    port: 8080,
                    endpoints: vec!["127.0.10.1:8080".into()],
                }],
            }],
        };
        std::fs::write(table_path(dir.path()), serde_json::to_vec(&table).unwrap()).unwrap();
        let resolve = |u: &str| resolve_url_in(dir.path(), u);
        assert_eq!(
            resolve("http://web.shop.svc:8080/a?b").unwrap(),
            "http://127.0.20.3:8080/a?b"
        );
        assert_eq!(
            resolve("http://web.shop.svc.cluster.local:8080").unwrap(),
            "http://127.0.20.3:8080"
        );
        assert_eq!(
            resolve("http://web.shop:8080/").unwrap(),
            "http://127.0.20.3:8080/"
        );
        assert!(matches!(
            resolve("http://web.shop.svc/"),
            Err(Error::UnknownPort { port: 80, .. })
        ));
        assert!(matches!(
            resolve("http://api.shop.svc:8080"),
            Err(Error::UnknownService { .. })
        ));
        assert!(matches!(
            resolve("http://localhost:8080"),
            Err(Error::NotAServiceUrl(_))
        ));
    }
}
