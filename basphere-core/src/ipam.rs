//! The `Ipam` trait: static addresses from per-user blocks of configured pools.

use std::net::Ipv4Addr;

use crate::config::PoolConfig;
use crate::error::Result;
use crate::model::{IpBlock, Lease, Network, ResourceRef};
use crate::store::{StoreRead, StoreTx};
use crate::validate::Username;

/// The network an address lives in, for the guest's static configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressInfo {
    pub pool: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

/// The IP allocator. Every method works inside the caller's store transaction, so an address is
/// leased together with the record that uses it, or not at all.
///
/// # Contract
///
/// - Blocks are aligned ranges of the pool's block size. The first block of every pool is kept
///   for infrastructure and never assigned. `assign_block` gives the lowest free block of the
///   first pool that has one; it is idempotent (an owner with a block gets that block back).
/// - `lease` gives the lowest free address of the owner's blocks in address order. The pool's
///   network and broadcast addresses, its gateway and its reserved addresses are never leased.
///   When every block of the owner is full and the owner's IP quota is larger than the blocks
///   it holds, one more block is assigned. Otherwise the result is `Exhausted`, as it is when an
///   owner has no block or no block is free.
/// - `lease` is idempotent per resource: leasing again for the same resource (kind, id and name)
///   returns the existing lease.
/// - `lease_in_network` gives the lowest free address of one LAN of a tenant network: neither
///   the LAN's network or broadcast address nor its gateway (the router). Tenant networks are
///   scopes of their own: the same address is leased in two networks at once, and a network's
///   leases never touch the flat pools' blocks. It is idempotent per resource as `lease` is, and
///   `Exhausted`, naming the LAN, when the LAN is full. (The IP quota is the caller's check.)
/// - `release` is explicit and only for an address leased in that scope (`NotFound`
///   otherwise); a released address can be leased again.
/// - `release_blocks` frees an owner's blocks; `Conflict` while any of their addresses is leased.
/// - `check_allocations` refuses (`Conflict`, naming the block or lease) a configuration in
///   which an existing block or lease would no longer be valid.
/// - An allocation costs at most a few block-sized steps, however full the pool is.
pub trait Ipam: Send + Sync {
    fn pools(&self) -> &[PoolConfig];
    fn assign_block(&self, tx: &mut dyn StoreTx, owner: &Username) -> Result<IpBlock>;
    fn lease(&self, tx: &mut dyn StoreTx, owner: &Username, resource: &ResourceRef, ip_quota: u64) -> Result<Lease>;
    fn lease_in_network(
        &self,
        tx: &mut dyn StoreTx,
        network: &Network,
        lan: &str,
        resource: &ResourceRef,
    ) -> Result<Lease>;
    /// Releases `address` of the flat pools (`network` none) or of one tenant network.
    fn release(&self, tx: &mut dyn StoreTx, network: Option<uuid::Uuid>, address: Ipv4Addr) -> Result<Lease>;
    fn release_blocks(&self, tx: &mut dyn StoreTx, owner: &Username) -> Result<Vec<IpBlock>>;
    fn check_allocations(&self, tx: &dyn StoreRead) -> Result<()>;
    /// Prefix length and gateway for an address of the flat pools.
    fn address_info(&self, address: Ipv4Addr) -> Option<AddressInfo>;
}
