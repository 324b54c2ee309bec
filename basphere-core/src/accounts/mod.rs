//! Accounts: who a caller is (socket uid), creating and listing accounts, the provisioning
//! every account needs (an IP block and a vSphere folder), registration and key-change
//! requests (`registration`, with the abuse limits in `limits`), their approval and the other
//! administrative steps (`admin`), quotas (`quota`), the account operations' handlers
//! (`operations`), and the callers' credentials: API tokens (`tokens`) and browser sessions
//! (`sessions`).

pub(crate) mod admin;
mod limits;
pub(crate) mod operations;
mod quota;
mod registration;
mod sessions;
pub(crate) mod tokens;

use std::sync::Arc;

use serde_json::json;

pub use admin::RequestQuery;
pub use quota::QuotaReport;
pub use registration::{Submission, SUBMITTED};
pub use sessions::{NewWebSession, SIGN_IN_LINK_MINUTES};
pub use tokens::{token_expiry, token_scope, Credentials, NewToken, MAX_TOKEN_DAYS, TOKEN_CACHE_TTL};

use self::operations::Backends;
use self::tokens::TokenCache;
use crate::error::{Error, Result};
use crate::human::HumanCheck;
use crate::model::*;
use crate::runtime::authz::{decide, Action, Actor};
use crate::runtime::start::audit_in;
use crate::runtime::Runtime;
use crate::store::StoreExt;
use crate::validate::bounded;
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

/// The accounts' use cases. Every public one takes the [`Actor`], asks [`decide`] and audits
/// what it changes; public submissions (`register`, `request_key_change`) pass the abuse limits
/// and the bot check instead, and are audited too.
pub struct Accounts {
    rt: Arc<Runtime>,
    backends: Backends,
    /// The bot check on public submissions, when `recaptcha.enabled` is true.
    human_check: Option<Arc<dyn HumanCheck>>,
    /// Recent public submissions, for the abuse limits (`registration.*`).
    submissions: limits::Submissions,
    /// Shared with [`Credentials`]: a suspension or deletion forgets the account's tokens.
    tokens: Arc<TokenCache>,
}

impl Accounts {
    pub(crate) fn new(
        rt: Arc<Runtime>,
        backends: Backends,
        human_check: Option<Arc<dyn HumanCheck>>,
        tokens: Arc<TokenCache>,
    ) -> Self {
        Accounts { rt, backends, human_check, submissions: limits::Submissions::default(), tokens }
    }

    /// The caller on the Unix socket, from the uid the kernel gave: root and the server's own
    /// user are the system administrator; any other uid is the active account registered with
    /// it, or nobody.
    pub async fn identify_uid(&self, uid: u32, server_uid: u32, source: &str) -> Result<Actor> {
        if uid == 0 || uid == server_uid {
            let name = if uid == 0 { "root".to_owned() } else { format!("uid-{uid}") };
            return Ok(Actor::admin(&name, source));
        }
        let user = self.rt.read(move |store| store.query(|tx| tx.user_by_uid(uid))).await?;
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
        self.rt.read(move |store| store.query(|tx| tx.get_user(&account))).await
    }

    /// Creates an account directly (administrators): validates the form with the same rules as
    /// registration, records the account with its audit event, then gives it an IP block and
    /// its vSphere folder. A taken username, key or uid is refused by the store's constraints,
    /// even under concurrent requests.
    pub async fn create(&self, actor: &Actor, account: NewAccount) -> Result<User> {
        decide(actor, Action::Administer, None, "user", &account.username)?;
        let form = RegistrationForm {
            username: account.username.clone(),
            email: account.email.clone(),
            team: account.team.clone(),
            public_key: account.ssh_key.clone(),
        };
        let valid =
            form.validate(&self.rt.config.allowed_email_domains).map_err(|errors| Error::InvalidFields(errors.0))?;
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
        let (record, by) = (user.clone(), actor.clone());
        self.rt
            .db(move |store, _| {
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
                        &by.name,
                        "user.create",
                        &format!("user/{}", record.username),
                        &by.source,
                        Outcome::Success,
                        details,
                    ))
                })
            })
            .await?;
        self.complete(user, actor).await
    }

    /// Creates or completes an account with no questions about its form (administrators and
    /// tools such as the importer, which bring records made elsewhere): the user record as
    /// given, an IP block, and the owner's folder in the VM backend, audited as
    /// `user.provision`. Every step is idempotent, so a half-done call can simply be repeated.
    /// People's accounts go through [`Accounts::create`] and approval instead.
    pub async fn provision(&self, actor: &Actor, user: User) -> Result<User> {
        decide(actor, Action::Administer, None, "user", &user.username)?;
        let (record, by) = (user.clone(), actor.clone());
        let user = self
            .rt
            .db(move |store, _| {
                store.transact(|tx| {
                    if let Some(existing) = tx.get_user(&record.username)? {
                        return Ok(existing);
                    }
                    tx.insert_user(&record)?;
                    let details =
                        json!({"role": record.role.as_str(), "status": record.status.as_str(), "uid": record.uid});
                    audit_in(tx, &by, "user.provision", &format!("user/{}", record.username), details)?;
                    Ok(record.clone())
                })
            })
            .await?;
        self.complete(user, actor).await
    }

    /// The steps every account needs after its record: its folder, and an IP block of the flat
    /// pools or, in tenant mode, its network (recorded with the operation that makes it, when it
    /// has none).
    async fn complete(&self, user: User, actor: &Actor) -> Result<User> {
        let tenant = crate::networks::operations::tenant_settings(&self.rt.config.networks).is_ok();
        let stored = self
            .rt
            .db(move |store, ipam| {
                store.transact(|tx| {
                    let stored = match tx.get_user(&user.username)? {
                        Some(existing) => existing,
                        None => {
                            tx.insert_user(&user)?;
                            user.clone()
                        }
                    };
                    if !tenant {
                        ipam.assign_block(tx, &stored.username)?;
                    }
                    Ok(stored)
                })
            })
            .await?;
        self.backends.provisioner.ensure_folder(&stored.username).await?;
        if let Ok(settings) = crate::networks::operations::tenant_settings(&self.rt.config.networks) {
            let (settings, owner, actor) = (settings.clone(), stored.username.clone(), actor.clone());
            let started = self
                .rt
                .db(move |store, _| {
                    store.transact(|tx| match tx.network_of(&owner)? {
                        Some(_) => Ok(None),
                        None => crate::networks::start_network(tx, &settings, &owner, &actor).map(Some),
                    })
                })
                .await?;
            if let Some(change) = started {
                self.rt.spawn_operation(change.operation.id);
            }
        }
        Ok(stored)
    }

    /// Every account, ordered by username (administrators).
    pub async fn list(&self, actor: &Actor, _query: AccountQuery) -> Result<Vec<User>> {
        decide(actor, Action::Administer, None, "user", &"")?;
        self.rt.db(|store, _| store.query(|tx| tx.list_users())).await
    }

    /// One account (administrators). A name that breaks the username rule cannot exist, so it
    /// is answered like a missing account.
    pub async fn get(&self, actor: &Actor, username: &str) -> Result<User> {
        decide(actor, Action::Administer, None, "user", &username)?;
        let name = lookup_username(username)?;
        self.rt.read(move |store| store.user(&name)).await
    }
}

/// A username from a request path: one that breaks the rule cannot exist.
pub fn lookup_username(value: &str) -> Result<Username> {
    Username::parse(value).map_err(|_| Error::not_found("user", bounded(value)))
}

/// One account per email address: a `Conflict` naming the account that has `email` already.
/// (Not a unique index: installations from before the rule may hold two accounts of one
/// address, and must still start.)
pub(crate) fn email_unused(tx: &dyn crate::store::StoreRead, email: &crate::validate::Email) -> Result<()> {
    match tx.user_by_email(email)? {
        Some(other) => Err(Error::Conflict(format!(
            "the email {email} is the account {}'s already (one account per address)",
            other.username
        ))),
        None => Ok(()),
    }
}
