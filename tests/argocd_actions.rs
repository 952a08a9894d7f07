//! Lifeboat's Argo CD resource customizations in Argo CD's own Lua engine (gopher-lua, Lua 5.1, with the
//! libraries Argo CD opens for scripts), run by hack/argocd-lua over every health_test.yaml and
//! action_test.yaml in deploy/argocd; the drill-now action's Restore is the one the drill controller
//! makes; and the argocd-cm snippet users install carries exactly these actions.

mod support;

use std::path::{Path, PathBuf};

use lifeboat::api::RestoreDrill;

fn customizations() -> PathBuf {
    support::repo_path("deploy/argocd")
}

#[test]
fn the_health_and_action_scripts_pass_their_tests_in_argo_cds_lua_engine() {
    let tool = localcluster::cache_dir().join("bin/lifeboat-argocd-lua");
    assert!(
        tool.exists(),
        "{} is missing: run hack/build-test-tools.sh (hack/install-tools.sh runs it)",
        tool.display()
    );
    let report = support::run_ok(
        "lifeboat-argocd-lua",
        std::process::Command::new(tool).arg(customizations()),
    );
    println!("{report}");
    let ran: usize = report
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    assert!(ran >= 30, "every health and action case ran: {report}");
}

/// The fixed clock of hack/argocd-lua (2026-12-03T10:00:00Z).
const LUA_NOW: &str = "2026-12-03T10:00:00Z";

/// The drill-now action's expected Restore is the drill controller's own: if either changes, this fails
/// (`LIFEBOAT_BLESS=1` rewrites the fixtures from the Rust side, to be reviewed in the diff).
#[test]
fn drill_now_creates_the_restore_the_drill_controller_would() {
    let testdata = customizations().join("lifeboat.dev/RestoreDrill/testdata");
    let now: jiff::Timestamp = LUA_NOW.parse().unwrap();
    for name in ["drill-scratch", "drill-mysql"] {
        let input = testdata.join(format!("{name}.yaml"));
        let drill: RestoreDrill = serde_norway::from_str(&std::fs::read_to_string(&input).unwrap()).unwrap();
        let restore_name = format!(
            "{}-now-{}",
            drill.metadata.name.as_deref().unwrap(),
            now.as_second()
        );
        let mut restore = lifeboat::controller::restore_drill::drill_restore(&drill, &restore_name, now);
        restore.metadata.namespace = drill.metadata.namespace.clone();
        // As `kubectl lifeboat drill now`: without blockOwnerDeletion, which `edit` may not set.
        for owner in restore.metadata.owner_references.iter_mut().flatten() {
            owner.block_owner_deletion = None;
        }
        let created = serde_json::json!([{"operation": "create", "resource": restore}]);
        let expected_path = testdata.join(format!("{name}-now.yaml"));
        if std::env::var_os("LIFEBOAT_BLESS").is_some() {
            // The input as the API server stores it (defaults filled in), and the Restore made from it.
            std::fs::write(&input, serde_norway::to_string(&drill).unwrap()).unwrap();
            std::fs::write(&expected_path, serde_norway::to_string(&created).unwrap()).unwrap();
        }
        let expected: serde_json::Value =
            serde_norway::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
        assert_eq!(
            expected,
            created,
            "{} is not what the drill controller makes from {}",
            expected_path.display(),
            input.display()
        );
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_argocd_cm_snippet_carries_exactly_these_actions() {
    let snippet: serde_norway::Value =
        serde_norway::from_str(&read(&customizations().join("argocd-cm-patch.yaml"))).unwrap();
    for (kind, actions) in [
        ("Cutover", &["abort"][..]),
        ("BackupPolicy", &["backup-now", "suspend", "resume"][..]),
        ("RestoreDrill", &["drill-now"][..]),
    ] {
        let dir = customizations().join("lifeboat.dev").join(kind).join("actions");
        let key = format!("resource.customizations.actions.lifeboat.dev_{kind}");
        let embedded: serde_norway::Value = serde_norway::from_str(
            snippet["data"][key.as_str()]
                .as_str()
                .unwrap_or_else(|| panic!("{key} missing")),
        )
        .unwrap();
        assert_eq!(
            embedded["discovery.lua"].as_str().map(str::trim_end),
            Some(read(&dir.join("discovery.lua")).trim_end()),
            "{key}: discovery.lua"
        );
        let definitions = embedded["definitions"].as_sequence().expect("definitions");
        let names: Vec<&str> = definitions.iter().filter_map(|d| d["name"].as_str()).collect();
        assert_eq!(names, actions, "{key}");
        for definition in definitions {
            let name = definition["name"].as_str().unwrap();
            assert_eq!(
                definition["action.lua"].as_str().map(str::trim_end),
                Some(read(&dir.join(name).join("action.lua")).trim_end()),
                "{key}: {name}"
            );
        }
    }
}
