//! Webhook notifications in the Slack-compatible shape (`{"text": …}`), which Slack, Mattermost, Rocket.Chat
//! and most chat bridges accept. The URL comes from a Secret (it usually embeds a token) and is never
//! logged, put in status or in an Event.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::api::common::SecretKeyRef;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("webhook Secret {name}: {source}")]
    Secret { name: String, source: kube::Error },
    #[error("webhook Secret {name} has no key {key:?}")]
    MissingKey { name: String, key: String },
    #[error("the webhook URL in Secret {name} is not a valid http(s) URL")]
    InvalidUrl { name: String },
    #[error("the webhook did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the webhook request failed: {0}")]
    Request(String),
    #[error("the webhook answered HTTP {0}")]
    Status(u16),
}

/// The chat message for one notification.
pub fn message(namespace: &str, policy: &str, headline: &str, detail: &str) -> serde_json::Value {
    serde_json::json!({ "text": format!("Lifeboat: BackupPolicy {namespace}/{policy} {headline}\n{detail}") })
}

/// Reads the webhook URL from its Secret and posts `payload` to it.
pub async fn send(
    client: &kube::Client,
    namespace: &str,
    url_ref: &SecretKeyRef,
    payload: &serde_json::Value,
) -> Result<(), NotifyError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get(&url_ref.name)
        .await
        .map_err(|source| NotifyError::Secret {
            name: url_ref.name.clone(),
            source,
        })?;
    let url = secret
        .data
        .as_ref()
        .and_then(|data| data.get(&url_ref.key))
        .map(|bytes| String::from_utf8_lossy(&bytes.0).trim().to_owned())
        .ok_or_else(|| NotifyError::MissingKey {
            name: url_ref.name.clone(),
            key: url_ref.key.clone(),
        })?;
    let uri: hyper::Uri = url.parse().map_err(|_| NotifyError::InvalidUrl {
        name: url_ref.name.clone(),
    })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(NotifyError::InvalidUrl {
            name: url_ref.name.clone(),
        });
    }
    post_json(uri, payload).await
}

async fn post_json(uri: hyper::Uri, payload: &serde_json::Value) -> Result<(), NotifyError> {
    let timeout = Duration::from_secs(10);
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(|error| NotifyError::Request(format!("TLS setup: {error}")))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(payload.to_string())))
        .map_err(|error| NotifyError::Request(error.to_string()))?;
    let response = tokio::time::timeout(timeout, client.request(request))
        .await
        .map_err(|_| NotifyError::Timeout(timeout))?
        // The error text of a connection failure can contain the URL: keep only its kind.
        .map_err(|error| {
            NotifyError::Request(if error.is_connect() {
                "connection failed".into()
            } else {
                "request failed".into()
            })
        })?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(NotifyError::Status(status))
    }
}
