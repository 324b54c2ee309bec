//! `MemoryStore`: a complete in-memory `Store`, the reference model the durable stores are
//! compared with. Transactions apply writes in place and undo them on error.
//!
//! One file per aggregate, like the store traits: each implements its read trait for both
//! transaction kinds (through the `reads!` macro of the file, as a read inside a write sees the
//! write's own changes) and its write trait for `WriteTx`.

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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Mutex;

use uuid::Uuid;

use crate::error::Result;
use crate::model::*;
use crate::store::*;
use crate::validate::{ResourceName, Username};

/// An in-memory store. Cheap to create; state is lost when it is dropped.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

type Undo = Box<dyn FnOnce(&mut State) + Send>;

/// A lease's key: its scope (none for the flat pools, else the tenant network) and address.
/// Ordered as the stores list leases: the flat pools' first, then by network, then by address.
type LeaseKey = (Option<Uuid>, u32);

fn lease_key(lease: &Lease) -> LeaseKey {
    (lease.network, u32::from(lease.address))
}

#[derive(Default)]
struct State {
    users: BTreeMap<Username, User>,
    registrations: BTreeMap<Uuid, RegistrationRequest>,
    key_changes: BTreeMap<Uuid, KeyChangeRequest>,
    tokens: BTreeMap<Uuid, ApiToken>,
    web_sessions: BTreeMap<Uuid, WebSession>,
    vms: BTreeMap<Uuid, Vm>,
    clusters: BTreeMap<Uuid, Cluster>,
    networks: BTreeMap<Uuid, Network>,
    operations: BTreeMap<Uuid, Operation>,
    /// Claims by operation, kept apart from the operations so `update_operation` cannot touch
    /// them. An entry stays after a release to remember the fence.
    claims: BTreeMap<Uuid, operations::ClaimRecord>,
    audit: Vec<AuditEvent>,
    outbox: BTreeMap<Uuid, OutboxMessage>,
    /// Duty name -> (holder, expires_at).
    duties: BTreeMap<String, (String, Timestamp)>,
    quota_overrides: BTreeMap<Username, QuotaOverride>,
    blocks: BTreeMap<u32, (IpBlock, Occupancy)>,
    blocks_by_owner: HashMap<Username, BTreeSet<u32>>,
    /// A hash map: leasing and releasing must not slow down as the pool fills. Keyed by scope
    /// (the flat pools, or a tenant network) and address.
    leases: HashMap<LeaseKey, Lease>,
    leases_by_owner: HashMap<Username, BTreeSet<LeaseKey>>,
    leases_by_resource: HashMap<Uuid, BTreeSet<LeaseKey>>,
    idempotency: BTreeMap<(Username, String), IdempotencyRecord>,
}

impl State {
    fn put_block(&mut self, block: IpBlock, occupancy: Occupancy) {
        let start = u32::from(block.start);
        self.blocks_by_owner.entry(block.owner.clone()).or_default().insert(start);
        self.blocks.insert(start, (block, occupancy));
    }

    fn remove_block(&mut self, start: u32) -> Option<(IpBlock, Occupancy)> {
        let removed = self.blocks.remove(&start)?;
        remove_index(&mut self.blocks_by_owner, &removed.0.owner, start);
        Some(removed)
    }

    fn block_containing(&mut self, address: u32) -> Option<&mut (IpBlock, Occupancy)> {
        let (_, entry) = self.blocks.range_mut(..=address).next_back()?;
        entry.0.contains(Ipv4Addr::from(address)).then_some(entry)
    }

    fn put_lease(&mut self, lease: Lease) {
        let key = lease_key(&lease);
        if key.0.is_none() {
            if let Some((block, occupancy)) = self.block_containing(key.1) {
                let offset = key.1 - u32::from(block.start);
                occupancy.set(offset);
            }
        }
        match self.leases_by_owner.get_mut(&lease.owner) {
            Some(keys) => {
                keys.insert(key);
            }
            None => {
                self.leases_by_owner.insert(lease.owner.clone(), BTreeSet::from([key]));
            }
        }
        self.leases_by_resource.entry(lease.resource.id).or_default().insert(key);
        self.leases.insert(key, lease);
    }

    fn remove_lease(&mut self, key: LeaseKey) -> Option<Lease> {
        let lease = self.leases.remove(&key)?;
        if key.0.is_none() {
            if let Some((block, occupancy)) = self.block_containing(key.1) {
                let offset = key.1 - u32::from(block.start);
                occupancy.clear(offset);
            }
        }
        remove_index(&mut self.leases_by_owner, &lease.owner, key);
        remove_index(&mut self.leases_by_resource, &lease.resource.id, key);
        Some(lease)
    }

    fn live_vm_named(&self, owner: &Username, name: &ResourceName) -> Option<&Vm> {
        self.vms.values().find(|vm| vm.is_live() && vm.owner == *owner && vm.name == *name)
    }

    fn live_cluster_named(&self, owner: &Username, name: &ResourceName) -> Option<&Cluster> {
        self.clusters.values().find(|c| c.is_live() && c.owner == *owner && c.name == *name)
    }
}

fn remove_index<K: std::hash::Hash + Eq, V: Ord>(index: &mut HashMap<K, BTreeSet<V>>, key: &K, value: V) {
    if let Some(set) = index.get_mut(key) {
        set.remove(&value);
        if set.is_empty() {
            index.remove(key);
        }
    }
}

fn page<T: Clone>(items: impl Iterator<Item = T>, limit: Option<usize>) -> Vec<T> {
    items.take(limit.unwrap_or(usize::MAX)).collect()
}

fn after<T>(map: &BTreeMap<Uuid, T>, after: Option<Uuid>) -> impl Iterator<Item = &T> {
    use std::ops::Bound;
    let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
    map.range((lower, Bound::Unbounded)).map(|(_, value)| value)
}

/// A read-only transaction.
struct ReadTx<'a> {
    state: &'a State,
}

/// A write transaction: writes apply in place, each pushing how to undo it.
struct WriteTx<'a> {
    state: &'a mut State,
    undo: Vec<Undo>,
}

impl ReadTx<'_> {
    fn state(&self) -> &State {
        self.state
    }
}

impl WriteTx<'_> {
    fn state(&self) -> &State {
        self.state
    }
}

impl Store for MemoryStore {
    fn backend_name(&self) -> &'static str {
        "memory"
    }

    fn read(&self, f: &mut dyn FnMut(&dyn StoreRead) -> Result<()>) -> Result<()> {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&ReadTx { state: &state })
    }

    fn write(&self, f: &mut dyn FnMut(&mut dyn StoreTx) -> Result<()>) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut tx = WriteTx { state: &mut state, undo: Vec::new() };
        let result = f(&mut tx);
        if result.is_err() {
            let WriteTx { state, undo } = tx;
            for undo in undo.into_iter().rev() {
                undo(state);
            }
        }
        result
    }
}

/// Restores `map[key]` to `previous` (or removes it) on rollback.
macro_rules! remember {
    ($tx:expr, $field:ident, $key:expr, $previous:expr) => {{
        let key = $key;
        let previous = $previous;
        $tx.undo.push(Box::new(move |state: &mut State| match previous {
            Some(previous) => {
                state.$field.insert(key, previous);
            }
            None => {
                state.$field.remove(&key);
            }
        }));
    }};
}
use remember;
