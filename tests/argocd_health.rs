//! The Argo CD health checks in deploy/argocd/ run in a real Lua 5.4 interpreter against their test cases
//! (tests/argocd_actions.rs runs them, and the actions, in gopher-lua: Argo CD's own engine, Lua 5.1)
//! (Argo CD's own resource_customizations layout: health.lua, health_test.yaml, testdata/), and the
//! argocd-cm snippet users install carries exactly those scripts.

use std::path::{Path, PathBuf};

use mlua::{Lua, LuaSerdeExt, Value};
use serde::Deserialize;

#[derive(Deserialize)]
struct HealthTests {
    tests: Vec<HealthTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthTest {
    health_status: Expected,
    input_path: String,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Expected {
    status: String,
    message: String,
}

const KINDS: [&str; 5] = ["BackupPolicy", "Backup", "Restore", "RestoreDrill", "Cutover"];

fn kind_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/argocd/lifeboat.dev")
        .join(kind)
}

/// Runs a health.lua the way Argo CD does: the object as the global `obj`, the script's return value as
/// the health status.
fn health_of(script: &str, object: &serde_json::Value) -> Expected {
    let lua = Lua::new();
    let obj = lua.to_value(object).expect("object converts to Lua");
    lua.globals().set("obj", obj).unwrap();
    let result: Value = lua
        .load(script)
        .eval()
        .unwrap_or_else(|error| panic!("health.lua fails: {error}"));
    lua.from_value(result)
        .expect("health.lua returns {status, message}")
}

#[test]
fn every_kind_has_a_health_check_that_passes_its_test_cases() {
    let mut failures = Vec::new();
    for kind in KINDS {
        let dir = kind_dir(kind);
        let script =
            std::fs::read_to_string(dir.join("health.lua")).unwrap_or_else(|_| panic!("{kind}: health.lua"));
        let tests: HealthTests =
            serde_norway::from_str(&std::fs::read_to_string(dir.join("health_test.yaml")).unwrap()).unwrap();
        assert!(
            tests.tests.len() >= 2,
            "{kind}: at least a healthy and an unhealthy case"
        );
        for test in tests.tests {
            let input: serde_json::Value =
                serde_norway::from_str(&std::fs::read_to_string(dir.join(&test.input_path)).unwrap())
                    .unwrap();
            let got = health_of(&script, &input);
            if got != test.health_status {
                failures.push(format!(
                    "{kind} {}: expected {:?}, got {got:?}",
                    test.input_path, test.health_status
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_argocd_cm_snippet_installs_exactly_these_scripts() {
    let snippet = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/argocd/argocd-cm-patch.yaml"),
    )
    .unwrap();
    let parsed: serde_norway::Value = serde_norway::from_str(&snippet).unwrap();
    for kind in KINDS {
        let key = format!("resource.customizations.health.lifeboat.dev_{kind}");
        let embedded = parsed["data"][key.as_str()]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing"));
        let script = std::fs::read_to_string(kind_dir(kind).join("health.lua")).unwrap();
        assert_eq!(
            embedded.trim_end(),
            script.trim_end(),
            "{key} differs from health.lua"
        );
    }
}
