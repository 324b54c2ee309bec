//! Tenant network records: one live network per account, VLAN ids and WAN addresses held by
//! one live network at most, freed by deletion, and distinct under concurrent creation.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use uuid::Uuid;

use super::{alice_and_bob, expect_kind};
use crate::model::*;
use crate::networks::new_network;
use crate::store::*;
use crate::testing::{tenant_networks, user};
use crate::validate::Username;

/// A pending network of `owner` on the given VLAN ids and WAN address.
pub fn network(owner: &Username, vlans: [u16; 2], wan: [u8; 4]) -> Network {
    let at = now();
    let lan = |name: &str, vlan: u16, third: u8| NetworkLan {
        name: name.into(),
        vlan,
        cidr: format!("10.0.{third}.0/24").parse().unwrap(),
        gateway: Ipv4Addr::new(10, 0, third, 1),
    };
    Network {
        id: Uuid::now_v7(),
        owner: owner.clone(),
        lans: vec![lan("lan1", vlans[0], 1), lan("lan2", vlans[1], 2)],
        mtu: 1450,
        wan_address: Ipv4Addr::from(wan),
        state: NetworkState::Pending,
        reason: None,
        created_at: at,
        updated_at: at,
    }
}

pub fn check_networks(store: &dyn Store) {
    let (alice, bob) = alice_and_bob(store);
    let (alice, bob) = (alice.username, bob.username);
    let first = network(&alice, [2001, 2002], [192, 0, 2, 11]);
    store.transact(|tx| tx.insert_network(&first)).unwrap();
    assert_eq!(store.query(|tx| tx.get_network(first.id)).unwrap().as_ref(), Some(&first));
    assert_eq!(store.query(|tx| tx.network_of(&alice)).unwrap().as_ref(), Some(&first));
    assert_eq!(store.query(|tx| tx.network_of(&bob)).unwrap(), None);

    let twin = network(&alice, [2003, 2004], [192, 0, 2, 12]);
    expect_kind(store.transact(|tx| tx.insert_network(&twin)), "already-exists", "one live network per account");
    let mut same_id = network(&bob, [2003, 2004], [192, 0, 2, 12]);
    same_id.id = first.id;
    expect_kind(store.transact(|tx| tx.insert_network(&same_id)), "already-exists", "a taken id");
    let clash = network(&bob, [2003, 2002], [192, 0, 2, 12]);
    expect_kind(store.transact(|tx| tx.insert_network(&clash)), "already-exists", "a VLAN id another network holds");
    let twice = network(&bob, [2003, 2003], [192, 0, 2, 12]);
    expect_kind(store.transact(|tx| tx.insert_network(&twice)), "already-exists", "a VLAN id held twice by one");
    let wan = network(&bob, [2003, 2004], [192, 0, 2, 11]);
    expect_kind(store.transact(|tx| tx.insert_network(&wan)), "already-exists", "a WAN address another holds");
    assert_eq!(store.query(|tx| tx.list_networks(&NetworkFilter::default())).unwrap(), vec![first.clone()]);

    let mut bobs = network(&bob, [2003, 2004], [192, 0, 2, 12]);
    store.transact(|tx| tx.insert_network(&bobs)).unwrap();
    let mut moved = bobs.clone();
    moved.lans[1].vlan = 2001;
    expect_kind(store.transact(|tx| tx.update_network(&moved)), "already-exists", "an update onto a held VLAN id");
    bobs.state = NetworkState::Ready;
    bobs.reason = Some("all \"good\"\n".into());
    store.transact(|tx| tx.update_network(&bobs)).unwrap();
    assert_eq!(store.query(|tx| tx.network_of(&bob)).unwrap().as_ref(), Some(&bobs));
    expect_kind(
        store.transact(|tx| tx.update_network(&network(&bob, [3001, 3002], [192, 0, 2, 99]))),
        "not-found",
        "an unknown network",
    );
    let only_bob = NetworkFilter { owner: Some(bob.clone()), ..NetworkFilter::default() };
    assert_eq!(store.query(|tx| tx.list_networks(&only_bob)).unwrap(), vec![bobs.clone()]);
    let paged = NetworkFilter { after: Some(first.id), limit: Some(1), ..NetworkFilter::default() };
    assert_eq!(store.query(|tx| tx.list_networks(&paged)).unwrap(), vec![bobs.clone()]);

    // Deleting frees the VLAN ids and the WAN address, in the same transaction; the record stays.
    let mut gone = first.clone();
    gone.state = NetworkState::Deleted;
    let reused = network(&bob, [2001, 2002], [192, 0, 2, 11]);
    let result = store.transact(|tx| {
        tx.update_network(&gone)?;
        tx.insert_network(&reused)
    });
    expect_kind(result, "already-exists", "bob still has his live network");
    assert_eq!(store.query(|tx| tx.network_of(&alice)).unwrap().as_ref(), Some(&first), "rolled back");
    let again = network(&alice, [2001, 2002], [192, 0, 2, 11]);
    store
        .transact(|tx| {
            tx.update_network(&gone)?;
            tx.insert_network(&again)
        })
        .unwrap();
    assert_eq!(store.query(|tx| tx.network_of(&alice)).unwrap().as_ref(), Some(&again));
    let everything = NetworkFilter { include_deleted: true, ..NetworkFilter::default() };
    assert_eq!(store.query(|tx| tx.list_networks(&everything)).unwrap(), vec![gone, bobs, again]);
}

/// Many accounts' networks made at once, each in its own transaction, hold distinct VLAN ids and
/// WAN addresses; once the range is used up, the next one is refused, naming the key.
pub fn check_concurrent_networks(store: Arc<dyn Store>) {
    let accounts = 24;
    let config = Arc::new(tenant_networks(3001..=3048));
    let names: Vec<Username> = (0..accounts).map(|n| user(&format!("tenant{n}"), n as u64).username).collect();
    store
        .transact(|tx| {
            for (n, name) in names.iter().enumerate() {
                tx.insert_user(&user(name.as_str(), n as u64))?;
            }
            Ok(())
        })
        .unwrap();
    let threads: Vec<_> = names
        .iter()
        .cloned()
        .map(|owner| {
            let (store, config) = (store.clone(), config.clone());
            std::thread::spawn(move || {
                store.transact(|tx| {
                    let network = new_network(tx, &config, &owner)?;
                    tx.insert_network(&network)?;
                    Ok(network)
                })
            })
        })
        .collect();
    let made: Vec<Network> = threads.into_iter().map(|t| t.join().expect("thread").expect("made")).collect();
    let vlans: BTreeSet<u16> = made.iter().flat_map(Network::vlans).collect();
    assert_eq!(vlans, (3001..=3048).collect(), "every id of the range, each once");
    let wan: BTreeSet<Ipv4Addr> = made.iter().map(|n| n.wan_address).collect();
    assert_eq!(wan.len(), accounts, "a WAN address each");

    let late = user("late", 99);
    store.transact(|tx| tx.insert_user(&late)).unwrap();
    let refused = store.transact(|tx| new_network(tx, &config, &late.username));
    match refused {
        Err(crate::Error::Exhausted(message)) => assert!(message.contains("networks.vlan_range"), "{message}"),
        other => panic!("a full range must be refused, got {other:?}"),
    }
}
