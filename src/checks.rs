//! What a Cutover looks at: HTTP checks (the runbooks' `curl -fsS …/health`), Prometheus instant queries
//! (the Django plan's "error rate < 0.1 %") and Deployment readiness (fully rolled out, every Pod Ready).
//!
//! The operator reaches `http://web.hotel.svc/health` through cluster DNS, as any client in the cluster.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use reqwest::Url;

use crate::api::common::HttpCheck;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bodies kept for matching and messages; a health endpoint never needs more.
const BODY_LIMIT: usize = 64 * 1024;

/// The answer of one HTTP request.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// Runs `check` with its retries; `Ok` carries a one-line summary, `Err` what went wrong.
pub async fn run_http_check(check: &HttpCheck) -> Result<String, String> {
    let attempts = 1 + check.retries.unwrap_or(0).clamp(0, 10) as usize;
    let mut last = String::new();
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        match http_check_once(check).await {
            Ok(summary) => return Ok(summary),
            Err(problem) => last = problem,
        }
    }
    if attempts > 1 {
        last = format!("{last} (after {attempts} attempts)");
    }
    Err(last)
}

async fn http_check_once(check: &HttpCheck) -> Result<String, String> {
    let timeout = check
        .timeout
        .as_ref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT);
    let method = check.method.as_deref().unwrap_or("GET");
    let response = request(method, &check.url, timeout).await?;
    judge_http(check, &response)
}

/// Whether `response` passes `check` (pure, unit-tested).
pub fn judge_http(check: &HttpCheck, response: &HttpResponse) -> Result<String, String> {
    let method = check.method.as_deref().unwrap_or("GET");
    if i32::from(response.status) != check.expect_status {
        return Err(format!(
            "{method} {} answered {} (expected {}){}",
            check.url,
            response.status,
            check.expect_status,
            body_excerpt(&response.body)
        ));
    }
    if let Some(needle) = &check.expect_body_contains {
        if !response.body.contains(needle.as_str()) {
            return Err(format!(
                "{method} {} answered {} but the body lacks {needle:?}{}",
                check.url,
                response.status,
                body_excerpt(&response.body)
            ));
        }
    }
    Ok(format!("{method} {} answered {}", check.url, response.status))
}

fn body_excerpt(body: &str) -> String {
    let line = body.trim().lines().next().unwrap_or_default();
    if line.is_empty() {
        return String::new();
    }
    let short: String = line.chars().take(120).collect();
    format!(": {short}")
}

/// One HTTP request with a deadline (the shared client of [`crate::http_client`]).
pub async fn request(method: &str, url: &str, timeout: Duration) -> Result<HttpResponse, String> {
    let target = Url::parse(url).map_err(|error| format!("{url} is not a URL: {error}"))?;
    if target.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url} has no host"));
    }
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("{method} is not an HTTP method"))?;
    let client = crate::http_client::client_for(&target)?;
    let request = client.request(method.clone(), target).timeout(timeout);
    // reqwest's per-request timeout covers connecting, the answer and reading the body.
    let failed = |error: reqwest::Error, doing: &str| {
        if error.is_timeout() {
            format!(
                "{method} {url}: no answer within {}",
                crate::duration::format_duration(timeout)
            )
        } else {
            // Without the URL: the message names it already.
            let cause = crate::http_client::error_chain(&error.without_url());
            format!("{method} {url}: {doing}{cause}")
        }
    };
    let mut response = request.send().await.map_err(|error| failed(error, ""))?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| failed(error, "reading the body: "))?
    {
        body.extend_from_slice(&chunk);
        if body.len() >= BODY_LIMIT {
            body.truncate(BODY_LIMIT);
            break;
        }
    }
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The single value of a Prometheus instant query (`/api/v1/query`), judged against [min, max].
pub async fn prometheus_value(address: &str, query: &str, timeout: Duration) -> Result<f64, String> {
    let encoded = percent_encoding::utf8_percent_encode(query, percent_encoding::NON_ALPHANUMERIC);
    let url = format!("{}/api/v1/query?query={encoded}", address.trim_end_matches('/'));
    let response = request("GET", &url, timeout).await?;
    if response.status != 200 {
        return Err(format!(
            "Prometheus answered {}{}",
            response.status,
            body_excerpt(&response.body)
        ));
    }
    parse_prometheus_value(&response.body)
}

/// Reads the one number of an instant query's JSON answer. An empty result or NaN fails: a watch that
/// sees no data must not pass for a healthy one.
pub fn parse_prometheus_value(body: &str) -> Result<f64, String> {
    let parsed: serde_json::Value =
        serde_json::from_str(body).map_err(|error| format!("Prometheus answer is not JSON: {error}"))?;
    if parsed["status"] != "success" {
        let error = parsed["error"].as_str().unwrap_or("unknown error");
        return Err(format!("Prometheus query failed: {error}"));
    }
    let data = &parsed["data"];
    let sample = match data["resultType"].as_str() {
        Some("scalar") => data["result"].clone(),
        Some("vector") => {
            let results = data["result"].as_array().cloned().unwrap_or_default();
            match results.len() {
                0 => return Err("the query returned no samples".into()),
                1 => results[0]["value"].clone(),
                n => {
                    return Err(format!(
                        "the query returned {n} series; aggregate it to one (sum, max, …)"
                    ))
                }
            }
        }
        other => {
            return Err(format!(
                "unsupported result type {other:?}; use an instant vector or scalar"
            ))
        }
    };
    let text = sample[1].as_str().ok_or("the sample has no value")?;
    let value: f64 = text
        .parse()
        .map_err(|_| format!("the sample value {text:?} is not a number"))?;
    if value.is_nan() {
        return Err("the query returned NaN (no traffic?)".into());
    }
    Ok(value)
}

/// Whether `value` lies within the bounds; `Err` says which bound it broke.
pub fn within(value: f64, min: Option<f64>, max: Option<f64>) -> Result<(), String> {
    if let Some(min) = min {
        if value < min {
            return Err(format!("{value} is below the minimum {min}"));
        }
    }
    if let Some(max) = max {
        if value > max {
            return Err(format!("{value} is above the maximum {max}"));
        }
    }
    Ok(())
}

/// Whether a Deployment is fully rolled out with every Pod Ready: the controller has seen the newest
/// spec, every replica is updated, ready and available, no old replica remains, and each Pod matching
/// `selector` that is not terminating is Ready. `Err` says what is still missing.
pub fn deployment_ready(deployment: &Deployment, pods: &[Pod]) -> Result<String, String> {
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let wanted = deployment.spec.replicas.unwrap_or(1);
    if wanted == 0 {
        // Rolled out, trivially: and nothing would answer a request.
        return Err(format!("Deployment {name} is scaled to 0 replicas"));
    }
    let status = deployment.status.clone().unwrap_or_default();
    let generation = deployment.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return Err(format!(
            "Deployment {name}: generation {generation} not yet observed by its controller"
        ));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    if updated < wanted || ready < wanted || available < wanted || total > wanted {
        return Err(format!(
            "Deployment {name}: {updated}/{wanted} updated, {ready}/{wanted} ready, {available}/{wanted} available, {total} total"
        ));
    }
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let unready: Vec<String> = live
        .iter()
        .filter(|pod| !pod_ready(pod))
        .map(|pod| pod.metadata.name.clone().unwrap_or_default())
        .collect();
    if !unready.is_empty() {
        return Err(format!(
            "Deployment {name}: Pods not Ready: {}",
            unready.join(", ")
        ));
    }
    if (live.len() as i32) < wanted {
        return Err(format!(
            "Deployment {name}: {} of {wanted} Pods exist",
            live.len()
        ));
    }
    Ok(format!(
        "Deployment {name}: {wanted}/{wanted} replicas updated and Ready"
    ))
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(value: serde_json::Value) -> HttpCheck {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn an_http_check_wants_the_expected_status_and_body() {
        let health = check(json!({"url": "http://web.hotel.svc/health"}));
        assert!(judge_http(
            &health,
            &HttpResponse {
                status: 200,
                body: "ok".into()
            }
        )
        .is_ok());
        let failed = judge_http(
            &health,
            &HttpResponse {
                status: 500,
                body: "database down\nmore".into(),
            },
        )
        .unwrap_err();
        assert_eq!(
            failed,
            "GET http://web.hotel.svc/health answered 500 (expected 200): database down"
        );
        let version = check(json!({"url": "http://web/version", "expectBodyContains": "2.4"}));
        assert!(judge_http(
            &version,
            &HttpResponse {
                status: 200,
                body: "2.3.9".into()
            }
        )
        .unwrap_err()
        .contains("lacks \"2.4\""));
    }

    #[test]
    fn prometheus_answers_are_one_number_or_a_reason() {
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"0.0004"]}]}}"#;
        assert_eq!(parse_prometheus_value(vector), Ok(0.0004));
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"2"]}}"#;
        assert_eq!(parse_prometheus_value(scalar), Ok(2.0));
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(parse_prometheus_value(empty).unwrap_err().contains("no samples"));
        let nan = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        assert!(parse_prometheus_value(nan).unwrap_err().contains("NaN"));
        let error = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert!(parse_prometheus_value(error).unwrap_err().contains("parse error"));
        assert!(within(0.002, None, Some(0.001))
            .unwrap_err()
            .contains("above the maximum 0.001"));
        assert!(within(0.0005, None, Some(0.001)).is_ok());
    }

    /// A one-shot HTTP/1 server on loopback answering `answer` verbatim; hands back what it was sent.
    async fn loopback_server(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let served = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let mut buffer = [0u8; 1024];
            while !received.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buffer).await.unwrap();
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&buffer[..n]);
            }
            socket.write_all(answer.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8_lossy(&received).into_owned()
        });
        (format!("http://{address}"), served)
    }

    #[tokio::test]
    async fn a_request_reports_the_status_itself_and_follows_no_redirect() {
        let (base, served) = loopback_server(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 5\r\nConnection: close\r\n\r\nmoved",
        )
        .await;
        let response = request("GET", &format!("{base}/health?x=1"), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            response,
            HttpResponse {
                status: 302,
                body: "moved".into()
            }
        );
        let sent = served.await.unwrap();
        assert!(sent.starts_with("GET /health?x=1 HTTP/1.1\r\n"), "{sent}");
        assert!(sent.to_lowercase().contains("user-agent: lifeboat/"), "{sent}");
    }

    #[tokio::test]
    async fn a_silent_server_is_no_answer_within_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        let problem = request("GET", &url, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(
            problem.starts_with(&format!("GET {url}: no answer within")),
            "{problem}"
        );
        drop(listener);
        let refused = request("GET", &url, Duration::from_secs(5)).await.unwrap_err();
        assert!(refused.starts_with(&format!("GET {url}: ")), "{refused}");
        assert!(!refused.contains("no answer"), "{refused}");
    }

    fn deployment(replicas: i32, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web-green", "generation": 2},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"track": "green"}},
                     "template": {"metadata": {"labels": {"track": "green"}}, "spec": {"containers": []}}},
            "status": status
        }))
        .unwrap()
    }

    fn pod(name: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_deployment_is_ready_only_when_rolled_out_with_every_pod_ready() {
        let done = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2});
        assert!(deployment_ready(&deployment(2, done.clone()), &[pod("a", true), pod("b", true)]).is_ok());
        let stale = json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2});
        assert!(deployment_ready(&deployment(2, stale), &[])
            .unwrap_err()
            .contains("not yet observed"));
        let rolling = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2});
        assert!(deployment_ready(&deployment(2, rolling), &[])
            .unwrap_err()
            .contains("3 total"));
        assert!(
            deployment_ready(&deployment(2, done), &[pod("a", true), pod("b", false)])
                .unwrap_err()
                .contains("not Ready: b")
        );
        // Scaled to zero: rolled out, and nothing would answer.
        let zero = json!({"observedGeneration": 2});
        assert_eq!(
            deployment_ready(&deployment(0, zero), &[]),
            Err("Deployment web-green is scaled to 0 replicas".to_owned())
        );
    }
}
