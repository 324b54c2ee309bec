//! BlockIpam over every store: the IPAM conformance suite, and property tests against a simple
//! reference model.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use basphere_core::model::Network;
use basphere_core::testing::ipam::{pool, resource};
use basphere_core::testing::user;
use basphere_core::{testing, Store, StoreExt};
use proptest::prelude::*;
use tests::{block_ipam, Backend, BACKENDS};

#[test]
fn block_ipam_passes_the_ipam_conformance_suite_on_every_store() {
    let dir = tempfile::tempdir().unwrap();
    for backend in BACKENDS {
        testing::ipam::check_all(&|| backend.open(dir.path()), &block_ipam);
    }
}

/// The reference model: a plain simulation of the documented rules, with linear scans.
struct Model {
    first: u32,
    last: u32,
    size: u32,
    unleasable: BTreeSet<u32>,
    quota: u64,
    blocks: BTreeMap<u32, usize>,
    leases: BTreeMap<u32, usize>,
    /// Leases in the tenant networks' LAN, by (network, address): a scope each.
    scoped: BTreeSet<(usize, u32)>,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Leased(u32),
    Exhausted,
    Released,
    NotFound,
    Conflict,
}

impl Model {
    fn allocate(&mut self, user: usize) -> Outcome {
        let mine: Vec<u32> = self.blocks.iter().filter(|(_, owner)| **owner == user).map(|(start, _)| *start).collect();
        for start in &mine {
            if let Some(address) =
                (*start..*start + self.size).find(|a| !self.unleasable.contains(a) && !self.leases.contains_key(a))
            {
                self.leases.insert(address, user);
                return Outcome::Leased(address);
            }
        }
        if (mine.len() as u64) * u64::from(self.size) >= self.quota {
            return Outcome::Exhausted;
        }
        let free = (1..)
            .map(|i| self.first + i * self.size)
            .take_while(|start| start + self.size - 1 <= self.last)
            .find(|start| !self.blocks.contains_key(start));
        let Some(start) = free else {
            return Outcome::Exhausted;
        };
        self.blocks.insert(start, user);
        match (start..start + self.size).find(|a| !self.unleasable.contains(a)) {
            Some(address) => {
                self.leases.insert(address, user);
                Outcome::Leased(address)
            }
            None => Outcome::Exhausted,
        }
    }

    fn release(&mut self, address: u32) -> Outcome {
        match self.leases.remove(&address) {
            Some(_) => Outcome::Released,
            None => Outcome::NotFound,
        }
    }

    /// The lowest host of the tenant LAN (10.0.0.0/28, gateway .1) free in `network`.
    fn lease_in(&mut self, network: usize) -> Outcome {
        let lan = u32::from(Ipv4Addr::new(10, 0, 0, 0));
        match (lan + 2..lan + 15).find(|a| !self.scoped.contains(&(network, *a))) {
            Some(address) => {
                self.scoped.insert((network, address));
                Outcome::Leased(address)
            }
            None => Outcome::Exhausted,
        }
    }

    fn release_blocks(&mut self, user: usize) -> Outcome {
        if self.leases.values().any(|owner| *owner == user) {
            return Outcome::Conflict;
        }
        self.blocks.retain(|_, owner| *owner != user);
        Outcome::Released
    }
}

#[derive(Clone, Debug)]
enum Op {
    Allocate(usize),
    /// Release the n-th current lease (modulo the count), or an unleased address when none.
    Release(usize),
    ReleaseBlocks(usize),
    /// Lease in the LAN of tenant network n (its owner is user n).
    LeaseIn(usize),
    /// Release the n-th current lease of a tenant network, or an unleased address when none.
    ReleaseIn(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4usize).prop_map(Op::Allocate),
        3 => (0..64usize).prop_map(Op::Release),
        1 => (0..4usize).prop_map(Op::ReleaseBlocks),
        4 => (0..2usize).prop_map(Op::LeaseIn),
        2 => (0..2usize, 0..64usize).prop_map(|(net, n)| Op::ReleaseIn(net, n)),
    ]
}

const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

fn run(store: Arc<dyn Store>, ops: &[Op]) -> Result<(), TestCaseError> {
    // A /26 in blocks of 8: 7 assignable blocks; .9 reserved; quota allows two blocks each.
    let pools = vec![pool("default", "10.0.0.0/26", 8, &[[10, 0, 0, 9]])];
    let ipam = block_ipam(pools.clone());
    let users: Vec<_> = USERS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let record = user(name, 500 + i as u64);
            store.transact(|tx| tx.insert_user(&record)).unwrap();
            record.username
        })
        .collect();
    let cidr = pools[0].cidr;
    let mut model = Model {
        first: cidr.first(),
        last: cidr.last(),
        size: 8,
        unleasable: [cidr.first(), cidr.last(), cidr.first() + 1, u32::from(Ipv4Addr::new(10, 0, 0, 9))].into(),
        quota: 12,
        blocks: BTreeMap::new(),
        leases: BTreeMap::new(),
        scoped: BTreeSet::new(),
    };
    // Two tenant networks whose one LAN overlaps the flat pool and each other.
    let networks: Vec<Network> = (0..2)
        .map(|n| {
            let mut network = testing::store::network(
                &users[n],
                [2001 + 2 * n as u16, 2002 + 2 * n as u16],
                [192, 0, 2, 10 + n as u8],
            );
            network.lans.truncate(1);
            network.lans[0].cidr = "10.0.0.0/28".parse().unwrap();
            network.lans[0].gateway = Ipv4Addr::new(10, 0, 0, 1);
            network
        })
        .collect();
    for op in ops {
        let (expected, actual) = match op {
            Op::Allocate(u) => {
                let expected = model.allocate(*u);
                let actual = match store.transact(|tx| ipam.lease(tx, &users[*u], &resource("r"), model.quota)) {
                    Ok(lease) => Outcome::Leased(u32::from(lease.address)),
                    Err(error) if error.kind() == "exhausted" => Outcome::Exhausted,
                    Err(error) => return Err(TestCaseError::fail(format!("allocate: {error}"))),
                };
                (expected, actual)
            }
            Op::Release(n) => {
                let address = if model.leases.is_empty() {
                    model.first + 20
                } else {
                    *model.leases.keys().nth(n % model.leases.len()).unwrap()
                };
                let expected = model.release(address);
                let actual = match store.transact(|tx| ipam.release(tx, None, Ipv4Addr::from(address))) {
                    Ok(_) => Outcome::Released,
                    Err(error) if error.kind() == "not-found" => Outcome::NotFound,
                    Err(error) => return Err(TestCaseError::fail(format!("release: {error}"))),
                };
                (expected, actual)
            }
            Op::ReleaseBlocks(u) => {
                let expected = model.release_blocks(*u);
                let actual = match store.transact(|tx| ipam.release_blocks(tx, &users[*u])) {
                    Ok(_) => Outcome::Released,
                    Err(error) if error.kind() == "conflict" => Outcome::Conflict,
                    Err(error) => return Err(TestCaseError::fail(format!("release blocks: {error}"))),
                };
                (expected, actual)
            }
            Op::LeaseIn(net) => {
                let expected = model.lease_in(*net);
                let actual =
                    match store.transact(|tx| ipam.lease_in_network(tx, &networks[*net], "lan1", &resource("r"))) {
                        Ok(lease) => Outcome::Leased(u32::from(lease.address)),
                        Err(error) if error.kind() == "exhausted" => Outcome::Exhausted,
                        Err(error) => return Err(TestCaseError::fail(format!("lease in: {error}"))),
                    };
                (expected, actual)
            }
            Op::ReleaseIn(net, n) => {
                let held: Vec<u32> = model.scoped.iter().filter(|(m, _)| m == net).map(|(_, a)| *a).collect();
                let address = if held.is_empty() { model.first + 5 } else { held[n % held.len()] };
                let expected =
                    if model.scoped.remove(&(*net, address)) { Outcome::Released } else { Outcome::NotFound };
                let scope = Some(networks[*net].id);
                let actual = match store.transact(|tx| ipam.release(tx, scope, Ipv4Addr::from(address))) {
                    Ok(_) => Outcome::Released,
                    Err(error) if error.kind() == "not-found" => Outcome::NotFound,
                    Err(error) => return Err(TestCaseError::fail(format!("release in: {error}"))),
                };
                (expected, actual)
            }
        };
        prop_assert_eq!(&actual, &expected, "after {:?}", op);

        // Invariants, read back from the store.
        let (all, blocks) = store.query(|tx| Ok((tx.list_leases(None)?, tx.list_blocks(None)?))).unwrap();
        let (leases, scoped): (Vec<_>, Vec<_>) = all.into_iter().partition(|l| l.network.is_none());
        let in_scopes: BTreeSet<(usize, u32)> = scoped
            .iter()
            .map(|l| (networks.iter().position(|n| Some(n.id) == l.network).unwrap(), u32::from(l.address)))
            .collect();
        prop_assert_eq!(in_scopes.len(), scoped.len(), "no address leased twice in one network");
        prop_assert_eq!(&in_scopes, &model.scoped, "the networks' leases, each scope on its own");
        for block in &blocks {
            let occupancy = store.query(|tx| tx.occupancy(block)).unwrap();
            let flat_inside = leases.iter().filter(|l| block.contains(l.address)).count() as u32;
            prop_assert_eq!(occupancy.count(), flat_inside, "a block's occupancy counts the flat pools' leases only");
        }
        let addresses: BTreeSet<u32> = leases.iter().map(|l| u32::from(l.address)).collect();
        prop_assert_eq!(addresses.len(), leases.len(), "no address leased twice");
        for lease in &leases {
            prop_assert!(
                blocks.iter().any(|b| b.owner == lease.owner && b.contains(lease.address)),
                "{} outside its owner's blocks",
                lease.address
            );
            prop_assert!(!pools[0].is_unleasable(lease.address), "{} must never be leased", lease.address);
        }
        let model_leases: BTreeSet<u32> = model.leases.keys().copied().collect();
        prop_assert_eq!(addresses, model_leases);
        let model_blocks: Vec<u32> = model.blocks.keys().copied().collect();
        prop_assert_eq!(blocks.iter().map(|b| u32::from(b.start)).collect::<Vec<_>>(), model_blocks);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn memory_store_ipam_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(Backend::Memory.open(std::path::Path::new(".")), &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_store_ipam_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(Backend::SqliteMemory.open(std::path::Path::new(".")), &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn postgres_store_ipam_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(Backend::Postgres.open(std::path::Path::new(".")), &ops)?;
    }
}
