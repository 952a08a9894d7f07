//! Lifeboat as users install it: the Helm chart from charts/, in the image `just images` built, on the
//! local cluster's real node (a kubelet with containerd). Uninstalled when dropped, so the suites that run
//! the operator as a host process afterwards have the cluster to themselves.

use std::process::Command;

use serde_json::{json, Value};

use super::wait::OperatorLog;
use super::{repo_path, run_ok, Cluster};

/// The real node's name and the taint that keeps the process-node suites' Pods off it (until every suite
/// runs there).
pub const REAL_NODE: &str = "lifeboat-node";
const REAL_NODE_TAINT: &str = "lifeboat.dev/real-node";

/// The images `just images` builds and the node imports before the tests.
pub const LIFEBOAT_IMAGE: &str = "ghcr.io/lifeboat-dev/lifeboat:0.1.0";
pub const POSTGRES_IMAGE: &str = "lifeboat.local/postgres:15";

/// nodeSelector and tolerations that put a Pod on the real node (a jobTemplate or PodSpec fragment).
pub fn on_real_node() -> Value {
    json!({
        "nodeSelector": {"kubernetes.io/hostname": REAL_NODE},
        "tolerations": [{"key": REAL_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}]
    })
}

pub struct InstalledOperator {
    cluster: Cluster,
    pub namespace: String,
    release: String,
}

impl InstalledOperator {
    /// `helm upgrade --install` of charts/lifeboat into `namespace`, waiting until the operator is Ready.
    pub fn helm(cluster: &Cluster, namespace: &str) -> Self {
        Self::helm_with(cluster, namespace, json!({}))
    }

    /// As `helm`, with more values (`--set`-like, merged at the top level).
    pub fn helm_with(cluster: &Cluster, namespace: &str, more: Value) -> Self {
        let placement = on_real_node();
        let mut values = json!({
            "image": {"pullPolicy": "Never"},
            "logLevel": "info,lifeboat=debug",
            "nodeSelector": placement["nodeSelector"],
            "tolerations": placement["tolerations"],
        });
        for (key, value) in more.as_object().expect("values are an object") {
            values[key] = value.clone();
        }
        let values_file = std::env::temp_dir().join(format!("lifeboat-values-{namespace}.json"));
        std::fs::write(&values_file, values.to_string()).expect("write Helm values");
        let installed = Self {
            cluster: cluster.clone(),
            namespace: namespace.to_owned(),
            release: "lifeboat".to_owned(),
        };
        let output = cluster
            .helm()
            .args(["upgrade", "--install", &installed.release])
            .arg(repo_path("charts/lifeboat"))
            .args([
                "--namespace",
                namespace,
                "--create-namespace",
                "--wait",
                "--timeout",
                "180s",
            ])
            .arg("--values")
            .arg(&values_file)
            .output()
            .expect("run helm");
        if !output.status.success() {
            panic!(
                "helm install failed: {}\n{}\noperator Pods:\n{}\n{}",
                String::from_utf8_lossy(&output.stderr),
                String::from_utf8_lossy(&output.stdout),
                installed.describe_pods(),
                installed.log_tail()
            );
        }
        installed
    }

    fn kubectl(&self) -> Command {
        let mut command = self.cluster.kubectl();
        command.args(["-n", &self.namespace]);
        command
    }

    fn describe_pods(&self) -> String {
        let output = self
            .kubectl()
            .args([
                "describe",
                "pods",
                "-l",
                "app.kubernetes.io/name=lifeboat,app.kubernetes.io/component=operator",
            ])
            .output();
        output
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// `helm test`: the chart's test Pod reaches the operator through its Service and cluster DNS.
    pub fn helm_test(&self) -> String {
        let output = self
            .cluster
            .helm()
            .args([
                "test",
                &self.release,
                "--namespace",
                &self.namespace,
                "--timeout",
                "120s",
                "--logs",
            ])
            .output()
            .expect("run helm test");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() {
            panic!(
                "helm test failed: {text}\noperator Pods:\n{}",
                self.describe_pods()
            );
        }
        text
    }

    /// The operator Pod's spec and status as the API has them.
    pub fn pod(&self) -> Value {
        let text = run_ok(
            "kubectl get operator pod",
            self.kubectl().args([
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/name=lifeboat,app.kubernetes.io/component=operator",
                "-o",
                "json",
            ]),
        );
        let list: Value = serde_json::from_str(&text).expect("pod list JSON");
        list["items"][0].clone()
    }
}

impl OperatorLog for InstalledOperator {
    fn log_tail(&self) -> String {
        self.kubectl()
            .args([
                "logs",
                "-l",
                "app.kubernetes.io/name=lifeboat,app.kubernetes.io/component=operator",
                "--tail",
                "40",
            ])
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_else(|error| format!("(kubectl logs: {error})"))
    }
}

impl Drop for InstalledOperator {
    fn drop(&mut self) {
        if std::env::var_os("LIFEBOAT_KEEP_NAMESPACES").is_some() {
            return;
        }
        let _ = self
            .cluster
            .helm()
            .args([
                "uninstall",
                &self.release,
                "--namespace",
                &self.namespace,
                "--wait",
            ])
            .output();
        let _ = self
            .cluster
            .kubectl()
            .args(["delete", "namespace", &self.namespace, "--wait=false"])
            .output();
    }
}
