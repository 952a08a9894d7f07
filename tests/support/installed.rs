//! Lifeboat as users install it: the Helm chart from charts/, in the image `just images` built, on the
//! local cluster's real node (a kubelet with containerd). Uninstalled when dropped, so the suites that run
//! the operator as a host process afterwards have the cluster to themselves.

use std::process::Command;
use std::sync::OnceLock;

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
pub const MARIADB_IMAGE: &str = "lifeboat.local/mariadb:10.11";

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

/// The release the tests of one binary share, uninstalled when the binary exits (a static is never
/// dropped): `helm uninstall` from an atexit(3) handler.
static SHARED: OnceLock<InstalledOperator> = OnceLock::new();

extern "C" fn uninstall_shared() {
    if let Some(operator) = SHARED.get() {
        operator.uninstall();
    }
}

impl InstalledOperator {
    /// The operator the tests of this binary share: installed by Helm on first use into a namespace
    /// of its own (`lifeboat-e2e-<pid>`), so a namespace the previous binary's uninstall is still
    /// deleting never gets in the way.
    pub fn shared(cluster: &Cluster) -> &'static InstalledOperator {
        SHARED.get_or_init(|| {
            let namespace = format!("lifeboat-e2e-{}", std::process::id());
            let operator = Self::helm(cluster, &namespace);
            // SAFETY: atexit(3) has no safe wrapper; it registers a plain extern "C" function that
            // takes no arguments and runs `helm uninstall` for the static above.
            unsafe {
                libc::atexit(uninstall_shared);
            }
            operator
        })
    }

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
        self.uninstall();
    }
}

impl InstalledOperator {
    /// The operator's /metrics through the API server's Service proxy (the operator has one replica
    /// here, so the Service reaches the leader).
    pub fn metrics(&self) -> String {
        let path = format!(
            "/api/v1/namespaces/{}/services/http:{}-metrics:http/proxy/metrics",
            self.namespace, self.release
        );
        self.cluster
            .kubectl()
            .args(["get", "--raw", &path])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// A rolling restart of the operator's Deployment (SIGTERM to the old Pod, as an upgrade does),
    /// returning once the new Pod is Ready.
    pub fn restart(&self) {
        let deployment = format!("deployment/{}", self.release);
        run_ok(
            "kubectl rollout restart",
            self.kubectl().args(["rollout", "restart", &deployment]),
        );
        run_ok(
            "kubectl rollout status",
            self.kubectl()
                .args(["rollout", "status", &deployment, "--timeout=180s"]),
        );
    }

    fn uninstall(&self) {
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
