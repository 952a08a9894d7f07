//! End to end, the disaster-recovery runbook's monthly drill done by the operator on a schedule: restore
//! the policy's newest backup into a scratch PostgreSQL started as a Pod from the PostgreSQL image on the
//! real node, verify it, and record the real RTO and RPO against the targets, in status, conditions,
//! Events and metrics. The operator is the chart's, in its image. Drills run on "* * * * *" so the tests
//! run in parallel and wait for the same minute's slot.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::Api;
use lifeboat::api::restore::RestorePhase;
use lifeboat::api::restore_drill::DrillResult;
use lifeboat::api::{Restore, RestoreDrill};
use serde_json::{json, Value};
use support::conditions::condition;
use support::installed::{InstalledOperator, POSTGRES_IMAGE};
use support::node_restore::{backed_up_database, postgres_database, scratch_postgres};
use support::real_node::{create_database, namespace, psql, psql_in, restricted_container_as};
use support::restore::ROWS;
use support::wait::eventually;

fn drill(name: &str, extra: Value) -> RestoreDrill {
    let mut spec = json!({
        "schedule": "* * * * *",
        "policyRef": {"name": "hotel-db"},
        "target": {"scratch": scratch_postgres()},
        "verify": {"minTables": 2, "tables": [{"name": "guests", "minRows": ROWS}, {"name": "rooms", "minRows": 12}]},
        "rto": "5m",
        "rpo": "1h",
        "historyLimit": 2
    });
    for (key, value) in extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    serde_json::from_value(json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "RestoreDrill", "metadata": {"name": name}, "spec": spec}))
        .unwrap()
}

/// The first finished drill (the next minute's slot plus the drill itself).
async fn first_drill(
    api: &Api<RestoreDrill>,
    name: &str,
    operator: &InstalledOperator,
) -> (RestoreDrill, DrillResult) {
    eventually(
        &format!("a finished drill of {name}"),
        Duration::from_secs(240),
        operator,
        || async {
            let d = api.get(name).await.map_err(|e| e.to_string())?;
            match d.status.as_ref().and_then(|s| s.last_drill.clone()) {
                Some(last) => Ok((d, last)),
                None => Err(format!("{:?}", d.status)),
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_scheduled_drill_restores_into_a_scratch_postgres_and_reports_its_rto_and_rpo() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "drill-ok").await;
    let source = backed_up_database(&cluster, &ns, operator).await;
    let drills: Api<RestoreDrill> = ns.api();
    // The runbook's smoke test after the restore: the application's view of the restored data.
    // The namespace enforces Pod Security `restricted`: the step says it runs as non-root, as a user's
    // would there (Lifeboat cannot know what user an application image runs as). The PostgreSQL image
    // has psql and dash, and no coreutils: the script uses the shell's own commands.
    let smoke = json!({"image": POSTGRES_IMAGE, "securityContext": restricted_container_as(65532),
        "command": ["dash", "-c",
        "n=$(psql -XAtc 'select count(*) from guests') && test \"$n\" -ge 500 && echo \"smoke ok: $n guests\" > /dev/termination-log"]});
    drills
        .create(
            &PostParams::default(),
            &drill("hotel-db-drill", json!({"smoke": smoke})),
        )
        .await
        .unwrap();

    let (drill_now, last) = first_drill(&drills, "hotel-db-drill", operator).await;
    let status = drill_now.status.clone().unwrap();
    assert_eq!(last.passed, Some(true), "{last:?}");
    assert!(last.failed_checks.is_empty());
    assert_eq!(
        last.snapshot_id,
        source.backup.status.as_ref().unwrap().snapshot_id
    );
    let rto =
        lifeboat::duration::parse_duration(last.measured_rto.as_deref().expect("measured RTO")).unwrap();
    let rpo =
        lifeboat::duration::parse_duration(last.measured_rpo.as_deref().expect("measured RPO")).unwrap();
    assert!(rto < Duration::from_secs(120), "RTO {rto:?}");
    assert!(
        rpo < Duration::from_secs(300),
        "RPO {rpo:?}: the backup was made just before"
    );
    println!(
        "measured: RTO {:?}, RPO {:?} ({last:?})",
        last.measured_rto, last.measured_rpo
    );
    for type_ in ["Ready", "RTOMet", "RPOMet"] {
        assert_eq!(
            condition(&status.conditions.0, type_).map(|c| c.0),
            Some("True".into()),
            "{type_}: {:?}",
            status.conditions
        );
    }
    assert!(status.next_schedule_time.is_some() && status.last_schedule_time.is_some());
    assert_eq!(
        status.history.first().map(|h| h.restore.clone()),
        Some(last.restore.clone())
    );

    // The drill's Restore restored into a scratch server that is gone now, and verified every table.
    let restores: Api<Restore> = ns.api();
    let restore = restores.get(&last.restore).await.unwrap();
    assert!(
        last.restore.starts_with("hotel-db-drill-"),
        "deterministic slot name: {}",
        last.restore
    );
    let restore_status = restore.status.clone().unwrap();
    assert_eq!(restore_status.phase, Some(RestorePhase::Succeeded));
    assert_eq!(
        restore_status.verification.as_ref().map(|v| v.checks.len()),
        Some(3),
        "{restore_status:?}"
    );
    let message = restore_status.message.clone().unwrap_or_default();
    assert!(
        message.contains("smoke test passed (smoke ok: 500 guests)"),
        "{message}"
    );
    let scratch = eventually(
        "the scratch server to be removed",
        Duration::from_secs(20),
        operator,
        || async {
            let r = restores.get(&last.restore).await.map_err(|e| e.to_string())?;
            let scratch = r.status.and_then(|s| s.scratch).ok_or("no scratch status")?;
            if scratch.removed {
                Ok(scratch)
            } else {
                Err(format!("{scratch:?}"))
            }
        },
    )
    .await;
    let pods: Api<Pod> = ns.api();
    assert!(pods
        .get_opt(&scratch.pod)
        .await
        .unwrap()
        .is_none_or(|p| p.metadata.deletion_timestamp.is_some()));

    // kubectl, Events and metrics tell the same story.
    let table = support::run_ok(
        "kubectl get drill",
        cluster.kubectl().args(["get", "drill", "-n", &ns.name]),
    );
    assert!(
        table.lines().nth(1).is_some_and(|row| row.contains("true")),
        "{table}"
    );
    let events = support::restore::events(&cluster, &ns.name);
    for reason in [
        "DrillStarted",
        "Provisioning",
        "Started",
        "SmokeStarted",
        "Succeeded",
        "ScratchRemoved",
        "DrillPassed",
    ] {
        assert!(
            events.lines().any(|l| l.starts_with(reason)),
            "no {reason} Event:\n{events}"
        );
    }
    let metrics = operator.metrics();
    for name in [
        "lifeboat_drill_last_rto_seconds",
        "lifeboat_drill_last_rpo_seconds",
        "lifeboat_drill_passed",
    ] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(&ns.name))
            .unwrap_or_else(|| panic!("no {name} for {}:\n{metrics}", ns.name));
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        match name {
            "lifeboat_drill_passed" => assert_eq!(value, 1.0, "{line}"),
            "lifeboat_drill_last_rto_seconds" => {
                assert!((value - rto.as_secs_f64()).abs() < 0.01, "{line} vs {rto:?}")
            }
            _ => assert!((value - rpo.as_secs_f64()).abs() < 0.01, "{line} vs {rpo:?}"),
        }
    }
}

#[tokio::test]
async fn a_drill_whose_newest_backup_is_older_than_the_rpo_reports_rpo_met_false() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "drill-rpo").await;
    let _source = backed_up_database(&cluster, &ns, operator).await;
    // The next drill slot is at least a second away, so the backup is older than 1s when it starts.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let drills: Api<RestoreDrill> = ns.api();
    drills
        .create(&PostParams::default(), &drill("strict", json!({"rpo": "1s"})))
        .await
        .unwrap();

    let (drill_now, last) = first_drill(&drills, "strict", operator).await;
    let conditions = &drill_now.status.as_ref().unwrap().conditions.0;
    let rpo_met = condition(conditions, "RPOMet").expect("RPOMet");
    assert_eq!(
        (rpo_met.0.as_str(), rpo_met.1.as_str()),
        ("False", "RPOExceeded"),
        "{rpo_met:?}"
    );
    assert!(rpo_met.2.contains("over the RPO 1s"), "{}", rpo_met.2);
    // The data restored and verified fine: it is the recovery point that misses the target.
    assert_eq!(condition(conditions, "RTOMet").map(|c| c.0), Some("True".into()));
    assert_eq!(last.passed, Some(false));
    assert_eq!(last.rpo_met, Some(false));
    assert!(last.failed_checks.is_empty(), "{last:?}");
    assert_eq!(condition(conditions, "Ready").map(|c| c.0), Some("False".into()));
    let events = support::restore::events(&cluster, &ns.name);
    assert!(
        events
            .lines()
            .any(|l| l.starts_with("DrillFailed") && l.contains("over RPO")),
        "{events}"
    );
}

#[tokio::test]
async fn a_drill_of_a_corrupted_snapshot_fails_with_the_repositorys_error_not_a_pass() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "drill-corrupt").await;
    let source = backed_up_database(&cluster, &ns, operator).await;
    // Flip bytes in the middle of every pack file: the dump's data (not just an index) is damaged.
    let data = source.repository.join("data");
    let mut flipped = 0;
    for entry in walk(&data) {
        let mut bytes = std::fs::read(&entry).unwrap();
        if bytes.len() < 64 {
            continue;
        }
        let middle = bytes.len() / 2;
        for byte in &mut bytes[middle..middle + 16] {
            *byte ^= 0xff;
        }
        let mut permissions = std::fs::metadata(&entry).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        permissions.set_readonly(false);
        std::fs::set_permissions(&entry, permissions).unwrap();
        std::fs::write(&entry, bytes).unwrap();
        flipped += 1;
    }
    assert!(flipped > 0, "no pack files under {}", data.display());

    let drills: Api<RestoreDrill> = ns.api();
    drills
        .create(&PostParams::default(), &drill("corrupt", json!({})))
        .await
        .unwrap();
    let (drill_now, last) = first_drill(&drills, "corrupt", operator).await;
    assert_eq!(last.passed, Some(false), "{last:?}");
    let restores: Api<Restore> = ns.api();
    let restore = restores.get(&last.restore).await.unwrap().status.unwrap();
    assert_eq!(restore.phase, Some(RestorePhase::Failed));
    let reason = restore.reason.clone().unwrap_or_default();
    assert!(
        [
            "RepositoryCorrupt",
            "ResticFailed",
            "ChecksumMismatch",
            "LoadFailed"
        ]
        .contains(&reason.as_str()),
        "a repository error, got {reason}: {:?}",
        restore.message
    );
    println!("corrupted snapshot: {reason}: {:?}", restore.message);
    let conditions = &drill_now.status.as_ref().unwrap().conditions.0;
    assert_eq!(condition(conditions, "Ready").map(|c| c.0), Some("False".into()));
    assert_eq!(
        condition(conditions, "RTOMet").map(|c| c.1),
        Some("RestoreFailed".into())
    );
    let metrics = operator.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("lifeboat_drill_passed") && l.contains(&ns.name) && l.ends_with(" 0")),
        "drill_passed 0 for {}:\n{metrics}",
        ns.name
    );
}

#[tokio::test]
async fn a_drill_into_a_verify_database_on_the_existing_server_replaces_it_and_drops_it_afterwards() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "drill-verify").await;
    let _source = backed_up_database(&cluster, &ns, operator).await;
    // What an earlier, interrupted drill left behind: the drill owns verify_ databases and replaces them.
    let scratch_db = format!("verify_{}", ns.name.replace('-', "_"));
    create_database(&cluster, &ns, &scratch_db);
    psql_in(&cluster, &ns, &scratch_db, "create table leftover(id int)");
    let target = postgres_database(&scratch_db);
    let drills: Api<RestoreDrill> = ns.api();
    drills
        .create(
            &PostParams::default(),
            &drill("crm-style", json!({"target": target})),
        )
        .await
        .unwrap();

    let (_, last) = first_drill(&drills, "crm-style", operator).await;
    assert_eq!(last.passed, Some(true), "{last:?}");
    let restores: Api<Restore> = ns.api();
    let dropped = eventually(
        "the verify_ database to be dropped",
        Duration::from_secs(30),
        operator,
        || async {
            let r = restores.get(&last.restore).await.map_err(|e| e.to_string())?;
            let status = r.status.unwrap_or_default();
            status.target_dropped.ok_or_else(|| format!("{status:?}"))
        },
    )
    .await;
    assert!(dropped);
    let exists = psql(
        &cluster,
        &ns,
        &format!("select count(*) from pg_database where datname = '{scratch_db}'"),
    );
    assert_eq!(exists.trim(), "0", "{scratch_db} is gone");
    let events = support::restore::events(&cluster, &ns.name);
    assert!(events.lines().any(|l| l.starts_with("TargetDropped")), "{events}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
