//! The email notifier: the event's text, as a plain-text message, over SMTP.
//!
//! One message per event, to the person it is for or to every administrator address at once;
//! nobody to write to (an account that is gone, no administrator address configured) means
//! nothing to send, which is success. One connection per delivery, bounded in time as a whole.
//!
//! A message of the outbox carries the `Message-ID` `<ID@DOMAIN>`: the outbox message's id at the
//! domain of the `from` address, the same on every retry of it and from every replica, so a
//! recipient (or a mail filter) can tell a message delivered twice from two messages.

use std::time::Duration;

use async_trait::async_trait;
use basphere_core::error::{Error, Message as ErrorMessage, Result};
use basphere_core::model::NotificationEvent;
use basphere_core::notifier::{Notifier, Recipient};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use uuid::Uuid;

use crate::settings::{EmailSettings, TlsMode};
use crate::text::{self, TextSettings};

/// Delivers events by email.
pub struct EmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// `host:port`, for errors.
    server: String,
    timeout: Duration,
    texts: TextSettings,
}

impl std::fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailNotifier").field("server", &self.server).field("from", &self.from).finish()
    }
}

impl EmailNotifier {
    pub fn new(settings: EmailSettings, texts: TextSettings) -> Result<Self> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|error| Error::invalid("notifications.email.from", format!("{:?}: {error}", settings.from)))?;
        let tls = match settings.tls {
            TlsMode::None => Tls::None,
            mode => {
                let parameters = TlsParameters::new(settings.host.clone())
                    .map_err(|error| Error::invalid("notifications.email.host", error.to_string()))?;
                if mode == TlsMode::Tls {
                    Tls::Wrapper(parameters)
                } else {
                    Tls::Required(parameters)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.as_str())
            .port(settings.port)
            .tls(tls)
            .timeout(Some(settings.timeout));
        if let Some((username, password)) = &settings.credentials {
            builder = builder.credentials(Credentials::new(username.clone(), password.expose().to_owned()));
        }
        Ok(EmailNotifier {
            transport: builder.build(),
            from,
            server: format!("{}:{}", settings.host, settings.port),
            timeout: settings.timeout,
            texts,
        })
    }

    /// The message for `event` to `to`: plain text, marked as sent automatically. With the
    /// outbox message's `id`, its `Message-ID` is [`message_id`](Self::message_id); without, a
    /// new one.
    pub fn message(
        &self,
        id: Option<Uuid>,
        event: &NotificationEvent,
        recipient: &Recipient,
        to: &[Mailbox],
    ) -> Result<lettre::Message> {
        let text = text::render(event, recipient, &self.texts);
        let mut builder = lettre::Message::builder()
            .message_id(id.map(|id| self.message_id(id)))
            .from(self.from.clone())
            .subject(text.subject)
            .header(ContentType::TEXT_PLAIN)
            .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("Auto-Submitted"), "auto-generated".into()))
            .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("X-Basphere-Event"), event.name().into()));
        for mailbox in to {
            builder = builder.to(mailbox.clone());
        }
        builder.body(text.body).map_err(|error| self.failed(format!("building the message: {error}")))
    }

    /// The `Message-ID` of the outbox message `id`: `<ID@DOMAIN>`, DOMAIN the `from` address's.
    pub fn message_id(&self, id: Uuid) -> String {
        format!("<{}@{}>", id.as_hyphenated(), self.from.email.domain())
    }

    /// Sends `event`, as the outbox message `id` when there is one.
    async fn send(&self, id: Option<Uuid>, event: &NotificationEvent, recipient: &Recipient) -> Result<()> {
        let to = mailboxes(recipient).map_err(|error| self.failed(format!("address not accepted: {error}")))?;
        if to.is_empty() {
            tracing::debug!(event = event.name(), "no email address to write to");
            return Ok(());
        }
        let message = self.message(id, event, recipient, &to)?;
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Err(_) => {
                Err(Error::Timeout(format!("email {}: not delivered within {} s", self.server, self.timeout.as_secs())))
            }
            Ok(Err(error)) if error.is_timeout() => Err(Error::Timeout(format!("email {}: {error}", self.server))),
            Ok(Err(error)) => Err(self.failed(error.to_string())),
            Ok(Ok(response)) => {
                tracing::debug!(event = event.name(), code = %response.code(), "email delivered");
                Ok(())
            }
        }
    }

    fn failed(&self, message: String) -> Error {
        Error::backend("email", ErrorMessage(format!("{}: {message}", self.server)))
    }
}

/// Who gets the message: the person, every administrator, or nobody.
fn mailboxes(recipient: &Recipient) -> std::result::Result<Vec<Mailbox>, String> {
    let parse = |name: Option<String>, email: &str| {
        email.parse().map(|address| Mailbox::new(name, address)).map_err(|error| format!("{email:?}: {error}"))
    };
    match recipient {
        Recipient::Person { username, email } => Ok(vec![parse(Some(username.to_string()), email.as_str())?]),
        Recipient::Administrators { emails } => emails.iter().map(|email| parse(None, email.as_str())).collect(),
        Recipient::Gone { .. } => Ok(Vec::new()),
    }
}

#[async_trait]
impl Notifier for EmailNotifier {
    fn backend_name(&self) -> &'static str {
        "email"
    }

    async fn notify(&self, event: &NotificationEvent, recipient: &Recipient) -> Result<()> {
        self.send(None, event, recipient).await
    }

    async fn deliver(&self, id: Uuid, event: &NotificationEvent, recipient: &Recipient) -> Result<()> {
        self.send(Some(id), event, recipient).await
    }
}
