//! Operations and their claims.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::{at, expect_kind, operation};
use crate::model::*;
use crate::store::*;
use crate::testing::username;

pub fn check_operations(store: &dyn Store) {
    let alice = username("alice");
    let web = Uuid::now_v7();
    let mut first = Operation::new(
        OperationKind::CreateVm,
        alice.clone(),
        ResourceRef { kind: ResourceKind::Vm, id: web, name: "web".into() },
        "alice",
        &["reserve address", "provision"],
    );
    store.transact(|tx| tx.insert_operation(&first)).unwrap();
    assert_eq!(store.operation(first.id).unwrap(), first);
    expect_kind(store.transact(|tx| tx.insert_operation(&first)), "already-exists", "operation ids are unique");
    first.start_step("provision");
    first.append_log(["line one".to_string(), "line \"two\"\n".to_string()]);
    store.transact(|tx| tx.update_operation(&first)).unwrap();
    assert_eq!(store.operation(first.id).unwrap(), first, "steps and log tail read back");

    let second = Operation::new(
        OperationKind::DeleteVm,
        username("bob"),
        ResourceRef { kind: ResourceKind::Vm, id: Uuid::now_v7(), name: "db".into() },
        "admin",
        &["destroy"],
    );
    store.transact(|tx| tx.insert_operation(&second)).unwrap();
    let unfinished = store
        .query(|tx| tx.list_operations(&OperationFilter { unfinished: true, ..OperationFilter::default() }))
        .unwrap();
    assert_eq!(unfinished.len(), 2);
    first.fail("backend failed");
    store.transact(|tx| tx.update_operation(&first)).unwrap();
    let unfinished = store
        .query(|tx| tx.list_operations(&OperationFilter { unfinished: true, ..OperationFilter::default() }))
        .unwrap();
    assert_eq!(unfinished, vec![second.clone()]);
    let of_web = store
        .query(|tx| tx.list_operations(&OperationFilter { resource: Some(web), ..OperationFilter::default() }))
        .unwrap();
    assert_eq!(of_web, vec![first.clone()]);
    let of_alice = store
        .query(|tx| tx.list_operations(&OperationFilter { owner: Some(alice.clone()), ..OperationFilter::default() }))
        .unwrap();
    assert_eq!(of_alice.len(), 1);
    let newest = |after: Option<Uuid>, limit: usize| {
        store
            .query(|tx| {
                tx.list_operations(&OperationFilter {
                    newest_first: true,
                    after,
                    limit: Some(limit),
                    ..OperationFilter::default()
                })
            })
            .unwrap()
            .into_iter()
            .map(|op| op.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(newest(None, 10), vec![second.id, first.id], "newest first");
    assert_eq!(newest(None, 1), vec![second.id]);
    assert_eq!(newest(Some(second.id), 10), vec![first.id], "the next page holds the older ones");
    assert_eq!(newest(Some(first.id), 10), Vec::<Uuid>::new());
    expect_kind(
        store.transact(|tx| {
            tx.update_operation(&Operation::new(
                OperationKind::StartVm,
                alice.clone(),
                first.resource.clone(),
                "x",
                &[],
            ))
        }),
        "not-found",
        "update of an unknown operation",
    );
}

/// Claims: fences grow, expired claims are taken over (and the old fence then fails), unexpired
/// claims are skipped, finished operations are never claimed, `only` and `limit`.
pub fn check_operation_claims(store: &dyn Store) {
    let alice = username("alice");
    let base = now();
    let first = operation(&alice, "first");
    let second = operation(&alice, "second");
    let mut done = operation(&alice, "done");
    done.succeed();
    let mut running = operation(&alice, "running");
    running.start_step("provision");
    store
        .transact(|tx| [&first, &second, &done, &running].into_iter().try_for_each(|op| tx.insert_operation(op)))
        .unwrap();

    assert_eq!(store.query(|tx| tx.operation_claim(first.id)).unwrap(), None, "never claimed");
    expect_kind(store.query(|tx| tx.check_operation_claim(first.id, 0)), "conflict", "a fence never handed out");
    expect_kind(store.query(|tx| tx.check_operation_claim(Uuid::now_v7(), 1)), "not-found", "an unknown operation");
    expect_kind(
        store.transact(|tx| tx.renew_operation_claim(Uuid::now_v7(), 1, at(base, 60))),
        "not-found",
        "renewing a claim on an unknown operation",
    );
    assert!(store.transact(|tx| tx.claim_operations("w1", at(base, 0), at(base, 30), None, 0)).unwrap().is_empty());

    let claimed = store.transact(|tx| tx.claim_operations("w1", at(base, 0), at(base, 30), None, 10)).unwrap();
    let ids: Vec<Uuid> = claimed.iter().map(|(op, _)| op.id).collect();
    assert_eq!(ids, [first.id, second.id, running.id], "unfinished operations, oldest first; finished never");
    assert_eq!(claimed[0].0, first, "the operation as stored");
    let claim = OperationClaim { worker: "w1".into(), fence: 1, expires_at: at(base, 30) };
    assert!(claimed.iter().all(|(_, c)| *c == claim), "first claims: w1, fence 1, until the given time");
    assert_eq!(store.query(|tx| tx.operation_claim(first.id)).unwrap(), Some(claim.clone()));
    store.query(|tx| tx.check_operation_claim(first.id, 1)).expect("the current fence holds");

    assert!(
        store.transact(|tx| tx.claim_operations("w2", at(base, 10), at(base, 40), None, 10)).unwrap().is_empty(),
        "unexpired claims are skipped"
    );
    assert!(
        store.transact(|tx| tx.claim_operations("w1", at(base, 10), at(base, 40), None, 10)).unwrap().is_empty(),
        "the holder's own unexpired claims too (it renews instead)"
    );
    store.transact(|tx| tx.renew_operation_claim(first.id, 1, at(base, 60))).unwrap();
    assert_eq!(store.query(|tx| tx.operation_claim(first.id)).unwrap().unwrap().expires_at, at(base, 60));

    // At 30 the claims of `second` and `running` expire (expires_at <= now); `first` was renewed.
    let taken = store.transact(|tx| tx.claim_operations("w2", at(base, 30), at(base, 90), None, 1)).unwrap();
    assert_eq!(taken.len(), 1, "limit");
    assert_eq!((taken[0].0.id, taken[0].1.fence), (second.id, 2), "an expired claim is taken over, fence + 1");
    let stale = "the claim on operation";
    for result in [
        store.query(|tx| tx.check_operation_claim(second.id, 1)),
        store.transact(|tx| tx.renew_operation_claim(second.id, 1, at(base, 120))),
    ] {
        let error = result.expect_err("the old fence lost the operation");
        assert_eq!(error.kind(), "conflict", "{error}");
        assert!(matches!(error, crate::Error::ClaimLost(_)), "a lost claim is told by its variant: {error:?}");
        assert!(error.to_string().contains(&format!("{stale} {} was taken over", second.id)), "{error}");
    }
    store.transact(|tx| tx.release_operation_claim(second.id, 1)).unwrap();
    assert_eq!(
        store.query(|tx| tx.operation_claim(second.id)).unwrap().unwrap().worker,
        "w2",
        "releasing with a stale fence is a no-op"
    );
    // `running` expired too, but nobody took it over: its holder may still check and renew.
    store.query(|tx| tx.check_operation_claim(running.id, 1)).expect("expired, not taken over");
    store.transact(|tx| tx.renew_operation_claim(running.id, 1, at(base, 90))).expect("renewed after expiry");

    // Release keeps the fence counter: the next claim gets a new fence, the old one never holds.
    store.transact(|tx| tx.release_operation_claim(second.id, 2)).unwrap();
    assert_eq!(store.query(|tx| tx.operation_claim(second.id)).unwrap(), None, "released");
    expect_kind(store.query(|tx| tx.check_operation_claim(second.id, 2)), "conflict", "a released fence");
    expect_kind(
        store.transact(|tx| tx.renew_operation_claim(second.id, 2, at(base, 120))),
        "conflict",
        "renewing a released claim",
    );
    store.transact(|tx| tx.release_operation_claim(second.id, 2)).expect("releasing twice is a no-op");

    // `only`: just that operation, when claimable.
    assert!(
        store
            .transact(|tx| tx.claim_operations("w3", at(base, 31), at(base, 100), Some(first.id), 10))
            .unwrap()
            .is_empty(),
        "`only` an operation held by an unexpired claim"
    );
    assert!(
        store
            .transact(|tx| tx.claim_operations("w3", at(base, 31), at(base, 100), Some(done.id), 10))
            .unwrap()
            .is_empty(),
        "`only` a finished operation"
    );
    assert!(store
        .transact(|tx| tx.claim_operations("w3", at(base, 31), at(base, 100), Some(Uuid::now_v7()), 10))
        .unwrap()
        .is_empty());
    let only =
        store.transact(|tx| tx.claim_operations("w3", at(base, 31), at(base, 100), Some(second.id), 10)).unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].1, OperationClaim { worker: "w3".into(), fence: 3, expires_at: at(base, 100) });

    // Updating an operation leaves its claim alone; a finished operation is never claimed again.
    let mut finished = only[0].0.clone();
    finished.succeed();
    store
        .transact(|tx| {
            tx.check_operation_claim(finished.id, 3)?;
            tx.update_operation(&finished)
        })
        .unwrap();
    assert_eq!(store.query(|tx| tx.operation_claim(second.id)).unwrap().unwrap().fence, 3);
    let late = store.transact(|tx| tx.claim_operations("w4", at(base, 1000), at(base, 1030), None, 10)).unwrap();
    let late: Vec<(Uuid, u64)> = late.iter().map(|(op, claim)| (op.id, claim.fence)).collect();
    assert_eq!(late, [(first.id, 2), (running.id, 2)], "long after every claim expired, only unfinished operations");
}

/// Workers claiming at once, on one store or on several sharing a database, never hold one
/// operation with overlapping unexpired claims, and every fence is handed out exactly once.
///
/// Each claim uses a time from a shared counter, so claims race for real but the outcome is
/// checked by rule, not by timing: for one operation, ordered by fence, the fences are
/// 1, 2, 3... and each claim starts no earlier than the previous one expired.
pub fn check_concurrent_claims(stores: &[Arc<dyn Store>]) {
    const OPERATIONS: usize = 12;
    const WORKERS: usize = 6;
    const ROUNDS: usize = 40;
    const LEASE_SECONDS: i64 = 3;
    let owner = username("alice");
    let operations: Vec<Operation> = (0..OPERATIONS).map(|n| operation(&owner, &format!("op-{n}"))).collect();
    stores[0].transact(|tx| operations.iter().try_for_each(|op| tx.insert_operation(op))).unwrap();
    let base = now();
    let clock = Arc::new(AtomicI64::new(0));
    let claims = Arc::new(Mutex::new(Vec::<(Uuid, OperationClaim, Timestamp)>::new()));
    let threads: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let store = stores[worker % stores.len()].clone();
            let (clock, claims) = (clock.clone(), claims.clone());
            std::thread::spawn(move || {
                let name = format!("worker-{worker}");
                for _ in 0..ROUNDS {
                    let now = at(base, clock.fetch_add(1, Ordering::SeqCst));
                    let until = now + chrono::Duration::seconds(LEASE_SECONDS);
                    let got = store.transact(|tx| tx.claim_operations(&name, now, until, None, 2)).expect("claim");
                    let mut claims = claims.lock().unwrap_or_else(|p| p.into_inner());
                    for (operation, claim) in got {
                        assert_eq!((claim.worker.as_str(), claim.expires_at), (name.as_str(), until));
                        claims.push((operation.id, claim, now));
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a claiming worker");
    }
    let claims = claims.lock().unwrap_or_else(|p| p.into_inner());
    assert!(!claims.is_empty(), "some claims were made");
    let mut by_operation: HashMap<Uuid, Vec<(OperationClaim, Timestamp)>> = HashMap::new();
    for (id, claim, claimed_at) in claims.iter() {
        by_operation.entry(*id).or_default().push((claim.clone(), *claimed_at));
    }
    for (id, mut history) in by_operation {
        history.sort_by_key(|(claim, _)| claim.fence);
        let fences: Vec<u64> = history.iter().map(|(claim, _)| claim.fence).collect();
        assert_eq!(fences, (1..=history.len() as u64).collect::<Vec<_>>(), "operation {id}: each fence once");
        for pair in history.windows(2) {
            let ((earlier, _), (later, later_at)) = (&pair[0], &pair[1]);
            assert!(
                *later_at >= earlier.expires_at,
                "operation {id}: fence {} claimed at {later_at} while fence {} held it until {}",
                later.fence,
                earlier.fence,
                earlier.expires_at
            );
        }
        let (last, _) = history.last().expect("one claim at least");
        let current = stores[0].query(|tx| tx.operation_claim(id)).unwrap();
        assert_eq!(current.as_ref(), Some(last), "operation {id}: the store holds the last claim");
        for store in stores {
            store.query(|tx| tx.check_operation_claim(id, last.fence)).expect("the last fence holds");
            if last.fence > 1 {
                expect_kind(store.query(|tx| tx.check_operation_claim(id, last.fence - 1)), "conflict", "an old fence");
            }
        }
    }
}
