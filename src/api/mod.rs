//! The Lifeboat API (`lifeboat.dev/v1alpha1`): one module per kind, shared pieces in `common`.

// kube's derive takes one `printcolumn(...)` per column; clippy reads the repeated `type_ = "string"` as
// a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

pub mod backup;
pub mod backup_policy;
pub mod common;
pub mod cutover;
pub mod notifications;
pub mod restore;
pub mod restore_drill;

pub use backup::{Backup, BackupSpec, BackupStatus};
pub use backup_policy::{BackupPolicy, BackupPolicySpec, BackupPolicyStatus};
pub use cutover::{Cutover, CutoverSpec, CutoverStatus};
pub use restore::{Restore, RestoreSpec, RestoreStatus};
pub use restore_drill::{RestoreDrill, RestoreDrillSpec, RestoreDrillStatus};

pub const GROUP: &str = "lifeboat.dev";
pub const VERSION: &str = "v1alpha1";
/// `kubectl get lifeboat` lists every Lifeboat object.
pub const CATEGORY: &str = "lifeboat";
