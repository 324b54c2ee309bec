//! `BlockIpam`: Basphere's IP allocator. Pools are cut into aligned blocks of a power-of-two
//! size; each user gets blocks (lowest free first, the first block of a pool kept for
//! infrastructure) and every address a resource uses is a lease inside its owner's blocks.
//!
//! All state lives in the store; this crate holds only the configuration and a precomputed
//! mask of the addresses that can never be leased. One allocation reads the owner's blocks and
//! one block-sized occupancy set, so its cost does not grow as the pool fills.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use basphere_core::config::PoolConfig;
use basphere_core::ipam::{AddressInfo, Ipam};
use basphere_core::model::{now, IpBlock, Lease, LeaseState, Network, Occupancy, ResourceRef, Uuid};
use basphere_core::store::{StoreRead, StoreTx};
use basphere_core::validate::Username;
use basphere_core::{Error, Result};

/// The block allocator over a store.
#[derive(Clone, Debug)]
pub struct BlockIpam {
    pools: Vec<PoolConfig>,
    /// Per block start: the offsets that are never leased (network, broadcast, gateway,
    /// reserved). Blocks without any are absent.
    unleasable: HashMap<u32, Occupancy>,
}

impl BlockIpam {
    /// Builds the allocator; every pool must pass its own validation and no two may overlap.
    pub fn new(pools: Vec<PoolConfig>) -> Result<Self> {
        if pools.is_empty() {
            return Err(Error::invalid("network", "at least one pool is needed"));
        }
        for (index, pool) in pools.iter().enumerate() {
            pool.validate(&format!("network.pools[{index}]"))?;
            if let Some(other) =
                pools[..index].iter().find(|other| other.cidr.overlaps(&pool.cidr) || other.name == pool.name)
            {
                return Err(Error::invalid(
                    format!("network.pools[{index}]"),
                    format!(
                        "{} ({}) overlaps or shares its name with {} ({})",
                        pool.name, pool.cidr, other.name, other.cidr
                    ),
                ));
            }
        }
        let mut unleasable: HashMap<u32, Occupancy> = HashMap::new();
        for pool in &pools {
            let special = [pool.cidr.first(), pool.cidr.last(), u32::from(pool.gateway)];
            for address in special.into_iter().chain(pool.reserved.iter().map(|a| u32::from(*a))) {
                let start = block_start(pool, address);
                unleasable.entry(start).or_insert_with(|| Occupancy::new(pool.block_size)).set(address - start);
            }
        }
        Ok(BlockIpam { pools, unleasable })
    }

    fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|pool| pool.name == name)
    }

    /// The lowest free block of the first pool that has one; the first block is never given.
    fn new_block(&self, tx: &mut dyn StoreTx, owner: &Username) -> Result<IpBlock> {
        for pool in &self.pools {
            let size = u64::from(pool.block_size);
            let existing = tx.list_blocks(Some(&pool.name))?;
            let mut candidate = u64::from(pool.cidr.first()) + size;
            let end = u64::from(pool.cidr.last());
            for block in &existing {
                let (start, last) = (u64::from(u32::from(block.start)), u64::from(u32::from(block.end())));
                if start > candidate + size - 1 {
                    break; // a gap before this block
                }
                if last >= candidate {
                    candidate = (last + 1).div_ceil(size) * size;
                }
            }
            if candidate + size - 1 <= end {
                let block = IpBlock {
                    pool: pool.name.clone(),
                    start: Ipv4Addr::from(candidate as u32),
                    size: pool.block_size,
                    owner: owner.clone(),
                    allocated_at: now(),
                };
                tx.insert_block(&block)?;
                return Ok(block);
            }
        }
        Err(Error::Exhausted(format!("no free IP block is left for {owner}; an administrator must add a pool")))
    }

    /// The lowest leasable address of `block`, if any.
    fn free_in(&self, tx: &dyn StoreRead, block: &IpBlock) -> Result<Option<Ipv4Addr>> {
        let mut taken = tx.occupancy(block)?;
        if let Some(mask) = self.unleasable.get(&u32::from(block.start)) {
            if mask.len() == taken.len() {
                taken.union_with(mask);
            }
        }
        Ok(taken.first_free().map(|offset| Ipv4Addr::from(u32::from(block.start) + offset)))
    }
}

fn block_start(pool: &PoolConfig, address: u32) -> u32 {
    let first = pool.cidr.first();
    first + (address - first) / pool.block_size * pool.block_size
}

impl Ipam for BlockIpam {
    fn pools(&self) -> &[PoolConfig] {
        &self.pools
    }

    fn assign_block(&self, tx: &mut dyn StoreTx, owner: &Username) -> Result<IpBlock> {
        match tx.blocks_of(owner)?.into_iter().next() {
            Some(block) => Ok(block),
            None => self.new_block(tx, owner),
        }
    }

    fn lease(&self, tx: &mut dyn StoreTx, owner: &Username, resource: &ResourceRef, ip_quota: u64) -> Result<Lease> {
        if let Some(existing) =
            tx.leases_of_resource(resource.id)?.into_iter().find(|lease| lease.resource == *resource)
        {
            return Ok(existing);
        }
        let blocks = tx.blocks_of(owner)?;
        let mut held = 0u64;
        let mut found = None;
        for block in &blocks {
            held += u64::from(block.size);
            if self.pool(&block.pool).is_none() {
                continue; // a pool that is no longer configured gives no new leases
            }
            if let Some(address) = self.free_in(tx, block)? {
                found = Some((block.pool.clone(), address));
                break;
            }
        }
        let (pool, address) = match found {
            Some(found) => found,
            None if held < ip_quota => {
                let block = self.new_block(tx, owner)?;
                let address = self.free_in(tx, &block)?.ok_or_else(|| Error::Exhausted(format!("the new block {} has no leasable address", block.start)))?;
                (block.pool, address)
            }
            None => {
                return Err(Error::Exhausted(format!(
                    "no free address is left in the {} address(es) of {owner}'s blocks, and the IP quota of {ip_quota} allows no further block",
                    held
                )))
            }
        };
        let lease = Lease {
            address,
            network: None,
            pool,
            owner: owner.clone(),
            resource: resource.clone(),
            state: LeaseState::Reserved,
            created_at: now(),
        };
        tx.insert_lease(&lease)?;
        Ok(lease)
    }

    fn lease_in_network(
        &self,
        tx: &mut dyn StoreTx,
        network: &Network,
        lan: &str,
        resource: &ResourceRef,
    ) -> Result<Lease> {
        if let Some(existing) =
            tx.leases_of_resource(resource.id)?.into_iter().find(|lease| lease.resource == *resource)
        {
            return Ok(existing);
        }
        let Some(subnet) = network.lan(lan) else {
            let names: Vec<&str> = network.lans.iter().map(|lan| lan.name.as_str()).collect();
            return Err(Error::invalid(
                "lan",
                format!("{lan:?} is not a LAN of {}'s network ({})", network.owner, names.join(", ")),
            ));
        };
        let (first, last) = (u32::from(subnet.cidr.network()), u32::from(subnet.cidr.broadcast()));
        let hosts = if subnet.cidr.prefix() >= 31 { first..=last } else { first + 1..=last - 1 };
        // A LAN is at most a few thousand addresses: its leases are read at once.
        let taken: std::collections::HashSet<Ipv4Addr> = tx
            .leases_in_network(network.id)?
            .into_iter()
            .filter(|lease| lease.pool == subnet.name)
            .map(|lease| lease.address)
            .collect();
        let address = hosts
            .map(Ipv4Addr::from)
            .find(|address| *address != subnet.gateway && !taken.contains(address))
            .ok_or_else(|| {
                Error::Exhausted(format!(
                    "no free address is left on {} ({}) of {}'s network",
                    subnet.name, subnet.cidr, network.owner
                ))
            })?;
        let lease = Lease {
            address,
            network: Some(network.id),
            pool: subnet.name.clone(),
            owner: network.owner.clone(),
            resource: resource.clone(),
            state: LeaseState::Reserved,
            created_at: now(),
        };
        tx.insert_lease(&lease)?;
        Ok(lease)
    }

    fn release(&self, tx: &mut dyn StoreTx, network: Option<Uuid>, address: Ipv4Addr) -> Result<Lease> {
        let lease = tx.get_lease(network, address)?.ok_or_else(|| Error::not_found("lease", address))?;
        tx.delete_lease(network, address)?;
        Ok(lease)
    }

    fn release_blocks(&self, tx: &mut dyn StoreTx, owner: &Username) -> Result<Vec<IpBlock>> {
        let blocks = tx.blocks_of(owner)?;
        for block in &blocks {
            tx.delete_block(block.start)?;
        }
        Ok(blocks)
    }

    fn check_allocations(&self, tx: &dyn StoreRead) -> Result<()> {
        let blocks = tx.list_blocks(None)?;
        for block in &blocks {
            let Some(pool) = self.pool(&block.pool) else {
                return Err(Error::Conflict(format!(
                    "block {} of {} is in pool {:?}, which the configuration no longer has",
                    block.start, block.owner, block.pool
                )));
            };
            let start = u32::from(block.start);
            let fits = block.size == pool.block_size
                && pool.cidr.contains(block.start)
                && pool.cidr.contains(block.end())
                && (start - pool.cidr.first()) % pool.block_size == 0
                && start != pool.cidr.first();
            if !fits {
                return Err(Error::Conflict(format!(
                    "block {}/{} of {} does not fit pool {:?} ({}, blocks of {}, first block kept for infrastructure)",
                    block.start, block.size, block.owner, pool.name, pool.cidr, pool.block_size
                )));
            }
        }
        let mut by_owner: HashMap<&Username, Vec<&IpBlock>> = HashMap::new();
        for block in &blocks {
            by_owner.entry(&block.owner).or_default().push(block);
        }
        // A tenant network's leases are checked against its LANs when they are made, not here.
        for lease in tx.list_leases(None)?.into_iter().filter(|lease| lease.network.is_none()) {
            let inside =
                by_owner.get(&lease.owner).is_some_and(|owned| owned.iter().any(|block| block.contains(lease.address)));
            let pool = self.pools.iter().find(|pool| pool.cidr.contains(lease.address));
            if !inside || pool.is_none_or(|pool| pool.is_unleasable(lease.address)) {
                return Err(Error::Conflict(format!(
                    "the lease of {} ({} of {}) would not be valid in this configuration",
                    lease.address, lease.resource.name, lease.owner
                )));
            }
        }
        Ok(())
    }

    fn address_info(&self, address: Ipv4Addr) -> Option<AddressInfo> {
        let pool = self.pools.iter().find(|pool| pool.cidr.contains(address))?;
        Some(AddressInfo {
            pool: pool.name.clone(),
            address,
            prefix_len: pool.cidr.prefix_len(),
            gateway: pool.gateway,
        })
    }
}
