//! The outbox: notifications written in the same transaction as the change that caused them,
//! delivered by a dispatcher with retries and backoff, dead-lettered after
//! `work.notification_attempts`, and shown to administrators. Delivery is at least once: a
//! process that dies between delivering and recording it delivers again, at once when the same
//! instance starts again, else when the claim window has passed.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::authz::{decide, Action, Actor};
use super::{page, Page, PageRequest, Runtime};
use crate::error::{Error, Result};
use crate::model::*;
use crate::notifier::Recipient;
use crate::store::{OutboxFilter, StoreExt};
use crate::validate::bounded;

/// How long a dispatcher holds the messages it took before another may take them again.
const CLAIM_WINDOW_SECONDS: i64 = 120;
/// Messages taken at once.
const BATCH: usize = 32;
/// The longest a notifier may take for one delivery.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait between two attempts.
const MAX_RETRY_SECONDS: u64 = 1800;

/// Which outbox messages to list: one state, and a page (oldest first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxQuery {
    pub state: Option<String>,
    pub page: PageRequest,
}

/// The wait before attempt `attempts + 1`: the base doubled for every failure, capped.
pub fn retry_delay(base_seconds: u64, attempts: u32) -> Duration {
    let factor = 2u64.saturating_pow(attempts.saturating_sub(1));
    Duration::from_secs(base_seconds.saturating_mul(factor).min(MAX_RETRY_SECONDS))
}

/// Queues `event` in the outbox within `tx`: one message per notifier channel.
pub(crate) fn queue(tx: &mut dyn crate::store::StoreTx, event: NotificationEvent, channels: &[String]) -> Result<()> {
    OutboxMessage::per_channel(event, channels).iter().try_for_each(|message| tx.insert_outbox(message))
}

impl Runtime {
    /// Delivers the notifications that are due; returns how many were attempted.
    pub async fn dispatch_outbox(&self) -> Result<usize> {
        let worker = self.worker.clone();
        let batch = self
            .db(move |store, _| {
                store.transact(|tx| {
                    let at = now();
                    tx.claim_outbox(&worker, at, at + chrono::Duration::seconds(CLAIM_WINDOW_SECONDS), BATCH)
                })
            })
            .await?;
        let attempted = batch.len();
        for mut message in batch {
            let recipient = self.recipient(&message.event).await?;
            let sending = async {
                if message.channel.is_empty() {
                    self.notifier.deliver(message.id, &message.event, &recipient).await
                } else {
                    self.notifier.notify_on(&message.channel, message.id, &message.event, &recipient).await
                }
            };
            let delivery = match tokio::time::timeout(DELIVERY_TIMEOUT, sending).await {
                Ok(result) => result,
                Err(_) => Err(Error::Timeout(format!("the notifier did not answer in {DELIVERY_TIMEOUT:?}"))),
            };
            message.attempts += 1;
            match delivery {
                Ok(()) => {
                    message.state = OutboxState::Delivered;
                    message.delivered_at = Some(now());
                    message.last_error = None;
                }
                Err(error) => {
                    message.last_error = Some(bounded(&error.to_string()));
                    if message.attempts >= self.config.work.notification_attempts {
                        message.state = OutboxState::Dead;
                        tracing::error!(
                            event = message.event.name(),
                            id = %message.id,
                            attempts = message.attempts,
                            %error,
                            "notification dead-lettered; see basphere admin outbox"
                        );
                    } else {
                        let wait = retry_delay(self.config.work.notification_retry_seconds, message.attempts);
                        message.next_attempt_at = now() + chrono::Duration::from_std(wait).unwrap_or_default();
                        tracing::warn!(event = message.event.name(), attempt = message.attempts, %error, "notification delivery failed; retrying");
                    }
                }
            }
            message.claimed_by = None;
            let saved = message.clone();
            self.db(move |store, _| store.write(&mut |tx| tx.update_outbox(&saved))).await?;
        }
        Ok(attempted)
    }

    /// The notifier's channels, for the messages a transaction queues (one per channel).
    pub(crate) fn channels(&self) -> Vec<String> {
        self.notifier.channels()
    }

    /// Who `event` is for: the applicant or account it names (its address as it is now), or the
    /// administrators for requests that wait for them.
    async fn recipient(&self, event: &NotificationEvent) -> Result<Recipient> {
        use NotificationEvent as E;
        let owner = match event {
            E::RegistrationSubmitted { .. } | E::KeyChangeRequested { .. } => {
                return Ok(Recipient::Administrators { emails: self.config.notifications.admin_emails.clone() })
            }
            E::RegistrationApproved { username, email }
            | E::RegistrationRejected { username, email, .. }
            | E::KeyChangeApproved { username, email }
            | E::KeyChangeRejected { username, email, .. } => {
                return Ok(Recipient::Person { username: username.clone(), email: email.clone() })
            }
            E::KeyChangeRequestReceived { username: owner }
            | E::VmReady { owner, .. }
            | E::VmFailed { owner, .. }
            | E::ClusterReady { owner, .. }
            | E::ClusterFailed { owner, .. }
            | E::QuotaNearlyUsed { owner, .. } => owner.clone(),
        };
        let lookup = owner.clone();
        let user = self.read(move |store| store.query(|tx| tx.get_user(&lookup))).await?;
        Ok(match user {
            Some(user) => Recipient::Person { username: user.username, email: user.email },
            None => Recipient::Gone { username: owner },
        })
    }

    /// Makes the messages that an earlier boot of this instance claimed due at once: that
    /// process is gone, and nobody else would take them before their claim ran out.
    pub(crate) async fn take_back_outbox_claims(&self) -> Result<usize> {
        let (instance, worker) = (self.instance.clone(), self.worker.clone());
        self.db(move |store, _| {
            store.transact(|tx| {
                let pending = OutboxFilter { state: Some(OutboxState::Pending), ..OutboxFilter::default() };
                let at = now();
                let mut taken = 0;
                for mut message in tx.list_outbox(&pending)? {
                    let earlier_boot = message
                        .claimed_by
                        .as_deref()
                        .is_some_and(|holder| holder != worker && super::worker_instance(holder) == instance);
                    if earlier_boot && message.next_attempt_at > at {
                        message.claimed_by = None;
                        message.next_attempt_at = at;
                        tx.update_outbox(&message)?;
                        taken += 1;
                    }
                }
                Ok(taken)
            })
        })
        .await
    }

    /// The outbox, oldest first (administrators).
    pub async fn outbox(&self, actor: &Actor, query: OutboxQuery) -> Result<Page<OutboxMessage>> {
        decide(actor, Action::Administer, None, "outbox", &"")?;
        let limit = query.page.limit(PageRequest::RESOURCES)?;
        let state = query.state.as_deref().map(OutboxState::parse).transpose()?;
        let filter = OutboxFilter { state, after: query.page.after, limit: Some(limit + 1) };
        let messages = self.read(move |store| store.query(|tx| tx.list_outbox(&filter))).await?;
        Ok(page(messages, limit, |message| message.id))
    }

    /// Puts a dead-lettered notification back in line (administrators), with its attempts
    /// counted from zero again.
    pub async fn retry_notification(&self, actor: &Actor, id: &str) -> Result<OutboxMessage> {
        decide(actor, Action::Administer, None, "notification", &"")?;
        let id = Uuid::parse_str(id).map_err(|_| Error::not_found("notification", bounded(id)))?;
        let missing = move || Error::not_found("notification", id);
        let actor = actor.clone();
        let message = self
            .db(move |store, _| {
                store.transact(|tx| {
                    let mut message = tx.get_outbox(id)?.ok_or_else(missing)?;
                    if message.state != OutboxState::Dead {
                        return Err(Error::Conflict(format!(
                            "notification {id} is {}; only dead notifications are retried",
                            message.state.as_str()
                        )));
                    }
                    message.state = OutboxState::Pending;
                    message.claimed_by = None;
                    message.attempts = 0;
                    message.next_attempt_at = now();
                    tx.update_outbox(&message)?;
                    tx.append_audit(&AuditEvent::new(
                        &actor.name,
                        "notification.retry",
                        &format!("notification/{id}"),
                        &actor.source,
                        Outcome::Success,
                        json!({"event": message.event.name()}),
                    ))?;
                    Ok(message)
                })
            })
            .await?;
        self.outbox_ready.notify_one();
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_are_capped() {
        assert_eq!(retry_delay(2, 1), Duration::from_secs(2));
        assert_eq!(retry_delay(2, 2), Duration::from_secs(4));
        assert_eq!(retry_delay(2, 5), Duration::from_secs(32));
        assert_eq!(retry_delay(2, 40), Duration::from_secs(MAX_RETRY_SECONDS));
    }
}
