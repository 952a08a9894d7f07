//! `kubectl lifeboat restore <backup|policy> --to <database>`: a Restore into a database on the policy's
//! own server (another database, or the backed-up one itself once its name is repeated), without
//! writing YAML. The API's overwrite guard stays in force: the plugin only fills in confirmOverwrite
//! when the person repeats the database's name.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use kube::api::PostParams;
use kube::ResourceExt;

use super::kube_client::Session;
use super::PluginError;
use crate::api::backup_policy::BackupSource;
use crate::api::common::{DatabaseTarget, LocalObjectRef, SecretKeyRef};
use crate::api::restore::{RestorePhase, RestoreSource, RestoreSpec};
use crate::api::{Backup, BackupPolicy, Restore};

/// What to restore into, from the command line.
pub struct RestoreRequest {
    /// `backup/NAME`, `policy/NAME` or a bare name (a Backup, else a BackupPolicy).
    pub source: String,
    pub snapshot: Option<String>,
    pub database: String,
    pub host: Option<String>,
    pub port: Option<i32>,
    pub user: Option<String>,
    /// `SECRET/KEY`.
    pub password_secret: Option<String>,
    pub confirm_overwrite: Option<String>,
    pub wait: Option<Duration>,
}

pub async fn restore(session: &Session, request: RestoreRequest) -> Result<(), PluginError> {
    let (source, policy) = resolve_source(session, &request).await?;
    let target = target(&policy, &request)?;
    let replaces_source = same_database(&policy.spec.source, &target);
    let ask = std::io::stdin()
        .is_terminal()
        .then_some(ask_for_name as fn(&str, &str) -> String);
    let confirm = confirmation(&request, replaces_source, &policy.name_any(), ask)?;
    let mut restore = Restore::new(
        "",
        RestoreSpec {
            source,
            target,
            drop_existing: false,
            confirm_overwrite: confirm.clone(),
            keep_scratch: false,
            drop_after: false,
            verify: None,
            smoke: None,
            job_template: None,
        },
    );
    restore.metadata.name = None;
    restore.metadata.generate_name = Some(format!("{}-restore-", short_name(&request.source)));
    let created = session
        .api::<Restore>()
        .create(&PostParams::default(), &restore)
        .await
        .map_err(PluginError::api("creating the Restore"))?;
    let name = created.name_any();
    println!("restore.lifeboat.dev/{name} created");
    if confirm.is_none() {
        println!(
            "if {} already has tables, the Restore fails without touching it; to replace it, run again \
             with --confirm-overwrite {}",
            request.database, request.database
        );
    }
    match request.wait {
        Some(timeout) => wait(session, &name, timeout).await,
        None => {
            println!(
                "follow it: kubectl -n {} get restore {name} -w",
                session.namespace
            );
            Ok(())
        }
    }
}

fn short_name(source: &str) -> &str {
    source.rsplit('/').next().unwrap_or(source)
}

/// What the source argument names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    Backup,
    Policy,
    /// A bare name: a Backup if there is one, else a BackupPolicy.
    Either,
}

/// The Restore's source and the policy whose server and repository it uses.
async fn resolve_source(
    session: &Session,
    request: &RestoreRequest,
) -> Result<(RestoreSource, BackupPolicy), PluginError> {
    let (named, name) = match request.source.split_once('/') {
        Some(("backup" | "backups" | "bk" | "backup.lifeboat.dev", name)) => (Named::Backup, name),
        Some(("policy" | "backuppolicy" | "backuppolicies" | "bp" | "backuppolicy.lifeboat.dev", name)) => {
            (Named::Policy, name)
        }
        Some((other, name)) => {
            return Err(PluginError::Refused(format!(
                "restore from backup/NAME or policy/NAME, not {other}/{name}"
            )))
        }
        None => (Named::Either, request.source.as_str()),
    };
    let backup = match named {
        Named::Policy => None,
        Named::Backup | Named::Either => session
            .api::<Backup>()
            .get_opt(name)
            .await
            .map_err(PluginError::api(format!("Backup {name}")))?,
    };
    if let Some(backup) = backup {
        if request.snapshot.is_some() {
            return Err(PluginError::Refused(format!(
                "Backup {name} already names its snapshot: --snapshot goes with a policy"
            )));
        }
        let policy = get_policy(session, &backup.spec.policy_ref.name).await?;
        let source = RestoreSource {
            backup_ref: Some(LocalObjectRef {
                name: name.to_owned(),
            }),
            policy_ref: None,
            snapshot: None,
        };
        return Ok((source, policy));
    }
    if named == Named::Backup {
        return Err(PluginError::Refused(format!(
            "no Backup {name} in namespace {}",
            session.namespace
        )));
    }
    let policy = get_policy(session, name)
        .await
        .map_err(|error| match (named, error) {
            (Named::Either, PluginError::Api { .. }) => PluginError::Refused(format!(
                "no Backup or BackupPolicy named {name} in namespace {}",
                session.namespace
            )),
            (_, error) => error,
        })?;
    let source = RestoreSource {
        backup_ref: None,
        policy_ref: Some(LocalObjectRef {
            name: name.to_owned(),
        }),
        snapshot: request.snapshot.clone(),
    };
    Ok((source, policy))
}

async fn get_policy(session: &Session, name: &str) -> Result<BackupPolicy, PluginError> {
    session
        .api::<BackupPolicy>()
        .get(name)
        .await
        .map_err(PluginError::api(format!(
            "BackupPolicy {name} in namespace {}",
            session.namespace
        )))
}

/// The database to restore into: the policy's server and credentials, unless overridden.
fn target(policy: &BackupPolicy, request: &RestoreRequest) -> Result<DatabaseTarget, PluginError> {
    let password = request
        .password_secret
        .as_deref()
        .map(|value| match value.split_once('/') {
            Some((name, key)) if !name.is_empty() && !key.is_empty() => Ok(SecretKeyRef {
                name: name.to_owned(),
                key: key.to_owned(),
            }),
            _ => Err(PluginError::Refused(format!(
                "--password-secret takes SECRET/KEY, e.g. db-admin/password, not {value:?}"
            ))),
        })
        .transpose()?;
    let source = &policy.spec.source;
    if let Some(postgres) = &source.postgres {
        let mut connection = postgres.connection.clone();
        connection.database = request.database.clone();
        connection.host = request.host.clone().unwrap_or(connection.host);
        connection.port = request.port.unwrap_or(connection.port);
        connection.user = request.user.clone().unwrap_or(connection.user);
        connection.password_secret_ref = password.unwrap_or(connection.password_secret_ref);
        return Ok(DatabaseTarget {
            postgres: Some(connection),
            ..Default::default()
        });
    }
    if let Some(mysql) = &source.mysql {
        let mut connection = mysql.clone();
        connection.database = request.database.clone();
        connection.host = request.host.clone().unwrap_or(connection.host);
        connection.port = request.port.unwrap_or(connection.port);
        connection.user = request.user.clone().unwrap_or(connection.user);
        connection.password_secret_ref = password.unwrap_or(connection.password_secret_ref);
        return Ok(DatabaseTarget {
            mysql: Some(connection),
            ..Default::default()
        });
    }
    Err(PluginError::Refused(format!(
        "policy {} backs up files: restore them with a Restore naming the target directory (see \
         deploy/examples/restore.yaml)",
        policy.name_any()
    )))
}

/// Whether the target is the very database the policy backs up.
fn same_database(source: &BackupSource, target: &DatabaseTarget) -> bool {
    match (source, target) {
        (
            BackupSource {
                postgres: Some(s), ..
            },
            DatabaseTarget {
                postgres: Some(t), ..
            },
        ) => {
            (&s.connection.host, s.connection.port, &s.connection.database) == (&t.host, t.port, &t.database)
        }
        (BackupSource { mysql: Some(s), .. }, DatabaseTarget { mysql: Some(t), .. }) => {
            (&s.host, s.port, &s.database) == (&t.host, t.port, &t.database)
        }
        _ => false,
    }
}

/// confirmOverwrite as the person gave it: `--confirm-overwrite NAME`, or typed at the prompt when the
/// target is the live database and a terminal is there to ask. Never assumed.
fn confirmation(
    request: &RestoreRequest,
    replaces_source: bool,
    policy: &str,
    ask: Option<fn(&str, &str) -> String>,
) -> Result<Option<String>, PluginError> {
    let database = &request.database;
    if let Some(confirmed) = &request.confirm_overwrite {
        if confirmed != database {
            return Err(PluginError::Refused(format!(
                "--confirm-overwrite must repeat the target database's name ({database}), not {confirmed}"
            )));
        }
        return Ok(Some(confirmed.clone()));
    }
    if !replaces_source {
        return Ok(None);
    }
    let refusal = || {
        PluginError::Refused(format!(
            "{database} is the database policy {policy} backs up: restoring drops it and replaces it with \
             the snapshot. To do that, repeat its name: --confirm-overwrite {database}"
        ))
    };
    match ask {
        Some(ask) if ask(database, policy).trim() == database => Ok(Some(database.clone())),
        _ => Err(refusal()),
    }
}

/// Asks at the terminal for the database's name; returns what was typed.
fn ask_for_name(database: &str, policy: &str) -> String {
    eprint!(
        "{database} is the database policy {policy} backs up. Restoring drops it and replaces it with the \
         snapshot; writes since then are lost.\nType its name to go on: "
    );
    let _ = std::io::stderr().flush();
    let mut typed = String::new();
    let _ = std::io::stdin().lock().read_line(&mut typed);
    typed
}

/// Follows the Restore until it ends, telling each phase; an error unless it Succeeded.
async fn wait(session: &Session, name: &str, timeout: Duration) -> Result<(), PluginError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut told = None;
    loop {
        let restore = session
            .api::<Restore>()
            .get(name)
            .await
            .map_err(PluginError::api(format!("Restore {name}")))?;
        let status = restore.status.unwrap_or_default();
        let phase = status.phase.unwrap_or_default();
        // The end is told once, below.
        if told != Some(phase) && !phase.is_finished() {
            println!(
                "{phase:?}{}",
                status
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
            told = Some(phase);
        }
        match phase {
            RestorePhase::Succeeded => {
                let verified = match status.verification.map(|v| v.passed) {
                    Some(true) => ", verified",
                    Some(false) => ", verification FAILED",
                    None => "",
                };
                println!(
                    "restored snapshot {} into {} in {}{verified}",
                    status
                        .snapshot_id
                        .as_deref()
                        .map(|id| &id[..id.len().min(8)])
                        .unwrap_or("?"),
                    status.target.as_deref().unwrap_or("the target"),
                    status.duration.as_deref().unwrap_or("?"),
                );
                return Ok(());
            }
            RestorePhase::Failed => {
                return Err(PluginError::Refused(format!(
                    "Restore {name} failed: {}",
                    status.message.unwrap_or_default()
                )))
            }
            _ if tokio::time::Instant::now() >= deadline => {
                return Err(PluginError::Refused(format!(
                "Restore {name} had not ended after {}s (it goes on: kubectl -n {} get restore {name} -w)",
                timeout.as_secs(),
                session.namespace
            )))
            }
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(database: &str, confirm: Option<&str>) -> RestoreRequest {
        RestoreRequest {
            source: "orders-manual-x".into(),
            snapshot: None,
            database: database.into(),
            host: None,
            port: None,
            user: None,
            password_secret: None,
            confirm_overwrite: confirm.map(str::to_owned),
            wait: None,
        }
    }

    #[test]
    fn the_live_database_is_replaced_only_when_its_name_is_repeated_or_typed() {
        let typed_right: fn(&str, &str) -> String = |_, _| "orders\n".into();
        let typed_wrong: fn(&str, &str) -> String = |_, _| "y\n".into();
        let live = |confirm, ask| confirmation(&request("orders", confirm), true, "orders", ask);
        assert!(
            matches!(live(None, None), Err(PluginError::Refused(m)) if m.contains("--confirm-overwrite orders"))
        );
        assert!(live(None, Some(typed_wrong)).is_err());
        assert_eq!(live(None, Some(typed_right)).unwrap().as_deref(), Some("orders"));
        assert_eq!(live(Some("orders"), None).unwrap().as_deref(), Some("orders"));
        assert!(live(Some("order"), None).is_err());
        // Another database: the Restore's own emptiness check guards it; nothing is assumed.
        assert_eq!(
            confirmation(&request("orders_copy", None), false, "orders", None).unwrap(),
            None
        );
    }
}
