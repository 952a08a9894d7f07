//! Accountable approvals on the real apiserver: the chart's ValidatingAdmissionPolicy admits a Cutover's
//! GO only in the name of the user who gives it, a sign-off for a group only from a member, and no
//! withdrawal of someone else's sign-off. Users are impersonated (`kubectl --as … --as-group …`), as the
//! API server sees people behind OIDC or certificates.

// lifeboat-test: alone (applies the chart's admission policy itself, and its Cutovers are for admission only: no operator may act on them; hack/run-tests.sh)

mod support;

use serde_json::{json, Value};
use std::process::Output;
use std::time::{Duration, Instant};

struct People<'a> {
    cluster: &'a support::Cluster,
    namespace: String,
}

impl People<'_> {
    /// `kubectl patch cutover release` as `user` in `groups`.
    fn patch(&self, user: &str, groups: &[&str], kind: &str, patch: Value) -> Output {
        let mut command = self.cluster.kubectl();
        command.args(["-n", &self.namespace, "--as", user]);
        for group in groups {
            command.args(["--as-group", group]);
        }
        command
            .args(["patch", "cutover", "release", "--type", kind, "-p"])
            .arg(patch.to_string())
            .output()
            .unwrap()
    }

    fn admitted(&self, user: &str, groups: &[&str], kind: &str, patch: Value) {
        let output = self.patch(user, groups, kind, patch.clone());
        if let Err(message) = support::ensure_success(&format!("{user}: {patch}"), &output) {
            panic!("{message}");
        }
    }

    /// `kubectl apply --server-side` of only `user`'s sign-off, as the docs tell approvers to give it.
    fn apply_signoff(&self, user: &str, groups: &[&str], group: &str) {
        let signoff = json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "Cutover", "metadata": {"name": "release"},
                             "spec": {"approval": {"approvals": [{"by": user, "group": group}]}}});
        let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
        std::fs::write(file.path(), signoff.to_string()).unwrap();
        let mut command = self.cluster.kubectl();
        command.args(["-n", &self.namespace, "--as", user]);
        for group in groups {
            command.args(["--as-group", group]);
        }
        support::run_ok(
            "kubectl apply --server-side (sign-off)",
            command
                .args(["apply", "--server-side", "--field-manager", user, "-f"])
                .arg(file.path()),
        );
    }

    /// Refused, with a message containing `expected`.
    fn refused(&self, user: &str, groups: &[&str], kind: &str, patch: Value, expected: &str) {
        let output = self.patch(user, groups, kind, patch.clone());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{user} was admitted: {patch}");
        assert!(stderr.contains(expected), "{user}: {patch}\n{stderr}");
    }
}

fn sign(by: &str, group: Option<&str>) -> Value {
    let mut signoff = json!({"by": by});
    if let Some(group) = group {
        signoff["group"] = json!(group);
    }
    json!([{"op": "add", "path": "/spec/approval/approvals/-", "value": signoff}])
}

fn signoffs(cluster: &support::Cluster, namespace: &str) -> Vec<Value> {
    let text = support::run_ok(
        "kubectl get cutover",
        cluster
            .kubectl()
            .args(["-n", namespace, "get", "cutover", "release", "-o", "json"]),
    );
    let cutover: Value = serde_json::from_str(&text).unwrap();
    cutover["spec"]["approval"]["approvals"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn approvals_are_admitted_only_in_the_name_of_whoever_gives_them() {
    let cluster = support::cluster_with_crds();
    let _policy = support::ChartObjects::apply(
        &cluster,
        "lifeboat-approvals-test",
        "templates/approval-policy.yaml",
    );

    let ns = cluster.namespace("approvals").await.unwrap();
    let people = People {
        cluster: &cluster,
        namespace: ns.name.clone(),
    };
    // Everyone here may edit Cutovers: what stops a false name is the policy, not RBAC.
    support::run_ok(
        "kubectl create role",
        cluster.kubectl().args([
            "-n",
            &ns.name,
            "create",
            "role",
            "cutover-editor",
            "--verb=get,patch,update",
            "--resource=cutovers.lifeboat.dev",
        ]),
    );
    support::run_ok(
        "kubectl create rolebinding",
        cluster.kubectl().args([
            "-n",
            &ns.name,
            "create",
            "rolebinding",
            "cutover-editors",
            "--role=cutover-editor",
            "--user=alice",
            "--user=bob",
            "--user=carol",
        ]),
    );
    let cutover = json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Cutover", "metadata": {"name": "release"},
        "spec": {
            "trafficSwitch": {"service": {"name": "web"}},
            "from": {"selector": {"track": "blue"}}, "to": {"selector": {"track": "green"}},
            "approval": {"required": true, "minApprovals": 2, "requiredGroups": ["dev", "qa"], "approvals": []}
        }
    });
    let manifest = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(manifest.path(), cutover.to_string()).unwrap();
    support::run_ok(
        "kubectl create cutover",
        cluster
            .kubectl()
            .args(["-n", &ns.name, "create", "-f"])
            .arg(manifest.path()),
    );

    // The policy is type-checked and takes effect within seconds of its creation: wait for it to refuse
    // a Cutover created with someone else's GO (deleted again while it is still admitted).
    let mut probe = cutover.clone();
    probe["metadata"]["name"] = json!("probe");
    probe["spec"]["approval"]["approvedBy"] = json!("nobody");
    let probe_file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(probe_file.path(), probe.to_string()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = cluster
            .kubectl()
            .args(["-n", &ns.name, "create", "-f"])
            .arg(probe_file.path())
            .output()
            .unwrap();
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("spec.approval.approvedBy must name you (lifeboat-admin)"),
                "{stderr}"
            );
            break;
        }
        support::run_ok(
            "kubectl delete cutover probe",
            cluster
                .kubectl()
                .args(["-n", &ns.name, "delete", "cutover", "probe"]),
        );
        assert!(
            Instant::now() < deadline,
            "the policy never refused an approval in someone else's name"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let refusal = people.patch("alice", &["dev"], "json", sign("bob", None));
    let stderr = String::from_utf8_lossy(&refusal.stderr);
    assert!(
        stderr.contains("must say by: alice (bob must sign for themselves)"),
        "{stderr}"
    );
    people.refused(
        "alice",
        &["dev"],
        "json",
        sign("alice", Some("qa")),
        "may only sign for a group you are a member of, not qa",
    );
    people.admitted("alice", &["dev"], "json", sign("alice", Some("dev")));
    // bob replaces the list with his own sign-off only: alice's would be gone.
    people.refused(
        "bob",
        &["qa"],
        "merge",
        json!({"spec": {"approval": {"approvals": [{"by": "bob", "group": "qa"}]}}}),
        "only the person who signed may withdraw or change a sign-off (alice)",
    );
    people.apply_signoff("bob", &["qa"], "qa");
    assert_eq!(
        signoffs(&cluster, &ns.name),
        vec![
            json!({"by": "alice", "group": "dev"}),
            json!({"by": "bob", "group": "qa"})
        ]
    );
    // alice may withdraw her own.
    people.admitted(
        "alice",
        &["dev"],
        "json",
        json!([{"op": "remove", "path": "/spec/approval/approvals/0"}]),
    );
    assert_eq!(
        signoffs(&cluster, &ns.name),
        vec![json!({"by": "bob", "group": "qa"})]
    );
    // An explicit null group is no group (as the operator reads it), not a group named null.
    people.admitted(
        "alice",
        &["dev"],
        "json",
        json!([{"op": "add", "path": "/spec/approval/approvals/-", "value": {"by": "alice", "group": null}}]),
    );

    // The single-GO forms are held to the same rule.
    people.refused(
        "carol",
        &[],
        "merge",
        json!({"spec": {"approval": {"approvedBy": "alice"}}}),
        "spec.approval.approvedBy must name you (carol)",
    );
    people.refused(
        "carol",
        &[],
        "merge",
        json!({"metadata": {"annotations": {"lifeboat.dev/approved-by": "alice"}}}),
        "lifeboat.dev/approved-by must name you (carol)",
    );
    people.admitted(
        "carol",
        &[],
        "merge",
        json!({"metadata": {"annotations": {"lifeboat.dev/approved-by": "carol"}}}),
    );
    people.admitted(
        "carol",
        &[],
        "merge",
        json!({"spec": {"approval": {"approvedBy": "carol", "reason": "CAB-9"}}}),
    );
    // A GO is withdrawn, changed or explained only by the person it names.
    people.refused(
        "alice",
        &[],
        "merge",
        json!({"spec": {"approval": {"approvedBy": null}}}),
        "only carol may change or withdraw theirs",
    );
    people.refused(
        "alice",
        &[],
        "merge",
        json!({"metadata": {"annotations": {"lifeboat.dev/approved-by": null}}}),
        "only carol may change or withdraw theirs",
    );
    people.refused(
        "alice",
        &[],
        "merge",
        json!({"spec": {"approval": {"reason": "no CAB needed"}}}),
        "spec.approval.reason is the reason of whoever gives the GO",
    );
    people.admitted(
        "carol",
        &[],
        "merge",
        json!({"spec": {"approval": {"approvedBy": null, "reason": null}}}),
    );
    // Edits that touch no approval are not in the policy's way.
    people.admitted(
        "alice",
        &[],
        "merge",
        json!({"metadata": {"labels": {"team": "web"}}}),
    );
}
