//! What the real-node suites share: a PostgreSQL Pod from the test image, host-directory volumes, psql
//! through `kubectl exec`, waiting for a Backup to end.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use lifeboat::api::backup::BackupPhase;
use lifeboat::api::restore::RestorePhase;
use lifeboat::api::{Backup, BackupPolicy, Restore};
use serde_json::{json, Value};

use super::installed::{on_real_node, InstalledOperator, MARIADB_IMAGE, POSTGRES_IMAGE, REAL_NODE};
use super::wait::eventually;
use super::{run_ok, Cluster, TestNamespace};

/// The password of the `postgres` user in the PostgreSQL Pod.
pub const DB_PASSWORD: &str = "guest-book-password";

/// `restricted_container` with a numeric user, for images whose user the kubelet cannot check by name.
pub fn restricted_container_as(uid: i64) -> Value {
    let mut context = restricted_container();
    context["runAsUser"] = json!(uid);
    context
}

/// What Pod Security `restricted` asks of every container, for the test's own Pods.
pub fn restricted_container() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": true,
        "seccompProfile": {"type": "RuntimeDefault"}
    })
}

/// A test namespace (Pod Security `restricted`) whose Pods all go to the real node, by the
/// PodNodeSelector / PodTolerationRestriction annotations rather than placement lines in every object
/// (the only node today; the annotations keep the tests right when the cluster has more).
pub async fn namespace(cluster: &Cluster, prefix: &str) -> TestNamespace {
    let ns = cluster.namespace(prefix).await.expect("namespace");
    pods_go_to_the_real_node(&ns).await;
    ns
}

/// Annotates `ns` so that every Pod created in it lands on the real node.
pub async fn pods_go_to_the_real_node(ns: &TestNamespace) {
    let placement = on_real_node();
    let annotations = json!({"metadata": {"annotations": {
        "scheduler.alpha.kubernetes.io/node-selector": format!("kubernetes.io/hostname={REAL_NODE}"),
        "scheduler.alpha.kubernetes.io/defaultTolerations": placement["tolerations"].to_string(),
    }}});
    Api::<Namespace>::all(ns.client.clone())
        .patch(&ns.name, &PatchParams::default(), &Patch::Merge(&annotations))
        .await
        .expect("annotate the namespace");
}

/// The password of MariaDB's `root` in the MariaDB Pod.
pub const MARIADB_PASSWORD: &str = "crm-root-password";

/// MariaDB 10.11 from the test image as a Pod with a Service `mariadb`, on the real node.
pub async fn mariadb(ns: &TestNamespace) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "mariadb", "labels": {"app": "mariadb"}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "securityContext": {"runAsUser": 999, "runAsGroup": 999, "fsGroup": 999},
            "containers": [{
                "name": "mariadb", "image": MARIADB_IMAGE, "imagePullPolicy": "Never",
                "env": [{"name": "MARIADB_ROOT_PASSWORD", "value": MARIADB_PASSWORD}],
                "ports": [{"containerPort": 3306}],
                "readinessProbe": {"tcpSocket": {"port": 3306}, "periodSeconds": 1},
                "securityContext": restricted_container(),
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/mysql/data"},
                                 {"name": "tmp", "mountPath": "/tmp"}]
            }],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
        }
    }))
    .expect("a Pod");
    ns.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .expect("create the MariaDB Pod (Pod Security restricted must admit it)");
    let service = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "mariadb"},
        "spec": {"selector": {"app": "mariadb"}, "ports": [{"port": 3306, "targetPort": 3306}]}
    });
    ns.api::<k8s_openapi::api::core::v1::Service>()
        .create(&PostParams::default(), &serde_json::from_value(service).unwrap())
        .await
        .expect("create the mariadb Service");
}

/// SQL run by the `mariadb` client inside the MariaDB Pod, as root over its socket; tab-separated rows.
pub fn mariadb_sql(cluster: &Cluster, ns: &TestNamespace, database: Option<&str>, sql: &str) -> String {
    let mut command = cluster.kubectl();
    command
        .args(["-n", &ns.name, "exec", "mariadb", "--"])
        .args(["mariadb", "--no-defaults", "-S", "/tmp/mysqld.sock", "-u", "root"])
        .arg(format!("-p{MARIADB_PASSWORD}"))
        .args(["-N", "-B", "-e", sql]);
    command.args(database);
    run_ok("mariadb through kubectl exec", &mut command)
}

/// PostgreSQL 15 from the test image as a Pod with a Service `db`, on the real node.
pub async fn postgres(ns: &TestNamespace) {
    let placement = on_real_node();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "db", "labels": {"app": "db"}},
        "spec": {
            "nodeSelector": placement["nodeSelector"],
            "tolerations": placement["tolerations"],
            "terminationGracePeriodSeconds": 2,
            "securityContext": {"runAsUser": 999, "runAsGroup": 999, "fsGroup": 999},
            "containers": [{
                "name": "postgres", "image": POSTGRES_IMAGE, "imagePullPolicy": "Never",
                "env": [{"name": "POSTGRES_PASSWORD", "value": DB_PASSWORD}],
                "ports": [{"containerPort": 5432}],
                "readinessProbe": {"tcpSocket": {"port": 5432}, "periodSeconds": 1},
                "securityContext": restricted_container(),
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]
            }],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    }))
    .expect("a Pod");
    ns.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .expect("create the PostgreSQL Pod (Pod Security restricted must admit it)");
    let service = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
        "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432, "targetPort": 5432}]}
    });
    ns.api::<k8s_openapi::api::core::v1::Service>()
        .create(&PostParams::default(), &serde_json::from_value(service).unwrap())
        .await
        .expect("create the db Service");
}

/// Waits until the PostgreSQL Pod is Ready (it accepts connections).
pub async fn postgres_ready(ns: &TestNamespace, operator: &InstalledOperator) {
    pod_ready(ns, "db", operator).await;
}

/// Waits until Pod `name` is Ready (for the database Pods: their server accepts TCP connections, which
/// their entrypoints allow only once the accounts are set up).
pub async fn pod_ready(ns: &TestNamespace, name: &str, operator: &InstalledOperator) {
    eventually(
        &format!("Pod {name} Ready"),
        Duration::from_secs(120),
        operator,
        async || {
            let pod = ns.api::<Pod>().get(name).await.map_err(|e| e.to_string())?;
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            ready.then_some(()).ok_or_else(|| format!("{:?}", pod.status))
        },
    )
    .await;
}

pub fn psql(cluster: &Cluster, ns: &TestNamespace, sql: &str) -> String {
    psql_in(cluster, ns, "postgres", sql)
}

/// `database` created afresh in the PostgreSQL Pod.
pub fn create_database(cluster: &Cluster, ns: &TestNamespace, database: &str) {
    psql(
        cluster,
        ns,
        &format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"),
    );
    psql(cluster, ns, &format!("CREATE DATABASE \"{database}\""));
}

/// A table's full content in a canonical order, for row-for-row comparison.
pub fn table_content(cluster: &Cluster, ns: &TestNamespace, database: &str, table: &str) -> String {
    psql_in(
        cluster,
        ns,
        database,
        &format!("select t::text from {table} t order by t::text"),
    )
}

pub fn psql_in(cluster: &Cluster, ns: &TestNamespace, database: &str, sql: &str) -> String {
    run_ok(
        "psql through kubectl exec",
        cluster
            .kubectl()
            .args(["-n", &ns.name, "exec", "db", "--"])
            .args([
                "psql",
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "/tmp",
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ]),
    )
}

/// A static PersistentVolume on the real node (a directory of the cluster's) bound to claim `claim`.
pub async fn host_claim(cluster: &Cluster, ns: &TestNamespace, claim: &str) -> std::path::PathBuf {
    let volume = format!("{}-{claim}", ns.name);
    let dir = localcluster::control_plane::cluster_dir()
        .join("volumes")
        .join(&volume);
    std::fs::create_dir_all(&dir).expect("create the volume directory");
    // The agent runs as uid 65532; the directory is the volume's root.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("open the volume directory");
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": volume, "labels": {"lifeboat.dev/test": "true"}},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": dir, "type": "Directory"},
            "claimRef": {"namespace": ns.name, "name": claim}
        }
    }))
    .expect("a PersistentVolume");
    let client = cluster.client().await.expect("client");
    Api::<PersistentVolume>::all(client)
        .create(&PostParams::default(), &pv)
        .await
        .expect("create the PersistentVolume");
    let claim = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "volumeName": volume,
                 "resources": {"requests": {"storage": "1Gi"}}}
    });
    ns.api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>()
        .create(&PostParams::default(), &serde_json::from_value(claim).unwrap())
        .await
        .expect("create the claim");
    dir
}

/// The Backup's status once it ended (Succeeded or Failed).
pub async fn backup_ended(
    ns: &TestNamespace,
    name: &str,
    within: Duration,
    operator: &InstalledOperator,
) -> lifeboat::api::backup::BackupStatus {
    let ended = |s: &lifeboat::api::backup::BackupStatus| {
        matches!(s.phase, Some(BackupPhase::Succeeded | BackupPhase::Failed))
    };
    status_once(ns, name, within, operator, |b: Backup| b.status, ended).await
}

/// The Restore's status once it ended (Succeeded or Failed).
pub async fn restore_ended(
    ns: &TestNamespace,
    name: &str,
    within: Duration,
    operator: &InstalledOperator,
) -> lifeboat::api::restore::RestoreStatus {
    let ended = |s: &lifeboat::api::restore::RestoreStatus| {
        matches!(s.phase, Some(RestorePhase::Succeeded | RestorePhase::Failed))
    };
    status_once(ns, name, within, operator, |r: Restore| r.status, ended).await
}

/// The object's status once `done` holds for it.
async fn status_once<K, S>(
    ns: &TestNamespace,
    name: &str,
    within: Duration,
    operator: &InstalledOperator,
    status_of: impl Fn(K) -> Option<S>,
    done: impl Fn(&S) -> bool,
) -> S
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
    S: Default + std::fmt::Debug,
{
    let what = format!("{} {name} ends", K::kind(&K::DynamicType::default()));
    eventually(&what, within, operator, async || {
        let object = ns.api::<K>().get(name).await.map_err(|e| e.to_string())?;
        let status = status_of(object).unwrap_or_default();
        if done(&status) {
            Ok(status)
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await
}

/// About 40 MiB of dump: table `lines` in `database`.
pub fn fill_lines(cluster: &Cluster, ns: &TestNamespace, database: &str) {
    psql_in(
        cluster,
        ns,
        database,
        "create table lines as select i, md5(i::text) || md5((i * 7)::text) || md5((i * 13)::text) as text \
         from generate_series(1, 400000) i",
    );
}

/// A BackupPolicy `name` of the PostgreSQL Pod's `database`: see `create_slow_policy`.
pub async fn create_slow_dump_policy(ns: &TestNamespace, name: &str, database: &str, schedule: &str) {
    let source = json!({"postgres": {"host": "db", "database": database, "user": "postgres",
                                     "passwordSecretRef": {"name": "db", "key": "password"}}});
    create_slow_policy(ns, name, source, schedule).await;
}

/// A BackupPolicy `name` of `source` into /repository/NAME on claim `backups`, its Jobs on the real node
/// limited to 50m CPU: a dump of `lines` takes some 40 s, long enough to watch its progress (the
/// operator reads it every 10 s) or to restart the node under it.
pub async fn create_slow_policy(ns: &TestNamespace, name: &str, source: Value, schedule: &str) {
    let placement = on_real_node();
    let policy: BackupPolicy = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "source": source,
            "repository": super::node_restore::claim_repository(name),
            "jobTemplate": {"nodeSelector": placement["nodeSelector"], "tolerations": placement["tolerations"],
                            "imagePullPolicy": "Never",
                            "resources": {"limits": {"cpu": "50m", "memory": "256Mi"}}}
        }
    }))
    .expect("a BackupPolicy");
    ns.api::<BackupPolicy>()
        .create(&PostParams::default(), &policy)
        .await
        .expect("create the policy");
}

/// The node's busybox image (`lifeboat.local/busybox:<version>`, imported by cluster-up): a shell with
/// sleep, tee and wget, for Jobs that stand in for a user's migration or smoke test.
pub fn busybox_image() -> String {
    let file = localcluster::control_plane::cache_dir().join("node-images/busybox.version");
    let version =
        std::fs::read_to_string(&file).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
    format!("lifeboat.local/busybox:{}", version.trim())
}
