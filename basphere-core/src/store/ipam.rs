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
    fn get_lease(&self, address: Ipv4Addr) -> Result<Option<Lease>>;
    /// Leases ordered by address, of one owner or of all.
    fn list_leases(&self, owner: Option<&Username>) -> Result<Vec<Lease>>;
    fn leases_of_resource(&self, resource: Uuid) -> Result<Vec<Lease>>;
    /// Which offsets of `block` are leased. Costs at most the block's size, never the pool's.
    fn occupancy(&self, block: &IpBlock) -> Result<Occupancy>;
}

/// Writes of blocks and leases.
///
/// # Contract
///
/// - `insert_block`: `Conflict` when the block overlaps an existing block; `NotFound` when the
///   owner is not an account.
/// - `delete_block`: `NotFound` for an unknown block; `Conflict` while leases remain inside it.
/// - `insert_lease`: `AlreadyExists` when the address is leased (an address is leased at most
///   once); `NotFound` when the owner is not an account.
/// - `set_lease_state`, `delete_lease`: `NotFound` when the address is not leased.
pub trait IpamTx: IpamRead {
    fn insert_block(&mut self, block: &IpBlock) -> Result<()>;
    fn delete_block(&mut self, start: Ipv4Addr) -> Result<()>;
    fn insert_lease(&mut self, lease: &Lease) -> Result<()>;
    fn set_lease_state(&mut self, address: Ipv4Addr, state: LeaseState) -> Result<()>;
    fn delete_lease(&mut self, address: Ipv4Addr) -> Result<()>;
}
