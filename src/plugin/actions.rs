//! What people do to Lifeboat objects: a backup or a drill now, a GO in their own name, an abort.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::kube_client::Session;
use super::PluginError;
use crate::api::backup::BackupTrigger;
use crate::api::cutover::{ActiveSide, CutoverPhase};
use crate::api::restore::RestorePhase;
use crate::api::{Backup, BackupPolicy, Cutover, Restore, RestoreDrill};
use crate::controller::restore_drill::DRILL_LABEL;

pub async fn backup_now(session: &Session, policy: &str, reason: Option<String>) -> Result<(), PluginError> {
    session
        .api::<BackupPolicy>()
        .get(policy)
        .await
        .map_err(PluginError::api(format!(
            "BackupPolicy {policy} in namespace {}",
            session.namespace
        )))?;
    let backup: Backup = serde_json::from_value(json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Backup",
        "metadata": {"generateName": format!("{policy}-manual-")},
        "spec": {"policyRef": {"name": policy}, "trigger": BackupTrigger::Manual}
    }))
    .expect("a Backup");
    let backup = Backup {
        spec: crate::api::backup::BackupSpec {
            reason,
            ..backup.spec
        },
        ..backup
    };
    let created = session
        .api::<Backup>()
        .create(&PostParams::default(), &backup)
        .await
        .map_err(PluginError::api(format!("creating a Backup of {policy}")))?;
    let name = created.metadata.name.unwrap_or_default();
    println!("backup.lifeboat.dev/{name} created");
    println!("follow it: kubectl -n {} get backup {name} -w", session.namespace);
    Ok(())
}

/// A drill run now: the Restore the drill controller would create for a slot, named `<drill>-now-<unix
/// seconds>`, which the controller then follows and folds into the drill's record. Refused while one of
/// the drill's Restores is still running (two restores into one scratch target would measure nothing).
pub async fn drill_now(session: &Session, name: &str) -> Result<(), PluginError> {
    let drill = session
        .api::<RestoreDrill>()
        .get(name)
        .await
        .map_err(PluginError::api(format!(
            "RestoreDrill {name} in namespace {}",
            session.namespace
        )))?;
    let restores = session.api::<Restore>();
    let owned = restores
        .list(&ListParams::default().labels(&format!("{DRILL_LABEL}={name}")))
        .await
        .map_err(PluginError::api(format!("the Restores of drill {name}")))?;
    if let Some(running) = owned.items.iter().find(|r| {
        !r.status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(RestorePhase::is_finished)
    }) {
        return Err(PluginError::Refused(format!(
            "drill {name} is already running (Restore {}); wait for it to end",
            running.metadata.name.clone().unwrap_or_default()
        )));
    }
    let now = jiff::Timestamp::now();
    let restore_name = crate::controller::status::child_name(name, &format!("now-{}", now.as_second()), 253);
    let mut restore = crate::controller::restore_drill::drill_restore(&drill, &restore_name, now);
    // Without blockOwnerDeletion: setting it needs `update` on restoredrills/finalizers where the API
    // server enforces owner-reference permissions, which the aggregated `edit` role does not give.
    for owner in restore.metadata.owner_references.iter_mut().flatten() {
        owner.block_owner_deletion = None;
    }
    restores
        .create(&PostParams::default(), &restore)
        .await
        .map_err(PluginError::api(format!("creating a Restore for drill {name}")))?;
    println!("restore.lifeboat.dev/{restore_name} created for drill {name}");
    println!(
        "follow it: kubectl -n {} get restore {restore_name} -w; the result lands in `kubectl lifeboat status`",
        session.namespace
    );
    Ok(())
}

/// Who the API server says we are: the name a GO must carry.
async fn whoami(session: &Session) -> Result<(String, Vec<String>), PluginError> {
    let review = kube::Api::<SelfSubjectReview>::all(session.client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(PluginError::api(
            "asking the API server who you are (SelfSubjectReview)",
        ))?;
    let user = review.status.and_then(|s| s.user_info).unwrap_or_default();
    let name = user
        .username
        .filter(|name| !name.is_empty())
        .ok_or_else(|| PluginError::Refused("the API server did not say who you are".into()))?;
    Ok((name, user.groups.unwrap_or_default()))
}

pub async fn approve(
    session: &Session,
    name: &str,
    reason: Option<String>,
    group: Option<String>,
) -> Result<(), PluginError> {
    let cutovers = session.api::<Cutover>();
    let cutover = cutovers.get(name).await.map_err(PluginError::api(format!(
        "Cutover {name} in namespace {}",
        session.namespace
    )))?;
    let gate = cutover.spec.approval.clone().unwrap_or_default();
    if !gate.required {
        return Err(PluginError::Refused(format!(
            "Cutover {name} does not wait for approval (spec.approval.required is not set)"
        )));
    }
    if let Some(phase) = cutover.status.as_ref().and_then(|s| s.phase) {
        if phase.is_terminal() {
            return Err(PluginError::Refused(format!(
                "Cutover {name} has already ended: {}",
                phase.name()
            )));
        }
    }
    let (user, groups) = whoami(session).await?;
    let group = match group {
        Some(group) if !groups.contains(&group) => {
            return Err(PluginError::Refused(format!(
                "you ({user}) are not in group {group}; your groups: {}",
                groups.join(", ")
            )))
        }
        Some(group) => Some(group),
        // Signing for the one required group you are in needs no flag.
        None => {
            let mine: Vec<&String> = gate
                .required_groups
                .iter()
                .filter(|g| groups.contains(g))
                .collect();
            match mine.as_slice() {
                [] => None,
                [only] => Some((*only).clone()),
                several => {
                    return Err(PluginError::Refused(format!(
                        "you are in several required groups ({}): say which you sign for with --group",
                        several.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", ")
                    )))
                }
            }
        }
    };
    // Only your own entry, under a field manager of your own: server-side apply merges it into the
    // list keyed by `by`, leaving everyone else's sign-off (and a GitOps tool's fields) alone.
    // Absent, not null: a null `group` would be a group named null to the admission policy.
    let mut entry = json!({"by": user});
    if let Some(group) = &group {
        entry["group"] = json!(group);
    }
    if let Some(reason) = &reason {
        entry["reason"] = json!(reason);
    }
    let signoff = json!({
        "apiVersion": "lifeboat.dev/v1alpha1", "kind": "Cutover", "metadata": {"name": name},
        "spec": {"approval": {"approvals": [entry]}}
    });
    let manager: String = format!("lifeboat-approval:{user}").chars().take(128).collect();
    cutovers
        .patch(name, &PatchParams::apply(&manager), &Patch::Apply(&signoff))
        .await
        .map_err(PluginError::api(format!("approving Cutover {name}")))?;
    let signed_for = group.map(|g| format!(" for {g}")).unwrap_or_default();
    println!("cutover.lifeboat.dev/{name} approved by {user}{signed_for}");
    Ok(())
}

/// What stopping a Cutover asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stop wherever it is: untouched traffic before the switch, a rollback after it.
    Abort,
    /// Only a rollback: refused while nothing was switched.
    Rollback,
}

pub async fn stop(session: &Session, name: &str, how: Stop) -> Result<(), PluginError> {
    let cutovers = session.api::<Cutover>();
    let cutover = cutovers.get(name).await.map_err(PluginError::api(format!(
        "Cutover {name} in namespace {}",
        session.namespace
    )))?;
    let status = cutover.status.clone().unwrap_or_default();
    // A Failed Cutover left on the new side (rollback.automatic: false) is what abort rolls back; any
    // other ended Cutover has nothing left to stop.
    let stuck_on_to = status.phase == Some(CutoverPhase::Failed)
        && status.active == Some(ActiveSide::To)
        && status.rollback.is_none();
    if let Some(phase) = status.phase.filter(|p| p.is_terminal() && !stuck_on_to) {
        let hint = if phase == CutoverPhase::Succeeded {
            " (a Succeeded Cutover is final: to go back, apply a Cutover from its `to` to its `from`)"
        } else {
            ""
        };
        return Err(PluginError::Refused(format!(
            "Cutover {name} has already ended: {}{hint}",
            phase.name()
        )));
    }
    let switched = crate::controller::cutover::machine::traffic_touched(&status);
    if how == Stop::Rollback && !switched {
        return Err(PluginError::Refused(format!(
            "Cutover {name} has not switched traffic: there is nothing to roll back \
             (`kubectl lifeboat abort {name}` stops it with traffic untouched)"
        )));
    }
    cutovers
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"abort": true}})),
        )
        .await
        .map_err(PluginError::api(format!("aborting Cutover {name}")))?;
    let what = if switched {
        "traffic was switched: it rolls back"
    } else {
        "nothing was switched: it stops with traffic untouched"
    };
    let verb = match how {
        Stop::Abort => "aborted",
        Stop::Rollback => "rolling back",
    };
    println!("cutover.lifeboat.dev/{name} {verb} ({what})");
    Ok(())
}
