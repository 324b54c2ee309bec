//! Tenant network records in memory.

use std::collections::HashSet;

use uuid::Uuid;

use super::{after, page, remember, ReadTx, State, WriteTx};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::{NetworkFilter, NetworksRead, NetworksTx};
use crate::validate::Username;

macro_rules! reads {
    ($ty:ty) => {
        impl NetworksRead for $ty {
            fn get_network(&self, id: Uuid) -> Result<Option<Network>> {
                Ok(self.state().networks.get(&id).cloned())
            }
            fn network_of(&self, owner: &Username) -> Result<Option<Network>> {
                Ok(self.state().networks.values().find(|n| n.is_live() && n.owner == *owner).cloned())
            }
            fn list_networks(&self, filter: &NetworkFilter) -> Result<Vec<Network>> {
                Ok(page(
                    after(&self.state().networks, filter.after)
                        .filter(|n| {
                            filter.owner.as_ref().is_none_or(|o| n.owner == *o)
                                && (filter.include_deleted || n.is_live())
                        })
                        .cloned(),
                    filter.limit,
                ))
            }
        }
    };
}

reads!(ReadTx<'_>);
reads!(WriteTx<'_>);

impl State {
    /// What the store's constraints say of `network` beside every other network.
    fn check_network(&self, network: &Network) -> Result<()> {
        if !network.is_live() {
            return Ok(());
        }
        let mut own = HashSet::new();
        for vlan in network.vlans() {
            if !own.insert(vlan) {
                return Err(Error::already_exists("vlan", vlan));
            }
        }
        for other in self.networks.values().filter(|n| n.is_live() && n.id != network.id) {
            if other.owner == network.owner {
                return Err(Error::already_exists("network", &network.owner));
            }
            if let Some(vlan) = other.vlans().find(|vlan| own.contains(vlan)) {
                return Err(Error::already_exists("vlan", vlan));
            }
            if other.wan_address == network.wan_address {
                return Err(Error::already_exists("wan address", network.wan_address));
            }
        }
        Ok(())
    }
}

impl NetworksTx for WriteTx<'_> {
    fn insert_network(&mut self, network: &Network) -> Result<()> {
        if self.state.networks.contains_key(&network.id) {
            return Err(Error::already_exists("network", network.id));
        }
        self.state.check_network(network)?;
        self.state.networks.insert(network.id, network.clone());
        remember!(self, networks, network.id, None::<Network>);
        Ok(())
    }

    fn update_network(&mut self, network: &Network) -> Result<()> {
        if !self.state.networks.contains_key(&network.id) {
            return Err(Error::not_found("network", network.id));
        }
        self.state.check_network(network)?;
        let previous = self.state.networks.insert(network.id, network.clone());
        remember!(self, networks, network.id, previous);
        Ok(())
    }
}
