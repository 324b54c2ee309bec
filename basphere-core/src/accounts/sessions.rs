//! Browsers signing in: single-use sign-in links made for a caller the server already
//! identified (`basphere web` on the bastion, identified by the socket), sessions made from a link
//! or a pasted API token, and each request's session turned into an `Actor`.
//!
//! A session is checked against the store on every request: its account must still be active,
//! and it never carries more rights than its account has now. A suspension ends the account's
//! sessions in the transaction that suspends it.

use chrono::Duration;
use serde_json::json;
use uuid::Uuid;

use super::Credentials;
use crate::error::{Error, Result};
use crate::model::*;
use crate::runtime::authz::Actor;
use crate::store::StoreExt;
use crate::validate::Username;

/// How long a sign-in link may wait to be used.
pub const SIGN_IN_LINK_MINUTES: i64 = 5;

/// Activity is recorded at most this often, so most requests are reads only.
const TOUCH_EVERY_SECONDS: i64 = 60;

/// A link or session as created: the record, and the secret that only the browser keeps.
#[derive(Clone)]
pub struct NewWebSession {
    pub session: WebSession,
    pub secret: String,
}

impl std::fmt::Debug for NewWebSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewWebSession").field("session", &self.session).field("secret", &"<redacted>").finish()
    }
}

fn new_secret(prefix: &str) -> String {
    format!("{prefix}{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// What every failed sign-in or session check answers: nothing about which part was wrong.
fn signed_out(what: &str) -> Error {
    Error::Unauthorized(what.to_owned())
}

impl Credentials {
    fn idle(&self) -> Duration {
        Duration::minutes(self.rt.config.web.session_idle_minutes as i64)
    }

    fn session_for(&self, kind: WebSessionKind, owner: Option<Username>, name: &str, role: Role) -> NewWebSession {
        let at = now();
        let (prefix, expires_at) = match kind {
            WebSessionKind::Link => ("bsl_", at + Duration::minutes(SIGN_IN_LINK_MINUTES)),
            WebSessionKind::Session => ("bss_", at + Duration::hours(self.rt.config.web.session_max_hours as i64)),
        };
        let secret = new_secret(prefix);
        NewWebSession {
            session: WebSession {
                id: Uuid::now_v7(),
                kind,
                owner,
                actor_name: name.to_owned(),
                role,
                secret_hash: ApiToken::hash_secret(&secret),
                created_at: at,
                expires_at,
                last_seen_at: at,
                ended_at: None,
                token_id: None,
            },
            secret,
        }
    }

    /// A single-use link that signs a browser in as `actor`, valid for
    /// [`SIGN_IN_LINK_MINUTES`]. The actor must be a person: an account or the system
    /// administrator.
    pub async fn create_sign_in_link(&self, actor: &Actor) -> Result<NewWebSession> {
        if actor.account.is_none() && actor.name == Actor::system().name {
            return Err(Error::Forbidden("the platform's own work cannot sign in to the web pages".into()));
        }
        let link = self.session_for(WebSessionKind::Link, actor.account.clone(), &actor.name, actor.role);
        let (saved, actor) = (link.session.clone(), actor.clone());
        self.rt
            .db(move |store, _| {
                store.transact(|tx| {
                    tx.insert_web_session(&saved)?;
                    tx.append_audit(&AuditEvent::new(
                        &actor.name,
                        "web.link",
                        &format!("web-session/{}", saved.id),
                        &actor.source,
                        Outcome::Success,
                        json!({"role": saved.role, "expires_at": saved.expires_at}),
                    ))
                })
            })
            .await?;
        Ok(link)
    }

    /// Whom a sign-in link would sign in, if it still can (without using it): the page a link
    /// opens says so before anyone clicks, so nobody is signed in as someone else unawares.
    pub async fn sign_in_link_holder(&self, link_secret: &str) -> Result<Option<String>> {
        let hash = ApiToken::hash_secret(link_secret);
        let idle = self.idle();
        let link = self.rt.read(move |store| store.query(|tx| tx.web_session_by_hash(&hash))).await?;
        Ok(link
            .filter(|link| link.kind == WebSessionKind::Link && link.is_valid_at(now(), idle))
            .map(|link| link.actor_name))
    }

    /// Uses a sign-in link: it ends, and a session for the same person starts, in one
    /// transaction, so a link signs in one browser at most.
    pub async fn sign_in_with_link(&self, link_secret: &str, source: &str) -> Result<NewWebSession> {
        let hash = ApiToken::hash_secret(link_secret);
        let idle = self.idle();
        let source = source.to_owned();
        // The session's secret and times; who it is for comes from the link.
        let NewWebSession { session: fresh, secret } = self.session_for(WebSessionKind::Session, None, "", Role::User);
        let session = self
            .rt
            .db(move |store, _| {
                store.transact(|tx| {
                    let at = fresh.created_at;
                    let refused = || {
                        signed_out(
                            "this sign-in link was used already, has expired or is not one; run `basphere web` again",
                        )
                    };
                    let mut link = tx.web_session_by_hash(&hash)?.ok_or_else(refused)?;
                    if link.kind != WebSessionKind::Link || !link.is_valid_at(at, idle) {
                        return Err(refused());
                    }
                    if let Some(owner) = &link.owner {
                        let user = tx.get_user(owner)?.ok_or_else(refused)?;
                        if user.status != UserStatus::Active {
                            return Err(refused());
                        }
                    }
                    link.ended_at = Some(at);
                    tx.update_web_session(&link)?;
                    let session = WebSession {
                        owner: link.owner.clone(),
                        actor_name: link.actor_name.clone(),
                        role: link.role,
                        ..fresh.clone()
                    };
                    tx.insert_web_session(&session)?;
                    tx.append_audit(&AuditEvent::new(
                        &session.actor_name,
                        "web.sign-in",
                        &format!("web-session/{}", session.id),
                        &source,
                        Outcome::Success,
                        json!({"with": "link", "link": link.id, "role": session.role}),
                    ))?;
                    Ok(session)
                })
            })
            .await?;
        Ok(NewWebSession { session, secret })
    }

    /// Signs a browser in with an API token: a session with the token's rights (an admin-scoped
    /// token of an admin account, or user rights), which lasts no longer than the token: it ends
    /// when the token is revoked or expires.
    pub async fn sign_in_with_token(&self, token_secret: &str, source: &str) -> Result<NewWebSession> {
        let (user, token) = self.authenticate_token(token_secret.trim()).await.map_err(|_| {
            signed_out("the token is unknown, revoked or expired; paste a token `basphere token create` printed")
        })?;
        let role = super::tokens::token_role(&user, &token);
        let mut new =
            self.session_for(WebSessionKind::Session, Some(user.username.clone()), user.username.as_str(), role);
        new.session.token_id = Some(token.id);
        if let Some(token_expiry) = token.expires_at {
            new.session.expires_at = new.session.expires_at.min(token_expiry);
        }
        let (saved, source) = (new.session.clone(), source.to_owned());
        self.rt
            .db(move |store, _| {
                store.transact(|tx| {
                    tx.insert_web_session(&saved)?;
                    tx.append_audit(&AuditEvent::new(
                        &saved.actor_name,
                        "web.sign-in",
                        &format!("web-session/{}", saved.id),
                        &source,
                        Outcome::Success,
                        json!({"with": "token", "role": saved.role}),
                    ))
                })
            })
            .await?;
        Ok(new)
    }

    /// The caller behind a browser's session secret. The account must be active now, and the
    /// rights are the lesser of the session's and the account's.
    pub async fn identify_web_session(&self, secret: &str, source: &str) -> Result<Actor> {
        let hash = ApiToken::hash_secret(secret);
        let idle = self.idle();
        let found = self
            .rt
            .db(move |store, _| {
                store.query(|tx| {
                    let Some(session) = tx.web_session_by_hash(&hash)? else {
                        return Ok(None);
                    };
                    let user = match &session.owner {
                        Some(owner) => Some(tx.get_user(owner)?),
                        None => None,
                    };
                    // A session signed in with a token is over when the token is.
                    let token_valid = match session.token_id {
                        Some(id) => tx.get_token(id)?.is_some_and(|token| token.is_valid_at(now())),
                        None => true,
                    };
                    Ok(Some((session, user, token_valid)))
                })
            })
            .await?;
        let at = now();
        let expired = || signed_out("your session has ended; sign in again");
        let (session, user, token_valid) = found.ok_or_else(expired)?;
        if session.kind != WebSessionKind::Session || !session.is_valid_at(at, idle) || !token_valid {
            return Err(expired());
        }
        let actor = match user {
            None => Actor::admin(&session.actor_name, source),
            Some(None) => return Err(expired()),
            Some(Some(user)) if user.status != UserStatus::Active => return Err(expired()),
            Some(Some(user)) => {
                let role =
                    if session.role == Role::Admin && user.role == Role::Admin { Role::Admin } else { Role::User };
                Actor::of_account(&user.username, role, source)
            }
        };
        if at - session.last_seen_at >= Duration::seconds(TOUCH_EVERY_SECONDS) {
            let id = session.id;
            self.rt
                .db(move |store, _| {
                    store.transact(|tx| {
                        let Some(mut current) = tx.web_session_by_hash(&session.secret_hash)? else {
                            return Ok(());
                        };
                        if current.id == id && current.ended_at.is_none() {
                            current.last_seen_at = at;
                            tx.update_web_session(&current)?;
                        }
                        Ok(())
                    })
                })
                .await?;
        }
        Ok(actor)
    }

    /// Ends a browser's session (signing out). Unknown or ended sessions are fine: signing out
    /// twice is not an error.
    pub async fn sign_out(&self, secret: &str, source: &str) -> Result<()> {
        let hash = ApiToken::hash_secret(secret);
        let source = source.to_owned();
        self.rt
            .db(move |store, _| {
                store.transact(|tx| {
                    let Some(mut session) = tx.web_session_by_hash(&hash)? else {
                        return Ok(());
                    };
                    if session.kind != WebSessionKind::Session || session.ended_at.is_some() {
                        return Ok(());
                    }
                    session.ended_at = Some(now());
                    tx.update_web_session(&session)?;
                    tx.append_audit(&AuditEvent::new(
                        &session.actor_name,
                        "web.sign-out",
                        &format!("web-session/{}", session.id),
                        &source,
                        Outcome::Success,
                        json!({}),
                    ))
                })
            })
            .await
    }

    /// Removes links and sessions that ended or expired a day ago or more (the sweeper's).
    pub async fn forget_old_web_sessions(&self) -> Result<usize> {
        self.rt.db(move |store, _| store.transact(|tx| tx.delete_web_sessions_before(now() - Duration::days(1)))).await
    }
}
