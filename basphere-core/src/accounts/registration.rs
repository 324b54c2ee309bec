//! Public submissions: registration and SSH key change requests, from the web form or JSON.
//!
//! Every submission passes the abuse limits (per client address, per email address, per day)
//! and the bot check, then core's validation. What happens next depends on the store, but the
//! answer does not: a submission that names a taken username, an email with a request already
//! waiting, or a key another account uses is recorded in the audit log for administrators and
//! answered exactly like one that was accepted, so nobody learns from the answer (or its
//! timing: both are answered a fixed time after they arrived) who has an account.

use serde_json::json;
use uuid::Uuid;

use super::Accounts;
use crate::config::RecaptchaConfig;
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::{StoreExt, StoreTx};
use crate::validate::bounded;
use crate::validate::{KeyChangeForm, RegistrationForm};

/// What every accepted submission is answered with, whatever became of it.
pub const SUBMITTED: &str =
    "Your request was received. An administrator reviews it; you will hear by email at the address you gave.";

/// Where a public submission came from, as the server saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Submission {
    /// The client's address (the TCP peer, or what a trusted proxy says it was).
    pub client: String,
    /// The bot check's response token from the page (`g-recaptcha-response`).
    pub human_response: Option<String>,
}

impl Accounts {
    /// The limits and the bot check every public submission passes first.
    async fn admit(&self, from: &Submission) -> Result<()> {
        match &self.rt.config.recaptcha {
            RecaptchaConfig::Undecided => {
                return Err(Error::Forbidden(
                    "public submissions are closed until the administrator sets recaptcha.enabled in the \
                     configuration (true with site_key and secret_file, or false for no bot check)"
                        .into(),
                ))
            }
            RecaptchaConfig::Off => self.submissions.admit(&from.client, &self.rt.config.registration)?,
            RecaptchaConfig::On(_) => {
                self.submissions.admit(&from.client, &self.rt.config.registration)?;
                let Some(check) = &self.human_check else {
                    return Err(Error::Forbidden(
                        "recaptcha.enabled is true but this server has no verifier; public submissions are closed"
                            .into(),
                    ));
                };
                check.verify(from.human_response.as_deref().filter(|r| !r.is_empty()), &from.client).await?;
            }
        }
        Ok(())
    }

    /// Registers a request for an account (public). Answers [`SUBMITTED`] whether the request
    /// was recorded or refused as a duplicate; invalid fields and exceeded limits are errors.
    pub async fn register(&self, from: &Submission, form: RegistrationForm) -> Result<&'static str> {
        let arrived = tokio::time::Instant::now();
        self.admit(from).await?;
        let valid =
            form.validate(&self.rt.config.allowed_email_domains).map_err(|errors| Error::InvalidFields(errors.0))?;
        self.submissions.admit_email(valid.email.as_str(), &self.rt.config.registration)?;
        let request = RegistrationRequest {
            id: Uuid::now_v7(),
            username: valid.username,
            email: valid.email,
            team: valid.team,
            ssh_key: valid.ssh_key,
            status: RequestStatus::Pending,
            created_at: now(),
            processed_by: None,
            processed_at: None,
            reject_reason: None,
        };
        let event = NotificationEvent::RegistrationSubmitted {
            username: request.username.clone(),
            email: request.email.clone(),
        };
        let recording = Recording {
            action: "registration.submit",
            refused: registration_refused,
            insert: |tx, request| tx.insert_registration(request),
            pending: "a request is already pending",
        };
        self.record_submission(from, arrived, request.username.clone(), request, recording, vec![event]).await
    }

    /// Asks for an account's SSH key to be replaced (public). Recorded only when the username
    /// exists, the email is the account's and the key is nobody else's; answered [`SUBMITTED`]
    /// either way.
    pub async fn request_key_change(&self, from: &Submission, form: KeyChangeForm) -> Result<&'static str> {
        let arrived = tokio::time::Instant::now();
        self.admit(from).await?;
        let valid = form.validate().map_err(|errors| Error::InvalidFields(errors.0))?;
        self.submissions.admit_email(valid.email.as_str(), &self.rt.config.registration)?;
        let request = KeyChangeRequest {
            id: Uuid::now_v7(),
            username: valid.username,
            email: valid.email,
            new_ssh_key: valid.new_ssh_key,
            reason: valid.reason,
            status: RequestStatus::Pending,
            created_at: now(),
            processed_by: None,
            processed_at: None,
            reject_reason: None,
        };
        // The administrators decide; the account's holder hears of it, in case it was not them.
        let events = vec![
            NotificationEvent::KeyChangeRequested { username: request.username.clone() },
            NotificationEvent::KeyChangeRequestReceived { username: request.username.clone() },
        ];
        let recording = Recording {
            action: "key_change.submit",
            refused: key_change_refused,
            insert: |tx, request| tx.insert_key_change(request),
            pending: "a key change is already pending",
        };
        self.record_submission(from, arrived, request.username.clone(), request, recording, events).await
    }

    /// Records a submission, or refuses it as a duplicate, in one transaction either way, with
    /// its audit event, and queues the notifications of one that was recorded. Both are answered
    /// `registration.answer_after_ms` after the submission `arrived`: a recorded one writes more
    /// and wakes the notifier, and the answer's timing must not tell which it was.
    async fn record_submission<R: Send + Sync + 'static>(
        &self,
        from: &Submission,
        arrived: tokio::time::Instant,
        username: crate::validate::Username,
        record: R,
        recording: Recording<R>,
        events: Vec<NotificationEvent>,
    ) -> Result<&'static str> {
        let client = from.client.clone();
        let channels = self.rt.channels();
        let recorded = self
            .rt
            .db(move |store, _| {
                store.transact(|tx| {
                    let refused = match (recording.refused)(&*tx, &record)? {
                        Some(reason) => Some(reason),
                        // Another pending request for this username or email: the store's
                        // unique indexes decide, also under concurrent submissions.
                        None => match (recording.insert)(tx, &record) {
                            Ok(()) => None,
                            Err(Error::AlreadyExists { .. }) => Some(recording.pending),
                            Err(other) => return Err(other),
                        },
                    };
                    if let Some(reason) = refused {
                        submitted_audit(tx, recording.action, &username, &client, Outcome::Denied, Some(reason))?;
                        return Ok(false);
                    }
                    for event in &events {
                        crate::runtime::queue(tx, event.clone(), &channels)?;
                    }
                    submitted_audit(tx, recording.action, &username, &client, Outcome::Success, None)?;
                    Ok(true)
                })
            })
            .await?;
        let answer_after = std::time::Duration::from_millis(self.rt.config.registration.answer_after_ms.into());
        tokio::time::sleep_until(arrived + answer_after).await;
        if recorded {
            self.rt.outbox_ready.notify_one();
        }
        Ok(SUBMITTED)
    }
}

/// How one kind of submission is checked and stored.
struct Recording<R> {
    action: &'static str,
    refused: fn(&dyn crate::store::StoreRead, &R) -> Result<Option<&'static str>>,
    insert: fn(&mut dyn StoreTx, &R) -> Result<()>,
    /// Why a submission the store's unique indexes refused is not recorded.
    pending: &'static str,
}

/// Why a registration is not recorded, if it is not: the name, the email or the key is an
/// account's (one account per person: an address that has an account gets no second one).
fn registration_refused(
    tx: &dyn crate::store::StoreRead,
    request: &RegistrationRequest,
) -> Result<Option<&'static str>> {
    if tx.get_user(&request.username)?.is_some() {
        return Ok(Some("the username is an account's"));
    }
    if tx.user_by_email(&request.email)?.is_some() {
        return Ok(Some("the email is an account's"));
    }
    if tx.user_by_key_fingerprint(request.ssh_key.fingerprint())?.is_some() {
        return Ok(Some("the key is another account's"));
    }
    Ok(None)
}

/// Why a key change is not recorded, if it is not: no such account, another email, or a key
/// another account uses. The original never compared the email (its lookup read the wrong
/// file), so anyone could ask to take over any account; here the email must match.
fn key_change_refused(tx: &dyn crate::store::StoreRead, request: &KeyChangeRequest) -> Result<Option<&'static str>> {
    let Some(user) = tx.get_user(&request.username)? else {
        return Ok(Some("no such account"));
    };
    if !user.email.as_str().eq_ignore_ascii_case(request.email.as_str()) {
        return Ok(Some("the email is not the account's"));
    }
    if let Some(owner) = tx.user_by_key_fingerprint(request.new_ssh_key.fingerprint())? {
        return Ok(Some(if owner.username == user.username {
            "the key is the account's already"
        } else {
            "the key is another account's"
        }));
    }
    Ok(None)
}

fn submitted_audit(
    tx: &mut dyn StoreTx,
    action: &str,
    username: &crate::validate::Username,
    client: &str,
    outcome: Outcome,
    reason: Option<&str>,
) -> Result<()> {
    let mut details = json!({});
    if let Some(reason) = reason {
        details["refused"] = json!(reason);
    }
    tx.append_audit(&AuditEvent::new(
        "anonymous",
        action,
        &format!("user/{username}"),
        &bounded(client),
        outcome,
        details,
    ))
}
