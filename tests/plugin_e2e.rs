//! `kubectl lifeboat`, run the way users run it: the binary linked as `kubectl-lifeboat` on the PATH and
//! found by the real kubectl's plugin lookup, against the chart-installed operator on the real node and
//! the real apiserver — with the chart's accountable-approvals admission policy in force, so the plugin's
//! GO must carry the user's real name.

mod support;

use kube::api::PostParams;
use kube::Api;
use lifeboat::api::backup::BackupTrigger;
use lifeboat::api::cutover::CutoverPhase;
use lifeboat::api::{Backup, BackupPolicy, Cutover, RestoreDrill};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::cutover::{cutover, phase, wait_for};
use support::installed::InstalledOperator;
use support::node_restore::{backed_up_database, scratch_postgres};
use support::node_web::{answer, blue_and_green};
use support::plugin::Kubectl;
use support::real_node::namespace;
use support::restore::ROWS;
use support::wait::OperatorLog;

#[tokio::test]
async fn kubectl_lifeboat_shows_status_backs_up_approves_in_your_name_and_aborts() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let kubectl = Kubectl::new(&cluster);
    let ns = namespace(&cluster, "plugin").await;
    let n = ns.name.as_str();

    // A policy that never ran, with a 5 s RPO (a yearly schedule: nothing runs): stale within seconds.
    support::secret(&ns, "db", "password", "unused").await;
    support::secret(&ns, "restic", "password", "unused").await;
    let policy: BackupPolicy = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "orders"},
        "spec": {
            "schedule": "0 0 1 1 *", "rpo": "5s",
            "source": {"postgres": {"host": "db", "port": 5432, "database": "orders", "user": "postgres",
                                    "passwordSecretRef": {"name": "db", "key": "password"}}},
            "repository": {"restic": {"repository": "/tmp/lifeboat-plugin-e2e-unused",
                                      "passwordSecretRef": {"name": "restic", "key": "password"}}}
        }
    }))
    .unwrap();
    ns.api::<BackupPolicy>()
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let screen = loop {
        let screen = kubectl.ok(&["status", "-n", n]);
        if screen.contains("STALE") {
            break screen;
        }
        assert!(
            Instant::now() < deadline,
            "the policy never showed STALE:\n{screen}\n{}",
            operator.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let row = screen
        .lines()
        .find(|l| l.starts_with("orders "))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(row.contains("never / 5s") && row.contains("STALE"), "{screen}");
    assert!(
        screen.lines().all(|line| line.chars().count() <= 100),
        "wider than 100 columns:\n{screen}"
    );
    let report: Value = serde_json::from_str(&kubectl.ok(&["status", "-n", n, "-o", "json"])).unwrap();
    assert_eq!(report["backupPolicies"][0]["name"], "orders");
    assert_eq!(report["backupPolicies"][0]["problems"][0], "STALE");
    let everywhere = kubectl.ok(&["status", "-A"]);
    assert!(
        everywhere.contains("NAMESPACE") && everywhere.contains(n),
        "{everywhere}"
    );

    // A backup now, with the reason it is recorded under.
    let created = kubectl.ok(&[
        "backup",
        "now",
        "orders",
        "-n",
        n,
        "--reason",
        "before release 2.4",
    ]);
    let name = created
        .split_whitespace()
        .next()
        .and_then(|first| first.strip_prefix("backup.lifeboat.dev/"))
        .unwrap_or_else(|| panic!("{created}"));
    let backup = ns.api::<Backup>().get(name).await.unwrap();
    assert_eq!(backup.spec.policy_ref.name, "orders");
    assert_eq!(backup.spec.trigger, BackupTrigger::Manual);
    assert_eq!(backup.spec.reason.as_deref(), Some("before release 2.4"));
    let missing = kubectl.refused(&["backup", "now", "nope", "-n", n]);
    assert!(missing.contains("BackupPolicy nope in namespace"), "{missing}");

    // A Cutover waiting for a GO: the status screen says so; approve gives it in the caller's own name,
    // which the admission policy checks.
    blue_and_green(&cluster, &ns, operator).await;
    let cutovers: Api<Cutover> = ns.api();
    let spec = json!({"approval": {"required": true, "timeout": "10m"}});
    cutovers
        .create(&PostParams::default(), &cutover("release", spec.clone()))
        .await
        .unwrap();
    wait_for(
        "AwaitingApproval",
        &cutovers,
        "release",
        Duration::from_secs(60),
        operator,
        |c| phase(c) == Some(CutoverPhase::AwaitingApproval),
    )
    .await;
    let screen = kubectl.ok(&["status", "-n", n]);
    println!("kubectl lifeboat status -n {n}:\n{screen}");
    let row = screen
        .lines()
        .find(|l| l.starts_with("release "))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(
        row.contains("AwaitingApproval") && row.contains("awaiting approval"),
        "{screen}"
    );
    let refused = kubectl.refused(&["approve", "release", "-n", n, "--group", "qa"]);
    assert!(
        refused.contains("you (lifeboat-admin) are not in group qa"),
        "{refused}"
    );
    let approved = kubectl.ok(&["approve", "release", "-n", n, "--reason", "CAB-7"]);
    assert!(approved.contains("approved by lifeboat-admin"), "{approved}");
    let done = wait_for(
        "Succeeded",
        &cutovers,
        "release",
        Duration::from_secs(60),
        operator,
        |c| phase(c) == Some(CutoverPhase::Succeeded),
    )
    .await;
    let record = done.status.unwrap().approval.unwrap();
    assert_eq!(
        (record.approved_by.as_str(), record.reason.as_deref()),
        ("lifeboat-admin", Some("CAB-7"))
    );
    assert_eq!(answer(&cluster, &ns).as_deref(), Some("green"));
    let late = kubectl.refused(&["approve", "release", "-n", n]);
    assert!(late.contains("has already ended: Succeeded"), "{late}");
    let final_ = kubectl.refused(&["rollback", "release", "-n", n]);
    assert!(final_.contains("a Succeeded Cutover is final"), "{final_}");

    // Abort before the switch: it ends with traffic untouched.
    let mut back = spec;
    back["from"] = json!({"selector": {"app": "web", "track": "green"}, "deployment": "web-green"});
    back["to"] = json!({"selector": {"app": "web", "track": "blue"}, "deployment": "web-blue"});
    cutovers
        .create(&PostParams::default(), &cutover("back", back))
        .await
        .unwrap();
    wait_for(
        "AwaitingApproval",
        &cutovers,
        "back",
        Duration::from_secs(60),
        operator,
        |c| phase(c) == Some(CutoverPhase::AwaitingApproval),
    )
    .await;
    // Someone follows it with `watch` meanwhile: it tells the steps and exits 1 as the Cutover fails.
    let watching = kubectl
        .command(&["watch", "back", "-n", n])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let nothing = kubectl.refused(&["rollback", "back", "-n", n]);
    assert!(
        nothing.contains("has not switched traffic: there is nothing to roll back"),
        "{nothing}"
    );
    let aborted = kubectl.ok(&["abort", "back", "-n", n]);
    assert!(aborted.contains("nothing was switched"), "{aborted}");
    wait_for(
        "Failed",
        &cutovers,
        "back",
        Duration::from_secs(30),
        operator,
        |c| phase(c) == Some(CutoverPhase::Failed),
    )
    .await;
    let waited = tokio::task::spawn_blocking(move || watching.wait_with_output().unwrap());
    let watched = tokio::time::timeout(Duration::from_secs(30), waited)
        .await
        .expect("watch exits once the Cutover has ended")
        .unwrap();
    let told = String::from_utf8_lossy(&watched.stdout);
    assert_eq!(
        watched.status.code(),
        Some(1),
        "watch exits 1 on a failed Cutover:\n{told}"
    );
    assert!(
        told.lines()
            .any(|l| l.contains("approval") && l.contains("started"))
            && told
                .lines()
                .last()
                .is_some_and(|l| l.ends_with("the Cutover Failed")),
        "{told}"
    );
    assert!(
        String::from_utf8_lossy(&watched.stderr).contains("Cutover back ended Failed"),
        "{watched:?}"
    );
    assert_eq!(answer(&cluster, &ns).as_deref(), Some("green"));

    let completion = kubectl.ok(&["completion", "bash"]);
    assert!(completion.contains("kubectl-lifeboat"), "{completion}");
}

#[tokio::test]
async fn kubectl_lifeboat_drill_now_runs_a_drill_outside_its_schedule_and_counts_it() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let kubectl = Kubectl::new(&cluster);
    let ns = namespace(&cluster, "plugin-drill").await;
    let n = ns.name.as_str();
    backed_up_database(&cluster, &ns, operator).await;
    // Once a year: only the plugin's drill runs during the test.
    let drill: RestoreDrill = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "RestoreDrill", "metadata": {"name": "monthly"},
        "spec": {
            "schedule": "0 0 1 1 *",
            "policyRef": {"name": "hotel-db"},
            "target": {"scratch": scratch_postgres()},
            "verify": {"tables": [{"name": "guests", "minRows": ROWS}]},
            "rto": "5m", "rpo": "1h"
        }
    }))
    .unwrap();
    let drills: Api<RestoreDrill> = ns.api();
    drills.create(&PostParams::default(), &drill).await.unwrap();

    let created = kubectl.ok(&["drill", "now", "monthly", "-n", n]);
    let restore = created
        .split_whitespace()
        .next()
        .and_then(|first| first.strip_prefix("restore.lifeboat.dev/"))
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    // A second one while the first runs would restore into the same scratch target: refused.
    let twice = kubectl.refused(&["drill", "now", "monthly", "-n", n]);
    assert!(
        twice.contains("already running") && twice.contains(&restore),
        "{twice}"
    );
    let missing = kubectl.refused(&["drill", "now", "nope", "-n", n]);
    assert!(missing.contains("RestoreDrill nope in namespace"), "{missing}");

    let last = support::wait::eventually(
        "the drill's result",
        Duration::from_secs(200),
        operator,
        async || {
            let d = drills.get("monthly").await.map_err(|e| e.to_string())?;
            d.status
                .as_ref()
                .and_then(|s| s.last_drill.clone())
                .ok_or_else(|| format!("{:?}", d.status))
        },
    )
    .await;
    assert_eq!(
        last.restore, restore,
        "the plugin's drill is the drill's last one"
    );
    assert_eq!(last.passed, Some(true), "{last:?}");
    let screen = kubectl.ok(&["status", "-n", n]);
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("monthly ") && l.contains("passed")),
        "the status screen shows the drill:\n{screen}"
    );
}
