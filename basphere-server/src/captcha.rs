//! reCAPTCHA v2 (or a compatible verifier): the bot check on public submissions. The secret
//! comes from a file; every answer is checked (success, and the hostname when one is
//! configured); a verifier that is down, slow or answers nonsense refuses the submission.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{bail, Context};
use async_trait::async_trait;
use basphere_core::config::RecaptchaSettings;
use basphere_core::error::Message;
use basphere_core::human::HumanCheck;
use basphere_core::{Error, Result};
use serde::Deserialize;

/// The longest response token accepted (Google's are about 2 KB).
const MAX_RESPONSE: usize = 8 * 1024;

pub struct Recaptcha {
    client: reqwest::Client,
    secret: String,
    settings: RecaptchaSettings,
}

/// What siteverify answers.
#[derive(Debug, Deserialize)]
struct Verdict {
    success: bool,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default, rename = "error-codes")]
    error_codes: Vec<String>,
}

impl Recaptcha {
    /// Reads the secret from `recaptcha.secret_file`, which must not be readable by others.
    pub fn from_settings(settings: &RecaptchaSettings) -> anyhow::Result<Recaptcha> {
        let path = &settings.secret_file;
        let metadata = std::fs::metadata(path)
            .with_context(|| format!("recaptcha.secret_file: cannot read {}", path.display()))?;
        if metadata.permissions().mode() & 0o077 != 0 {
            bail!(
                "recaptcha.secret_file: {} is readable by other users (mode {:o}); make it 0600, owned by the server's account",
                path.display(),
                metadata.permissions().mode() & 0o777
            );
        }
        let secret = std::fs::read_to_string(path)
            .with_context(|| format!("recaptcha.secret_file: cannot read {}", path.display()))?
            .trim()
            .to_owned();
        if secret.is_empty() || secret.contains(char::is_whitespace) {
            bail!("recaptcha.secret_file: {} must hold the secret key alone, on one line", path.display());
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_seconds))
            .build()
            .context("building the HTTP client for recaptcha.verify_url")?;
        Ok(Recaptcha { client, secret, settings: settings.clone() })
    }
}

/// The form siteverify takes (`application/x-www-form-urlencoded`).
fn form_encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn refused(message: &str) -> Error {
    Error::Forbidden(format!("{message}; complete the \"I'm not a robot\" check and send the form again"))
}

#[async_trait]
impl HumanCheck for Recaptcha {
    fn backend_name(&self) -> &'static str {
        "recaptcha"
    }

    async fn verify(&self, response: Option<&str>, client: &str) -> Result<()> {
        let Some(response) = response.map(str::trim).filter(|r| !r.is_empty()) else {
            return Err(refused("the bot check was not completed"));
        };
        if response.len() > MAX_RESPONSE {
            return Err(refused("the bot check's answer is not valid"));
        }
        let mut pairs = vec![("secret", self.secret.as_str()), ("response", response)];
        if client.parse::<std::net::IpAddr>().is_ok() {
            pairs.push(("remoteip", client));
        }
        let sent = self
            .client
            .post(&self.settings.verify_url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_encode(&pairs))
            .send()
            .await;
        let answer = match sent {
            Ok(answer) => answer,
            Err(error) if error.is_timeout() => {
                return Err(Error::Timeout(format!(
                    "the bot check did not answer within {} s; try again in a moment",
                    self.settings.timeout_seconds
                )))
            }
            Err(error) => return Err(Error::backend("recaptcha", error)),
        };
        let status = answer.status();
        let body = answer.bytes().await.map_err(|error| Error::backend("recaptcha", error))?;
        if !status.is_success() {
            return Err(Error::backend("recaptcha", Message(format!("siteverify answered {status}"))));
        }
        let verdict: Verdict = serde_json::from_slice(&body).map_err(|error| {
            Error::backend("recaptcha", Message(format!("siteverify's answer is not JSON: {error}")))
        })?;
        if !verdict.success {
            tracing::info!(codes = ?verdict.error_codes, "the bot check refused a submission");
            return Err(refused("the bot check did not pass"));
        }
        if let Some(expected) = &self.settings.hostname {
            if verdict.hostname.as_deref() != Some(expected.as_str()) {
                tracing::warn!(expected, got = ?verdict.hostname, "a bot check token was solved on another site");
                return Err(refused("the bot check was completed on another site"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::form_encode;

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(form_encode(&[("a", "x y&z=1"), ("b", "é")]), "a=x+y%26z%3D1&b=%C3%A9");
    }
}
