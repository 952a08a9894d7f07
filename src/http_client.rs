//! The operator's one outgoing HTTP client: Cutover HTTP checks, Prometheus queries (src/checks.rs) and
//! webhook notifications (src/notify.rs). (src/http.rs is the operator's own health/metrics *server*.)
//!
//! Built once and shared, so TLS setup and root loading happen once per process:
//! - rustls with the ring provider (as kube uses) and the platform verifier, which on Linux reads the
//!   system CA certificates (as the former hyper-rustls `native_roots` connector did). With no system
//!   certificates plain-http still works and https requests fail naming the verification error;
//! - HTTP/1 only, no redirects followed (a check sees the 30x itself), no pooled connections (every check
//!   is a fresh look: no pooled connection to a Pod that has gone);
//! - a connect timeout and an overall timeout; callers with their own deadline (a check's `timeout`, the
//!   webhook's 10 s) set it per request, which takes precedence over the overall one;
//! - proxies from the environment: HTTPS_PROXY / HTTP_PROXY / ALL_PROXY and NO_PROXY (and the lower-case
//!   forms) are honoured. That is reqwest's default; it stays on because `no_proxy()` is never called.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// How long establishing a TCP (and TLS) connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The ceiling for a request that sets no deadline of its own.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(60);

/// The shared client; `Err` says why it could not be built (every request then fails with that text).
pub fn client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: LazyLock<Result<reqwest::Client, String>> = LazyLock::new(build);
    CLIENT.as_ref().map_err(Clone::clone)
}

fn build() -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|error| format!("TLS setup: {error}"))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS setup: {error}"))?
        .dangerous() // only in name: this is the platform's full certificate verification
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .http1_only()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TOTAL_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .user_agent(concat!("lifeboat/", env!("CARGO_PKG_VERSION")))
        // Proxies: deliberately no `.no_proxy()`, so HTTP(S)_PROXY / NO_PROXY from the environment apply.
        .build()
        .map_err(|error| format!("HTTP client setup: {}", error_chain(&error)))
}

/// An error with its causes, `outer: inner: …` (reqwest's Display shows only the outermost).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_client_builds_once() {
        let first = client().expect("the client builds") as *const reqwest::Client;
        let second = client().unwrap() as *const reqwest::Client;
        assert_eq!(first, second);
    }
}
