//! Shared by the integration tests: the local cluster with Lifeboat's CRDs installed, running commands
//! with readable failures, Secrets, waiting and conditions; per area, the agent's real servers and
//! repositories (`agent`), the chart-installed operator (`installed`), databases, volumes and web apps as
//! Pods on the real node (`real_node`, `node_restore`, `node_web`) and Cutover specs (`cutover`).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod agent;
pub mod conditions;
pub mod cutover;
pub mod doc;
pub mod files;
pub mod installed;
pub mod node_restore;
pub mod node_web;
pub mod plugin;
pub mod real_node;
pub mod restore;
pub mod wait;

#[allow(unused_imports)]
pub use localcluster::{Cluster, TestNamespace};

/// A path inside the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

static CRDS_INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

/// The local cluster with the committed CRDs applied and Established, once per test process.
pub fn cluster_with_crds() -> Cluster {
    let cluster = localcluster::ensure().unwrap_or_else(|error| panic!("local cluster: {error}"));
    let installed = CRDS_INSTALLED.get_or_init(|| {
        let crds = repo_path("crds");
        let apply = cluster
            .kubectl()
            .args(["apply", "--server-side", "--force-conflicts", "-k"])
            .arg(&crds)
            .output()
            .map_err(|error| error.to_string())?;
        ensure_success("kubectl apply -k crds", &apply)?;
        let wait = cluster
            .kubectl()
            .args([
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd",
                "-l",
                "app.kubernetes.io/part-of=lifeboat",
            ])
            .output()
            .map_err(|error| error.to_string())?;
        ensure_success("kubectl wait crds", &wait)
    });
    if let Err(message) = installed {
        panic!("installing CRDs: {message}");
    }
    cluster
}

/// `Ok` when the command succeeded, else a message with its status and both streams.
pub fn ensure_success(what: &str, output: &Output) -> Result<(), String> {
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// Runs `command`, panicking with its output on failure; returns stdout.
pub fn run_ok(what: &str, command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{what}: cannot run {command:?}: {error}"));
    if let Err(message) = ensure_success(what, &output) {
        panic!("{message}");
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Creates or replaces a Secret with one key, as `kubectl create secret generic --from-literal` would.
pub async fn secret(ns: &TestNamespace, name: &str, key: &str, value: &str) {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams};
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {key: value}
    }))
    .expect("a Secret");
    ns.api::<Secret>()
        .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&secret))
        .await
        .expect("apply Secret");
}

/// The values of column `name` in `kubectl get` output, one per row, read at the header's offsets:
/// values such as a cron schedule contain spaces, so splitting rows on whitespace would misread them.
pub fn table_column(table: &str, name: &str) -> Vec<String> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let Some(start) = header.find(name) else {
        panic!("no column {name} in:\n{table}");
    };
    lines
        .map(|row| {
            let rest: String = row.chars().skip(start).collect();
            rest.split_whitespace().next().unwrap_or_default().to_owned()
        })
        .collect()
}

/// What kstatus — sigs.k8s.io/cli-utils, the library behind Flux's health checks — computes for an object
/// as the API server returned it: (status, message), e.g. ("Current", "Resource is current").
/// hack/kstatus, built by hack/build-test-tools.sh.
pub fn kstatus(object: &impl serde::Serialize) -> (String, String) {
    let binary = localcluster::cache_dir().join("bin/lifeboat-kstatus");
    assert!(
        binary.exists(),
        "{} is missing: run hack/build-test-tools.sh (hack/install-tools.sh runs it)",
        binary.display()
    );
    let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(object).unwrap()).unwrap();
    let out = run_ok("lifeboat-kstatus", Command::new(binary).arg(file.path()));
    let mut fields = out.trim_end().splitn(3, '\t').skip(1);
    let status = fields.next().unwrap_or_default().to_owned();
    let message = fields.next().unwrap_or_default().to_owned();
    (status, message)
}

/// Runs `command` with `input` on stdin, panicking with both streams when it fails; returns stdout.
pub fn run_with_stdin(what: &str, command: &mut Command, input: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    if let Err(message) = ensure_success(what, &output) {
        panic!("{message}");
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Cluster-wide objects of one chart template (roles, the approval policy), applied under a release name
/// of the test's own so they meet no installed release's, and deleted when dropped — even when the test
/// fails, since a left-over would block a later `helm install` that creates objects of the same name.
pub struct ChartObjects {
    cluster: Cluster,
    manifest: tempfile::NamedTempFile,
    /// The rendered template.
    pub rendered: String,
}

impl ChartObjects {
    pub fn apply(cluster: &Cluster, release: &str, template: &str) -> ChartObjects {
        let rendered = run_ok(
            &format!("helm template --show-only {template}"),
            cluster
                .helm()
                .args(["template", release])
                .arg(repo_path("charts/lifeboat"))
                .args(["--show-only", template]),
        );
        let manifest = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        std::fs::write(manifest.path(), &rendered).unwrap();
        let objects = ChartObjects {
            cluster: cluster.clone(),
            manifest,
            rendered,
        };
        run_ok(
            &format!("kubectl apply ({template})"),
            cluster
                .kubectl()
                .args(["apply", "-f"])
                .arg(objects.manifest.path()),
        );
        objects
    }
}

impl Drop for ChartObjects {
    fn drop(&mut self) {
        let _ = self
            .cluster
            .kubectl()
            .args(["delete", "--ignore-not-found", "-f"])
            .arg(self.manifest.path())
            .output();
    }
}
