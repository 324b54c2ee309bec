//! Blocks and leases in memory, with per-block occupancy kept up to date so an allocation
//! reads one block, never the pool.

use std::net::Ipv4Addr;

use uuid::Uuid;

use super::{ReadTx, State, WriteTx};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::{IpamRead, IpamTx};
use crate::validate::Username;

macro_rules! reads {
    ($ty:ty) => {
        impl IpamRead for $ty {
            fn list_blocks(&self, pool: Option<&str>) -> Result<Vec<IpBlock>> {
                Ok(self
                    .state()
                    .blocks
                    .values()
                    .filter(|(b, _)| pool.is_none_or(|p| b.pool == p))
                    .map(|(b, _)| b.clone())
                    .collect())
            }
            fn blocks_of(&self, owner: &Username) -> Result<Vec<IpBlock>> {
                let state = self.state();
                Ok(state
                    .blocks_by_owner
                    .get(owner)
                    .into_iter()
                    .flatten()
                    .map(|start| state.blocks[start].0.clone())
                    .collect())
            }
            fn get_lease(&self, network: Option<Uuid>, address: Ipv4Addr) -> Result<Option<Lease>> {
                Ok(self.state().leases.get(&(network, u32::from(address))).cloned())
            }
            fn list_leases(&self, owner: Option<&Username>) -> Result<Vec<Lease>> {
                let state = self.state();
                Ok(match owner {
                    None => {
                        let mut all: Vec<Lease> = state.leases.values().cloned().collect();
                        all.sort_by_key(super::lease_key);
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
                let state = self.state();
                Ok(state
                    .leases_by_resource
                    .get(&resource)
                    .into_iter()
                    .flatten()
                    .map(|a| state.leases[a].clone())
                    .collect())
            }
            fn leases_in_network(&self, network: Uuid) -> Result<Vec<Lease>> {
                let mut found: Vec<Lease> =
                    self.state().leases.values().filter(|l| l.network == Some(network)).cloned().collect();
                found.sort_by_key(super::lease_key);
                Ok(found)
            }
            fn occupancy(&self, block: &IpBlock) -> Result<Occupancy> {
                let state = self.state();
                match state.blocks.get(&u32::from(block.start)) {
                    Some((stored, occupancy)) if stored.size == block.size => Ok(occupancy.clone()),
                    _ => {
                        // Not a stored block: compute from the leases in its range.
                        let mut occupancy = Occupancy::new(block.size);
                        let start = u32::from(block.start);
                        let range = start..=u32::from(block.end());
                        for (_, address) in state.leases.keys().filter(|(n, a)| n.is_none() && range.contains(a)) {
                            occupancy.set(address - start);
                        }
                        Ok(occupancy)
                    }
                }
            }
        }
    };
}

reads!(ReadTx<'_>);
reads!(WriteTx<'_>);

impl IpamTx for WriteTx<'_> {
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
        for (_, address) in self.state.leases.keys().filter(|(n, a)| n.is_none() && (start..=end).contains(a)) {
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
        let key = super::lease_key(lease);
        if !self.state.users.contains_key(&lease.owner) {
            return Err(Error::not_found("user", &lease.owner));
        }
        if self.state.leases.contains_key(&key) {
            return Err(Error::already_exists("lease", lease.address));
        }
        self.state.put_lease(lease.clone());
        self.undo.push(Box::new(move |state: &mut State| {
            state.remove_lease(key);
        }));
        Ok(())
    }

    fn set_lease_state(&mut self, network: Option<Uuid>, address: Ipv4Addr, lease_state: LeaseState) -> Result<()> {
        let key = (network, u32::from(address));
        let lease = self.state.leases.get_mut(&key).ok_or_else(|| Error::not_found("lease", address))?;
        let previous = std::mem::replace(&mut lease.state, lease_state);
        self.undo.push(Box::new(move |state: &mut State| {
            if let Some(lease) = state.leases.get_mut(&key) {
                lease.state = previous;
            }
        }));
        Ok(())
    }

    fn delete_lease(&mut self, network: Option<Uuid>, address: Ipv4Addr) -> Result<()> {
        let lease =
            self.state.remove_lease((network, u32::from(address))).ok_or_else(|| Error::not_found("lease", address))?;
        self.undo.push(Box::new(move |state: &mut State| state.put_lease(lease)));
        Ok(())
    }
}
