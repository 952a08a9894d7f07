//! Cutover benchmark on the local cluster's real node, with the chart-installed operator: from green's
//! health turning bad to traffic back on blue, and from approval to traffic on green, each observed by a
//! client of the Service (a fresh connection to its ClusterIP from the node's network namespace, through
//! kube-proxy), over 20 runs; p50 and p99. Target from the issue: under 1 s beyond the check interval (interval 1 s,
//! failureThreshold 1 here, so under 2 s from the break, which includes waiting for the next round).
//! Run with `cargo bench --bench cutover_rollback` (a running local cluster is used, or started), or in a
//! debug build with `cargo test --bench cutover_rollback`.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use lifeboat::api::cutover::CutoverPhase;
use lifeboat::api::Cutover;
use serde_json::json;
use support::cutover::{approver, cutover, phase, wait_for};
use support::installed::InstalledOperator;
use support::node_web::{answer, blue_and_green, set_fault};
use support::real_node::namespace;
use support::Cluster;

const RUNS: usize = 20;

async fn until_answer(
    cluster: &Cluster,
    ns: &support::TestNamespace,
    color: &str,
    since: Instant,
    limit: Duration,
) -> Duration {
    loop {
        if answer(cluster, ns).as_deref() == Some(color) {
            return since.elapsed();
        }
        if since.elapsed() > limit {
            let cutovers: Api<Cutover> = ns.api();
            let all = cutovers.list(&Default::default()).await.unwrap().items;
            let status: Vec<_> = all
                .iter()
                .map(|c| (c.metadata.name.clone(), c.status.clone()))
                .collect();
            panic!(
                "no {color} answer within {limit:?}; cutovers: {}",
                serde_json::to_string_pretty(&status).unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn report(what: &str, samples: &mut [Duration], target: Duration) {
    let p50 = percentile(samples, 0.5);
    let p99 = percentile(samples, 0.99);
    let verdict = if p99 < target { "meets" } else { "MISSES" };
    println!(
        "{what}: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} runs ({verdict} the target {:.0} ms)",
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        samples.iter().max().unwrap().as_secs_f64() * 1000.0,
        samples.len(),
        target.as_secs_f64() * 1000.0
    );
}

#[tokio::main]
async fn main() {
    let cluster = support::cluster_with_crds();
    let operator = InstalledOperator::shared(&cluster);
    let ns = namespace(&cluster, "cut-bench").await;
    blue_and_green(&cluster, &ns, operator).await;
    let cutovers: Api<Cutover> = ns.api();
    // The chart's accountable-approvals policy admits a GO only in the approver's own name.
    let as_bench = approver(&cluster, &ns, "bench", &[]).await;
    let services: Api<Service> = ns.api();
    let health = format!("http://web.{}.svc/health", ns.name);
    let to_blue = json!({"spec": {"selector": {"app": "web", "track": "blue"}}});

    let mut restore = Vec::new();
    let mut approve = Vec::new();
    for run in 0..RUNS {
        // Rollback: green breaks while watched.
        set_fault(&cluster, &ns, "web-green", "ok");
        let spec = json!({"stabilization": {"duration": "10m", "interval": "1s", "failureThreshold": 1,
                                            "http": [{"name": "healthz", "url": health, "timeout": "1s"}]}});
        let name = format!("rollback-{run}");
        cutovers
            .create(&PostParams::default(), &cutover(&name, spec))
            .await
            .unwrap();
        wait_for(
            "Stabilizing",
            &cutovers,
            &name,
            Duration::from_secs(60),
            operator,
            |c| {
                phase(c) == Some(CutoverPhase::Stabilizing)
                    && c.status
                        .as_ref()
                        .unwrap()
                        .stabilization
                        .as_ref()
                        .is_some_and(|s| s.rounds >= 1)
            },
        )
        .await;
        until_answer(&cluster, &ns, "green", Instant::now(), Duration::from_secs(5)).await;
        set_fault(&cluster, &ns, "web-green", "unhealthy");
        restore.push(until_answer(&cluster, &ns, "blue", Instant::now(), Duration::from_secs(30)).await);
        wait_for(
            "RolledBack",
            &cutovers,
            &name,
            Duration::from_secs(30),
            operator,
            |c| phase(c) == Some(CutoverPhase::RolledBack),
        )
        .await;

        // Approval: GO to traffic on green.
        set_fault(&cluster, &ns, "web-green", "ok");
        let name = format!("approval-{run}");
        cutovers
            .create(
                &PostParams::default(),
                &cutover(&name, json!({"approval": {"required": true}})),
            )
            .await
            .unwrap();
        wait_for(
            "AwaitingApproval",
            &cutovers,
            &name,
            Duration::from_secs(60),
            operator,
            |c| phase(c) == Some(CutoverPhase::AwaitingApproval),
        )
        .await;
        let go = json!({"metadata": {"annotations": {"lifeboat.dev/approved-by": "bench"}}});
        let approved = Instant::now();
        as_bench
            .patch(&name, &PatchParams::default(), &Patch::Merge(&go))
            .await
            .unwrap();
        approve.push(until_answer(&cluster, &ns, "green", approved, Duration::from_secs(30)).await);
        wait_for(
            "Succeeded",
            &cutovers,
            &name,
            Duration::from_secs(30),
            operator,
            |c| phase(c) == Some(CutoverPhase::Succeeded),
        )
        .await;
        services
            .patch("web", &PatchParams::default(), &Patch::Merge(&to_blue))
            .await
            .unwrap();
        until_answer(&cluster, &ns, "blue", Instant::now(), Duration::from_secs(5)).await;
    }
    report(
        "green unhealthy -> traffic on blue (incl. up to 1 s to the next round)",
        &mut restore,
        Duration::from_secs(2),
    );
    report(
        "approval -> traffic on green",
        &mut approve,
        Duration::from_secs(1),
    );
}
