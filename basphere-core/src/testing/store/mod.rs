//! The `Store` conformance suite, one group of checks per aggregate (as the store traits are
//! cut), plus what spans them: rollback and concurrent writers.

mod accounts;
mod audit;
mod clusters;
mod duties;
mod idempotency;
mod ipam;
mod networks;
mod operations;
mod outbox;
mod tokens;
mod vms;
mod web_sessions;

pub use accounts::{check_quota_and_usage, check_requests, check_users};
pub use audit::check_audit;
pub use clusters::check_clusters;
pub use duties::check_duties;
pub use idempotency::check_idempotency;
pub use ipam::{check_blocks_and_leases, check_lease_scopes};
pub use networks::{check_concurrent_networks, check_networks, network};
pub use operations::{check_concurrent_claims, check_operation_claims, check_operations};
pub use outbox::check_outbox;
pub use tokens::check_tokens;
pub use vms::check_vms;
pub use web_sessions::check_web_sessions;

use std::net::Ipv4Addr;
use std::sync::Arc;

use uuid::Uuid;

use super::user;
use crate::error::Error;
use crate::model::*;
use crate::store::*;
use crate::validate::{ResourceName, Username};

/// Runs every check against a fresh, empty store.
pub fn check_all(make: &dyn Fn() -> Arc<dyn Store>) {
    check_users(&*make());
    check_requests(&*make());
    check_quota_and_usage(&*make());
    check_tokens(&*make());
    check_web_sessions(&*make());
    check_vms(&*make());
    check_clusters(&*make());
    check_networks(&*make());
    check_blocks_and_leases(&*make());
    check_lease_scopes(&*make());
    check_operations(&*make());
    check_operation_claims(&*make());
    check_audit(&*make());
    check_outbox(&*make());
    check_idempotency(&*make());
    check_duties(&*make());
    check_rollback(&*make());
    check_concurrent_writers(make());
    check_concurrent_networks(make());
    check_concurrent_claims(&[make()]);
}

fn expect_kind<T: std::fmt::Debug>(result: crate::Result<T>, kind: &str, what: &str) {
    match result {
        Err(error) => assert_eq!(error.kind(), kind, "{what}: {error}"),
        Ok(value) => panic!("{what}: expected a {kind} error, got {value:?}"),
    }
}

/// `base` plus `seconds`: the checks pass times explicitly, as the platform does.
fn at(base: Timestamp, seconds: i64) -> Timestamp {
    base + chrono::Duration::seconds(seconds)
}

/// Two accounts, `alice` and `bob`, recorded in `store`: where most suites start.
pub fn alice_and_bob(store: &dyn Store) -> (User, User) {
    let (alice, bob) = (user("alice", 1), user("bob", 2));
    store
        .transact(|tx| {
            tx.insert_user(&alice)?;
            tx.insert_user(&bob)
        })
        .unwrap();
    (alice, bob)
}

pub fn vm(owner: &Username, name: &str) -> Vm {
    let at = now();
    Vm {
        id: Uuid::now_v7(),
        owner: owner.clone(),
        name: ResourceName::parse(name).expect("valid"),
        os: "ubuntu-24.04".into(),
        spec: "small".into(),
        cpu: 2,
        memory_mb: 8192,
        disk_gb: 50,
        ip: None,
        state: VmState::Pending,
        reason: None,
        backend_id: None,
        created_at: at,
        updated_at: at,
    }
}

/// A queued operation creating VM `name` of `owner`.
pub fn operation(owner: &Username, name: &str) -> Operation {
    Operation::new(
        OperationKind::CreateVm,
        owner.clone(),
        ResourceRef { kind: ResourceKind::Vm, id: Uuid::now_v7(), name: name.into() },
        owner.as_str(),
        &["reserve address", "provision"],
    )
}

fn block(owner: &Username, start: [u8; 4], size: u32) -> IpBlock {
    IpBlock { pool: "default".into(), start: Ipv4Addr::from(start), size, owner: owner.clone(), allocated_at: now() }
}

fn lease(owner: &Username, address: [u8; 4], resource: Uuid) -> Lease {
    Lease {
        address: Ipv4Addr::from(address),
        network: None,
        pool: "default".into(),
        owner: owner.clone(),
        resource: ResourceRef { kind: ResourceKind::Vm, id: resource, name: "web".into() },
        state: LeaseState::Reserved,
        created_at: now(),
    }
}

/// A failed transaction leaves nothing behind, whatever it wrote before failing.
pub fn check_rollback(store: &dyn Store) {
    let alice = user("alice", 1);
    store.transact(|tx| tx.insert_user(&alice)).unwrap();
    let owner = alice.username.clone();
    let base = now();
    let queued = operation(&owner, "queued");
    let outboxed = OutboxMessage::new(NotificationEvent::KeyChangeRequested { username: owner.clone() });
    store
        .transact(|tx| {
            tx.insert_operation(&queued)?;
            tx.insert_outbox(&outboxed)
        })
        .unwrap();
    let before = snapshot(store, &owner);
    let record = vm(&owner, "web");
    let result: crate::Result<()> = store.transact(|tx| {
        tx.insert_block(&block(&owner, [10, 254, 0, 32], 32))?;
        tx.insert_lease(&lease(&owner, [10, 254, 0, 33], record.id))?;
        tx.insert_vm(&record)?;
        let mut changed = alice.clone();
        changed.team = "changed".into();
        tx.update_user(&changed)?;
        tx.set_quota_override(&owner, Some(&QuotaOverride { max_vms: Some(1), ..QuotaOverride::default() }))?;
        tx.append_audit(&AuditEvent::new(
            "alice",
            "vm.create",
            "vm/alice/web",
            "test",
            Outcome::Success,
            serde_json::Value::Null,
        ))?;
        tx.insert_operation(&Operation::new(
            OperationKind::CreateVm,
            owner.clone(),
            ResourceRef { kind: ResourceKind::Vm, id: record.id, name: "web".into() },
            "alice",
            &[],
        ))?;
        tx.claim_operations("worker-1", at(base, 0), at(base, 30), Some(queued.id), 1)?;
        tx.insert_outbox(&OutboxMessage::new(NotificationEvent::KeyChangeRequested { username: owner.clone() }))?;
        assert_eq!(tx.claim_outbox("w/1", at(base, 10), at(base, 30), 10)?.len(), 2, "both messages are due at 10");
        tx.claim_duty("reconcile", "replica-1", at(base, 0), at(base, 30))?;
        Err(Error::Conflict("abandon".into()))
    });
    expect_kind(result, "conflict", "the closure's own error is returned");
    assert_eq!(snapshot(store, &owner), before, "nothing of a failed transaction remains");
    assert_eq!(store.query(|tx| tx.operation_claim(queued.id)).unwrap(), None, "a rolled back claim");
    let fence = store.transact(|tx| tx.claim_operations("worker-2", at(base, 0), at(base, 30), None, 1)).unwrap();
    assert_eq!(fence[0].1.fence, 1, "a rolled back claim used no fence");
    assert!(
        store.transact(|tx| tx.claim_duty("reconcile", "replica-2", at(base, 0), at(base, 30))).unwrap(),
        "a rolled back duty claim leaves the duty free"
    );
    let pending = store.query(|tx| tx.list_outbox(&OutboxFilter::default())).unwrap();
    assert_eq!(pending, vec![outboxed.clone()], "a rolled back outbox claim leaves the message due");

    // A constraint violation half-way also rolls back the earlier writes.
    let result = store.transact(|tx| {
        tx.insert_vm(&vm(&owner, "one"))?;
        tx.insert_vm(&vm(&owner, "one"))
    });
    expect_kind(result, "already-exists", "duplicate inside one transaction");
    assert!(store.query(|tx| tx.list_vms(&VmFilter::default())).unwrap().is_empty());
}

type Snapshot = (Vec<User>, Vec<Vm>, Vec<IpBlock>, Vec<Lease>, Option<QuotaOverride>, usize, usize, Vec<OutboxMessage>);

fn snapshot(store: &dyn Store, owner: &Username) -> Snapshot {
    store
        .query(|tx| {
            Ok((
                tx.list_users()?,
                tx.list_vms(&VmFilter { include_deleted: true, ..VmFilter::default() })?,
                tx.list_blocks(None)?,
                tx.list_leases(None)?,
                tx.quota_override(owner)?,
                tx.list_audit(&AuditFilter::default())?.len(),
                tx.list_operations(&OperationFilter::default())?.len(),
                tx.list_outbox(&OutboxFilter::default())?,
            ))
        })
        .unwrap()
}

/// Writers are serialised: read-check-write inside one transaction never loses an update.
pub fn check_concurrent_writers(store: Arc<dyn Store>) {
    let alice = user("alice", 1);
    store.transact(|tx| tx.insert_user(&alice)).unwrap();
    let owner = alice.username.clone();
    let limit = 10;
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let (store, owner) = (store.clone(), owner.clone());
            std::thread::spawn(move || {
                let mut created = 0;
                for index in 0..5 {
                    let record = vm(&owner, &format!("t{thread}-{index}"));
                    let result = store.transact(|tx| {
                        if tx.usage(&owner)?.vms >= limit {
                            return Err(Error::QuotaExceeded {
                                resource: "vms",
                                used: limit,
                                requested: limit + 1,
                                limit,
                            });
                        }
                        tx.insert_vm(&record)
                    });
                    match result {
                        Ok(()) => created += 1,
                        Err(Error::QuotaExceeded { .. }) => {}
                        Err(other) => panic!("unexpected {other}"),
                    }
                }
                created
            })
        })
        .collect();
    let created: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert_eq!(created, limit, "exactly the limit was created");
    assert_eq!(store.query(|tx| tx.usage(&owner)).unwrap().vms, limit);
}
