//! One container of a Pod: its launch (command, env, mounts), its process across restarts, its probes.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::{watch, Notify};

use super::env::{self, ConfigError, Lookups, PodFacts};
use super::probe::{self, Timing, Verdict};
use super::process::{self, BindMount, Launch};
use super::status::{ContainerRuntime, PodRuntime, State, Termination};
use super::volumes;
use super::NodeContext;

/// Which slot of the [`PodRuntime`] a container reports into.
#[derive(Debug, Clone, Copy)]
pub enum Slot {
    Init(usize),
    Main(usize),
}

/// What a Pod's containers share.
pub struct PodShared {
    pub node: Arc<NodeContext>,
    pub pod: Pod,
    pub pod_dir: PathBuf,
    pub volumes: BTreeMap<String, PathBuf>,
    pub facts: PodFacts,
    pub runtime: Arc<Mutex<PodRuntime>>,
    pub changed: Arc<Notify>,
}

impl PodShared {
    pub fn update(&self, slot: Slot, f: impl FnOnce(&mut ContainerRuntime)) {
        {
            let mut rt = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
            let c = match slot {
                Slot::Init(i) => &mut rt.init[i],
                Slot::Main(i) => &mut rt.containers[i],
            };
            f(c);
        }
        self.changed.notify_one();
    }

    fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }
}

/// Files of a container inside its Pod's directory.
pub fn log_path(pod_dir: &Path, container: &str) -> PathBuf {
    pod_dir.join(format!("{container}.log"))
}

fn termination_log_path(pod_dir: &Path, container: &str) -> PathBuf {
    pod_dir.join(format!("{container}.termination-log"))
}

/// How a supervised container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Exited and the restart policy does not restart it.
    Finished { exit_code: i32 },
    /// Stopped by the node (Pod deleted).
    Stopped,
}

/// Run a container until it is done for good under `restart_policy`, or until `stop` carries a grace
/// period (the Pod is being deleted).
pub async fn supervise(
    shared: Arc<PodShared>,
    container: Container,
    slot: Slot,
    restart_policy: String,
    mut stop: watch::Receiver<Option<Duration>>,
) -> Ended {
    let mut backoff = Duration::from_secs(1);
    loop {
        if stop.borrow().is_some() || shared.node.is_shutting_down() {
            return Ended::Stopped;
        }
        let launch = match build_launch(&shared, &container).await {
            Ok(l) => l,
            Err(LaunchError::Config(e)) => {
                shared.update(slot, |c| {
                    c.state = State::Waiting {
                        reason: "CreateContainerConfigError".into(),
                        message: Some(e.0),
                    }
                });
                if wait_or_stop(&mut stop, Duration::from_secs(2)).await {
                    return Ended::Stopped;
                }
                continue;
            }
            Err(LaunchError::Api(e)) => {
                tracing::warn!(container = %container.name, error = %e, "reading the container's config failed");
                if wait_or_stop(&mut stop, Duration::from_secs(1)).await {
                    return Ended::Stopped;
                }
                continue;
            }
        };
        let termination_log = termination_log_path(&shared.pod_dir, &container.name);
        let _ = fs::write(&termination_log, b"");
        let started_at = Timestamp::now();
        let outcome = match launch.as_ref().map(process::spawn) {
            None => Err(format!(
                "container {:?} has no command: the local node ignores images, so every container needs an \
                 explicit command",
                container.name
            )),
            Some(Err(e)) => Err(format!(
                "failed to start {:?}: {e}",
                launch.as_ref().map(|l| &l.program)
            )),
            Some(Ok(child)) => Ok(child),
        };
        let restarts = current_restart_count(&shared, slot);
        let termination = match outcome {
            Err(message) => Termination {
                exit_code: 128,
                signal: None,
                reason: "StartError".into(),
                message: Some(message),
                started_at: None,
                finished_at: Timestamp::now(),
                container_id: None,
            },
            Ok(child) => {
                let launch = launch.expect("spawned from a launch");
                let container_id = format!(
                    "localnode://{}-{}-{}",
                    shared.pod.metadata.uid.as_deref().unwrap_or(""),
                    container.name,
                    restarts
                );
                run_process(
                    &shared,
                    &container,
                    slot,
                    &launch,
                    child,
                    started_at,
                    container_id,
                    &mut stop,
                )
                .await
            }
        };
        let exit_code = termination.exit_code;
        let stopped = stop.borrow().is_some();
        let restart = !stopped
            && match restart_policy.as_str() {
                "Always" => true,
                "OnFailure" => exit_code != 0,
                _ => false,
            };
        let ran_for = (termination.finished_at - started_at).get_seconds();
        shared.update(slot, |c| {
            c.ready = false;
            c.started = false;
            if restart {
                c.last_termination = Some(termination.clone());
                c.restart_count += 1;
                c.state = State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(format!(
                        "back-off {}s restarting failed container={} pod={}",
                        backoff.as_secs(),
                        container.name,
                        shared.pod.metadata.name.as_deref().unwrap_or("")
                    )),
                };
            } else {
                c.state = State::Terminated(termination.clone());
            }
        });
        if stopped {
            return Ended::Stopped;
        }
        if !restart {
            return Ended::Finished { exit_code };
        }
        // The kubelet backs off from 10s to 5m; tests want restarts sooner, so 1s doubling to 30s, reset
        // after a run of a minute.
        if ran_for > 60 {
            backoff = Duration::from_secs(1);
        }
        if wait_or_stop(&mut stop, backoff).await {
            return Ended::Stopped;
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

fn current_restart_count(shared: &PodShared, slot: Slot) -> i32 {
    let rt = shared.runtime.lock().unwrap_or_else(|e| e.into_inner());
    match slot {
        Slot::Init(i) => rt.init[i].restart_count,
        Slot::Main(i) => rt.containers[i].restart_count,
    }
}

/// True when stopped while waiting.
async fn wait_or_stop(stop: &mut watch::Receiver<Option<Duration>>, d: Duration) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(Option::is_some) => true,
    };
    stopped || stop.borrow().is_some()
}

#[allow(clippy::too_many_arguments)]
async fn run_process(
    shared: &PodShared,
    container: &Container,
    slot: Slot,
    launch: &Launch,
    mut child: tokio::process::Child,
    started_at: Timestamp,
    container_id: String,
    stop: &mut watch::Receiver<Option<Duration>>,
) -> Termination {
    let pgid = child.id().map(|p| p as i32).unwrap_or(0);
    shared.node.processes.add(pgid);
    let has_startup = container.startup_probe.is_some();
    let has_readiness = container.readiness_probe.is_some();
    shared.update(slot, |c| {
        c.state = State::Running {
            started_at,
            container_id: container_id.clone(),
        };
        c.started = !has_startup;
        c.ready = !has_startup && !has_readiness;
    });
    enum Why {
        Exited(std::io::Result<std::process::ExitStatus>),
        ProbeFailed(String),
        Stop,
    }
    let why = tokio::select! {
        status = child.wait() => Why::Exited(status),
        failure = probe_until_failure(shared, container, slot, launch) => Why::ProbeFailed(failure),
        _ = stop.wait_for(Option::is_some) => Why::Stop,
    };
    let mut reason_override = None;
    let status = match why {
        Why::Exited(status) => status,
        Why::ProbeFailed(failure) => {
            tracing::info!(container = %container.name, %failure, "restarting container");
            reason_override = Some(failure);
            kill_gracefully(&mut child, pgid, grace_period(&shared.pod)).await
        }
        Why::Stop => {
            let grace = (*stop.borrow()).unwrap_or_default();
            kill_gracefully(&mut child, pgid, grace).await
        }
    };
    // Whatever the main process left behind in its group goes with it, as with a container's cgroup.
    process::signal_group(pgid, libc::SIGKILL);
    shared.node.processes.remove(pgid);
    let (exit_code, signal) = match &status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => (code, None),
            (None, Some(sig)) => (128 + sig, Some(sig)),
            (None, None) => (-1, None),
        },
        Err(_) => (-1, None),
    };
    let reason = if exit_code == 0 { "Completed" } else { "Error" }.to_string();
    let message = termination_message(shared, container, exit_code)
        .or(reason_override.map(|r| format!("{r}, container will be restarted")));
    Termination {
        exit_code,
        signal,
        reason,
        message,
        started_at: Some(started_at),
        finished_at: Timestamp::now(),
        container_id: Some(container_id),
    }
}

async fn kill_gracefully(
    child: &mut tokio::process::Child,
    pgid: i32,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    process::signal_group(pgid, libc::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            process::signal_group(pgid, libc::SIGKILL);
            child.wait().await
        }
    }
}

pub fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or(pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30);
    Duration::from_secs(secs.max(0) as u64)
}

/// Run the startup, readiness and liveness probes; returns only when startup or liveness fails for good.
async fn probe_until_failure(
    shared: &PodShared,
    container: &Container,
    slot: Slot,
    launch: &Launch,
) -> String {
    let pod_ip = shared.facts.pod_ip.clone();
    if let Some(startup) = &container.startup_probe {
        if !probe_until(startup, container, &pod_ip, launch, true).await {
            return "Container failed startup probe".into();
        }
        let has_readiness = container.readiness_probe.is_some();
        shared.update(slot, |c| {
            c.started = true;
            c.ready = !has_readiness;
        });
    }
    let readiness = async {
        let Some(p) = &container.readiness_probe else {
            return std::future::pending::<()>().await;
        };
        let timing = Timing::of(p);
        tokio::time::sleep(timing.initial_delay).await;
        let mut verdict = Verdict::new(timing, false);
        loop {
            let outcome = probe::run_once(p, container, &pod_ip, launch).await;
            if verdict.record(outcome) {
                let ready = verdict.passing;
                shared.update(slot, |c| c.ready = ready);
            }
            tokio::time::sleep(timing.period).await;
        }
    };
    let liveness = async {
        let Some(p) = &container.liveness_probe else {
            return std::future::pending::<String>().await;
        };
        if !probe_until(p, container, &pod_ip, launch, false).await {
            return "Container failed liveness probe".to_string();
        }
        std::future::pending::<String>().await
    };
    tokio::select! {
        _ = readiness => unreachable!("the readiness loop never ends"),
        failure = liveness => failure,
    }
}

/// With `until_success`: probe until it passes (true) or fails for good (false). Without: probe until it
/// fails for good (false).
async fn probe_until(
    p: &Probe,
    container: &Container,
    pod_ip: &str,
    launch: &Launch,
    until_success: bool,
) -> bool {
    let timing = Timing::of(p);
    tokio::time::sleep(timing.initial_delay).await;
    let mut verdict = Verdict::new(timing, !until_success);
    loop {
        verdict.record(probe::run_once(p, container, pod_ip, launch).await);
        if until_success && verdict.passing {
            return true;
        }
        if (until_success && verdict.failed_for_good()) || (!until_success && !verdict.passing) {
            return false;
        }
        tokio::time::sleep(timing.period).await;
    }
}

/// The message of a terminated container: its termination message file, or with
/// `FallbackToLogsOnError` and a failure, the tail of its log.
fn termination_message(shared: &PodShared, container: &Container, exit_code: i32) -> Option<String> {
    let from_file = read_limited(
        &termination_log_path(&shared.pod_dir, &container.name),
        4096,
        false,
    );
    if from_file.as_deref().is_some_and(|m| !m.is_empty()) {
        return from_file;
    }
    if exit_code != 0 && container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError") {
        let tail = read_limited(&log_path(&shared.pod_dir, &container.name), 2048, true)?;
        let lines: Vec<&str> = tail.lines().collect();
        let start = lines.len().saturating_sub(80);
        return Some(lines[start..].join("\n")).filter(|m| !m.is_empty());
    }
    None
}

fn read_limited(path: &Path, limit: u64, tail: bool) -> Option<String> {
    let mut file = fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if tail && len > limit {
        file.seek(SeekFrom::Start(len - limit)).ok()?;
    }
    let mut buf = Vec::new();
    file.take(limit).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

enum LaunchError {
    Config(ConfigError),
    Api(kube::Error),
}

/// The process for a container, or `None` when it has no command (images are not run).
async fn build_launch(shared: &PodShared, container: &Container) -> Result<Option<Launch>, LaunchError> {
    let node = &shared.node;
    let (secret_names, config_map_names) = env::referenced_objects(container);
    let mut lookups = Lookups::default();
    let text = |data: BTreeMap<String, Vec<u8>>| {
        data.into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect()
    };
    for name in secret_names {
        let data = volumes::secret_data(&node.client, shared.namespace(), &name)
            .await
            .map_err(LaunchError::Api)?;
        lookups.secrets.insert(name, data.map(text));
    }
    for name in config_map_names {
        let data = volumes::config_map_data(&node.client, shared.namespace(), &name)
            .await
            .map_err(LaunchError::Api)?;
        lookups.config_maps.insert(name, data.map(text));
    }
    let base = node.base_env(&shared.pod, &shared.facts.pod_ip);
    let env = env::container_env(&shared.pod, container, &shared.facts, &lookups, &base)
        .map_err(LaunchError::Config)?;
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());

    let mut mounts = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let Some(source) = shared.volumes.get(&m.name) else {
            return Err(LaunchError::Config(ConfigError(format!(
                "volume {:?} not found in the Pod",
                m.name
            ))));
        };
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(p), _) if !p.is_empty() => Some(p.clone()),
            (_, Some(e)) if !e.is_empty() => Some(env::expand(e, lookup)),
            _ => None,
        };
        let source = match sub {
            Some(sub) => {
                let path = source.join(sub.trim_start_matches('/'));
                if !path.exists() {
                    fs::create_dir_all(&path).map_err(|e| {
                        LaunchError::Config(ConfigError(format!("subPath {}: {e}", path.display())))
                    })?;
                }
                path
            }
            None => source.clone(),
        };
        mounts.push(BindMount {
            source,
            target: PathBuf::from(&m.mount_path),
            read_only: m.read_only.unwrap_or(false),
        });
    }
    let termination_target = container
        .termination_message_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/dev/termination-log".into());
    mounts.push(BindMount {
        source: termination_log_path(&shared.pod_dir, &container.name),
        target: PathBuf::from(termination_target),
        read_only: false,
    });
    if let Some(hosts) = node.hosts_file(shared.namespace()) {
        mounts.push(BindMount {
            source: hosts,
            target: PathBuf::from("/etc/hosts"),
            read_only: true,
        });
    }

    let mut argv: Vec<String> = container
        .command
        .iter()
        .flatten()
        .map(|a| env::expand(a, lookup))
        .collect();
    if argv.is_empty() {
        return Ok(None);
    }
    argv.extend(container.args.iter().flatten().map(|a| env::expand(a, lookup)));
    let program = argv.remove(0);
    let working_dir = match container.working_dir.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => shared.pod_dir.join("work"),
    };
    if !working_dir.exists() && !mounts.iter().any(|m| working_dir.starts_with(&m.target)) {
        let _ = fs::create_dir_all(&working_dir);
    }
    Ok(Some(Launch {
        program,
        args: argv,
        env,
        working_dir,
        mounts: process::order_mounts(mounts),
        log: Some(log_path(&shared.pod_dir, &container.name)),
    }))
}
