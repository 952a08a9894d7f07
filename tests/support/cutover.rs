//! Shared by the Cutover end-to-end tests: a Cutover's spec around Service `web` (blue and green come from
//! `node_web`), waiting on its status, and approvers acting in their own names.
#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::Api;
use lifeboat::api::cutover::{CutoverPhase, StepPhase};
use lifeboat::api::Cutover;
use serde_json::{json, Value};

use super::wait::{poll, OperatorLog};
use super::TestNamespace;

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

/// `user` (in `groups`) may get and patch the Cutovers of `ns`, and this is their view of them: the
/// chart's accountable-approvals policy admits a GO or a sign-off only in the name of whoever gives it,
/// so a test gives one as that person (impersonated, as the API server sees a person behind OIDC).
pub async fn approver(
    cluster: &super::Cluster,
    ns: &TestNamespace,
    user: &str,
    groups: &[&str],
) -> Api<Cutover> {
    let role = format!("approver-{user}");
    super::run_ok(
        "kubectl create role",
        cluster.kubectl().args([
            "-n",
            &ns.name,
            "create",
            "role",
            &role,
            "--verb=get,list,watch,patch,update",
            "--resource=cutovers.lifeboat.dev",
        ]),
    );
    super::run_ok(
        "kubectl create rolebinding",
        cluster.kubectl().args([
            "-n",
            &ns.name,
            "create",
            "rolebinding",
            &role,
            &format!("--role={role}"),
            &format!("--user={user}"),
        ]),
    );
    let client = cluster
        .client_as(user, groups)
        .await
        .expect("a client acting as the approver");
    Api::namespaced(client, &ns.name)
}
