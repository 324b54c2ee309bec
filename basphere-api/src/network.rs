//! Tenant networks (`networks.mode: tenant`): an account's own LANs, each on a VLAN id of its own,
//! behind a router of its own whose WAN address is how the outside sees them.

use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An account's tenant network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkView {
    pub id: Uuid,
    /// The account; the network is known by its name.
    pub owner: String,
    /// The LANs, in the configuration's order; every tenant has the same subnets.
    pub lans: Vec<NetworkLanView>,
    /// The MTU of every LAN.
    pub mtu: u16,
    /// The router's address on the WAN side: what the outside sees the LANs' traffic come from.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "192.0.2.2"))]
    #[serde(serialize_with = "crate::text::ipv4")]
    pub wan_address: Ipv4Addr,
    /// The prefix length of the WAN network (`wan_address/wan_prefix`); null when the server's
    /// tenant networks are off.
    #[cfg_attr(feature = "openapi", schema(example = 24))]
    pub wan_prefix: Option<u8>,
    /// pending, ready, failed, deleting or deleted.
    pub state: String,
    /// Why making or removing it failed.
    pub reason: Option<String>,
    /// What the router holds for it, asked when one network is shown; null in lists, which do not
    /// ask the router.
    pub router: Option<RouterView>,
    #[serde(serialize_with = "crate::text::time")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::text::time")]
    pub updated_at: DateTime<Utc>,
}

/// One LAN of a tenant network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkLanView {
    /// Its name on the router (`lan1`).
    pub name: String,
    /// Its VLAN id on the switch, the tenant's own.
    pub vlan: u16,
    /// Its subnet.
    #[cfg_attr(feature = "openapi", schema(example = "10.0.1.0/24"))]
    pub cidr: String,
    /// The router's address on it: the LAN's gateway.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "10.0.1.1"))]
    #[serde(serialize_with = "crate::text::ipv4")]
    pub gateway: Ipv4Addr,
}

/// What a network's router holds, read from the router when asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouterView {
    /// The router backend (`linux`).
    pub backend: String,
    /// in-place (everything the network asks for), absent (nothing of the tenant's), drifted
    /// (something else than asked) or unreachable (the router could not be asked).
    pub state: String,
    /// What differs (drifted), or why the router could not be asked (unreachable).
    pub detail: Option<String>,
}
