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
    expect_kind(store.transact(|tx| tx.append_audit(&events[0])), "already-exists", "audit ids are unique");
}
