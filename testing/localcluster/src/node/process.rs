//! Starting a container's command as a local process, and stopping it.
//!
//! Each process leads its own session (so its process group holds everything it forks and can be killed
//! as a whole) and, when it has volumes, runs in a private mount namespace where the volumes are bind
//! mounted at their `mountPath`. The namespace is set up between fork and exec, so the container's command
//! sees its files at the real paths while no other process on the machine does.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{Child, Command};

/// Marks every process the node starts, so a node that crashed can find and kill its leftovers.
pub const STATE_DIR_ENV: &str = "LIFEBOAT_LOCALNODE_STATE_DIR";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Everything needed to start one process.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
    /// Applied in order; [`order_mounts`] puts parents before children.
    pub mounts: Vec<BindMount>,
    /// stdout and stderr are appended here; `None` discards them.
    pub log: Option<PathBuf>,
}

/// Process groups of running containers, so a shutting-down node can kill them all.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    groups: Arc<Mutex<HashSet<i32>>>,
}

impl Registry {
    pub fn add(&self, pgid: i32) {
        self.groups.lock().unwrap_or_else(|e| e.into_inner()).insert(pgid);
    }

    pub fn remove(&self, pgid: i32) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pgid);
    }

    pub fn groups(&self) -> Vec<i32> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// SIGTERM every group, give them `grace` to go, SIGKILL what is left.
    pub async fn kill_all(&self, grace: Duration) {
        let groups = self.groups();
        for &g in &groups {
            signal_group(g, libc::SIGTERM);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline && groups.iter().any(|&g| group_alive(g)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for &g in &groups {
            signal_group(g, libc::SIGKILL);
        }
    }
}

/// Mount targets sorted so that a volume mounted inside another one is mounted after it.
pub fn order_mounts(mut mounts: Vec<BindMount>) -> Vec<BindMount> {
    mounts.sort_by_key(|m| m.target.components().count());
    mounts
}

/// Start the process. Returns the child; its pid is also its process group id.
pub fn spawn(launch: &Launch) -> io::Result<Child> {
    prepare_mount_targets(&launch.mounts)?;
    let mut cmd = Command::new(&launch.program);
    cmd.args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    match &launch.log {
        Some(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            cmd.stdout(Stdio::from(file.try_clone()?))
                .stderr(Stdio::from(file));
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    let setup = ChildSetup::new(launch)?;
    // SAFETY: the closure only makes system calls (setsid, unshare, mount, chdir) on data prepared
    // before the fork; it does not allocate or take locks.
    unsafe {
        cmd.pre_exec(move || setup.run());
    }
    cmd.kill_on_drop(false);
    cmd.spawn()
}

/// Send `signal` to a whole process group.
pub fn signal_group(pgid: i32, signal: i32) {
    if pgid > 0 {
        // SAFETY: plain syscall; a group that is already gone returns ESRCH, which is fine.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

pub fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    pgid > 0 && unsafe { libc::kill(-pgid, 0) } == 0
}

/// Kill processes left behind by an earlier run of a node with the same state dir (a node that was
/// SIGKILLed cannot clean up): they carry [`STATE_DIR_ENV`] in their environment.
pub fn kill_leftovers(state_dir: &Path) -> usize {
    let marker = format!("{STATE_DIR_ENV}={}", state_dir.display());
    let me = std::process::id() as i32;
    let mut killed = 0;
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|var| var == marker.as_bytes()) {
            // SAFETY: plain syscalls.
            unsafe {
                let pgid = libc::getpgid(pid);
                if pgid > 0 && pgid != libc::getpgid(0) {
                    libc::kill(-pgid, libc::SIGKILL);
                }
                libc::kill(pid, libc::SIGKILL);
            }
            killed += 1;
        }
    }
    killed
}

/// Mount targets must exist before they can be mounted over. A target inside another volume is created
/// in that volume's source (that is where it will be seen), every other one on the host's filesystem.
fn prepare_mount_targets(mounts: &[BindMount]) -> io::Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        let host_target = mounts[..i]
            .iter()
            .rev()
            .find_map(|outer| {
                m.target
                    .strip_prefix(&outer.target)
                    .ok()
                    .map(|rel| outer.source.join(rel))
            })
            .unwrap_or_else(|| m.target.clone());
        let source_is_dir = fs::metadata(&m.source)?.is_dir();
        if source_is_dir {
            if !host_target.is_dir() {
                fs::create_dir_all(&host_target)?;
            }
        } else if !host_target.exists() {
            if let Some(parent) = host_target.parent() {
                fs::create_dir_all(parent)?;
            }
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&host_target)?;
        }
    }
    Ok(())
}

/// C strings for the system calls made in the child, prepared before the fork.
struct ChildSetup {
    mounts: Vec<(CString, CString, bool)>,
    working_dir: CString,
}

impl ChildSetup {
    fn new(launch: &Launch) -> io::Result<Self> {
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
        };
        let mounts = launch
            .mounts
            .iter()
            .map(|m| Ok((c(&m.source)?, c(&normalize(&m.target))?, m.read_only)))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(ChildSetup {
            mounts,
            working_dir: c(&launch.working_dir)?,
        })
    }

    fn run(&self) -> io::Result<()> {
        let check = |rc: libc::c_int| {
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        // SAFETY: system calls on NUL-terminated strings owned by `self`.
        unsafe {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if !self.mounts.is_empty() {
                check(libc::unshare(libc::CLONE_NEWNS))?;
                let root = c"/";
                check(libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                for (source, target, read_only) in &self.mounts {
                    let flags = libc::MS_BIND | libc::MS_REC;
                    check(libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        flags,
                        std::ptr::null(),
                    ))?;
                    if *read_only {
                        check(libc::mount(
                            std::ptr::null(),
                            target.as_ptr(),
                            std::ptr::null(),
                            flags | libc::MS_REMOUNT | libc::MS_RDONLY,
                            std::ptr::null(),
                        ))?;
                    }
                }
            }
            check(libc::chdir(self.working_dir.as_ptr()))?;
        }
        Ok(())
    }
}

/// `/a/./b/` → `/a/b` (mount(2) resolves symlinks itself; `..` is rejected by the API server).
fn normalize(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_mounted_before_children() {
        let m = |t: &str| BindMount {
            source: "/s".into(),
            target: t.into(),
            read_only: false,
        };
        let ordered = order_mounts(vec![m("/data/sub/x"), m("/dev/termination-log"), m("/data")]);
        let targets: Vec<_> = ordered.iter().map(|m| m.target.to_str().unwrap()).collect();
        assert_eq!(targets, ["/data", "/dev/termination-log", "/data/sub/x"]);
    }
}
