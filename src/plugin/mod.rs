//! `kubectl lifeboat …`: the same binary installed (or linked) as `kubectl-lifeboat` on the PATH. What
//! operators of Lifeboat touch every day: one screen of status, a backup now, a GO in their own name,
//! an abort — without writing YAML.

mod actions;
mod cli;
mod kube_client;
mod logs;
mod pods;
mod restore;
mod snapshots;
mod status;
mod table;
mod watch;

pub use cli::PluginCli;

use std::process::ExitCode;

/// Errors the plugin reports to its user: each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot load the kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("{what}: {}", api_message(.source))]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Refused(String),
    #[error("cannot print {what}: {message}")]
    Output { what: &'static str, message: String },
    #[error("Cutover {name} ended {phase}")]
    Ended { name: String, phase: &'static str },
}

impl PluginError {
    fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> PluginError {
        let what = what.into();
        move |source| PluginError::Api { what, source }
    }
}

/// The API server's own message for a refusal (what a user can act on), else the client error.
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Whether this process was started as the kubectl plugin (`kubectl lifeboat` runs `kubectl-lifeboat`).
pub fn invoked_as_plugin() -> bool {
    std::env::args_os()
        .next()
        .and_then(|argv0| {
            std::path::Path::new(&argv0)
                .file_name()
                .map(|name| name.to_string_lossy().starts_with("kubectl-lifeboat"))
        })
        .unwrap_or(false)
}

pub async fn run(cli: PluginCli) -> ExitCode {
    match cli::dispatch(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
