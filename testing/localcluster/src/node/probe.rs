//! Readiness, liveness and startup probes: `httpGet`, `tcpSocket` and `exec`, with the kubelet's timings
//! and thresholds.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::process::{self, Launch};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// Timings of a probe with the API's defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Self {
        let secs = |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Counts consecutive results and says when the probe's verdict flips.
#[derive(Debug, Clone)]
pub struct Verdict {
    timing: Timing,
    successes: u32,
    failures: u32,
    pub passing: bool,
}

impl Verdict {
    pub fn new(timing: Timing, initially_passing: bool) -> Self {
        Verdict {
            timing,
            successes: 0,
            failures: 0,
            passing: initially_passing,
        }
    }

    /// As many consecutive failures as the threshold allows (a startup probe has then failed).
    pub fn failed_for_good(&self) -> bool {
        self.failures >= self.timing.failure_threshold
    }

    /// Record one result; returns true when `passing` changed.
    pub fn record(&mut self, outcome: Outcome) -> bool {
        let before = self.passing;
        match outcome {
            Outcome::Success => {
                self.failures = 0;
                self.successes += 1;
                if self.successes >= self.timing.success_threshold {
                    self.passing = true;
                }
            }
            Outcome::Failure => {
                self.successes = 0;
                self.failures += 1;
                if self.failures >= self.timing.failure_threshold {
                    self.passing = false;
                }
            }
        }
        before != self.passing
    }
}

/// Run a probe once against a container whose Pod has `pod_ip`. `exec` probes start their command like the
/// container (`base`: its env, mounts and working dir).
pub async fn run_once(probe: &Probe, container: &Container, pod_ip: &str, base: &Launch) -> Outcome {
    let timeout = Timing::of(probe).timeout;
    let result = if let Some(http) = &probe.http_get {
        let host = http
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        match resolve_port(&http.port, container) {
            Some(port) => {
                let path = http.path.clone().unwrap_or_else(|| "/".into());
                let headers: Vec<(String, String)> = http
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect();
                if http
                    .scheme
                    .as_deref()
                    .unwrap_or("HTTP")
                    .eq_ignore_ascii_case("HTTPS")
                {
                    // No TLS client here: an HTTPS probe passes when the port accepts connections.
                    tokio::time::timeout(timeout, tcp_check(&host, port))
                        .await
                        .unwrap_or(false)
                } else {
                    tokio::time::timeout(timeout, http_check(&host, port, &path, &headers))
                        .await
                        .unwrap_or(false)
                }
            }
            None => false,
        }
    } else if let Some(tcp) = &probe.tcp_socket {
        let host = tcp
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        match resolve_port(&tcp.port, container) {
            Some(port) => tokio::time::timeout(timeout, tcp_check(&host, port))
                .await
                .unwrap_or(false),
            None => false,
        }
    } else if let Some(exec) = &probe.exec {
        exec_check(exec.command.as_deref().unwrap_or_default(), base, timeout).await
    } else {
        // gRPC probes are not supported; failing loudly beats passing silently.
        false
    };
    if result {
        Outcome::Success
    } else {
        Outcome::Failure
    }
}

/// A port given as a number or as the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(s) => s.parse::<u16>().ok().or_else(|| {
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
        }),
    }
}

async fn tcp_check(host: &str, port: u16) -> bool {
    TcpStream::connect((host, port)).await.is_ok()
}

/// Any status from 200 to 399 is a success, as for the kubelet.
async fn http_check(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> bool {
    let Ok(mut stream) = TcpStream::connect((host, port)).await else {
        return false;
    };
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", host_header(host, port));
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has("user-agent") {
        request.push_str("User-Agent: kube-probe/1.37\r\n");
    }
    if !has("accept") {
        request.push_str("Accept: */*\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 64];
    while !buf.contains(&b'\n') && buf.len() < 1024 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    status_code(&buf).is_some_and(|code| (200..400).contains(&code))
}

fn host_header(host: &str, port: u16) -> String {
    match host.parse::<SocketAddr>() {
        Ok(addr) => addr.to_string(),
        Err(_) => format!("{host}:{port}"),
    }
}

fn status_code(response: &[u8]) -> Option<u16> {
    let line = response.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

async fn exec_check(command: &[String], base: &Launch, timeout: Duration) -> bool {
    let Some((program, args)) = command.split_first() else {
        return false;
    };
    let launch = Launch {
        program: program.clone(),
        args: args.to_vec(),
        log: None,
        ..base.clone()
    };
    let Ok(mut child) = process::spawn(&launch) else {
        return false;
    };
    let pgid = child.id().map(|p| p as i32).unwrap_or(0);
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            process::signal_group(pgid, libc::SIGKILL);
            status.success()
        }
        _ => {
            process::signal_group(pgid, libc::SIGKILL);
            let _ = child.wait().await;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    #[test]
    fn verdict_flips_after_the_thresholds() {
        let timing = Timing::of(&Probe {
            success_threshold: Some(2),
            failure_threshold: Some(2),
            ..Default::default()
        });
        let mut v = Verdict::new(timing, false);
        assert!(!v.record(Outcome::Success));
        assert!(v.record(Outcome::Success));
        assert!(v.passing);
        assert!(!v.record(Outcome::Failure));
        assert!(!v.record(Outcome::Success));
        assert!(!v.record(Outcome::Failure));
        assert!(v.record(Outcome::Failure));
        assert!(!v.passing);
    }

    #[test]
    fn named_ports_resolve_through_the_container() {
        let c = Container {
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(resolve_port(&IntOrString::String("http".into()), &c), Some(8080));
        assert_eq!(resolve_port(&IntOrString::Int(9000), &c), Some(9000));
        assert_eq!(resolve_port(&IntOrString::String("nope".into()), &c), None);
    }

    #[test]
    fn status_lines_are_parsed() {
        assert_eq!(status_code(b"HTTP/1.0 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"garbage"), None);
    }

    #[tokio::test]
    async fn http_probe_passes_on_2xx_and_fails_on_5xx_or_closed_port() {
        let listener = tokio::net::TcpListener::bind("127.0.3.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                let bad = String::from_utf8_lossy(&buf[..n]).starts_with("GET /bad");
                let reply: &[u8] = if bad {
                    b"HTTP/1.1 503 No\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\n\r\n"
                };
                s.write_all(reply).await.unwrap();
            }
        });
        assert!(http_check("127.0.3.1", port, "/ok", &[]).await);
        assert!(!http_check("127.0.3.1", port, "/bad", &[]).await);
        assert!(!http_check("127.0.3.2", port, "/ok", &[]).await);
    }
}
