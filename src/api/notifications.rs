//! The webhook every kind notifies through, and the delivery record each keeps in its status so that a
//! notification is retried across reconciles and restarts until it is delivered or given up.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::SecretKeyRef;

/// A Slack-compatible incoming webhook: each notification is POSTed as `{"text": "…"}` (Slack,
/// Mattermost, Rocket.Chat and most chat bridges accept it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Secret key holding the webhook URL (it usually embeds a token).
    pub url_secret_ref: SecretKeyRef,
}

/// Where one notification stands. Never holds the webhook URL: it may embed a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRecord {
    /// What happened, e.g. `Failure`, `Overdue`, `AwaitingApproval`.
    pub event: String,
    /// The text sent (kept so that a retry after a restart sends the same words).
    pub message: String,
    /// When the event happened.
    pub time: Time,
    /// Pending (retried with backoff), Delivered, or GaveUp (5 attempts failed; lastError says why).
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the last attempt was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<Time>,
    /// When the next attempt is due (only while Pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_time: Option<Time>,
    /// Why the last attempt failed (never the URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeliveryState {
    /// Not delivered yet; retried with backoff.
    Pending,
    Delivered,
    /// Every attempt failed: no more tries (lastError says why).
    GaveUp,
}

/// A Cutover's notifications: the same shape as a policy's, with the runbook's moments as events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CutoverNotifications {
    pub webhook: Webhook,
    /// Which events notify. Default: all of them.
    #[serde(default = "all_cutover_events")]
    #[schemars(length(max = 6))]
    pub events: Vec<CutoverEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CutoverEvent {
    /// Waiting for a person's GO (the message says how to give it).
    AwaitingApproval,
    /// Ended before the switch (a failed preflight, no approval in time): traffic untouched.
    NoGo,
    RollbackStarted,
    RolledBack,
    Succeeded,
    /// Ended Failed otherwise (e.g. a rollback that could not finish).
    Failed,
}

fn all_cutover_events() -> Vec<CutoverEvent> {
    vec![
        CutoverEvent::AwaitingApproval,
        CutoverEvent::NoGo,
        CutoverEvent::RollbackStarted,
        CutoverEvent::RolledBack,
        CutoverEvent::Succeeded,
        CutoverEvent::Failed,
    ]
}
