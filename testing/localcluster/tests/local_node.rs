//! The local node against the real control plane: Jobs, Pod statuses, env, volumes, probes, Deployments,
//! the Service proxy and deletion, each in a namespace of its own.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use localcluster::{ensure, services, TestNamespace};
use support::*;

async fn namespace(prefix: &str) -> TestNamespace {
    let cluster = ensure().expect("the local cluster starts");
    cluster
        .unrestricted_namespace(prefix)
        .await
        .expect("a test namespace")
}

fn job_condition(job: &Job, type_: &str) -> Option<(String, Option<String>)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| (c.type_.clone(), c.reason.clone()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_command_exits_0_completes() {
    let ns = namespace("node-job-ok").await;
    create::<Job>(
        &ns,
        r#"
metadata: {name: ok}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: main, image: ignored, command: [sh, -c, 'echo working; exit 0']}
"#,
    )
    .await;
    let jobs = api::<Job>(&ns);
    eventually(Duration::from_secs(30), "Job ok to complete", || async {
        jobs.get("ok")
            .await
            .ok()
            .and_then(|j| job_condition(&j, "Complete"))
    })
    .await;
    let pod = job_pods(&ns, "ok").await.pop().expect("the Job's Pod");
    assert_eq!(phase(&pod), "Succeeded");
    let t = terminated(&pod, "main").expect("terminated state");
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    let log =
        localcluster::node::logs::container_log(&ns.name, pod.metadata.name.as_deref().unwrap(), "main")
            .expect("the container's log");
    assert_eq!(log, "working\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_command_exits_1_is_retried_per_backoff_limit_then_fails() {
    let ns = namespace("node-job-fail").await;
    create::<Job>(
        &ns,
        r#"
metadata: {name: fails}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: main, image: ignored, command: [sh, -c, 'exit 1']}
"#,
    )
    .await;
    let jobs = api::<Job>(&ns);
    let (_, reason) = eventually(Duration::from_secs(60), "Job fails to fail", || async {
        jobs.get("fails")
            .await
            .ok()
            .and_then(|j| job_condition(&j, "Failed"))
    })
    .await;
    assert_eq!(reason.as_deref(), Some("BackoffLimitExceeded"));
    let pods = job_pods(&ns, "fails").await;
    assert_eq!(pods.len(), 2, "one try and one retry");
    for pod in &pods {
        assert_eq!(phase(pod), "Failed");
        let t = terminated(pod, "main").expect("terminated state");
        assert_eq!((t.exit_code, t.reason.as_deref()), (1, Some("Error")));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_termination_message_reaches_the_pod_status() {
    let ns = namespace("node-message").await;
    create::<Pod>(
        &ns,
        r#"
metadata: {name: messages}
spec:
  restartPolicy: Never
  containers:
  - name: file
    image: ignored
    command: [sh, -c, 'printf "restored 42 tables" > /dev/termination-log; exit 3']
  - name: custom-path
    image: ignored
    terminationMessagePath: /tmp/lifeboat-test/message
    command: [sh, -c, 'printf custom > /tmp/lifeboat-test/message']
  - name: logs
    image: ignored
    terminationMessagePolicy: FallbackToLogsOnError
    command: [sh, -c, 'echo "pg_dump: connection refused" >&2; exit 2']
"#,
    )
    .await;
    let pod = finished_pod(&ns, "messages").await;
    assert_eq!(phase(&pod), "Failed");
    let file = terminated(&pod, "file").unwrap();
    assert_eq!(
        (file.exit_code, file.message.as_deref()),
        (3, Some("restored 42 tables"))
    );
    assert_eq!(
        terminated(&pod, "custom-path").unwrap().message.as_deref(),
        Some("custom")
    );
    let logs = terminated(&pod, "logs").unwrap();
    assert_eq!(logs.message.as_deref(), Some("pg_dump: connection refused"));
    assert!(
        !std::path::Path::new("/tmp/lifeboat-test/message").exists()
            || std::fs::read_to_string("/tmp/lifeboat-test/message")
                .unwrap()
                .is_empty(),
        "the message was written to the Pod's own file, not to the host's"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn env_and_volumes_from_secrets_and_config_maps_arrive() {
    let ns = namespace("node-env").await;
    create::<Secret>(
        &ns,
        "metadata: {name: creds}\nstringData: {password: s3cret, user: alice}",
    )
    .await;
    create::<ConfigMap>(
        &ns,
        "metadata: {name: settings}\ndata: {MODE: blue, app.conf: 'port=5432'}",
    )
    .await;
    create::<Pod>(
        &ns,
        r#"
metadata: {name: env, labels: {team: dr}}
spec:
  restartPolicy: Never
  volumes:
  - {name: secret, secret: {secretName: creds}}
  - {name: config, configMap: {name: settings, items: [{key: app.conf, path: conf/app.conf}]}}
  - {name: scratch, emptyDir: {}}
  initContainers:
  - name: prepare
    image: ignored
    command: [sh, -c, 'echo prepared > /scratch/state']
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  containers:
  - name: main
    image: ignored
    envFrom:
    - configMapRef: {name: settings}
    - secretRef: {name: creds}
      prefix: DB_
    env:
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}
    - {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: TEAM, valueFrom: {fieldRef: {fieldPath: "metadata.labels['team']"}}}
    - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: URL, value: "postgres://$(DB_user)@db:5432"}
    command: [sh, -c]
    args:
    - >-
      printf '%s|' "$MODE" "$DB_user" "$PASSWORD" "$NS" "$TEAM" "$URL" "$IP"
      "$(cat /etc/creds/password)" "$(cat /etc/app/conf/app.conf)" "$(cat /scratch/state)"
      > /dev/termination-log
    volumeMounts:
    - {name: secret, mountPath: /etc/creds, readOnly: true}
    - {name: config, mountPath: /etc/app}
    - {name: scratch, mountPath: /scratch}
"#,
    )
    .await;
    let pod = finished_pod(&ns, "env").await;
    let t = terminated(&pod, "main").expect("main terminated");
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap();
    assert!(ip.starts_with("127.0."), "Pod IP {ip} is a loopback address");
    assert_eq!(
        t.message.as_deref(),
        Some(
            format!(
                "blue|alice|s3cret|{}|dr|postgres://alice@db:5432|{ip}|s3cret|port=5432|prepared|",
                ns.name
            )
            .as_str()
        ),
        "{pod:?}"
    );
    assert_eq!(phase(&pod), "Succeeded");
    assert!(
        !std::path::Path::new("/etc/creds/password").exists(),
        "volumes are visible only inside the Pod"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_secret_fails_the_container_with_create_container_config_error() {
    let ns = namespace("node-missing").await;
    create::<Pod>(
        &ns,
        r#"
metadata: {name: missing}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: ignored
    command: [sh, -c, 'exit 0']
    env: [{name: P, valueFrom: {secretKeyRef: {name: nope, key: password}}}]
"#,
    )
    .await;
    let waiting = eventually(Duration::from_secs(20), "CreateContainerConfigError", || async {
        let pod = pod(&ns, "missing").await?;
        let status = pod.status?.container_statuses?.pop()?;
        status
            .state?
            .waiting
            .filter(|w| w.reason.as_deref() == Some("CreateContainerConfigError"))
    })
    .await;
    assert_eq!(waiting.message.as_deref(), Some("secret \"nope\" not found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_without_a_command_fails_with_a_clear_message() {
    let ns = namespace("node-nocmd").await;
    create::<Pod>(
        &ns,
        "metadata: {name: image-only}\nspec: {restartPolicy: Never, containers: [{name: main, image: postgres:17}]}",
    )
    .await;
    let pod = finished_pod(&ns, "image-only").await;
    assert_eq!(phase(&pod), "Failed");
    let t = terminated(&pod, "main").unwrap();
    assert_eq!(t.reason.as_deref(), Some("StartError"));
    assert!(t.message.unwrap().contains("needs an explicit command"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_readiness_probe_holds_a_pod_unready_until_its_port_answers() {
    let ns = namespace("node-ready").await;
    create::<Pod>(
        &ns,
        r#"
metadata: {name: slow}
spec:
  containers:
  - name: web
    image: ignored
    command: [sh, -c, 'sleep 3; exec python3 -m http.server --bind "$POD_IP" 8080']
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /, port: http}
      periodSeconds: 1
"#,
    )
    .await;
    let running = eventually(Duration::from_secs(20), "Pod slow to run", || async {
        pod(&ns, "slow").await.filter(|p| phase(p) == "Running")
    })
    .await;
    let started = Instant::now();
    assert!(!is_ready(&running), "not Ready before its port answers");
    let ready = eventually(Duration::from_secs(20), "Pod slow to become Ready", || async {
        pod(&ns, "slow").await.filter(is_ready)
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Ready only once the server listens"
    );
    let ip = ready.status.unwrap().pod_ip.unwrap();
    let (status, _) = http_get(&format!("http://{ip}:8080/"))
        .await
        .expect("the Pod answers on its own IP");
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_liveness_probe_restarts_the_container() {
    let ns = namespace("node-live").await;
    create::<Pod>(
        &ns,
        r#"
metadata: {name: stuck}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: ignored
    command: [sleep, "300"]
    livenessProbe:
      exec: {command: [sh, -c, 'exit 1']}
      periodSeconds: 1
      failureThreshold: 2
"#,
    )
    .await;
    let restarted = eventually(Duration::from_secs(30), "a restart", || async {
        let status = pod(&ns, "stuck").await?.status?.container_statuses?.pop()?;
        (status.restart_count >= 1).then_some(status)
    })
    .await;
    let last = restarted
        .last_state
        .and_then(|s| s.terminated)
        .expect("the killed container's state");
    assert_eq!(last.exit_code, 143, "SIGTERM ends sleep");
}

const WEB_DEPLOYMENT: &str = r#"
metadata: {name: web-COLOR}
spec:
  replicas: 2
  selector: {matchLabels: {app: web, color: COLOR}}
  template:
    metadata: {labels: {app: web, color: COLOR}}
    spec:
      terminationGracePeriodSeconds: 2
      volumes: [{name: www, emptyDir: {}}]
      containers:
      - name: web
        image: ignored
        command: [sh, -c, 'echo COLOR > /srv/index.html && exec python3 -m http.server --bind "$POD_IP" --directory /srv 8080']
        volumeMounts: [{name: www, mountPath: /srv}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
"#;

async fn available(ns: &TestNamespace, name: &str) {
    let deployments = api::<Deployment>(ns);
    eventually(
        Duration::from_secs(60),
        &format!("Deployment {name} to be Available"),
        || async {
            let d = deployments.get(name).await.ok()?;
            let status = d.status?;
            let conditions = status.conditions?;
            (status.available_replicas == Some(2)
                && conditions
                    .iter()
                    .any(|c| c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True")))
            .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn patching_a_service_selector_moves_traffic_from_blue_to_green_within_a_second() {
    let ns = namespace("node-svc").await;
    create::<Deployment>(&ns, &WEB_DEPLOYMENT.replace("COLOR", "blue")).await;
    create::<Deployment>(&ns, &WEB_DEPLOYMENT.replace("COLOR", "green")).await;
    create::<Service>(
        &ns,
        "metadata: {name: web}\nspec: {selector: {app: web, color: blue}, ports: [{port: 80, targetPort: http}]}",
    )
    .await;
    available(&ns, "web-blue").await;
    available(&ns, "web-green").await;

    let service_url = format!("http://web.{}.svc:80/index.html", ns.name);
    let url = services::resolve_url_when_ready(&service_url, Duration::from_secs(10))
        .await
        .expect("resolves");
    for _ in 0..4 {
        assert_eq!(
            http_get(&url).await.expect("the Service answers"),
            (200, "blue\n".to_string())
        );
    }

    let patch = serde_json::json!({"spec": {"selector": {"app": "web", "color": "green"}}});
    let patched_at = Instant::now();
    api::<Service>(&ns)
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let moved_after = eventually(Duration::from_secs(5), "traffic to move to green", || async {
        let (_, body) = http_get(&url).await.ok()?;
        (body == "green\n").then(|| patched_at.elapsed())
    })
    .await;
    assert!(
        moved_after < Duration::from_secs(1),
        "traffic moved after {moved_after:?}"
    );
    for _ in 0..4 {
        assert_eq!(
            http_get(&url).await.unwrap().1,
            "green\n",
            "no request goes to blue any more"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_job_kills_its_processes() {
    let ns = namespace("node-kill").await;
    create::<Job>(
        &ns,
        r#"
metadata: {name: long}
spec:
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: ignored
        # A child that ignores SIGTERM, and a grandchild: the whole group must go.
        command: [sh, -c, "sh -c 'trap \"\" TERM; sleep 300' & sleep 301 & wait"]
"#,
    )
    .await;
    let pod = eventually(Duration::from_secs(20), "the Job's Pod to run", || async {
        job_pods(&ns, "long")
            .await
            .into_iter()
            .find(|p| phase(p) == "Running")
    })
    .await;
    let name = pod.metadata.name.clone().unwrap();
    let pids = eventually(Duration::from_secs(5), "the Pod's processes", || async {
        let pids = processes_of_pod(&name);
        (pids.len() >= 3).then_some(pids)
    })
    .await;

    api::<Job>(&ns)
        .delete("long", &DeleteParams::background())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the Pod's processes to be gone",
        || async { processes_of_pod(&name).is_empty().then_some(()) },
    )
    .await;
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists() || processes_of_pod(&name).is_empty()
        );
    }
    eventually(
        Duration::from_secs(30),
        "the Pod object to be removed",
        || async { pod_gone(&ns, &name).await.then_some(()) },
    )
    .await;
}

async fn pod_gone(ns: &TestNamespace, name: &str) -> bool {
    matches!(api::<Pod>(ns).get_opt(name).await, Ok(None))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_is_bound_and_its_files_outlive_the_pod() {
    let ns = namespace("node-pvc").await;
    create::<PersistentVolumeClaim>(
        &ns,
        "metadata: {name: data}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}",
    )
    .await;
    let writer = r#"
metadata: {name: NAME}
spec:
  restartPolicy: Never
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
  containers:
  - name: main
    image: ignored
    command: [sh, -c, 'SCRIPT']
    volumeMounts: [{name: data, mountPath: /var/lib/lifeboat-test-data}]
"#;
    create::<Pod>(
        &ns,
        &writer
            .replace("NAME", "write")
            .replace("SCRIPT", "echo kept > /var/lib/lifeboat-test-data/file"),
    )
    .await;
    assert_eq!(phase(&finished_pod(&ns, "write").await), "Succeeded");
    create::<Pod>(
        &ns,
        &writer.replace("NAME", "read").replace(
            "SCRIPT",
            "cat /var/lib/lifeboat-test-data/file > /dev/termination-log",
        ),
    )
    .await;
    let read = finished_pod(&ns, "read").await;
    assert_eq!(
        terminated(&read, "main").unwrap().message.as_deref(),
        Some("kept\n")
    );
    let claim = api::<PersistentVolumeClaim>(&ns).get("data").await.unwrap();
    assert_eq!(claim.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
}
