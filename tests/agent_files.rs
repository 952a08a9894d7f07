//! `lifeboat agent` for directories (the CRM runbook's uploads) and for repository upkeep: retention,
//! `restic check`, and the repository failures a person must be told apart.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use support::agent::*;

fn make_uploads(root: &Path) {
    std::fs::create_dir_all(root.join("2026/01/invoices")).expect("dirs");
    std::fs::create_dir_all(root.join("empty-dir")).expect("dirs");
    let mut noise = Vec::with_capacity(512 * 1024);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while noise.len() < 512 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(root.join("2026/01/invoices/scan.bin"), &noise).expect("write");
    std::fs::write(root.join("2026/01/Žádost o úvěr.txt"), "ahoj\n").expect("write");
    std::fs::write(root.join("empty.txt"), "").expect("write");
    let secret = root.join("private.key");
    std::fs::write(&secret, "key").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::symlink("2026/01/invoices/scan.bin", root.join("latest-scan")).expect("symlink");
}

fn files_backup(repo: &Repo, path: &Path, extra: &[&str]) -> AgentRun {
    let mut args = strings(&[
        "--source",
        "files",
        "--repository",
        &repo.repository_arg(),
        "--path",
    ]);
    args.push(path.display().to_string());
    args.extend(strings(extra));
    agent("backup", &args, None)
}

#[test]
fn a_directory_round_trips_with_modes_links_and_odd_names() {
    let repo = Repo::uninitialised();
    let work = tempfile::tempdir().expect("tempdir");
    let uploads = work.path().join("uploads");
    make_uploads(&uploads);

    // Allowed to create the repository on first use.
    let backup = files_backup(&repo, &uploads, &["--init-repository", "--tag", "policy=uploads"]);
    backup.assert_ok();
    assert_eq!(backup.result["kind"], "files");
    assert!(backup.result["sizeBytes"].as_u64().expect("size") >= 512 * 1024);

    let target = work.path().join("restored");
    let mut args = strings(&[
        "--target",
        "files",
        "--repository",
        &repo.repository_arg(),
        "--tag",
        "policy=uploads",
        "--path",
    ]);
    args.push(target.display().to_string());
    let restore = agent("restore", &args, None);
    restore.assert_ok();
    assert_eq!(restore.result["snapshotId"], backup.result["snapshotId"]);
    assert_eq!(support::files::tree(&uploads), support::files::tree(&target));
}

#[test]
fn a_missing_repository_is_not_created_unless_asked() {
    let repo = Repo::uninitialised();
    let dir = tempfile::tempdir().expect("tempdir");
    let run = files_backup(&repo, dir.path(), &[]);
    run.assert_failed("RepositoryNotFound");
    assert!(run.message().contains("restic init"), "{}", run.message());
    assert!(!repo.path.exists());
}

#[test]
fn a_wrong_repository_password_is_named() {
    let repo = Repo::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = strings(&[
        "--source",
        "files",
        "--repository",
        &repo.repository_arg(),
        "--path",
    ]);
    args.push(dir.path().display().to_string());
    let run = agent_env(
        "backup",
        &args,
        None,
        &[("RESTIC_PASSWORD", "not-the-repo-password")],
    );
    run.assert_failed("RepositoryWrongPassword");
    assert!(
        !run.stderr.contains("not-the-repo-password"),
        "the wrong password is not printed either"
    );
    assert!(repo.snapshots().is_empty());
}

#[test]
fn prune_keeps_the_newest_snapshots_of_one_policy_only() {
    let repo = Repo::new();
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..3 {
        std::fs::write(dir.path().join("file"), format!("version {i}")).expect("write");
        files_backup(&repo, dir.path(), &["--tag", "policy=a"]).assert_ok();
    }
    files_backup(&repo, dir.path(), &["--tag", "policy=b"]).assert_ok();

    let args = strings(&[
        "--repository",
        &repo.repository_arg(),
        "--keep-last",
        "1",
        "--tag",
        "policy=a",
    ]);
    let run = agent("prune", &args, None);
    run.assert_ok();
    assert_eq!(run.result["snapshotsKept"], 1, "{}", run.result);
    assert_eq!(run.result["snapshotsRemoved"], 2, "{}", run.result);
    let left: Vec<String> = repo
        .snapshots()
        .iter()
        .map(|s| s["tags"][0].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(left.iter().filter(|t| *t == "policy=a").count(), 1);
    assert_eq!(
        left.iter().filter(|t| *t == "policy=b").count(),
        1,
        "another policy's snapshots are untouched"
    );
    assert!(repo.check().status.success());
}

#[test]
fn prune_keeps_a_held_snapshot_whatever_the_rules_say() {
    let repo = Repo::new();
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..3 {
        std::fs::write(dir.path().join("file"), format!("version {i}")).expect("write");
        files_backup(&repo, dir.path(), &["--tag", "policy=a"]).assert_ok();
    }
    // The oldest snapshot is a Cutover's rollback point, held by its 8-character short id.
    let oldest = repo.snapshots()[0]["id"].as_str().unwrap().to_owned();
    let args = strings(&[
        "--repository",
        &repo.repository_arg(),
        "--keep-last",
        "1",
        "--tag",
        "policy=a",
        "--hold",
        &oldest[..8],
    ]);
    let run = agent("prune", &args, None);
    run.assert_ok();
    assert_eq!(run.result["snapshotsKept"], 2, "{}", run.result);
    assert_eq!(run.result["snapshotsRemoved"], 1, "{}", run.result);
    let left: Vec<String> = repo
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(left.contains(&oldest), "the held snapshot survives: {left:?}");
    assert!(repo.check().status.success());
}

#[test]
fn prune_without_retention_is_refused() {
    let repo = Repo::new();
    let run = agent("prune", &strings(&["--repository", &repo.repository_arg()]), None);
    run.assert_failed("InvalidArguments");
    assert_eq!(run.code, 2);
}

#[test]
fn check_passes_on_a_healthy_repository_and_names_a_damaged_one() {
    let repo = Repo::new();
    let work = tempfile::tempdir().expect("tempdir");
    make_uploads(work.path());
    files_backup(&repo, work.path(), &[]).assert_ok();
    let check = |extra: &[&str]| {
        let mut args = strings(&["--repository", &repo.repository_arg()]);
        args.extend(strings(extra));
        agent("check", &args, None)
    };
    check(&["--read-data-subset", "100%"]).assert_ok();

    // Flip bytes in the middle of every data pack: sizes stay, content is damaged.
    let mut damaged = 0;
    for entry in walk(&repo.path.join("data")) {
        let mut bytes = std::fs::read(&entry).expect("read pack");
        let middle = bytes.len() / 2;
        for b in &mut bytes[middle..middle + 16] {
            *b ^= 0xff;
        }
        std::fs::write(&entry, bytes).expect("write pack");
        damaged += 1;
    }
    assert!(damaged > 0);
    let run = check(&["--read-data-subset", "100%"]);
    run.assert_failed("RepositoryCorrupt");
    assert!(run.message().contains("restic repair"), "{}", run.message());

    // A restore from the damaged repository fails loudly instead of writing garbage.
    let target = work.path().join("restored");
    let mut args = strings(&[
        "--target",
        "files",
        "--repository",
        &repo.repository_arg(),
        "--path",
    ]);
    args.push(target.display().to_string());
    let restore = agent("restore", &args, None);
    assert_ne!(restore.code, 0);
    assert_eq!(restore.result["ok"], false);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn restores_refuse_snapshots_that_are_missing_or_were_not_confirmed() {
    let repo = Repo::new();
    let work = tempfile::tempdir().expect("tempdir");
    make_uploads(work.path());
    let target = work.path().join("restored").display().to_string();
    let restore = |extra: &[&str]| {
        let mut args = strings(&[
            "--target",
            "files",
            "--repository",
            &repo.repository_arg(),
            "--path",
            &target,
        ]);
        args.extend(strings(extra));
        agent("restore", &args, None)
    };

    restore(&[]).assert_failed("SnapshotNotFound");
    restore(&["--snapshot", "deadbeef"]).assert_failed("SnapshotNotFound");

    // A snapshot made by hand has no recorded size: refused unless the caller accepts that.
    let out = repo.restic(&[
        "backup",
        "--json",
        &work.path().join("2026").display().to_string(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = repo.snapshots()[0]["id"].as_str().expect("id").to_string();
    let refused = restore(&["--snapshot", &id]);
    refused.assert_failed("SnapshotUnverified");
    assert!(
        refused.message().contains("--allow-unverified"),
        "{}",
        refused.message()
    );
    restore(&["--snapshot", &id, "--allow-unverified"]).assert_ok();
    assert_eq!(
        support::files::tree(&work.path().join("2026")),
        support::files::tree(Path::new(&target))
    );

    // A files snapshot is not a database dump.
    let mut args = strings(&[
        "--target",
        "postgres",
        "--repository",
        &repo.repository_arg(),
        "--snapshot",
        &id,
    ]);
    args.extend(strings(&[
        "--host",
        "127.0.0.1",
        "--user",
        "u",
        "--database",
        "d",
        "--allow-unverified",
    ]));
    let wrong_kind = agent("restore", &args, None);
    assert_ne!(wrong_kind.code, 0);
}
