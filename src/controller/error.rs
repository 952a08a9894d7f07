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
