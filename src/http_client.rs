//! The operator's one outgoing HTTP client: Cutover HTTP checks, Prometheus queries (src/checks.rs) and
//! webhook notifications (src/notify.rs). (src/http.rs is the operator's own health/metrics *server*.)
//!
//! Built once and shared, so TLS setup and root loading happen once per process:
//! - rustls with the ring provider (as kube uses) and the platform verifier, which on Linux reads the
//!   system CA certificates (as the former hyper-rustls `native_roots` connector did). With no system
//!   certificates plain-http still works and https requests fail naming the verification error;
//! - HTTP/1 only, no redirects followed (a check sees the 30x itself), no pooled connections (every check
//!   is a fresh look: no pooled connection to a Pod that has gone);
//! - an overall timeout; callers with their own deadline (a check's `timeout`, the webhook's 10 s) set it
//!   per request, and it covers connecting too (a separate connect timeout cut long check timeouts short);
//! - proxies from the environment: HTTPS_PROXY / HTTP_PROXY / ALL_PROXY and NO_PROXY (and the lower-case
//!   forms) are honoured. A loopback destination never goes through a proxy ([`client_for`]): the proxy
//!   would dial its own loopback, not ours.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// The ceiling for a request that sets no deadline of its own.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(60);

/// The shared client; `Err` says why it could not be built (every request then fails with that text).
pub fn client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: LazyLock<Result<reqwest::Client, String>> = LazyLock::new(|| build(true));
    CLIENT.as_ref().map_err(Clone::clone)
}

/// The client for `url`: the shared one, or for a loopback destination one that never uses a proxy.
pub fn client_for(url: &reqwest::Url) -> Result<&'static reqwest::Client, String> {
    static DIRECT: LazyLock<Result<reqwest::Client, String>> = LazyLock::new(|| build(false));
    if is_loopback(url) {
        DIRECT.as_ref().map_err(Clone::clone)
    } else {
        client()
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

fn build(proxy_from_environment: bool) -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS setup: {error}"))?;
    let tls = match rustls_platform_verifier::Verifier::new(provider) {
        Ok(verifier) => builder
            .dangerous() // only in name: this is the platform's full certificate verification
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth(),
        // An image without CA certificates: plain http still works; https fails naming the issuer.
        Err(error) => {
            tracing::warn!(%error, "no system CA certificates: https checks and webhooks will fail");
            builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }
    };
    let builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .http1_only()
        .timeout(TOTAL_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .user_agent(concat!("lifeboat/", env!("CARGO_PKG_VERSION")));
    let builder = if proxy_from_environment {
        builder
    } else {
        builder.no_proxy()
    };
    builder
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
    fn loopback_destinations_bypass_any_proxy() {
        let url = |text: &str| reqwest::Url::parse(text).unwrap();
        assert!(is_loopback(&url("http://127.0.0.1:8080/health")));
        assert!(is_loopback(&url("http://[::1]/")));
        assert!(is_loopback(&url("http://localhost:9090/api/v1/query")));
        assert!(!is_loopback(&url("http://web.hotel.svc/health")));
        let direct = client_for(&url("http://127.0.0.1/")).unwrap() as *const reqwest::Client;
        let shared = client().unwrap() as *const reqwest::Client;
        assert_ne!(direct, shared);
        assert_eq!(
            client_for(&url("http://web.hotel.svc/")).unwrap() as *const _,
            shared
        );
    }

    /// HTTP(S)_PROXY is read when a client is built (reqwest's system proxy matcher), so the operator's
    /// webhooks and checks to remote hosts go through the proxy its Deployment sets.
    #[tokio::test]
    async fn a_proxy_from_the_environment_carries_requests_to_remote_hosts() {
        use std::io::{BufRead, BufReader, Write};
        // A one-request "proxy" on loopback that answers 200 and reports the request line it got.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            reader.get_mut().write_all(answer).unwrap();
            first.trim_end().to_owned()
        });
        // Set only around the build: the shared clients other tests build must not see it.
        std::env::set_var("HTTP_PROXY", &proxy);
        let proxied = build(true);
        std::env::remove_var("HTTP_PROXY");
        let response = proxied
            .unwrap()
            .get("http://hotel.example.invalid/health")
            .send()
            .await
            .expect("the request reaches the proxy");
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            seen.join().unwrap(),
            "GET http://hotel.example.invalid/health HTTP/1.1"
        );
    }

    #[test]
    fn the_shared_client_builds_once() {
        let first = client().expect("the client builds") as *const reqwest::Client;
        let second = client().unwrap() as *const reqwest::Client;
        assert_eq!(first, second);
    }
}
