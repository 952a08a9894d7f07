//! docs/cutover-walkthrough.md is run, not just read: Lifeboat installed with the chart on the real node,
//! then every `sh` block of the document runs literally with bash, given only `NS` (the input the
//! document declares) and a kubectl whose PATH has this build as `kubectl-lifeboat`. What each block
//! prints is what a reader is told they will see; the Cutovers' status and the Service are checked
//! through the API as well. (Its own test binary: it installs the chart.)

// lifeboat-test: alone (installs the chart as the document does; hack/run-tests.sh)

mod support;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use lifeboat::api::cutover::{CutoverPhase, StepPhase};
use lifeboat::api::Cutover;

use support::installed::InstalledOperator;
use support::{cluster_with_crds, Cluster};

const DOC: &str = include_str!("../docs/cutover-walkthrough.md");

/// The document's blocks, run the way a reader runs them: bash `-euo pipefail` with kubectl and the
/// plugin on PATH and `NS` set, nothing else.
struct Walkthrough {
    blocks: BTreeMap<String, String>,
    ran: RefCell<BTreeSet<String>>,
    cluster: Cluster,
    namespace: String,
    plugins: tempfile::TempDir,
}

impl Walkthrough {
    fn new(cluster: &Cluster, namespace: &str) -> Walkthrough {
        let plugins = tempfile::tempdir().expect("a directory for the plugin");
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_lifeboat"),
            plugins.path().join("kubectl-lifeboat"),
        )
        .expect("link kubectl-lifeboat");
        assert!(DOC.contains("`NS`"), "the document declares its input NS");
        Walkthrough {
            blocks: support::doc::sh_blocks(DOC),
            ran: RefCell::new(BTreeSet::new()),
            cluster: cluster.clone(),
            namespace: namespace.to_owned(),
            plugins,
        }
    }

    /// The block whose title starts with `title`; its stdout, or a panic with everything it printed.
    fn run(&self, title: &str) -> String {
        let (full_title, script) = support::doc::block(&self.blocks, title);
        self.ran.borrow_mut().insert(full_title.clone());
        let path = format!(
            "{}:{}:{}",
            self.plugins.path().display(),
            localcluster::cache_dir().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // A bound on every block, so a Cutover that never ends fails the test instead of hanging it.
        let output = Command::new("timeout")
            .args(["600", "bash", "-euo", "pipefail", "-c", script])
            .env("PATH", path)
            .env("KUBECONFIG", &self.cluster.kubeconfig)
            .env("NS", &self.namespace)
            .output()
            .expect("run bash");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        // What the reader would see, shown when a later assertion fails (or with --nocapture).
        eprintln!("--- {full_title}\n{stdout}");
        assert!(
            output.status.success(),
            "block {full_title:?} failed ({})\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn assert_every_block_ran(&self) {
        let ran = self.ran.borrow();
        let skipped: Vec<&String> = self.blocks.keys().filter(|t| !ran.contains(*t)).collect();
        assert!(skipped.is_empty(), "blocks the test never ran: {skipped:?}");
    }
}

/// The step log as `(name, phase)` pairs, for assertions that name the step.
fn steps(cutover: &Cutover) -> Vec<(String, StepPhase)> {
    cutover
        .status
        .iter()
        .flat_map(|s| &s.steps)
        .map(|step| (step.name.clone(), step.phase))
        .collect()
}

fn answered(output: &str) -> &str {
    output
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("web answers: "))
        .unwrap_or_else(|| panic!("the block says what web answers: {output}"))
}

#[tokio::test]
async fn the_cutover_walkthrough_runs_as_written() {
    let cluster = cluster_with_crds();
    let _operator = InstalledOperator::helm(&cluster, "lifeboat-walkthrough");
    // cluster.namespace enforces Pod Security restricted, as the document promises.
    let ns = cluster.namespace("walkthrough").await.expect("namespace");
    support::real_node::pods_go_to_the_real_node(&ns).await;
    let doc = Walkthrough::new(&cluster, &ns.name);
    let cutovers: Api<Cutover> = ns.api();

    doc.run("1.");
    assert_eq!(doc.run("2.").trim(), "1.0", "blue answers before any Cutover");

    let waiting = doc.run("3.");
    let status_row = waiting
        .lines()
        .skip_while(|line| *line != "CUTOVERS")
        .find(|line| line.starts_with("web-1-1 "));
    assert!(
        waiting.contains("cutover.lifeboat.dev/web-1-1 condition met")
            && status_row.is_some_and(|row| row.contains("AwaitingApproval")),
        "the Cutover waits for approval and the plugin's status lists it so: {waiting}"
    );
    assert_eq!(
        doc.run("2.").trim(),
        "1.0",
        "traffic stays on blue while the Cutover waits for approval"
    );
    let before_approval = steps(&cutovers.get("web-1-1").await.unwrap());
    for step in ["preflight/green-health", "readiness"] {
        assert!(
            before_approval.contains(&(step.to_owned(), StepPhase::Succeeded)),
            "{step} succeeded before the approval: {before_approval:?}"
        );
    }

    let approved = doc.run("4.");
    let approver = approved
        .trim()
        .strip_prefix("cutover.lifeboat.dev/web-1-1 approved by ")
        .unwrap_or_else(|| panic!("the plugin says who approved: {approved}"))
        .to_owned();

    let followed = doc.run("5.");
    assert!(
        followed.contains("the Cutover Succeeded"),
        "watch follows it to the end: {followed}"
    );
    assert_eq!(answered(&followed), "1.1", "green answers after the switch");
    let log = doc.run("6.");
    for step in [
        "preflight/green-health",
        "readiness",
        "approval",
        "switch",
        "verify/version",
        "stabilization",
    ] {
        assert!(
            log.lines()
                .any(|line| line.starts_with(&format!("{step}\tSucceeded"))),
            "the deployment log shows {step} Succeeded:\n{log}"
        );
    }
    assert!(
        log.contains(&approver) && log.contains("QA signed off 1.1 on web-green"),
        "status.approval records who approved and why:\n{log}"
    );
    let first = cutovers.get("web-1-1").await.unwrap();
    assert_eq!(
        first.status.as_ref().and_then(|s| s.phase),
        Some(CutoverPhase::Succeeded)
    );

    let stabilizing = doc.run("7.");
    assert_eq!(
        answered(&stabilizing),
        "1.2",
        "the second release took the traffic"
    );
    let rolled_back = doc.run("8.");
    assert!(
        rolled_back.contains("the Cutover RolledBack")
            && rolled_back.contains("the Cutover did not succeed (exit status 1)"),
        "watch reports the rollback and exits 1: {rolled_back}"
    );
    assert_eq!(
        answered(&rolled_back),
        "1.1",
        "traffic is back on green after the automatic rollback"
    );
    let failed = doc.run("9.");
    for (step, phase) in [
        ("stabilization", "Failed"),
        ("rollback/switch-back", "Succeeded"),
        ("rollback/verify-from", "Succeeded"),
    ] {
        assert!(
            failed
                .lines()
                .any(|line| line.starts_with(&format!("{step}\t{phase}"))),
            "the log shows {step} {phase}:\n{failed}"
        );
    }
    let second = cutovers.get("web-1-2").await.unwrap();
    assert_eq!(
        second.status.as_ref().and_then(|s| s.phase),
        Some(CutoverPhase::RolledBack),
        "{:?}",
        steps(&second)
    );
    let selector = ns
        .api::<Service>()
        .get("web")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.selector)
        .unwrap_or_default();
    assert_eq!(
        selector.get("track").map(String::as_str),
        Some("green"),
        "Service web selects green again: {selector:?}"
    );
    doc.assert_every_block_ran();
}
