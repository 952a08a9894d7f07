//! Lifeboat as users install it: the Helm chart from charts/, in the image `just images` built, on the
//! local cluster's real node (a kubelet with containerd). Uninstalled when dropped (the shared release:
//! when its test binary exits), so the next binary's operator has the cluster to itself.

use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};

use super::wait::OperatorLog;
use super::{repo_path, run_ok, Cluster};

/// The real node's name, and the taint it carried while a process-running node shared the cluster:
/// the tests still tolerate it (harmless where it is gone), so they run on a cluster started by an
/// older `cluster-up` too.
pub const REAL_NODE: &str = "lifeboat-node";
const REAL_NODE_TAINT: &str = "lifeboat.dev/real-node";

/// The operator's leader Lease (in its namespace): the chart's name for it.
const LEASE: &str = "lifeboat-operator";

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

/// Names the namespace of the operator that the binaries hack/run-tests.sh runs side by side share.
const SHARED_OPERATOR: &str = "LIFEBOAT_SHARED_OPERATOR";

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
    ///
    /// Under hack/run-tests.sh (`just test`), the binaries that run side by side share one operator
    /// instead, in the namespace `LIFEBOAT_SHARED_OPERATOR` names: the first to get here installs it
    /// (under a file lock), and the script uninstalls it when they are all done. Two operators that
    /// both watch every namespace would reconcile each other's tests.
    pub fn shared(cluster: &Cluster) -> &'static InstalledOperator {
        SHARED.get_or_init(|| {
            if let Some(namespace) = std::env::var_os(SHARED_OPERATOR) {
                return Self::installed_once(cluster, &namespace.to_string_lossy());
            }
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

    /// The run-wide operator in `namespace`: installed unless a binary before this one (or beside it)
    /// did. Never uninstalled by a test binary.
    fn installed_once(cluster: &Cluster, namespace: &str) -> Self {
        use std::os::fd::AsRawFd;
        let lock_path = std::env::temp_dir().join(format!("lifeboat-operator-{namespace}.lock"));
        let lock = std::fs::File::create(&lock_path).expect("create the shared operator's lock file");
        // SAFETY: flock(2) on a descriptor the File owns for the whole call; the lock goes with it.
        let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(locked, 0, "lock {}", lock_path.display());
        let deployed = cluster
            .helm()
            .args(["status", "lifeboat", "--namespace", namespace])
            .output()
            .is_ok_and(|status| {
                status.status.success()
                    && String::from_utf8_lossy(&status.stdout).contains("STATUS: deployed")
            });
        if deployed {
            Self {
                cluster: cluster.clone(),
                namespace: namespace.to_owned(),
                release: "lifeboat".to_owned(),
            }
        } else {
            Self::install(cluster, namespace, json!({}))
        }
    }

    /// `helm upgrade --install` of charts/lifeboat into `namespace`, waiting until the operator is Ready.
    pub fn helm(cluster: &Cluster, namespace: &str) -> Self {
        Self::helm_with(cluster, namespace, json!({}))
    }

    /// As `helm`, with more values (`--set`-like, merged at the top level).
    pub fn helm_with(cluster: &Cluster, namespace: &str, more: Value) -> Self {
        assert!(
            std::env::var_os(SHARED_OPERATOR).is_none(),
            "this test installs an operator of its own beside the shared one ({SHARED_OPERATOR} is set): \
             mark its file `// lifeboat-test: alone` so hack/run-tests.sh runs it by itself"
        );
        Self::install(cluster, namespace, more)
    }

    fn install(cluster: &Cluster, namespace: &str, more: Value) -> Self {
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
        // After a rollout the old Pod may still be terminating: the one that runs is the newest of the
        // rest.
        let mut pods: Vec<Value> = list["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
            .collect();
        pods.sort_by_key(|pod| pod["metadata"]["creationTimestamp"].as_str().map(str::to_owned));
        pods.pop().unwrap_or(Value::Null)
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
        self.raw_get(&format!(
            "/api/v1/namespaces/{}/services/http:{}-metrics:http/proxy/metrics",
            self.namespace, self.release
        ))
    }

    /// `kubectl get --raw path`: the body, empty when it failed.
    fn raw_get(&self, path: &str) -> String {
        self.cluster
            .kubectl()
            .args(["get", "--raw", path])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// A rolling restart of the operator's Deployment (SIGTERM to the old Pod, as an upgrade does),
    /// returning once the new Pod is Ready.
    pub fn restart(&self) {
        self.only_mine();
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

    /// SIGKILL to the operator's process, as a node failure or the OOM killer deals it: no graceful
    /// shutdown, the Lease stays held. The kubelet starts the container again in the same Pod; that new
    /// process waits for the dead one's Lease to run out. Returns once the kill has been seen.
    pub fn kill(&self) {
        self.only_mine();
        let before = self.restarts();
        let id = self.container_id();
        run_ok(
            "ctr tasks kill -s SIGKILL (the operator)",
            ctr().args(["tasks", "kill", "-s", "SIGKILL", &id]),
        );
        self.wait_for_restarts(before + 1, std::time::Duration::from_secs(60));
    }

    /// The operator process's pid as the host sees it (containerd's task of the running container), for
    /// reading its /proc figures.
    pub fn host_pid(&self) -> u32 {
        let id = self.container_id();
        let tasks = run_ok("ctr tasks ls", ctr().args(["tasks", "ls"]));
        // TASK  PID  STATUS
        tasks
            .lines()
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                (fields.next() == Some(id.as_str())).then(|| fields.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no containerd task {id}:\n{tasks}"))
    }

    /// /metrics of the newest operator Pod itself (the API server's Pod proxy), not whichever Pod the
    /// Service picks: after a restart, the old Pod's counters would answer for the new one.
    pub fn pod_metrics(&self) -> String {
        let name = self.pod()["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.raw_get(&format!(
            "/api/v1/namespaces/{}/pods/http:{name}:8080/proxy/metrics",
            self.namespace
        ))
    }

    fn container_id(&self) -> String {
        self.pod()["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .and_then(|id| id.strip_prefix("containerd://"))
            .expect("the operator container's id")
            .to_owned()
    }

    /// Sets `LIFEBOAT_CRASH_AT` on the Deployment (a rollout: the new Pod runs with it), so the operator
    /// exits 137 with its Lease held when it reaches `point`. Returns once the new Pod is Ready.
    pub fn crash_at(&self, point: &str) {
        self.set_env(&format!(
            "{}={point}",
            lifeboat::controller::crash_point::CRASH_AT_ENV
        ));
    }

    /// Removes `LIFEBOAT_CRASH_AT` (a rollout again), returning once the new Pod is Ready.
    pub fn stop_crashing(&self) {
        self.set_env(&format!("{}-", lifeboat::controller::crash_point::CRASH_AT_ENV));
    }

    /// Changes the operator's environment so that no process with the old setting acts afterwards: the
    /// Deployment recreates (the old Pod — perhaps a crashed container the kubelet restarted, waiting for
    /// the Lease — is gone before the new one starts), and the call returns once a process of the new
    /// Pod holds the Lease. A rolling update would leave the old Pod leading, or taking the Lease, while
    /// the new one waits.
    fn set_env(&self, assignment: &str) {
        self.only_mine();
        let deployment = format!("deployment/{}", self.release);
        run_ok(
            "kubectl patch deployment (strategy Recreate)",
            self.kubectl().args([
                "patch",
                &deployment,
                "--type",
                "merge",
                "-p",
                r#"{"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null}}}"#,
            ]),
        );
        run_ok(
            "kubectl set env",
            self.kubectl().args(["set", "env", &deployment, assignment]),
        );
        run_ok(
            "kubectl rollout status",
            self.kubectl()
                .args(["rollout", "status", &deployment, "--timeout=180s"]),
        );
        let start = std::time::Instant::now();
        loop {
            let pod = self.pod()["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let holder = self
                .kubectl()
                .args(["get", "lease", LEASE, "-o", "jsonpath={.spec.holderIdentity}"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            if !pod.is_empty() && holder.starts_with(&format!("{pod}_")) {
                return;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(90),
                "the new operator Pod {pod} never took the Lease (held by {holder:?})\n{}",
                self.log_tail()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Waits until the operator has died at `point` (exit 137, saying so in its last words): a test that
    /// never reaches its point proves nothing.
    pub fn wait_for_crash_at(&self, point: &str, timeout: std::time::Duration) {
        let said = format!("{}={point}", lifeboat::controller::crash_point::CRASH_AT_ENV);
        let start = std::time::Instant::now();
        loop {
            let pod = self.pod();
            let last = &pod["status"]["containerStatuses"][0]["lastState"]["terminated"];
            if last["exitCode"] == 137 {
                let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                let words = self
                    .kubectl()
                    .args(["logs", &name, "--previous", "--tail", "20"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                // A dead container's log can be gone while the kubelet replaces it ("unable to retrieve
                // container logs"): then the next crash at the same point is read instead.
                let any_point = format!("{}=", lifeboat::controller::crash_point::CRASH_AT_ENV);
                if words.contains(&any_point) {
                    assert!(
                        words.contains(&said),
                        "it died at {point}, not elsewhere:\n{words}"
                    );
                    return;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "the operator did not die at {point} within {timeout:?}\n{}",
                self.log_tail()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Restarting or reconfiguring an operator other binaries share would disturb their tests.
    fn only_mine(&self) {
        assert!(
            std::env::var_os(SHARED_OPERATOR).is_none(),
            "this test restarts or reconfigures the operator the binaries beside it share: mark its \
             file `// lifeboat-test: alone` so hack/run-tests.sh runs it by itself"
        );
    }

    fn restarts(&self) -> u64 {
        self.pod()["status"]["containerStatuses"][0]["restartCount"]
            .as_u64()
            .unwrap_or(0)
    }

    fn wait_for_restarts(&self, count: u64, timeout: std::time::Duration) {
        let start = std::time::Instant::now();
        while self.restarts() < count {
            assert!(
                start.elapsed() < timeout,
                "the operator container was not restarted"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
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
        // The Deployment is gone, its Pod may still be stopping: wait, so that the next binary (one
        // that needs no operator at all, say) never meets it.
        let _ = self
            .kubectl()
            .args([
                "wait",
                "--for=delete",
                "pods",
                "-l",
                "app.kubernetes.io/name=lifeboat,app.kubernetes.io/component=operator",
                "--timeout=60s",
            ])
            .output();
        let _ = self
            .cluster
            .kubectl()
            .args(["delete", "namespace", &self.namespace, "--wait=false"])
            .output();
    }
}

/// `ctr` on the real node's containerd, in the namespace the kubelet uses.
fn ctr() -> Command {
    let node = localcluster::control_plane::cluster_dir().join("real-node");
    let mut command = Command::new(localcluster::cache_dir().join("bin/ctr"));
    command
        .arg("--address")
        .arg(node.join("containerd/containerd.sock"))
        .args(["-n", "k8s.io"]);
    command
}
