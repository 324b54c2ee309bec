//! The email notifier: the event's text, as a plain-text message, over SMTP.
//!
//! One message per event, to the person it is for or to every administrator address at once;
//! nobody to write to (an account that is gone, no administrator address configured) means
//! nothing to send, which is success. One connection per delivery, bounded in time as a whole.

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

    /// The message for `event` to `to`: plain text, marked as sent automatically.
    pub fn message(&self, event: &NotificationEvent, recipient: &Recipient, to: &[Mailbox]) -> Result<lettre::Message> {
        let text = text::render(event, recipient, &self.texts);
        let mut builder = lettre::Message::builder()
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
        let to = mailboxes(recipient).map_err(|error| self.failed(format!("address not accepted: {error}")))?;
        if to.is_empty() {
            tracing::debug!(event = event.name(), "no email address to write to");
            return Ok(());
        }
        let message = self.message(event, recipient, &to)?;
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
}
