//! The program that loads a dump into the target database during a restore.
//!
//! Usually one process (pg_restore, psql or mariadb) reading the dump on stdin. One case needs two:
//! pg_restore 17 opens every restore with `SET transaction_timeout = 0`, a setting servers before 17 do
//! not know, so with `--exit-on-error` every restore of a custom-format dump into PostgreSQL 16 or older
//! fails before it loads a row. The lifeboat image carries the newest clients (pg_dump must be at least
//! the server's version), so that is every restore into an older production server or scratch database.
//! Then pg_restore writes the script instead (`--file=-`, still one transaction), the agent drops that
//! one line from the script's preamble, and psql loads it with `ON_ERROR_STOP`: the same transaction and
//! the same stop at the first error.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::ChildStdin;
use tokio::task::JoinHandle;

use super::cli::Engine;
use super::database::Database;
use super::error::AgentError;
use super::process::{enlarge_pipe, Finished, Tool};

/// The first server version that knows `transaction_timeout`.
const TRANSACTION_TIMEOUT_SINCE: u32 = 170_000;
/// The preamble line older servers reject.
const NEWER_SETTING: &str = "SET transaction_timeout = 0;";

pub enum Loader {
    One(Tool),
    /// pg_restore's script, filtered, into psql.
    Script {
        script: Tool,
        load: Box<Tool>,
        relay: JoinHandle<std::io::Result<()>>,
    },
}

impl Loader {
    /// Starts the loader for a dump of `format`.
    pub async fn start(db: &Database, format: &str, no_owner: bool) -> Result<Loader, AgentError> {
        if db.engine == Engine::Postgres && format == "custom" && needs_script(db).await {
            eprintln!(
                "lifeboat: the server is older than PostgreSQL 17: loading pg_restore's script with psql"
            );
            let mut script = Tool::spawn(
                "pg_restore",
                db.script_command(no_owner),
                Stdio::piped(),
                Stdio::piped(),
                &db.redactor,
            )?;
            let script_out = script
                .child
                .stdout
                .take()
                .ok_or_else(|| AgentError::internal("starting pg_restore", "no stdout pipe"))?;
            let mut load = match Tool::spawn(
                "psql",
                db.script_load_command(),
                Stdio::piped(),
                Stdio::null(),
                &db.redactor,
            ) {
                Ok(load) => Box::new(load),
                Err(error) => {
                    script.kill();
                    return Err(error);
                }
            };
            let load_in = load
                .child
                .stdin
                .take()
                .ok_or_else(|| AgentError::internal("starting psql", "no stdin pipe"))?;
            let relay = tokio::spawn(relay_without_newer_settings(script_out, load_in));
            return Ok(Loader::Script { script, load, relay });
        }
        let (name, command) = db.load_command(format, no_owner);
        let tool = Tool::spawn(&name, command, Stdio::piped(), Stdio::null(), &db.redactor)?;
        Ok(Loader::One(tool))
    }

    /// Where the dump goes.
    pub fn take_stdin(&mut self) -> Result<ChildStdin, AgentError> {
        let tool = match self {
            Loader::One(tool) => tool,
            Loader::Script { script, .. } => script,
        };
        let stdin = tool
            .child
            .stdin
            .take()
            .ok_or_else(|| AgentError::internal(format!("starting {}", tool.name), "no stdin pipe"))?;
        enlarge_pipe(&stdin);
        Ok(stdin)
    }

    /// Stops everything before it commits: psql must never see the end of a script cut short.
    pub fn kill(&mut self) {
        match self {
            Loader::One(tool) => tool.kill(),
            Loader::Script { script, load, relay } => {
                load.kill();
                script.kill();
                relay.abort();
            }
        }
    }

    /// Waits for the load; a failed pg_restore is the cause even when psql then saw a short script.
    pub async fn wait(self) -> Result<(String, Finished), AgentError> {
        match self {
            Loader::One(tool) => {
                let name = tool.name.clone();
                Ok((name, tool.wait().await?))
            }
            Loader::Script {
                script,
                mut load,
                relay,
            } => {
                let written = script.wait().await?;
                if !written.status.success() {
                    // psql stopping at an error closes the pipe under pg_restore: then psql has the cause.
                    if matches!(load.child.try_wait(), Ok(Some(status)) if !status.success()) {
                        relay.abort();
                        return Ok(("psql".to_string(), load.wait().await?));
                    }
                    // The script is incomplete: psql must not reach its end and commit what it has.
                    load.kill();
                    relay.abort();
                    let _ = load.wait().await;
                    return Ok(("pg_restore".to_string(), written));
                }
                let relayed = relay.await;
                let loaded = load.wait().await?;
                if let Ok(Err(error)) | Err(error) = relayed.map_err(std::io::Error::other) {
                    if loaded.status.success() {
                        return Err(AgentError::internal("passing pg_restore's script to psql", error));
                    }
                }
                Ok(("psql".to_string(), loaded))
            }
        }
    }
}

/// Whether pg_restore must write a script: this pg_restore sends a setting the server predates.
async fn needs_script(db: &Database) -> bool {
    let Some(client) = client_version(db).await else {
        return false;
    };
    if client < TRANSACTION_TIMEOUT_SINCE {
        return false;
    }
    match db.query(None, "SHOW server_version_num", true).await {
        Ok(version) => version
            .trim()
            .parse::<u32>()
            .is_ok_and(|v| v < TRANSACTION_TIMEOUT_SINCE),
        // The load itself will report an unreachable server in its own words.
        Err(_) => false,
    }
}

/// pg_restore's version in the server's numbering (17.2 -> 170002), from `pg_restore --version`.
async fn client_version(db: &Database) -> Option<u32> {
    let output = db.command("pg_restore").arg("--version").output().await.ok()?;
    version_number(&String::from_utf8_lossy(&output.stdout))
}

fn version_number(text: &str) -> Option<u32> {
    let version = text
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    Some(major * 10_000 + minor)
}

/// Copies the script, leaving out the one preamble line older servers reject. Only the preamble (up to
/// the first object's comment) is looked at; from there on the bytes pass untouched, so table data that
/// happens to read like that line is never changed.
async fn relay_without_newer_settings<R, W>(script: R, mut load: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut script = BufReader::with_capacity(1 << 16, script);
    let mut line = Vec::new();
    loop {
        line.clear();
        if script.read_until(b'\n', &mut line).await? == 0 {
            return load.shutdown().await;
        }
        if line.trim_ascii_end() == NEWER_SETTING.as_bytes() {
            continue;
        }
        load.write_all(&line).await?;
        if line.starts_with(b"-- Name: ") || line.starts_with(b"-- Data for Name: ") {
            break;
        }
    }
    tokio::io::copy_buf(&mut script, &mut load).await?;
    load.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn relayed(script: &str) -> String {
        let mut out = Vec::new();
        relay_without_newer_settings(script.as_bytes(), &mut out)
            .await
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn the_preamble_loses_only_the_setting_older_servers_reject() {
        let script = "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n\
                      SET transaction_timeout = 0;\nSET lock_timeout = 0;\nBEGIN;\n\n--\n\
                      -- Name: t; Type: TABLE\n--\n\nCREATE TABLE t (x text);\n";
        assert_eq!(
            relayed(script).await,
            script.replace("SET transaction_timeout = 0;\n", "")
        );
    }

    #[test]
    fn client_versions_read_like_the_server_s() {
        assert_eq!(version_number("pg_restore (PostgreSQL) 17.2\n"), Some(170_002));
        assert_eq!(
            version_number("pg_restore (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(150_018)
        );
        assert_eq!(version_number("pg_restore (PostgreSQL) 18beta1"), Some(180_000));
        assert_eq!(version_number("nothing"), None);
    }

    #[tokio::test]
    async fn table_data_that_reads_like_the_setting_is_kept() {
        let script = "SET transaction_timeout = 0;\n--\n-- Data for Name: t; Type: TABLE DATA\n--\n\n\
                      COPY public.t (x) FROM stdin;\nSET transaction_timeout = 0;\n\\.\n";
        let out = relayed(script).await;
        assert!(!out.starts_with("SET transaction_timeout"), "{out}");
        assert!(
            out.contains("FROM stdin;\nSET transaction_timeout = 0;\n\\.\n"),
            "{out}"
        );
    }
}
