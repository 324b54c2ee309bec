//! Idempotency records.

use uuid::Uuid;

use super::expect_kind;
use crate::model::*;
use crate::store::*;
use crate::testing::username;

pub fn check_idempotency(store: &dyn Store) {
    let alice = username("alice");
    let record = IdempotencyRecord {
        owner: alice.clone(),
        key: "retry-1".into(),
        request_hash: "abc".into(),
        operations: vec![Uuid::now_v7(), Uuid::now_v7()],
        created_at: now(),
    };
    assert_eq!(store.query(|tx| tx.get_idempotency(&alice, "retry-1")).unwrap(), None);
    store.transact(|tx| tx.insert_idempotency(&record)).unwrap();
    assert_eq!(store.query(|tx| tx.get_idempotency(&alice, "retry-1")).unwrap(), Some(record.clone()));
    expect_kind(store.transact(|tx| tx.insert_idempotency(&record)), "already-exists", "a key is used once per owner");
    let bobs = IdempotencyRecord { owner: username("bob"), ..record };
    store.transact(|tx| tx.insert_idempotency(&bobs)).expect("keys are per owner");
}
