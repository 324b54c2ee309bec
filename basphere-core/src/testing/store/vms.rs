//! VM records.

use super::{alice_and_bob, expect_kind, vm};
use crate::model::*;
use crate::store::*;

pub fn check_vms(store: &dyn Store) {
    let (alice, bob) = alice_and_bob(store);
    let web = vm(&alice.username, "web");
    store.transact(|tx| tx.insert_vm(&web)).unwrap();
    assert_eq!(store.query(|tx| tx.get_vm(web.id)).unwrap().unwrap(), web);
    assert_eq!(store.vm(&alice.username, &web.name).unwrap(), web);
    expect_kind(
        store.transact(|tx| tx.insert_vm(&vm(&alice.username, "web"))),
        "already-exists",
        "a name is unique per owner",
    );
    store.transact(|tx| tx.insert_vm(&vm(&bob.username, "web"))).unwrap();

    let mut deleted = web.clone();
    deleted.state = VmState::Deleted;
    store.transact(|tx| tx.update_vm(&deleted)).unwrap();
    assert!(
        store.query(|tx| tx.vm_by_name(&alice.username, &web.name)).unwrap().is_none(),
        "a deleted VM frees its name"
    );
    let reborn = vm(&alice.username, "web");
    store.transact(|tx| tx.insert_vm(&reborn)).unwrap();
    let mut undelete = deleted.clone();
    undelete.state = VmState::Running;
    expect_kind(
        store.transact(|tx| tx.update_vm(&undelete)),
        "already-exists",
        "reviving a deleted VM whose name is taken",
    );

    for index in 0..5 {
        store.transact(|tx| tx.insert_vm(&vm(&alice.username, &format!("db-{index}")))).unwrap();
    }
    let mine = store
        .query(|tx| tx.list_vms(&VmFilter { owner: Some(alice.username.clone()), ..VmFilter::default() }))
        .unwrap();
    assert_eq!(mine.len(), 6, "live VMs of alice");
    assert!(mine.windows(2).all(|pair| pair[0].id < pair[1].id), "ordered by id");
    let with_history = store
        .query(|tx| {
            tx.list_vms(&VmFilter { owner: Some(alice.username.clone()), include_deleted: true, ..VmFilter::default() })
        })
        .unwrap();
    assert_eq!(with_history.len(), 7);
    let first_page = store.query(|tx| tx.list_vms(&VmFilter { limit: Some(4), ..VmFilter::default() })).unwrap();
    let second_page = store
        .query(|tx| {
            tx.list_vms(&VmFilter { limit: Some(4), after: first_page.last().map(|v| v.id), ..VmFilter::default() })
        })
        .unwrap();
    assert_eq!(first_page.len() + second_page.len(), 7, "pagination covers every live VM once");
    assert!(second_page.iter().all(|v| !first_page.contains(v)));
    let pending =
        store.query(|tx| tx.list_vms(&VmFilter { state: Some(VmState::Pending), ..VmFilter::default() })).unwrap();
    assert_eq!(pending.len(), 7);
    expect_kind(
        store.transact(|tx| tx.update_vm(&vm(&alice.username, "ghost"))),
        "not-found",
        "update of an unknown VM",
    );
    expect_kind(store.transact(|tx| tx.delete_user(&alice.username)), "conflict", "deleting a user who owns VMs");
}
