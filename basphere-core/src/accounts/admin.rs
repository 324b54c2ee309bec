//! What administrators do with accounts and requests: list and decide registrations and key
//! changes, suspend and resume, delete and purge. Approval, key changes and purges touch the
//! backends, so they run as operations (`account_operations`); the rest is one transaction.

use serde_json::json;
use uuid::Uuid;

use super::operations::{approve_steps, purge_steps, CHANGE_KEY_STEPS};
use super::{lookup_username, Accounts};
use crate::error::{Error, Result};
use crate::model::*;
use crate::runtime::authz::{decide, Action, Actor};
use crate::runtime::start::{audit_in, ensure_idle, Busy};
use crate::runtime::{page, Page, PageRequest};
use crate::store::{OperationFilter, RequestFilter, StoreExt, StoreRead, StoreTx};
use crate::validate::bounded;
use crate::validate::{free_text, Username};

/// Which requests to list: one status (pending by default), oldest first, a page at a time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestQuery {
    /// pending, approved or rejected; pending when absent.
    pub status: Option<String>,
    pub page: PageRequest,
}

impl RequestQuery {
    fn status(&self) -> Result<RequestStatus> {
        self.status.as_deref().map_or(Ok(RequestStatus::Pending), RequestStatus::parse)
    }
}

/// A request an administrator decides: a registration or a key change.
trait Pending {
    /// Records the decision: its status, who made it and when, and a rejection's reason.
    fn decide(&mut self, status: RequestStatus, by: &str, reason: Option<String>);
}

macro_rules! pending {
    ($ty:ty) => {
        impl Pending for $ty {
            fn decide(&mut self, status: RequestStatus, by: &str, reason: Option<String>) {
                self.status = status;
                self.processed_by = Some(by.to_owned());
                self.processed_at = Some(now());
                self.reject_reason = reason;
            }
        }
    };
}
pending!(RegistrationRequest);
pending!(KeyChangeRequest);

/// How one kind of request is rejected.
struct Rejection<R> {
    /// `registration` or `key change`, for messages.
    kind: &'static str,
    /// The audit action.
    action: &'static str,
    pending: fn(&dyn StoreRead, &Username) -> Result<Option<R>>,
    save: fn(&mut dyn StoreTx, &R) -> Result<()>,
    event: fn(&R, String) -> NotificationEvent,
}

/// The longest rejection reason kept.
const MAX_REASON: usize = 500;

fn audit(
    tx: &mut dyn StoreTx,
    actor: &Actor,
    action: &str,
    username: &Username,
    details: serde_json::Value,
) -> Result<()> {
    audit_in(tx, actor, action, &format!("user/{username}"), details)
}

fn pending_registration(tx: &dyn StoreRead, username: &Username) -> Result<Option<RegistrationRequest>> {
    // The unique index allows one pending request per username.
    let filter = RequestFilter {
        status: Some(RequestStatus::Pending),
        username: Some(username.clone()),
        ..RequestFilter::default()
    };
    Ok(tx.list_registrations(&filter)?.pop())
}

fn pending_key_change(tx: &dyn StoreRead, username: &Username) -> Result<Option<KeyChangeRequest>> {
    let filter = RequestFilter {
        status: Some(RequestStatus::Pending),
        username: Some(username.clone()),
        ..RequestFilter::default()
    };
    Ok(tx.list_key_changes(&filter)?.pop())
}

/// An administrator does not suspend, delete or purge the account they act as: the request
/// would cut the ground from under it (and a stray request would lock the last admin out).
fn not_yourself(actor: &Actor, username: &Username, what: &str) -> Result<()> {
    if actor.account.as_ref() == Some(username) {
        return Err(Error::Conflict(format!(
            "you cannot {what} the account you are acting as ({username}); ask another administrator"
        )));
    }
    Ok(())
}

fn account(tx: &dyn StoreRead, username: &Username) -> Result<User> {
    tx.get_user(username)?.ok_or_else(|| Error::not_found("user", username))
}

/// An unfinished operation on the account, if any: one thing at a time.
/// Refuses while the account has an operation of its own (approval, key change, purge) in
/// progress.
pub(crate) fn busy(tx: &dyn StoreRead, username: &Username) -> Result<()> {
    let on_account = Busy {
        filter: OperationFilter { owner: Some(username.clone()), ..OperationFilter::default() },
        concerns: |operation: &Operation| operation.resource.kind == ResourceKind::Account,
    };
    ensure_idle(tx, on_account, format_args!("the account {username}"))
}

/// The account's newest approval operation, if it has one.
fn latest_approval(tx: &dyn StoreRead, username: &Username) -> Result<Option<Operation>> {
    let operations = tx.list_operations(&OperationFilter {
        owner: Some(username.clone()),
        newest_first: true,
        ..OperationFilter::default()
    })?;
    Ok(operations.into_iter().find(|op| op.kind == OperationKind::ApproveAccount))
}

fn account_operation(kind: OperationKind, username: &Username, actor: &Actor, steps: &[&str]) -> Operation {
    let resource = ResourceRef { kind: ResourceKind::Account, id: Uuid::now_v7(), name: username.to_string() };
    Operation::new(kind, username.clone(), resource, &actor.name, steps)
}

impl Accounts {
    /// Registration requests in one status, oldest first (administrators).
    pub async fn registrations(&self, actor: &Actor, query: RequestQuery) -> Result<Page<RegistrationRequest>> {
        decide(actor, Action::Administer, None, "registration", &"")?;
        let status = query.status()?;
        let limit = query.page.limit(PageRequest::RESOURCES)?;
        let after = query.page.after;
        let filter = RequestFilter { status: Some(status), after, limit: Some(limit + 1), ..RequestFilter::default() };
        let requests = self.rt.read(move |store| store.query(|tx| tx.list_registrations(&filter))).await?;
        Ok(page(requests, limit, |r| r.id))
    }

    /// The latest registration request of a username, pending or decided (administrators).
    pub async fn registration(&self, actor: &Actor, username: &str) -> Result<RegistrationRequest> {
        decide(actor, Action::Administer, None, "registration", &username)?;
        let name = lookup_username(username).map_err(|_| Error::not_found("registration", bounded(username)))?;
        self.rt
            .db(move |store, _| {
                store.query(|tx| {
                    let mut all = tx.list_registrations(&RequestFilter {
                        username: Some(name.clone()),
                        ..RequestFilter::default()
                    })?;
                    all.sort_by_key(|r| (r.status == RequestStatus::Pending, r.id));
                    all.pop().ok_or_else(|| Error::not_found("registration", &name))
                })
            })
            .await
    }

    /// Key change requests in one status, oldest first (administrators).
    pub async fn key_changes(&self, actor: &Actor, query: RequestQuery) -> Result<Page<KeyChangeRequest>> {
        decide(actor, Action::Administer, None, "key change", &"")?;
        let status = query.status()?;
        let limit = query.page.limit(PageRequest::RESOURCES)?;
        let after = query.page.after;
        let filter = RequestFilter { status: Some(status), after, limit: Some(limit + 1), ..RequestFilter::default() };
        let requests = self.rt.read(move |store| store.query(|tx| tx.list_key_changes(&filter))).await?;
        Ok(page(requests, limit, |r| r.id))
    }

    /// Approves `username`'s pending registration: the account is recorded active at once and
    /// an `approve_account` operation gives it an IP block, its vSphere folder and its bastion
    /// login, records the login's uid and tells the user. Approving an account whose approval
    /// failed part-way runs the operation again, which finishes it.
    pub async fn approve_registration(&self, actor: &Actor, username: &str) -> Result<Operation> {
        decide(actor, Action::Administer, None, "registration", &username)?;
        let name = lookup_username(username).map_err(|_| Error::not_found("registration", bounded(username)))?;
        let actor = actor.clone();
        let tenant = matches!(self.rt.config.networks, crate::config::NetworksConfig::Tenant(_));
        let (operation, started) = self
            .rt
            .db(move |store, _| {
                store.transact(|tx| {
                    busy(&*tx, &name)?;
                    let operation =
                        account_operation(OperationKind::ApproveAccount, &name, &actor, approve_steps(tenant));
                    match pending_registration(&*tx, &name)? {
                        Some(mut request) => {
                            if tx.get_user(&name)?.is_some() {
                                return Err(Error::Conflict(format!(
                                    "an account named {name} exists already; reject this request"
                                )));
                            }
                            if let Some(other) = tx.user_by_key_fingerprint(request.ssh_key.fingerprint())? {
                                return Err(Error::Conflict(format!(
                                    "the request's key is the account {}'s; reject this request",
                                    other.username
                                )));
                            }
                            super::email_unused(&*tx, &request.email).map_err(|error| match error {
                                Error::Conflict(why) => Error::Conflict(format!("{why}; reject this request")),
                                other => other,
                            })?;
                            let at = now();
                            tx.insert_user(&User {
                                username: name.clone(),
                                email: request.email.clone(),
                                team: request.team.clone(),
                                ssh_key: request.ssh_key.clone(),
                                role: Role::User,
                                status: UserStatus::Active,
                                uid: None,
                                created_at: at,
                                updated_at: at,
                            })?;
                            request.decide(RequestStatus::Approved, &actor.name, None);
                            tx.update_registration(&request)?;
                            audit(tx, &actor, "registration.approve", &name, json!({"operation": operation.id}))?;
                        }
                        None => {
                            // No pending request: finishing an approval that stopped part-way.
                            let approved = !tx
                                .list_registrations(&RequestFilter {
                                    status: Some(RequestStatus::Approved),
                                    username: Some(name.clone()),
                                    ..RequestFilter::default()
                                })?
                                .is_empty();
                            if !approved || tx.get_user(&name)?.is_none() {
                                return Err(Error::not_found("pending registration", &name));
                            }
                            // An approval that finished is answered with itself: approving again
                            // would welcome the account a second time.
                            if let Some(done) = latest_approval(&*tx, &name)?
                                .filter(|approval| approval.state == OperationState::Succeeded)
                            {
                                return Ok((done, false));
                            }
                            audit(
                                tx,
                                &actor,
                                "registration.approve",
                                &name,
                                json!({"operation": operation.id, "again": true}),
                            )?;
                        }
                    }
                    tx.insert_operation(&operation)?;
                    Ok((operation, true))
                })
            })
            .await?;
        if started {
            self.rt.spawn_operation(operation.id);
        }
        Ok(operation)
    }

    /// Rejects `username`'s pending registration with a reason the applicant is told.
    pub async fn reject_registration(
        &self,
        actor: &Actor,
        username: &str,
        reason: &str,
    ) -> Result<RegistrationRequest> {
        let rejection = Rejection {
            kind: "registration",
            action: "registration.reject",
            pending: pending_registration,
            save: |tx, request| tx.update_registration(request),
            event: |request, reason| NotificationEvent::RegistrationRejected {
                username: request.username.clone(),
                email: request.email.clone(),
                reason,
            },
        };
        self.reject(actor, username, reason, rejection).await
    }

    /// Rejects a pending request of `username` with a reason they are told, in one transaction
    /// with its notification and audit event.
    async fn reject<R: Pending + Clone + Send + 'static>(
        &self,
        actor: &Actor,
        username: &str,
        reason: &str,
        rejection: Rejection<R>,
    ) -> Result<R> {
        let kind = rejection.kind;
        decide(actor, Action::Administer, None, kind, &username)?;
        let name = lookup_username(username).map_err(|_| Error::not_found(kind, bounded(username)))?;
        let reason = free_text("reason", reason, MAX_REASON)?;
        let actor = actor.clone();
        let channels = self.rt.channels();
        let request = self
            .rt
            .db(move |store, _| {
                store.transact(|tx| {
                    let mut request = (rejection.pending)(&*tx, &name)?
                        .ok_or_else(|| Error::not_found(kind, format!("{name} (none pending)")))?;
                    request.decide(RequestStatus::Rejected, &actor.name, Some(reason.clone()));
                    (rejection.save)(tx, &request)?;
                    crate::runtime::queue(tx, (rejection.event)(&request, reason.clone()), &channels)?;
                    audit(tx, &actor, rejection.action, &name, json!({"reason": reason}))?;
                    Ok(request)
                })
            })
            .await?;
        self.rt.outbox_ready.notify_one();
        Ok(request)
    }

    /// Approves `username`'s pending key change: the account's key is replaced at once and a
    /// `change_key` operation replaces it on the bastion and tells the user. VMs made earlier
    /// keep the key they were made with.
    pub async fn approve_key_change(&self, actor: &Actor, username: &str) -> Result<Operation> {
        decide(actor, Action::Administer, None, "key change", &username)?;
        let name = lookup_username(username).map_err(|_| Error::not_found("key change", bounded(username)))?;
        let actor = actor.clone();
        let operation = self
            .rt
            .db(move |store, _| {
                store.transact(|tx| {
                    busy(&*tx, &name)?;
                    let mut request = pending_key_change(&*tx, &name)?
                        .ok_or_else(|| Error::not_found("pending key change", &name))?;
                    let mut user = account(&*tx, &name)?;
                    if !user.email.as_str().eq_ignore_ascii_case(request.email.as_str()) {
                        return Err(Error::Conflict(format!(
                            "the request's email is not the account's ({}); reject it",
                            user.email
                        )));
                    }
                    if let Some(other) = tx.user_by_key_fingerprint(request.new_ssh_key.fingerprint())? {
                        if other.username != name {
                            return Err(Error::Conflict(format!(
                                "the new key is the account {}'s; reject this request",
                                other.username
                            )));
                        }
                    }
                    let at = now();
                    user.ssh_key = request.new_ssh_key.clone();
                    user.updated_at = at;
                    tx.update_user(&user)?;
                    request.decide(RequestStatus::Approved, &actor.name, None);
                    tx.update_key_change(&request)?;
                    let operation = account_operation(OperationKind::ChangeKey, &name, &actor, CHANGE_KEY_STEPS);
                    tx.insert_operation(&operation)?;
                    audit(
                        tx,
                        &actor,
                        "key_change.approve",
                        &name,
                        json!({"operation": operation.id, "key": request.new_ssh_key.fingerprint()}),
                    )?;
                    Ok(operation)
                })
            })
            .await?;
        self.rt.spawn_operation(operation.id);
        Ok(operation)
    }

    /// Rejects `username`'s pending key change with a reason the user is told.
    pub async fn reject_key_change(&self, actor: &Actor, username: &str, reason: &str) -> Result<KeyChangeRequest> {
        let rejection = Rejection {
            kind: "key change",
            action: "key_change.reject",
            pending: pending_key_change,
            save: |tx, request| tx.update_key_change(request),
            event: |request, reason| NotificationEvent::KeyChangeRejected {
                username: request.username.clone(),
                email: request.email.clone(),
                reason,
            },
        };
        self.reject(actor, username, reason, rejection).await
    }

    /// Suspends or resumes an account. A suspended account can do nothing: its tokens and its
    /// socket identity are refused (every process within `TOKEN_CACHE_TTL`); its resources stay.
    pub async fn set_suspended(&self, actor: &Actor, username: &str, suspended: bool) -> Result<User> {
        decide(actor, Action::Administer, None, "user", &username)?;
        let name = lookup_username(username)?;
        if suspended {
            not_yourself(actor, &name, "suspend")?;
        }
        let actor = actor.clone();
        let user = self
            .rt
            .db(move |store, _| {
                store.transact(|tx| {
                    let mut user = account(&*tx, &name)?;
                    let status = if suspended { UserStatus::Suspended } else { UserStatus::Active };
                    if user.status != status {
                        user.status = status;
                        user.updated_at = now();
                        tx.update_user(&user)?;
                        let action = if suspended { "user.suspend" } else { "user.resume" };
                        // A suspension signs the account out of every browser, for good: a
                        // resumed account signs in again.
                        let sessions = if suspended { tx.end_web_sessions_of(&name, now())? } else { 0 };
                        audit(tx, &actor, action, &name, json!({"web_sessions_ended": sessions}))?;
                    }
                    Ok(user)
                })
            })
            .await?;
        self.tokens.forget_account(&user.username);
        Ok(user)
    }

    /// Deletes an account that owns nothing: refused while it has VMs, clusters or a tenant
    /// network. Its IP block
    /// is freed, its bastion login removed, its tokens go with it.
    pub async fn delete(&self, actor: &Actor, username: &str) -> Result<()> {
        decide(actor, Action::Administer, None, "user", &username)?;
        let name = lookup_username(username)?;
        not_yourself(actor, &name, "delete")?;
        let check = name.clone();
        self.rt
            .db(move |store, _| {
                store.query(|tx| {
                    account(tx, &check)?;
                    busy(tx, &check)?;
                    let usage = tx.usage(&check)?;
                    if usage.vms > 0 || usage.clusters > 0 {
                        return Err(Error::Conflict(format!(
                            "{check} owns {} VM(s) and {} cluster(s); delete them first, or purge the account",
                            usage.vms, usage.clusters
                        )));
                    }
                    if let Some(network) = tx.network_of(&check)? {
                        return Err(Error::Conflict(format!(
                            "{check} has a tenant network ({}); delete it first (basphere admin network delete {check}), \
                             or purge the account",
                            network.state
                        )));
                    }
                    Ok(())
                })
            })
            .await?;
        // The login first: if removing it fails, the account is still there to try again.
        self.backends.bastion.remove_login(&name).await?;
        let actor = actor.clone();
        let gone = name.clone();
        self.rt
            .db(move |store, ipam| {
                store.transact(|tx| {
                    let usage = tx.usage(&gone)?;
                    if usage.vms > 0 || usage.clusters > 0 {
                        return Err(Error::Conflict(format!(
                            "{gone} made a VM or cluster meanwhile; nothing was deleted"
                        )));
                    }
                    if tx.network_of(&gone)?.is_some() {
                        return Err(Error::Conflict(format!(
                            "{gone} was given a tenant network meanwhile; nothing was deleted"
                        )));
                    }
                    let blocks = ipam.release_blocks(tx, &gone)?;
                    tx.delete_user(&gone)?;
                    let freed: Vec<String> = blocks.iter().map(|b| format!("{}/{}", b.start, b.size)).collect();
                    audit(tx, &actor, "user.delete", &gone, json!({"blocks": freed}))
                })
            })
            .await?;
        self.tokens.forget_account(&name);
        Ok(())
    }

    /// Purges an account: suspends it at once, then a `purge_account` operation destroys its
    /// VMs through the backend, frees their addresses and its blocks, removes its bastion login
    /// and finally the account. No other account's addresses are touched.
    pub async fn purge(&self, actor: &Actor, username: &str) -> Result<Operation> {
        decide(actor, Action::Administer, None, "user", &username)?;
        let name = lookup_username(username)?;
        not_yourself(actor, &name, "purge")?;
        let actor = actor.clone();
        let operation = self
            .rt
            .db(move |store, _| {
                store.transact(|tx| {
                    let mut user = account(&*tx, &name)?;
                    busy(&*tx, &name)?;
                    if user.status != UserStatus::Suspended {
                        user.status = UserStatus::Suspended;
                        user.updated_at = now();
                        tx.update_user(&user)?;
                    }
                    let network = tx.network_of(&name)?.is_some();
                    let operation = account_operation(OperationKind::PurgeAccount, &name, &actor, purge_steps(network));
                    tx.insert_operation(&operation)?;
                    let usage = tx.usage(&name)?;
                    audit(tx, &actor, "user.purge", &name, json!({"operation": operation.id, "vms": usage.vms}))?;
                    Ok(operation)
                })
            })
            .await?;
        self.tokens.forget_account(&operation.owner);
        self.rt.spawn_operation(operation.id);
        Ok(operation)
    }
}
