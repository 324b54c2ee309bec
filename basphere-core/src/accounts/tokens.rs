//! API tokens: creating (the secret shown once), listing, revoking, and turning a bearer
//! secret into an `Actor`, with a short cache so a request costs no store read for its identity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::*;
use crate::runtime::authz::{decide, Action, Actor};
use crate::runtime::Runtime;
use crate::store::StoreExt;
use crate::validate::{free_text, Username};

/// The longest a token may live, in days.
pub const MAX_TOKEN_DAYS: u32 = 3650;

/// A token as created: the record, and the secret that is shown once and never stored.
#[derive(Clone)]
pub struct NewToken {
    pub token: ApiToken,
    pub secret: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken").field("token", &self.token).field("secret", &"<redacted>").finish()
    }
}

/// The expiry of a token that lives `days` days from now (`None`: until revoked).
pub fn token_expiry(days: Option<i64>) -> Result<Option<Timestamp>> {
    match days {
        None => Ok(None),
        Some(days) if (1..=i64::from(MAX_TOKEN_DAYS)).contains(&days) => Ok(Some(now() + chrono::Duration::days(days))),
        Some(days) => Err(Error::invalid("expires_in_days", format!("{days} is not accepted: use 1-{MAX_TOKEN_DAYS}"))),
    }
}

/// The scope a request names (`user` by default, or `admin`).
pub fn token_scope(scope: Option<&str>) -> Result<TokenScope> {
    scope.map_or(Ok(TokenScope::User), TokenScope::parse)
}

/// How long an authenticated token is trusted without reading the store again: a token
/// revoked anywhere (another process, another replica, the database itself) stops working in
/// every process within this time; revoked through this process, at once.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);
const TOKEN_CACHE_MAX: usize = 10_000;

/// Recently authenticated tokens by secret hash, so a request costs no store read for its
/// identity. Entries live [`TOKEN_CACHE_TTL`] at most; a revocation, suspension or deletion in
/// this process removes them at once.
#[derive(Default)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<String, (User, ApiToken, tokio::time::Instant)>>,
}

impl TokenCache {
    /// Drops `username`'s cached tokens, so that a suspension or deletion counts at once here.
    pub(crate) fn forget_account(&self, username: &Username) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, (user, _, _)| user.username != *username);
    }
}

/// API tokens and browser sessions: how callers prove who they are. Every use case that
/// changes something takes the [`Actor`] (or the server's own check of the caller), asks
/// [`decide`] and audits the change.
pub struct Credentials {
    pub(super) rt: Arc<Runtime>,
    pub(super) tokens: Arc<TokenCache>,
}

impl Credentials {
    pub(crate) fn new(rt: Arc<Runtime>, tokens: Arc<TokenCache>) -> Self {
        Credentials { rt, tokens }
    }

    /// Creates an API token for `owner`. The secret is returned once; only its hash is stored.
    /// An admin-scoped token needs an admin account, created by an admin.
    pub async fn create_token(
        &self,
        actor: &Actor,
        owner: &Username,
        name: &str,
        scope: TokenScope,
        expires_at: Option<Timestamp>,
    ) -> Result<NewToken> {
        decide(actor, Action::Create, Some(owner), "token", &name)?;
        if scope == TokenScope::Admin {
            decide(actor, Action::CreateAdminToken, Some(owner), "token", &name)?;
        }
        let name = free_text("name", name, 64)?;
        if name.is_empty() {
            return Err(Error::invalid(
                "name",
                "a token needs a name (1-64 characters), such as the machine it is for",
            ));
        }
        if expires_at.is_some_and(|at| at <= now()) {
            return Err(Error::invalid("expires_at", "the expiry must be in the future"));
        }
        let secret = format!("bsp_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let token = ApiToken {
            id: Uuid::now_v7(),
            owner: owner.clone(),
            name,
            scope,
            secret_hash: ApiToken::hash_secret(&secret),
            created_at: now(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        let (saved, actor) = (token.clone(), actor.clone());
        self.rt
            .db(move |store, _| {
                store.transact(|tx| {
                    let user = tx.get_user(&saved.owner)?.ok_or_else(|| Error::not_found("user", &saved.owner))?;
                    if saved.scope == TokenScope::Admin && user.role != Role::Admin {
                        return Err(Error::Forbidden(format!(
                            "{} is not an administrator; admin tokens are for admin accounts",
                            user.username
                        )));
                    }
                    tx.insert_token(&saved)?;
                    tx.append_audit(&AuditEvent::new(
                        &actor.name,
                        "token.create",
                        &format!("token/{}/{}", saved.owner, saved.id),
                        &actor.source,
                        Outcome::Success,
                        json!({"scope": saved.scope, "name": saved.name}),
                    ))
                })
            })
            .await?;
        Ok(NewToken { token, secret })
    }

    /// The tokens of `owner` (never their secrets).
    pub async fn list_tokens(&self, actor: &Actor, owner: &Username) -> Result<Vec<ApiToken>> {
        decide(actor, Action::View, Some(owner), "user", owner)?;
        let owner = owner.clone();
        self.rt.read(move |store| store.query(|tx| tx.list_tokens(&owner))).await
    }

    /// Revokes a token of the actor's own (or any, for an admin). Others' tokens are `NotFound`.
    pub async fn revoke_token(&self, actor: &Actor, id: Uuid) -> Result<ApiToken> {
        let actor = actor.clone();
        let revoked = self
            .rt
            .db(move |store, _| {
                store.transact(|tx| {
                    let mut token = tx.get_token(id)?.ok_or_else(|| Error::not_found("token", id))?;
                    decide(&actor, Action::Change, Some(&token.owner), "token", &id)?;
                    if token.revoked_at.is_none() {
                        token.revoked_at = Some(now());
                        tx.update_token(&token)?;
                        tx.append_audit(&AuditEvent::new(
                            &actor.name,
                            "token.revoke",
                            &format!("token/{}/{}", token.owner, token.id),
                            &actor.source,
                            Outcome::Success,
                            serde_json::json!({}),
                        ))?;
                    }
                    Ok(token)
                })
            })
            .await?;
        self.tokens.entries.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, (_, token, _)| token.id != id);
        Ok(revoked)
    }

    /// The caller behind a bearer secret: its account with the rights of the token's scope (a
    /// user-scoped token of an admin account carries no admin rights). Every failure is the
    /// same `Unauthorized`, so a caller learns nothing about which part was wrong.
    pub async fn identify_token(&self, secret: &str, source: &str) -> Result<Actor> {
        let (user, token) = self.authenticate_token(secret).await?;
        Ok(Actor::of_account(&user.username, token_role(&user, &token), source))
    }

    /// The account and token behind a bearer secret; see [`Credentials::identify_token`].
    pub async fn authenticate_token(&self, secret: &str) -> Result<(User, ApiToken)> {
        let hash = ApiToken::hash_secret(secret);
        let cached = self.tokens.entries.lock().unwrap_or_else(|p| p.into_inner()).get(&hash).cloned();
        if let Some((user, token, at)) = cached {
            if at.elapsed() < TOKEN_CACHE_TTL && token.is_valid_at(now()) {
                return Ok((user, token));
            }
        }
        let key = hash.clone();
        let found = self
            .rt
            .db(move |store, _| {
                store.query(|tx| {
                    let Some(token) = tx.token_by_hash(&hash)? else {
                        return Ok(None);
                    };
                    Ok(tx.get_user(&token.owner)?.map(|user| (user, token)))
                })
            })
            .await?;
        match found {
            Some((user, token)) if token.is_valid_at(now()) && user.status == UserStatus::Active => {
                let mut cache = self.tokens.entries.lock().unwrap_or_else(|p| p.into_inner());
                if cache.len() >= TOKEN_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(key, (user.clone(), token.clone(), tokio::time::Instant::now()));
                Ok((user, token))
            }
            _ => Err(Error::Unauthorized("the token is unknown, revoked or expired".into())),
        }
    }
}

/// The rights a token gives: an admin-scoped token of an admin account administers, every other
/// token acts as its account's user.
pub(crate) fn token_role(user: &User, token: &ApiToken) -> Role {
    if token.scope == TokenScope::Admin && user.role == Role::Admin {
        Role::Admin
    } else {
        Role::User
    }
}
