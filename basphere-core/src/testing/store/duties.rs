//! Duties: named singleton leases.

use super::at;
use crate::model::*;
use crate::store::*;

pub fn check_duties(store: &dyn Store) {
    let base = now();
    let claim = |holder: &str, now: i64, until: i64| {
        store.transact(|tx| tx.claim_duty("reconcile", holder, at(base, now), at(base, until))).unwrap()
    };
    assert!(claim("a", 0, 30), "a free duty is taken");
    assert!(!claim("b", 10, 40), "refused while held");
    assert!(claim("a", 20, 50), "renewed by its holder");
    assert!(!claim("b", 30, 60), "the renewal counts: still held at 30");
    assert!(
        store.transact(|tx| tx.claim_duty("outbox", "b", at(base, 30), at(base, 60))).unwrap(),
        "duties are independent"
    );
    assert!(claim("b", 50, 80), "taken over once expired (expires_at <= now)");
    assert!(!claim("a", 51, 81), "the old holder lost it");

    store.transact(|tx| tx.release_duty("reconcile", "a")).unwrap();
    assert!(!claim("a", 52, 82), "releasing a duty one does not hold is a no-op");
    store.transact(|tx| tx.release_duty("reconcile", "b")).unwrap();
    assert!(claim("a", 53, 83), "a released duty is free at once");
    store.transact(|tx| tx.release_duty("never-claimed", "a")).expect("releasing an unknown duty is a no-op");

    // A restarted instance takes its duties back from its earlier life at once; another
    // instance whose name only starts alike does not.
    let claim = |holder: &str, now: i64| {
        store.transact(|tx| tx.claim_duty("cluster-status", holder, at(base, now), at(base, now + 60))).unwrap()
    };
    assert!(claim("host:/srv/node1/boot-a", 90), "instance names may hold slashes");
    assert!(!claim("host:/srv/node2/boot-z", 91));
    assert!(claim("host:/srv/node1/boot-b", 92));
    let claim = |holder: &str, now: i64| {
        store.transact(|tx| tx.claim_duty("other-duty", holder, at(base, now), at(base, now + 60))).unwrap()
    };
    assert!(claim("node1/boot-a", 100));
    assert!(!claim("node2/boot-c", 101), "another instance waits for the expiry");
    assert!(!claim("node/boot-d", 101), "a prefix of the name is another instance");
    assert!(!claim("node1/sub/boot-f", 101), "so is a longer name");
    assert!(claim("node1/boot-b", 102), "the same instance after a restart");
    assert!(!claim("node1-x/boot-e", 103));
}
