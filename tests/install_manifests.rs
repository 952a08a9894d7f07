//! The install manifests install cleanly on the real apiserver: the kustomize base, the Helm chart, and
//! their RBAC grant the same least-privilege rules.

mod support;

fn ensure_namespace(cluster: &support::Cluster, name: &str) {
    let manifest = support::run_ok(
        "namespace manifest",
        cluster
            .kubectl()
            .args(["create", "namespace", name, "--dry-run=client", "-o", "yaml"]),
    );
    support::run_with_stdin(
        "create namespace",
        cluster.kubectl().args(["apply", "-f", "-"]),
        &manifest,
    );
}

#[tokio::test]
async fn the_kustomize_base_applies_on_the_server() {
    let cluster = support::cluster_with_crds();
    // A server-side dry run checks namespaced objects against a namespace that exists.
    ensure_namespace(&cluster, "lifeboat-system");
    let out = support::run_ok(
        "kubectl apply -k deploy --dry-run=server",
        cluster
            .kubectl()
            .args(["apply", "-k"])
            .arg(support::repo_path("deploy"))
            .arg("--dry-run=server"),
    );
    for expected in [
        "customresourcedefinition.apiextensions.k8s.io/cutovers.lifeboat.dev",
        "serviceaccount/lifeboat-operator",
        "clusterrole.rbac.authorization.k8s.io/lifeboat-operator",
        "clusterrolebinding.rbac.authorization.k8s.io/lifeboat-operator",
        "role.rbac.authorization.k8s.io/lifeboat-leader-election",
        "deployment.apps/lifeboat-operator",
    ] {
        assert!(out.contains(expected), "{expected} missing from:\n{out}");
    }
}

#[tokio::test]
async fn the_helm_chart_lints_and_its_templates_apply_on_the_server() {
    let cluster = support::cluster_with_crds();
    let chart = support::repo_path("charts/lifeboat");
    support::run_ok("helm lint", cluster.helm().arg("lint").arg(&chart));

    let ns = cluster.namespace("helm").await.unwrap();
    let rendered = support::run_ok(
        "helm template",
        cluster.helm().args(["template", "lifeboat"]).arg(&chart).args([
            "--namespace",
            &ns.name,
            "--include-crds",
        ]),
    );
    let applied = support::run_with_stdin(
        "kubectl apply --dry-run=server (helm template)",
        cluster.kubectl().args(["apply", "--dry-run=server", "-f", "-"]),
        &rendered,
    );
    assert!(applied.contains("deployment.apps/lifeboat"), "{applied}");
    assert!(
        applied.contains("clusterrolebinding.rbac.authorization.k8s.io/lifeboat"),
        "{applied}"
    );
}

#[test]
fn watching_listed_namespaces_binds_the_role_only_there() {
    let cluster = localcluster::ensure().expect("helm is built with the cluster");
    let rendered = support::run_ok(
        "helm template with watchNamespaces",
        cluster
            .helm()
            .args(["template", "lifeboat"])
            .arg(support::repo_path("charts/lifeboat"))
            .args(["--set", "watchNamespaces={hotel,crm}"]),
    );
    assert!(!rendered.contains("kind: ClusterRoleBinding"), "{rendered}");
    assert_eq!(
        rendered.matches("kind: RoleBinding").count(),
        3,
        "hotel, crm and leader election:\n{rendered}"
    );
    assert!(
        rendered.contains("value: \"hotel,crm\""),
        "the operator is told which namespaces to watch"
    );
}

/// The rules of the first ClusterRole in a manifest, as YAML values.
fn cluster_role_rules(manifest: &str) -> serde_norway::Value {
    for document in serde_norway::Deserializer::from_str(manifest) {
        let value = serde_norway::Value::deserialize(document).unwrap();
        if value.get("kind").and_then(|k| k.as_str()) == Some("ClusterRole") {
            return value["rules"].clone();
        }
    }
    panic!("no ClusterRole in manifest");
}

use serde::Deserialize;

#[test]
fn the_chart_and_the_kustomize_base_grant_the_same_rules() {
    let cluster = localcluster::ensure().expect("helm is built with the cluster");
    let rendered = support::run_ok(
        "helm template",
        cluster
            .helm()
            .args(["template", "lifeboat"])
            .arg(support::repo_path("charts/lifeboat")),
    );
    let kustomize = std::fs::read_to_string(support::repo_path("deploy/rbac.yaml")).unwrap();
    assert_eq!(cluster_role_rules(&rendered), cluster_role_rules(&kustomize));
    // Least privilege: Secrets are read one by one, never listed or watched.
    let rules = cluster_role_rules(&kustomize);
    let secrets = rules
        .as_sequence()
        .unwrap()
        .iter()
        .find(|rule| {
            rule["resources"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|r| r.as_str() == Some("secrets"))
        })
        .expect("a rule for secrets");
    assert_eq!(secrets["verbs"], serde_norway::Value::from(vec!["get"]));
}
