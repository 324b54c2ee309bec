//! Notification events and the outbox messages that carry them.

use super::*;

/// Something a notifier tells people about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum NotificationEvent {
    RegistrationSubmitted { username: Username, email: Email },
    RegistrationApproved { username: Username, email: Email },
    RegistrationRejected { username: Username, email: Email, reason: String },
    KeyChangeRequested { username: Username },
    // Told to the account's own address (whatever address the request gave) when a key change
    // is asked for, so that a request its holder did not make does not go unnoticed.
    KeyChangeRequestReceived { username: Username },
    KeyChangeApproved { username: Username, email: Email },
    KeyChangeRejected { username: Username, email: Email, reason: String },
    VmReady { owner: Username, name: ResourceName, ip: Option<Ipv4Addr> },
    VmFailed { owner: Username, name: ResourceName, reason: String },
    ClusterReady { owner: Username, name: ResourceName },
    ClusterFailed { owner: Username, name: ResourceName, reason: String },
    QuotaNearlyUsed { owner: Username, resource: String, used: u64, limit: u64 },
}

impl NotificationEvent {
    /// The event's name as it appears in webhooks and logs.
    pub fn name(&self) -> &'static str {
        match self {
            NotificationEvent::RegistrationSubmitted { .. } => "registration_submitted",
            NotificationEvent::RegistrationApproved { .. } => "registration_approved",
            NotificationEvent::RegistrationRejected { .. } => "registration_rejected",
            NotificationEvent::KeyChangeRequested { .. } => "key_change_requested",
            NotificationEvent::KeyChangeRequestReceived { .. } => "key_change_request_received",
            NotificationEvent::KeyChangeApproved { .. } => "key_change_approved",
            NotificationEvent::KeyChangeRejected { .. } => "key_change_rejected",
            NotificationEvent::VmReady { .. } => "vm_ready",
            NotificationEvent::VmFailed { .. } => "vm_failed",
            NotificationEvent::ClusterReady { .. } => "cluster_ready",
            NotificationEvent::ClusterFailed { .. } => "cluster_failed",
            NotificationEvent::QuotaNearlyUsed { .. } => "quota_nearly_used",
        }
    }
}

/// A notification waiting for delivery, written in the same transaction as the change that
/// caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: Uuid,
    pub event: NotificationEvent,
    pub state: OutboxState,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// When a dispatcher may (next) try to deliver it.
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    /// The dispatcher (worker, `<instance>/<boot id>`) that claimed it until `next_attempt_at`;
    /// `None` when nobody holds it. A restarted instance takes back what an earlier boot of it
    /// held at once, instead of waiting for the claim to run out.
    pub claimed_by: Option<String>,
    /// The notifier's channel it is for (`webhook`, `email`, ...), so that one channel's failures
    /// are retried without sending again on the others; empty: every channel at once.
    pub channel: String,
}

impl OutboxMessage {
    /// A pending message, due now.
    pub fn new(event: NotificationEvent) -> Self {
        let at = now();
        OutboxMessage {
            id: Uuid::now_v7(),
            event,
            state: OutboxState::Pending,
            attempts: 0,
            next_attempt_at: at,
            last_error: None,
            created_at: at,
            delivered_at: None,
            claimed_by: None,
            channel: String::new(),
        }
    }

    /// One pending message per channel, due now (one for every channel at once when none is named).
    pub fn per_channel(event: NotificationEvent, channels: &[String]) -> Vec<Self> {
        if channels.is_empty() {
            return vec![OutboxMessage::new(event)];
        }
        channels
            .iter()
            .map(|channel| OutboxMessage { channel: channel.clone(), ..OutboxMessage::new(event.clone()) })
            .collect()
    }
}
