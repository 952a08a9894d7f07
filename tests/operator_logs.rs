//! The operator's log as a log collector or a person reading `kubectl logs` gets it: with
//! `--log-format json` one JSON object per line with level and message at the top level; as text, no
//! terminal colour codes when the output is not a terminal. (No cluster: an operator that cannot reach
//! one logs why and stops.)

use std::process::Command;

/// The operator's output when it cannot find a cluster, with `extra` arguments.
fn operator_output(extra: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .arg("operator")
        .args(["--http-address", "127.0.0.1:0", "--no-leader-election"])
        .args(extra)
        .env("KUBECONFIG", "/nonexistent/lifeboat-test-kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("LIFEBOAT_LOG_FORMAT")
        .env("RUST_LOG", "info")
        .output()
        .expect("run lifeboat operator");
    assert!(!output.status.success(), "the operator ran without a cluster");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn json_logs_are_one_object_per_line_with_level_and_message() {
    let log = operator_output(&["--log-format", "json"]);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let stopped = lines
        .iter()
        .find(|line| line["message"] == "operator stopped")
        .unwrap_or_else(|| panic!("no 'operator stopped' line in:\n{log}"));
    assert_eq!(stopped["level"], "ERROR", "{stopped}");
    assert!(
        stopped["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot connect to the Kubernetes API")),
        "the error is a field of its own: {stopped}"
    );
    assert!(stopped["timestamp"].is_string(), "{stopped}");
}

#[test]
fn text_logs_carry_no_colour_codes_when_not_on_a_terminal() {
    let log = operator_output(&[]);
    assert!(log.contains("operator stopped"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a non-terminal log:\n{log}"
    );
}
