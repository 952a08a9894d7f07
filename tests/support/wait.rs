//! Waiting for the operator to get somewhere: polling until a check passes, or failing with what was
//! last seen and the operator's log.

use std::time::{Duration, Instant};

/// Where a failed wait finds the operator's last words: the installed Deployment's Pod log.
pub trait OperatorLog {
    fn log_tail(&self) -> String;
}

/// Polls `check` every `every` until it returns Ok; past `timeout`, panics with
/// "`what` not within `timeout`; `last`" (`last` being the check's last Err) and the operator's log.
pub async fn poll<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    operator: &dyn OperatorLog,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if start.elapsed() > timeout => panic!(
                "{what} not within {timeout:?}; {last}\noperator log:\n{}",
                operator.log_tail()
            ),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// Polls `check` every half second until it returns Ok, or fails with what was last seen.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    operator: &dyn OperatorLog,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    poll(what, timeout, Duration::from_millis(500), operator, async || {
        check().await.map_err(|last| format!("last seen: {last}"))
    })
    .await
}
