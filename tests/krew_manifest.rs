//! The krew manifest (.krew.yaml, a krew-release-bot template) as krew-index and users get it: rendered by
//! hack/krew-package.sh for an archive of this build, accepted by krew-index's own validator, and installed
//! by the real krew from the local archive — which must then run as `kubectl lifeboat`. No download: the
//! archive is given to krew, and any HTTP krew might try goes to a dead proxy on loopback.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn tool(name: &str) -> Command {
    let path = localcluster::cache_dir().join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run hack/build-test-tools.sh (hack/install-tools.sh runs it)",
        path.display()
    );
    let mut command = Command::new(path);
    // Network rule: nothing may leave the machine; a request krew tries fails on loopback.
    command
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "")
        .env("KREW_NO_UPGRADE_CHECK", "1");
    command
}

/// Runs hack/krew-package.sh on this build's binary; returns the archive and the manifest.
fn package(out: &Path) -> (PathBuf, PathBuf, String) {
    let printed = support::run_ok(
        "hack/krew-package.sh",
        Command::new(support::repo_path("hack/krew-package.sh"))
            .arg(out)
            .arg(env!("CARGO_BIN_EXE_lifeboat")),
    );
    let mut words = printed.split_whitespace();
    let archive = PathBuf::from(words.next().expect("the archive"));
    let sha = words.next().expect("its sha256").to_owned();
    (archive, out.join("lifeboat.yaml"), sha)
}

fn krew_install(root: &Path, manifest: &Path, archive: &Path) -> std::process::Output {
    tool("krew")
        .env("KREW_ROOT", root)
        .arg("install")
        .arg(format!("--manifest={}", manifest.display()))
        .arg(format!("--archive={}", archive.display()))
        .output()
        .expect("run krew")
}

#[test]
fn the_krew_manifest_validates_and_installs_a_working_kubectl_lifeboat() {
    let out = tempfile::tempdir().unwrap();
    let (archive, manifest, sha) = package(out.path());
    let rendered = std::fs::read_to_string(&manifest).unwrap();
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    assert!(
        rendered.contains(&format!("version: {version}"))
            && rendered.contains(&format!("sha256: {sha}"))
            && rendered.contains(&format!(
                "releases/download/{version}/kubectl-lifeboat_{version}_linux_amd64.tar.gz"
            ))
            && !rendered.contains("{{"),
        "the template is fully rendered:\n{rendered}"
    );

    support::run_ok(
        "validate-krew-manifest",
        tool("validate-krew-manifest")
            .arg("-manifest")
            .arg(&manifest)
            // Its install check downloads the release URL: krew install below does it from the archive.
            .arg("-skip-install"),
    );

    let root = tempfile::tempdir().unwrap();
    let installed = krew_install(root.path(), &manifest, &archive);
    support::ensure_success("krew install", &installed).unwrap_or_else(|message| panic!("{message}"));
    let plugin = root.path().join("bin/kubectl-lifeboat");
    let store = root.path().join(format!("store/lifeboat/{version}"));
    assert!(
        store.join("LICENSE").exists(),
        "krew-index wants the license extracted"
    );
    let said = support::run_ok(
        "kubectl-lifeboat --version",
        Command::new(&plugin).arg("--version"),
    );
    assert_eq!(
        said.trim(),
        format!("kubectl-lifeboat {}", env!("CARGO_PKG_VERSION"))
    );
    // kubectl finds it where krew put it.
    let path = format!(
        "{}:{}",
        root.path().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl = localcluster::cache_dir().join("bin/kubectl");
    let listed = support::run_ok(
        "kubectl plugin list",
        Command::new(&kubectl).env("PATH", &path).args(["plugin", "list"]),
    );
    assert!(listed.contains(&plugin.display().to_string()), "{listed}");
    let help = support::run_ok(
        "kubectl lifeboat --help",
        Command::new(&kubectl)
            .env("PATH", &path)
            .args(["lifeboat", "--help"]),
    );
    assert!(help.contains("snapshots") && help.contains("restore"), "{help}");
    assert!(
        help.lines().all(|l| l.chars().count() <= 100),
        "the help fits 100 columns:\n{help}"
    );

    // The sha256 is what krew checks: a manifest naming another archive's is refused.
    let other_root = tempfile::tempdir().unwrap();
    let tampered = out.path().join("tampered.yaml");
    std::fs::write(&tampered, rendered.replace(&sha, &"a".repeat(64))).unwrap();
    let refused = krew_install(other_root.path(), &tampered, &archive);
    assert!(
        !refused.status.success(),
        "krew installed an archive with the wrong sha256"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("checksum does not match"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
