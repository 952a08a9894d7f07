//! Specs the Restore controller's unit tests share.

use crate::api::backup_policy::BackupPolicySpec;
use crate::api::restore::RestoreSpec;

/// An unconfirmed restore into an existing PostgreSQL database.
pub const EXISTING: &str = "
source: {policyRef: {name: hotel-db}}
target: {postgres: {host: db.hotel.svc, database: hotel, user: kajovo, passwordSecretRef: {name: db, key: password}}}
";

pub fn spec(yaml: &str) -> RestoreSpec {
    serde_norway::from_str(yaml).expect("valid Restore spec")
}

pub fn policy() -> BackupPolicySpec {
    serde_norway::from_str(
        "
schedule: '0 2 * * *'
source: {postgres: {host: db, database: hotel, user: kajovo, passwordSecretRef: {name: db, key: password}}}
repository: {restic: {repository: /backups/hotel, passwordSecretRef: {name: restic, key: password}}}
",
    )
    .expect("valid policy")
}
