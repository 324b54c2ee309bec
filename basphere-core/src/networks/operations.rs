//! The network operations' handlers: making a tenant's network (its LANs' port groups, through
//! the VM backend's [`Provisioner`], then its router, through the [`TenantRouter`]) and removing
//! it (the router first, then the port groups). Approval and purge run the same steps inline
//! ([`make_network`], [`remove_network`]), so a network is made the same way whoever asks.
//! Every step is idempotent: the router's `ensure` and `remove` may be repeated after a crash.

use std::sync::Arc;

use async_trait::async_trait;
use ipnetwork::Ipv4Network;

use crate::config::{NetworksConfig, TenantNetworks};
use crate::error::{Error, Result};
use crate::model::*;
use crate::provisioner::{PortGroupSpec, Provisioner, TenantPortGroups};
use crate::router::{RouterStatus, TenantLan, TenantRouter, TenantRouterSpec};
use crate::runtime::{OperationContext, OperationHandler, Registry};

pub(crate) const STEP_PORT_GROUPS: &str = "port groups";
pub(crate) const STEP_ROUTER: &str = "tenant router";
pub(crate) const STEP_REMOVE_ROUTER: &str = "remove tenant router";
pub(crate) const STEP_REMOVE_PORT_GROUPS: &str = "remove port groups";
pub(crate) const STEP_FREE: &str = "free vlans";

pub(crate) const CREATE_STEPS: &[&str] = &[STEP_PORT_GROUPS, STEP_ROUTER];
pub(crate) const DELETE_STEPS: &[&str] = &[STEP_REMOVE_ROUTER, STEP_REMOVE_PORT_GROUPS, STEP_FREE];

/// The backends a network is made of: the VM backend makes its port groups, the router its
/// routing.
#[derive(Clone)]
pub(crate) struct NetworkBackends {
    pub provisioner: Arc<dyn Provisioner>,
    pub router: Arc<dyn TenantRouter>,
}

/// Registers the network operations' handlers.
pub(crate) fn register(registry: &mut Registry, backends: &NetworkBackends) {
    registry.register(OperationKind::CreateNetwork, Create(backends.clone()));
    registry.register(OperationKind::DeleteNetwork, Delete(backends.clone()));
}

/// `create_network`: the tenant's port groups and router, then the network is ready.
struct Create(NetworkBackends);
/// `delete_network`: the tenant's router and port groups removed, then its VLAN ids and WAN
/// address freed.
struct Delete(NetworkBackends);

/// `networks.mode: tenant`'s settings, or why there are none.
pub(crate) fn tenant_settings(config: &NetworksConfig) -> Result<&TenantNetworks> {
    match config {
        NetworksConfig::Tenant(tenant) => Ok(tenant),
        NetworksConfig::Flat => Err(Error::NotSupported(
            "tenant networks are off (networks.mode: flat); set networks.mode: tenant to give each account a network"
                .into(),
        )),
    }
}

/// What the router is asked to hold for `network`.
pub fn router_spec(network: &Network, config: &TenantNetworks) -> TenantRouterSpec {
    let with_prefix = |address, prefix| Ipv4Network::new(address, prefix).expect("a prefix of a valid network");
    TenantRouterSpec {
        tenant: network.owner.clone(),
        lans: network
            .lans
            .iter()
            .map(|lan| TenantLan {
                name: lan.name.clone(),
                vlan: lan.vlan,
                gateway: with_prefix(lan.gateway, lan.cidr.prefix()),
            })
            .collect(),
        mtu: network.mtu,
        wan_address: with_prefix(network.wan_address, config.wan.cidr.prefix_len()),
        wan_gateway: config.wan.gateway,
    }
}

/// The port groups of `network`'s LANs on the distributed switch, each on the LAN's VLAN id.
pub fn port_groups(network: &Network, config: &TenantNetworks) -> TenantPortGroups {
    TenantPortGroups {
        tenant: network.owner.clone(),
        switch: config.distributed_switch.clone(),
        port_groups: network
            .lans
            .iter()
            .map(|lan| PortGroupSpec { name: config.port_group(network.owner.as_str(), &lan.name), vlan: lan.vlan })
            .collect(),
    }
}

/// How a router's answer differs from what was asked, for a failed network's reason.
pub(crate) fn drift(status: &RouterStatus, spec: &TenantRouterSpec) -> String {
    let mut missing = Vec::new();
    if status.wan_address != Some(spec.wan_address) {
        missing.push(format!("its WAN address is {:?}, not {}", status.wan_address, spec.wan_address));
    }
    for lan in &spec.lans {
        if !status.lans.iter().any(|(name, gateway)| *name == lan.name && *gateway == Some(lan.gateway)) {
            missing.push(format!("{} lacks {}", lan.name, lan.gateway));
        }
    }
    if !status.rules {
        missing.push("its rules are missing".into());
    }
    if missing.is_empty() {
        missing.push("it holds LANs that were not asked for".into());
    }
    format!("the router does not hold what was asked: {}", missing.join("; "))
}

#[async_trait]
impl OperationHandler for Create {
    async fn run(&self, ctx: &OperationContext<'_>, mut operation: Operation) -> Result<Operation> {
        let Some(network) = operation_network(ctx, &mut operation).await? else {
            return Ok(operation);
        };
        let outcome = make_network(ctx, &self.0, &mut operation, network).await?;
        let again = format!("run `basphere admin network create {}` again to finish", operation.owner);
        end(ctx, operation, outcome, &again).await
    }
}

/// The operation's network; `None` once it is recorded that there is none any more.
async fn operation_network(ctx: &OperationContext<'_>, operation: &mut Operation) -> Result<Option<Network>> {
    let id = operation.resource.id;
    let found = ctx.read(move |tx| tx.get_network(id)).await?;
    if found.is_none() {
        operation.fail("the network no longer exists");
        ctx.save(operation).await?;
    }
    Ok(found)
}

/// Ends `operation`: succeeded, or failed with the reason and how to finish the work.
async fn end(
    ctx: &OperationContext<'_>,
    mut operation: Operation,
    outcome: std::result::Result<(), String>,
    again: &str,
) -> Result<Operation> {
    match outcome {
        Ok(()) => operation.succeed(),
        Err(reason) => operation.fail(format!("{reason}; {again}")),
    }
    ctx.save(&operation).await?;
    Ok(operation)
}

/// Makes `network`'s port groups and router and records the network ready (steps
/// [`STEP_PORT_GROUPS`] and [`STEP_ROUTER`] of `operation`). A failure of either is recorded on
/// the network (`failed`, with the reason) and answered as `Ok(Err(reason))`; only a lost claim
/// or a store failure is an `Err`.
pub(crate) async fn make_network(
    ctx: &OperationContext<'_>,
    backends: &NetworkBackends,
    operation: &mut Operation,
    mut network: Network,
) -> Result<std::result::Result<(), String>> {
    operation.start_step(STEP_PORT_GROUPS);
    ctx.save(operation).await?;
    if !network.is_live() {
        operation.finish_step(STEP_PORT_GROUPS, false);
        return Ok(Err(format!("the network of {} was deleted", network.owner)));
    }
    let outcome = match tenant_settings(&ctx.config().networks) {
        Err(error) => {
            operation.finish_step(STEP_PORT_GROUPS, false);
            Err(error.to_string())
        }
        Ok(settings) => make_steps(ctx, backends, operation, &network, settings).await?,
    };
    if let Err(reason) = &outcome {
        operation.append_log([reason.clone()]);
    }
    network.state = if outcome.is_ok() { NetworkState::Ready } else { NetworkState::Failed };
    network.reason = outcome.clone().err();
    network.updated_at = now();
    ctx.commit(operation, move |commit| {
        // A deletion that started meanwhile wins: the record is left as it is.
        match commit.tx.get_network(network.id)? {
            Some(current) if current.state == NetworkState::Deleting || !current.is_live() => Ok(()),
            _ => commit.tx.update_network(&network),
        }
    })
    .await?;
    Ok(outcome)
}

/// The port groups, then the router; the first that fails ends it with its reason.
async fn make_steps(
    ctx: &OperationContext<'_>,
    backends: &NetworkBackends,
    operation: &mut Operation,
    network: &Network,
    settings: &TenantNetworks,
) -> Result<std::result::Result<(), String>> {
    let provisioner = &*backends.provisioner;
    let groups = port_groups(network, settings);
    if let Err(error) = provisioner.ensure_port_groups(&groups).await {
        operation.finish_step(STEP_PORT_GROUPS, false);
        return Ok(Err(format!("the {} backend could not make the port groups: {error}", provisioner.backend_name())));
    }
    let names: Vec<&str> = groups.port_groups.iter().map(|group| group.name.as_str()).collect();
    operation.append_log([format!("port groups {} on {}", names.join(", "), groups.switch)]);
    operation.finish_step(STEP_PORT_GROUPS, true);
    operation.start_step(STEP_ROUTER);
    ctx.save(operation).await?;
    let router = &*backends.router;
    let spec = router_spec(network, settings);
    let outcome = match router.ensure(&spec).await {
        Ok(status) if status.matches(&spec) => Ok(()),
        Ok(status) => Err(drift(&status, &spec)),
        Err(error) => Err(format!("the {} router failed: {error}", router.backend_name())),
    };
    operation.finish_step(STEP_ROUTER, outcome.is_ok());
    Ok(outcome)
}

#[async_trait]
impl OperationHandler for Delete {
    async fn run(&self, ctx: &OperationContext<'_>, mut operation: Operation) -> Result<Operation> {
        let Some(network) = operation_network(ctx, &mut operation).await? else {
            return Ok(operation);
        };
        let outcome = match remove_network(ctx, &self.0, &mut operation, network).await {
            Ok(()) => Ok(()),
            Err(error) if matches!(error, Error::ClaimLost(_)) => return Err(error),
            Err(error) => {
                operation.append_log([error.to_string()]);
                Err(error.to_string())
            }
        };
        let again = format!("run `basphere admin network delete {}` again to finish", operation.owner);
        end(ctx, operation, outcome, &again).await
    }
}

/// Removes `network`'s router, then its port groups, then records the network deleted, which
/// frees its VLAN ids and WAN address (steps [`STEP_REMOVE_ROUTER`], [`STEP_REMOVE_PORT_GROUPS`]
/// and [`STEP_FREE`] of `operation`).
pub(crate) async fn remove_network(
    ctx: &OperationContext<'_>,
    backends: &NetworkBackends,
    operation: &mut Operation,
    mut network: Network,
) -> Result<()> {
    operation.start_step(STEP_REMOVE_ROUTER);
    ctx.save(operation).await?;
    let router = &*backends.router;
    if network.is_live() {
        if let Err(error) = router.remove(&network.owner).await {
            operation.finish_step(STEP_REMOVE_ROUTER, false);
            return Err(Error::Conflict(format!("removing the {} router failed: {error}", router.backend_name())));
        }
    }
    operation.finish_step(STEP_REMOVE_ROUTER, true);
    operation.start_step(STEP_REMOVE_PORT_GROUPS);
    ctx.save(operation).await?;
    if network.is_live() {
        let provisioner = &*backends.provisioner;
        let settings = tenant_settings(&ctx.config().networks).map_err(|error| {
            operation.finish_step(STEP_REMOVE_PORT_GROUPS, false);
            Error::Conflict(format!(
                "the port groups of {}'s network cannot be named without the tenant networks' settings: {error}",
                network.owner
            ))
        })?;
        if let Err(error) = provisioner.remove_port_groups(&port_groups(&network, settings)).await {
            operation.finish_step(STEP_REMOVE_PORT_GROUPS, false);
            return Err(Error::Conflict(format!(
                "removing the port groups through the {} backend failed: {error}",
                provisioner.backend_name()
            )));
        }
    }
    operation.finish_step(STEP_REMOVE_PORT_GROUPS, true);
    operation.start_step(STEP_FREE);
    operation.finish_step(STEP_FREE, true);
    operation.append_log([format!("removed the network of {}", network.owner)]);
    network.state = NetworkState::Deleted;
    network.reason = None;
    network.updated_at = now();
    ctx.commit(operation, move |commit| {
        if commit.tx.get_network(network.id)?.is_some_and(|n| n.is_live()) {
            commit.tx.update_network(&network)?;
        }
        Ok(())
    })
    .await
}
