//! The `HumanCheck` trait: the bot check on public submissions (reCAPTCHA v2, or a compatible
//! verifier).

use async_trait::async_trait;

use crate::error::Result;

/// Decides whether a public submission was made by a person.
///
/// # Contract
///
/// - `verify` accepts `response` (the token the page's widget produced; `None` when the
///   submission carried none) for a submission from `client` (the client's address), or
///   refuses it with `Forbidden` and a message a person can act on ("complete the check and
///   send the form again"). A verifier that cannot be reached, answers badly or too late
///   refuses too (`Backend`/`Timeout`): a submission is never let through unverified.
/// - `verify` returns in bounded time.
#[async_trait]
pub trait HumanCheck: Send + Sync {
    fn backend_name(&self) -> &'static str;
    async fn verify(&self, response: Option<&str>, client: &str) -> Result<()>;
}
