//! Tenant network records.

use crate::error::Result;
use crate::model::*;
use crate::validate::Username;
use uuid::Uuid;

/// Which networks to list: live ones by default, ordered by id (creation order).
#[derive(Clone, Debug, Default)]
pub struct NetworkFilter {
    pub owner: Option<Username>,
    pub include_deleted: bool,
    pub after: Option<Uuid>,
    pub limit: Option<usize>,
}

/// Reads of network records.
pub trait NetworksRead {
    fn get_network(&self, id: Uuid) -> Result<Option<Network>>;
    /// The owner's live (not deleted) network.
    fn network_of(&self, owner: &Username) -> Result<Option<Network>>;
    fn list_networks(&self, filter: &NetworkFilter) -> Result<Vec<Network>>;
}

/// Writes of network records.
///
/// # Contract
///
/// - `insert_network`: `AlreadyExists` for a taken id, when the owner has a live network, when
///   one of its VLAN ids is held by another live network (or twice by this one), or when its WAN
///   address is another live network's. A deleted network holds no VLAN id or WAN address.
/// - `update_network`: `NotFound` for an unknown network; the same uniqueness. Deleting a
///   network (its state becoming `deleted`) frees its VLAN ids and WAN address in the same
///   transaction.
pub trait NetworksTx: NetworksRead {
    fn insert_network(&mut self, network: &Network) -> Result<()>;
    fn update_network(&mut self, network: &Network) -> Result<()>;
}
