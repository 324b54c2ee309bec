//! The `notifications.webhook` and `notifications.email` sections, read from the raw YAML core
//! keeps for this crate. Every error names the key (`notifications.webhook.url`) and says what
//! is accepted; unknown keys are errors, and secrets live in files only their owner can read.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use basphere_core::error::{Error, Result};
use serde_yaml::{Mapping, Value};

pub(crate) const WEBHOOK: &str = "notifications.webhook";
pub(crate) const EMAIL: &str = "notifications.email";

const WEBHOOK_KEYS: &[&str] = &["url", "secret_file", "timeout_seconds"];
const EMAIL_KEYS: &[&str] = &["host", "port", "tls", "from", "username", "password_file", "timeout_seconds"];

/// Timeouts accepted, in seconds: a delivery is one try, retried later by the platform.
const TIMEOUTS: std::ops::RangeInclusive<u64> = 1..=300;
const DEFAULT_TIMEOUT_SECONDS: u64 = 10;

/// `notifications.webhook`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Where events are POSTed (`url`, http or https).
    pub url: reqwest::Url,
    /// The HMAC key signing every request (read from `secret_file`).
    pub secret: Secret,
    /// How long one delivery may take in all (`timeout_seconds`, 10 by default).
    pub timeout: Duration,
}

/// How the email notifier talks to its SMTP server (`notifications.email.tls`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587 by default).
    StartTls,
    /// TLS from the first byte (port 465 by default).
    Tls,
    /// No encryption (port 25 by default): for a relay on the same host, or tests on loopback.
    None,
}

/// `notifications.email`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// The `From` of every message, `Name <address>` or an address (`from`).
    pub from: String,
    /// SMTP login (`username`, and the password read from `password_file`).
    pub credentials: Option<(String, Secret)>,
    /// How long one delivery may take in all (`timeout_seconds`, 10 by default).
    pub timeout: Duration,
}

/// A secret read from a file; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Reads a secret from `path`, configured at `key`: the file must be open to its owner only
/// (no permission bits for group or others), and hold the secret alone on its first line.
pub fn read_secret_file(path: &Path, key: &str) -> Result<Secret> {
    let unreadable = |error: std::io::Error| Error::invalid(key, format!("cannot read {}: {error}", path.display()));
    let metadata = std::fs::metadata(path).map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(Error::invalid(key, format!("{} is not a file", path.display())));
    }
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::invalid(
            key,
            format!(
                "{} is open to other users (mode {mode:04o}): make it readable by the server's account only \
                 (chmod 600)",
                path.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    let secret = text.strip_suffix('\n').unwrap_or(&text);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.is_empty() || secret.contains(['\n', '\r']) {
        return Err(Error::invalid(key, format!("{} must hold the secret alone, on one line", path.display())));
    }
    Ok(Secret::new(secret))
}

/// The section at `section` as a mapping whose keys are all `accepted`; `None` when absent.
fn mapping<'a>(value: &'a Value, section: &str, accepted: &[&str]) -> Result<Option<&'a Mapping>> {
    let map = match value {
        Value::Null => return Ok(None),
        Value::Mapping(map) => map,
        _ => {
            return Err(Error::invalid(section, format!("must be a mapping with the keys {}", accepted.join(", "))));
        }
    };
    for key in map.keys() {
        let name = match key {
            Value::String(name) => name.clone(),
            other => serde_yaml::to_string(other).unwrap_or_default().trim().to_owned(),
        };
        if !accepted.contains(&name.as_str()) {
            // Named in full in the message, as the field is the section (like core's own
            // unknown-key errors): `invalid notifications.webhook: notifications.webhook.urll
            // is not a key; accepted: url, secret_file, timeout_seconds`.
            return Err(Error::invalid(
                section,
                format!("{section}.{name} is not a key; accepted: {}", accepted.join(", ")),
            ));
        }
    }
    Ok(Some(map))
}

/// A section's fields, each error naming its key.
struct Fields<'a> {
    section: &'a str,
    map: &'a Mapping,
}

impl Fields<'_> {
    fn key(&self, name: &str) -> String {
        format!("{}.{name}", self.section)
    }

    fn string(&self, name: &str) -> Result<Option<String>> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) if text.trim().is_empty() => {
                Err(Error::invalid(self.key(name), "must not be empty"))
            }
            Some(Value::String(text)) if text.chars().any(char::is_control) => {
                Err(Error::invalid(self.key(name), "must be one line without control characters"))
            }
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(Error::invalid(self.key(name), "must be a string")),
        }
    }

    fn required(&self, name: &str, what: &str) -> Result<String> {
        self.string(name)?.ok_or_else(|| Error::invalid(self.key(name), format!("is required: {what}")))
    }

    fn number(&self, name: &str, range: std::ops::RangeInclusive<u64>) -> Result<Option<u64>> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(number)) if number.as_u64().is_some_and(|n| range.contains(&n)) => Ok(number.as_u64()),
            Some(other) => Err(Error::invalid(
                self.key(name),
                format!(
                    "{} is not accepted: use a whole number {}-{}",
                    serde_yaml::to_string(other).unwrap_or_default().trim(),
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    fn timeout(&self) -> Result<Duration> {
        Ok(Duration::from_secs(self.number("timeout_seconds", TIMEOUTS)?.unwrap_or(DEFAULT_TIMEOUT_SECONDS)))
    }

    fn secret_file(&self, name: &str) -> Result<Option<Secret>> {
        match self.string(name)? {
            None => Ok(None),
            Some(path) => {
                let path = PathBuf::from(path);
                if !path.is_absolute() {
                    return Err(Error::invalid(self.key(name), format!("{} is not an absolute path", path.display())));
                }
                read_secret_file(&path, &self.key(name)).map(Some)
            }
        }
    }
}

impl WebhookSettings {
    /// Reads `notifications.webhook`; `None` when the section is absent.
    pub fn from_yaml(value: &Value) -> Result<Option<Self>> {
        let Some(map) = mapping(value, WEBHOOK, WEBHOOK_KEYS)? else { return Ok(None) };
        let fields = Fields { section: WEBHOOK, map };
        let text = fields.required("url", "the address events are POSTed to (http or https)")?;
        let url = reqwest::Url::parse(&text)
            .map_err(|error| Error::invalid(fields.key("url"), format!("{text:?} is not a URL: {error}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(Error::invalid(
                fields.key("url"),
                format!("{text:?} is not accepted: use an http or https URL"),
            ));
        }
        let secret = fields.secret_file("secret_file")?.ok_or_else(|| {
            Error::invalid(
                fields.key("secret_file"),
                "is required: a file (mode 0600) holding the key every request is signed with",
            )
        })?;
        Ok(Some(WebhookSettings { url, secret, timeout: fields.timeout()? }))
    }
}

impl EmailSettings {
    /// Reads `notifications.email`; `None` when the section is absent.
    pub fn from_yaml(value: &Value) -> Result<Option<Self>> {
        let Some(map) = mapping(value, EMAIL, EMAIL_KEYS)? else { return Ok(None) };
        let fields = Fields { section: EMAIL, map };
        let host = fields.required("host", "the SMTP server's host name or address")?;
        if host.contains(char::is_whitespace) {
            return Err(Error::invalid(fields.key("host"), format!("{host:?} is not a host name or address")));
        }
        let tls = match fields.string("tls")?.as_deref() {
            None | Some("starttls") => TlsMode::StartTls,
            Some("tls") => TlsMode::Tls,
            Some("none") => TlsMode::None,
            Some(other) => {
                return Err(Error::invalid(
                    fields.key("tls"),
                    format!("{other:?} is not accepted: use starttls, tls or none"),
                ));
            }
        };
        let default_port = match tls {
            TlsMode::StartTls => 587,
            TlsMode::Tls => 465,
            TlsMode::None => 25,
        };
        let port = fields.number("port", 1..=65535)?.map_or(default_port, |port| port as u16);
        let from = fields.required("from", "the sender, like 'Basphere <basphere@corp.com>'")?;
        from.parse::<lettre::message::Mailbox>().map_err(|error| {
            Error::invalid(
                fields.key("from"),
                format!("{from:?} is not an address like 'Basphere <basphere@corp.com>': {error}"),
            )
        })?;
        let credentials = match (fields.string("username")?, fields.secret_file("password_file")?) {
            (Some(username), Some(password)) => Some((username, password)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::invalid(
                    fields.key("password_file"),
                    "is required with username: a file (mode 0600) holding the password",
                ));
            }
            (None, Some(_)) => {
                return Err(Error::invalid(fields.key("username"), "is required with password_file"));
            }
        };
        if credentials.is_some() && tls == TlsMode::None && !is_loopback(&host) {
            return Err(Error::invalid(
                fields.key("tls"),
                format!(
                    "none would send the password in clear to {host}: use starttls or tls (none is for loopback only)"
                ),
            ));
        }
        Ok(Some(EmailSettings { host, port, tls, from, credentials, timeout: fields.timeout()? }))
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|address| address.is_loopback())
}
