//! The operator as users run it: the `lifeboat operator` binary, authenticated as the ServiceAccount
//! from deploy/ with the ClusterRole from deploy/ (so every test through it also proves the RBAC).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{repo_path, run_ok, Cluster};

pub struct Operator {
    pub metrics_url: String,
    pub log: PathBuf,
    child: Mutex<Child>,
    kubeconfig: PathBuf,
    http_port: u16,
    agent_command: String,
}

static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

extern "C" fn kill_children() {
    if let Ok(pids) = CHILDREN.lock() {
        for pid in pids.iter() {
            // kill(2) on an operator process this test binary started.
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
    }
}

/// A reaped operator's pid must not be killed at exit: the system may have given it to another process.
fn forget(child: &Child) {
    CHILDREN
        .lock()
        .expect("children")
        .retain(|pid| *pid != child.id());
}

fn remember(child: &Child) {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // SAFETY: atexit(3) has no safe wrapper; it registers a plain extern "C" function that takes no
        // arguments and only locks a static Mutex and sends signals.
        unsafe {
            libc::atexit(kill_children);
        }
    });
    CHILDREN.lock().expect("children").push(child.id());
}

/// Installs the operator's ServiceAccount and RBAC from deploy/ and writes a kubeconfig that
/// authenticates as that ServiceAccount.
fn service_account_kubeconfig(cluster: &Cluster) -> PathBuf {
    for manifest in [
        "deploy/namespace.yaml",
        "deploy/serviceaccount.yaml",
        "deploy/rbac.yaml",
    ] {
        run_ok(
            manifest,
            cluster.kubectl().args(["apply", "-f"]).arg(repo_path(manifest)),
        );
    }
    let token = run_ok(
        "kubectl create token",
        cluster.kubectl().args([
            "create",
            "token",
            "lifeboat-operator",
            "-n",
            "lifeboat-system",
            "--duration=2h",
        ]),
    );
    let admin = std::fs::read_to_string(&cluster.kubeconfig).expect("admin kubeconfig");
    let ca = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority: "))
        .expect("the admin kubeconfig names its CA file");
    let server = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("server");
    let kubeconfig = localcluster::control_plane::cluster_dir()
        .join(format!("operator-{}.kubeconfig", std::process::id()));
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
             users:\n- name: lifeboat-operator\n  user:\n    token: {}\ncontexts:\n- name: operator\n  context: {{cluster: local, user: lifeboat-operator}}\n\
             current-context: operator\n",
            token.trim()
        ),
    )
    .expect("write kubeconfig");
    kubeconfig
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Operator {
    /// The operator the tests of this binary share: started on first use, once per test binary.
    pub fn shared(cluster: &Cluster) -> &'static Operator {
        static OPERATOR: OnceLock<Operator> = OnceLock::new();
        OPERATOR.get_or_init(|| Operator::start(cluster))
    }

    /// Starts `lifeboat operator` (leader election on) and waits until /readyz answers.
    pub fn start(cluster: &Cluster) -> Operator {
        Self::start_with_agent(cluster, env!("CARGO_BIN_EXE_lifeboat"))
    }

    /// Like [`Operator::start`] with another agent program in the Jobs (benchmarks use `true`).
    pub fn start_with_agent(cluster: &Cluster, agent_command: &str) -> Operator {
        let kubeconfig = service_account_kubeconfig(cluster);
        let http_port = free_port();
        let log = std::env::temp_dir().join(format!(
            "lifeboat-operator-{}-{http_port}.log",
            std::process::id()
        ));
        let child = Self::spawn(&kubeconfig, http_port, &log, agent_command);
        let operator = Operator {
            metrics_url: format!("http://127.0.0.1:{http_port}/metrics"),
            log,
            child: Mutex::new(child),
            kubeconfig,
            http_port,
            agent_command: agent_command.to_owned(),
        };
        operator.wait_ready();
        operator
    }

    fn spawn(kubeconfig: &PathBuf, http_port: u16, log: &PathBuf, agent_command: &str) -> Child {
        Self::spawn_with(kubeconfig, http_port, log, agent_command, &[])
    }

    fn spawn_with(
        kubeconfig: &PathBuf,
        http_port: u16,
        log: &PathBuf,
        agent_command: &str,
        extra_env: &[(&str, &str)],
    ) -> Child {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("operator log");
        // Benchmarks may name another build of the operator and a quieter log level.
        let program = std::env::var_os("LIFEBOAT_OPERATOR_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_lifeboat").into());
        let log_level =
            std::env::var("LIFEBOAT_OPERATOR_LOG").unwrap_or_else(|_| "info,lifeboat=debug".to_owned());
        let child = Command::new(program)
            .arg("operator")
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", log_level)
            .env("LIFEBOAT_HTTP_ADDRESS", format!("127.0.0.1:{http_port}"))
            .env("LIFEBOAT_AGENT_COMMAND", agent_command)
            // The operator runs on the host, without cluster DNS: Cutover HTTP checks of `<svc>.<ns>.svc`
            // go through the local node's Service proxy (every test operator alike, since any of them
            // may reconcile any test's Cutover on the shared cluster).
            .env(
                "LIFEBOAT_LOCAL_SERVICES",
                localcluster::control_plane::cluster_dir()
                    .join("node")
                    .join("services.json"),
            )
            .env("LIFEBOAT_NAMESPACE", "lifeboat-system")
            // One Lease per test process, so test binaries run by different people at once do not wait
            // for each other's leader.
            .env("LIFEBOAT_LEASE_NAME", Self::lease_name())
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start lifeboat operator");
        remember(&child);
        child
    }

    fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.http_port);
        let start = Instant::now();
        while http_get(&url).map(|(code, _)| code) != Some(200) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "operator not ready; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills the operator (SIGKILL, as a node failure would) and starts a new one.
    pub fn restart(&self) {
        {
            let mut child = self.child.lock().expect("child");
            let _ = child.kill();
            let _ = child.wait();
            forget(&child);
        }
        self.start_again();
    }

    /// Stops the operator as a rolling update does (SIGTERM) and returns how it exited.
    pub fn stop_gracefully(&self) -> std::process::ExitStatus {
        let mut child = self.child.lock().expect("child");
        // kill(2) on the operator process this test started.
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait for the operator") {
                forget(&child);
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "operator still running 30 s after SIGTERM; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the operator and starts one that dies (exit 137, Lease kept, as a killed process) when it
    /// reaches the named crash point (`LIFEBOAT_CRASH_AT`).
    pub fn restart_crashing_at(&self, point: &str) {
        let mut child = self.child.lock().expect("child");
        let _ = child.kill();
        let _ = child.wait();
        forget(&child);
        *child = Self::spawn_with(
            &self.kubeconfig,
            self.http_port,
            &self.log,
            &self.agent_command,
            &[(lifeboat::controller::crash_point::CRASH_AT_ENV, point)],
        );
        drop(child);
        self.wait_ready();
    }

    /// Waits until the operator process has exited (at a crash point) and returns how.
    pub fn wait_for_exit(&self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            let mut child = self.child.lock().expect("child");
            if let Some(status) = child.try_wait().expect("wait") {
                forget(&child);
                return status;
            }
            drop(child);
            assert!(
                start.elapsed() < timeout,
                "the operator did not exit within {timeout:?}; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts a new operator process in place of a stopped one.
    pub fn start_again(&self) {
        let mut child = self.child.lock().expect("child");
        *child = Self::spawn(&self.kubeconfig, self.http_port, &self.log, &self.agent_command);
        drop(child);
        self.wait_ready();
    }

    /// The Lease the operators of this test process elect their leader with.
    pub fn lease_name() -> String {
        format!("lifeboat-test-{}", std::process::id())
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().expect("child").id()
    }

    pub fn metrics(&self) -> String {
        http_get(&self.metrics_url)
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(40).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// A tiny HTTP/1.0 GET (the operator's endpoints are plain HTTP on loopback).
pub fn http_get(url: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}
