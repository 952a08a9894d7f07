//! The error of a reconcile: every variant says what to check, and has a short metric label.

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{kind} {name} has no namespace")]
    NotNamespaced { kind: &'static str, name: String },
    #[error(
        "the operator's cache of {kind}s is not filled yet (is the API server slow or refusing the watch?)"
    )]
    CacheNotReady { kind: &'static str },
}

impl ReconcileError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReconcileError::Kube(_) => "kube",
            ReconcileError::NotNamespaced { .. } => "not_namespaced",
            ReconcileError::CacheNotReady { .. } => "cache_not_ready",
        }
    }
}

/// How long a kind's objects wait at most between retries of a failing reconcile.
fn max_error_backoff(kind: &str) -> std::time::Duration {
    match kind {
        // A Cutover in its stabilization window or waiting on a rollback must not stay blind for long.
        "Cutover" => std::time::Duration::from_secs(5),
        // Scheduled kinds: an error's requeue replaces the wake-up for the next slot, so a longer wait
        // could make a slot late (or missed past startingDeadlineSeconds).
        _ => std::time::Duration::from_secs(60),
    }
}

fn backoff_key<K: kube::Resource<DynamicType = ()>>(object: &K) -> String {
    let meta = object.meta();
    format!(
        "{}/{}/{}",
        K::kind(&()),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.uid.as_deref().or(meta.name.as_deref()).unwrap_or_default()
    )
}

/// The error policy of every controller: logged with the object's name, counted by kind and cause, and
/// retried after this object's own backoff.
pub fn error_policy<K>(
    object: std::sync::Arc<K>,
    error: &ReconcileError,
    ctx: std::sync::Arc<super::Context>,
) -> kube::runtime::controller::Action
where
    K: kube::Resource<DynamicType = ()>,
{
    let kind = K::kind(&());
    let meta = object.meta();
    tracing::warn!(
        kind = %kind,
        namespace = meta.namespace.as_deref().unwrap_or_default(),
        name = meta.name.as_deref().unwrap_or_default(),
        %error,
        "reconcile failed"
    );
    ctx.metrics.reconcile_failed(&kind, error.metric_label());
    let delay = ctx
        .error_backoff
        .next_delay(&backoff_key(object.as_ref()), max_error_backoff(&kind));
    kube::runtime::controller::Action::requeue(delay)
}

/// Wraps a reconcile function so that a success resets the object's error backoff.
pub async fn reconciled<K, F, Fut>(
    reconcile: F,
    object: std::sync::Arc<K>,
    ctx: std::sync::Arc<super::Context>,
) -> Result<kube::runtime::controller::Action, ReconcileError>
where
    K: kube::Resource<DynamicType = ()>,
    F: FnOnce(std::sync::Arc<K>, std::sync::Arc<super::Context>) -> Fut,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, ReconcileError>>,
{
    let key = backoff_key(object.as_ref());
    let started = std::time::Instant::now();
    let name = object.meta().name.clone().unwrap_or_default();
    let result = reconcile(object, ctx.clone()).await;
    // A reconcile should take milliseconds; one that waited long says where the time went.
    if started.elapsed() > std::time::Duration::from_secs(5) {
        tracing::info!(kind = %K::kind(&()), %name, took = ?started.elapsed(), "slow reconcile");
    }
    if result.is_ok() {
        ctx.error_backoff.succeeded(&key);
    }
    result
}
