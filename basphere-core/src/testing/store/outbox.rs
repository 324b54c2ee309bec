//! The outbox.

use std::net::Ipv4Addr;

use uuid::Uuid;

use super::{at, expect_kind};
use crate::model::*;
use crate::store::*;
use crate::testing::username;
use crate::validate::{Email, ResourceName};

pub fn check_outbox(store: &dyn Store) {
    // States are stored as their names.
    for state in OutboxState::ALL {
        assert_eq!(OutboxState::parse(state.as_str()).unwrap(), *state);
    }
    let error = OutboxState::parse("sent").unwrap_err().to_string();
    assert!(error.contains("\"sent\" is not one of: pending, delivered, dead"), "{error}");
    let fresh = OutboxMessage::new(NotificationEvent::KeyChangeRequested { username: username("alice") });
    assert_eq!(
        (fresh.state, fresh.attempts, fresh.last_error.clone(), fresh.delivered_at),
        (OutboxState::Pending, 0, None, None)
    );
    assert_eq!(fresh.next_attempt_at, fresh.created_at, "a new message is due at once");

    let base = now();
    let alice = username("alice");
    let message = |event: NotificationEvent, due: i64| OutboxMessage {
        next_attempt_at: at(base, due),
        ..OutboxMessage::new(event)
    };
    let web = ResourceName::parse("web").unwrap();
    let first = message(
        NotificationEvent::VmReady { owner: alice.clone(), name: web.clone(), ip: Some(Ipv4Addr::new(10, 254, 0, 33)) },
        2,
    );
    let second = message(
        NotificationEvent::RegistrationRejected {
            username: username("dave"),
            email: Email::parse("dave@example.com").unwrap(),
            reason: "unknown \"team\"\n'quoted'".into(),
        },
        1,
    );
    let mut third = message(
        NotificationEvent::QuotaNearlyUsed { owner: alice.clone(), resource: "vms".into(), used: 9, limit: 10 },
        5,
    );
    // One message per notifier channel: the channel reads back with the rest.
    third.channel = "email".into();
    let mut dead =
        message(NotificationEvent::VmFailed { owner: alice.clone(), name: web.clone(), reason: "no space".into() }, 0);
    dead.state = OutboxState::Dead;
    dead.attempts = 8;
    dead.last_error = Some("webhook answered 500".into());
    let mut delivered = message(NotificationEvent::ClusterReady { owner: alice.clone(), name: web.clone() }, 0);
    delivered.state = OutboxState::Delivered;
    delivered.attempts = 1;
    delivered.delivered_at = Some(at(base, 0));
    let all = [&first, &second, &third, &dead, &delivered];
    store.transact(|tx| all.into_iter().try_for_each(|m| tx.insert_outbox(m))).unwrap();

    assert_eq!(store.query(|tx| tx.get_outbox(first.id)).unwrap(), Some(first.clone()), "reads back exactly");
    assert_eq!(store.query(|tx| tx.get_outbox(Uuid::now_v7())).unwrap(), None);
    assert_eq!(
        store.query(|tx| tx.list_outbox(&OutboxFilter::default())).unwrap(),
        all.iter().map(|m| (*m).clone()).collect::<Vec<_>>(),
        "every message, ordered by id, events and errors read back exactly"
    );
    let pending = store
        .query(|tx| tx.list_outbox(&OutboxFilter { state: Some(OutboxState::Pending), ..OutboxFilter::default() }))
        .unwrap();
    assert_eq!(pending.iter().map(|m| m.id).collect::<Vec<_>>(), [first.id, second.id, third.id]);
    let page = store
        .query(|tx| tx.list_outbox(&OutboxFilter { after: Some(first.id), limit: Some(2), ..OutboxFilter::default() }))
        .unwrap();
    assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), [second.id, third.id], "after and limit");
    expect_kind(store.transact(|tx| tx.insert_outbox(&first)), "already-exists", "outbox ids are unique");

    // Due at 3: second (due at 1) then first (due at 2); third is not due, dead and delivered never.
    let claimed = store.transact(|tx| tx.claim_outbox("w/1", at(base, 3), at(base, 60), 10)).unwrap();
    assert_eq!(claimed.iter().map(|m| m.id).collect::<Vec<_>>(), [second.id, first.id], "the longest due first");
    assert!(claimed.iter().all(|m| m.next_attempt_at == at(base, 60) && m.state == OutboxState::Pending));
    assert_eq!(
        claimed[1],
        OutboxMessage { next_attempt_at: at(base, 60), claimed_by: Some("w/1".into()), ..first.clone() },
        "only the due time and the holder changed"
    );
    assert_eq!(store.query(|tx| tx.get_outbox(first.id)).unwrap().as_ref(), Some(&claimed[1]), "as stored");
    assert!(
        store.transact(|tx| tx.claim_outbox("w/1", at(base, 3), at(base, 60), 10)).unwrap().is_empty(),
        "a claimed message is not due again before its new time"
    );
    let later = store.transact(|tx| tx.claim_outbox("w/1", at(base, 5), at(base, 65), 10)).unwrap();
    assert_eq!(later.iter().map(|m| m.id).collect::<Vec<_>>(), [third.id], "due exactly at its time");
    // At 60 first and second are due again (a dispatcher died holding them), one at a time.
    let again = store.transact(|tx| tx.claim_outbox("w/1", at(base, 60), at(base, 120), 1)).unwrap();
    assert_eq!(again.iter().map(|m| m.id).collect::<Vec<_>>(), [first.id], "limit; equal times by id");
    assert!(store.transact(|tx| tx.claim_outbox("w/1", at(base, 60), at(base, 120), 0)).unwrap().is_empty(), "limit 0");

    let mut done = again[0].clone();
    done.state = OutboxState::Delivered;
    done.attempts += 1;
    done.delivered_at = Some(at(base, 61));
    let mut failed = store.query(|tx| tx.get_outbox(second.id)).unwrap().unwrap();
    failed.attempts += 1;
    failed.last_error = Some("connection refused".into());
    failed.state = OutboxState::Dead;
    store
        .transact(|tx| {
            tx.update_outbox(&done)?;
            tx.update_outbox(&failed)
        })
        .unwrap();
    assert_eq!(store.query(|tx| tx.get_outbox(done.id)).unwrap(), Some(done.clone()));
    assert_eq!(store.query(|tx| tx.get_outbox(failed.id)).unwrap(), Some(failed.clone()));
    let remaining = store.transact(|tx| tx.claim_outbox("w/1", at(base, 10_000), at(base, 10_060), 10)).unwrap();
    assert_eq!(
        remaining.iter().map(|m| m.id).collect::<Vec<_>>(),
        [third.id],
        "delivered and dead messages are never claimed, however late"
    );
    expect_kind(
        store.transact(|tx| {
            tx.update_outbox(&OutboxMessage::new(NotificationEvent::KeyChangeRequested { username: alice.clone() }))
        }),
        "not-found",
        "update of an unknown message",
    );
}
