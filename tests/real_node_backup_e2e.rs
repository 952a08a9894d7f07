//! Lifeboat as a user runs it: installed with the Helm chart, in its own image, on the real node, backing
//! up a PostgreSQL Pod in a namespace that enforces Pod Security `restricted`, into a restic repository on
//! a PersistentVolumeClaim. Every Pod here is a container that containerd started from a built image:
//! nothing runs a command on the host.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use lifeboat::api::backup::BackupPhase;
use lifeboat::api::restore::RestorePhase;
use lifeboat::api::{Backup, BackupPolicy, Restore};
use serde_json::{json, Value};

use support::installed::{on_real_node, InstalledOperator, LIFEBOAT_IMAGE, POSTGRES_IMAGE, REAL_NODE};
use support::plugin::Kubectl;
use support::real_node::{
    backup_ended, create_slow_dump_policy, create_slow_policy, fill_lines, host_claim, postgres,
    postgres_ready, psql, psql_in, restore_ended, restricted_container_as, DB_PASSWORD,
};
use support::wait::eventually;
use support::{cluster_with_crds, run_ok, secret, Cluster, TestNamespace};

const RESTIC_PASSWORD: &str = "real-node-restic";

async fn enforce_restricted(ns: &TestNamespace) {
    let namespaces: Api<Namespace> = Api::all(ns.client.clone());
    let labels = json!({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest"
    }}});
    namespaces
        .patch(&ns.name, &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .expect("label the namespace restricted");
}

/// `kubectl lifeboat` on what a user has after a backup: the snapshots listed by a Job in the image (no
/// local restic, no repository password on the laptop), the backup's log, and a restore into a second
/// database on the same server — with the live database refused unless its name is repeated.
async fn the_plugin_lists_shows_logs_and_restores(
    cluster: &Cluster,
    ns: &TestNamespace,
    operator: &InstalledOperator,
    backup: &lifeboat::api::backup::BackupStatus,
) {
    let kubectl = Kubectl::new(cluster);
    let n = ns.name.as_str();
    let snapshot = backup.snapshot_id.clone().expect("the Backup's snapshot");

    let listed = kubectl.ok(&["snapshots", "guests", "-n", n]);
    println!("kubectl lifeboat snapshots guests:\n{listed}");
    let row = listed
        .lines()
        .find(|l| l.starts_with(&snapshot[..8]))
        .unwrap_or_else(|| panic!("the Backup's snapshot is listed:\n{listed}"));
    assert!(
        row.contains("guests-by-hand") && row.contains("Manual: before moving") && row.contains("KiB"),
        "{listed}"
    );
    assert!(
        listed.lines().all(|l| l.chars().count() <= 100),
        "fits 100 columns:\n{listed}"
    );
    let listed: Value = serde_json::from_str(&kubectl.ok(&["snapshots", "guests", "-n", n, "-o", "json"]))
        .expect("a JSON listing");
    assert_eq!(listed[0]["id"], snapshot.as_str(), "{listed}");
    assert_eq!(listed[0]["complete"], true, "{listed}");
    assert_eq!(
        listed[0]["reason"], "before moving to the real node; as asked",
        "{listed}"
    );
    let leftovers = run_ok(
        "kubectl get jobs",
        cluster.kubectl().args([
            "-n",
            n,
            "get",
            "jobs",
            "-l",
            "app.kubernetes.io/component=snapshots",
            "-o",
            "name",
        ]),
    );
    assert!(
        leftovers.trim().is_empty(),
        "the listing Jobs are deleted once read: {leftovers}"
    );

    let log = kubectl.ok(&["logs", "backup", "guests-by-hand", "-n", n]);
    assert!(
        log.starts_with("==> Job ") && log.contains(r#""mode":"backup""#) && log.contains(r#""ok":true"#),
        "the backup's agent log with its result:\n{log}"
    );
    assert!(
        !log.contains(DB_PASSWORD) && !log.contains(RESTIC_PASSWORD),
        "no secret in the log"
    );

    // The live database is not replaced by accident: without a terminal to ask at, the plugin wants
    // its name repeated, and a different name is refused too.
    let refused = kubectl.refused(&["restore", "guests-by-hand", "--to", "postgres", "-n", n]);
    assert!(
        refused.contains("postgres is the database policy guests backs up")
            && refused.contains("--confirm-overwrite postgres"),
        "{refused}"
    );
    let mistyped = kubectl.refused(&[
        "restore",
        "guests-by-hand",
        "--to",
        "postgres",
        "--confirm-overwrite",
        "postgre",
        "-n",
        n,
    ]);
    assert!(
        mistyped.contains("must repeat the target database's name (postgres)"),
        "{mistyped}"
    );
    let unknown = kubectl.refused(&["restore", "nope", "--to", "copy", "-n", n]);
    assert!(
        unknown.contains("no Backup or BackupPolicy named nope"),
        "{unknown}"
    );

    // Into a second database on the policy's server, followed to its end.
    let restored = kubectl.ok(&[
        "restore",
        "guests-by-hand",
        "--to",
        "guests_copy",
        "--wait",
        "4m",
        "-n",
        n,
    ]);
    println!("kubectl lifeboat restore:\n{restored}");
    assert!(
        restored.contains(&format!("restored snapshot {} into", &snapshot[..8])),
        "{restored}"
    );
    assert_eq!(
        psql_in(
            cluster,
            ns,
            "guests_copy",
            "select string_agg(name, ',' order by name) from guests"
        )
        .trim(),
        "Ada,Grace"
    );
    let restore_name = restored
        .split_whitespace()
        .next()
        .and_then(|w| w.strip_prefix("restore.lifeboat.dev/"))
        .unwrap_or_else(|| panic!("{restored}"));
    let log = kubectl.ok(&["logs", "restore", restore_name, "-n", n]);
    assert!(log.contains(r#""mode":"restore""#), "{log}");

    // A Cutover whose GO/NO-GO check says NO-GO: the check's own words are one command away.
    let placement = on_real_node();
    let cutover: lifeboat::api::Cutover = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Cutover", "metadata": {"name": "release"},
        "spec": {
            "trafficSwitch": {"service": {"name": "web"}},
            "from": {"selector": {"app": "web", "track": "blue"}},
            "to": {"selector": {"app": "web", "track": "green"}},
            "preflight": [{"name": "schema", "job": {
                "image": POSTGRES_IMAGE,
                "command": ["sh", "-c", "echo 'schema is at v41, the release needs v42'; exit 1"],
                "securityContext": restricted_container_as(999),
                "nodeSelector": placement["nodeSelector"], "tolerations": placement["tolerations"]
            }}]
        }
    }))
    .expect("a Cutover");
    ns.api::<lifeboat::api::Cutover>()
        .create(&PostParams::default(), &cutover)
        .await
        .expect("create the Cutover");
    eventually(
        "the Cutover fails its preflight",
        Duration::from_secs(120),
        operator,
        async || {
            let cutover = ns
                .api::<lifeboat::api::Cutover>()
                .get("release")
                .await
                .map_err(|e| e.to_string())?;
            let phase = cutover.status.as_ref().and_then(|s| s.phase);
            (phase == Some(lifeboat::api::cutover::CutoverPhase::Failed))
                .then_some(())
                .ok_or_else(|| format!("{:?}", cutover.status))
        },
    )
    .await;
    let step = kubectl.ok(&["logs", "cutover", "release", "preflight/schema", "-n", n]);
    assert!(step.contains("schema is at v41, the release needs v42"), "{step}");
    let all = kubectl.ok(&["logs", "cutover", "release", "-n", n]);
    assert!(all.contains("schema is at v41"), "{all}");
    let no_job = kubectl.refused(&["logs", "cutover", "release", "switch", "-n", n]);
    assert!(
        no_job.contains("step switch of Cutover release runs no Job; steps with logs: preflight/schema"),
        "{no_job}"
    );
}

/// A backup long enough to watch: a few dozen MB dumped by an agent held to a tenth of a CPU (as a
/// namespace's LimitRange often holds Jobs). While it runs, `kubectl get bk` shows how far it is; when it
/// ends, the column empties and Size says what was written.
async fn a_long_backup_shows_its_progress(
    cluster: &Cluster,
    ns: &TestNamespace,
    operator: &InstalledOperator,
) {
    psql(cluster, ns, "create database big");
    fill_lines(cluster, ns, "big");
    let kubectl = Kubectl::new(cluster);
    let placement = on_real_node();
    create_slow_dump_policy(ns, "big", "big", "0 3 * * *").await;
    let backup: Backup = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup", "metadata": {"name": "big-by-hand"},
        "spec": {"policyRef": {"name": "big"}}
    }))
    .unwrap();
    ns.api::<Backup>()
        .create(&PostParams::default(), &backup)
        .await
        .expect("create the Backup");

    // What a person watching sees: the row's Progress column while the phase is Running.
    let seen = eventually(
        "the Progress column of the running Backup",
        Duration::from_secs(180),
        operator,
        async || {
            let row = run_ok(
                "kubectl get bk",
                cluster
                    .kubectl()
                    .args(["-n", &ns.name, "get", "bk", "big-by-hand", "--no-headers"]),
            );
            let status = ns
                .api::<Backup>()
                .get("big-by-hand")
                .await
                .map_err(|e| e.to_string())?
                .status;
            let phase = status.as_ref().and_then(|s| s.phase);
            if phase != Some(BackupPhase::Running) {
                // Ended before any progress was seen: fail now rather than time out.
                assert!(
                    phase.is_none() || phase == Some(BackupPhase::Pending),
                    "ended unseen: {status:?}"
                );
            }
            let progress = status.and_then(|s| s.progress).ok_or_else(|| row.clone())?;
            // And the plugin's one screen says the policy is backing up, and how far.
            let screen = kubectl.ok(&["status", "-n", &ns.name]);
            let policy_row = screen
                .lines()
                .find(|l| l.starts_with("big "))
                .unwrap_or_default()
                .to_owned();
            (progress.bytes_done > 0
                && row.contains(&progress.summary)
                && policy_row.contains("backing up big-by-hand: ")
                && policy_row.contains("/s"))
            .then_some((row.clone(), progress, policy_row))
            .ok_or(format!("{row}\n{screen}"))
        },
    )
    .await;
    println!("kubectl get bk while it runs: {}", seen.0.trim());
    println!("kubectl lifeboat status while it runs: {}", seen.2);
    assert!(
        seen.1.summary.contains(" at ") && seen.1.summary.ends_with("/s"),
        "{:?}",
        seen.1
    );

    let done = backup_ended(ns, "big-by-hand", Duration::from_secs(300), operator).await;
    assert_eq!(done.phase, Some(BackupPhase::Succeeded), "{:?}", done.message);
    assert!(
        done.progress.is_none(),
        "the column empties once it ended: {done:?}"
    );
    assert!(
        done.size_bytes.unwrap_or_default() as u64 >= seen.1.bytes_done as u64,
        "the final size is at least what was reported on the way: {done:?}"
    );

    // Its restore knows the whole (the dump's size is in the snapshot's tags): `kubectl get rst` says
    // how much of it is loaded. 25m CPU: a load of about 20 s, several of the operator's 10 s reads.
    let restore: Restore = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Restore", "metadata": {"name": "big-into-scratch"},
        "spec": {
            "source": {"backupRef": {"name": "big-by-hand"}},
            "target": {"scratch": {"engine": "postgres", "image": POSTGRES_IMAGE,
                                   "nodeSelector": placement["nodeSelector"],
                                   "tolerations": placement["tolerations"]}},
            "jobTemplate": {"nodeSelector": placement["nodeSelector"], "tolerations": placement["tolerations"],
                            "imagePullPolicy": "Never",
                            "resources": {"limits": {"cpu": "25m", "memory": "256Mi"}}}
        }
    }))
    .expect("a Restore");
    ns.api::<Restore>()
        .create(&PostParams::default(), &restore)
        .await
        .expect("create the Restore");
    let loading = eventually(
        "the Progress column of the running Restore",
        Duration::from_secs(180),
        operator,
        async || {
            let row = run_ok(
                "kubectl get rst",
                cluster
                    .kubectl()
                    .args(["-n", &ns.name, "get", "rst", "big-into-scratch", "--no-headers"]),
            );
            let status = ns
                .api::<Restore>()
                .get("big-into-scratch")
                .await
                .map_err(|e| e.to_string())?
                .status
                .unwrap_or_default();
            assert!(
                !matches!(status.phase, Some(RestorePhase::Succeeded | RestorePhase::Failed)),
                "ended before any progress was seen: {status:?}"
            );
            match status.progress {
                Some(progress) if row.contains(&progress.summary) => Ok((row, progress)),
                _ => Err(row),
            }
        },
    )
    .await;
    println!("kubectl get rst while it runs: {}", loading.0.trim());
    assert_eq!(
        loading.1.total_bytes, done.size_bytes,
        "the whole is the dump's size: {:?}",
        loading.1
    );
    assert!(loading.1.summary.contains("% of "), "{:?}", loading.1);
    let restored = restore_ended(ns, "big-into-scratch", Duration::from_secs(300), operator).await;
    assert_eq!(
        restored.phase,
        Some(RestorePhase::Succeeded),
        "{:?}",
        restored.message
    );
    assert!(
        restored.progress.is_none(),
        "the column empties once it ended: {restored:?}"
    );
}

/// A files backup knows the whole from restic's scan: its Progress says how much of it was read.
async fn a_files_backup_shows_how_much_of_the_whole_it_read(
    cluster: &Cluster,
    ns: &TestNamespace,
    operator: &InstalledOperator,
) {
    const FILES: u64 = 80;
    const FILE_BYTES: u64 = 2 * 1024 * 1024;
    let uploads = host_claim(cluster, ns, "uploads").await;
    // Incompressible (xorshift), so restic's compression cannot make the read short.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for index in 0..FILES {
        let bytes: Vec<u8> = (0..FILE_BYTES / 8)
            .flat_map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()
            })
            .collect();
        std::fs::write(uploads.join(format!("scan-{index}.bin")), bytes).expect("write an upload");
    }
    // 50m CPU, about 5 MiB/s: a run of about 30 s, several of the operator's 10 s reads.
    let source = json!({"files": {"persistentVolumeClaim": "uploads"}});
    create_slow_policy(ns, "uploads", source, "0 3 * * *").await;
    let backup: Backup = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup", "metadata": {"name": "uploads-by-hand"},
        "spec": {"policyRef": {"name": "uploads"}}
    }))
    .unwrap();
    ns.api::<Backup>()
        .create(&PostParams::default(), &backup)
        .await
        .expect("create the files Backup");

    let whole = FILES * FILE_BYTES;
    let progress = eventually(
        "the files Backup's progress with its total",
        Duration::from_secs(180),
        operator,
        async || {
            let status = ns
                .api::<Backup>()
                .get("uploads-by-hand")
                .await
                .map_err(|e| e.to_string())?
                .status
                .unwrap_or_default();
            assert!(
                !matches!(status.phase, Some(BackupPhase::Succeeded | BackupPhase::Failed)),
                "ended before any progress was seen: {status:?}"
            );
            let seen = format!("{status:?}");
            status.progress.filter(|p| p.total_bytes.is_some()).ok_or(seen)
        },
    )
    .await;
    println!("files backup progress: {}", progress.summary);
    assert_eq!(
        progress.total_bytes,
        Some(whole as i64),
        "the total is what restic's scan found: {progress:?}"
    );
    assert!(
        progress.summary.contains("% of 160.0 MiB at "),
        "the column reads like '40% of 160.0 MiB at 4.1 MiB/s': {progress:?}"
    );
    let done = backup_ended(ns, "uploads-by-hand", Duration::from_secs(300), operator).await;
    assert_eq!(done.phase, Some(BackupPhase::Succeeded), "{:?}", done.message);
    assert_eq!(done.size_bytes, Some(whole as i64), "{done:?}");
    assert!(
        done.progress.is_none(),
        "the column empties once it ended: {done:?}"
    );
}

#[tokio::test]
async fn the_chart_installed_operator_backs_up_a_postgres_pod_under_pod_security_restricted() {
    let cluster = cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let operator_pod = operator.pod();
    assert_eq!(
        operator_pod["spec"]["nodeName"], REAL_NODE,
        "the operator runs on the real node"
    );
    assert_eq!(operator_pod["spec"]["containers"][0]["image"], LIFEBOAT_IMAGE);

    let ns = cluster.namespace("real-backup").await.expect("namespace");
    enforce_restricted(&ns).await;
    secret(&ns, "db", "password", DB_PASSWORD).await;
    secret(&ns, "restic", "password", RESTIC_PASSWORD).await;
    postgres(&ns).await;
    let repository_dir = host_claim(&cluster, &ns, "backups").await;
    postgres_ready(&ns, operator).await;
    psql(
        &cluster,
        &ns,
        "create table guests (name text); insert into guests values ('Ada'), ('Grace');",
    );

    let placement = on_real_node();
    let policy: BackupPolicy = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": "guests"},
        "spec": {
            "schedule": "0 3 * * *",
            "source": {"postgres": {"host": "db", "database": "postgres", "user": "postgres",
                                     "passwordSecretRef": {"name": "db", "key": "password"}}},
            "repository": {"restic": {"repository": "/repository/guests", "persistentVolumeClaim": "backups",
                                       "passwordSecretRef": {"name": "restic", "key": "password"},
                                       "initialize": true}},
            "jobTemplate": {"nodeSelector": placement["nodeSelector"], "tolerations": placement["tolerations"],
                            "imagePullPolicy": "Never"}
        }
    }))
    .expect("a BackupPolicy");
    ns.api::<BackupPolicy>()
        .create(&PostParams::default(), &policy)
        .await
        .expect("create the BackupPolicy");
    let backup: Backup = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup",
        "metadata": {"name": "guests-by-hand"},
        "spec": {"policyRef": {"name": "guests"}, "reason": "before moving to the real node, as asked"}
    }))
    .expect("a Backup");
    ns.api::<Backup>()
        .create(&PostParams::default(), &backup)
        .await
        .expect("create the Backup");

    let done = backup_ended(&ns, "guests-by-hand", Duration::from_secs(180), operator).await;
    assert_eq!(
        done.phase,
        Some(BackupPhase::Succeeded),
        "the Backup succeeds: {:?}",
        done.message
    );

    // `kubectl get bk` shows the size as people read it.
    let listed = run_ok(
        "kubectl get bk",
        cluster
            .kubectl()
            .args(["-n", &ns.name, "get", "bk", "guests-by-hand"]),
    );
    let row: Vec<&str> = listed
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert!(
        row.windows(2)
            .any(|w| w[0].parse::<f64>().is_ok() && w[1] == "KiB"),
        "the SIZE column reads like '3.1 KiB':\n{listed}"
    );

    // The agent ran in the lifeboat image on the real node, hardened by default (the namespace would
    // have refused its Pod otherwise).
    let agents = ns
        .api::<Pod>()
        .list(&kube::api::ListParams::default().labels("lifeboat.dev/backup=guests-by-hand"))
        .await
        .expect("list the agent Pods");
    let agent = agents.items.first().expect("the backup's agent Pod");
    let spec = agent.spec.clone().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(REAL_NODE));
    assert_eq!(spec.containers[0].image.as_deref(), Some(LIFEBOAT_IMAGE));
    let hardened = spec.containers[0].security_context.clone().unwrap();
    assert_eq!(hardened.read_only_root_filesystem, Some(true));

    // The snapshot is in the repository on the volume, and it holds the rows: read with plain restic on
    // the host, as on a disaster day.
    let dump = run_ok(
        "restic dump of the snapshot",
        std::process::Command::new(support::agent::restic_bin())
            .env("RESTIC_REPOSITORY", repository_dir.join("guests"))
            .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
            .args([
                "dump",
                "--tag",
                "backup=guests-by-hand",
                "latest",
                "/postgres.pgdump",
            ])
            .arg("--quiet"),
    );
    assert!(dump.starts_with("PGDMP"), "a pg_dump custom-format archive");
    let snapshots = run_ok(
        "restic snapshots",
        std::process::Command::new(support::agent::restic_bin())
            .env("RESTIC_REPOSITORY", repository_dir.join("guests"))
            .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
            .args(["snapshots", "--json", "--tag", "backup=guests-by-hand"]),
    );
    let snapshots: Value = serde_json::from_str(&snapshots).expect("restic's JSON");
    let tags = &snapshots[0]["tags"];
    for tag in [
        "trigger=Manual",
        "reason=before_moving_to_the_real_node;_as_asked",
    ] {
        assert!(
            tags.as_array().is_some_and(|t| t.iter().any(|x| x == tag)),
            "the snapshot says why it was made ({tag}): {tags}"
        );
    }
    assert!(dump.contains("guests"), "the dump holds the guests table");

    the_plugin_lists_shows_logs_and_restores(&cluster, &ns, operator, &done).await;
    a_long_backup_shows_its_progress(&cluster, &ns, operator).await;
    a_files_backup_shows_how_much_of_the_whole_it_read(&cluster, &ns, operator).await;

    // Restored into a scratch PostgreSQL 15 Pod by the image's newer pg_restore, verified: the path
    // every drill of an older production server takes (pg_restore 17 speaks settings PG15 rejects).
    let restore: Restore = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Restore",
        "metadata": {"name": "guests-into-scratch"},
        "spec": {
            "source": {"backupRef": {"name": "guests-by-hand"}},
            "target": {"scratch": {"engine": "postgres", "image": POSTGRES_IMAGE,
                                   "nodeSelector": placement["nodeSelector"],
                                   "tolerations": placement["tolerations"]}},
            "verify": {"tables": [{"name": "guests", "minRows": 2}],
                       "queries": [{"name": "grace", "sql": "select count(*) = 1 from guests where name = 'Grace'"}]},
            "jobTemplate": {"nodeSelector": placement["nodeSelector"], "tolerations": placement["tolerations"],
                            "imagePullPolicy": "Never"}
        }
    }))
    .expect("a Restore");
    ns.api::<Restore>()
        .create(&PostParams::default(), &restore)
        .await
        .expect("create the Restore");
    let restored = restore_ended(&ns, "guests-into-scratch", Duration::from_secs(240), operator).await;
    assert_eq!(
        restored.phase,
        Some(RestorePhase::Succeeded),
        "the Restore into PostgreSQL 15 succeeds: {:?}",
        restored.message
    );
    let verification = restored.verification.expect("the Restore's verification");
    assert!(verification.passed, "{verification:?}");
    assert_eq!(verification.checks.len(), 2, "both checks ran: {verification:?}");

    // A policy naming an image the node does not have: its Backup fails naming the image (the kubelet
    // reports ErrImageNeverPull), it does not hang, and nothing is added to the repository.
    const ABSENT_IMAGE: &str = "lifeboat.local/not-built:0.0.0";
    let mut absent: Value = serde_json::to_value(&policy).expect("the policy as JSON");
    absent["metadata"] = json!({"name": "guests-absent-image"});
    absent["spec"]["jobTemplate"]["image"] = json!(ABSENT_IMAGE);
    ns.api::<BackupPolicy>()
        .create(&PostParams::default(), &serde_json::from_value(absent).unwrap())
        .await
        .expect("create the policy with an absent image");
    let backup: Backup = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup",
        "metadata": {"name": "absent-image"},
        "spec": {"policyRef": {"name": "guests-absent-image"}}
    }))
    .unwrap();
    ns.api::<Backup>()
        .create(&PostParams::default(), &backup)
        .await
        .expect("create the Backup");
    let failed = backup_ended(&ns, "absent-image", Duration::from_secs(90), operator).await;
    assert_eq!(failed.phase, Some(BackupPhase::Failed), "{failed:?}");
    let message = failed.message.clone().unwrap_or_default();
    assert!(
        message.contains(ABSENT_IMAGE) && message.contains("ErrImageNeverPull"),
        "the failure names the image and why: {message}"
    );

    // Clean-up of the cluster-scoped volume (the namespace goes when `ns` drops).
    let client = cluster.client().await.expect("client");
    let _ = Api::<PersistentVolume>::all(client)
        .delete(&format!("{}-backups", ns.name), &Default::default())
        .await;
}
