//! The monitoring kit against a real Prometheus (built by hack/build-test-tools.sh from the Go module proxy,
//! listening on loopback only). It scrapes the chart-installed operator's OpenMetrics endpoint at its Pod's
//! address on the real node (inside the node's network namespace, routed from the host) the way the
//! chart's ServiceMonitor does — `honor_labels`, with the operator's own namespace as a target label —
//! loads the chart's alert rules, and a policy that misses its RPO shows up as LifeboatBackupStale naming
//! the policy's namespace, not the operator's.

mod support;

use kube::api::PostParams;
use kube::Api;
use lifeboat::api::BackupPolicy;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::installed::InstalledOperator;
use support::real_node::namespace;
use support::wait::poll;

/// A Prometheus process, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `metrics_url` every second, its target labelled with `namespace` (where
    /// the operator runs, as a ServiceMonitor labels it), and evaluating the chart's rules every second.
    fn start(metrics_url: &str, namespace: &str) -> Prometheus {
        let binary = localcluster::cache_dir().join("bin/prometheus");
        assert!(
            binary.exists(),
            "{} is missing: run hack/build-test-tools.sh (hack/install-tools.sh runs it)",
            binary.display()
        );
        let target = metrics_url
            .strip_prefix("http://")
            .and_then(|rest| rest.strip_suffix("/metrics"))
            .expect("http://host:port/metrics");
        let data = tempfile::tempdir().unwrap();
        let config = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [support::repo_path("charts/lifeboat/files/prometheus-rules.yaml")],
            "scrape_configs": [{
                "job_name": "lifeboat",
                "honor_labels": true,
                "static_configs": [{"targets": [target], "labels": {"namespace": namespace}}]
            }]
        });
        let config_path = data.path().join("prometheus.yml");
        std::fs::write(&config_path, serde_json::to_string(&config).unwrap()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(data.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _data: data,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._data.path().join("prometheus.log")).unwrap_or_default()
    }

    /// GET an API path (no query escaping needed for the paths used here); the JSON `data`.
    fn api(&self, path: &str) -> Result<Value, String> {
        let (code, body) = http_get(&format!("{}{path}", self.url)).ok_or("Prometheus does not answer")?;
        let value: Value = serde_json::from_str(&body).map_err(|e| format!("{code} {e}: {body}"))?;
        if value["status"] != "success" {
            return Err(format!("{path}: {code} {body}"));
        }
        Ok(value["data"].clone())
    }

    /// The samples of an instant query of a bare metric name.
    fn series(&self, name: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={name}"))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }
}

#[tokio::test]
async fn prometheus_scrapes_the_operator_and_the_charts_alerts_name_the_policys_namespace() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "prom").await;
    support::secret(&ns, "db", "password", "unused").await;
    support::secret(&ns, "restic", "password", "unused").await;
    // A yearly schedule: nothing runs during the test, so the never-succeeded policy turns Stale after
    // its 5 s RPO (the clock starts at creation).
    let policy: BackupPolicy = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "orders"},
        "spec": {
            "schedule": "0 0 1 1 *",
            "rpo": "5s",
            "source": {"postgres": {"host": "db", "port": 5432, "database": "orders", "user": "postgres",
                                    "passwordSecretRef": {"name": "db", "key": "password"}}},
            "repository": {"restic": {"repository": "/tmp/lifeboat-prometheus-e2e-unused",
                                      "passwordSecretRef": {"name": "restic", "key": "password"}}}
        }
    }))
    .unwrap();
    let policies: Api<BackupPolicy> = ns.api();
    policies.create(&PostParams::default(), &policy).await.unwrap();

    // The operator Pod's address: in the node's network namespace, which the host routes to (and
    // nowhere else: the guard routes drop the rest of the range).
    let pod_ip = operator.pod()["status"]["podIP"]
        .as_str()
        .expect("the operator Pod's address")
        .to_owned();
    let prometheus = Prometheus::start(&format!("http://{pod_ip}:8080/metrics"), &operator.namespace);
    poll(
        "Prometheus scraping the operator",
        Duration::from_secs(60),
        Duration::from_millis(500),
        operator,
        async || {
            let targets = prometheus.api("/api/v1/targets")?;
            let target = &targets["activeTargets"][0];
            (target["health"] == "up")
                .then_some(())
                .ok_or(format!("{target}\n{}", prometheus.log()))
        },
    )
    .await;

    // The rule's expression matched the policy, with the policy's namespace: pending, as `for: 5m` asks.
    let alert = poll(
        "LifeboatBackupStale for the policy",
        Duration::from_secs(60),
        Duration::from_millis(500),
        operator,
        async || {
            let alerts = prometheus.api("/api/v1/alerts")?;
            alerts["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| {
                    // The shared operator also sees other tests' policies (and namespaces being deleted):
                    // ours is the one whose namespace label is ours — which honor_labels must keep.
                    a["labels"]["alertname"] == "LifeboatBackupStale"
                        && a["labels"]["policy"] == "orders"
                        && a["labels"]["namespace"] == ns.name.as_str()
                })
                .cloned()
                .ok_or(format!("{alerts}"))
        },
    )
    .await;
    assert_eq!(alert["labels"]["namespace"], ns.name.as_str(), "{alert}");
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert!(
        ["pending", "firing"].contains(&alert["state"].as_str().unwrap_or_default()),
        "{alert}"
    );
    let summary = alert["annotations"]["summary"].as_str().unwrap_or_default();
    assert_eq!(
        summary,
        format!("Backups of {}/orders are older than its RPO", ns.name)
    );

    // honor_labels kept the series' own namespace; nothing was renamed to exported_namespace.
    let stale = prometheus.series("lifeboat_backup_stale").unwrap();
    let ours = stale
        .iter()
        .find(|s| s["metric"]["policy"] == "orders" && s["metric"]["namespace"] == ns.name.as_str())
        .unwrap_or_else(|| panic!("no stale series of {}/orders: {stale:?}", ns.name));
    assert_eq!(ours["value"][1], "1", "{ours}");
    assert!(ours["metric"].get("exported_namespace").is_none(), "{ours}");

    // The info family arrives as lifeboat_build_info, with the target's namespace (it has none of its own).
    let build = prometheus.series("lifeboat_build_info").unwrap();
    assert_eq!(build.len(), 1, "{build:?}");
    assert_eq!(build[0]["metric"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(build[0]["metric"]["namespace"], operator.namespace.as_str());

    // Every rule evaluates against the operator's real series without an error (e.g. many-to-many
    // matching), and the operator is not reported down while it is scraped.
    let groups = prometheus.api("/api/v1/rules").unwrap();
    let rules: Vec<&Value> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    let file =
        std::fs::read_to_string(support::repo_path("charts/lifeboat/files/prometheus-rules.yaml")).unwrap();
    let in_file = file.matches("\n      - alert: ").count();
    assert_eq!(rules.len(), in_file, "every rule of the file is loaded: {groups}");
    for rule in &rules {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    // Before the first scrape, `absent(lifeboat_build_info)` holds and the alert is pending (its `for: 5m`
    // is what keeps that from paging): once the operator is scraped it must go inactive.
    poll(
        "LifeboatOperatorDown inactive while the operator is scraped",
        Duration::from_secs(30),
        Duration::from_millis(500),
        operator,
        async || {
            let groups = prometheus.api("/api/v1/rules")?;
            let down = groups["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .find(|r| r["name"] == "LifeboatOperatorDown")
                .cloned()
                .ok_or(format!("no LifeboatOperatorDown in {groups}"))?;
            (down["state"] == "inactive")
                .then_some(())
                .ok_or(format!("{down}"))
        },
    )
    .await;
}

/// A tiny HTTP/1.0 GET of Prometheus's API on loopback: the status code and the body.
fn http_get(url: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}
