//! What a Helm user meets besides the operator itself: values checked by the chart's schema with messages
//! naming the value, a PodDisruptionBudget once there is a standby, security contexts that can be
//! overridden, and Lifeboat's kinds in the default view/edit/admin roles (aggregated by the real
//! controller-manager, checked with `kubectl auth can-i` as impersonated users).

mod support;

use serde::Deserialize;
use serde_norway::Value as Yaml;
use std::process::Command;
use std::time::Duration;

fn helm_template(cluster: &support::Cluster, release: &str, values: &[&str]) -> Command {
    let mut command = cluster.helm();
    command
        .args(["template", release])
        .arg(support::repo_path("charts/lifeboat"))
        .args(["--namespace", "lifeboat-system"]);
    for value in values {
        command.args(["--set", value]);
    }
    command
}

fn render(cluster: &support::Cluster, values: &[&str]) -> Vec<Yaml> {
    let rendered = support::run_ok("helm template", &mut helm_template(cluster, "lifeboat", values));
    documents(&rendered)
}

fn documents(manifest: &str) -> Vec<Yaml> {
    serde_norway::Deserializer::from_str(manifest)
        .map(|document| Yaml::deserialize(document).unwrap())
        .filter(|document| !document.is_null())
        .collect()
}

fn of_kind<'a>(documents: &'a [Yaml], kind: &str) -> Vec<&'a Yaml> {
    documents
        .iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

#[test]
fn values_the_chart_cannot_use_are_refused_naming_the_value() {
    let cluster = localcluster::ensure().expect("helm is built with the cluster");
    for (value, expected) in [
        ("replicas=two", "/replicas"),
        // A typo must not be silently ignored.
        ("replica=2", "'replica' not allowed"),
        (
            "monitoring.serviceMonitor.interval=30",
            "/monitoring/serviceMonitor/interval",
        ),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("watchNamespaces={Hotel}", "/watchNamespaces/0"),
    ] {
        let output = helm_template(&cluster, "lifeboat", &[value]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "--set {value} was accepted");
        assert!(stderr.contains(expected), "--set {value}: {stderr}");
    }
}

#[test]
fn a_standby_replica_brings_a_disruption_budget_that_selects_the_operator() {
    let cluster = localcluster::ensure().expect("helm is built with the cluster");
    assert!(
        of_kind(&render(&cluster, &[]), "PodDisruptionBudget").is_empty(),
        "one replica: nothing to keep"
    );
    let documents = render(&cluster, &["replicas=2"]);
    let budget = of_kind(&documents, "PodDisruptionBudget")[0];
    assert_eq!(budget["spec"]["maxUnavailable"], Yaml::from(1));
    let pod_labels = &of_kind(&documents, "Deployment")[0]["spec"]["template"]["metadata"]["labels"];
    for (key, value) in budget["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(&pod_labels[key], value, "Pod label {key:?}");
    }
}

#[test]
fn security_contexts_default_to_restricted_and_can_be_overridden() {
    let cluster = localcluster::ensure().expect("helm is built with the cluster");
    let pod = |documents: &[Yaml]| of_kind(documents, "Deployment")[0]["spec"]["template"]["spec"].clone();
    let defaults = pod(&render(&cluster, &[]));
    assert_eq!(defaults["securityContext"]["runAsNonRoot"], Yaml::from(true));
    let container = &defaults["containers"][0]["securityContext"];
    assert_eq!(container["readOnlyRootFilesystem"], Yaml::from(true));
    assert_eq!(container["capabilities"]["drop"][0], Yaml::from("ALL"));

    let overridden = pod(&render(
        &cluster,
        &[
            "podSecurityContext.runAsUser=1000700000",
            "securityContext.readOnlyRootFilesystem=false",
        ],
    ));
    assert_eq!(overridden["securityContext"]["runAsUser"], Yaml::from(1000700000));
    assert_eq!(
        overridden["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        Yaml::from(false)
    );
}

/// The rules of the user-facing ClusterRoles in a manifest, keyed by their highest aggregation target.
fn user_roles(documents: &[Yaml]) -> Vec<(String, Yaml)> {
    let mut roles: Vec<(String, Yaml)> = of_kind(documents, "ClusterRole")
        .into_iter()
        .filter_map(|role| {
            let labels = role["metadata"]["labels"].as_mapping()?;
            let to = |target: &str| {
                labels.get(format!("rbac.authorization.k8s.io/aggregate-to-{target}"))
                    == Some(&Yaml::from("true"))
            };
            let key = if to("view") {
                "view"
            } else if to("edit") {
                "edit"
            } else {
                return None;
            };
            Some((key.to_owned(), role["rules"].clone()))
        })
        .collect();
    roles.sort_by(|a, b| a.0.cmp(&b.0));
    roles
}

#[test]
fn the_chart_and_the_kustomize_base_give_users_the_same_roles() {
    let cluster = localcluster::ensure().expect("helm is built with the cluster");
    let kustomize = std::fs::read_to_string(support::repo_path("deploy/user-roles.yaml")).unwrap();
    let chart = user_roles(&render(&cluster, &[]));
    assert_eq!(chart.len(), 2, "{chart:?}");
    assert_eq!(chart, user_roles(&documents(&kustomize)));
    assert!(
        user_roles(&render(&cluster, &["rbac.aggregateToDefaultRoles=false"])).is_empty(),
        "rbac.aggregateToDefaultRoles=false leaves the default roles alone"
    );
}

fn can_i(cluster: &support::Cluster, namespace: &str, user: &str, verb: &str, resource: &str) -> bool {
    let output = cluster
        .kubectl()
        .args(["auth", "can-i", verb, resource, "-n", namespace, "--as", user])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim() == "yes"
}

#[tokio::test]
async fn namespace_users_reach_lifeboat_through_the_default_view_and_edit_roles() {
    let cluster = support::cluster_with_crds();
    let _roles = support::ChartObjects::apply(&cluster, "lifeboat-roles-test", "templates/user-roles.yaml");

    let ns = cluster.namespace("roles").await.unwrap();
    for (user, role) in [("alice", "view"), ("bob", "edit")] {
        support::run_ok(
            "kubectl create rolebinding",
            cluster
                .kubectl()
                .args([
                    "create",
                    "rolebinding",
                    user,
                    "--clusterrole",
                    role,
                    "--user",
                    user,
                    "-n",
                ])
                .arg(&ns.name),
        );
    }
    // The controller-manager's aggregation controller copies the rules into view/edit/admin.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !can_i(&cluster, &ns.name, "alice", "list", "backuppolicies.lifeboat.dev") {
        assert!(
            std::time::Instant::now() < deadline,
            "view never gained Lifeboat's kinds"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for resource in ["backups", "restores", "restoredrills", "cutovers"] {
        assert!(
            can_i(
                &cluster,
                &ns.name,
                "alice",
                "get",
                &format!("{resource}.lifeboat.dev")
            ),
            "view: get {resource}"
        );
    }
    assert!(
        !can_i(&cluster, &ns.name, "alice", "create", "restores.lifeboat.dev"),
        "view cannot create"
    );
    assert!(
        !can_i(&cluster, &ns.name, "alice", "patch", "cutovers.lifeboat.dev"),
        "view cannot approve"
    );
    assert!(
        can_i(&cluster, &ns.name, "bob", "create", "restores.lifeboat.dev"),
        "edit creates Restores"
    );
    assert!(
        can_i(&cluster, &ns.name, "bob", "patch", "cutovers.lifeboat.dev"),
        "edit approves Cutovers"
    );
    assert!(
        can_i(&cluster, &ns.name, "bob", "delete", "backuppolicies.lifeboat.dev"),
        "edit deletes"
    );
    let status = cluster
        .kubectl()
        .args([
            "auth",
            "can-i",
            "patch",
            "cutovers.lifeboat.dev",
            "--subresource=status",
            "--as",
            "bob",
            "-n",
        ])
        .arg(&ns.name)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&status.stdout).trim(),
        "no",
        "status is the operator's"
    );
    // Only where bound: nothing cluster-wide.
    assert!(!can_i(
        &cluster,
        "default",
        "bob",
        "create",
        "restores.lifeboat.dev"
    ));
}

#[test]
fn the_chart_and_the_kustomize_base_ship_the_same_approval_policy() {
    let cluster = localcluster::ensure().expect("helm is built with the cluster");
    let specs = |documents: &[Yaml]| -> Vec<Yaml> {
        ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
            .iter()
            .map(|kind| {
                let mut spec = of_kind(documents, kind)
                    .first()
                    .unwrap_or_else(|| panic!("no {kind}"))["spec"]
                    .clone();
                // The binding names its policy, whose name follows the release.
                if let Some(map) = spec.as_mapping_mut() {
                    map.remove("policyName");
                }
                spec
            })
            .collect()
    };
    let kustomize = std::fs::read_to_string(support::repo_path("deploy/approval-policy.yaml")).unwrap();
    assert_eq!(specs(&render(&cluster, &[])), specs(&documents(&kustomize)));
    assert!(of_kind(
        &render(&cluster, &["approvalPolicy.enabled=false"]),
        "ValidatingAdmissionPolicy"
    )
    .is_empty());
}
