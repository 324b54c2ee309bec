//! Basphere's notifiers: the texts people receive, a signed webhook, email over SMTP, and the
//! fan-out that sends every event to the log and to whatever else is configured.
//!
//! - [`text`]: for every [`NotificationEvent`], a subject and a plain-text body saying what
//!   happened and what to do next (how to log in, for an approved registration).
//! - [`WebhookNotifier`]: a JSON POST signed with HMAC-SHA256 (`notifications.webhook`).
//! - [`EmailNotifier`]: a plain-text message over SMTP (`notifications.email`).
//! - [`from_config`]: the notifier a server runs with.
//!
//! Each notifier tries once, in bounded time, and returns an error on failure; the platform's
//! outbox retries, backs off and dead-letters.

pub mod email;
pub mod settings;
pub mod text;
pub mod webhook;

use std::sync::Arc;

use async_trait::async_trait;
use basphere_core::config::Config;
use basphere_core::error::{Error, Message, Result};
use basphere_core::model::NotificationEvent;
use basphere_core::notifier::{LogNotifier, Notifier, Recipient};
use uuid::Uuid;

pub use email::EmailNotifier;
pub use settings::{EmailSettings, WebhookSettings};
pub use text::TextSettings;
pub use webhook::WebhookNotifier;

/// The notifier of a configuration: the log always, plus the webhook and email when their
/// sections are present. Errors name the key at fault (unknown keys, a bad URL, a secret file
/// that is missing or open to other users).
pub fn from_config(config: &Config) -> Result<Arc<dyn Notifier>> {
    Ok(Arc::new(Fanout::from_config(config)?))
}

/// Sends every event to several notifiers. Each is a channel of its own (`log`, `webhook`,
/// `email`): the outbox queues one message per channel and retries each on its own, so a webhook
/// that is down never makes an email go out twice. `notify` (every channel at once) succeeds when
/// all of them succeeded; otherwise the error names each one that failed.
pub struct Fanout {
    notifiers: Vec<Arc<dyn Notifier>>,
}

impl Fanout {
    pub fn new(notifiers: Vec<Arc<dyn Notifier>>) -> Self {
        Fanout { notifiers }
    }

    /// The log, plus the webhook and email when their sections are present (see [`from_config`]).
    pub fn from_config(config: &Config) -> Result<Self> {
        let texts = TextSettings::from_config(config);
        let mut notifiers: Vec<Arc<dyn Notifier>> = vec![Arc::new(LogNotifier)];
        if let Some(settings) = WebhookSettings::from_yaml(&config.notifications.webhook)? {
            notifiers.push(Arc::new(WebhookNotifier::new(settings, texts.clone())?));
        }
        if let Some(settings) = EmailSettings::from_yaml(&config.notifications.email)? {
            notifiers.push(Arc::new(EmailNotifier::new(settings, texts)?));
        }
        Ok(Fanout::new(notifiers))
    }

    /// The backends events go to, in order.
    pub fn backends(&self) -> Vec<&'static str> {
        self.notifiers.iter().map(|notifier| notifier.backend_name()).collect()
    }
}

#[async_trait]
impl Notifier for Fanout {
    fn backend_name(&self) -> &'static str {
        "fanout"
    }

    fn channels(&self) -> Vec<String> {
        self.notifiers.iter().map(|notifier| notifier.backend_name().to_owned()).collect()
    }

    async fn notify_on(&self, channel: &str, id: Uuid, event: &NotificationEvent, recipient: &Recipient) -> Result<()> {
        match self.notifiers.iter().find(|notifier| notifier.backend_name() == channel) {
            Some(notifier) => notifier.deliver(id, event, recipient).await,
            None => Err(Error::NotSupported(format!(
                "the notification channel {channel:?} is not configured any more (configured: {}); it is not sent",
                self.backends().join(", ")
            ))),
        }
    }

    async fn notify(&self, event: &NotificationEvent, recipient: &Recipient) -> Result<()> {
        let mut failures = Vec::new();
        for notifier in &self.notifiers {
            if let Err(error) = notifier.notify(event, recipient).await {
                tracing::warn!(event = event.name(), backend = notifier.backend_name(), %error, "notification failed");
                failures.push((notifier.backend_name(), error));
            }
        }
        match failures.len() {
            0 => Ok(()),
            1 if self.notifiers.len() == 1 => Err(failures.remove(0).1),
            _ => {
                let all_timeouts = failures.iter().all(|(_, error)| matches!(error, Error::Timeout(_)));
                let text = failures
                    .iter()
                    .map(|(backend, error)| format!("{backend} failed: {error}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                Err(if all_timeouts { Error::Timeout(text) } else { Error::backend("notify", Message(text)) })
            }
        }
    }
}
