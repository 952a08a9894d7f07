//! Operator scale benchmark: 500 BackupPolicies across 50 namespaces on the local cluster, with the
//! operator installed by the chart on the real node (its image, its Deployment).
//!
//! Prints: operator RSS and CPU while idle (against the same operator with no policies, as a ratio), the
//! time to reconcile every policy after a restart, and the delay between a slot's time and its Backup's
//! creation as seen by a watch (p50/p99). Targets from the issue: RSS < 64 MiB, p99 slot delay < 1 s.
//! Run with `just bench-operator` (a running local cluster is used, or started).
//!
//! This measures the control loop, not the node: each bench namespace has a ResourceQuota of 0 Pods, so
//! the 500 Jobs of the slot are created (and measured) but start no Pod — 500 agent Pods at once on a
//! 2-core node would measure the kubelet and containerd instead.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use lifeboat::api::{Backup, BackupPolicy};
use lifeboat::slots::jitter_for;
use serde_json::json;
use support::installed::InstalledOperator;

const NAMESPACES: usize = 50;
const POLICY_LABEL: &str = "lifeboat.dev/policy";
const PER_NAMESPACE: usize = 10;

fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

/// A `/proc/<pid>/status` figure in KiB (`VmRSS:` now, `VmHWM:` the peak).
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

/// Idle RSS (KiB) and CPU share over `window`.
async fn idle_profile(pid: u32, window: Duration) -> (u64, f64) {
    let before = cpu_seconds(pid);
    tokio::time::sleep(window).await;
    (rss_kib(pid), (cpu_seconds(pid) - before) / window.as_secs_f64())
}

fn reconciles(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("lifeboat_reconciles_total{kind=\"BackupPolicy\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The floor any controller can reach on this machine: 500 ConfigMaps created by a plain client, 32 at
/// a time (the operator's reconcile concurrency), as seconds from the start to each create's answer.
async fn create_storm(client: &kube::Client, namespace: &str, count: usize) -> Vec<f64> {
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), namespace);
    let start = Instant::now();
    let mut done: Vec<f64> = futures::stream::iter(0..count)
        .map(|i| {
            let configmaps = configmaps.clone();
            async move {
                let cm = serde_json::from_value(
                    json!({"metadata": {"name": format!("storm-{i}")}, "data": {"slot": "1795458000"}}),
                )
                .unwrap();
                configmaps.create(&PostParams::default(), &cm).await.unwrap();
                start.elapsed().as_secs_f64()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    done.sort_by(f64::total_cmp);
    done
}

/// Seconds from the moment each policy was due (`slot` plus its jitter offset, keyed `namespace/policy`
/// in `offsets`) to the first sighting of each object of this run whose `slot_name` (a name ending in
/// `-<unix slot>`) is for `slot`, until `expected` were seen or `deadline` passed.
#[allow(clippy::too_many_arguments)]
async fn first_seen<K>(
    api: Api<K>,
    label: &str,
    run: &str,
    slot: f64,
    offsets: &BTreeMap<String, f64>,
    expected: usize,
    deadline: Instant,
    slot_name: impl Fn(&K) -> Option<String>,
) -> Vec<f64>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let mut seen: BTreeMap<String, f64> = BTreeMap::new();
    let mut stream = watcher(api, watcher::Config::default().labels(label))
        .applied_objects()
        .boxed();
    while seen.len() < expected && Instant::now() < deadline {
        let Ok(Some(object)) = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .unwrap_or(Ok(None))
        else {
            continue;
        };
        let seen_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let namespace = object.meta().namespace.clone().unwrap_or_default();
        let Some(name) = slot_name(&object) else { continue };
        let Some(object_slot) = name.rsplit('-').next().and_then(|s| s.parse::<f64>().ok()) else {
            continue;
        };
        let policy = object.meta().labels.as_ref().and_then(|l| l.get(POLICY_LABEL));
        let offset = policy
            .and_then(|p| offsets.get(&format!("{namespace}/{p}")))
            .copied()
            .unwrap_or(0.0);
        if (object_slot - slot).abs() < 0.5 && namespace.contains(run) {
            seen.entry(format!("{namespace}/{name}"))
                .or_insert(seen_at - slot - offset);
        }
    }
    seen.into_values().collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[tokio::main]
async fn main() {
    let cluster = support::cluster_with_crds();
    let client = cluster.client().await.unwrap();
    let operator = InstalledOperator::helm_with(&cluster, "lifeboat-bench", json!({"logLevel": "info"}));
    let pid = operator.host_pid();
    let (baseline_rss, baseline_cpu) = idle_profile(pid, Duration::from_secs(10)).await;

    // 500 policies in 50 namespaces, each with its Secrets, all due at the same minute (a daily schedule
    // for a minute ~100 s ahead, after the restart and the idle measurement): the worst case of everyone
    // backing up at 02:00, on a cluster that is quiet before it. (An every-minute schedule measured the
    // local cluster drowning in 500 Jobs a minute instead, and Forbid rightly skipped busy slots.)
    let unix_now = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let slot = ((unix_now() + 100.0) / 60.0).ceil() * 60.0;
    let slot_of_day = (slot as u64) % 86_400;
    let schedule = format!("{} {} * * *", (slot_of_day / 60) % 60, slot_of_day / 3600);
    let run = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    );
    // BENCH_JITTER_SECONDS=N gives every policy `jitter: Ns`, the spread the product offers for exactly
    // this case; each policy's delay is then measured from its own due time (slot + its offset).
    let jitter_seconds: u64 = std::env::var("BENCH_JITTER_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut offsets: BTreeMap<String, f64> = BTreeMap::new();
    let namespaces: Vec<String> = (0..NAMESPACES).map(|i| format!("bench-{run}-{i:02}")).collect();
    let created = Instant::now();
    for namespace in &namespaces {
        let ns: Namespace = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": {"lifeboat.dev/bench": run}}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        let no_pods: k8s_openapi::api::core::v1::ResourceQuota =
            serde_json::from_value(json!({"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}))
                .unwrap();
        Api::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &no_pods)
            .await
            .unwrap();
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        for name in ["db", "restic"] {
            let secret: Secret = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"password": "bench"}})).unwrap();
            secrets
                .patch(name, &PatchParams::apply("bench").force(), &Patch::Apply(&secret))
                .await
                .unwrap();
        }
        let policies: Api<BackupPolicy> = Api::namespaced(client.clone(), namespace);
        for i in 0..PER_NAMESPACE {
            let mut policy = json!({
                "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": format!("db-{i}")},
                "spec": {"schedule": schedule, "timeZone": "UTC",
                         "source": {"postgres": {"host": "db", "database": "app", "user": "app", "passwordSecretRef": {"name": "db", "key": "password"}}},
                         "repository": {"restic": {"repository": "/tmp/bench-repo", "passwordSecretRef": {"name": "restic", "key": "password"}}},
                         "rpo": "24h", "successfulBackupsHistoryLimit": 1, "failedBackupsHistoryLimit": 1}
            });
            if jitter_seconds > 0 {
                policy["spec"]["jitter"] = json!(format!("{jitter_seconds}s"));
            }
            let policy: BackupPolicy = serde_json::from_value(policy).unwrap();
            let created = policies.create(&PostParams::default(), &policy).await.unwrap();
            let offset = jitter_for(
                &created.metadata.uid.unwrap_or_default(),
                Some(Duration::from_secs(jitter_seconds)),
            );
            offsets.insert(format!("{namespace}/db-{i}"), offset.as_secs_f64());
        }
    }
    let storm = create_storm(&client, &namespaces[0], NAMESPACES * PER_NAMESPACE).await;
    println!(
        "created {} policies in {:.1}s",
        NAMESPACES * PER_NAMESPACE,
        created.elapsed().as_secs_f64()
    );

    // Reconcile all after a restart: the reconcile counter of the new Pod reaches one per policy. A
    // rolling update's restart (SIGTERM to the old Pod, which releases the Lease): this measures the new
    // Pod's start and reconciling. After a crash the new process first waits out the Lease (15 s).
    let restarted = Instant::now();
    operator.restart();
    while reconciles(&operator.pod_metrics()) < (NAMESPACES * PER_NAMESPACE) as u64 {
        assert!(
            restarted.elapsed() < Duration::from_secs(300),
            "not all policies reconciled after a restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reconcile_all = restarted.elapsed();
    let pid = operator.host_pid();
    let (idle_rss, idle_cpu) = idle_profile(pid, Duration::from_secs(10)).await;

    // Slot delay: watch Backups (and their Jobs) until one per policy has been seen for the slot.
    let now = unix_now();
    assert!(
        now < slot - 2.0,
        "setting up took too long: the slot at {slot} passed before the watch started"
    );
    let deadline = Instant::now() + Duration::from_secs_f64(slot - now + 120.0 + jitter_seconds as f64);
    let cpu_before = cpu_seconds(pid);
    let expected = NAMESPACES * PER_NAMESPACE;
    let backups_api: Api<Backup> = Api::all(client.clone());
    let jobs_api: Api<k8s_openapi::api::batch::v1::Job> = Api::all(client.clone());
    // A Backup's name ends in its slot; a Job carries its Backup's name in a label.
    let (mut delays, mut job_delays) = tokio::join!(
        first_seen(
            backups_api,
            POLICY_LABEL,
            &run,
            slot,
            &offsets,
            expected,
            deadline,
            |b| { b.metadata.name.clone() }
        ),
        first_seen(
            jobs_api,
            "lifeboat.dev/backup",
            &run,
            slot,
            &offsets,
            expected,
            deadline,
            |j| { j.metadata.labels.as_ref()?.get("lifeboat.dev/backup").cloned() }
        ),
    );
    let slot_cpu = cpu_seconds(pid) - cpu_before;
    delays.sort_by(f64::total_cmp);
    job_delays.sort_by(f64::total_cmp);
    let peak_rss = proc_status_kib(pid, "VmHWM:");
    let after_slot_rss = rss_kib(pid);

    println!(
        "operator scale benchmark ({} policies, {} namespaces, all due at {slot}{}; reconcile concurrency 32, \
         the chart's default; Job Pods held off by a 0-Pod ResourceQuota)",
        NAMESPACES * PER_NAMESPACE,
        NAMESPACES,
        if jitter_seconds > 0 {
            format!(" spread by jitter: {jitter_seconds}s (delays from each policy's own due time)")
        } else {
            " without jitter".to_string()
        },
    );
    println!(
        "  idle RSS:  {:.1} MiB with 0 policies, {:.1} MiB with 500 (ratio {:.2}; target < 64 MiB)",
        baseline_rss as f64 / 1024.0,
        idle_rss as f64 / 1024.0,
        idle_rss as f64 / baseline_rss.max(1) as f64
    );
    println!(
        "  RSS through a slot (500 Backups and Jobs started): peak {:.1} MiB, {:.1} MiB after",
        peak_rss as f64 / 1024.0,
        after_slot_rss as f64 / 1024.0
    );
    println!(
        "  idle CPU:  {:.2}% with 0 policies, {:.2}% with 500",
        baseline_cpu * 100.0,
        idle_cpu * 100.0
    );
    println!(
        "  reconcile all 500 after a rolling restart (the new Pod's start included): {:.2}s",
        reconcile_all.as_secs_f64()
    );
    println!(
        "  slot -> Backup seen by a watch: {} of 500, p50 {:.3}s, p99 {:.3}s, max {:.3}s (target p99 < 1 s)",
        delays.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  slot -> its Job seen by a watch:   {} of 500, p50 {:.3}s, p99 {:.3}s; operator CPU from the slot until all were seen: {:.1}s",
        job_delays.len(),
        percentile(&job_delays, 0.5),
        percentile(&job_delays, 0.99),
        slot_cpu
    );
    println!(
        "  baseline, 500 ConfigMaps created by a plain client (32 at a time, quiet cluster): p50 {:.3}s, p99 {:.3}s",
        percentile(&storm, 0.5),
        percentile(&storm, 0.99)
    );
    println!(
        "  operator p99 / baseline p99 = {:.2}",
        percentile(&delays, 0.99) / percentile(&storm, 0.99)
    );

    for namespace in &namespaces {
        let _ = Api::<Namespace>::all(client.clone())
            .delete(namespace, &DeleteParams::background())
            .await;
    }
}
