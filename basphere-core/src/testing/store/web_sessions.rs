//! Browsers' sign-in links and sessions.

use uuid::Uuid;

use super::{alice_and_bob, expect_kind};
use crate::model::*;
use crate::store::*;
use crate::testing::username;

fn session(owner: Option<&str>, kind: WebSessionKind, secret: &str) -> WebSession {
    let at = now();
    WebSession {
        id: Uuid::now_v7(),
        kind,
        owner: owner.map(username),
        actor_name: owner.unwrap_or("root").to_owned(),
        role: if owner.is_some() { Role::User } else { Role::Admin },
        secret_hash: ApiToken::hash_secret(secret),
        created_at: at,
        expires_at: at + chrono::Duration::hours(12),
        last_seen_at: at,
        ended_at: None,
        token_id: None,
    }
}

pub fn check_web_sessions(store: &dyn Store) {
    let (alice, bob) = alice_and_bob(store);
    let link = session(Some("alice"), WebSessionKind::Link, "link-1");
    let own = session(Some("alice"), WebSessionKind::Session, "session-1");
    // Signed in with an API token: the token's id is kept with the session.
    let other =
        WebSession { token_id: Some(Uuid::now_v7()), ..session(Some("bob"), WebSessionKind::Session, "session-2") };
    let root = session(None, WebSessionKind::Session, "session-3");
    store
        .transact(|tx| {
            for s in [&link, &own, &other, &root] {
                tx.insert_web_session(s)?;
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(store.query(|tx| tx.web_session_by_hash(&own.secret_hash)).unwrap().unwrap(), own);
    assert_eq!(store.query(|tx| tx.web_session_by_hash(&root.secret_hash)).unwrap().unwrap(), root);
    assert_eq!(store.query(|tx| tx.web_session_by_hash(&other.secret_hash)).unwrap().unwrap(), other);
    assert!(store.query(|tx| tx.web_session_by_hash(&ApiToken::hash_secret("nope"))).unwrap().is_none());

    let mut duplicate = own.clone();
    duplicate.id = Uuid::now_v7();
    expect_kind(store.transact(|tx| tx.insert_web_session(&duplicate)), "already-exists", "a duplicate secret hash");
    let orphan = session(Some("ghost"), WebSessionKind::Session, "session-4");
    expect_kind(store.transact(|tx| tx.insert_web_session(&orphan)), "not-found", "a session of an unknown user");
    let unknown = session(Some("alice"), WebSessionKind::Session, "session-5");
    expect_kind(store.transact(|tx| tx.update_web_session(&unknown)), "not-found", "updating an unknown session");

    let mut seen = own.clone();
    seen.last_seen_at = now() + chrono::Duration::minutes(3);
    store.transact(|tx| tx.update_web_session(&seen)).unwrap();
    assert_eq!(store.query(|tx| tx.web_session_by_hash(&own.secret_hash)).unwrap().unwrap(), seen);

    // Suspension ends everything of one account, and nothing of anyone else's.
    let at = now();
    assert_eq!(store.transact(|tx| tx.end_web_sessions_of(&alice.username, at)).unwrap(), 2);
    assert_eq!(store.transact(|tx| tx.end_web_sessions_of(&alice.username, at)).unwrap(), 0, "already ended");
    for s in [&link, &own] {
        assert_eq!(store.query(|tx| tx.web_session_by_hash(&s.secret_hash)).unwrap().unwrap().ended_at, Some(at));
    }
    for s in [&other, &root] {
        assert_eq!(store.query(|tx| tx.web_session_by_hash(&s.secret_hash)).unwrap().unwrap().ended_at, None);
    }

    // Clean-up removes what ended or expired before the cut, nothing else.
    let mut expired = session(None, WebSessionKind::Link, "link-2");
    expired.expires_at = at - chrono::Duration::minutes(1);
    store.transact(|tx| tx.insert_web_session(&expired)).unwrap();
    let removed = store.transact(|tx| tx.delete_web_sessions_before(at + chrono::Duration::seconds(1))).unwrap();
    assert_eq!(removed, 3, "alice's two ended ones and the expired link");
    assert!(store.query(|tx| tx.web_session_by_hash(&expired.secret_hash)).unwrap().is_none());
    assert!(store.query(|tx| tx.web_session_by_hash(&other.secret_hash)).unwrap().is_some());

    // Sessions go with their account; a rolled-back insert leaves nothing.
    store.transact(|tx| tx.delete_user(&bob.username)).unwrap();
    assert!(store.query(|tx| tx.web_session_by_hash(&other.secret_hash)).unwrap().is_none());
    let fresh = session(Some("alice"), WebSessionKind::Session, "session-6");
    let failed: crate::Result<()> = store.transact(|tx| {
        tx.insert_web_session(&fresh)?;
        Err(crate::Error::Conflict("roll back".into()))
    });
    assert!(failed.is_err());
    assert!(store.query(|tx| tx.web_session_by_hash(&fresh.secret_hash)).unwrap().is_none());
}
