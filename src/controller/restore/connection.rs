//! How the agent reaches a Restore's target: a database (on an existing server, or a scratch server
//! whose connection `scratch` derives from its status) or a directory on a PersistentVolumeClaim.

use crate::api::common::{ScratchEngine, SecretKeyRef};
use crate::api::restore::RestoreSpec;

/// How the agent reaches the target.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    Database {
        engine: ScratchEngine,
        host: String,
        port: i32,
        database: String,
        user: String,
        password: SecretKeyRef,
        ssl_mode: Option<String>,
    },
    Files {
        claim: String,
        path: String,
    },
}

impl Connection {
    /// The target as a person reads it in status and Events (no credentials).
    pub fn describe(&self) -> String {
        match self {
            Connection::Database {
                engine,
                host,
                port,
                database,
                ..
            } => {
                format!("{} database {database} on {host}:{port}", engine_name(*engine))
            }
            Connection::Files { claim, path } => format!("directory {path} on PersistentVolumeClaim {claim}"),
        }
    }
}

pub(super) fn engine_name(engine: ScratchEngine) -> &'static str {
    match engine {
        ScratchEngine::Postgres => "postgres",
        ScratchEngine::Mysql => "mysql",
    }
}

/// The connection of a target on an existing server or volume (scratch targets come from their status).
pub fn existing_connection(spec: &RestoreSpec) -> Option<Connection> {
    let target = &spec.target;
    if let Some(pg) = &target.postgres {
        return Some(Connection::Database {
            engine: ScratchEngine::Postgres,
            host: pg.host.clone(),
            port: pg.port,
            database: pg.database.clone(),
            user: pg.user.clone(),
            password: pg.password_secret_ref.clone(),
            ssl_mode: pg.ssl_mode.clone(),
        });
    }
    if let Some(my) = &target.mysql {
        return Some(Connection::Database {
            engine: ScratchEngine::Mysql,
            host: my.host.clone(),
            port: my.port,
            database: my.database.clone(),
            user: my.user.clone(),
            password: my.password_secret_ref.clone(),
            ssl_mode: None,
        });
    }
    target.files.as_ref().map(|files| Connection::Files {
        claim: files.persistent_volume_claim.clone(),
        path: files.path.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::restore::fixtures::{spec, EXISTING};

    #[test]
    fn a_target_is_described_without_its_credentials() {
        let database = existing_connection(&spec(EXISTING)).unwrap();
        assert_eq!(
            database.describe(),
            "postgres database hotel on db.hotel.svc:5432"
        );
        let files = existing_connection(&spec(
            "source: {policyRef: {name: p}}\ntarget: {files: {persistentVolumeClaim: uploads, path: /media}}\n",
        ))
        .unwrap();
        assert_eq!(
            files.describe(),
            "directory /media on PersistentVolumeClaim uploads"
        );
    }

    #[test]
    fn a_scratch_target_has_no_existing_connection() {
        let scratch = spec("source: {policyRef: {name: p}}\ntarget: {scratch: {engine: mysql}}\n");
        assert_eq!(existing_connection(&scratch), None);
    }
}
