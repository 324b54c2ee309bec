//! Tenant networks: a network of one account's own, its LANs on VLANs of its own, behind its own
//! router (`networks.mode: tenant`).

use ipnetwork::Ipv4Network;

use super::*;

string_enum!(
    /// Lifecycle of a tenant network.
    NetworkState {
        Pending => "pending",
        Ready => "ready",
        Failed => "failed",
        Deleting => "deleting",
        Deleted => "deleted",
    }
);

/// One LAN of a tenant network: its name on the router (`lan1`), the VLAN id it holds on the
/// distributed switch, its subnet (the same in every tenant) and its gateway, the router.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkLan {
    pub name: String,
    pub vlan: u16,
    pub cidr: Ipv4Network,
    pub gateway: Ipv4Addr,
}

/// The network of one tenant (an account): at most one live network per account.
///
/// A live network holds its VLAN ids (one per LAN) and its router's WAN address: no other live
/// network has them. A deleted one holds neither and stays as history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: Uuid,
    /// The tenant; the network is known by the account's name.
    pub owner: Username,
    pub lans: Vec<NetworkLan>,
    pub mtu: u16,
    /// The router's address on the WAN side (its prefix is the WAN network's).
    pub wan_address: Ipv4Addr,
    pub state: NetworkState,
    /// Human-readable reason when `state` is `failed`.
    pub reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Network {
    pub fn is_live(&self) -> bool {
        self.state != NetworkState::Deleted
    }

    /// The VLAN ids the network holds, in its LANs' order.
    pub fn vlans(&self) -> impl Iterator<Item = u16> + '_ {
        self.lans.iter().map(|lan| lan.vlan)
    }

    /// The LAN named `name`.
    pub fn lan(&self, name: &str) -> Option<&NetworkLan> {
        self.lans.iter().find(|lan| lan.name == name)
    }
}
