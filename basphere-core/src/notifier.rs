//! The `Notifier` trait: telling people what happened.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::NotificationEvent;

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
    async fn notify(&self, event: &NotificationEvent) -> Result<()>;
}

/// Writes events to the log (the default when nothing else is configured).
#[derive(Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    fn backend_name(&self) -> &'static str {
        "log"
    }

    async fn notify(&self, event: &NotificationEvent) -> Result<()> {
        let body = serde_json::to_string(event).unwrap_or_default();
        tracing::info!(event = event.name(), %body, "notification");
        Ok(())
    }
}
