//! A new network's VLAN ids and WAN address: the lowest ones no live network holds. Run inside
//! the transaction that records the network, so two approvals never pick the same ones (writers
//! are serialised, and the store refuses a VLAN id or WAN address held twice).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use crate::config::TenantNetworks;
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::{NetworkFilter, StoreRead};
use crate::validate::Username;

/// The record of `owner`'s new network, `pending`, with the lowest free VLAN ids of
/// `networks.vlan_range` (one per LAN) and the lowest free WAN address. `Exhausted`, naming the
/// key to widen, when the range or the WAN network is used up.
pub fn new_network(tx: &dyn StoreRead, config: &TenantNetworks, owner: &Username) -> Result<Network> {
    let live = tx.list_networks(&NetworkFilter::default())?;
    let held_vlans: BTreeSet<u16> = live.iter().flat_map(Network::vlans).collect();
    let held_wan: BTreeSet<Ipv4Addr> = live.iter().map(|network| network.wan_address).collect();

    let mut free = config.vlans.clone().filter(|vlan| !held_vlans.contains(vlan));
    let mut lans = Vec::with_capacity(config.lans.len());
    for lan in &config.lans {
        let Some(vlan) = free.next() else {
            return Err(Error::Exhausted(format!(
                "every VLAN id of networks.vlan_range ({}-{}) is held by the {} tenant networks; widen the range",
                config.vlans.start(),
                config.vlans.end(),
                live.len()
            )));
        };
        lans.push(NetworkLan { name: lan.name.clone(), vlan, cidr: lan.cidr.network(), gateway: lan.gateway });
    }
    let wan_address = free_wan_address(config, &held_wan).ok_or_else(|| {
        Error::Exhausted(format!(
            "every address of networks.wan.cidr ({}) is a tenant router's; widen the WAN network",
            config.wan.cidr
        ))
    })?;
    let at = now();
    Ok(Network {
        id: Uuid::now_v7(),
        owner: owner.clone(),
        lans,
        mtu: config.mtu,
        wan_address,
        state: NetworkState::Pending,
        reason: None,
        created_at: at,
        updated_at: at,
    })
}

/// The lowest host address of the WAN network that is neither its gateway nor held.
fn free_wan_address(config: &TenantNetworks, held: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let network: Ipv4Network = config.wan.cidr.network();
    let (first, last) = (u32::from(network.network()), u32::from(network.broadcast()));
    let hosts = if network.prefix() >= 31 { first..=last } else { first + 1..=last - 1 };
    hosts.map(Ipv4Addr::from).find(|address| Some(*address) != config.wan.gateway && !held.contains(address))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreExt;
    use crate::testing::{tenant_networks, user};
    use crate::MemoryStore;

    #[test]
    fn a_full_wan_network_is_refused_naming_its_key_and_the_gateway_is_never_given() {
        let mut config = tenant_networks(2001..=2999);
        // A /30: hosts .1 and .2; .1 is the gateway, so one router fits.
        config.wan.cidr = "198.51.100.0/30".parse().unwrap();
        config.wan.gateway = Some("198.51.100.1".parse().unwrap());
        let store = MemoryStore::new();
        let (first, second) = (user("first", 1), user("second", 2));
        let made = store
            .transact(|tx| {
                tx.insert_user(&first)?;
                tx.insert_user(&second)?;
                let network = new_network(tx, &config, &first.username)?;
                tx.insert_network(&network)?;
                Ok(network)
            })
            .unwrap();
        assert_eq!(made.wan_address.to_string(), "198.51.100.2");
        match store.query(|tx| new_network(tx, &config, &second.username)) {
            Err(Error::Exhausted(message)) => {
                assert!(message.contains("networks.wan.cidr") && message.contains("198.51.100.0/30"), "{message}")
            }
            other => panic!("a full WAN network must be refused, got {other:?}"),
        }
    }
}
