//! Kill the operator at every step, lose nothing: `LIFEBOAT_CRASH_AT=after:<step>` makes the operator
//! die (exit 137, Lease held, as SIGKILL would) right after a step acted and before its result was
//! recorded — the riskiest instant — and the next leader must finish each run exactly once: one
//! Backup, one migration, one switch and one switch back, one stop of the writers, one Restore; the
//! same for a Restore killed after creating its Job and a drill killed after creating its Restore.
//! (Its own test binary: the tests own one operator and take turns with it.)

// lifeboat-test: alone (crashes the operator at every step; hack/run-tests.sh)

mod support;

use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::Api;
use lifeboat::api::cutover::{ActiveSide, CutoverPhase, StepPhase};
use lifeboat::api::restore::RestorePhase;
use lifeboat::api::{Backup, Cutover, Restore, RestoreDrill};
use serde_json::{json, Value};
use support::cutover::{approver, cutover, ended_as, step_names, step_security};
use support::installed::{InstalledOperator, LIFEBOAT_IMAGE};
use support::node_restore::{backed_up_database, hotel_policy, postgres_database, scratch_postgres};
use support::node_web::{answers_soon, blue_and_green, set_fault};
use support::real_node::{create_database, namespace, psql_in, table_content, DB_PASSWORD};
use support::restore::ROWS;
use support::wait::eventually;

/// The tests take turns with the binary's one chart-installed operator while they crash and restart it.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn count<K>(api: &Api<K>, labels: &str) -> usize
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default().labels(labels))
        .await
        .unwrap()
        .items
        .len()
}

/// Every change of Service `name`'s selector from now on, as a watch delivers them (a write of the
/// same value is no change and no event; a repeated switch would be two more).
async fn watch_selector_changes(services: Api<Service>, name: &str) -> Arc<Mutex<Vec<Value>>> {
    let changes = Arc::new(Mutex::new(Vec::new()));
    let mut version = services
        .get(name)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let params = WatchParams::default().fields(&format!("metadata.name={name}"));
    let seen = changes.clone();
    tokio::spawn(async move {
        // A watch ends after a few minutes: resume from the last version seen, missing nothing.
        loop {
            let Ok(stream) = services.watch(&params, &version).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let mut stream = stream.boxed();
            while let Ok(Some(event)) = stream.try_next().await {
                match event {
                    WatchEvent::Modified(service) => {
                        version = service.metadata.resource_version.clone().unwrap_or(version);
                        let selector = serde_json::to_value(service.spec.and_then(|s| s.selector)).unwrap();
                        let mut seen = seen.lock().unwrap();
                        if seen.last() != Some(&selector) {
                            seen.push(selector);
                        }
                    }
                    WatchEvent::Bookmark(bookmark) => version = bookmark.metadata.resource_version,
                    _ => {}
                }
            }
        }
    });
    changes
}

#[tokio::test]
async fn a_cutover_killed_after_every_step_and_rollback_step_does_each_exactly_once() {
    let cluster = support::cluster_with_crds();
    let _turn = TURN.lock().await;
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "crash-steps").await;
    blue_and_green(&cluster, &ns, operator).await;
    let (database, _repository) = hotel_policy(&cluster, &ns, operator).await;
    let bob = approver(&cluster, &ns, "bob", &[]).await;
    let health = format!("http://web.{}.svc/health", ns.name);
    let services: Api<Service> = ns.api();
    let selector_changes = watch_selector_changes(services.clone(), "web").await;

    let migrate = format!(
        "psql -X -h db -U postgres -d {database} -v ON_ERROR_STOP=1 -c \"delete from guests where id > 150\""
    );
    let spec = json!({
        "preflight": [{"name": "ready", "job": {"securityContext": step_security(), "image": LIFEBOAT_IMAGE,
                                                "command": ["sh", "-c", "echo go"]}}],
        "backup": {"policyRef": {"name": "hotel-db"}},
        "migration": {"job": {"securityContext": step_security(), "image": LIFEBOAT_IMAGE, "command": ["sh", "-c", migrate],
                              "env": [{"name": "PGPASSWORD", "value": DB_PASSWORD}]}},
        "approval": {"required": true},
        "verify": [{"name": "health", "http": {"url": health.clone()}}],
        "stabilization": {"duration": "30s", "interval": "1s", "failureThreshold": 2,
                          "http": [{"name": "healthz", "url": health}]},
        "rollback": {"automatic": true, "restoreDatabase": true,
                     "quiesce": {"job": {"securityContext": step_security(), "image": LIFEBOAT_IMAGE,
                                         "command": ["sh", "-c", "echo maintenance on"]}},
                     "job": {"securityContext": step_security(), "image": LIFEBOAT_IMAGE,
                             "command": ["sh", "-c", "echo caches flushed"]}}
    });
    // `after:` dies right after a step's first evaluation acted (created its Job or Backup, scaled,
    // patched); `done:` dies when a step has finished but before that is recorded.
    let points = [
        "after:preflight",
        "after:backup",
        "done:backup",
        "after:migration",
        "after:readiness",
        "after:approval",
        "after:switch",
        "after:verify",
        "after:stabilization",
        "after:rollback/stop-writers",
        "done:rollback/stop-writers",
        "after:rollback/restore-database",
        "done:rollback/restore-database",
        "after:rollback/job",
        "after:rollback/resume",
        "after:rollback/switch-back",
        "after:rollback/verify-from",
    ];
    operator.crash_at(points[0]);
    let cutovers: Api<Cutover> = ns.api();
    cutovers
        .create(&PostParams::default(), &cutover("release-5-0", spec))
        .await
        .unwrap();
    for (i, point) in points.iter().enumerate() {
        operator.wait_for_crash_at(point, Duration::from_secs(240));
        match *point {
            // The GO, given while no operator runs: the next one finds it.
            "after:approval" => {
                let go = json!({"spec": {"approval": {"required": true, "approvedBy": "bob"}}});
                bob.patch("release-5-0", &PatchParams::default(), &Patch::Merge(&go))
                    .await
                    .unwrap();
            }
            // Green turns bad during the watch window: the rollback follows.
            "after:stabilization" => set_fault(&cluster, &ns, "web-green", "unhealthy"),
            _ => {}
        }
        match points.get(i + 1) {
            Some(next) => operator.crash_at(next),
            None => operator.stop_crashing(),
        }
    }
    let done = ended_as(
        &cutovers,
        "release-5-0",
        CutoverPhase::RolledBack,
        Duration::from_secs(120),
        operator,
    )
    .await;
    let status = done.status.clone().unwrap();
    let ok = |name: &str| (name.to_owned(), StepPhase::Succeeded);
    assert_eq!(
        step_names(&done),
        [
            ok("preflight/ready"),
            ok("backup"),
            ok("migration"),
            ok("readiness"),
            ok("approval"),
            ok("switch"),
            ok("verify/health"),
            ("stabilization".to_owned(), StepPhase::Failed),
            ok("rollback/stop-writers"),
            ok("rollback/restore-database"),
            ok("rollback/job"),
            ok("rollback/resume"),
            ok("rollback/switch-back"),
            ok("rollback/verify-from"),
        ],
        "every step once, in order, as it ended"
    );
    assert_eq!(status.active, Some(ActiveSide::From));
    assert_eq!(status.approval.as_ref().unwrap().approved_by, "bob");

    // No repeated side effect.
    let backups: Api<Backup> = ns.api();
    assert_eq!(
        backups.list(&ListParams::default()).await.unwrap().items.len(),
        1,
        "one Backup"
    );
    let pods: Api<Pod> = ns.api();
    assert_eq!(
        count(&pods, "app.kubernetes.io/component=preflight").await,
        1,
        "one preflight run"
    );
    assert_eq!(
        count(&pods, "app.kubernetes.io/component=migration").await,
        1,
        "one migration run"
    );
    assert_eq!(
        count(&pods, "app.kubernetes.io/component=rollback-quiesce").await,
        1,
        "one quiesce Job run"
    );
    assert_eq!(
        count(&pods, "app.kubernetes.io/component=rollback-job").await,
        1,
        "one rollback Job run"
    );
    let restores: Api<Restore> = ns.api();
    assert_eq!(
        restores.list(&ListParams::default()).await.unwrap().items.len(),
        1,
        "one Restore"
    );
    let jobs: Api<Job> = ns.api();
    assert_eq!(
        count(&jobs, "app.kubernetes.io/component=restore").await,
        1,
        "one restore Job"
    );
    let changes = selector_changes.lock().unwrap().clone();
    assert_eq!(
        changes.len(),
        2,
        "the Service's selector changed exactly twice, to green and back: {changes:?}"
    );
    let stopped = &status.rollback.as_ref().unwrap().stopped_writers;
    assert_eq!(stopped.len(), 2, "{stopped:?}");
    assert!(
        stopped.iter().all(|w| w.replicas == 1),
        "the replica counts read before scaling: {stopped:?}"
    );
    let deployments: Api<Deployment> = ns.api();
    assert_eq!(deployments.get("web-blue").await.unwrap().spec.replicas, Some(1));
    assert_eq!(deployments.get("web-green").await.unwrap().spec.replicas, Some(0));

    // Status told the truth: the data is back and blue serves.
    assert_eq!(
        psql_in(&cluster, &ns, &database, "select count(*) from guests").trim(),
        ROWS.to_string()
    );
    assert!(answers_soon(&cluster, &ns, "blue").await);
}

#[tokio::test]
async fn a_restore_killed_after_creating_its_job_restores_once() {
    let cluster = support::cluster_with_crds();
    let _turn = TURN.lock().await;
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "crash-restore").await;
    let source = backed_up_database(&cluster, &ns, operator).await;
    let target = format!("{}_restored", source.database);
    create_database(&cluster, &ns, &target);

    operator.crash_at("restore-job-created");
    let restores: Api<Restore> = ns.api();
    let restore: Restore = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Restore", "metadata": {"name": "hotel-db-restore"},
        "spec": {
            "source": {"policyRef": {"name": "hotel-db"}, "snapshot": "latest"},
            "target": postgres_database(&target),
        }
    }))
    .unwrap();
    restores.create(&PostParams::default(), &restore).await.unwrap();
    operator.wait_for_crash_at("restore-job-created", Duration::from_secs(240));
    operator.stop_crashing();
    let done = eventually(
        "the Restore ends",
        Duration::from_secs(180),
        operator,
        async || {
            let r = restores
                .get("hotel-db-restore")
                .await
                .map_err(|e| e.to_string())?;
            match r.status.as_ref().and_then(|s| s.phase) {
                Some(RestorePhase::Succeeded | RestorePhase::Failed) => Ok(r),
                _ => Err(format!("{:?}", r.status)),
            }
        },
    )
    .await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(RestorePhase::Succeeded), "{status:?}");
    let jobs: Api<Job> = ns.api();
    assert_eq!(
        count(&jobs, "app.kubernetes.io/component=restore").await,
        1,
        "one restore Job"
    );
    let pods: Api<Pod> = ns.api();
    assert_eq!(
        count(&pods, "app.kubernetes.io/component=restore").await,
        1,
        "it ran once"
    );
    assert_eq!(
        table_content(&cluster, &ns, &target, "guests"),
        table_content(&cluster, &ns, &source.database, "guests"),
        "every row is back"
    );
}

#[tokio::test]
async fn a_drill_killed_after_creating_its_restore_runs_once_for_its_slot() {
    let cluster = support::cluster_with_crds();
    let _turn = TURN.lock().await;
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "crash-drill").await;
    let _source = backed_up_database(&cluster, &ns, operator).await;

    operator.crash_at("drill-restore-created");
    let drills: Api<RestoreDrill> = ns.api();
    let drill: RestoreDrill = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "RestoreDrill", "metadata": {"name": "monthly"},
        "spec": {"schedule": "* * * * *", "policyRef": {"name": "hotel-db"},
                 "target": {"scratch": scratch_postgres()},
                 "verify": {"tables": [{"name": "guests", "minRows": ROWS}]}, "rto": "5m", "rpo": "1h"}
    }))
    .unwrap();
    drills.create(&PostParams::default(), &drill).await.unwrap();
    operator.wait_for_crash_at("drill-restore-created", Duration::from_secs(240));
    // Suspended before the next leader runs: only the killed slot's drill may finish, so "one Restore"
    // below means the slot ran once, not that the test stopped looking.
    let suspend = json!({"spec": {"suspend": true}});
    drills
        .patch("monthly", &PatchParams::default(), &Patch::Merge(&suspend))
        .await
        .unwrap();
    operator.stop_crashing();
    let last = eventually("the drill ends", Duration::from_secs(200), operator, async || {
        let d = drills.get("monthly").await.map_err(|e| e.to_string())?;
        d.status
            .as_ref()
            .and_then(|s| s.last_drill.clone())
            .ok_or_else(|| format!("{:?}", d.status))
    })
    .await;
    assert_eq!(last.passed, Some(true), "{last:?}");
    let restores: Api<Restore> = ns.api();
    let made = restores.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(
        made.len(),
        1,
        "one Restore for the slot: {:?}",
        made.iter().map(|r| &r.metadata.name).collect::<Vec<_>>()
    );
    assert_eq!(made[0].metadata.name.as_deref(), Some(last.restore.as_str()));
}
