//! Child processes: spawning the tools, keeping the tail of their stderr for classification, and the
//! pump that moves a dump from one tool to the other while measuring it.

use std::process::{ExitStatus, Stdio};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::task::JoinHandle;

use super::error::AgentError;

/// How much of a tool's stderr is kept: enough for the error and its context, bounded so a chatty tool
/// cannot grow the agent's memory.
const STDERR_TAIL_BYTES: usize = 16 * 1024;

/// Pump buffer: large reads keep syscalls and task wake-ups rare next to restic's ~100 MB/s.
const PUMP_BUFFER_BYTES: usize = 1024 * 1024;

/// Replaces secrets in anything the agent prints, as a second line of defence: the tools are not supposed
/// to print passwords, but a repository URL with credentials in it easily ends up in an error message.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn add(&mut self, secret: &str) {
        // Very short values would blank out ordinary words; they are not worth hiding from logs anyway.
        if secret.len() >= 4 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_string());
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }
}

/// A running tool whose stderr is forwarded (prefixed and redacted) to ours and whose tail is kept.
pub struct Tool {
    pub name: String,
    pub child: Child,
    stderr: Option<JoinHandle<String>>,
    /// Set when the agent itself stopped the process, so its failure is not mistaken for the cause.
    pub killed_by_us: bool,
}

/// What a tool left behind.
pub struct Finished {
    pub status: ExitStatus,
    pub stderr: String,
    pub killed_by_us: bool,
}

impl Finished {
    pub fn describe_status(&self) -> String {
        describe_status(&self.status)
    }
}

pub fn describe_status(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => "an unknown status".to_string(),
    }
}

impl Tool {
    /// Spawns `command`; stdin and stdout as given, stderr always captured.
    pub fn spawn(
        name: &str,
        mut command: Command,
        stdin: Stdio,
        stdout: Stdio,
        redactor: &Redactor,
    ) -> Result<Tool, AgentError> {
        command
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| AgentError::ToolMissing {
            tool: name.to_string(),
            source,
        })?;
        let stderr = child
            .stderr
            .take()
            .map(|stderr| forward_stderr(name, stderr, redactor.clone()));
        Ok(Tool {
            name: name.to_string(),
            child,
            stderr,
            killed_by_us: false,
        })
    }

    /// Asks the tool to stop the way Ctrl-C would, so restic removes its lock and writes no snapshot.
    pub fn interrupt(&mut self) {
        self.killed_by_us = true;
        if let Some(pid) = self.child.id() {
            // A pid we spawned and have not reaped yet (id() is None after wait), so it is still ours.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGINT,
            );
        }
    }

    /// Stops the tool for good.
    pub fn kill(&mut self) {
        self.killed_by_us = true;
        let _ = self.child.start_kill();
    }

    /// Interrupts the tool and kills it if it has not exited after `grace`.
    pub async fn stop(mut self, grace: std::time::Duration) -> Result<Finished, AgentError> {
        self.interrupt();
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(_) => {}
            Err(_) => self.kill(),
        }
        self.wait().await
    }

    pub async fn wait(mut self) -> Result<Finished, AgentError> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| AgentError::internal(format!("waiting for {}", self.name), e))?;
        let stderr = match self.stderr.take() {
            Some(handle) => handle.await.unwrap_or_default(),
            None => String::new(),
        };
        Ok(Finished {
            status,
            stderr,
            killed_by_us: self.killed_by_us,
        })
    }
}

/// Forwards stderr line by line so a Job's log shows the tools' own words, and keeps the tail.
fn forward_stderr(name: &str, stderr: ChildStderr, redactor: Redactor) -> JoinHandle<String> {
    let prefix = format!("[{name}] ");
    tokio::spawn(async move {
        let mut tail = String::new();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = redactor.redact(&line);
            eprintln!("{prefix}{line}");
            tail.push_str(&line);
            tail.push('\n');
            if tail.len() > STDERR_TAIL_BYTES * 2 {
                let cut = tail.len() - STDERR_TAIL_BYTES;
                let cut = (cut..tail.len()).find(|i| tail.is_char_boundary(*i)).unwrap_or(0);
                tail.drain(..cut);
            }
        }
        tail
    })
}

/// Runs a short command to completion with optional stdin, returning its stdout.
pub async fn run_capture(
    name: &str,
    command: Command,
    input: Option<&[u8]>,
    redactor: &Redactor,
) -> Result<(Finished, String), AgentError> {
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut tool = Tool::spawn(name, command, stdin, Stdio::piped(), redactor)?;
    let mut stdout = tool.child.stdout.take();
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        if let Some(stdout) = stdout.as_mut() {
            let _ = stdout.read_to_end(&mut out).await;
        }
        out
    });
    if let (Some(input), Some(mut stdin)) = (input, tool.child.stdin.take()) {
        // A tool that exits early closes the pipe; its own exit status then tells what happened.
        let _ = stdin.write_all(input).await;
        drop(stdin);
    }
    let finished = tool.wait().await?;
    let out = reader.await.unwrap_or_default();
    Ok((finished, String::from_utf8_lossy(&out).into_owned()))
}

/// What went through the pump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    pub size: u64,
    pub sha256: String,
    /// The writer stopped accepting data before the reader ended (it exited or closed its input).
    pub writer_closed_early: bool,
}

/// Copies exactly `size` bytes from `reader` to `writer`, hashing and counting every byte on the way so
/// the dump never touches the disk. When the writer goes away the rest is still read and hashed: that
/// tells whether the snapshot was intact even if the loader stopped early. The writer is NOT closed
/// here: closing it is the commit point the caller decides on. Everything is written except the last `hold_back` bytes, which are returned instead of written: a loader that
/// knows where its input ends (pg_restore's custom format does) would otherwise commit before the caller
/// has checked the sha256 of the whole stream. Ends early only if the reader does.
pub async fn pump_holding_back<R, W>(
    reader: &mut R,
    writer: &mut W,
    size: u64,
    hold_back: u64,
) -> Result<(Measured, Vec<u8>), std::io::Error>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let hold_back = hold_back.min(size);
    let mut buffer = vec![0u8; PUMP_BUFFER_BYTES];
    let mut held = Vec::with_capacity(hold_back as usize);
    let mut hasher = Sha256::new();
    let mut done: u64 = 0;
    let mut writer_open = true;
    let mut progress = super::progress::Reporter::default();
    while done < size {
        let want = (size - done).min(buffer.len() as u64) as usize;
        let n = reader.read(&mut buffer[..want]).await?;
        if n == 0 {
            break;
        }
        let chunk = &buffer[..n];
        hasher.update(chunk);
        // The part of this chunk that lies before the held-back tail goes to the writer.
        let pass = (size - hold_back).saturating_sub(done).min(n as u64) as usize;
        if writer_open && pass > 0 && writer.write_all(&chunk[..pass]).await.is_err() {
            writer_open = false;
        }
        held.extend_from_slice(&chunk[pass..]);
        done += n as u64;
        progress.report(done, Some(size));
    }
    if writer_open && writer.flush().await.is_err() {
        writer_open = false;
    }
    Ok((
        Measured {
            size: done,
            sha256: hex::encode(hasher.finalize()),
            writer_closed_early: !writer_open,
        },
        held,
    ))
}

/// Makes a pipe hold more than the default 64 KiB, so pg_dump and restic stall less on each other's
/// bursts. Best effort: the kernel may refuse above /proc/sys/fs/pipe-max-size.
pub fn enlarge_pipe<F: std::os::fd::AsFd>(pipe: &F) {
    let _ = nix::fcntl::fcntl(
        pipe.as_fd(),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(PUMP_BUFFER_BYTES as std::ffi::c_int),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pump_hashes_what_it_copies() {
        let data = b"hello lifeboat".repeat(100_000);
        let mut reader = &data[..];
        let mut out = Vec::new();
        let (measured, held) = pump_holding_back(&mut reader, &mut out, data.len() as u64, 0)
            .await
            .expect("pump");
        assert_eq!(out, data);
        assert!(held.is_empty());
        assert_eq!(measured.size, data.len() as u64);
        assert_eq!(measured.sha256, hex::encode(Sha256::digest(&data)));
        assert!(!measured.writer_closed_early);
    }

    #[tokio::test]
    async fn the_held_back_tail_is_hashed_but_not_written() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut reader = &data[..];
        let mut out = Vec::new();
        let (measured, held) = pump_holding_back(&mut reader, &mut out, 2_999_000, 65536)
            .await
            .expect("pump");
        assert_eq!(measured.size, 2_999_000);
        assert_eq!(measured.sha256, hex::encode(Sha256::digest(&data[..2_999_000])));
        assert_eq!(out, &data[..2_999_000 - 65536]);
        assert_eq!(held, &data[2_999_000 - 65536..2_999_000]);
        assert_eq!(reader.len(), 1000, "nothing read past the size");
    }

    #[test]
    fn redactor_hides_every_secret() {
        let mut redactor = Redactor::default();
        redactor.add("s3cr3t-pass");
        redactor.add("ab");
        assert_eq!(
            redactor.redact("rest:https://u:s3cr3t-pass@h/ ab"),
            "rest:https://u:***@h/ ab"
        );
    }
}
