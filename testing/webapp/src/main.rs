//! A blue/green web app for Cutover tests. `VERSION` (e.g. blue, green) names the deployment; `PORT`
//! (default 8080) is where it listens; `FAULT` (ok, fail, slow) is the fault it starts with.
//!
//! - `/`: a line naming the version; `/version`: the version alone.
//! - `/health`, `/healthz`, `/ready`: 200 while healthy.
//! - `/fault?mode=fail|slow|unhealthy|ok[&delay_ms=N]` (POST or GET): `fail` makes `/` and the health
//!   endpoints answer 500, `slow` delays them by `delay_ms` (default 2000), `unhealthy` fails only
//!   `/health` and `/healthz` (the Pod stays ready, so its Service keeps sending it traffic: a broken
//!   app behind a readiness probe that does not notice), `ok` heals.
//! - `/metrics`: Prometheus text, `http_requests_total{code}` and the `http_request_duration_seconds`
//!   histogram (every endpoint but /metrics).
//! - `POST /hooks/lifeboat`: a chat webhook stand-in; records the body and answers 500 to the first
//!   `HOOK_FAILURES` (default 0) requests, as a flapping chat service does, then 200.
//!   `GET /hooks/received`: the bodies received so far, one a line (newlines in a body become spaces).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Ok,
    Fail,
    Slow(Duration),
    Unhealthy,
}

#[derive(Default)]
struct Metrics {
    /// (status code, count), in first-seen order.
    requests: Vec<(u16, u64)>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

struct App {
    version: String,
    fault: Mutex<Fault>,
    metrics: Mutex<Metrics>,
    hook_failures: usize,
    hooks: Mutex<Vec<String>>,
}

type Shared = Arc<App>;

fn parse_fault(query: &str) -> Result<Fault, String> {
    let mut mode = None;
    let mut delay_ms = 2000u64;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "mode" => mode = Some(value.to_string()),
            "delay_ms" => delay_ms = value.parse().map_err(|_| format!("bad delay_ms {value:?}"))?,
            _ => {}
        }
    }
    match mode.as_deref() {
        Some("ok") => Ok(Fault::Ok),
        Some("fail") => Ok(Fault::Fail),
        Some("slow") => Ok(Fault::Slow(Duration::from_millis(delay_ms))),
        Some("unhealthy") => Ok(Fault::Unhealthy),
        Some(other) => Err(format!("unknown mode {other:?}: ok, fail, slow or unhealthy")),
        None => Err("mode=ok|fail|slow|unhealthy is required".into()),
    }
}

/// What a faulty endpoint does before answering: Some(500) when failing, a delay when slow.
async fn apply_fault(app: &App) -> Option<Response> {
    let fault = *app.fault.lock().unwrap();
    match fault {
        Fault::Ok | Fault::Unhealthy => None,
        Fault::Fail => Some((StatusCode::INTERNAL_SERVER_ERROR, "fault injected: fail\n").into_response()),
        Fault::Slow(delay) => {
            tokio::time::sleep(delay).await;
            None
        }
    }
}

async fn index(State(app): State<Shared>) -> Response {
    if let Some(response) = apply_fault(&app).await {
        return response;
    }
    format!("webapp version {}\n", app.version).into_response()
}

async fn health(State(app): State<Shared>) -> Response {
    if *app.fault.lock().unwrap() == Fault::Unhealthy {
        return (StatusCode::INTERNAL_SERVER_ERROR, "fault injected: unhealthy\n").into_response();
    }
    ready(State(app)).await
}

async fn ready(State(app): State<Shared>) -> Response {
    if let Some(response) = apply_fault(&app).await {
        return response;
    }
    "ok\n".into_response()
}

async fn hook(State(app): State<Shared>, body: String) -> Response {
    let mut hooks = app.hooks.lock().unwrap();
    hooks.push(body.replace(['\r', '\n'], " "));
    if hooks.len() <= app.hook_failures {
        (StatusCode::INTERNAL_SERVER_ERROR, "fail\n").into_response()
    } else {
        "ok\n".into_response()
    }
}

async fn hooks_received(State(app): State<Shared>) -> String {
    app.hooks
        .lock()
        .unwrap()
        .iter()
        .map(|body| format!("{body}\n"))
        .collect()
}

async fn version(State(app): State<Shared>) -> String {
    format!("{}\n", app.version)
}

async fn fault(State(app): State<Shared>, RawQuery(query): RawQuery) -> Response {
    match parse_fault(query.as_deref().unwrap_or("")) {
        Ok(fault) => {
            *app.fault.lock().unwrap() = fault;
            eprintln!("webapp: fault set to {fault:?}");
            format!("fault: {fault:?}\n").into_response()
        }
        Err(message) => (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
    }
}

async fn metrics(State(app): State<Shared>) -> Response {
    let m = app.metrics.lock().unwrap();
    let mut out = String::new();
    out.push_str("# HELP http_requests_total Requests answered, by status code.\n");
    out.push_str("# TYPE http_requests_total counter\n");
    for (code, count) in &m.requests {
        out.push_str(&format!(
            "http_requests_total{{code=\"{code}\",version=\"{}\"}} {count}\n",
            app.version
        ));
    }
    out.push_str("# HELP http_request_duration_seconds Time to answer a request.\n");
    out.push_str("# TYPE http_request_duration_seconds histogram\n");
    for (le, count) in BUCKETS.iter().zip(m.buckets.iter()) {
        out.push_str(&format!(
            "http_request_duration_seconds_bucket{{le=\"{le}\"}} {count}\n"
        ));
    }
    out.push_str(&format!(
        "http_request_duration_seconds_bucket{{le=\"+Inf\"}} {}\n",
        m.count
    ));
    out.push_str(&format!("http_request_duration_seconds_sum {}\n", m.sum));
    out.push_str(&format!("http_request_duration_seconds_count {}\n", m.count));
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
        .into_response()
}

async fn record(State(app): State<Shared>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/metrics" {
        return next.run(request).await;
    }
    let start = Instant::now();
    let response = next.run(request).await;
    let seconds = start.elapsed().as_secs_f64();
    let code = response.status().as_u16();
    let mut m = app.metrics.lock().unwrap();
    match m.requests.iter_mut().find(|(c, _)| *c == code) {
        Some((_, count)) => *count += 1,
        None => m.requests.push((code, 1)),
    }
    for (le, count) in BUCKETS.iter().zip(m.buckets.iter_mut()) {
        if seconds <= *le {
            *count += 1;
        }
    }
    m.count += 1;
    m.sum += seconds;
    response
}

fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/healthz", get(health))
        .route("/ready", get(ready))
        .route("/version", get(version))
        .route("/fault", get(fault).post(fault))
        .route("/metrics", get(metrics))
        .route("/hooks/lifeboat", post(hook))
        .route("/hooks/received", get(hooks_received))
        .layer(middleware::from_fn_with_state(app.clone(), record))
        .with_state(app)
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("webapp: shutting down");
}

#[tokio::main]
async fn main() {
    let version = std::env::var("VERSION").unwrap_or_else(|_| "unknown".into());
    let port: u16 = std::env::var("PORT")
        .ok()
        .map(|p| p.parse().expect("PORT must be a port number"))
        .unwrap_or(8080);
    let host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".into());
    let fault = match std::env::var("FAULT") {
        Ok(mode) => parse_fault(&format!("mode={mode}")).expect("FAULT must be ok, fail, slow or unhealthy"),
        Err(_) => Fault::Ok,
    };
    let hook_failures = std::env::var("HOOK_FAILURES")
        .ok()
        .map(|n| n.parse().expect("HOOK_FAILURES must be a number"))
        .unwrap_or(0);
    let app = Arc::new(App {
        version,
        fault: Mutex::new(fault),
        metrics: Mutex::new(Metrics::default()),
        hook_failures,
        hooks: Mutex::new(Vec::new()),
    });
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .expect("HOST:PORT must be an address");
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("binding {addr}: {e}"));
    eprintln!("webapp: version {} listening on {addr}", app.version);
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown())
        .await
        .expect("serving");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_modes_parse() {
        assert_eq!(parse_fault("mode=fail"), Ok(Fault::Fail));
        assert_eq!(parse_fault("mode=ok"), Ok(Fault::Ok));
        assert_eq!(
            parse_fault("mode=slow&delay_ms=150"),
            Ok(Fault::Slow(Duration::from_millis(150)))
        );
        assert!(parse_fault("mode=boom").is_err());
        assert!(parse_fault("").is_err());
        assert_eq!(parse_fault("mode=unhealthy"), Ok(Fault::Unhealthy));
    }

    #[tokio::test]
    async fn unhealthy_fails_the_health_endpoints_but_stays_ready() {
        let app = Arc::new(App {
            version: "green".into(),
            fault: Mutex::new(Fault::Unhealthy),
            metrics: Mutex::new(Metrics::default()),
            hook_failures: 0,
            hooks: Mutex::new(Vec::new()),
        });
        assert_eq!(
            health(State(app.clone())).await.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(ready(State(app.clone())).await.status(), StatusCode::OK);
        assert_eq!(index(State(app.clone())).await.status(), StatusCode::OK);
        *app.fault.lock().unwrap() = Fault::Fail;
        assert_eq!(
            ready(State(app)).await.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
