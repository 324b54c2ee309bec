//! IPAM records: address blocks, leases, and which offsets of a block are leased.

use std::net::Ipv4Addr;

use crate::error::Result;
use crate::model::*;
use crate::validate::Username;
use uuid::Uuid;

/// Reads of blocks and leases.
pub trait IpamRead {
    /// Blocks ordered by start address, of one pool or of all.
    fn list_blocks(&self, pool: Option<&str>) -> Result<Vec<IpBlock>>;
    /// The owner's blocks ordered by start address.
    fn blocks_of(&self, owner: &Username) -> Result<Vec<IpBlock>>;
    /// The lease of `address` in a scope: the flat pools (`None`) or one tenant network.
    fn get_lease(&self, network: Option<Uuid>, address: Ipv4Addr) -> Result<Option<Lease>>;
    /// Leases of one owner or of all, the flat pools' first, each scope's ordered by address
    /// (scopes by network id).
    fn list_leases(&self, owner: Option<&Username>) -> Result<Vec<Lease>>;
    /// The leases of one tenant network, ordered by address.
    fn leases_in_network(&self, network: Uuid) -> Result<Vec<Lease>>;
    fn leases_of_resource(&self, resource: Uuid) -> Result<Vec<Lease>>;
    /// Which offsets of `block` (of the flat pools) are leased. Costs at most the block's size,
    /// never the pool's.
    fn occupancy(&self, block: &IpBlock) -> Result<Occupancy>;
}

/// Writes of blocks and leases.
///
/// # Contract
///
/// - `insert_block`: `Conflict` when the block overlaps an existing block; `NotFound` when the
///   owner is not an account.
/// - `delete_block`: `NotFound` for an unknown block; `Conflict` while leases remain inside it.
/// - `insert_lease`: `AlreadyExists` when the address is leased in the lease's scope (an
///   address is leased at most once in the flat pools, and at most once in each tenant
///   network; scopes are independent); `NotFound` when the owner is not an account.
/// - `set_lease_state`, `delete_lease`: `NotFound` when the address is not leased in that
///   scope.
pub trait IpamTx: IpamRead {
    fn insert_block(&mut self, block: &IpBlock) -> Result<()>;
    fn delete_block(&mut self, start: Ipv4Addr) -> Result<()>;
    fn insert_lease(&mut self, lease: &Lease) -> Result<()>;
    fn set_lease_state(&mut self, network: Option<Uuid>, address: Ipv4Addr, state: LeaseState) -> Result<()>;
    fn delete_lease(&mut self, network: Option<Uuid>, address: Ipv4Addr) -> Result<()>;
}
