//! The `Store` trait: where the platform's state lives, and its unit of atomicity.

use std::net::Ipv4Addr;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::*;
use crate::validate::{ResourceName, Username};

/// Which VMs to list. Results are ordered by id (creation order); `after` is the last id of the
/// previous page.
#[derive(Clone, Debug, Default)]
pub struct VmFilter {
    pub owner: Option<Username>,
    pub state: Option<VmState>,
    /// Include records in state `deleted` (history); off by default.
    pub include_deleted: bool,
    pub after: Option<Uuid>,
    pub limit: Option<usize>,
}

/// Which clusters to list, like [`VmFilter`].
#[derive(Clone, Debug, Default)]
pub struct ClusterFilter {
    pub owner: Option<Username>,
    pub include_deleted: bool,
    pub after: Option<Uuid>,
    pub limit: Option<usize>,
}

/// Which operations to list, ordered by id (creation order).
#[derive(Clone, Debug, Default)]
pub struct OperationFilter {
    pub owner: Option<Username>,
    pub resource: Option<Uuid>,
    /// Only operations not yet succeeded or failed.
    pub unfinished: bool,
    pub after: Option<Uuid>,
    pub limit: Option<usize>,
}

/// Which audit events to list, ordered by id (time order).
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub after: Option<Uuid>,
    pub limit: Option<usize>,
}

/// Reads, inside a consistent snapshot.
pub trait StoreRead {
    fn get_user(&self, username: &Username) -> Result<Option<User>>;
    fn user_by_uid(&self, uid: u32) -> Result<Option<User>>;
    /// The account whose SSH key has this fingerprint.
    fn user_by_key_fingerprint(&self, fingerprint: &str) -> Result<Option<User>>;
    /// All accounts ordered by username.
    fn list_users(&self) -> Result<Vec<User>>;

    fn get_registration(&self, id: Uuid) -> Result<Option<RegistrationRequest>>;
    /// Newest first.
    fn list_registrations(&self, status: Option<RequestStatus>) -> Result<Vec<RegistrationRequest>>;
    fn get_key_change(&self, id: Uuid) -> Result<Option<KeyChangeRequest>>;
    /// Newest first.
    fn list_key_changes(&self, status: Option<RequestStatus>) -> Result<Vec<KeyChangeRequest>>;

    fn get_token(&self, id: Uuid) -> Result<Option<ApiToken>>;
    fn token_by_hash(&self, secret_hash: &str) -> Result<Option<ApiToken>>;
    fn list_tokens(&self, owner: &Username) -> Result<Vec<ApiToken>>;

    fn get_vm(&self, id: Uuid) -> Result<Option<Vm>>;
    /// The live (not deleted) VM with this name.
    fn vm_by_name(&self, owner: &Username, name: &ResourceName) -> Result<Option<Vm>>;
    fn list_vms(&self, filter: &VmFilter) -> Result<Vec<Vm>>;

    fn get_cluster(&self, id: Uuid) -> Result<Option<Cluster>>;
    fn cluster_by_name(&self, owner: &Username, name: &ResourceName) -> Result<Option<Cluster>>;
    fn list_clusters(&self, filter: &ClusterFilter) -> Result<Vec<Cluster>>;

    fn get_operation(&self, id: Uuid) -> Result<Option<Operation>>;
    fn list_operations(&self, filter: &OperationFilter) -> Result<Vec<Operation>>;

    fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>>;

    fn quota_override(&self, owner: &Username) -> Result<Option<QuotaOverride>>;
    /// What `owner` holds now: live VMs and clusters, their sizes, and leased addresses.
    fn usage(&self, owner: &Username) -> Result<Usage>;

    /// Blocks ordered by start address, of one pool or of all.
    fn list_blocks(&self, pool: Option<&str>) -> Result<Vec<IpBlock>>;
    /// The owner's blocks ordered by start address.
    fn blocks_of(&self, owner: &Username) -> Result<Vec<IpBlock>>;
    fn get_lease(&self, address: Ipv4Addr) -> Result<Option<Lease>>;
    /// Leases ordered by address, of one owner or of all.
    fn list_leases(&self, owner: Option<&Username>) -> Result<Vec<Lease>>;
    fn leases_of_resource(&self, resource: Uuid) -> Result<Vec<Lease>>;
    /// Which offsets of `block` are leased. Costs at most the block's size, never the pool's.
    fn occupancy(&self, block: &IpBlock) -> Result<Occupancy>;

    fn get_idempotency(&self, owner: &Username, key: &str) -> Result<Option<IdempotencyRecord>>;
}

/// Writes, inside a transaction. Every constraint below is enforced by the store itself.
pub trait StoreTx: StoreRead {
    /// `AlreadyExists` for a taken username, uid or SSH key fingerprint.
    fn insert_user(&mut self, user: &User) -> Result<()>;
    /// `NotFound` for an unknown user; the same uniqueness as `insert_user`.
    fn update_user(&mut self, user: &User) -> Result<()>;
    /// Removes the account, its tokens and quota override. `Conflict` while it holds blocks,
    /// leases, or live VMs or clusters.
    fn delete_user(&mut self, username: &Username) -> Result<()>;

    /// `AlreadyExists` when a pending request has the same username or email.
    fn insert_registration(&mut self, request: &RegistrationRequest) -> Result<()>;
    fn update_registration(&mut self, request: &RegistrationRequest) -> Result<()>;
    /// `AlreadyExists` when the user has a pending key change.
    fn insert_key_change(&mut self, request: &KeyChangeRequest) -> Result<()>;
    fn update_key_change(&mut self, request: &KeyChangeRequest) -> Result<()>;

    /// `AlreadyExists` for a duplicate secret hash.
    fn insert_token(&mut self, token: &ApiToken) -> Result<()>;
    fn update_token(&mut self, token: &ApiToken) -> Result<()>;

    /// `AlreadyExists` when the owner has a live VM of that name.
    fn insert_vm(&mut self, vm: &Vm) -> Result<()>;
    fn update_vm(&mut self, vm: &Vm) -> Result<()>;
    fn insert_cluster(&mut self, cluster: &Cluster) -> Result<()>;
    fn update_cluster(&mut self, cluster: &Cluster) -> Result<()>;

    fn insert_operation(&mut self, operation: &Operation) -> Result<()>;
    fn update_operation(&mut self, operation: &Operation) -> Result<()>;

    fn append_audit(&mut self, event: &AuditEvent) -> Result<()>;

    /// `None` removes the override.
    fn set_quota_override(&mut self, owner: &Username, quota: Option<&QuotaOverride>) -> Result<()>;

    /// `Conflict` when the block overlaps an existing block.
    fn insert_block(&mut self, block: &IpBlock) -> Result<()>;
    /// `NotFound` for an unknown block; `Conflict` while leases remain inside it.
    fn delete_block(&mut self, start: Ipv4Addr) -> Result<()>;
    /// `AlreadyExists` when the address is leased: an address is leased at most once.
    fn insert_lease(&mut self, lease: &Lease) -> Result<()>;
    fn set_lease_state(&mut self, address: Ipv4Addr, state: LeaseState) -> Result<()>;
    /// `NotFound` when the address is not leased.
    fn delete_lease(&mut self, address: Ipv4Addr) -> Result<()>;

    /// `AlreadyExists` when the owner already used the key.
    fn insert_idempotency(&mut self, record: &IdempotencyRecord) -> Result<()>;
}

/// Durable platform state.
///
/// # Contract
///
/// - `write` runs its closure inside one transaction: either every write it made is committed,
///   or (when it returns an error, or the process dies) none is. This is the unit of atomicity
///   that covers "check quota + lease address + record resource".
/// - Writers are serialised: two `write` calls never interleave, so a check made inside the
///   closure still holds when it commits. A closure may be run more than once when the backend
///   must retry (e.g. a busy database), so it must not have effects outside the store.
/// - `read` sees a consistent snapshot including everything committed before it started.
/// - What `write` committed survives a restart of the process (for durable backends).
/// - Constraints named on [`StoreTx`] are enforced by the store, not by its callers: a violation
///   is an `AlreadyExists`/`Conflict`/`NotFound` error, never a silent overwrite.
/// - Lookups of something absent return `Ok(None)`; updates of something absent are `NotFound`.
/// - Every other failure is `Error::Backend`.
pub trait Store: Send + Sync {
    /// A short name of the backend (`memory`, `sqlite`).
    fn backend_name(&self) -> &'static str;
    fn read(&self, f: &mut dyn FnMut(&dyn StoreRead) -> Result<()>) -> Result<()>;
    fn write(&self, f: &mut dyn FnMut(&mut dyn StoreTx) -> Result<()>) -> Result<()>;
}

/// Typed conveniences over [`Store`].
pub trait StoreExt: Store {
    /// Runs a read and returns its value.
    fn query<T>(&self, mut f: impl FnMut(&dyn StoreRead) -> Result<T>) -> Result<T> {
        let mut out = None;
        self.read(&mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        Ok(out.expect("read closure ran"))
    }

    /// Runs a transaction and returns its value.
    fn transact<T>(&self, mut f: impl FnMut(&mut dyn StoreTx) -> Result<T>) -> Result<T> {
        let mut out = None;
        self.write(&mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        Ok(out.expect("write closure ran"))
    }

    fn user(&self, username: &Username) -> Result<User> {
        self.query(|tx| tx.get_user(username))?.ok_or_else(|| Error::not_found("user", username))
    }

    fn vm(&self, owner: &Username, name: &ResourceName) -> Result<Vm> {
        self.query(|tx| tx.vm_by_name(owner, name))?.ok_or_else(|| Error::not_found("vm", name))
    }

    fn operation(&self, id: Uuid) -> Result<Operation> {
        self.query(|tx| tx.get_operation(id))?.ok_or_else(|| Error::not_found("operation", id))
    }
}

impl<S: Store + ?Sized> StoreExt for S {}
