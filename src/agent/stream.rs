//! `lifeboat agent stream -- <dump tool …>`: the agent's own binary, run by `restic backup
//! --stdin-from-command` in place of the dump tool.
//!
//! restic runs the command, stores its stdout and records a snapshot only if the command exits 0
//! (restic ≥ 0.17, `internal/fs/fs_reader_command.go`), so a dump that fails or is killed can never leave
//! a snapshot behind, without the agent having to mark snapshots incomplete and confirm them afterwards
//! with a second restic run (each costs ~0.7 s of key derivation, and `restic tag` needs the exclusive
//! lock). This wrapper spawns the real tool, copies its stdout to restic while counting and hashing it,
//! and exits non-zero if the tool failed or restic stopped reading.
//!
//! What it measured goes back to the agent in a small JSON file rather than on stderr: restic forwards a
//! command's stderr from a goroutine that it does not wait for, so the last lines can be lost when the
//! command exits, and a file also carries the tool's stderr tail for the agent's one-line cause without
//! parsing restic's prefixed log. The file lives in a private (0700) directory the agent creates and
//! removes (`ReportDir`).
//!
//! Runs synchronously on the main thread: PR_SET_PDEATHSIG fires when the *thread* that forked a child
//! exits, and the main thread lives exactly as long as this process.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};

use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::Signal;
use nix::unistd::getppid;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cli::StreamArgs;
use super::process::{describe_status, enlarge_pipe};

const BUFFER_BYTES: usize = 1024 * 1024;
/// Enough of the tool's stderr for its error and context (like `process::STDERR_TAIL_BYTES`).
const STDERR_TAIL_BYTES: usize = 16 * 1024;
const REPORT_FILE: &str = "stream.json";

/// What the wrapper tells the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The tool ran, exited 0, and restic took everything it wrote.
    pub ok: bool,
    pub size: u64,
    pub sha256: String,
    /// The tool's exit status ("exit code 1", "signal 9"); empty if it never started.
    pub status: String,
    pub tool_succeeded: bool,
    /// restic stopped reading before the tool finished (restic failed or was stopped).
    pub writer_closed_early: bool,
    /// Why the tool could not be started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawn_error: Option<String>,
    /// The tail of the tool's stderr (also forwarded line by line, so it is in restic's log too).
    pub stderr: String,
}

/// Runs the wrapper; returns its exit code.
pub fn run(args: &StreamArgs) -> i32 {
    die_with_parent();
    let report = stream(args);
    let code = if report.ok { 0 } else { 1 };
    if let Err(error) = write_report(&args.report, &report) {
        eprintln!(
            "lifeboat agent stream: cannot write {}: {error}",
            args.report.display()
        );
        return 1;
    }
    code
}

/// restic is our parent: if it is killed, nobody reads the dump any more.
fn die_with_parent() {
    let parent = getppid();
    let _ = set_pdeathsig(Signal::SIGKILL);
    // The parent may have died between the two calls: then the signal will never come.
    if getppid() != parent {
        std::process::exit(1);
    }
}

fn stream(args: &StreamArgs) -> Report {
    let mut report = Report::default();
    let Some((program, rest)) = args.command.split_first() else {
        report.spawn_error = Some("no command given".into());
        return report;
    };
    let mut command = Command::new(program);
    command
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in &args.unset {
        command.env_remove(name);
    }
    let wrapper = nix::unistd::getpid();
    // SAFETY: pre_exec itself has no safe form. Between fork and exec the closure makes only
    // async-signal-safe calls (prctl, getppid; nix's wrappers neither allocate nor lock).
    unsafe {
        command.pre_exec(move || {
            set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            if getppid() != wrapper {
                return Err(std::io::Error::other("the wrapper exited"));
            }
            Ok(())
        });
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            report.spawn_error = Some(format!("{}: {error}", Path::new(program).display()));
            return report;
        }
    };
    let name = tool_name(program);
    let stderr_tail = child
        .stderr
        .take()
        .map(|stderr| std::thread::spawn(move || forward_stderr(&name, stderr)));
    let Some(mut input) = child.stdout.take() else {
        let _ = child.kill();
        report.spawn_error = Some("no stdout pipe".into());
        return report;
    };
    enlarge_pipe(&input);
    // Unbuffered fd 1: std's stdout is line-buffered, which would scan every byte for newlines.
    let mut output = match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => File::from(fd),
        Err(error) => {
            let _ = child.kill();
            report.spawn_error = Some(format!("cannot use stdout: {error}"));
            return report;
        }
    };
    enlarge_pipe(&output);

    let mut hasher = Sha256::new();
    let copied = copy_buffered(&mut input, &mut output, &mut hasher, &mut report.size);
    let read_failed = copied == Copied::ReadFailed;
    if copied == Copied::WriterClosed {
        // restic is gone or stopped reading: the dump is worthless, stop the tool now.
        report.writer_closed_early = true;
        let _ = child.kill();
    }
    drop(input);
    drop(output);
    let status = child.wait();
    report.stderr = stderr_tail
        .and_then(|handle| handle.join().ok())
        .unwrap_or_default();
    report.sha256 = hex::encode(hasher.finalize());
    match status {
        Ok(status) => {
            report.status = describe_status(&status);
            report.tool_succeeded = status.success();
        }
        Err(error) => report.status = format!("unknown ({error})"),
    }
    report.ok = report.tool_succeeded && !report.writer_closed_early && !read_failed;
    report
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Copied {
    Done,
    ReadFailed,
    WriterClosed,
}

/// Read, hash, write. (splice(2) to restic with a tee(2) copy for the hash was tried: it saved no
/// measurable CPU on 300 MB, so the plain loop stays.)
fn copy_buffered(input: &mut ChildStdout, output: &mut File, hasher: &mut Sha256, size: &mut u64) -> Copied {
    let mut buffer = vec![0u8; BUFFER_BYTES];
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => return Copied::Done,
            Ok(n) => n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Copied::ReadFailed,
        };
        hasher.update(&buffer[..n]);
        *size += n as u64;
        if output.write_all(&buffer[..n]).is_err() {
            return Copied::WriterClosed;
        }
    }
}

fn tool_name(program: &OsString) -> String {
    Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.to_string_lossy().into_owned())
}

/// Forwards the tool's stderr line by line (restic logs it as `subprocess …: [pg_dump] …`) and keeps
/// the tail.
fn forward_stderr(name: &str, stderr: impl Read) -> String {
    let mut tail = String::new();
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut err = std::io::stderr();
    while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        let _ = writeln!(err, "[{name}] {text}");
        tail.push_str(text);
        tail.push('\n');
        if tail.len() > STDERR_TAIL_BYTES * 2 {
            let cut = tail.len() - STDERR_TAIL_BYTES;
            let cut = (cut..tail.len()).find(|i| tail.is_char_boundary(*i)).unwrap_or(0);
            tail.drain(..cut);
        }
        line.clear();
    }
    tail
}

/// Written to a temporary name and renamed, so the agent never reads half a report.
fn write_report(path: &Path, report: &Report) -> std::io::Result<()> {
    let json = serde_json::to_vec(report).map_err(std::io::Error::other)?;
    let partial = path.with_extension("partial");
    std::fs::write(&partial, json)?;
    std::fs::rename(&partial, path)
}

/// The agent's side: a private directory for the wrapper's report, removed when dropped.
pub struct ReportDir {
    dir: PathBuf,
}

impl ReportDir {
    /// In the first writable of: TMPDIR (or /tmp), the restic cache directory, $HOME/.cache. A Job's
    /// container has a writable root filesystem unless its template says otherwise; restic needs its
    /// cache directory writable anyway, which makes it the fallback.
    pub fn create() -> std::io::Result<ReportDir> {
        use std::os::unix::fs::DirBuilderExt;
        let mut candidates = vec![std::env::temp_dir()];
        if let Some(cache) = std::env::var_os("RESTIC_CACHE_DIR") {
            candidates.push(PathBuf::from(cache));
        }
        if let Some(cache) = std::env::var_os("XDG_CACHE_HOME") {
            candidates.push(PathBuf::from(cache));
        }
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(PathBuf::from(home).join(".cache"));
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut last_error = std::io::Error::other("no candidate directory");
        for parent in candidates {
            let dir = parent.join(format!("lifeboat-stream-{}-{nanos:x}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(ReportDir { dir }),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(REPORT_FILE)
    }

    /// The report, if the wrapper got as far as writing one.
    pub fn read(&self) -> Option<Report> {
        let text = std::fs::read(self.path()).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

impl Drop for ReportDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_round_trips_through_its_directory() {
        let dir = ReportDir::create().expect("report dir");
        assert!(dir.read().is_none());
        let report = Report {
            ok: true,
            size: 3,
            sha256: "ab".into(),
            status: "exit code 0".into(),
            tool_succeeded: true,
            ..Report::default()
        };
        write_report(&dir.path(), &report).expect("write");
        assert_eq!(dir.read(), Some(report));
        let path = dir.path();
        drop(dir);
        assert!(!path.exists());
    }
}
