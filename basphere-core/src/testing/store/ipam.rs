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
    assert_eq!(store.query(|tx| tx.get_lease(None, first.address)).unwrap().unwrap(), first);
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

    store.transact(|tx| tx.set_lease_state(None, first.address, LeaseState::Active)).unwrap();
    assert_eq!(store.query(|tx| tx.get_lease(None, first.address)).unwrap().unwrap().state, LeaseState::Active);
    expect_kind(
        store.transact(|tx| tx.set_lease_state(None, Ipv4Addr::new(10, 254, 0, 99), LeaseState::Active)),
        "not-found",
        "state of an unleased address",
    );

    expect_kind(store.transact(|tx| tx.delete_block(a_block.start)), "conflict", "a block with leases");
    store.transact(|tx| tx.delete_lease(None, first.address)).unwrap();
    expect_kind(
        store.transact(|tx| tx.delete_lease(None, first.address)),
        "not-found",
        "release of an unleased address",
    );
    let occupancy = store.query(|tx| tx.occupancy(&a_block)).unwrap();
    assert_eq!(occupancy.count(), 1, "a released address is free again");
    store.transact(|tx| tx.delete_lease(None, Ipv4Addr::new(10, 254, 0, 70))).unwrap();
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

/// Tenant networks are scopes of their own: the same address is leased in two networks and in
/// the flat pools at once; a network's leases are no flat block's occupancy; each lookup,
/// state change and release touches its own scope only.
pub fn check_lease_scopes(store: &dyn Store) {
    let (alice, bob) = alice_and_bob(store);
    let (a, b) = (alice.username.clone(), bob.username.clone());
    let (net_a, net_b) = (Uuid::now_v7(), Uuid::now_v7());
    let flat_block = block(&a, [10, 0, 1, 0], 32);
    store.transact(|tx| tx.insert_block(&flat_block)).unwrap();
    let scoped = |owner: &crate::validate::Username, network: Uuid| {
        let mut l = lease(owner, [10, 0, 1, 10], Uuid::now_v7());
        (l.network, l.pool) = (Some(network), "lan1".into());
        l
    };
    let (in_a, in_b) = (scoped(&a, net_a), scoped(&b, net_b));
    let flat = lease(&a, [10, 0, 1, 10], Uuid::now_v7());
    store
        .transact(|tx| {
            tx.insert_lease(&in_a)?;
            tx.insert_lease(&in_b)?;
            tx.insert_lease(&flat)
        })
        .unwrap();
    let mut twice = scoped(&b, net_a);
    twice.resource.name = "other".into();
    expect_kind(store.transact(|tx| tx.insert_lease(&twice)), "already-exists", "twice in one network");
    assert_eq!(store.query(|tx| tx.get_lease(Some(net_a), in_a.address)).unwrap().as_ref(), Some(&in_a));
    assert_eq!(store.query(|tx| tx.get_lease(Some(net_b), in_b.address)).unwrap().as_ref(), Some(&in_b));
    assert_eq!(store.query(|tx| tx.get_lease(None, flat.address)).unwrap().as_ref(), Some(&flat));
    assert_eq!(store.query(|tx| tx.get_lease(Some(Uuid::now_v7()), flat.address)).unwrap(), None);
    assert_eq!(store.query(|tx| tx.leases_in_network(net_a)).unwrap(), vec![in_a.clone()]);
    assert_eq!(store.query(|tx| tx.occupancy(&flat_block)).unwrap().count(), 1, "only the flat lease");
    let mut all = store.query(|tx| tx.list_leases(None)).unwrap();
    assert_eq!(all.first(), Some(&flat), "the flat pools' leases first");
    all.remove(0);
    let mut scopes: Vec<Uuid> = vec![net_a, net_b];
    scopes.sort();
    assert_eq!(all.iter().map(|l| l.network.unwrap()).collect::<Vec<_>>(), scopes, "then by network");
    assert_eq!(store.query(|tx| tx.usage(&a)).unwrap().ips, 2, "every scope's leases count");

    store.transact(|tx| tx.set_lease_state(Some(net_a), in_a.address, LeaseState::Active)).unwrap();
    assert_eq!(store.query(|tx| tx.get_lease(None, flat.address)).unwrap().unwrap().state, LeaseState::Reserved);
    assert_eq!(store.query(|tx| tx.get_lease(Some(net_b), in_b.address)).unwrap().unwrap().state, LeaseState::Reserved);
    store.transact(|tx| tx.delete_lease(Some(net_a), in_a.address)).unwrap();
    expect_kind(store.transact(|tx| tx.delete_lease(Some(net_a), in_a.address)), "not-found", "released in a");
    assert!(store.query(|tx| tx.get_lease(Some(net_b), in_b.address)).unwrap().is_some(), "b's untouched");
    assert!(store.query(|tx| tx.get_lease(None, flat.address)).unwrap().is_some(), "the flat one untouched");
    store.transact(|tx| tx.delete_lease(None, flat.address)).unwrap();
    assert_eq!(store.query(|tx| tx.occupancy(&flat_block)).unwrap().count(), 0);
    assert_eq!(store.query(|tx| tx.leases_in_network(net_b)).unwrap(), vec![in_b]);
}
