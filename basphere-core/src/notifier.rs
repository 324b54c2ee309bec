//! The `Notifier` trait: telling people what happened.

use async_trait::async_trait;
use uuid::Uuid;

use crate::error::Result;
use crate::model::NotificationEvent;
use crate::validate::{Email, Username};

/// Who a notification is for, worked out by the platform when it is delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// One person: an account, or an applicant (who has no account yet).
    Person { username: Username, email: Email },
    /// The administrators (`notifications.admin_emails`; none configured means the log only).
    Administrators { emails: Vec<Email> },
    /// An account that no longer exists: there is nobody to write to.
    Gone { username: Username },
}

/// Delivers notification events (log, webhook, email, recording mock).
///
/// # Contract
///
/// - `notify` delivers one event or returns an error; it may be called again for the same event
///   (the platform retries failed deliveries in the background), so receivers see at-least-once
///   delivery.
/// - A notifier never decides whether the action that caused the event succeeds: the platform
///   sends events after committing and ignores delivery failures except for retrying them.
/// - `notify` returns in bounded time (`Timeout` otherwise).
#[async_trait]
pub trait Notifier: Send + Sync {
    fn backend_name(&self) -> &'static str;
    async fn notify(&self, event: &NotificationEvent, recipient: &Recipient) -> Result<()>;

    /// The channels this notifier delivers on (a webhook, email, ...), each retried on its own:
    /// the outbox holds one message per channel. Empty (the default): one message for all.
    fn channels(&self) -> Vec<String> {
        Vec::new()
    }

    /// Delivers one message of the outbox. `id` names the message and is the same on every
    /// retry of it, so a notifier that can pass it on (the webhook's `id`) lets a receiver drop a
    /// message it already has; by default it is not passed on.
    async fn deliver(&self, id: Uuid, event: &NotificationEvent, recipient: &Recipient) -> Result<()> {
        let _ = id;
        self.notify(event, recipient).await
    }

    /// Delivers message `id` on one of [`channels`](Self::channels); by default, on all of them.
    async fn notify_on(&self, channel: &str, id: Uuid, event: &NotificationEvent, recipient: &Recipient) -> Result<()> {
        let _ = channel;
        self.deliver(id, event, recipient).await
    }
}

/// Writes events to the log (the default when nothing else is configured).
#[derive(Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    fn backend_name(&self) -> &'static str {
        "log"
    }

    async fn notify(&self, event: &NotificationEvent, recipient: &Recipient) -> Result<()> {
        let body = serde_json::to_string(event).unwrap_or_default();
        let to = match recipient {
            Recipient::Person { username, .. } => username.to_string(),
            Recipient::Administrators { .. } => "administrators".to_owned(),
            Recipient::Gone { username } => format!("{username} (gone)"),
        };
        tracing::info!(event = event.name(), %to, %body, "notification");
        Ok(())
    }
}
