//! The webhook notifier: every event is POSTed as JSON to one URL, signed with HMAC-SHA256.
//!
//! The request carries:
//!
//! - the body `{"id", "event", "recipient", "data", "text": {"subject", "body"}, "sent_at"}`,
//!   where `id` names the message (the same on every retry, and whichever replica sends it:
//!   a receiver drops an id it has seen), `data` is the event as Basphere stores it and
//!   `sent_at` an RFC 3339 time;
//! - `X-Basphere-Event`: the event's name;
//! - `X-Basphere-Timestamp`: when it was sent, in Unix seconds;
//! - `X-Basphere-Signature`: `sha256=` and the hex HMAC-SHA256, keyed with the shared secret,
//!   of `<timestamp>.<body>`. A receiver recomputes it over the raw body, compares in constant
//!   time, and refuses old timestamps so a captured request cannot be replayed later.
//!
//! Delivery is at least once: the platform retries failed deliveries, so a receiver may see an
//! event twice. Any 2xx answer is success; anything else, or no answer within the timeout, is a
//! failure. Redirects are not followed.

use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use basphere_core::error::{Error, Message, Result};
use basphere_core::model::NotificationEvent;
use basphere_core::notifier::{Notifier, Recipient};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use uuid::Uuid;

use crate::settings::{Secret, WebhookSettings};
use crate::text::{self, TextSettings};

/// The header naming the event.
pub const EVENT_HEADER: &str = "X-Basphere-Event";
/// The header with the Unix time the request was signed at.
pub const TIMESTAMP_HEADER: &str = "X-Basphere-Timestamp";
/// The header with the signature: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Basphere-Signature";

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, keyed with `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut text = String::with_capacity(7 + 2 * digest.len());
    text.push_str("sha256=");
    for byte in digest {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Whether `header` is the signature of `body` sent at `timestamp` (constant-time comparison),
/// for receivers written in Rust and for tests.
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.strip_prefix("sha256=") else { return false };
    let Some(expected) = decode_hex(hex) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len()).step_by(2).map(|at| u8::from_str_radix(&hex[at..at + 2], 16).ok()).collect()
}

/// The recipient as the webhook body shows it.
fn recipient_json(recipient: &Recipient) -> serde_json::Value {
    match recipient {
        Recipient::Person { username, email } => {
            json!({"kind": "person", "username": username.as_str(), "email": email.as_str()})
        }
        Recipient::Administrators { emails } => {
            json!({"kind": "administrators", "emails": emails.iter().map(|email| email.as_str()).collect::<Vec<_>>()})
        }
        Recipient::Gone { username } => json!({"kind": "gone", "username": username.as_str()}),
    }
}

/// Delivers events to a webhook.
pub struct WebhookNotifier {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `scheme://host[:port]`: how errors name the receiver without its path or query, which
    /// may carry a token.
    target: String,
    secret: Secret,
    timeout: Duration,
    texts: TextSettings,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookNotifier").field("target", &self.target).field("timeout", &self.timeout).finish()
    }
}

impl WebhookNotifier {
    pub fn new(settings: WebhookSettings, texts: TextSettings) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("basphere/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| Error::backend("webhook", error))?;
        let url = settings.url;
        let target = match url.port() {
            Some(port) => format!("{}://{}:{port}", url.scheme(), url.host_str().unwrap_or_default()),
            None => format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default()),
        };
        Ok(WebhookNotifier { client, url, target, secret: settings.secret, timeout: settings.timeout, texts })
    }

    /// The request body for `event`, sent at `sent_at`.
    pub fn body(
        &self,
        id: Option<Uuid>,
        event: &NotificationEvent,
        recipient: &Recipient,
        sent_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<u8>> {
        let message = text::render(event, recipient, &self.texts);
        serde_json::to_vec(&json!({
            "id": id,
            "event": event.name(),
            "recipient": recipient_json(recipient),
            "data": event,
            "text": {"subject": message.subject, "body": message.body},
            "sent_at": sent_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }))
        .map_err(|error| Error::backend("webhook", error))
    }

    fn failed(&self, message: String) -> Error {
        Error::backend("webhook", Message(format!("{}: {message}", self.target)))
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn backend_name(&self) -> &'static str {
        "webhook"
    }

    async fn notify(&self, event: &NotificationEvent, recipient: &Recipient) -> Result<()> {
        self.send(None, event, recipient).await
    }

    async fn deliver(&self, id: Uuid, event: &NotificationEvent, recipient: &Recipient) -> Result<()> {
        self.send(Some(id), event, recipient).await
    }
}

impl WebhookNotifier {
    /// POSTs `event`, with the outbox message's `id` when there is one.
    async fn send(&self, id: Option<Uuid>, event: &NotificationEvent, recipient: &Recipient) -> Result<()> {
        let sent_at = chrono::Utc::now();
        let timestamp = sent_at.timestamp();
        let body = self.body(id, event, recipient, sent_at)?;
        let signature = signature(self.secret.expose().as_bytes(), timestamp, &body);
        let request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_HEADER, event.name())
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body);
        let timed_out =
            || Error::Timeout(format!("webhook {}: no answer within {} s", self.target, self.timeout.as_secs()));
        // The client's own timeout bounds the request; this one bounds everything else too.
        let response = match tokio::time::timeout(self.timeout + Duration::from_secs(1), request.send()).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(error)) if error.is_timeout() => return Err(timed_out()),
            Ok(Err(error)) => return Err(self.failed(error.without_url().to_string())),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if !status.is_success() {
            return Err(self.failed(format!("answered {status}")));
        }
        tracing::debug!(event = event.name(), %status, target = %self.target, "webhook delivered");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // The HMAC itself: RFC 4231, test case 2.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let rfc: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(rfc, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

        // What is signed: `<timestamp>.<body>`.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(b"1700000000.{\"a\":1}");
        let joined: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(signature(b"secret", 1_700_000_000, b"{\"a\":1}"), format!("sha256={joined}"));
    }

    #[test]
    fn verify_accepts_only_the_right_signature() {
        let header = signature(b"secret", 42, b"body");
        assert!(verify(b"secret", 42, b"body", &header));
        assert!(!verify(b"other", 42, b"body", &header));
        assert!(!verify(b"secret", 43, b"body", &header));
        assert!(!verify(b"secret", 42, b"bodY", &header));
        assert!(!verify(b"secret", 42, b"body", "sha256=zz"));
        assert!(!verify(b"secret", 42, b"body", header.trim_start_matches("sha256=")));
    }
}
