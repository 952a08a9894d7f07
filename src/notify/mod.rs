//! Webhook notifications in the Slack-compatible shape (`{"text": …}`), which Slack, Mattermost, Rocket.Chat
//! and most chat bridges accept. The URL comes from a Secret (it usually embeds a token) and is never
//! logged, put in status or in an Event.
//!
//! Each kind keeps its notifications in its status ([`delivery`]): queued there, tried by the reconcile
//! that queued them and retried with backoff by later ones, so a restart or a flapping webhook loses none.

pub mod delivery;

use std::time::Duration;

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

/// The chat text for one notification, e.g. `Lifeboat: BackupPolicy shop/orders backup FAILED` and a
/// detail line.
pub fn message(kind: &str, namespace: &str, name: &str, headline: &str, detail: &str) -> String {
    format!("Lifeboat: {kind} {namespace}/{name} {headline}\n{detail}")
}

/// The Slack-compatible body for a chat text.
pub fn payload(text: &str) -> serde_json::Value {
    serde_json::json!({ "text": text })
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
    let url = reqwest::Url::parse(&url).map_err(|_| NotifyError::InvalidUrl {
        name: url_ref.name.clone(),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(NotifyError::InvalidUrl {
            name: url_ref.name.clone(),
        });
    }
    post_json(url, payload).await
}

async fn post_json(url: reqwest::Url, payload: &serde_json::Value) -> Result<(), NotifyError> {
    let timeout = Duration::from_secs(10);
    let client = crate::http_client::client_for(&url).map_err(NotifyError::Request)?;
    let response = client
        .post(url)
        .json(payload)
        .timeout(timeout)
        .send()
        .await
        // The error text of a connection failure can contain the URL: keep only its kind.
        .map_err(|error| {
            if error.is_timeout() {
                NotifyError::Timeout(timeout)
            } else if error.is_connect() {
                NotifyError::Request("connection failed".into())
            } else {
                NotifyError::Request("request failed".into())
            }
        })?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(NotifyError::Status(status))
    }
}
