//! API tokens.

use uuid::Uuid;

use super::expect_kind;
use crate::model::*;
use crate::store::*;
use crate::testing::{user, username};

pub fn check_tokens(store: &dyn Store) {
    let alice = user("alice", 1);
    store.transact(|tx| tx.insert_user(&alice)).unwrap();
    let token = ApiToken {
        id: Uuid::now_v7(),
        owner: alice.username.clone(),
        name: "laptop".into(),
        scope: TokenScope::User,
        secret_hash: ApiToken::hash_secret("bsp_one"),
        created_at: now(),
        expires_at: Some(now() + chrono::Duration::days(30)),
        revoked_at: None,
        last_used_at: None,
    };
    store.transact(|tx| tx.insert_token(&token)).unwrap();
    assert_eq!(store.query(|tx| tx.token_by_hash(&token.secret_hash)).unwrap().unwrap(), token);
    let mut duplicate = token.clone();
    duplicate.id = Uuid::now_v7();
    expect_kind(store.transact(|tx| tx.insert_token(&duplicate)), "already-exists", "a duplicate secret hash");
    let mut orphan = token.clone();
    orphan.id = Uuid::now_v7();
    orphan.owner = username("ghost");
    orphan.secret_hash = ApiToken::hash_secret("bsp_two");
    expect_kind(store.transact(|tx| tx.insert_token(&orphan)), "not-found", "a token of an unknown user");

    let mut revoked = token.clone();
    revoked.revoked_at = Some(now());
    store.transact(|tx| tx.update_token(&revoked)).unwrap();
    assert_eq!(store.query(|tx| tx.get_token(token.id)).unwrap().unwrap(), revoked);
    assert_eq!(store.query(|tx| tx.list_tokens(&alice.username)).unwrap().len(), 1);

    store.transact(|tx| tx.delete_user(&alice.username)).unwrap();
    assert!(store.query(|tx| tx.get_token(token.id)).unwrap().is_none(), "tokens go with their account");
}
