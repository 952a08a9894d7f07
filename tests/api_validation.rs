//! The apiserver itself refuses bad Lifeboat specs at `kubectl apply` time, with a message that names the
//! field and says what to fix; good specs, status writes and printer columns work as a user expects.
//! Runs against the real local control plane (etcd + kube-apiserver + controller-manager).

// lifeboat-test: alone (writes status itself, so no operator may run beside it; hack/run-tests.sh)

mod support;

use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use lifeboat::api::{Backup, BackupPolicy, Cutover, Restore, RestoreDrill};
use serde_json::{json, Value};

fn resource_of<K: Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

fn valid_policy() -> Value {
    json!({
        "schedule": "0 2 * * *",
        "timeZone": "Europe/Prague",
        "source": {"postgres": {"host": "db.hotel.svc", "database": "hotel", "user": "kajovo",
                                 "passwordSecretRef": {"name": "db", "key": "password"}}},
        "repository": {"restic": {"repository": "/backups/hotel", "passwordSecretRef": {"name": "restic", "key": "password"}}},
        "retention": {"keepLast": 7},
        "rpo": "24h"
    })
}

fn valid_restore() -> Value {
    json!({
        "source": {"policyRef": {"name": "hotel-db"}},
        "target": {"postgres": {"host": "db", "database": "hotel_restored", "user": "kajovo",
                                "passwordSecretRef": {"name": "db", "key": "password"}}}
    })
}

fn valid_drill() -> Value {
    json!({
        "schedule": "0 3 1 * *",
        "policyRef": {"name": "hotel-db"},
        "target": {"postgres": {"host": "db", "database": "verify_hotel", "user": "kajovo",
                                "passwordSecretRef": {"name": "db", "key": "password"}}},
        "rto": "2h", "rpo": "24h"
    })
}

fn valid_cutover() -> Value {
    json!({
        "trafficSwitch": {"service": {"name": "web"}},
        "from": {"selector": {"app": "web", "track": "blue"}, "deployment": "web-blue"},
        "to": {"selector": {"app": "web", "track": "green"}, "deployment": "web-green"},
        "verify": [{"name": "health", "http": {"url": "http://web.hotel.svc/health"}}],
        "stabilization": {"duration": "5m", "interval": "10s",
                          "prometheus": {"address": "http://prometheus:9090",
                                         "queries": [{"name": "error-rate", "query": "vector(0)", "max": 0.001}]}}
    })
}

/// `base` with the value at each JSON pointer replaced (Value::Null removes the key).
fn with(mut base: Value, changes: &[(&str, Value)]) -> Value {
    for (pointer, value) in changes {
        let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
        let target = base
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("no {parent} in spec"));
        let object = target.as_object_mut().expect("parent is an object");
        if value.is_null() {
            object.remove(key);
        } else {
            object.insert(key.to_owned(), value.clone());
        }
    }
    base
}

struct Invalid {
    case: &'static str,
    resource: ApiResource,
    spec: Value,
    /// Every fragment must appear in the apiserver's message (the field path and what to fix).
    expect: &'static [&'static str],
}

fn invalid_specs() -> Vec<Invalid> {
    let bp = resource_of::<BackupPolicy>;
    let rst = resource_of::<Restore>;
    let cut = resource_of::<Cutover>;
    let pg =
        json!({"host": "db", "database": "d", "user": "u", "passwordSecretRef": {"name": "s", "key": "k"}});
    vec![
        Invalid {
            case: "six-field cron (with seconds)",
            resource: bp(),
            spec: with(valid_policy(), &[("/schedule", json!("0 0 2 * * *"))]),
            expect: &["spec.schedule", "should match"],
        },
        Invalid {
            case: "a repository on a claim but outside its mount",
            resource: bp(),
            spec: with(
                valid_policy(),
                &[("/repository/restic/persistentVolumeClaim", json!("backups"))],
            ),
            expect: &["spec.repository.restic", "a path under /repository"],
        },
        Invalid {
            case: "cron in words",
            resource: bp(),
            spec: with(valid_policy(), &[("/schedule", json!("every night"))]),
            expect: &["spec.schedule"],
        },
        Invalid {
            case: "two source kinds",
            resource: bp(),
            spec: with(valid_policy(), &[("/source/mysql", pg.clone())]),
            expect: &["spec.source", "exactly one of source.postgres"],
        },
        Invalid {
            case: "no source kind",
            resource: bp(),
            spec: with(valid_policy(), &[("/source", json!({}))]),
            expect: &["spec.source", "exactly one of"],
        },
        Invalid {
            case: "zero RPO",
            resource: bp(),
            spec: with(valid_policy(), &[("/rpo", json!("0h"))]),
            expect: &["spec.rpo", "greater than zero"],
        },
        Invalid {
            case: "RPO in words",
            resource: bp(),
            spec: with(valid_policy(), &[("/rpo", json!("24 hours"))]),
            expect: &["spec.rpo", "should match"],
        },
        Invalid {
            case: "negative retention",
            resource: bp(),
            spec: with(valid_policy(), &[("/retention", json!({"keepLast": -1}))]),
            expect: &["spec.retention.keepLast", "greater than or equal to 0"],
        },
        Invalid {
            case: "retention without any rule",
            resource: bp(),
            spec: with(valid_policy(), &[("/retention", json!({}))]),
            expect: &["spec.retention", "at least one keep"],
        },
        Invalid {
            case: "size band upside down",
            resource: bp(),
            spec: with(
                valid_policy(),
                &[("/sizeAnomaly", json!({"minRatio": 1.0, "maxRatio": 1.0}))],
            ),
            expect: &["spec.sizeAnomaly", "minRatio must be smaller than maxRatio"],
        },
        Invalid {
            case: "unknown concurrency policy",
            resource: bp(),
            spec: with(valid_policy(), &[("/concurrencyPolicy", json!("Sometimes"))]),
            expect: &["spec.concurrencyPolicy", "Forbid"],
        },
        Invalid {
            case: "port out of range",
            resource: bp(),
            spec: with(valid_policy(), &[("/source/postgres/port", json!(70000))]),
            expect: &["spec.source.postgres.port"],
        },
        Invalid {
            case: "time zone with a space",
            resource: bp(),
            spec: with(valid_policy(), &[("/timeZone", json!("Europe Prague"))]),
            expect: &["spec.timeZone"],
        },
        Invalid {
            case: "negative history limit",
            resource: bp(),
            spec: with(valid_policy(), &[("/failedBackupsHistoryLimit", json!(-1))]),
            expect: &["spec.failedBackupsHistoryLimit"],
        },
        Invalid {
            case: "backup without a policy",
            resource: resource_of::<Backup>(),
            spec: json!({"reason": "by hand"}),
            expect: &["spec.policyRef", "Required value"],
        },
        Invalid {
            case: "restore from a backup and a policy",
            resource: rst(),
            spec: with(valid_restore(), &[("/source/backupRef", json!({"name": "b"}))]),
            expect: &[
                "spec.source",
                "exactly one of source.backupRef or source.policyRef",
            ],
        },
        Invalid {
            case: "snapshot with a backupRef",
            resource: rst(),
            spec: with(
                valid_restore(),
                &[(
                    "/source",
                    json!({"backupRef": {"name": "b"}, "snapshot": "latest"}),
                )],
            ),
            expect: &["spec.source", "source.snapshot needs source.policyRef"],
        },
        Invalid {
            case: "restore into two targets",
            resource: rst(),
            spec: with(valid_restore(), &[("/target/mysql", pg.clone())]),
            expect: &["spec.target", "exactly one of postgres, mysql or files"],
        },
        Invalid {
            // Hostile input: a verify query of megabytes (a paste accident, or an attempt to bloat etcd).
            case: "a 2 MB verify query",
            resource: rst(),
            spec: with(
                valid_restore(),
                &[(
                    "/verify",
                    json!({"queries": [{"name": "huge", "sql": format!("select {}", "1+".repeat(1 << 20))}]}),
                )],
            ),
            expect: &["spec.verify.queries[0].sql", "may not be more than 4096 bytes"],
        },
        Invalid {
            // Hostile input: a short id prefix could match two snapshots; only 8 or 64 hex digits pass.
            case: "a snapshot id prefix shorter than 8 hex digits",
            resource: rst(),
            spec: with(valid_restore(), &[("/source/snapshot", json!("4f1"))]),
            expect: &["spec.source.snapshot", "should match"],
        },
        Invalid {
            case: "snapshot id that is not one",
            resource: rst(),
            spec: with(valid_restore(), &[("/source/snapshot", json!("yesterday"))]),
            expect: &["spec.source.snapshot"],
        },
        Invalid {
            case: "negative RTO",
            resource: resource_of::<RestoreDrill>(),
            spec: with(valid_drill(), &[("/rto", json!("-5m"))]),
            expect: &["spec.rto"],
        },
        Invalid {
            case: "overwrite confirmed for another database",
            resource: rst(),
            spec: with(valid_restore(), &[("/confirmOverwrite", json!("hotel"))]),
            expect: &["spec", "confirmOverwrite must repeat the target database's name"],
        },
        Invalid {
            case: "overwrite confirmed for a scratch target",
            resource: rst(),
            spec: with(
                valid_restore(),
                &[
                    ("/target", json!({"scratch": {"engine": "postgres"}})),
                    ("/confirmOverwrite", json!("restore")),
                ],
            ),
            expect: &["spec", "confirmOverwrite must repeat"],
        },
        Invalid {
            case: "keepScratch without a scratch target",
            resource: rst(),
            spec: with(valid_restore(), &[("/keepScratch", json!(true))]),
            expect: &["spec", "keepScratch only applies to a target.scratch"],
        },
        Invalid {
            case: "an existing server and a scratch server",
            resource: rst(),
            spec: with(
                valid_restore(),
                &[("/target/scratch", json!({"engine": "postgres"}))],
            ),
            expect: &["spec.target", "exactly one of postgres, mysql or files"],
        },
        Invalid {
            case: "scratch engine that is not one",
            resource: rst(),
            spec: with(
                valid_restore(),
                &[("/target", json!({"scratch": {"engine": "oracle"}}))],
            ),
            expect: &["spec.target.scratch.engine", "postgres"],
        },
        Invalid {
            case: "drill into a database that is not a verify_ one",
            resource: resource_of::<RestoreDrill>(),
            spec: with(valid_drill(), &[("/target/postgres/database", json!("hotel"))]),
            expect: &["spec", "name it verify_"],
        },
        Invalid {
            case: "from and to are the same side",
            resource: cut(),
            spec: with(
                valid_cutover(),
                &[("/to/selector", json!({"app": "web", "track": "blue"}))],
            ),
            expect: &["spec", "must differ"],
        },
        Invalid {
            case: "two traffic switch targets",
            resource: cut(),
            spec: with(
                valid_cutover(),
                &[("/trafficSwitch/ingress", json!({"name": "web"}))],
            ),
            expect: &["spec.trafficSwitch", "exactly one of trafficSwitch.service"],
        },
        Invalid {
            case: "no traffic switch target",
            resource: cut(),
            spec: with(valid_cutover(), &[("/trafficSwitch", json!({}))]),
            expect: &["spec.trafficSwitch", "exactly one of"],
        },
        Invalid {
            case: "check that is both http and job",
            resource: cut(),
            spec: with(
                valid_cutover(),
                &[(
                    "/verify",
                    json!([{"name": "health", "http": {"url": "http://x/health"},
                "job": {"image": "i", "command": ["true"]}}]),
                )],
            ),
            expect: &["spec.verify[0]", "exactly one of http or job"],
        },
        Invalid {
            case: "migration job without a command",
            resource: cut(),
            spec: with(
                valid_cutover(),
                &[("/migration", json!({"job": {"image": "app:2"}}))],
            ),
            expect: &["spec.migration.job.command", "Required value"],
        },
        Invalid {
            case: "zero failure threshold",
            resource: cut(),
            spec: with(valid_cutover(), &[("/stabilization/failureThreshold", json!(0))]),
            expect: &["spec.stabilization.failureThreshold"],
        },
        Invalid {
            case: "prometheus query without a threshold",
            resource: cut(),
            spec: with(
                valid_cutover(),
                &[(
                    "/stabilization/prometheus/queries",
                    json!([{"name": "errors", "query": "vector(1)"}]),
                )],
            ),
            expect: &["spec.stabilization.prometheus.queries[0]", "needs min or max"],
        },
        Invalid {
            case: "check name with spaces",
            resource: cut(),
            spec: with(valid_cutover(), &[("/verify/0/name", json!("Health Check"))]),
            expect: &["spec.verify[0].name"],
        },
        Invalid {
            case: "http check that is not a URL",
            resource: cut(),
            spec: with(
                valid_cutover(),
                &[("/verify/0/http/url", json!("web.hotel.svc/health"))],
            ),
            expect: &["spec.verify[0].http.url"],
        },
        Invalid {
            case: "http check with an unknown method",
            resource: cut(),
            spec: with(valid_cutover(), &[("/verify/0/http/method", json!("FETCH"))]),
            expect: &["spec.verify[0].http.method", "Unsupported value"],
        },
        Invalid {
            case: "http check retried forever",
            resource: cut(),
            spec: with(valid_cutover(), &[("/verify/0/http/retries", json!(1000))]),
            expect: &["spec.verify[0].http.retries"],
        },
        Invalid {
            case: "ingress switch without the sides' Services",
            resource: cut(),
            spec: with(
                valid_cutover(),
                &[("/trafficSwitch", json!({"ingress": {"name": "web"}}))],
            ),
            expect: &["spec", "from.service and to.service"],
        },
    ]
}

fn object(resource: &ApiResource, name: &str, spec: Value) -> DynamicObject {
    let mut object = DynamicObject::new(name, resource);
    object.data = json!({ "spec": spec });
    object
}

fn api_error_message(error: kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message,
        other => panic!("expected the apiserver to refuse with a message, got {other}"),
    }
}

#[tokio::test]
async fn the_apiserver_refuses_each_invalid_spec_naming_the_field() {
    let cluster = support::cluster_with_crds();
    let ns = cluster.namespace("invalid").await.unwrap();
    let table = invalid_specs();
    assert!(table.len() >= 15);
    let mut failures = Vec::new();
    for (index, case) in table.into_iter().enumerate() {
        let api: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &case.resource);
        match api
            .create(
                &PostParams::default(),
                &object(&case.resource, &format!("case-{index}"), case.spec),
            )
            .await
        {
            Ok(_) => failures.push(format!("{}: accepted", case.case)),
            Err(error) => {
                let message = api_error_message(error);
                let missing: Vec<_> = case.expect.iter().filter(|f| !message.contains(**f)).collect();
                if !missing.is_empty() {
                    failures.push(format!("{}: message lacks {missing:?}: {message}", case.case));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn the_valid_base_specs_are_accepted() {
    let cluster = support::cluster_with_crds();
    let ns = cluster.namespace("valid").await.unwrap();
    for (resource, spec) in [
        (resource_of::<BackupPolicy>(), valid_policy()),
        (resource_of::<Restore>(), valid_restore()),
        (resource_of::<RestoreDrill>(), valid_drill()),
        (resource_of::<Cutover>(), valid_cutover()),
        (
            resource_of::<Backup>(),
            json!({"policyRef": {"name": "hotel-db"}}),
        ),
    ] {
        let api: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &resource);
        api.create(&PostParams::default(), &object(&resource, "base", spec))
            .await
            .unwrap_or_else(|error| panic!("{}: {error}", resource.kind));
    }
}

#[tokio::test]
async fn every_example_in_deploy_examples_is_accepted_and_listed_under_the_lifeboat_category() {
    let cluster = support::cluster_with_crds();
    let ns = cluster.namespace("examples").await.unwrap();
    let examples = support::repo_path("deploy/examples");
    support::run_ok(
        "kubectl apply examples",
        cluster
            .kubectl()
            .args(["apply", "-n", &ns.name, "-f"])
            .arg(&examples),
    );
    let listed = support::run_ok(
        "kubectl get lifeboat",
        cluster
            .kubectl()
            .args(["get", "lifeboat", "-n", &ns.name, "-o", "name"]),
    );
    for expected in [
        "backuppolicy.lifeboat.dev/hotel-db",
        "backuppolicy.lifeboat.dev/crm-db",
        "backuppolicy.lifeboat.dev/crm-uploads",
        "backuppolicy.lifeboat.dev/app-db",
        "backup.lifeboat.dev/hotel-db-before-release-2-4",
        "restore.lifeboat.dev/hotel-db-restore",
        "restoredrill.lifeboat.dev/hotel-db-monthly",
        "cutover.lifeboat.dev/hotel-web-2-4",
    ] {
        assert!(
            listed.lines().any(|line| line == expected),
            "{expected} missing from:\n{listed}"
        );
    }
}

#[tokio::test]
async fn status_is_written_through_the_status_subresource_and_shown_in_printer_columns() {
    let cluster = support::cluster_with_crds();
    let ns = cluster.namespace("status").await.unwrap();
    let cutovers: Api<Cutover> = ns.api();
    let cutover: Cutover = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Cutover",
        "metadata": {"name": "web-2-4"}, "spec": valid_cutover()
    }))
    .unwrap();
    cutovers.create(&PostParams::default(), &cutover).await.unwrap();

    let status = json!({"status": {
        "observedGeneration": 1, "phase": "Stabilizing", "step": "stabilization", "active": "to",
        "conditions": [{"type": "Ready", "status": "False", "reason": "Stabilizing", "message": "watching for 5m",
                        "lastTransitionTime": "2026-11-23T10:00:00Z", "observedGeneration": 1}],
        "steps": [{"name": "switch", "phase": "Succeeded", "startTime": "2026-11-23T10:00:00Z",
                   "completionTime": "2026-11-23T10:00:01Z", "message": "service web: track blue -> green"}]
    }});
    let patched = cutovers
        .patch_status("web-2-4", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let written = patched.status.expect("status is stored");
    assert_eq!(written.step.as_deref(), Some("stabilization"));
    assert_eq!(written.steps.len(), 1);
    assert_eq!(written.conditions.0[0].type_, "Ready");

    // A spec change sent to /status is ignored: status writers cannot edit what the user asked for.
    let sneaky = json!({"spec": {"abort": true}, "status": {"step": "verify"}});
    let after = cutovers
        .patch_status("web-2-4", &PatchParams::default(), &Patch::Merge(&sneaky))
        .await
        .unwrap();
    assert!(!after.spec.abort);

    let table = support::run_ok(
        "kubectl get cutover",
        cluster.kubectl().args(["get", "cut", "-n", &ns.name]),
    );
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "PHASE", "STEP", "ACTIVE", "AGE"], "{table}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["web-2-4", "Stabilizing", "verify", "to"], "{table}");
}

#[tokio::test]
async fn each_kind_prints_the_columns_a_user_checks_first() {
    let cluster = support::cluster_with_crds();
    let ns = cluster.namespace("columns").await.unwrap();
    support::run_ok(
        "kubectl apply examples",
        cluster
            .kubectl()
            .args(["apply", "-n", &ns.name, "-f"])
            .arg(support::repo_path("deploy/examples")),
    );
    for (short_name, columns) in [
        (
            "bp",
            &[
                "NAME",
                "SCHEDULE",
                "READY",
                "STALE",
                "LAST SUCCESS",
                "NEXT",
                "AGE",
            ][..],
        ),
        (
            "bk",
            &[
                "NAME", "POLICY", "PHASE", "SIZE", "PROGRESS", "SNAPSHOT", "DURATION", "AGE",
            ][..],
        ),
        (
            "rst",
            &[
                "NAME", "PHASE", "SNAPSHOT", "PROGRESS", "VERIFIED", "DURATION", "AGE",
            ][..],
        ),
        (
            "drill",
            &[
                "NAME",
                "SCHEDULE",
                "PASSED",
                "RTO",
                "RPO",
                "OVERDUE",
                "LAST DRILL",
                "AGE",
            ][..],
        ),
    ] {
        let table = support::run_ok(
            short_name,
            cluster.kubectl().args(["get", short_name, "-n", &ns.name]),
        );
        let header = table.lines().next().unwrap_or_default();
        let found: Vec<&str> = header
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(found, columns, "kubectl get {short_name}:\n{table}");
    }
}

#[tokio::test]
async fn a_started_cutover_refuses_a_new_target_but_a_pending_one_may_change() {
    let cluster = support::cluster_with_crds();
    let ns = cluster.namespace("immutable").await.unwrap();
    let cutovers: Api<Cutover> = ns.api();
    let cutover: Cutover = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Cutover",
        "metadata": {"name": "web"}, "spec": valid_cutover()
    }))
    .unwrap();
    cutovers.create(&PostParams::default(), &cutover).await.unwrap();

    let to_orange =
        json!({"spec": {"to": {"selector": {"app": "web", "track": "orange"}, "deployment": "web-orange"}}});
    cutovers
        .patch("web", &PatchParams::default(), &Patch::Merge(&to_orange))
        .await
        .expect("before it starts, a Cutover's target may still change");

    cutovers
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"phase": "Preflight"}})),
        )
        .await
        .unwrap();
    let to_green =
        json!({"spec": {"to": {"selector": {"app": "web", "track": "green"}, "deployment": "web-green"}}});
    let error = cutovers
        .patch("web", &PatchParams::default(), &Patch::Merge(&to_green))
        .await
        .unwrap_err();
    let message = api_error_message(error);
    assert!(
        message.contains("spec.to") && message.contains("cannot change once the Cutover has started"),
        "{message}"
    );

    // Fields that are not part of the switch can still change, e.g. abort.
    cutovers
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"abort": true}})),
        )
        .await
        .expect("abort stays possible mid-run");
}

#[tokio::test]
async fn a_started_cutover_keeps_its_checks_and_steps_but_takes_a_go_or_an_abort() {
    let cluster = support::cluster_with_crds();
    let ns = cluster.namespace("frozen").await.unwrap();
    let cutovers: Api<Cutover> = ns.api();
    let spec = with(
        valid_cutover(),
        &[
            (
                "/preflight",
                json!([{"name": "ping", "http": {"url": "http://web.hotel.svc/ready"}}]),
            ),
            ("/approval", json!({"required": true, "minApprovals": 2})),
        ],
    );
    let cutover: Cutover = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Cutover",
        "metadata": {"name": "web"}, "spec": spec
    }))
    .unwrap();
    cutovers.create(&PostParams::default(), &cutover).await.unwrap();
    cutovers
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"verify": []}})),
        )
        .await
        .expect("before it starts, a Cutover's checks may still change");
    cutovers
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"verify": valid_cutover()["verify"]}})),
        )
        .await
        .unwrap();
    cutovers
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"phase": "Verifying"}})),
        )
        .await
        .unwrap();

    // Each edit that would let a run skip what it was started with is refused, naming the field.
    for (field, edit) in [
        ("spec.verify", json!({"spec": {"verify": null}})),
        ("spec.preflight", json!({"spec": {"preflight": []}})),
        (
            "spec.stabilization",
            json!({"spec": {"stabilization": {"duration": "1s"}}}),
        ),
        (
            "spec.migration",
            json!({"spec": {"migration": {"job": {"image": "app:2", "command": ["true"]}}}}),
        ),
        (
            "spec.rollback",
            json!({"spec": {"rollback": {"automatic": false}}}),
        ),
        ("spec.dryRun", json!({"spec": {"dryRun": true}})),
        (
            "spec.approval",
            json!({"spec": {"approval": {"required": false}}}),
        ),
        // Fewer sign-offs than the run was started with would pass the gate early.
        (
            "spec.approval",
            json!({"spec": {"approval": {"minApprovals": 1, "requiredGroups": ["qa"]}}}),
        ),
    ] {
        let error = cutovers
            .patch("web", &PatchParams::default(), &Patch::Merge(&edit))
            .await
            .expect_err(&format!("{field} changed mid-run"));
        let message = api_error_message(error);
        assert!(
            message.contains(field) && message.contains("cannot change once the Cutover has started"),
            "{field}: {message}"
        );
    }
    let unchanged = cutovers.get("web").await.unwrap();
    assert_eq!(unchanged.spec.verify.len(), 1, "nothing was lost");

    // The GO and abort are what a person changes mid-run.
    cutovers
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"spec": {"approval": {"required": true, "approvedBy": "alice", "reason": "CAB-1",
                                              "approvals": [{"by": "bob", "reason": "QA"}]}}}),
            ),
        )
        .await
        .expect("approval is given mid-run");
    cutovers
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"abort": true}})),
        )
        .await
        .expect("abort stays possible mid-run");
}

#[tokio::test]
async fn a_backups_spec_cannot_be_rewritten_after_creation() {
    let cluster = support::cluster_with_crds();
    let ns = cluster.namespace("backup-immutable").await.unwrap();
    let backups: Api<Backup> = ns.api();
    let backup: Backup = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup",
        "metadata": {"name": "b"}, "spec": {"policyRef": {"name": "hotel-db"}}
    }))
    .unwrap();
    backups.create(&PostParams::default(), &backup).await.unwrap();
    let error = backups
        .patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"policyRef": {"name": "other"}}})),
        )
        .await
        .unwrap_err();
    let message = api_error_message(error);
    assert!(message.contains("cannot change once created"), "{message}");
}
