//! SIGTERM (Kubernetes stopping the Pod) and SIGINT (a person pressing Ctrl-C).
//!
//! One listener, installed before any work starts, publishes the signal to every step that needs to
//! stop its children in a safe order (restic before its input closes, so it never records a snapshot of
//! a partial dump).

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct StopSignal(watch::Receiver<Option<&'static str>>);

impl StopSignal {
    /// Starts listening. Must run inside the tokio runtime.
    pub fn install() -> StopSignal {
        let (sender, receiver) = watch::channel(None);
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::spawn(async move {
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    };
                    let _ = sender.send(Some(name));
                    // Keep the sender alive so receivers do not see a closed channel.
                    std::future::pending::<()>().await;
                });
            }
            // Without handlers the default action (exit) still applies; nothing to publish.
            _ => drop(sender),
        }
        StopSignal(receiver)
    }

    /// Resolves with the signal's name once the agent is asked to stop.
    pub async fn requested(&self) -> &'static str {
        let mut receiver = self.0.clone();
        loop {
            if let Some(name) = *receiver.borrow_and_update() {
                return name;
            }
            if receiver.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}
