//! A kubelet or containerd restart in the middle of a backup, as a node upgrade or a crash causes: the
//! Backup still ends, Succeeded or Failed, never hanging in Running, and the policy's next slot runs and
//! succeeds. The daemons are restarted by hack/node-restart.sh with the command line the node started
//! them with. (Its own test binary: it restarts the node everything else runs on.)

// lifeboat-test: alone (restarts the kubelet and containerd; hack/run-tests.sh)

mod support;

use std::time::Duration;

use kube::api::ListParams;
use lifeboat::api::backup::BackupPhase;
use lifeboat::api::Backup;

use support::installed::{InstalledOperator, REAL_NODE};
use support::real_node::{
    backup_ended, create_slow_dump_policy, fill_lines, host_claim, postgres, postgres_ready, DB_PASSWORD,
};
use support::wait::eventually;
use support::{cluster_with_crds, repo_path, run_ok, secret, Cluster, TestNamespace};

async fn backups(ns: &TestNamespace) -> Result<Vec<Backup>, String> {
    let list = ns.api::<Backup>().list(&ListParams::default()).await;
    list.map(|l| l.items).map_err(|e| e.to_string())
}

/// A Backup of the policy whose agent is mid-dump: Running, with progress reported from its Pod.
async fn a_backup_mid_dump(ns: &TestNamespace, operator: &InstalledOperator) -> String {
    eventually(
        "a Backup with its dump under way",
        Duration::from_secs(240),
        operator,
        async || {
            let backups = backups(ns).await?;
            backups
                .iter()
                .find(|b| {
                    b.status.as_ref().is_some_and(|s| {
                        s.phase == Some(BackupPhase::Running)
                            && s.progress.as_ref().is_some_and(|p| p.bytes_done > 0)
                    })
                })
                .and_then(|b| b.metadata.name.clone())
                .ok_or_else(|| format!("{} Backups, none mid-dump", backups.len()))
        },
    )
    .await
}

fn restart(daemon: &str) -> String {
    run_ok(
        &format!("hack/node-restart.sh {daemon}"),
        std::process::Command::new(repo_path("hack/node-restart.sh")).arg(daemon),
    )
}

fn node_ready(cluster: &Cluster) {
    run_ok(
        "kubectl wait node Ready",
        cluster.kubectl().args([
            "wait",
            "--for=condition=Ready",
            &format!("node/{REAL_NODE}"),
            "--timeout=120s",
        ]),
    );
}

#[tokio::test]
async fn a_backup_ends_through_kubelet_and_containerd_restarts_and_the_next_slot_runs() {
    let cluster = cluster_with_crds();
    let operator = InstalledOperator::helm(&cluster, "lifeboat-restart");
    let ns = cluster.namespace("node-restart").await.expect("namespace");
    secret(&ns, "db", "password", DB_PASSWORD).await;
    secret(&ns, "restic", "password", "node-restart-restic").await;
    postgres(&ns).await;
    host_claim(&cluster, &ns, "backups").await;
    postgres_ready(&ns, &operator).await;
    fill_lines(&cluster, &ns, "postgres");
    create_slow_dump_policy(&ns, "lines", "postgres", "* * * * *").await;

    let mut outcomes = Vec::new();
    for daemon in ["kubelet", "containerd"] {
        let interrupted = a_backup_mid_dump(&ns, &operator).await;
        let restarted = restart(daemon);
        assert!(
            restarted.contains(&format!("{daemon} restarted (was pid ")),
            "{restarted}"
        );
        node_ready(&cluster);
        let ended = backup_ended(&ns, &interrupted, Duration::from_secs(300), &operator).await;
        println!(
            "{daemon} restarted during Backup {interrupted}: {:?} {}",
            ended.phase,
            ended.message.clone().unwrap_or_default()
        );
        outcomes.push((daemon, interrupted, ended));
    }

    // The slots after the restarts: a Backup the schedule made after the last interrupted one ends
    // Succeeded.
    let last_interrupted = outcomes.last().map(|o| o.1.clone()).unwrap_or_default();
    let after = eventually(
        "a later slot's Backup Succeeded",
        Duration::from_secs(300),
        &operator,
        async || {
            let backups = backups(&ns).await?;
            // (Gone, e.g. a Failed one past the history limit: no slot can be told "later" then.)
            let interrupted_created = backups
                .iter()
                .find(|b| b.metadata.name.as_deref() == Some(last_interrupted.as_str()))
                .and_then(|b| b.metadata.creation_timestamp.clone())
                .ok_or_else(|| format!("Backup {last_interrupted} is gone"))?;
            backups
                .iter()
                .find(|b| {
                    b.metadata.creation_timestamp.as_ref() > Some(&interrupted_created)
                        && b.status
                            .as_ref()
                            .is_some_and(|s| s.phase == Some(BackupPhase::Succeeded))
                })
                .and_then(|b| b.metadata.name.clone())
                .ok_or_else(|| {
                    backups
                        .iter()
                        .map(|b| {
                            format!(
                                "{:?} {:?}",
                                b.metadata.name,
                                b.status.as_ref().and_then(|s| s.phase)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
        },
    )
    .await;
    println!("the next slot ran: Backup {after} Succeeded");
    for (daemon, name, ended) in &outcomes {
        assert!(
            matches!(ended.phase, Some(BackupPhase::Succeeded | BackupPhase::Failed)),
            "{daemon} restart: Backup {name} ended: {ended:?}"
        );
        if ended.phase == Some(BackupPhase::Failed) {
            assert!(
                ended.message.as_deref().is_some_and(|m| !m.is_empty()),
                "{daemon} restart: a failed Backup says why: {ended:?}"
            );
        }
    }
}
