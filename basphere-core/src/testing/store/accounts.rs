//! Accounts: users, requests, quota overrides and usage.

use uuid::Uuid;

use super::{block, expect_kind, lease, vm};
use crate::model::*;
use crate::store::*;
use crate::testing::{ssh_key, user, username};
use crate::validate::Email;

pub fn check_users(store: &dyn Store) {
    let alice = user("alice", 1);
    store.transact(|tx| tx.insert_user(&alice)).unwrap();
    assert_eq!(store.user(&alice.username).unwrap(), alice, "a user reads back exactly");
    expect_kind(store.transact(|tx| tx.insert_user(&alice)), "already-exists", "same username");

    let mut thief = user("mallory", 2);
    thief.ssh_key = alice.ssh_key.clone();
    expect_kind(
        store.transact(|tx| tx.insert_user(&thief)),
        "already-exists",
        "an SSH key already used by another account",
    );
    assert_eq!(
        store.query(|tx| tx.user_by_key_fingerprint(alice.ssh_key.fingerprint())).unwrap().unwrap().username,
        alice.username
    );

    // Found by email, whatever the case of its letters; nobody else's address matches.
    let shouting = Email::parse("ALICE@Example.COM").unwrap();
    assert_eq!(store.query(|tx| tx.user_by_email(&shouting)).unwrap().unwrap().username, alice.username);
    let elsewhere = Email::parse("alice@example.org").unwrap();
    assert!(store.query(|tx| tx.user_by_email(&elsewhere)).unwrap().is_none());

    let mut bob = user("bob", 3);
    bob.uid = Some(1001);
    store.transact(|tx| tx.insert_user(&bob)).unwrap();
    assert_eq!(store.query(|tx| tx.user_by_uid(1001)).unwrap().unwrap().username, bob.username);
    let mut carol = user("carol", 4);
    carol.uid = Some(1001);
    expect_kind(store.transact(|tx| tx.insert_user(&carol)), "already-exists", "a uid used by another account");

    let mut changed = alice.clone();
    changed.status = UserStatus::Suspended;
    changed.ssh_key = ssh_key(99);
    changed.updated_at = now();
    store.transact(|tx| tx.update_user(&changed)).unwrap();
    assert_eq!(store.user(&alice.username).unwrap(), changed);
    expect_kind(store.transact(|tx| tx.update_user(&user("nobody1", 5))), "not-found", "update of an unknown user");

    let names: Vec<String> =
        store.query(|tx| tx.list_users()).unwrap().into_iter().map(|u| u.username.to_string()).collect();
    assert_eq!(names, ["alice", "bob"], "users listed by name");
    assert!(store.query(|tx| tx.get_user(&username("ghost"))).unwrap().is_none());

    store.transact(|tx| tx.delete_user(&bob.username)).unwrap();
    assert!(store.query(|tx| tx.get_user(&bob.username)).unwrap().is_none());
    expect_kind(store.transact(|tx| tx.delete_user(&bob.username)), "not-found", "delete of a deleted user");
}

pub fn check_requests(store: &dyn Store) {
    let at = now();
    let registration = |name: &str, email: &str, seed: u64| RegistrationRequest {
        id: Uuid::now_v7(),
        username: username(name),
        email: Email::parse(email).unwrap(),
        team: String::new(),
        ssh_key: ssh_key(seed),
        status: RequestStatus::Pending,
        created_at: at,
        processed_by: None,
        processed_at: None,
        reject_reason: None,
    };
    let first = registration("dave", "dave@example.com", 10);
    store.transact(|tx| tx.insert_registration(&first)).unwrap();
    assert_eq!(store.query(|tx| tx.get_registration(first.id)).unwrap().unwrap(), first);
    expect_kind(
        store.transact(|tx| tx.insert_registration(&registration("dave", "other@example.com", 11))),
        "already-exists",
        "a second pending request for a username",
    );
    expect_kind(
        store.transact(|tx| tx.insert_registration(&registration("erin", "DAVE@example.com", 12))),
        "already-exists",
        "a second pending request for an email",
    );

    let mut rejected = first.clone();
    rejected.status = RequestStatus::Rejected;
    rejected.processed_by = Some("admin-one".into());
    rejected.processed_at = Some(now());
    rejected.reject_reason = Some("unknown team".into());
    store.transact(|tx| tx.update_registration(&rejected)).unwrap();
    let again = registration("dave", "dave@example.com", 10);
    store.transact(|tx| tx.insert_registration(&again)).unwrap();
    let pending = RequestFilter { status: Some(RequestStatus::Pending), ..RequestFilter::default() };
    let listed = store.query(|tx| tx.list_registrations(&pending)).unwrap();
    assert_eq!(listed, vec![again.clone()], "a rejected request does not block a new one");
    let all = store.query(|tx| tx.list_registrations(&RequestFilter::default())).unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [first.id, again.id], "oldest first");
    let erin = registration("erin", "erin@example.com", 13);
    store.transact(|tx| tx.insert_registration(&erin)).unwrap();
    let of_dave = RequestFilter { username: Some(username("dave")), ..RequestFilter::default() };
    let daves = store.query(|tx| tx.list_registrations(&of_dave)).unwrap();
    assert_eq!(daves.iter().map(|r| r.id).collect::<Vec<_>>(), [first.id, again.id], "by username");
    let second_page = RequestFilter { after: Some(first.id), limit: Some(1), ..RequestFilter::default() };
    let page = store.query(|tx| tx.list_registrations(&second_page)).unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [again.id], "after and limit");
    let pending_dave = RequestFilter { status: Some(RequestStatus::Pending), ..of_dave.clone() };
    assert_eq!(store.query(|tx| tx.list_registrations(&pending_dave)).unwrap(), vec![again.clone()]);

    let key_change = |name: &str| KeyChangeRequest {
        id: Uuid::now_v7(),
        username: username(name),
        email: Email::parse("dave@example.com").unwrap(),
        new_ssh_key: ssh_key(20),
        reason: "lost laptop".into(),
        status: RequestStatus::Pending,
        created_at: now(),
        processed_by: None,
        processed_at: None,
        reject_reason: None,
    };
    let change = key_change("dave");
    store.transact(|tx| tx.insert_key_change(&change)).unwrap();
    assert_eq!(store.query(|tx| tx.get_key_change(change.id)).unwrap().unwrap(), change);
    expect_kind(
        store.transact(|tx| tx.insert_key_change(&key_change("dave"))),
        "already-exists",
        "one pending key change per user",
    );
    let mut approved = change.clone();
    approved.status = RequestStatus::Approved;
    store.transact(|tx| tx.update_key_change(&approved)).unwrap();
    let pending = RequestFilter { status: Some(RequestStatus::Pending), ..RequestFilter::default() };
    assert!(store.query(|tx| tx.list_key_changes(&pending)).unwrap().is_empty());
    assert_eq!(store.query(|tx| tx.list_key_changes(&RequestFilter::default())).unwrap(), vec![approved.clone()]);
    let of_dave = RequestFilter { username: Some(username("dave")), limit: Some(5), ..RequestFilter::default() };
    assert_eq!(store.query(|tx| tx.list_key_changes(&of_dave)).unwrap(), vec![approved]);
    expect_kind(
        store.transact(|tx| tx.update_key_change(&key_change("zed"))),
        "not-found",
        "update of an unknown key change",
    );
}

pub fn check_quota_and_usage(store: &dyn Store) {
    let alice = user("alice", 1);
    store.transact(|tx| tx.insert_user(&alice)).unwrap();
    let owner = alice.username.clone();
    assert_eq!(store.query(|tx| tx.quota_override(&owner)).unwrap(), None);
    let quota = QuotaOverride { max_vms: Some(20), max_ips: Some(64), ..QuotaOverride::default() };
    store.transact(|tx| tx.set_quota_override(&owner, Some(&quota))).unwrap();
    assert_eq!(store.query(|tx| tx.quota_override(&owner)).unwrap(), Some(quota));
    store.transact(|tx| tx.set_quota_override(&owner, None)).unwrap();
    assert_eq!(store.query(|tx| tx.quota_override(&owner)).unwrap(), None);
    expect_kind(
        store.transact(|tx| tx.set_quota_override(&username("ghost"), Some(&quota))),
        "not-found",
        "override for an unknown user",
    );

    store.transact(|tx| tx.insert_block(&block(&owner, [10, 254, 0, 32], 32))).unwrap();
    let mut vms = Vec::new();
    for index in 0..3 {
        let mut record = vm(&owner, &format!("app-{index}"));
        record.cpu = 4;
        record.memory_mb = 16384;
        record.disk_gb = 100;
        store
            .transact(|tx| {
                tx.insert_vm(&record)?;
                tx.insert_lease(&lease(&owner, [10, 254, 0, 33 + index], record.id))
            })
            .unwrap();
        vms.push(record);
    }
    let mut deleted = vms[0].clone();
    deleted.state = VmState::Deleted;
    store.transact(|tx| tx.update_vm(&deleted)).unwrap();
    let usage = store.query(|tx| tx.usage(&owner)).unwrap();
    assert_eq!(
        usage,
        Usage { vms: 2, clusters: 0, ips: 3, vcpus: 8, memory_mb: 32768, disk_gb: 200 },
        "usage counts live records and every lease"
    );
    assert_eq!(store.query(|tx| tx.usage(&username("ghost"))).unwrap(), Usage::default());
}
