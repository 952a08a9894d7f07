//! What the node knows about a Pod's containers, and the Pod status the kubelet would report for it.
//!
//! [`pod_status`] is pure: phase and conditions follow the kubelet's rules (`getPhase`,
//! `GeneratePodReadyCondition`, …) closely enough for controllers (Jobs, ReplicaSets, Deployments) to
//! behave as on a real node.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
    pub container_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
        container_id: String,
    },
    Terminated(Termination),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRuntime {
    pub name: String,
    pub image: String,
    /// A restartable init container (native sidecar): started in order, then runs beside the others.
    pub sidecar: bool,
    pub state: State,
    pub last_termination: Option<Termination>,
    pub restart_count: i32,
    pub ready: bool,
    /// Startup probe passed (or there is none) while running.
    pub started: bool,
}

impl ContainerRuntime {
    pub fn new(name: &str, image: &str, sidecar: bool, waiting_reason: &str) -> Self {
        ContainerRuntime {
            name: name.to_string(),
            image: image.to_string(),
            sidecar,
            state: State::Waiting {
                reason: waiting_reason.to_string(),
                message: None,
            },
            last_termination: None,
            restart_count: 0,
            ready: false,
            started: false,
        }
    }

    fn succeeded(&self) -> bool {
        matches!(&self.state, State::Terminated(t) if t.exit_code == 0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRuntime {
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Timestamp,
    pub restart_policy: String,
    pub init: Vec<ContainerRuntime>,
    pub containers: Vec<ContainerRuntime>,
    /// Readiness gates (condition types others set) that must be True for the Pod to be Ready.
    pub readiness_gates: Vec<String>,
    /// Set once the Pod can never run again (an init container failed for good, or the Pod was killed
    /// for deletion); the phase is then computed as terminal.
    pub terminated: bool,
}

/// The Pod's status for this runtime. `previous` is the status last seen on the object: conditions keep
/// their `lastTransitionTime` when they do not change, other controllers' conditions are kept, and a
/// terminal phase never changes back.
pub fn pod_status(rt: &PodRuntime, previous: Option<&PodStatus>, now: Timestamp) -> PodStatus {
    let phase = phase(rt, previous.and_then(|p| p.phase.as_deref()));
    let terminal = phase == "Succeeded" || phase == "Failed";
    let prev_conditions = previous.and_then(|p| p.conditions.clone()).unwrap_or_default();
    let prev_condition = |t: &str| prev_conditions.iter().find(|c| c.type_ == t);

    // Restartable init containers (sidecars) count for readiness like the others.
    let unready: Vec<&str> = rt
        .containers
        .iter()
        .chain(rt.init.iter().filter(|c| c.sidecar))
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let uninitialized: Vec<&str> = rt
        .init
        .iter()
        .filter(|c| !c.sidecar && !c.succeeded())
        .map(|c| c.name.as_str())
        .collect();
    let gates_ok = rt
        .readiness_gates
        .iter()
        .all(|g| prev_condition(g).is_some_and(|c| c.status == "True"));

    let mut managed = Vec::new();
    managed.push((
        "PodReadyToStartContainers",
        rt.pod_ip.is_some() && !terminal,
        None,
        None,
    ));
    managed.push((
        "Initialized",
        uninitialized.is_empty(),
        (!uninitialized.is_empty()).then_some("ContainersNotInitialized"),
        (!uninitialized.is_empty())
            .then(|| format!("containers with incomplete status: [{}]", uninitialized.join(" "))),
    ));
    let (ready_reason, ready_message) = if terminal {
        (Some("PodCompleted"), None)
    } else if !unready.is_empty() {
        (
            Some("ContainersNotReady"),
            Some(format!("containers with unready status: [{}]", unready.join(" "))),
        )
    } else {
        (None, None)
    };
    let containers_ready = !terminal && unready.is_empty();
    managed.push((
        "ContainersReady",
        containers_ready,
        ready_reason,
        ready_message.clone(),
    ));
    let (pod_ready_reason, pod_ready_message) = if containers_ready && !gates_ok {
        (
            Some("ReadinessGatesNotReady"),
            Some("corresponding condition of pod readiness gate is not true".into()),
        )
    } else {
        (ready_reason, ready_message)
    };
    managed.push((
        "Ready",
        containers_ready && gates_ok,
        pod_ready_reason,
        pod_ready_message,
    ));

    let mut conditions: Vec<PodCondition> = prev_conditions
        .iter()
        .filter(|c| !managed.iter().any(|(t, ..)| *t == c.type_))
        .cloned()
        .collect();
    for (type_, ok, reason, message) in managed {
        let status = if ok { "True" } else { "False" }.to_string();
        let last_transition_time = match prev_condition(type_) {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Some(Time(now)),
        };
        conditions.push(PodCondition {
            type_: type_.to_string(),
            status,
            reason: reason.map(str::to_string),
            message,
            last_transition_time,
            ..Default::default()
        });
    }

    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(rt.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: rt.host_ip.clone(),
        }]),
        pod_ip: rt.pod_ip.clone(),
        pod_ips: rt.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        start_time: Some(Time(rt.start_time)),
        qos_class: previous.and_then(|p| p.qos_class.clone()),
        init_container_statuses: (!rt.init.is_empty())
            .then(|| rt.init.iter().map(container_status).collect()),
        container_statuses: Some(rt.containers.iter().map(container_status).collect()),
        ..Default::default()
    }
}

/// The kubelet's `getPhase`.
pub fn phase(rt: &PodRuntime, previous: Option<&str>) -> &'static str {
    if previous == Some("Succeeded") {
        return "Succeeded";
    }
    if previous == Some("Failed") {
        return "Failed";
    }
    let init_failed_for_good = rt.restart_policy == "Never"
        && rt
            .init
            .iter()
            .any(|c| !c.sidecar && matches!(&c.state, State::Terminated(t) if t.exit_code != 0));
    if init_failed_for_good {
        return "Failed";
    }
    let initialized = rt.init.iter().all(|c| c.sidecar || c.succeeded());
    if !initialized {
        return if rt.terminated { "Failed" } else { "Pending" };
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &rt.containers {
        match &c.state {
            State::Running { .. } => running += 1,
            State::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            State::Waiting { .. } if c.last_termination.is_some() => stopped += 1,
            State::Waiting { .. } => waiting += 1,
        }
    }
    if rt.terminated && running == 0 {
        return if stopped == succeeded && waiting == 0 {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if rt.restart_policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if rt.restart_policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn container_status(c: &ContainerRuntime) -> ContainerStatus {
    let (state, container_id) = container_state(&c.state);
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: String::new(),
        container_id,
        ready: c.ready,
        restart_count: c.restart_count,
        started: Some(c.started && matches!(c.state, State::Running { .. })),
        state: Some(state),
        last_state: Some(
            c.last_termination
                .as_ref()
                .map(|t| container_state(&State::Terminated(t.clone())).0)
                .unwrap_or_default(),
        ),
        ..Default::default()
    }
}

fn container_state(state: &State) -> (ContainerState, Option<String>) {
    match state {
        State::Waiting { reason, message } => (
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..Default::default()
            },
            None,
        ),
        State::Running {
            started_at,
            container_id,
        } => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*started_at)),
                }),
                ..Default::default()
            },
            Some(container_id.clone()),
        ),
        State::Terminated(t) => (
            ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: t.exit_code,
                    signal: t.signal,
                    reason: Some(t.reason.clone()),
                    message: t.message.clone(),
                    started_at: t.started_at.map(Time),
                    finished_at: Some(Time(t.finished_at)),
                    container_id: t.container_id.clone(),
                }),
                ..Default::default()
            },
            t.container_id.clone(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> State {
        State::Running {
            started_at: Timestamp::UNIX_EPOCH,
            container_id: "localnode://1".into(),
        }
    }

    fn exited(code: i32) -> State {
        State::Terminated(Termination {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: None,
            finished_at: Timestamp::UNIX_EPOCH,
            container_id: None,
        })
    }

    fn runtime(policy: &str, states: Vec<State>) -> PodRuntime {
        PodRuntime {
            pod_ip: Some("127.0.10.1".into()),
            host_ip: "127.0.0.1".into(),
            start_time: Timestamp::UNIX_EPOCH,
            restart_policy: policy.into(),
            init: vec![],
            containers: states
                .into_iter()
                .enumerate()
                .map(|(i, s)| ContainerRuntime {
                    state: s,
                    ..ContainerRuntime::new(&format!("c{i}"), "img", false, "")
                })
                .collect(),
            readiness_gates: vec![],
            terminated: false,
        }
    }

    #[test]
    fn a_job_pod_succeeds_or_fails_with_its_exit_code() {
        assert_eq!(phase(&runtime("Never", vec![exited(0)]), None), "Succeeded");
        assert_eq!(phase(&runtime("Never", vec![exited(1)]), None), "Failed");
        assert_eq!(phase(&runtime("OnFailure", vec![exited(1)]), None), "Running");
        assert_eq!(phase(&runtime("Always", vec![exited(0)]), None), "Running");
        assert_eq!(
            phase(&runtime("Never", vec![exited(0), running()]), None),
            "Running"
        );
    }

    #[test]
    fn a_terminal_phase_is_never_left() {
        assert_eq!(
            phase(&runtime("Always", vec![running()]), Some("Failed")),
            "Failed"
        );
    }

    #[test]
    fn a_killed_pod_is_terminal() {
        let mut rt = runtime("Always", vec![exited(137)]);
        rt.terminated = true;
        assert_eq!(phase(&rt, None), "Failed");
    }

    #[test]
    fn init_containers_hold_the_pod_pending_and_fail_it_under_never() {
        let mut rt = runtime(
            "Never",
            vec![State::Waiting {
                reason: "PodInitializing".into(),
                message: None,
            }],
        );
        rt.init = vec![ContainerRuntime {
            state: running(),
            ..ContainerRuntime::new("init", "img", false, "")
        }];
        assert_eq!(phase(&rt, None), "Pending");
        let status = pod_status(&rt, None, Timestamp::UNIX_EPOCH);
        let init = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Initialized")
            .unwrap();
        assert_eq!(
            init.message.as_deref(),
            Some("containers with incomplete status: [init]")
        );
        rt.init[0].state = exited(2);
        assert_eq!(phase(&rt, None), "Failed");
    }

    #[test]
    fn ready_follows_containers_and_keeps_transition_times() {
        let mut rt = runtime("Always", vec![running()]);
        let first = pod_status(&rt, None, Timestamp::UNIX_EPOCH);
        let ready = |s: &PodStatus| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == "Ready")
                .cloned()
                .unwrap()
        };
        assert_eq!(ready(&first).status, "False");
        let later = Timestamp::from_second(100).unwrap();
        let again = pod_status(&rt, Some(&first), later);
        assert_eq!(
            ready(&again).last_transition_time,
            Some(Time(Timestamp::UNIX_EPOCH))
        );
        rt.containers[0].ready = true;
        let now_ready = pod_status(&rt, Some(&again), later);
        assert_eq!(ready(&now_ready).status, "True");
        assert_eq!(ready(&now_ready).last_transition_time, Some(Time(later)));
    }

    #[test]
    fn conditions_of_others_are_kept_and_gate_readiness() {
        let mut rt = runtime("Always", vec![running()]);
        rt.containers[0].ready = true;
        rt.readiness_gates = vec!["example.com/gate".into()];
        let previous = PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let status = pod_status(&rt, Some(&previous), Timestamp::UNIX_EPOCH);
        let conditions = status.conditions.unwrap();
        assert!(conditions.iter().any(|c| c.type_ == "PodScheduled"));
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("ReadinessGatesNotReady"))
        );
    }
}
