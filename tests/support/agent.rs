//! Real servers and repositories for the agent's tests: PostgreSQL 15 and MariaDB 10.11 started on
//! loopback in temporary directories (one of each per test binary, stopped when the binary exits), and
//! restic repositories in temporary directories. Install the tools with `hack/install-data-tools.sh`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{geteuid, Pid};

pub const PG_PASSWORD: &str = "pg-Superuser-s3cret";
pub const MY_PASSWORD: &str = "my-Lifeboat-s3cret";
pub const MY_USER: &str = "lifeboat";
pub const RESTIC_PASSWORD: &str = "restic-Repo-s3cret";

/// Servers to stop and directories to remove when the test binary exits (statics are never dropped).
static CLEANUP: Mutex<Vec<(Option<u32>, PathBuf)>> = Mutex::new(Vec::new());

extern "C" fn cleanup_at_exit() {
    if let Ok(list) = CLEANUP.lock() {
        for (pid, dir) in list.iter() {
            if let Some(pid) = pid {
                stop_server(Pid::from_raw(*pid as i32));
            }
            // A server's helpers may still be writing for a moment after it exited.
            for _ in 0..20 {
                if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Removes `dir` when the test binary exits.
pub fn remove_at_exit(dir: PathBuf) {
    register(None, dir);
}

/// SIGQUIT is PostgreSQL's immediate shutdown (it takes its helper processes along) and a fast stop for
/// MariaDB; SIGKILL if it is still there after five seconds. Reaped here: it is our child.
fn stop_server(pid: Pid) {
    let _ = kill(pid, Signal::SIGQUIT);
    for _ in 0..100 {
        // Reaped, or an error (as waitpid(2)'s -1): either way there is nothing left to wait for.
        if !matches!(
            waitpid(pid, Some(WaitPidFlag::WNOHANG)),
            Ok(WaitStatus::StillAlive)
        ) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = kill(pid, Signal::SIGKILL);
    let _ = waitpid(pid, None);
}

fn register_cleanup(pid: u32, dir: PathBuf) {
    register(Some(pid), dir);
}

fn register(pid: Option<u32>, dir: PathBuf) {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // SAFETY: atexit(3) has no safe wrapper; it registers a plain extern "C" function that takes no
        // arguments and only locks a static Mutex, kills and reaps our own children and removes directories.
        unsafe {
            libc::atexit(cleanup_at_exit);
        }
    });
    CLEANUP.lock().expect("cleanup list").push((pid, dir));
}

pub fn agent_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lifeboat")
}

/// restic from LIFEBOAT_RESTIC, else the one hack/install-data-tools.sh builds, else PATH.
pub fn restic_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("LIFEBOAT_RESTIC") {
        return PathBuf::from(path);
    }
    let cached = home().join(".cache/lifeboat/bin/restic");
    if cached.is_file() {
        return cached;
    }
    PathBuf::from("restic")
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
}

pub fn pg_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("LIFEBOAT_PG_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found: run hack/install-data-tools.sh",
        path.display()
    );
    path
}

pub fn pg_bin_dir() -> PathBuf {
    pg_bin("pg_dump").parent().expect("bin dir").to_path_buf()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A temporary directory that outlives the test binary's statics; removed at exit.
fn scratch_dir(prefix: &str) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir")
        .keep();
    dir
}

pub fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    output
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "{what} not ready after {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn postgres_user() -> Option<(u32, u32)> {
    if !geteuid().is_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("user postgres (created by the postgresql-15 package): run hack/install-data-tools.sh");
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields[2].parse().expect("uid"), fields[3].parse().expect("gid")))
}

pub struct Postgres {
    pub port: u16,
    pub dir: PathBuf,
}

/// The binary's PostgreSQL, started on first use. initdb refuses to run as root, so as root the server
/// runs as the `postgres` user the Debian package created.
pub fn postgres() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(start_postgres)
}

fn start_postgres() -> Postgres {
    use std::os::unix::process::CommandExt;
    let dir = scratch_dir("lifeboat-pg-");
    let data = dir.join("data");
    let pwfile = dir.join("pw");
    std::fs::write(&pwfile, PG_PASSWORD).expect("pwfile");
    let user = postgres_user();
    if let Some((uid, gid)) = user {
        for path in [&dir, &pwfile] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
        }
    }
    let as_postgres = |command: &mut Command| {
        if let Some((uid, gid)) = user {
            command.uid(uid).gid(gid);
        }
    };
    let mut initdb = Command::new(pg_bin("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .current_dir(&dir);
    as_postgres(&mut initdb);
    let out = run(&mut initdb);
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let port = free_port();
    let log = std::fs::File::create(dir.join("postgres.log")).expect("log");
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(dir.join("postgres.log"), Some(uid), Some(gid)).expect("chown log");
    }
    let mut server = Command::new(pg_bin("postgres"));
    server
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(&dir)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
        ])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=50"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    as_postgres(&mut server);
    // Not waited for: the server lives as long as the test binary and is killed by the exit hook.
    #[allow(clippy::zombie_processes)]
    let child = server.spawn().expect("start postgres");
    register_cleanup(child.id(), dir.clone());
    let pg = Postgres { port, dir };
    wait_until("postgres", Duration::from_secs(30), || {
        pg.try_psql("postgres", "select 1").is_ok()
    });
    pg
}

impl Postgres {
    pub fn try_psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = run(Command::new(pg_bin("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", PG_PASSWORD));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn psql(&self, database: &str, sql: &str) -> String {
        self.try_psql(database, sql)
            .unwrap_or_else(|e| panic!("psql {sql:?} on {database}: {e}"))
    }

    pub fn create_database(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        );
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
    }

    /// Every user table as `schema.table`, sorted.
    pub fn tables(&self, database: &str) -> Vec<String> {
        let out = self.psql(
            database,
            "select table_schema || '.' || table_name from information_schema.tables \
             where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog','information_schema') order by 1",
        );
        out.lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// A table's full content in a canonical order, for row-for-row comparison.
    pub fn table_content(&self, database: &str, table: &str) -> String {
        self.psql(
            database,
            &format!("select t::text from {table} t order by t::text"),
        )
    }

    /// Database connection flags for the agent.
    pub fn agent_args(&self, database: &str) -> Vec<String> {
        vec![
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            self.port.to_string(),
            "--user".into(),
            "postgres".into(),
            "--database".into(),
            database.into(),
            "--bin-dir".into(),
            pg_bin_dir().display().to_string(),
        ]
    }
}

pub struct Mariadb {
    pub port: u16,
    pub dir: PathBuf,
}

pub fn mariadb() -> &'static Mariadb {
    static SERVER: OnceLock<Mariadb> = OnceLock::new();
    SERVER.get_or_init(start_mariadb)
}

fn start_mariadb() -> Mariadb {
    let dir = scratch_dir("lifeboat-my-");
    let data = dir.join("data");
    let root = geteuid().is_root();
    let mut install = Command::new("mariadb-install-db");
    install
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
    if root {
        install.arg("--user=root");
    }
    let out = run(&mut install);
    assert!(
        out.status.success(),
        "mariadb-install-db failed (run hack/install-data-tools.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let port = free_port();
    let socket = dir.join("mysqld.sock");
    let mut server = Command::new("/usr/sbin/mariadbd");
    server
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--port={port}"))
        .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
        .arg(format!("--log-error={}", dir.join("error.log").display()))
        .args([
            "--bind-address=127.0.0.1",
            "--skip-networking=0",
            "--skip-name-resolve",
            "--skip-log-bin",
        ])
        .args([
            "--innodb-buffer-pool-size=64M",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-log-file-size=16M",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if root {
        server.arg("--user=root");
    }
    // Not waited for: the server lives as long as the test binary and is killed by the exit hook.
    #[allow(clippy::zombie_processes)]
    let child = server.spawn().expect("start mariadbd");
    register_cleanup(child.id(), dir.clone());
    let root_sql = |sql: &str| {
        run(Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", socket.display()))
            .args(["-u", "root", "-e", sql]))
    };
    wait_until("mariadb", Duration::from_secs(30), || {
        root_sql("select 1").status.success()
    });
    let out = root_sql(&format!(
        "CREATE USER '{MY_USER}'@'%' IDENTIFIED BY '{MY_PASSWORD}'; GRANT ALL ON *.* TO '{MY_USER}'@'%' WITH GRANT OPTION;"
    ));
    assert!(
        out.status.success(),
        "create user: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Mariadb { port, dir }
}

impl Mariadb {
    pub fn try_sql(&self, database: Option<&str>, sql: &str) -> Result<String, String> {
        let mut command = Command::new("mariadb");
        command
            .arg("--no-defaults")
            .args([
                "-h",
                "127.0.0.1",
                "-P",
                &self.port.to_string(),
                "-u",
                MY_USER,
                "--protocol=TCP",
                "--default-character-set=utf8mb4",
                "-N",
                "-B",
                "-e",
                sql,
            ])
            .env("MYSQL_PWD", MY_PASSWORD);
        if let Some(database) = database {
            command.arg(database);
        }
        let out = run(&mut command);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn sql(&self, database: Option<&str>, sql: &str) -> String {
        self.try_sql(database, sql)
            .unwrap_or_else(|e| panic!("mariadb {sql:?}: {e}"))
    }

    pub fn create_database(&self, name: &str) {
        self.sql(
            None,
            &format!("DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}`"),
        );
    }

    pub fn tables(&self, database: &str) -> Vec<String> {
        let out = self.sql(
            Some(database),
            "select table_name from information_schema.tables where table_schema = database() and table_type = 'BASE TABLE' order by 1",
        );
        out.lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// All rows, every column, in a canonical order.
    pub fn table_content(&self, database: &str, table: &str) -> String {
        let out = self.sql(Some(database), &format!("select * from `{table}`"));
        let mut rows: Vec<&str> = out.lines().collect();
        rows.sort_unstable();
        rows.join("\n")
    }

    pub fn agent_args(&self, database: &str) -> Vec<String> {
        vec![
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            self.port.to_string(),
            "--user".into(),
            MY_USER.into(),
            "--database".into(),
            database.into(),
        ]
    }
}

/// A restic repository in a temporary directory.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Repo {
    /// A repository that does not exist yet (for --init-repository).
    pub fn uninitialised() -> Repo {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-repo-")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().join("repo");
        Repo { dir, path }
    }

    /// The repository at `path` (e.g. one a Job wrote on a host-directory volume), with a cache of
    /// the test's own.
    pub fn at(path: PathBuf) -> Repo {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-repo-cache-")
            .tempdir()
            .expect("tempdir");
        Repo { dir, path }
    }

    pub fn new() -> Repo {
        let repo = Repo::uninitialised();
        let out = repo.restic(&["init"]);
        assert!(
            out.status.success(),
            "restic init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        repo
    }

    pub fn restic(&self, args: &[&str]) -> Output {
        run(&mut self.restic_command(args))
    }

    pub fn restic_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(restic_bin());
        command
            .args(args)
            .env("RESTIC_REPOSITORY", &self.path)
            .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
            .env("RESTIC_CACHE_DIR", self.dir.path().join("cache"));
        command
    }

    /// Every snapshot, as restic's JSON.
    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        // --no-lock: listing must work even while a (possibly dead) job's lock is in the repository.
        let out = self.restic(&["snapshots", "--json", "--no-lock"]);
        assert!(
            out.status.success(),
            "restic snapshots: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("snapshots JSON")
    }

    /// What a person runs after a job died: `restic unlock` (it removes only locks whose process is
    /// gone), then `restic check`.
    pub fn check(&self) -> Output {
        let unlock = self.restic(&["unlock"]);
        assert!(
            unlock.status.success(),
            "restic unlock: {}",
            String::from_utf8_lossy(&unlock.stderr)
        );
        self.restic(&["check"])
    }

    pub fn repository_arg(&self) -> String {
        self.path.display().to_string()
    }
}

/// One finished agent run.
#[derive(Debug)]
pub struct AgentRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The result file's JSON (the termination message).
    pub result: serde_json::Value,
}

impl AgentRun {
    pub fn reason(&self) -> &str {
        self.result["reason"].as_str().unwrap_or("")
    }

    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, 0, "agent failed: {}\n{}", self.stderr, self.result);
        assert_eq!(self.result["ok"], true, "{}", self.result);
        self
    }

    /// The failure contract: non-zero exit, the reason code, one-line cause as stderr's last line.
    pub fn assert_failed(&self, reason: &str) -> &Self {
        assert_ne!(self.code, 0, "agent should fail with {reason}: {}", self.result);
        assert_eq!(self.result["ok"], false, "{}", self.result);
        assert_eq!(
            self.reason(),
            reason,
            "stderr:\n{}\nresult: {}",
            self.stderr,
            self.result
        );
        let last = self.stderr.lines().last().unwrap_or("");
        assert!(
            last.starts_with("lifeboat agent "),
            "last stderr line is the cause: {last}"
        );
        self
    }

    pub fn message(&self) -> &str {
        self.result["message"].as_str().unwrap_or("")
    }
}

/// The agent's command with the test environment: restic and its password, and the database password
/// in LIFEBOAT_DB_PASSWORD (as a Job would set it from a Secret).
pub fn agent_command(mode: &str, args: &[String], result_path: &Path) -> Command {
    let mut command = Command::new(agent_bin());
    command
        .arg("agent")
        .arg(mode)
        .args(args)
        .arg("--result-path")
        .arg(result_path)
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("PGPASSWORD")
        .env_remove("MYSQL_PWD")
        .env("LIFEBOAT_RESTIC", restic_bin())
        .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
        .env(
            "RESTIC_CACHE_DIR",
            std::env::temp_dir().join("lifeboat-test-restic-cache"),
        );
    command
}

pub fn finish(output: Output, result_path: &Path) -> AgentRun {
    let text = std::fs::read_to_string(result_path).unwrap_or_default();
    assert!(
        text.len() < 4096,
        "result must fit a termination message: {} bytes",
        text.len()
    );
    let result = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    let run = AgentRun {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        result,
    };
    for secret in [PG_PASSWORD, MY_PASSWORD, RESTIC_PASSWORD] {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret) && !text.contains(secret),
            "a password leaked into the output"
        );
    }
    run
}

/// Runs `lifeboat agent <mode> <args>` with the database password `db_password`.
pub fn agent(mode: &str, args: &[String], db_password: Option<&str>) -> AgentRun {
    agent_env(mode, args, db_password, &[])
}

pub fn agent_env(mode: &str, args: &[String], db_password: Option<&str>, env: &[(&str, &str)]) -> AgentRun {
    let result_dir = tempfile::tempdir().expect("tempdir");
    let result_path = result_dir.path().join("termination-log");
    let mut command = agent_command(mode, args, &result_path);
    if let Some(password) = db_password {
        command.env("LIFEBOAT_DB_PASSWORD", password);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let output = run(&mut command);
    finish(output, &result_path)
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub fn sh(script: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("bash");
    command.args(["-c", script]);
    for (key, value) in env {
        command.env(key, value);
    }
    run(&mut command)
}

/// A failed backup must leave the repository without snapshots.
pub fn assert_no_snapshot(repo: &Repo) {
    let snapshots = repo.snapshots();
    assert!(
        snapshots.is_empty(),
        "a failed backup left snapshots: {snapshots:#?}"
    );
}
