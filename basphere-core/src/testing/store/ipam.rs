//! Blocks and leases.

use std::net::Ipv4Addr;

use uuid::Uuid;

use super::{alice_and_bob, block, expect_kind, lease};
use crate::model::*;
use crate::store::*;
use crate::testing::username;

pub fn check_blocks_and_leases(store: &dyn Store) {
    let (alice, bob) = alice_and_bob(store);
    let (a, b) = (alice.username.clone(), bob.username.clone());
    let a_block = block(&a, [10, 254, 0, 64], 32);
    let b_block = block(&b, [10, 254, 0, 32], 32);
    store
        .transact(|tx| {
            tx.insert_block(&a_block)?;
            tx.insert_block(&b_block)
        })
        .unwrap();
    expect_kind(
        store.transact(|tx| tx.insert_block(&block(&b, [10, 254, 0, 64], 32))),
        "conflict",
        "the same block twice",
    );
    expect_kind(
        store.transact(|tx| tx.insert_block(&block(&b, [10, 254, 0, 0], 128))),
        "conflict",
        "a larger block overlapping others",
    );
    expect_kind(
        store.transact(|tx| tx.insert_block(&block(&b, [10, 254, 0, 80], 16))),
        "conflict",
        "a smaller block inside another",
    );
    assert_eq!(
        store.query(|tx| tx.list_blocks(None)).unwrap(),
        vec![b_block.clone(), a_block.clone()],
        "blocks ordered by address"
    );
    assert_eq!(store.query(|tx| tx.list_blocks(Some("other"))).unwrap(), vec![]);
    assert_eq!(store.query(|tx| tx.blocks_of(&a)).unwrap(), vec![a_block.clone()]);

    let resource = Uuid::now_v7();
    let first = lease(&a, [10, 254, 0, 65], resource);
    store.transact(|tx| tx.insert_lease(&first)).unwrap();
    assert_eq!(store.query(|tx| tx.get_lease(first.address)).unwrap().unwrap(), first);
    let mut stolen = lease(&b, [10, 254, 0, 65], Uuid::now_v7());
    stolen.resource.name = "other".into();
    expect_kind(store.transact(|tx| tx.insert_lease(&stolen)), "already-exists", "an address is leased at most once");
    store.transact(|tx| tx.insert_lease(&lease(&a, [10, 254, 0, 70], resource))).unwrap();
    store.transact(|tx| tx.insert_lease(&lease(&b, [10, 254, 0, 33], Uuid::now_v7()))).unwrap();

    let occupancy = store.query(|tx| tx.occupancy(&a_block)).unwrap();
    assert_eq!((occupancy.len(), occupancy.count()), (32, 2));
    assert!(occupancy.contains(1) && occupancy.contains(6) && !occupancy.contains(0));
    assert_eq!(store.query(|tx| tx.leases_of_resource(resource)).unwrap().len(), 2);
    let listed: Vec<Ipv4Addr> =
        store.query(|tx| tx.list_leases(None)).unwrap().into_iter().map(|l| l.address).collect();
    assert_eq!(
        listed,
        [Ipv4Addr::new(10, 254, 0, 33), Ipv4Addr::new(10, 254, 0, 65), Ipv4Addr::new(10, 254, 0, 70)],
        "leases ordered by address"
    );
    assert_eq!(store.query(|tx| tx.list_leases(Some(&a))).unwrap().len(), 2);

    store.transact(|tx| tx.set_lease_state(first.address, LeaseState::Active)).unwrap();
    assert_eq!(store.query(|tx| tx.get_lease(first.address)).unwrap().unwrap().state, LeaseState::Active);
    expect_kind(
        store.transact(|tx| tx.set_lease_state(Ipv4Addr::new(10, 254, 0, 99), LeaseState::Active)),
        "not-found",
        "state of an unleased address",
    );

    expect_kind(store.transact(|tx| tx.delete_block(a_block.start)), "conflict", "a block with leases");
    store.transact(|tx| tx.delete_lease(first.address)).unwrap();
    expect_kind(store.transact(|tx| tx.delete_lease(first.address)), "not-found", "release of an unleased address");
    let occupancy = store.query(|tx| tx.occupancy(&a_block)).unwrap();
    assert_eq!(occupancy.count(), 1, "a released address is free again");
    store.transact(|tx| tx.delete_lease(Ipv4Addr::new(10, 254, 0, 70))).unwrap();
    store.transact(|tx| tx.delete_block(a_block.start)).unwrap();
    expect_kind(store.transact(|tx| tx.delete_block(a_block.start)), "not-found", "a deleted block");
    expect_kind(store.transact(|tx| tx.delete_user(&b)), "conflict", "deleting a user who holds addresses");

    expect_kind(
        store.transact(|tx| tx.insert_block(&block(&username("ghost"), [10, 254, 1, 0], 32))),
        "not-found",
        "a block for an unknown user",
    );
    expect_kind(
        store.transact(|tx| tx.insert_lease(&lease(&username("ghost"), [10, 254, 1, 1], Uuid::now_v7()))),
        "not-found",
        "a lease for an unknown user",
    );

    // A block inserted over existing leases sees them.
    store.transact(|tx| tx.insert_lease(&lease(&a, [10, 254, 0, 66], resource))).unwrap();
    store.transact(|tx| tx.insert_block(&a_block)).unwrap();
    assert!(store.query(|tx| tx.occupancy(&a_block)).unwrap().contains(2));
}
