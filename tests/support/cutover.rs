//! Shared by the Cutover end-to-end tests: blue and green Deployments of a small HTTP app behind a
//! Service, what a client of that Service sees, and waiting on a Cutover's status.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use lifeboat::api::cutover::{CutoverPhase, StepPhase};
use lifeboat::api::{BackupPolicy, Cutover};
use serde_json::{json, Value};

use super::agent;
use super::operator::http_get;
use super::wait::{poll, OperatorLog};
use super::{secret, TestNamespace};

/// A web app: `/health` answers 500 while `<dir>/<color>-unhealthy` exists, `/ready` always 200 (so
/// the proxy keeps routing to it), every other path answers the color. With `WRITES_LOG` set it also
/// writes to the database, as a live app does: a row into table `writes` every 100 ms, appending each
/// committed row's id and commit-side time (epoch seconds) to that file.
pub const APP: &str = r#"
import http.server, os, subprocess, threading, time
color = os.environ["COLOR"]
fail_file = os.environ["FAIL_FILE"]
def write_forever(log):
    insert = ("insert into writes(color) values ('%s') "
              "returning id || ' ' || extract(epoch from at)" % color)
    while True:
        done = subprocess.run([os.environ["PSQL"], "-h", "127.0.0.1", "-p", os.environ["PGPORT"], "-U", "postgres",
                               "-d", os.environ["PGDATABASE"], "-tAq", "-v", "ON_ERROR_STOP=1", "-c", insert],
                              capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip():
            with open(log, "a") as f:
                f.write(done.stdout.strip() + "\n")
        time.sleep(0.1)
if os.environ.get("WRITES_LOG"):
    threading.Thread(target=write_forever, args=(os.environ["WRITES_LOG"],), daemon=True).start()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            code, body = (500, "unhealthy") if os.path.exists(fail_file) else (200, "ok")
        elif self.path == "/ready":
            code, body = 200, "ready"
        else:
            code, body = 200, color
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((os.environ["POD_IP"], 8080), Handler).serve_forever()
"#;

pub struct App {
    pub dir: tempfile::TempDir,
}

impl App {
    pub fn fail_file(&self, color: &str) -> PathBuf {
        self.dir.path().join(format!("{color}-unhealthy"))
    }

    pub fn make_unhealthy(&self, color: &str) {
        std::fs::write(self.fail_file(color), "").unwrap();
    }

    pub fn writes_log(&self, color: &str) -> PathBuf {
        self.dir.path().join(format!("writes-{color}.log"))
    }

    /// Every write the app's sides logged as committed: the row as `id epoch` (ids repeat after a
    /// restore resets the sequence; with the commit-side time they do not) and that time in seconds.
    pub fn committed_writes(&self) -> Vec<(String, f64)> {
        let mut writes = Vec::new();
        for color in ["blue", "green"] {
            let log = std::fs::read_to_string(self.writes_log(color)).unwrap_or_default();
            for line in log.lines() {
                if let Some(Ok(at)) = line.split_whitespace().nth(1).map(str::parse::<f64>) {
                    writes.push((line.trim().to_owned(), at));
                }
            }
        }
        writes
    }
}

pub async fn apply<K>(api: &Api<K>, object: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    api.patch(&name, &PatchParams::apply("test").force(), &Patch::Apply(&object))
        .await
        .unwrap();
}

/// What Pod Security `restricted` (which test namespaces enforce) asks of a Pod and its containers.
pub fn restricted_pod() -> Value {
    json!({"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}})
}

pub fn restricted_container() -> Value {
    json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})
}

/// A Cutover step's securityContext in a namespace that enforces `restricted` (as test namespaces
/// do): a step's default drops capabilities but leaves runAsNonRoot to the image's owner.
pub fn step_security() -> Value {
    json!({"runAsNonRoot": true, "runAsUser": 65532, "allowPrivilegeEscalation": false,
           "capabilities": {"drop": ["ALL"]}})
}

pub fn deployment(color: &str, script: &Path, fail_file: &Path) -> Value {
    deployment_with_env(color, script, fail_file, &[])
}

/// [`deployment`] with more environment variables for the app.
pub fn deployment_with_env(color: &str, script: &Path, fail_file: &Path, extra_env: &[Value]) -> Value {
    let mut env = vec![
        json!({"name": "COLOR", "value": color}),
        json!({"name": "FAIL_FILE", "value": fail_file}),
    ];
    env.extend(extra_env.iter().cloned());
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": format!("web-{color}")},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web", "track": color}},
            "template": {
                "metadata": {"labels": {"app": "web", "track": color}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "securityContext": restricted_pod(),
                    "containers": [{
                        "name": "web", "image": "hotel/web", "command": ["python3", script],
                        "securityContext": restricted_container(),
                        "env": env,
                        "ports": [{"containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1}
                    }]
                }
            }
        }
    })
}

pub fn service(name: &str, track: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": {"app": "web", "track": track}, "ports": [{"port": 80, "targetPort": 8080}]}
    })
}

/// Blue serving behind Service `web`, green running beside it (and reachable as `web-green`).
pub async fn blue_and_green(ns: &TestNamespace) -> App {
    blue_and_green_with(ns, |_| Vec::new()).await
}

/// Blue and green both writing to `database` (whose table `writes` must exist) while they run, each
/// logging its committed writes to `App::writes_log(color)`.
pub async fn blue_and_green_writing(ns: &TestNamespace, database: &str) -> App {
    let pg = agent::postgres();
    let psql = agent::pg_bin("psql").display().to_string();
    blue_and_green_with(ns, |log| {
        vec![
            json!({"name": "WRITES_LOG", "value": log}),
            json!({"name": "PSQL", "value": psql}),
            json!({"name": "PGPORT", "value": pg.port.to_string()}),
            json!({"name": "PGDATABASE", "value": database}),
            json!({"name": "PGPASSWORD", "value": agent::PG_PASSWORD}),
        ]
    })
    .await
}

/// `extra_env` gets the path of the side's writes log.
async fn blue_and_green_with(ns: &TestNamespace, extra_env: impl Fn(&Path) -> Vec<Value>) -> App {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("app.py");
    std::fs::write(&script, APP).unwrap();
    let app = App { dir };
    let deployments: Api<Deployment> = ns.api();
    let services: Api<Service> = ns.api();
    for color in ["blue", "green"] {
        let env = extra_env(&app.writes_log(color));
        let object = deployment_with_env(color, &script, &app.fail_file(color), &env);
        apply(&deployments, object).await;
    }
    apply(&services, service("web", "blue")).await;
    apply(&services, service("web-green", "green")).await;
    for name in ["web", "web-green"] {
        let url = format!("http://{name}.{}.svc:80/", ns.name);
        localcluster::services::resolve_url_when_ready(&url, Duration::from_secs(60))
            .await
            .unwrap();
    }
    assert_eq!(answer(ns, "/").await.as_deref(), Some("blue"));
    app
}

/// What a client of Service `web` gets for `path` now: a fresh connection through the proxy.
pub async fn answer(ns: &TestNamespace, path: &str) -> Option<String> {
    let url = localcluster::services::resolve_url(&format!("http://web.{}.svc:80{path}", ns.name)).ok()?;
    tokio::task::spawn_blocking(move || http_get(&url))
        .await
        .ok()?
        .map(|(_, body)| body)
}

pub async fn selector(ns: &TestNamespace) -> Value {
    let services: Api<Service> = ns.api();
    serde_json::to_value(services.get("web").await.unwrap().spec.unwrap().selector).unwrap()
}

pub fn cutover(name: &str, spec: Value) -> Cutover {
    let mut base = json!({
        "trafficSwitch": {"service": {"name": "web"}},
        "from": {"selector": {"app": "web", "track": "blue"}, "deployment": "web-blue"},
        "to": {"selector": {"app": "web", "track": "green"}, "deployment": "web-green"},
        "readinessTimeout": "60s",
    });
    for (key, value) in spec.as_object().unwrap() {
        base[key] = value.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Cutover", "metadata": {"name": name}, "spec": base
    }))
    .unwrap()
}

/// Polls the Cutover every 200 ms until `check` accepts it.
pub async fn wait_for(
    what: &str,
    api: &Api<Cutover>,
    name: &str,
    timeout: Duration,
    operator: &dyn OperatorLog,
    check: impl Fn(&Cutover) -> bool,
) -> Cutover {
    poll(what, timeout, Duration::from_millis(200), operator, async || {
        let cutover = api.get(name).await.unwrap();
        if check(&cutover) {
            return Ok(cutover);
        }
        Err(format!(
            "status:\n{}",
            serde_json::to_string_pretty(&cutover.status).unwrap()
        ))
    })
    .await
}

/// True once the Cutover has ended, however it ended (the test then says which end it expects).
pub fn ended(cutover: &Cutover) -> bool {
    matches!(
        phase(cutover),
        Some(CutoverPhase::Succeeded | CutoverPhase::Failed | CutoverPhase::RolledBack)
    )
}

/// Waits until the Cutover has ended and asserts it ended as `expected` (showing the whole status if not).
pub async fn ended_as(
    api: &Api<Cutover>,
    name: &str,
    expected: CutoverPhase,
    timeout: Duration,
    operator: &dyn OperatorLog,
) -> Cutover {
    let done = wait_for("the end", api, name, timeout, operator, ended).await;
    let status = done.status.clone().unwrap();
    assert_eq!(
        status.phase,
        Some(expected),
        "{}",
        serde_json::to_string_pretty(&status).unwrap()
    );
    done
}

pub fn phase(cutover: &Cutover) -> Option<CutoverPhase> {
    cutover.status.as_ref().and_then(|s| s.phase)
}

pub fn step_names(cutover: &Cutover) -> Vec<(String, StepPhase)> {
    cutover
        .status
        .as_ref()
        .unwrap()
        .steps
        .iter()
        .map(|s| (s.name.clone(), s.phase))
        .collect()
}

/// A BackupPolicy over a real PostgreSQL database into a real restic repository, never scheduled
/// during the test: the Cutover's pre-switch Backup is the only one.
/// The database's name is returned with the repository.
pub async fn hotel_database(ns: &TestNamespace) -> (agent::Repo, String) {
    let pg = agent::postgres();
    let database = format!("hotel_{}", ns.name.replace('-', "_"));
    pg.create_database(&database);
    pg.psql(
        &database,
        "create table guests(id serial primary key, name text not null); \
                        insert into guests(name) select 'guest ' || g from generate_series(1, 200) g;",
    );
    let repo = agent::Repo::uninitialised();
    secret(ns, "db", "password", agent::PG_PASSWORD).await;
    secret(ns, "restic", "password", agent::RESTIC_PASSWORD).await;
    let policy: BackupPolicy = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "hotel-db"},
        "spec": {
            "schedule": "0 0 1 1 *",
            "source": {"postgres": {"host": "127.0.0.1", "port": pg.port, "database": database, "user": "postgres",
                                     "passwordSecretRef": {"name": "db", "key": "password"}}},
            "repository": {"restic": {"repository": repo.repository_arg(), "initialize": true,
                                       "passwordSecretRef": {"name": "restic", "key": "password"}}}
        }
    }))
    .unwrap();
    let policies: Api<BackupPolicy> = ns.api();
    policies.create(&PostParams::default(), &policy).await.unwrap();
    (repo, database)
}

/// Waits (up to 5 s) until a client of Service `web` gets `color`: the proxy follows a selector change
/// within a moment, not within the same instant.
pub async fn answers_soon(ns: &TestNamespace, color: &str) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if answer(ns, "/").await.as_deref() == Some(color) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// `user` (in `groups`) may get and patch the Cutovers of `ns`, and this is their view of them: the
/// chart's accountable-approvals policy admits a GO or a sign-off only in the name of whoever gives it,
/// so a test gives one as that person (impersonated, as the API server sees a person behind OIDC).
pub async fn approver(cluster: &super::Cluster, ns: &TestNamespace, user: &str, groups: &[&str]) -> Api<Cutover> {
    let role = format!("approver-{user}");
    super::run_ok(
        "kubectl create role",
        cluster.kubectl().args([
            "-n", &ns.name, "create", "role", &role, "--verb=get,list,watch,patch,update",
            "--resource=cutovers.lifeboat.dev",
        ]),
    );
    super::run_ok(
        "kubectl create rolebinding",
        cluster.kubectl().args([
            "-n", &ns.name, "create", "rolebinding", &role, &format!("--role={role}"),
            &format!("--user={user}"),
        ]),
    );
    let client = cluster.client_as(user, groups).await.expect("a client acting as the approver");
    Api::namespaced(client, &ns.name)
}
