//! The `Ipam` conformance suite, run for an IPAM implementation over every store.

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use uuid::Uuid;

use super::user;
use crate::config::{Cidr, PoolConfig};
use crate::ipam::Ipam;
use crate::model::{LeaseState, ResourceKind, ResourceRef};
use crate::store::{Store, StoreExt};
use crate::validate::Username;

/// Builds an IPAM for the given pools.
pub type IpamFactory<'a> = &'a dyn Fn(Vec<PoolConfig>) -> Arc<dyn Ipam>;

/// A pool `cidr` with blocks of `block_size`, gateway at `.1`, and extra reserved addresses.
pub fn pool(name: &str, cidr: &str, block_size: u32, reserved: &[[u8; 4]]) -> PoolConfig {
    let cidr: Cidr = cidr.parse().expect("valid cidr");
    PoolConfig {
        name: name.into(),
        gateway: Ipv4Addr::from(cidr.first() + 1),
        cidr,
        reserved: reserved.iter().map(|a| Ipv4Addr::from(*a)).collect(),
        block_size,
    }
}

pub fn resource(name: &str) -> ResourceRef {
    ResourceRef { kind: ResourceKind::Vm, id: Uuid::now_v7(), name: name.into() }
}

/// Runs every check, each against a fresh store from `make_store`.
pub fn check_all(make_store: &dyn Fn() -> Arc<dyn Store>, make_ipam: IpamFactory<'_>) {
    check_blocks(&*make_store(), make_ipam);
    check_leases(&*make_store(), make_ipam);
    check_extra_blocks(&*make_store(), make_ipam);
    check_exhaustion(&*make_store(), make_ipam);
    check_configuration_changes(&*make_store(), make_ipam);
    check_atomic_with_caller(&*make_store(), make_ipam);
    check_network_scopes(make_store(), make_ipam);
}

fn add_users(store: &dyn Store, names: &[&str]) -> Vec<Username> {
    names
        .iter()
        .map(|name| {
            // A key seed derived from the name, so every account has its own key.
            let seed = name.bytes().fold(1_000u64, |acc, b| acc.wrapping_mul(131).wrapping_add(u64::from(b)));
            let record = user(name, seed);
            store.transact(|tx| tx.insert_user(&record)).unwrap();
            record.username
        })
        .collect()
}

/// First block kept for infrastructure; lowest free block first; idempotent per owner.
pub fn check_blocks(store: &dyn Store, make_ipam: IpamFactory<'_>) {
    let ipam = make_ipam(vec![pool("default", "10.254.0.0/21", 32, &[])]);
    let users = add_users(store, &["alice", "bob", "carol"]);
    let starts: Vec<Ipv4Addr> =
        users.iter().map(|u| store.transact(|tx| ipam.assign_block(tx, u)).unwrap().start).collect();
    assert_eq!(
        starts,
        [Ipv4Addr::new(10, 254, 0, 32), Ipv4Addr::new(10, 254, 0, 64), Ipv4Addr::new(10, 254, 0, 96)],
        "original.md §5.2: user1 gets .32, user2 .64"
    );
    let again = store.transact(|tx| ipam.assign_block(tx, &users[0])).unwrap();
    assert_eq!(again.start, starts[0], "assign_block is idempotent");
    assert_eq!(store.query(|tx| tx.blocks_of(&users[0])).unwrap().len(), 1);

    // A freed block is reused, lowest first.
    store.transact(|tx| ipam.release_blocks(tx, &users[1])).unwrap();
    let dave = add_users(store, &["dave"]).remove(0);
    assert_eq!(store.transact(|tx| ipam.assign_block(tx, &dave)).unwrap().start, starts[1]);
}

/// Lowest free address in the owner's block; never network, broadcast, gateway or reserved;
/// idempotent per resource; released addresses are reusable.
pub fn check_leases(store: &dyn Store, make_ipam: IpamFactory<'_>) {
    // Blocks of 8 in a /26: the first block (.0-.7) is infrastructure; .9 and .10 reserved.
    let ipam = make_ipam(vec![pool("default", "10.1.0.0/26", 8, &[[10, 1, 0, 9], [10, 1, 0, 10]])]);
    let users = add_users(store, &["alice", "bob"]);
    let block = store.transact(|tx| ipam.assign_block(tx, &users[0])).unwrap();
    assert_eq!(block.start, Ipv4Addr::new(10, 1, 0, 8));
    let web = resource("web");
    let first = store.transact(|tx| ipam.lease(tx, &users[0], &web, 32)).unwrap();
    assert_eq!(first.address, Ipv4Addr::new(10, 1, 0, 8), "lowest address of the block");
    assert_eq!(first.state, LeaseState::Reserved);
    assert_eq!(first.owner, users[0]);
    let again = store.transact(|tx| ipam.lease(tx, &users[0], &web, 32)).unwrap();
    assert_eq!(again, first, "leasing again for the same resource returns the same lease");
    let second = store.transact(|tx| ipam.lease(tx, &users[0], &resource("db"), 32)).unwrap();
    assert_eq!(second.address, Ipv4Addr::new(10, 1, 0, 11), "reserved .9 and .10 are skipped");

    let released = store.transact(|tx| ipam.release(tx, None, first.address)).unwrap();
    assert_eq!(released.address, first.address);
    match store.transact(|tx| ipam.release(tx, None, first.address)) {
        Err(error) => assert_eq!(error.kind(), "not-found"),
        Ok(lease) => panic!("released twice: {lease:?}"),
    }
    let reused = store.transact(|tx| ipam.lease(tx, &users[0], &resource("cache"), 32)).unwrap();
    assert_eq!(reused.address, first.address, "a released address is leased again");

    // The pool's last block holds its broadcast address, which is never leased.
    let names: Vec<String> = (0..6).map(|i| format!("u{i}-user")).collect();
    let fillers = add_users(store, &names.iter().map(String::as_str).collect::<Vec<_>>());
    let mut last = None;
    for filler in &fillers {
        if let Ok(block) = store.transact(|tx| ipam.assign_block(tx, filler)) {
            last = Some((filler.clone(), block));
        }
    }
    let (owner, last_block) = last.expect("some block");
    assert_eq!(last_block.start, Ipv4Addr::new(10, 1, 0, 56), "the last block of the /26");
    let mut addresses = BTreeSet::new();
    while let Ok(lease) = store.transact(|tx| ipam.lease(tx, &owner, &resource("n"), 8)) {
        addresses.insert(lease.address);
    }
    assert_eq!(addresses.len(), 7, "8 addresses minus the broadcast");
    assert!(!addresses.contains(&Ipv4Addr::new(10, 1, 0, 63)), "broadcast never leased (original.md §13.2 item 15)");
}

/// An owner whose IP quota exceeds one block gets another block when the first is full.
pub fn check_extra_blocks(store: &dyn Store, make_ipam: IpamFactory<'_>) {
    let ipam = make_ipam(vec![pool("default", "10.2.0.0/24", 8, &[])]);
    let users = add_users(store, &["alice", "bob"]);
    store.transact(|tx| ipam.assign_block(tx, &users[0])).unwrap();
    store.transact(|tx| ipam.assign_block(tx, &users[1])).unwrap();
    let mut leased = Vec::new();
    for index in 0..12 {
        leased.push(
            store.transact(|tx| ipam.lease(tx, &users[0], &resource(&format!("vm-{index}")), 16)).unwrap().address,
        );
    }
    let blocks = store.query(|tx| tx.blocks_of(&users[0])).unwrap();
    assert_eq!(blocks.len(), 2, "a second block once the first is full");
    assert_eq!(blocks[1].start, Ipv4Addr::new(10, 2, 0, 24), "the next free block (bob has .16)");
    assert!(leased.iter().all(|a| blocks.iter().any(|b| b.contains(*a))), "every lease inside its owner's blocks");
    match store.transact(|tx| {
        ipam.lease(tx, &users[1], &resource("x"), 8).and_then(|_| {
            (0..8).try_for_each(|i| ipam.lease(tx, &users[1], &resource(&format!("y{i}")), 8).map(|_| ()))
        })
    }) {
        Err(error) => assert_eq!(error.kind(), "exhausted", "{error}"),
        Ok(()) => panic!("bob's quota of 8 allows one block"),
    }
}

/// Exhaustion is a clear `Exhausted`, and changes nothing.
pub fn check_exhaustion(store: &dyn Store, make_ipam: IpamFactory<'_>) {
    let ipam = make_ipam(vec![pool("default", "10.3.0.0/28", 4, &[])]);
    let names = ["aa-user", "bb-user", "cc-user", "dd-user"];
    let users = add_users(store, &names);
    for owner in &users[..3] {
        store.transact(|tx| ipam.assign_block(tx, owner)).unwrap();
    }
    match store.transact(|tx| ipam.assign_block(tx, &users[3])) {
        Err(error) => {
            assert_eq!(error.kind(), "exhausted");
            assert!(error.to_string().contains("no free IP block"), "{error}");
        }
        Ok(block) => panic!("a /28 in blocks of 4 has 3 assignable blocks, got {block:?}"),
    }
    assert_eq!(store.query(|tx| tx.list_blocks(None)).unwrap().len(), 3);
}

/// Pool configuration changes are checked against existing blocks and leases.
pub fn check_configuration_changes(store: &dyn Store, make_ipam: IpamFactory<'_>) {
    let ipam = make_ipam(vec![pool("default", "10.4.0.0/24", 32, &[])]);
    let users = add_users(store, &["alice"]);
    store.transact(|tx| ipam.assign_block(tx, &users[0])).unwrap();
    let lease = store.transact(|tx| ipam.lease(tx, &users[0], &resource("web"), 32)).unwrap();
    assert_eq!(lease.address, Ipv4Addr::new(10, 4, 0, 32));

    let same = make_ipam(vec![pool("default", "10.4.0.0/24", 32, &[[10, 4, 0, 200]])]);
    store.query(|tx| same.check_allocations(tx)).expect("an unrelated reserved address is fine");
    let grown = make_ipam(vec![pool("default", "10.4.0.0/23", 32, &[]), pool("extra", "10.9.0.0/24", 16, &[])]);
    store.query(|tx| grown.check_allocations(tx)).expect("a larger pool keeps every block aligned");

    let refused = [
        (vec![pool("default", "10.4.0.0/24", 64, &[])], "block size change"),
        (vec![pool("default", "10.5.0.0/24", 32, &[])], "pool moved"),
        (vec![pool("other", "10.4.0.0/24", 32, &[])], "pool renamed"),
        (vec![pool("default", "10.4.0.0/24", 32, &[[10, 4, 0, 32]])], "leased address reserved"),
        (vec![pool("default", "10.4.0.32/27", 8, &[])], "block now the infrastructure block"),
    ];
    for (pools, what) in refused {
        let changed = make_ipam(pools);
        match store.query(|tx| changed.check_allocations(tx)) {
            Err(error) => assert_eq!(error.kind(), "conflict", "{what}: {error}"),
            Ok(()) => panic!("{what} must be refused"),
        }
    }
}

/// A lease made in a transaction that fails is not kept.
pub fn check_atomic_with_caller(store: &dyn Store, make_ipam: IpamFactory<'_>) {
    let ipam = make_ipam(vec![pool("default", "10.6.0.0/24", 16, &[])]);
    let users = add_users(store, &["alice"]);
    store.transact(|tx| ipam.assign_block(tx, &users[0])).unwrap();
    let result = store.transact(|tx| {
        ipam.lease(tx, &users[0], &resource("a"), 16)?;
        ipam.lease(tx, &users[0], &resource("b"), 16)?;
        Err::<(), _>(crate::Error::Conflict("the record could not be written".into()))
    });
    assert!(result.is_err());
    assert!(store.query(|tx| tx.list_leases(None)).unwrap().is_empty(), "no lease outlives its transaction");
    let seen: HashSet<Ipv4Addr> = (0..3)
        .map(|i| store.transact(|tx| ipam.lease(tx, &users[0], &resource(&format!("r{i}")), 16)).unwrap().address)
        .collect();
    assert_eq!(seen.len(), 3);
    assert!(seen.contains(&Ipv4Addr::new(10, 6, 0, 16)), "the rolled-back address is the first one handed out");
}

/// Tenant networks' LANs: the lowest free host address but the gateway, the same addresses in
/// every network, nothing of the flat pools touched; idempotent per resource; many leases at
/// once in one network all distinct; a full LAN refused by name; released addresses reused.
pub fn check_network_scopes(store: Arc<dyn Store>, make_ipam: IpamFactory<'_>) {
    use crate::model::{Network, NetworkLan, NetworkState};
    let ipam = make_ipam(vec![pool("default", "10.0.0.0/16", 32, &[])]);
    let names = add_users(&*store, &["alice", "bob"]);
    let network = |owner: &Username, wan: u8| {
        let at = crate::model::now();
        let lan = |name: &str, cidr: &str, gateway: [u8; 4]| NetworkLan {
            name: name.into(),
            vlan: 2001,
            cidr: cidr.parse().unwrap(),
            gateway: Ipv4Addr::from(gateway),
        };
        Network {
            id: Uuid::now_v7(),
            owner: owner.clone(),
            lans: vec![lan("lan1", "10.0.1.0/24", [10, 0, 1, 1]), lan("lan2", "10.0.2.0/29", [10, 0, 2, 1])],
            mtu: 1450,
            wan_address: Ipv4Addr::new(192, 0, 2, wan),
            state: NetworkState::Ready,
            reason: None,
            created_at: at,
            updated_at: at,
        }
    };
    let (net_a, net_b) = (Arc::new(network(&names[0], 11)), network(&names[1], 12));
    let web = resource("web");
    let first = store.transact(|tx| ipam.lease_in_network(tx, &net_a, "lan1", &web)).unwrap();
    assert_eq!(
        (first.address, first.network, first.pool.as_str()),
        (Ipv4Addr::new(10, 0, 1, 2), Some(net_a.id), "lan1")
    );
    assert_eq!(first.owner, names[0], "the network's owner holds it");
    let again = store.transact(|tx| ipam.lease_in_network(tx, &net_a, "lan1", &web)).unwrap();
    assert_eq!(again, first, "idempotent per resource");
    let other = store.transact(|tx| ipam.lease_in_network(tx, &net_b, "lan1", &resource("web"))).unwrap();
    assert_eq!(other.address, first.address, "the same address in another network");
    let flat = store.transact(|tx| ipam.assign_block(tx, &names[0])).unwrap();
    assert!(store.query(|tx| tx.occupancy(&flat)).unwrap().count() == 0, "no flat block touched");
    match store.transact(|tx| ipam.lease_in_network(tx, &net_a, "lan9", &resource("x"))) {
        Err(error) => assert!(error.to_string().contains("lan1, lan2"), "{error}"),
        Ok(lease) => panic!("an unknown LAN gave {lease:?}"),
    }

    // lan2 is a /29: .2 to .6 (the gateway .1, the broadcast .7), five at most, all distinct.
    let threads: Vec<_> = (0..8)
        .map(|n| {
            let (store, ipam, net) = (store.clone(), ipam.clone(), net_a.clone());
            std::thread::spawn(move || {
                store.transact(|tx| ipam.lease_in_network(tx, &net, "lan2", &resource(&format!("db-{n}"))))
            })
        })
        .collect();
    let outcomes: Vec<_> = threads.into_iter().map(|t| t.join().expect("thread")).collect();
    let leased: BTreeSet<Ipv4Addr> = outcomes.iter().filter_map(|o| o.as_ref().ok()).map(|l| l.address).collect();
    assert_eq!(leased, (2..=6).map(|host| Ipv4Addr::new(10, 0, 2, host)).collect(), "each address once");
    for outcome in outcomes.iter().filter(|o| o.is_err()) {
        let error = outcome.as_ref().unwrap_err();
        assert!(matches!(error, crate::Error::Exhausted(m) if m.contains("lan2") && m.contains("alice")), "{error}");
    }
    let released = store.transact(|tx| ipam.release(tx, Some(net_a.id), Ipv4Addr::new(10, 0, 2, 4))).unwrap();
    assert_eq!(released.network, Some(net_a.id));
    let reused = store.transact(|tx| ipam.lease_in_network(tx, &net_a, "lan2", &resource("late"))).unwrap();
    assert_eq!(reused.address, Ipv4Addr::new(10, 0, 2, 4), "a released address is leased again");
    assert_eq!(
        store.query(|tx| tx.get_lease(Some(net_b.id), first.address)).unwrap().map(|l| l.owner),
        Some(names[1].clone()),
        "bob's lease of the same address untouched"
    );
    store.query(|tx| ipam.check_allocations(tx)).expect("tenant leases leave the flat configuration valid");
}
