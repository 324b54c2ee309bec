//! `MemoryStore`: a complete in-memory `Store`, the reference model the durable stores are
//! compared with. Transactions apply writes in place and undo them on error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Mutex;

use uuid::Uuid;

use crate::error::{Error, Result};
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

#[derive(Default)]
struct State {
    users: BTreeMap<Username, User>,
    registrations: BTreeMap<Uuid, RegistrationRequest>,
    key_changes: BTreeMap<Uuid, KeyChangeRequest>,
    tokens: BTreeMap<Uuid, ApiToken>,
    vms: BTreeMap<Uuid, Vm>,
    clusters: BTreeMap<Uuid, Cluster>,
    operations: BTreeMap<Uuid, Operation>,
    audit: Vec<AuditEvent>,
    quota_overrides: BTreeMap<Username, QuotaOverride>,
    blocks: BTreeMap<u32, (IpBlock, Occupancy)>,
    blocks_by_owner: HashMap<Username, BTreeSet<u32>>,
    /// A hash map: leasing and releasing must not slow down as the pool fills.
    leases: HashMap<u32, Lease>,
    leases_by_owner: HashMap<Username, BTreeSet<u32>>,
    leases_by_resource: HashMap<Uuid, BTreeSet<u32>>,
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
        let address = u32::from(lease.address);
        if let Some((block, occupancy)) = self.block_containing(address) {
            let offset = address - u32::from(block.start);
            occupancy.set(offset);
        }
        match self.leases_by_owner.get_mut(&lease.owner) {
            Some(addresses) => {
                addresses.insert(address);
            }
            None => {
                self.leases_by_owner.insert(lease.owner.clone(), BTreeSet::from([address]));
            }
        }
        self.leases_by_resource.entry(lease.resource.id).or_default().insert(address);
        self.leases.insert(address, lease);
    }

    fn remove_lease(&mut self, address: u32) -> Option<Lease> {
        let lease = self.leases.remove(&address)?;
        if let Some((block, occupancy)) = self.block_containing(address) {
            let offset = address - u32::from(block.start);
            occupancy.clear(offset);
        }
        remove_index(&mut self.leases_by_owner, &lease.owner, address);
        remove_index(&mut self.leases_by_resource, &lease.resource.id, address);
        Some(lease)
    }

    fn live_vm_named(&self, owner: &Username, name: &ResourceName) -> Option<&Vm> {
        self.vms.values().find(|vm| vm.is_live() && vm.owner == *owner && vm.name == *name)
    }

    fn live_cluster_named(&self, owner: &Username, name: &ResourceName) -> Option<&Cluster> {
        self.clusters.values().find(|c| c.is_live() && c.owner == *owner && c.name == *name)
    }
}

fn remove_index<K: std::hash::Hash + Eq>(index: &mut HashMap<K, BTreeSet<u32>>, key: &K, value: u32) {
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

struct ReadTx<'a> {
    state: &'a State,
}

struct WriteTx<'a> {
    state: &'a mut State,
    undo: Vec<Undo>,
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

macro_rules! delegate_read {
    ($ty:ty, $state:ident => $expr:expr) => {
        impl StoreRead for $ty {
            fn get_user(&self, username: &Username) -> Result<Option<User>> {
                let $state = self;
                Ok($expr.users.get(username).cloned())
            }
            fn user_by_uid(&self, uid: u32) -> Result<Option<User>> {
                let $state = self;
                Ok($expr.users.values().find(|u| u.uid == Some(uid)).cloned())
            }
            fn user_by_key_fingerprint(&self, fingerprint: &str) -> Result<Option<User>> {
                let $state = self;
                Ok($expr.users.values().find(|u| u.ssh_key.fingerprint() == fingerprint).cloned())
            }
            fn list_users(&self) -> Result<Vec<User>> {
                let $state = self;
                Ok($expr.users.values().cloned().collect())
            }
            fn get_registration(&self, id: Uuid) -> Result<Option<RegistrationRequest>> {
                let $state = self;
                Ok($expr.registrations.get(&id).cloned())
            }
            fn list_registrations(&self, status: Option<RequestStatus>) -> Result<Vec<RegistrationRequest>> {
                let $state = self;
                Ok($expr
                    .registrations
                    .values()
                    .rev()
                    .filter(|r| status.is_none_or(|s| r.status == s))
                    .cloned()
                    .collect())
            }
            fn get_key_change(&self, id: Uuid) -> Result<Option<KeyChangeRequest>> {
                let $state = self;
                Ok($expr.key_changes.get(&id).cloned())
            }
            fn list_key_changes(&self, status: Option<RequestStatus>) -> Result<Vec<KeyChangeRequest>> {
                let $state = self;
                Ok($expr.key_changes.values().rev().filter(|r| status.is_none_or(|s| r.status == s)).cloned().collect())
            }
            fn get_token(&self, id: Uuid) -> Result<Option<ApiToken>> {
                let $state = self;
                Ok($expr.tokens.get(&id).cloned())
            }
            fn token_by_hash(&self, secret_hash: &str) -> Result<Option<ApiToken>> {
                let $state = self;
                Ok($expr.tokens.values().find(|t| t.secret_hash == secret_hash).cloned())
            }
            fn list_tokens(&self, owner: &Username) -> Result<Vec<ApiToken>> {
                let $state = self;
                Ok($expr.tokens.values().filter(|t| t.owner == *owner).cloned().collect())
            }
            fn get_vm(&self, id: Uuid) -> Result<Option<Vm>> {
                let $state = self;
                Ok($expr.vms.get(&id).cloned())
            }
            fn vm_by_name(&self, owner: &Username, name: &ResourceName) -> Result<Option<Vm>> {
                let $state = self;
                Ok($expr.live_vm_named(owner, name).cloned())
            }
            fn list_vms(&self, filter: &VmFilter) -> Result<Vec<Vm>> {
                let $state = self;
                Ok(page(
                    after(&$expr.vms, filter.after)
                        .filter(|vm| {
                            filter.owner.as_ref().is_none_or(|o| vm.owner == *o)
                                && filter.state.is_none_or(|s| vm.state == s)
                                && (filter.include_deleted || vm.is_live())
                        })
                        .cloned(),
                    filter.limit,
                ))
            }
            fn get_cluster(&self, id: Uuid) -> Result<Option<Cluster>> {
                let $state = self;
                Ok($expr.clusters.get(&id).cloned())
            }
            fn cluster_by_name(&self, owner: &Username, name: &ResourceName) -> Result<Option<Cluster>> {
                let $state = self;
                Ok($expr.live_cluster_named(owner, name).cloned())
            }
            fn list_clusters(&self, filter: &ClusterFilter) -> Result<Vec<Cluster>> {
                let $state = self;
                Ok(page(
                    after(&$expr.clusters, filter.after)
                        .filter(|c| {
                            filter.owner.as_ref().is_none_or(|o| c.owner == *o)
                                && (filter.include_deleted || c.is_live())
                        })
                        .cloned(),
                    filter.limit,
                ))
            }
            fn get_operation(&self, id: Uuid) -> Result<Option<Operation>> {
                let $state = self;
                Ok($expr.operations.get(&id).cloned())
            }
            fn list_operations(&self, filter: &OperationFilter) -> Result<Vec<Operation>> {
                let $state = self;
                Ok(page(
                    after(&$expr.operations, filter.after)
                        .filter(|op| {
                            filter.owner.as_ref().is_none_or(|o| op.owner == *o)
                                && filter.resource.is_none_or(|r| op.resource.id == r)
                                && (!filter.unfinished || !op.state.is_finished())
                        })
                        .cloned(),
                    filter.limit,
                ))
            }
            fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
                let $state = self;
                Ok(page(
                    $expr
                        .audit
                        .iter()
                        .filter(|event| {
                            filter.actor.as_ref().is_none_or(|a| event.actor == *a)
                                && filter.after.is_none_or(|after| event.id > after)
                        })
                        .cloned(),
                    filter.limit,
                ))
            }
            fn quota_override(&self, owner: &Username) -> Result<Option<QuotaOverride>> {
                let $state = self;
                Ok($expr.quota_overrides.get(owner).copied())
            }
            fn usage(&self, owner: &Username) -> Result<Usage> {
                let $state = self;
                let state = $expr;
                let mut usage = Usage::default();
                for vm in state.vms.values().filter(|vm| vm.is_live() && vm.owner == *owner) {
                    usage.vms += 1;
                    usage.vcpus += u64::from(vm.cpu);
                    usage.memory_mb += vm.memory_mb;
                    usage.disk_gb += vm.disk_gb;
                }
                usage.clusters = state.clusters.values().filter(|c| c.is_live() && c.owner == *owner).count() as u64;
                usage.ips = state.leases_by_owner.get(owner).map_or(0, |set| set.len() as u64);
                Ok(usage)
            }
            fn list_blocks(&self, pool: Option<&str>) -> Result<Vec<IpBlock>> {
                let $state = self;
                Ok($expr
                    .blocks
                    .values()
                    .filter(|(b, _)| pool.is_none_or(|p| b.pool == p))
                    .map(|(b, _)| b.clone())
                    .collect())
            }
            fn blocks_of(&self, owner: &Username) -> Result<Vec<IpBlock>> {
                let $state = self;
                let state = $expr;
                Ok(state
                    .blocks_by_owner
                    .get(owner)
                    .into_iter()
                    .flatten()
                    .map(|start| state.blocks[start].0.clone())
                    .collect())
            }
            fn get_lease(&self, address: Ipv4Addr) -> Result<Option<Lease>> {
                let $state = self;
                Ok($expr.leases.get(&u32::from(address)).cloned())
            }
            fn list_leases(&self, owner: Option<&Username>) -> Result<Vec<Lease>> {
                let $state = self;
                let state = $expr;
                Ok(match owner {
                    None => {
                        let mut all: Vec<Lease> = state.leases.values().cloned().collect();
                        all.sort_by_key(|lease| u32::from(lease.address));
                        all
                    }
                    Some(owner) => state
                        .leases_by_owner
                        .get(owner)
                        .into_iter()
                        .flatten()
                        .map(|a| state.leases[a].clone())
                        .collect(),
                })
            }
            fn leases_of_resource(&self, resource: Uuid) -> Result<Vec<Lease>> {
                let $state = self;
                let state = $expr;
                Ok(state
                    .leases_by_resource
                    .get(&resource)
                    .into_iter()
                    .flatten()
                    .map(|a| state.leases[a].clone())
                    .collect())
            }
            fn get_idempotency(&self, owner: &Username, key: &str) -> Result<Option<IdempotencyRecord>> {
                let $state = self;
                Ok($expr.idempotency.get(&(owner.clone(), key.to_owned())).cloned())
            }
            fn occupancy(&self, block: &IpBlock) -> Result<Occupancy> {
                let $state = self;
                let state = $expr;
                match state.blocks.get(&u32::from(block.start)) {
                    Some((stored, occupancy)) if stored.size == block.size => Ok(occupancy.clone()),
                    _ => {
                        // Not a stored block: compute from the leases in its range.
                        let mut occupancy = Occupancy::new(block.size);
                        let start = u32::from(block.start);
                        for address in state.leases.keys().filter(|a| (start..=u32::from(block.end())).contains(*a)) {
                            occupancy.set(address - start);
                        }
                        Ok(occupancy)
                    }
                }
            }
        }
    };
}

delegate_read!(ReadTx<'_>, tx => tx.state);
delegate_read!(WriteTx<'_>, tx => &*tx.state);

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

impl WriteTx<'_> {
    fn check_user_unique(&self, user: &User) -> Result<()> {
        for other in self.state.users.values().filter(|other| other.username != user.username) {
            if other.ssh_key.fingerprint() == user.ssh_key.fingerprint() {
                return Err(Error::already_exists("ssh key", user.ssh_key.fingerprint()));
            }
            if user.uid.is_some() && other.uid == user.uid {
                return Err(Error::already_exists("uid", user.uid.unwrap_or_default()));
            }
        }
        Ok(())
    }
}

impl StoreTx for WriteTx<'_> {
    fn insert_user(&mut self, user: &User) -> Result<()> {
        if self.state.users.contains_key(&user.username) {
            return Err(Error::already_exists("user", &user.username));
        }
        self.check_user_unique(user)?;
        self.state.users.insert(user.username.clone(), user.clone());
        remember!(self, users, user.username.clone(), None::<User>);
        Ok(())
    }

    fn update_user(&mut self, user: &User) -> Result<()> {
        if !self.state.users.contains_key(&user.username) {
            return Err(Error::not_found("user", &user.username));
        }
        self.check_user_unique(user)?;
        let previous = self.state.users.insert(user.username.clone(), user.clone());
        remember!(self, users, user.username.clone(), previous);
        Ok(())
    }

    fn delete_user(&mut self, username: &Username) -> Result<()> {
        if !self.state.users.contains_key(username) {
            return Err(Error::not_found("user", username));
        }
        let holds_vm = self.state.vms.values().any(|vm| vm.is_live() && vm.owner == *username);
        let holds_cluster = self.state.clusters.values().any(|c| c.is_live() && c.owner == *username);
        if holds_vm
            || holds_cluster
            || self.state.blocks_by_owner.contains_key(username)
            || self.state.leases_by_owner.contains_key(username)
        {
            return Err(Error::Conflict(format!("user {username} still owns VMs, clusters or addresses")));
        }
        let previous = self.state.users.remove(username);
        remember!(self, users, username.clone(), previous);
        let tokens: Vec<Uuid> = self.state.tokens.values().filter(|t| t.owner == *username).map(|t| t.id).collect();
        for id in tokens {
            let previous = self.state.tokens.remove(&id);
            remember!(self, tokens, id, previous);
        }
        let previous = self.state.quota_overrides.remove(username);
        remember!(self, quota_overrides, username.clone(), previous);
        Ok(())
    }

    fn insert_registration(&mut self, request: &RegistrationRequest) -> Result<()> {
        if self.state.registrations.contains_key(&request.id) {
            return Err(Error::already_exists("registration", request.id));
        }
        check_pending_registration(self.state, request)?;
        self.state.registrations.insert(request.id, request.clone());
        remember!(self, registrations, request.id, None::<RegistrationRequest>);
        Ok(())
    }

    fn update_registration(&mut self, request: &RegistrationRequest) -> Result<()> {
        if !self.state.registrations.contains_key(&request.id) {
            return Err(Error::not_found("registration", request.id));
        }
        check_pending_registration(self.state, request)?;
        let previous = self.state.registrations.insert(request.id, request.clone());
        remember!(self, registrations, request.id, previous);
        Ok(())
    }

    fn insert_key_change(&mut self, request: &KeyChangeRequest) -> Result<()> {
        if self.state.key_changes.contains_key(&request.id) {
            return Err(Error::already_exists("key change", request.id));
        }
        check_pending_key_change(self.state, request)?;
        self.state.key_changes.insert(request.id, request.clone());
        remember!(self, key_changes, request.id, None::<KeyChangeRequest>);
        Ok(())
    }

    fn update_key_change(&mut self, request: &KeyChangeRequest) -> Result<()> {
        if !self.state.key_changes.contains_key(&request.id) {
            return Err(Error::not_found("key change", request.id));
        }
        check_pending_key_change(self.state, request)?;
        let previous = self.state.key_changes.insert(request.id, request.clone());
        remember!(self, key_changes, request.id, previous);
        Ok(())
    }

    fn insert_token(&mut self, token: &ApiToken) -> Result<()> {
        if self.state.tokens.contains_key(&token.id)
            || self.state.tokens.values().any(|t| t.secret_hash == token.secret_hash)
        {
            return Err(Error::already_exists("token", token.id));
        }
        if !self.state.users.contains_key(&token.owner) {
            return Err(Error::not_found("user", &token.owner));
        }
        self.state.tokens.insert(token.id, token.clone());
        remember!(self, tokens, token.id, None::<ApiToken>);
        Ok(())
    }

    fn update_token(&mut self, token: &ApiToken) -> Result<()> {
        if !self.state.tokens.contains_key(&token.id) {
            return Err(Error::not_found("token", token.id));
        }
        if self.state.tokens.values().any(|t| t.id != token.id && t.secret_hash == token.secret_hash) {
            return Err(Error::already_exists("token", token.id));
        }
        let previous = self.state.tokens.insert(token.id, token.clone());
        remember!(self, tokens, token.id, previous);
        Ok(())
    }

    fn insert_vm(&mut self, vm: &Vm) -> Result<()> {
        if self.state.vms.contains_key(&vm.id) {
            return Err(Error::already_exists("vm", vm.id));
        }
        if vm.is_live() && self.state.live_vm_named(&vm.owner, &vm.name).is_some() {
            return Err(Error::already_exists("vm", &vm.name));
        }
        self.state.vms.insert(vm.id, vm.clone());
        remember!(self, vms, vm.id, None::<Vm>);
        Ok(())
    }

    fn update_vm(&mut self, vm: &Vm) -> Result<()> {
        if !self.state.vms.contains_key(&vm.id) {
            return Err(Error::not_found("vm", vm.id));
        }
        if vm.is_live() && self.state.live_vm_named(&vm.owner, &vm.name).is_some_and(|other| other.id != vm.id) {
            return Err(Error::already_exists("vm", &vm.name));
        }
        let previous = self.state.vms.insert(vm.id, vm.clone());
        remember!(self, vms, vm.id, previous);
        Ok(())
    }

    fn insert_cluster(&mut self, cluster: &Cluster) -> Result<()> {
        if self.state.clusters.contains_key(&cluster.id) {
            return Err(Error::already_exists("cluster", cluster.id));
        }
        if cluster.is_live() && self.state.live_cluster_named(&cluster.owner, &cluster.name).is_some() {
            return Err(Error::already_exists("cluster", &cluster.name));
        }
        self.state.clusters.insert(cluster.id, cluster.clone());
        remember!(self, clusters, cluster.id, None::<Cluster>);
        Ok(())
    }

    fn update_cluster(&mut self, cluster: &Cluster) -> Result<()> {
        if !self.state.clusters.contains_key(&cluster.id) {
            return Err(Error::not_found("cluster", cluster.id));
        }
        if cluster.is_live()
            && self.state.live_cluster_named(&cluster.owner, &cluster.name).is_some_and(|other| other.id != cluster.id)
        {
            return Err(Error::already_exists("cluster", &cluster.name));
        }
        let previous = self.state.clusters.insert(cluster.id, cluster.clone());
        remember!(self, clusters, cluster.id, previous);
        Ok(())
    }

    fn insert_operation(&mut self, operation: &Operation) -> Result<()> {
        if self.state.operations.contains_key(&operation.id) {
            return Err(Error::already_exists("operation", operation.id));
        }
        self.state.operations.insert(operation.id, operation.clone());
        remember!(self, operations, operation.id, None::<Operation>);
        Ok(())
    }

    fn update_operation(&mut self, operation: &Operation) -> Result<()> {
        if !self.state.operations.contains_key(&operation.id) {
            return Err(Error::not_found("operation", operation.id));
        }
        let previous = self.state.operations.insert(operation.id, operation.clone());
        remember!(self, operations, operation.id, previous);
        Ok(())
    }

    fn append_audit(&mut self, event: &AuditEvent) -> Result<()> {
        if self.state.audit.iter().any(|e| e.id == event.id) {
            return Err(Error::already_exists("audit event", event.id));
        }
        let index = self.state.audit.partition_point(|e| e.id < event.id);
        self.state.audit.insert(index, event.clone());
        let id = event.id;
        self.undo.push(Box::new(move |state: &mut State| state.audit.retain(|e| e.id != id)));
        Ok(())
    }

    fn set_quota_override(&mut self, owner: &Username, quota: Option<&QuotaOverride>) -> Result<()> {
        if !self.state.users.contains_key(owner) {
            return Err(Error::not_found("user", owner));
        }
        let previous = match quota {
            Some(quota) => self.state.quota_overrides.insert(owner.clone(), *quota),
            None => self.state.quota_overrides.remove(owner),
        };
        remember!(self, quota_overrides, owner.clone(), previous);
        Ok(())
    }

    fn insert_block(&mut self, block: &IpBlock) -> Result<()> {
        if !self.state.users.contains_key(&block.owner) {
            return Err(Error::not_found("user", &block.owner));
        }
        let (start, end) = (u32::from(block.start), u32::from(block.end()));
        let overlapping =
            self.state.blocks.range(..=end).next_back().filter(|(_, (other, _))| u32::from(other.end()) >= start);
        if let Some((_, (other, _))) = overlapping {
            return Err(Error::Conflict(format!(
                "block {}/{} overlaps the block at {} of {}",
                block.start, block.size, other.start, other.owner
            )));
        }
        let mut occupancy = Occupancy::new(block.size);
        for address in self.state.leases.keys().filter(|a| (start..=end).contains(*a)) {
            occupancy.set(address - start);
        }
        self.state.put_block(block.clone(), occupancy);
        self.undo.push(Box::new(move |state: &mut State| {
            state.remove_block(start);
        }));
        Ok(())
    }

    fn delete_block(&mut self, start: Ipv4Addr) -> Result<()> {
        let raw = u32::from(start);
        let Some((_, occupancy)) = self.state.blocks.get(&raw) else {
            return Err(Error::not_found("block", start));
        };
        if occupancy.count() > 0 {
            return Err(Error::Conflict(format!("block {start} still has leased addresses")));
        }
        let (block, occupancy) = self.state.remove_block(raw).expect("checked above");
        self.undo.push(Box::new(move |state: &mut State| state.put_block(block, occupancy)));
        Ok(())
    }

    fn insert_lease(&mut self, lease: &Lease) -> Result<()> {
        let address = u32::from(lease.address);
        if !self.state.users.contains_key(&lease.owner) {
            return Err(Error::not_found("user", &lease.owner));
        }
        if self.state.leases.contains_key(&address) {
            return Err(Error::already_exists("lease", lease.address));
        }
        self.state.put_lease(lease.clone());
        self.undo.push(Box::new(move |state: &mut State| {
            state.remove_lease(address);
        }));
        Ok(())
    }

    fn set_lease_state(&mut self, address: Ipv4Addr, lease_state: LeaseState) -> Result<()> {
        let lease = self.state.leases.get_mut(&u32::from(address)).ok_or_else(|| Error::not_found("lease", address))?;
        let previous = std::mem::replace(&mut lease.state, lease_state);
        let key = u32::from(address);
        self.undo.push(Box::new(move |state: &mut State| {
            if let Some(lease) = state.leases.get_mut(&key) {
                lease.state = previous;
            }
        }));
        Ok(())
    }

    fn insert_idempotency(&mut self, record: &IdempotencyRecord) -> Result<()> {
        let key = (record.owner.clone(), record.key.clone());
        if self.state.idempotency.contains_key(&key) {
            return Err(Error::already_exists("idempotency key", &record.key));
        }
        self.state.idempotency.insert(key.clone(), record.clone());
        remember!(self, idempotency, key, None::<IdempotencyRecord>);
        Ok(())
    }

    fn delete_lease(&mut self, address: Ipv4Addr) -> Result<()> {
        let lease = self.state.remove_lease(u32::from(address)).ok_or_else(|| Error::not_found("lease", address))?;
        self.undo.push(Box::new(move |state: &mut State| state.put_lease(lease)));
        Ok(())
    }
}

fn check_pending_registration(state: &State, request: &RegistrationRequest) -> Result<()> {
    if request.status != RequestStatus::Pending {
        return Ok(());
    }
    let clash = state.registrations.values().find(|other| {
        other.id != request.id
            && other.status == RequestStatus::Pending
            && (other.username == request.username || other.email.matches(&request.email))
    });
    match clash {
        Some(_) => Err(Error::already_exists("pending registration", &request.username)),
        None => Ok(()),
    }
}

fn check_pending_key_change(state: &State, request: &KeyChangeRequest) -> Result<()> {
    if request.status != RequestStatus::Pending {
        return Ok(());
    }
    let clash = state.key_changes.values().any(|other| {
        other.id != request.id && other.status == RequestStatus::Pending && other.username == request.username
    });
    if clash {
        Err(Error::already_exists("pending key change", &request.username))
    } else {
        Ok(())
    }
}
