//! `lifeboat probe URL`: one HTTP GET that succeeds on a 2xx answer (optionally containing a text). The
//! chart's `helm test` runs it in the operator's image, which has no curl, to check the operator answers
//! through its Service and cluster DNS.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{url} is not an absolute http(s) URL: {message}")]
    BadUrl { url: String, message: String },
    #[error("GET {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("GET {url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url} answered {status} without {expected:?} in its {length}-byte body")]
    MissingText {
        url: String,
        status: u16,
        expected: String,
        length: usize,
    },
}

/// GETs `url` within `timeout`; Ok with the status line when it answers 2xx (and contains `expect`).
pub async fn probe(url: &str, expect: Option<&str>, timeout: Duration) -> Result<String, ProbeError> {
    let parsed = reqwest::Url::parse(url).map_err(|error| ProbeError::BadUrl {
        url: url.to_owned(),
        message: error.to_string(),
    })?;
    let client = crate::http_client::client_for(&parsed).map_err(|message| ProbeError::Unreachable {
        url: url.to_owned(),
        message,
    })?;
    let response = client
        .get(parsed)
        .timeout(timeout)
        .send()
        .await
        .map_err(|error| ProbeError::Unreachable {
            url: url.to_owned(),
            message: error_chain(&error),
        })?;
    let status = response.status().as_u16();
    if !response.status().is_success() {
        return Err(ProbeError::Status {
            url: url.to_owned(),
            status,
        });
    }
    let body = response.text().await.unwrap_or_default();
    if let Some(expected) = expect.filter(|text| !body.contains(*text)) {
        return Err(ProbeError::MissingText {
            url: url.to_owned(),
            status,
            expected: expected.to_owned(),
            length: body.len(),
        });
    }
    Ok(format!("GET {url}: {status}"))
}

/// The error and its causes ("error sending request: … : connection refused"): reqwest's own text alone
/// hides which of DNS, connect or TLS failed.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_probe_passes_on_2xx_with_the_text_and_says_why_otherwise() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/readyz", listener.local_addr().unwrap());
        tokio::spawn(async move {
            for status in ["200 OK", "200 OK", "503 Service Unavailable"] {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let response =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                stream.write_all(response.as_bytes()).await.unwrap();
            }
        });
        let timeout = Duration::from_secs(5);
        assert!(probe(&url, Some("ok"), timeout).await.is_ok());
        let missing = probe(&url, Some("lifeboat_build_info"), timeout)
            .await
            .unwrap_err();
        assert!(
            matches!(missing, ProbeError::MissingText { status: 200, .. }),
            "{missing}"
        );
        let failing = probe(&url, None, timeout).await.unwrap_err();
        assert_eq!(failing.to_string(), format!("GET {url} answered 503"));
        let bad = probe("readyz", None, timeout).await.unwrap_err();
        assert!(matches!(bad, ProbeError::BadUrl { .. }), "{bad}");
    }
}
