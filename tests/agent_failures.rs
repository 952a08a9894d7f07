//! The agent never reports a success that did not happen: every failure cause gets its own message and a
//! non-zero exit, no failed or killed backup leaves a snapshot that looks good, and a repository left by
//! a killed Job still passes `restic check` and takes the next backup.

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{geteuid, Pid};

use support::agent::*;

/// A table big enough (~40 MB of random text) that a dump is still streaming when a test interferes.
fn big_database() -> &'static str {
    static CREATED: OnceLock<()> = OnceLock::new();
    CREATED.get_or_init(|| {
        let pg = postgres();
        pg.create_database("big");
        pg.psql(
            "big",
            "CREATE TABLE small (id int PRIMARY KEY); INSERT INTO small SELECT generate_series(1, 10);
             CREATE TABLE big (id int PRIMARY KEY, payload text);
             INSERT INTO big SELECT i, md5(random()::text) || md5(random()::text) || md5(random()::text)
                 || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text)
                 || md5(random()::text) FROM generate_series(1, 150000) i;",
        );
    });
    "big"
}

fn small_database() -> &'static str {
    static CREATED: OnceLock<()> = OnceLock::new();
    CREATED.get_or_init(|| {
        let pg = postgres();
        pg.create_database("small");
        pg.psql("small", "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 100) i;");
    });
    "small"
}

fn backup_args(database: &str, repo: &Repo) -> Vec<String> {
    let mut args = strings(&[
        "--source",
        "postgres",
        "--repository",
        &repo.repository_arg(),
        "--tag",
        "policy=big",
    ]);
    args.extend(postgres().agent_args(database));
    args
}

/// A restore of the newest `policy=big` snapshot into `database`.
fn restore_args(database: &str, repo: &Repo) -> Vec<String> {
    let mut args = strings(&[
        "--target",
        "postgres",
        "--repository",
        &repo.repository_arg(),
        "--tag",
        "policy=big",
    ]);
    args.extend(postgres().agent_args(database));
    args
}

/// Snapshots a restore would accept: made by the agent (kind tag) and not marked incomplete.
fn good_snapshots(repo: &Repo) -> Vec<serde_json::Value> {
    repo.snapshots()
        .into_iter()
        .filter(|s| {
            let tags: Vec<&str> = s["tags"]
                .as_array()
                .map(|t| t.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            !tags.contains(&"lifeboat-incomplete") && tags.iter().any(|t| t.starts_with("lifeboat-kind="))
        })
        .collect()
}

fn assert_repository_usable(repo: &Repo) {
    let check = repo.check();
    assert!(
        check.status.success(),
        "restic check: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

/// The real restic with its upload rate limited (4 MiB/s), so a backup of the big table takes seconds
/// and a test can reliably interfere half-way.
fn slow_restic() -> std::path::PathBuf {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("lifeboat-slow-restic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        remove_at_exit(dir.clone());
        let path = dir.join("restic");
        let script = format!(
            "#!/bin/sh\nexec '{}' --limit-upload 4096 \"$@\"\n",
            restic_bin().display()
        );
        std::fs::write(&path, script).expect("write wrapper");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    })
    .clone()
}

/// Starts the agent in its own process group (like a container: killing the group kills the tools too),
/// with a rate-limited restic.
fn spawn_agent(mode: &str, args: &[String], result_path: &std::path::Path) -> Child {
    let mut command = agent_command(mode, args, result_path);
    command
        .env("LIFEBOAT_DB_PASSWORD", PG_PASSWORD)
        .env("LIFEBOAT_RESTIC", slow_restic())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    command.spawn().expect("spawn agent")
}

/// Waits until pg_dump is streaming table data (its COPY is still running: an idle backend shows its last
/// query too) and returns that backend's pid.
fn wait_for_copy(database: &str) -> String {
    let start = Instant::now();
    loop {
        let pid = postgres().psql(
            "postgres",
            &format!("select pid from pg_stat_activity where datname = '{database}' and state = 'active' and query like 'COPY public.big%' limit 1"),
        );
        if !pid.is_empty() {
            return pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "pg_dump never started copying"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// kill(2) on a process (a group when `pid` is negative) this test started.
fn signal(pid: i32, signal: Signal) {
    let _ = kill(Pid::from_raw(pid), signal);
}

/// Waits until every process of a killed group has been reaped: until then restic rightly treats the
/// dead job's lock as held (its PID still exists), as it would for a job on another node.
fn wait_until_gone(group: i32) {
    let start = Instant::now();
    // kill(2) with signal 0 only checks for existence.
    while kill(Pid::from_raw(-group), None).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "killed processes never went away"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn child_named(parent: u32, name: &str) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()? {
        let path = entry.ok()?.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …
        let Some(close) = stat.rfind(')') else { continue };
        let comm = &stat[stat.find('(').unwrap_or(0) + 1..close];
        let ppid: u32 = stat[close + 2..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid == parent && comm == name {
            return stat.split_whitespace().next().and_then(|p| p.parse().ok());
        }
    }
    None
}

#[test]
fn a_wrong_database_password_is_named_and_leaves_no_snapshot() {
    let repo = Repo::new();
    let run = agent(
        "backup",
        &backup_args(small_database(), &repo),
        Some("wrong-password"),
    );
    run.assert_failed("DatabaseAuthFailed");
    assert!(
        run.message()
            .contains("rejected the password for user \"postgres\""),
        "{}",
        run.message()
    );
    assert_no_snapshot(&repo);
}

#[test]
fn a_password_secret_with_a_trailing_newline_is_named_as_the_likely_cause() {
    // `echo pw > file; kubectl create secret --from-file` keeps the newline; the env var has it too.
    let repo = Repo::new();
    let with_newline = format!("{}\n", support::agent::PG_PASSWORD);
    let run = agent(
        "backup",
        &backup_args(small_database(), &repo),
        Some(&with_newline),
    );
    run.assert_failed("DatabaseAuthFailed");
    assert!(
        run.message().contains("ends with a newline") && run.message().contains("--from-literal"),
        "{}",
        run.message()
    );
    assert!(
        !run.message().contains(support::agent::PG_PASSWORD),
        "the password is never shown"
    );
    assert_no_snapshot(&repo);
}

#[test]
fn an_unreachable_database_is_named() {
    let repo = Repo::new();
    let port = free_port().to_string();
    let mut args = strings(&["--source", "postgres", "--repository", &repo.repository_arg()]);
    args.extend(strings(&[
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--user",
        "postgres",
        "--database",
        "x",
    ]));
    args.extend(strings(&["--bin-dir", &pg_bin_dir().display().to_string()]));
    let run = agent("backup", &args, Some(PG_PASSWORD));
    run.assert_failed("DatabaseUnreachable");
    assert!(run.message().contains(&format!("127.0.0.1:{port}")));
    assert_no_snapshot(&repo);
}

#[test]
fn a_missing_database_is_named() {
    let repo = Repo::new();
    let run = agent(
        "backup",
        &backup_args("no_such_database", &repo),
        Some(PG_PASSWORD),
    );
    run.assert_failed("DatabaseMissing");
    assert!(
        run.message().contains("\"no_such_database\" does not exist"),
        "{}",
        run.message()
    );
    assert_no_snapshot(&repo);
}

#[test]
fn a_locked_repository_is_named_and_the_lock_holder_shown() {
    let repo = Repo::new();
    // `restic key passwd` holds an exclusive lock while it waits for the new password from a FIFO.
    let fifo = repo.dir.path().join("new-password");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    let mut holder = repo
        .restic_command(&[
            "key",
            "passwd",
            "--new-password-file",
            &fifo.display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lock holder");
    let start = Instant::now();
    while std::fs::read_dir(repo.path.join("locks"))
        .map(|d| d.count())
        .unwrap_or(0)
        == 0
    {
        assert!(start.elapsed() < Duration::from_secs(20), "lock never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }

    let run = agent("backup", &backup_args(small_database(), &repo), Some(PG_PASSWORD));
    let _ = holder.kill();
    let _ = holder.wait();
    run.assert_failed("RepositoryLocked");
    assert!(
        run.message().contains("locked by another process"),
        "{}",
        run.message()
    );
    assert_no_snapshot(&repo);
}

/// A database whose last row cannot be output (its enum label was removed from the catalog, as
/// corruption would): pg_dump streams megabytes of good data, then fails in the middle of the table.
fn broken_database() -> &'static str {
    static CREATED: OnceLock<()> = OnceLock::new();
    CREATED.get_or_init(|| {
        let pg = postgres();
        pg.create_database("broken");
        pg.psql(
            "broken",
            "CREATE TYPE mood AS ENUM ('ok', 'gone');
             CREATE TABLE rows (id int, payload text, m mood);
             INSERT INTO rows SELECT i, repeat(md5(i::text), 20), 'ok' FROM generate_series(1, 20000) i;
             INSERT INTO rows VALUES (20001, 'last', 'gone');
             DELETE FROM pg_enum WHERE enumlabel = 'gone';",
        );
    });
    "broken"
}

#[test]
fn a_dump_that_fails_half_way_leaves_no_snapshot() {
    let repo = Repo::new();
    let run = agent(
        "backup",
        &backup_args(broken_database(), &repo),
        Some(PG_PASSWORD),
    );
    run.assert_failed("DumpFailed");
    assert!(run.message().contains("pg_dump failed"), "{}", run.message());
    assert!(
        run.message().contains("invalid internal value for enum"),
        "{}",
        run.message()
    );
    // restic runs the dump through the agent's wrapper and records nothing when it exits non-zero.
    assert_no_snapshot(&repo);
    assert_repository_usable(&repo);
}

#[test]
fn restic_dying_half_way_fails_the_backup_even_though_the_dump_was_fine() {
    let database = big_database();
    let repo = Repo::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let result_path = dir.path().join("result");
    let agent_process = spawn_agent("backup", &backup_args(database, &repo), &result_path);
    wait_for_copy(database);
    let restic = child_named(agent_process.id(), "restic").expect("restic runs under the agent");
    signal(restic, Signal::SIGKILL);
    let run = finish(agent_process.wait_with_output().expect("agent"), &result_path);
    assert_ne!(run.code, 0);
    assert_eq!(run.result["ok"], false);
    assert_eq!(run.reason(), "ResticFailed", "{}", run.stderr);
    assert_no_snapshot(&repo);
    assert_repository_usable(&repo);
}

#[test]
fn a_backup_killed_half_way_leaves_a_usable_repository_and_the_next_backup_succeeds() {
    let database = big_database();
    let repo = Repo::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let result_path = dir.path().join("result");

    // SIGKILL to the whole group, as when a node dies or the container is OOM-killed.
    let agent_process = spawn_agent("backup", &backup_args(database, &repo), &result_path);
    wait_for_copy(database);
    std::thread::sleep(Duration::from_millis(300));
    signal(-(agent_process.id() as i32), Signal::SIGKILL);
    let group = agent_process.id() as i32;
    let _ = agent_process.wait_with_output();
    wait_until_gone(group);
    assert_no_snapshot(&repo);
    assert_repository_usable(&repo);

    // SIGTERM, as when Kubernetes deletes the Pod: the agent stops its tools and says so.
    let agent_process = spawn_agent("backup", &backup_args(database, &repo), &result_path);
    wait_for_copy(database);
    signal(agent_process.id() as i32, Signal::SIGTERM);
    let run = finish(agent_process.wait_with_output().expect("agent"), &result_path);
    run.assert_failed("Interrupted");
    assert_no_snapshot(&repo);
    assert_repository_usable(&repo);

    // The next scheduled backup just works, and a restore of `latest` takes it.
    let next = agent("backup", &backup_args(database, &repo), Some(PG_PASSWORD));
    next.assert_ok();
    assert_eq!(good_snapshots(&repo).len(), 1);
    assert_repository_usable(&repo);
    postgres().create_database("big_restored");
    let restore = agent("restore", &restore_args("big_restored", &repo), Some(PG_PASSWORD));
    restore.assert_ok();
    assert_eq!(restore.result["snapshotId"], next.result["snapshotId"]);
    assert_eq!(
        postgres().psql("big", "select md5(string_agg(payload, '' order by id)) from big"),
        postgres().psql(
            "big_restored",
            "select md5(string_agg(payload, '' order by id)) from big"
        )
    );
}

#[test]
fn a_restore_killed_half_way_leaves_the_target_as_it_was_and_the_next_restore_succeeds() {
    let database = big_database();
    let repo = Repo::new();
    agent("backup", &backup_args(database, &repo), Some(PG_PASSWORD)).assert_ok();
    let target = "big_killed_restore";
    postgres().create_database(target);
    let tables = || {
        postgres().psql(
            target,
            "select count(*) from information_schema.tables where table_schema = 'public'",
        )
    };
    assert_eq!(tables(), "0");
    let args = restore_args(target, &repo);
    let dir = tempfile::tempdir().expect("tempdir");
    let result_path = dir.path().join("result");

    // SIGKILL to the whole group while pg_restore streams the big table into the target.
    let agent_process = spawn_agent("restore", &args, &result_path);
    let copying = wait_for_copy(target);
    signal(-(agent_process.id() as i32), Signal::SIGKILL);
    let group = agent_process.id() as i32;
    let _ = agent_process.wait_with_output();
    wait_until_gone(group);
    // The server ends the dead client's transaction once it sees the connection gone.
    let start = Instant::now();
    while !postgres()
        .psql(
            "postgres",
            &format!("select count(*) from pg_stat_activity where pid = {copying}"),
        )
        .starts_with('0')
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the killed restore's backend lingers"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // One transaction: nothing of a half-done restore is left for an application to read as real data.
    assert_eq!(tables(), "0", "the killed restore left tables in the target");

    let restore = agent("restore", &args, Some(PG_PASSWORD));
    restore.assert_ok();
    assert_eq!(
        postgres().psql(
            database,
            "select md5(string_agg(payload, '' order by id)) from big"
        ),
        postgres().psql(target, "select md5(string_agg(payload, '' order by id)) from big")
    );
}

#[test]
fn a_full_disk_is_named() {
    // A test that returned early here passed without checking anything: a person running the suite
    // without root learns why it fails instead.
    assert!(
        geteuid().is_root(),
        "a_full_disk_is_named needs root for its private 4 MiB tmpfs (unshare -m); run it as root, as CI does"
    );
    let database = big_database();
    let dir = tempfile::tempdir().expect("tempdir");
    let small = dir.path().join("small-volume");
    std::fs::create_dir(&small).expect("dir");
    let result_path = dir.path().join("result");
    let repository = small.join("repo");
    let mut args = strings(&[
        "--source",
        "postgres",
        "--repository",
        &repository.display().to_string(),
        "--init-repository",
    ]);
    args.extend(postgres().agent_args(database));
    let agent_line = std::iter::once(agent_bin().to_string())
        .chain(std::iter::once("agent".into()))
        .chain(std::iter::once("backup".into()))
        .chain(args)
        .chain(["--result-path".into(), result_path.display().to_string()])
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    // A 4 MiB volume in a private mount namespace: the 40 MB dump cannot fit.
    let script = format!(
        "mount -t tmpfs -o size=4m tmpfs '{}' && exec {agent_line}",
        small.display()
    );
    let mut command = Command::new("unshare");
    command
        .args(["-m", "bash", "-c", &script])
        .env("LIFEBOAT_RESTIC", restic_bin())
        .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
        .env("RESTIC_CACHE_DIR", dir.path().join("cache"))
        .env("LIFEBOAT_DB_PASSWORD", PG_PASSWORD);
    let run = finish(command.output().expect("unshare"), &result_path);
    run.assert_failed("DiskFull");
    assert!(
        run.message().contains("no space left on device"),
        "{}",
        run.message()
    );
}

#[test]
fn a_snapshot_whose_stored_sha256_does_not_match_its_content_is_refused_restoring_nothing() {
    let pg = postgres();
    let repo = Repo::new();
    let backup = agent("backup", &backup_args(small_database(), &repo), Some(PG_PASSWORD));
    backup.assert_ok();
    let sha = backup.result["sha256"].as_str().expect("sha256").to_string();
    let id = backup.result["snapshotId"].as_str().expect("id").to_string();
    let stored = format!("lifeboat-sha256={sha}");
    let tags = repo.snapshots()[0]["tags"].to_string();
    assert!(tags.contains(&stored), "the backup stored its sha256: {tags}");

    // What a damaged or swapped dump looks like to a restore: content and stored sha256 disagree.
    let wrong = "f".repeat(64);
    let retag = repo.restic(&[
        "tag",
        "--remove",
        &stored,
        "--add",
        &format!("lifeboat-sha256={wrong}"),
        &id,
    ]);
    assert!(
        retag.status.success(),
        "{}",
        String::from_utf8_lossy(&retag.stderr)
    );

    // A drill's restore: `latest` of the policy, no sha256 from any Backup's status.
    pg.create_database("small_tampered");
    let mut args = strings(&[
        "--target",
        "postgres",
        "--repository",
        &repo.repository_arg(),
        "--tag",
        "policy=big",
    ]);
    args.extend(pg.agent_args("small_tampered"));
    let restore = agent("restore", &args, Some(PG_PASSWORD));
    restore.assert_failed("ChecksumMismatch");
    assert!(
        restore.message().contains(&wrong) && restore.message().contains(&sha),
        "the reason names the stored and the actual sha256: {}",
        restore.message()
    );
    assert!(pg.tables("small_tampered").is_empty(), "nothing was restored");
}
