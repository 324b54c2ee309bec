//! The audit log.

use super::expect_kind;
use crate::model::*;
use crate::store::*;

pub fn check_audit(store: &dyn Store) {
    let events: Vec<AuditEvent> = (0..5)
        .map(|index| {
            AuditEvent::new(
                if index % 2 == 0 { "alice" } else { "bob" },
                "vm.create",
                &format!("vm/alice/web-{index}"),
                "unix:uid=1001",
                Outcome::Success,
                serde_json::json!({"index": index, "quote": "\"'"}),
            )
        })
        .collect();
    store.transact(|tx| events.iter().try_for_each(|event| tx.append_audit(event))).unwrap();
    assert_eq!(store.query(|tx| tx.list_audit(&AuditFilter::default())).unwrap(), events);
    let by_alice = store
        .query(|tx| tx.list_audit(&AuditFilter { actor: Some("alice".into()), ..AuditFilter::default() }))
        .unwrap();
    assert_eq!(by_alice.len(), 3);
    let after = store
        .query(|tx| tx.list_audit(&AuditFilter { after: Some(events[2].id), limit: Some(1), ..AuditFilter::default() }))
        .unwrap();
    assert_eq!(after, vec![events[3].clone()]);
    let newest = store
        .query(|tx| tx.list_audit(&AuditFilter { newest_first: true, limit: Some(2), ..AuditFilter::default() }))
        .unwrap();
    assert_eq!(newest, vec![events[4].clone(), events[3].clone()], "newest first");
    let older = store
        .query(|tx| {
            tx.list_audit(&AuditFilter {
                newest_first: true,
                actor: Some("alice".into()),
                after: Some(events[4].id),
                ..AuditFilter::default()
            })
        })
        .unwrap();
    assert_eq!(older, vec![events[2].clone(), events[0].clone()], "older than the cursor, one actor's");
    let other = AuditEvent::new(
        "alice",
        "vm.delete",
        "vm/alice/web-0",
        "unix:uid=1001",
        Outcome::Success,
        serde_json::json!({}),
    );
    store.transact(|tx| tx.append_audit(&other)).unwrap();
    let deletes = store
        .query(|tx| tx.list_audit(&AuditFilter { action: Some("vm.delete".into()), ..AuditFilter::default() }))
        .unwrap();
    assert_eq!(deletes, vec![other.clone()]);
    expect_kind(store.transact(|tx| tx.append_audit(&events[0])), "already-exists", "audit ids are unique");
}
