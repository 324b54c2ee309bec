//! Tenant networks (`networks.mode: tenant`): a network per account, its LANs on VLAN ids of its
//! own, behind its own router. Approval makes an account's network and purge removes it (see
//! `accounts::operations`); an administrator can make one for an existing account, or delete
//! one nothing is on any more. The router work runs as operations (see `operations`), through
//! the [`TenantRouter`].

mod allocate;
pub(crate) mod operations;

pub use allocate::new_network;
pub use operations::router_spec;

use std::sync::Arc;

use serde_json::json;

use self::operations::{drift, tenant_settings, CREATE_STEPS, DELETE_STEPS};
use crate::accounts::admin::busy as account_busy;
use crate::config::NetworksConfig;
use crate::error::{Error, Result};
use crate::ipam::Ipam;
use crate::model::*;
use crate::router::TenantRouter;
use crate::runtime::authz::{decide, Action, Actor};
use crate::runtime::start::{ensure_idle, on_resource, record_operation};
use crate::runtime::{page, Page, PageRequest, Runtime};
use crate::store::{ClusterFilter, NetworkFilter, StoreExt, StoreRead, StoreTx, VmFilter};
use crate::validate::Username;
use uuid::Uuid;

/// What the router holds for a network, read from the router when asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouterState {
    /// Everything the network asks for is in place.
    InPlace,
    /// The router has nothing of the tenant's.
    Absent,
    /// The router holds something else than asked; what differs.
    Drifted(String),
    /// The router could not be asked; why.
    Unreachable(String),
}

impl RouterState {
    pub fn as_str(&self) -> &'static str {
        match self {
            RouterState::InPlace => "in-place",
            RouterState::Absent => "absent",
            RouterState::Drifted(_) => "drifted",
            RouterState::Unreachable(_) => "unreachable",
        }
    }

    /// What differs, or why the router could not be asked.
    pub fn detail(&self) -> Option<&str> {
        match self {
            RouterState::Drifted(detail) | RouterState::Unreachable(detail) => Some(detail),
            _ => None,
        }
    }
}

/// A network and what its router holds.
#[derive(Clone, Debug)]
pub struct NetworkReport {
    pub network: Network,
    /// The router backend's name (`linux`).
    pub router_backend: &'static str,
    pub router: RouterState,
    /// The prefix length of the router's WAN address (the WAN network's).
    pub wan_prefix: Option<u8>,
}

/// A network and the operation that makes or removes it.
#[derive(Clone, Debug)]
pub struct NetworkChange {
    pub network: Network,
    pub operation: Operation,
}

/// The tenant networks' use cases. Every one takes the [`Actor`], asks [`decide`] and audits
/// what it changes.
pub struct Networks {
    rt: Arc<Runtime>,
    router: Arc<dyn TenantRouter>,
}

impl Networks {
    pub(crate) fn new(rt: Arc<Runtime>, router: Arc<dyn TenantRouter>) -> Self {
        Networks { rt, router }
    }

    /// The tenant router backend.
    pub fn router(&self) -> &Arc<dyn TenantRouter> {
        &self.router
    }

    /// `owner`'s live network with what its router holds: for the account itself or an
    /// administrator.
    pub async fn show(&self, actor: &Actor, owner: &Username) -> Result<NetworkReport> {
        decide(actor, Action::View, Some(owner), "network", owner)?;
        let found = owner.clone();
        let network = self
            .rt
            .read(move |store| store.query(|tx| tx.network_of(&found)))
            .await?
            .ok_or_else(|| self.missing(owner))?;
        Ok(self.report(network).await)
    }

    /// Every live network (`deleted` shows the history), a page at a time: administrators only.
    pub async fn list(&self, actor: &Actor, state: Option<&str>, request: PageRequest) -> Result<Page<Network>> {
        decide(actor, Action::Administer, None, "network", &"")?;
        let limit = request.limit(PageRequest::RESOURCES)?;
        let state = state.map(NetworkState::parse).transpose()?;
        let filter = NetworkFilter {
            owner: None,
            include_deleted: state == Some(NetworkState::Deleted),
            after: request.after,
            limit: Some(limit + 1),
        };
        let mut networks = self.rt.read(move |store| store.query(|tx| tx.list_networks(&filter))).await?;
        if let Some(state) = state {
            networks.retain(|n| n.state == state);
        }
        Ok(page(networks, limit, |n| n.id))
    }

    /// Makes `owner`'s network: administrators only, for an existing account without one (an
    /// account approved before tenant mode), or again for one whose making failed.
    pub async fn create(&self, actor: &Actor, owner: &Username) -> Result<NetworkChange> {
        decide(actor, Action::Administer, None, "network", owner)?;
        let settings = tenant_settings(&self.rt.config.networks)?.clone();
        let (owner, actor) = (owner.clone(), actor.clone());
        let change = self
            .rt
            .db(move |store, _| {
                store.transact(|tx| {
                    let account = tx.get_user(&owner)?.ok_or_else(|| Error::not_found("user", &owner))?;
                    account_busy(&*tx, &owner)?;
                    let network = match tx.network_of(&owner)? {
                        Some(network) if network.state == NetworkState::Failed => {
                            ensure_idle(&*tx, on_resource(network.id), format_args!("the network of {owner}"))?;
                            network
                        }
                        Some(network) => {
                            return Err(Error::Conflict(format!(
                                "{owner} has a network already ({}); delete it first to make it again",
                                network.state
                            )))
                        }
                        None => return start_network(tx, &settings, &account.username, &actor),
                    };
                    let operation = network_operation(OperationKind::CreateNetwork, &network, &actor, CREATE_STEPS);
                    let details = json!({"operation": operation.id, "vlans": network.vlans().collect::<Vec<_>>()});
                    record_operation(tx, &actor, &operation, "network.create", &format!("network/{owner}"), details)?;
                    Ok(NetworkChange { network, operation })
                })
            })
            .await?;
        self.rt.changed.notify_waiters();
        self.rt.spawn_operation(change.operation.id);
        Ok(change)
    }

    /// Deletes `owner`'s network: administrators only, refused while the account has a VM or
    /// cluster (they are on the network) or an operation in progress.
    pub async fn delete(&self, actor: &Actor, owner: &Username) -> Result<NetworkChange> {
        decide(actor, Action::Administer, None, "network", owner)?;
        let (owner, actor) = (owner.clone(), actor.clone());
        let change = self
            .rt
            .db(move |store, _| {
                store.transact(|tx| {
                    let mut network = tx.network_of(&owner)?.ok_or_else(|| Error::not_found("network", &owner))?;
                    account_busy(&*tx, &owner)?;
                    ensure_idle(&*tx, on_resource(network.id), format_args!("the network of {owner}"))?;
                    on_network(&*tx, &owner)?;
                    network.state = NetworkState::Deleting;
                    network.updated_at = now();
                    tx.update_network(&network)?;
                    let operation = network_operation(OperationKind::DeleteNetwork, &network, &actor, DELETE_STEPS);
                    let details = json!({"operation": operation.id});
                    record_operation(tx, &actor, &operation, "network.delete", &format!("network/{owner}"), details)?;
                    Ok(NetworkChange { network, operation })
                })
            })
            .await?;
        self.rt.changed.notify_waiters();
        self.rt.spawn_operation(change.operation.id);
        Ok(change)
    }

    /// The network with what its router holds now.
    async fn report(&self, network: Network) -> NetworkReport {
        let settings = tenant_settings(&self.rt.config.networks).ok();
        let router = match (settings, self.router.status(&network.owner).await) {
            (_, Err(error)) => RouterState::Unreachable(error.to_string()),
            (_, Ok(None)) => RouterState::Absent,
            (None, Ok(Some(_))) => RouterState::Drifted("tenant networks are off (networks.mode: flat)".into()),
            (Some(settings), Ok(Some(status))) => {
                let spec = router_spec(&network, settings);
                if status.matches(&spec) {
                    RouterState::InPlace
                } else {
                    RouterState::Drifted(drift(&status, &spec))
                }
            }
        };
        NetworkReport {
            network,
            router_backend: self.router.backend_name(),
            router,
            wan_prefix: settings.map(|s| s.wan.cidr.prefix_len()),
        }
    }

    fn missing(&self, owner: &Username) -> Error {
        match tenant_settings(&self.rt.config.networks) {
            Ok(_) => Error::not_found("network", owner),
            Err(off) => off,
        }
    }
}

/// Records `owner`'s new network (its VLAN ids and WAN address picked in `tx`) and the operation
/// that makes it, audited as `actor`'s `network.create`; the caller starts the operation once
/// `tx` commits.
pub(crate) fn start_network(
    tx: &mut dyn StoreTx,
    settings: &crate::config::TenantNetworks,
    owner: &Username,
    actor: &Actor,
) -> Result<NetworkChange> {
    let network = new_network(&*tx, settings, owner)?;
    tx.insert_network(&network)?;
    let operation = network_operation(OperationKind::CreateNetwork, &network, actor, CREATE_STEPS);
    let details = json!({"operation": operation.id, "vlans": network.vlans().collect::<Vec<_>>()});
    record_operation(tx, actor, &operation, "network.create", &format!("network/{owner}"), details)?;
    Ok(NetworkChange { network, operation })
}

/// `owner`'s network, which their new VMs and clusters are put on: refused unless it is ready.
fn ready_network(tx: &dyn StoreTx, owner: &Username) -> Result<Network> {
    match tx.network_of(owner)? {
        Some(network) if network.state == NetworkState::Ready => Ok(network),
        Some(network) => Err(Error::Conflict(format!(
            "the network of {owner} is {}{}; VMs and clusters are put on it once it is ready (`basphere network show`)",
            network.state,
            network.reason.as_deref().map(|reason| format!(" ({reason})")).unwrap_or_default(),
        ))),
        None => Err(Error::Conflict(format!(
            "{owner} has no network yet (networks.mode: tenant); an administrator makes it with `basphere admin network create {owner}`"
        ))),
    }
}

/// Where a resource's addresses are leased: the owner's blocks of the flat pools, or one LAN of
/// the owner's tenant network.
pub(crate) enum Scope {
    Flat { ip_quota: u64 },
    Lan { network: Network, lan: String },
}

impl Scope {
    /// Where a new resource of `owner`'s goes: in tenant mode the first LAN of the owner's
    /// network, which must be ready; in flat mode the owner's blocks.
    pub(crate) fn for_new(tx: &dyn StoreTx, config: &NetworksConfig, owner: &Username, ip_quota: u64) -> Result<Scope> {
        match config {
            NetworksConfig::Flat => Ok(Scope::Flat { ip_quota }),
            NetworksConfig::Tenant(_) => {
                let network = ready_network(tx, owner)?;
                let lan = network
                    .lans
                    .first()
                    .ok_or_else(|| Error::Conflict(format!("the network of {owner} has no LAN")))?
                    .name
                    .clone();
                Ok(Scope::Lan { network, lan })
            }
        }
    }

    /// Where the resource `id` already holds addresses (a cluster that grows): the scope of
    /// its leases, whatever the mode is now; `None` when it holds none.
    pub(crate) fn of_resource(tx: &dyn StoreTx, id: Uuid, ip_quota: u64) -> Result<Option<Scope>> {
        let Some(lease) = tx.leases_of_resource(id)?.into_iter().next() else { return Ok(None) };
        let Some(network_id) = lease.network else { return Ok(Some(Scope::Flat { ip_quota })) };
        let network = tx.get_network(network_id)?.ok_or_else(|| Error::not_found("network", network_id))?;
        let lan = lan_of(&network, lease.address)?.name.clone();
        Ok(Some(Scope::Lan { network, lan }))
    }

    /// Leases an address for `resource` of `owner`'s in this scope.
    pub(crate) fn lease(
        &self,
        tx: &mut dyn StoreTx,
        ipam: &dyn Ipam,
        owner: &Username,
        resource: &ResourceRef,
    ) -> Result<Lease> {
        match self {
            Scope::Flat { ip_quota } => ipam.lease(tx, owner, resource, *ip_quota),
            Scope::Lan { network, lan } => ipam.lease_in_network(tx, network, lan, resource),
        }
    }
}

/// The tenant network the resource `id`'s addresses were leased in; `None` for the flat pools'.
pub(crate) fn network_of_resource(tx: &dyn StoreRead, id: Uuid) -> Result<Option<Network>> {
    match tx.leases_of_resource(id)?.into_iter().find_map(|lease| lease.network) {
        None => Ok(None),
        Some(network) => tx.get_network(network)?.map(Some).ok_or_else(|| Error::not_found("network", network)),
    }
}

/// The LAN of `network` that holds `address`.
pub(crate) fn lan_of(network: &Network, address: std::net::Ipv4Addr) -> Result<&NetworkLan> {
    network
        .lans
        .iter()
        .find(|lan| lan.cidr.contains(address))
        .ok_or_else(|| Error::Conflict(format!("{address} is on no LAN of the network of {}", network.owner)))
}

/// How a guest on `network` reaches it from `address`: the LAN's prefix and gateway (the
/// tenant's router), the network's MTU and the LAN's port group.
pub(crate) fn guest_lan(
    config: &NetworksConfig,
    network: &Network,
    address: std::net::Ipv4Addr,
) -> Result<(u8, std::net::Ipv4Addr, u32, String)> {
    let lan = lan_of(network, address)?;
    let settings = tenant_settings(config)?;
    Ok((lan.cidr.prefix(), lan.gateway, u32::from(network.mtu), settings.port_group(network.owner.as_str(), &lan.name)))
}

/// Refuses while `owner` has a live VM or cluster: they are on the network.
fn on_network(tx: &dyn StoreTx, owner: &Username) -> Result<()> {
    let vms = tx.list_vms(&VmFilter { owner: Some(owner.clone()), limit: Some(1), ..VmFilter::default() })?;
    let clusters =
        tx.list_clusters(&ClusterFilter { owner: Some(owner.clone()), limit: Some(1), ..ClusterFilter::default() })?;
    if let Some(vm) = vms.first() {
        return Err(Error::Conflict(format!(
            "the network of {owner} still has the VM {} on it; delete the account's VMs and clusters first",
            vm.name
        )));
    }
    if let Some(cluster) = clusters.first() {
        return Err(Error::Conflict(format!(
            "the network of {owner} still has the cluster {} on it; delete the account's VMs and clusters first",
            cluster.name
        )));
    }
    Ok(())
}

/// An operation on `network`, asked by `actor`.
pub(crate) fn network_operation(kind: OperationKind, network: &Network, actor: &Actor, steps: &[&str]) -> Operation {
    Operation::new(kind, network.owner.clone(), network_resource(network), &actor.name, steps)
}

/// The operation's view of a network.
pub(crate) fn network_resource(network: &Network) -> ResourceRef {
    ResourceRef { kind: ResourceKind::Network, id: network.id, name: network.owner.to_string() }
}
