//! The monitoring kit the chart ships: the alert rules pass promtool's checks and their unit tests, the
//! dashboard is Grafana JSON whose queries parse, every series the rules and the dashboard ask for is one
//! the operator exports, and the chart's ServiceMonitor, PodMonitor,
//! PrometheusRule and dashboard ConfigMap render as documented and apply against the Prometheus
//! Operator's own CRDs on the real apiserver. promtool and those CRDs come from hack/build-test-tools.sh.

mod support;

use lifeboat::metrics::{DrillLabels, Metrics, PolicyLabels, RestoreLabels};
use serde::Deserialize;
use serde_json::Value as Json;
use serde_norway::Value as Yaml;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

const RULES: &str = "charts/lifeboat/files/prometheus-rules.yaml";
const DASHBOARD: &str = "charts/lifeboat/files/dashboard.json";

fn promtool() -> Command {
    let path = localcluster::cache_dir().join("bin/promtool");
    assert!(
        path.exists(),
        "{} is missing: run hack/build-test-tools.sh (hack/install-tools.sh runs it)",
        path.display()
    );
    Command::new(path)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(support::repo_path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn dashboard() -> Json {
    serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Json) -> Vec<&Json> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// Every PromQL expression of the dashboard (its panels' targets and its query variables), with Grafana's
/// variables replaced by what Grafana would put there.
fn dashboard_queries(dashboard: &Json) -> Vec<String> {
    let grafana = |expr: &str| {
        expr.replace("$__rate_interval", "5m")
            .replace("$__range", "1d")
            .replace("$namespace", ".*")
    };
    let mut queries: Vec<String> = panels(dashboard)
        .iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .map(|target| grafana(target["expr"].as_str().expect("every target has an expr")))
        .collect();
    for variable in dashboard["templating"]["list"].as_array().expect("templating") {
        if let Some(query) = variable["query"]["query"].as_str() {
            // label_values(SELECTOR, label): the selector is PromQL.
            let selector = query
                .strip_prefix("label_values(")
                .and_then(|rest| rest.rsplit_once(','))
                .map(|(selector, _)| selector)
                .unwrap_or_else(|| panic!("variable {} is not label_values(…): {query}", variable["name"]));
            queries.push(selector.to_owned());
        }
    }
    queries
}

/// The alert rules' expressions.
fn rule_expressions() -> Vec<String> {
    let rules: Yaml = serde_norway::from_str(&read(RULES)).unwrap();
    rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_sequence().expect("rules").iter())
        .map(|rule| rule["expr"].as_str().expect("expr").to_owned())
        .collect()
}

/// The `lifeboat_*` names in a PromQL expression; `lifeboat_(a|b)` in a `__name__` regex names both.
fn lifeboat_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(start) = rest.find("lifeboat_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let alternatives = tail[end..]
            .strip_prefix('(')
            .and_then(|group| group.split_once(')'))
            .map(|(group, _)| group);
        match alternatives {
            Some(group) => names.extend(group.split('|').map(|each| format!("{name}{each}"))),
            None => {
                names.insert(name.to_owned());
            }
        }
        rest = &tail[end..];
    }
    names
}

/// An operator's metrics with a series in every family: a family without series is not encoded at all.
fn populated_metrics() -> Metrics {
    let metrics = Metrics::default();
    let policy = PolicyLabels::new("shop", "orders");
    let backup = &metrics.backup;
    backup.last_success_timestamp.get_or_create(&policy).set(1.7e9);
    backup.last_failure_timestamp.get_or_create(&policy).set(1.7e9);
    backup.last_size_bytes.get_or_create(&policy).set(1024);
    backup.stale.get_or_create(&policy).set(0);
    backup.size_anomaly.get_or_create(&policy).set(0);
    backup.repository_healthy.get_or_create(&policy).set(1);
    backup.failures_total.get_or_create(&policy).inc();
    backup.backup_succeeded(&policy, 12.5);
    let drill = DrillLabels::new("shop", "monthly");
    for gauge in [
        &metrics.drill.last_rto_seconds,
        &metrics.drill.last_rpo_seconds,
        &metrics.drill.rto_target_seconds,
        &metrics.drill.rpo_target_seconds,
        &metrics.drill.last_timestamp,
    ] {
        gauge.get_or_create(&drill).set(60.0);
    }
    metrics.drill.passed.get_or_create(&drill).set(1);
    metrics.drill.overdue.get_or_create(&drill).set(0);
    metrics
        .restore_duration_seconds
        .get_or_create(&RestoreLabels {
            namespace: "shop".into(),
            target: "postgres".into(),
            result: "succeeded".into(),
        })
        .observe(30.0);
    metrics.reconciled("BackupPolicy");
    metrics.reconcile_failed("BackupPolicy", "Kube");
    metrics.cutover_phase(
        "shop",
        "release-1",
        lifeboat::api::cutover::CutoverPhase::Succeeded,
    );
    metrics.cutover_step_duration("switch", 0.2);
    metrics.cutover_rollback("shop");
    let ended = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH);
    metrics.cutover_completed("shop", "release-1", Some(&ended));
    metrics
}

/// The sample names the operator's /metrics can carry, read from its exposition's `# TYPE` lines (a
/// counter `x` is sampled as `x_total`, a histogram as `x_bucket`, `x_sum`, `x_count`, an info as `x_info`).
fn exported_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in populated_metrics().encode().lines() {
        let Some(declaration) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = declaration.split_once(' ').expect("# TYPE name kind");
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "info" => &["_info"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
    }
    names
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    support::run_ok(
        "promtool check rules",
        promtool().args(["check", "rules"]).arg(support::repo_path(RULES)),
    );
    let tests = support::repo_path("tests/monitoring/alerts.test.yaml");
    let out = support::run_ok(
        "promtool test rules",
        promtool().args(["test", "rules"]).arg(&tests),
    );
    println!("{out}");
}

#[test]
fn every_series_the_rules_and_the_dashboard_use_is_one_the_operator_exports() {
    let exported = exported_names();
    for expected in [
        "lifeboat_build_info",
        "lifeboat_backup_failures_total",
        "lifeboat_drill_overdue",
    ] {
        assert!(exported.contains(expected), "{expected} not in {exported:?}");
    }
    let mut used = BTreeSet::new();
    for expr in rule_expressions()
        .iter()
        .chain(dashboard_queries(&dashboard()).iter())
    {
        for name in lifeboat_names(expr) {
            assert!(
                exported.contains(&name),
                "`{name}` (in `{expr}`) is not a series the operator exports; it exports {exported:?}"
            );
            used.insert(name);
        }
    }
    // The health gauges are what the kit is for: each reaches a rule or a panel.
    for gauge in exported.iter().filter(|name| {
        ["_stale", "_healthy", "_anomaly", "_passed", "_overdue", "_phase"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
    }) {
        assert!(
            used.contains(gauge),
            "{gauge} is exported but neither alerted on nor shown"
        );
    }
}

#[test]
fn the_dashboard_is_grafana_json_whose_queries_parse() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "lifeboat-overview");
    assert!(
        dashboard["schemaVersion"].as_u64().unwrap_or(0) >= 36,
        "a current Grafana schema"
    );
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
        "the data source is a variable, so the dashboard imports into any Grafana"
    );
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("id")),
            "panel id repeated: {title}"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{title} is wider than the dashboard");
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
            assert!(
                !panel["targets"].as_array().unwrap().is_empty(),
                "{title} has no query"
            );
        }
    }
    // promtool parses PromQL in rule files: each query becomes a recording rule.
    let rules = dashboard_queries(&dashboard)
        .iter()
        .enumerate()
        .map(|(i, expr)| serde_json::json!({"record": format!("lifeboat:dashboard_query_{i}"), "expr": expr}))
        .collect::<Vec<_>>();
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    let groups = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(file.path(), serde_json::to_string(&groups).unwrap()).unwrap();
    support::run_ok(
        "promtool check rules (dashboard queries)",
        promtool().args(["check", "rules"]).arg(file.path()),
    );
}

/// The chart rendered with the rules, the dashboard and one monitor (`serviceMonitor` or `podMonitor`:
/// the chart refuses both), as YAML documents by kind.
fn render_monitoring(cluster: &support::Cluster, namespace: &str, monitor: &str) -> (String, Vec<Yaml>) {
    let rendered = support::run_ok(
        "helm template (monitoring)",
        cluster
            .helm()
            .args(["template", "lifeboat"])
            .arg(support::repo_path("charts/lifeboat"))
            .args(["--namespace", namespace])
            .args(["--set", &format!("monitoring.{monitor}.enabled=true")])
            .args([
                "--set",
                "monitoring.prometheusRule.enabled=true,monitoring.grafanaDashboard.enabled=true",
            ])
            .args([
                "--set",
                "monitoring.serviceMonitor.labels.release=kube-prometheus-stack",
            ]),
    );
    let documents = serde_norway::Deserializer::from_str(&rendered)
        .map(|document| Yaml::deserialize(document).unwrap())
        .filter(|document| !document.is_null())
        .collect();
    (rendered, documents)
}

fn of_kind<'a>(documents: &'a [Yaml], kind: &str) -> &'a Yaml {
    documents
        .iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

#[test]
fn the_charts_monitoring_objects_render_from_the_tested_files() {
    let cluster = localcluster::ensure().expect("helm is built with the cluster");
    let plain = support::run_ok(
        "helm template",
        cluster
            .helm()
            .args(["template", "lifeboat"])
            .arg(support::repo_path("charts/lifeboat")),
    );
    for kind in [
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "lifeboat-dashboard",
    ] {
        assert!(!plain.contains(kind), "{kind} is rendered without being enabled");
    }

    let both = cluster
        .helm()
        .args(["template", "lifeboat"])
        .arg(support::repo_path("charts/lifeboat"))
        .args([
            "--set",
            "monitoring.serviceMonitor.enabled=true,monitoring.podMonitor.enabled=true",
        ])
        .output()
        .unwrap();
    let refusal = String::from_utf8_lossy(&both.stderr);
    assert!(
        !both.status.success() && refusal.contains("enable serviceMonitor or podMonitor, not both"),
        "two monitors would scrape the operator twice: {refusal}"
    );

    let (_, documents) = render_monitoring(&cluster, "lifeboat-system", "serviceMonitor");
    let rules: Yaml = serde_norway::from_str(&read(RULES)).unwrap();
    assert_eq!(
        of_kind(&documents, "PrometheusRule")["spec"]["groups"],
        rules["groups"],
        "the PrometheusRule carries exactly the promtool-tested groups"
    );
    let dashboard_map = of_kind(&documents, "ConfigMap");
    assert_eq!(
        dashboard_map["metadata"]["labels"]["grafana_dashboard"],
        Yaml::from("1")
    );
    let shipped: Json =
        serde_json::from_str(dashboard_map["data"]["lifeboat.json"].as_str().unwrap()).unwrap();
    assert_eq!(shipped, dashboard());

    // The ServiceMonitor finds the metrics Service, by its labels and its port's name.
    let monitor = of_kind(&documents, "ServiceMonitor");
    let service = of_kind(&documents, "Service");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        Yaml::from("kube-prometheus-stack")
    );
    let selector = monitor["spec"]["selector"]["matchLabels"].as_mapping().unwrap();
    for (key, value) in selector {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "Service label {key:?}"
        );
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
    // Without honorLabels, Prometheus renames each series' own namespace to exported_namespace.
    assert_eq!(endpoint["honorLabels"], Yaml::from(true));
    let (_, pod_documents) = render_monitoring(&cluster, "lifeboat-system", "podMonitor");
    assert!(pod_documents
        .iter()
        .all(|d| d["kind"].as_str() != Some("ServiceMonitor")));
    let pod_monitor = of_kind(&pod_documents, "PodMonitor");
    assert_eq!(
        pod_monitor["spec"]["podMetricsEndpoints"][0]["honorLabels"],
        Yaml::from(true)
    );
    let deployment = of_kind(&documents, "Deployment");
    for (key, value) in pod_monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .unwrap()
    {
        assert_eq!(
            &deployment["spec"]["template"]["metadata"]["labels"][key], value,
            "Pod label {key:?}"
        );
    }
}

#[tokio::test]
async fn the_charts_monitoring_objects_apply_against_the_prometheus_operator_crds() {
    let cluster = support::cluster_with_crds();
    let versions = read("hack/versions.env");
    let version = versions
        .lines()
        .find_map(|line| line.strip_prefix("PROMETHEUS_OPERATOR_VERSION="))
        .expect("PROMETHEUS_OPERATOR_VERSION in hack/versions.env");
    let crds: PathBuf = localcluster::cache_dir().join(format!("crds/prometheus-operator-{version}"));
    assert!(
        crds.exists(),
        "{} is missing: run hack/build-test-tools.sh",
        crds.display()
    );
    support::run_ok(
        "kubectl apply the Prometheus Operator CRDs",
        cluster
            .kubectl()
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(&crds),
    );
    support::run_ok(
        "kubectl wait for the Prometheus Operator CRDs",
        cluster
            .kubectl()
            .args(["wait", "--for=condition=Established", "--timeout=60s"])
            .args([
                "crd/servicemonitors.monitoring.coreos.com",
                "crd/podmonitors.monitoring.coreos.com",
                "crd/prometheusrules.monitoring.coreos.com",
            ]),
    );
    let ns = cluster.namespace("monitoring").await.unwrap();
    let mut applied = String::new();
    for monitor in ["serviceMonitor", "podMonitor"] {
        let (rendered, _) = render_monitoring(&cluster, &ns.name, monitor);
        applied += &support::run_with_stdin(
            "kubectl apply --dry-run=server (chart with monitoring)",
            cluster.kubectl().args(["apply", "--dry-run=server", "-f", "-"]),
            &rendered,
        );
    }
    for expected in [
        "servicemonitor.monitoring.coreos.com/lifeboat",
        "podmonitor.monitoring.coreos.com/lifeboat",
        "prometheusrule.monitoring.coreos.com/lifeboat",
        "configmap/lifeboat-dashboard",
    ] {
        assert!(applied.contains(expected), "{expected} missing from:\n{applied}");
    }
}
