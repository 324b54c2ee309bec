//! Accounts: who a caller is (socket uid, token), creating and listing accounts, and the
//! provisioning every account needs (an IP block and a vSphere folder).

use serde_json::json;

use super::authz::{decide, Action, Actor};
use super::Platform;
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::StoreExt;
use crate::validate::{RegistrationForm, Username};

/// An account as an administrator creates it directly (registration and approval are the
/// self-service path).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewAccount {
    pub username: String,
    pub email: String,
    pub team: String,
    pub ssh_key: String,
    pub admin: bool,
    /// The Unix uid of the account's bastion login, so the CLI on the bastion recognises it.
    pub uid: Option<u32>,
}

/// Which accounts to list (every account, ordered by username).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountQuery;

impl Platform {
    /// The caller on the Unix socket, from the uid the kernel gave: root and the server's own
    /// user are the system administrator; any other uid is the active account registered with
    /// it, or nobody.
    pub async fn identify_uid(&self, uid: u32, server_uid: u32, source: &str) -> Result<Actor> {
        if uid == 0 || uid == server_uid {
            let name = if uid == 0 { "root".to_owned() } else { format!("uid-{uid}") };
            return Ok(Actor::admin(&name, source));
        }
        let user = self.read(move |store| store.query(|tx| tx.user_by_uid(uid))).await?;
        let Some(user) = user else {
            return Err(Error::Unauthorized(format!(
                "uid {uid} is not a Basphere account; register first, or ask an administrator"
            )));
        };
        if user.status != UserStatus::Active {
            return Err(Error::Forbidden(format!("the account {} is suspended", user.username)));
        }
        Ok(Actor::of_account(&user.username, user.role, source))
    }

    /// The caller's own account record (`None` for the system administrator).
    pub async fn whoami(&self, actor: &Actor) -> Result<Option<User>> {
        let Some(account) = actor.account.clone() else {
            return Ok(None);
        };
        self.read(move |store| store.query(|tx| tx.get_user(&account))).await
    }

    /// Creates an account directly (administrators): validates the form with the same rules as
    /// registration, records the account with its audit event, then gives it an IP block and
    /// its vSphere folder. A taken username, key or uid is refused by the store's constraints,
    /// even under concurrent requests.
    pub async fn create_account(&self, actor: &Actor, account: NewAccount) -> Result<User> {
        decide(actor, Action::Administer, None, "user", &account.username)?;
        let form = RegistrationForm {
            username: account.username.clone(),
            email: account.email.clone(),
            team: account.team.clone(),
            public_key: account.ssh_key.clone(),
        };
        let valid =
            form.validate(&self.config.allowed_email_domains).map_err(|errors| Error::InvalidFields(errors.0))?;
        let at = now();
        let user = User {
            username: valid.username,
            email: valid.email,
            team: valid.team,
            ssh_key: valid.ssh_key,
            role: if account.admin { Role::Admin } else { Role::User },
            status: UserStatus::Active,
            uid: account.uid,
            created_at: at,
            updated_at: at,
        };
        let (record, actor) = (user.clone(), actor.clone());
        self.db(move |store, _| {
            store.transact(|tx| {
                email_unused(&*tx, &record.email)?;
                tx.insert_user(&record)?;
                let details = json!({
                    "email": record.email.as_str(),
                    "role": record.role.as_str(),
                    "uid": record.uid,
                    "key": record.ssh_key.fingerprint(),
                });
                tx.append_audit(&AuditEvent::new(
                    &actor.name,
                    "user.create",
                    &format!("user/{}", record.username),
                    &actor.source,
                    Outcome::Success,
                    details,
                ))
            })
        })
        .await?;
        self.provision_account(user).await
    }

    /// Creates or completes an account: the user record, an IP block, and the owner's folder in
    /// the VM backend. Every step is idempotent, so a half-done call can simply be repeated.
    /// For the platform itself and for tools (approval, imports); people go through
    /// [`Platform::create_account`].
    pub async fn provision_account(&self, user: User) -> Result<User> {
        let stored = self
            .db(move |store, ipam| {
                store.transact(|tx| {
                    let stored = match tx.get_user(&user.username)? {
                        Some(existing) => existing,
                        None => {
                            tx.insert_user(&user)?;
                            user.clone()
                        }
                    };
                    ipam.assign_block(tx, &stored.username)?;
                    Ok(stored)
                })
            })
            .await?;
        self.provisioner.ensure_folder(&stored.username).await?;
        Ok(stored)
    }

    /// Every account, ordered by username (administrators).
    pub async fn list_accounts(&self, actor: &Actor, _query: AccountQuery) -> Result<Vec<User>> {
        decide(actor, Action::Administer, None, "user", &"")?;
        self.db(|store, _| store.query(|tx| tx.list_users())).await
    }

    /// One account (administrators). A name that breaks the username rule cannot exist, so it
    /// is answered like a missing account.
    pub async fn account(&self, actor: &Actor, username: &str) -> Result<User> {
        decide(actor, Action::Administer, None, "user", &username)?;
        let name = lookup_username(username)?;
        self.read(move |store| store.user(&name)).await
    }
}

/// A username from a request path: one that breaks the rule cannot exist.
pub fn lookup_username(value: &str) -> Result<Username> {
    Username::parse(value).map_err(|_| Error::not_found("user", bounded(value)))
}

/// At most 64 characters of something a caller sent, for messages and the audit log.
pub fn bounded(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX {
        value.to_owned()
    } else {
        let cut: String = value.chars().take(MAX).collect();
        format!("{cut}... ({} characters)", value.chars().count())
    }
}

/// One account per email address: a `Conflict` naming the account that has `email` already.
/// (Not a unique index: installations from before the rule may hold two accounts of one
/// address, and must still start.)
pub(super) fn email_unused(tx: &dyn crate::store::StoreRead, email: &crate::validate::Email) -> Result<()> {
    match tx.user_by_email(email)? {
        Some(other) => Err(Error::Conflict(format!(
            "the email {email} is the account {}'s already (one account per address)",
            other.username
        ))),
        None => Ok(()),
    }
}
