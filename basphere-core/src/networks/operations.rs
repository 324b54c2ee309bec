//! The network operations' handlers: making a tenant's network (its router, through the
//! [`TenantRouter`]) and removing it. Approval and purge run the same steps inline
//! ([`make_network`], [`remove_network`]), so a network is made the same way whoever asks.
//! Every step is idempotent: the router's `ensure` and `remove` may be repeated after a crash.

use std::sync::Arc;

use async_trait::async_trait;
use ipnetwork::Ipv4Network;

use crate::config::{NetworksConfig, TenantNetworks};
use crate::error::{Error, Result};
use crate::model::*;
use crate::router::{RouterStatus, TenantLan, TenantRouter, TenantRouterSpec};
use crate::runtime::{OperationContext, OperationHandler, Registry};

pub(crate) const STEP_ROUTER: &str = "tenant router";
pub(crate) const STEP_REMOVE_ROUTER: &str = "remove tenant router";
pub(crate) const STEP_FREE: &str = "free vlans";

pub(crate) const CREATE_STEPS: &[&str] = &[STEP_ROUTER];
pub(crate) const DELETE_STEPS: &[&str] = &[STEP_REMOVE_ROUTER, STEP_FREE];

/// Registers the network operations' handlers.
pub(crate) fn register(registry: &mut Registry, router: &Arc<dyn TenantRouter>) {
    registry.register(OperationKind::CreateNetwork, Create(router.clone()));
    registry.register(OperationKind::DeleteNetwork, Delete(router.clone()));
}

/// `create_network`: the tenant's router, then the network is ready.
struct Create(Arc<dyn TenantRouter>);
/// `delete_network`: the tenant's router removed, then its VLAN ids and WAN address freed.
struct Delete(Arc<dyn TenantRouter>);

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
        let outcome = make_network(ctx, &*self.0, &mut operation, network).await?;
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

/// Makes `network`'s router and records the network ready (step [`STEP_ROUTER`] of
/// `operation`). A failure of the router is recorded on the network (`failed`, with the reason)
/// and answered as `Ok(Err(reason))`; only a lost claim or a store failure is an `Err`.
pub(crate) async fn make_network(
    ctx: &OperationContext<'_>,
    router: &dyn TenantRouter,
    operation: &mut Operation,
    mut network: Network,
) -> Result<std::result::Result<(), String>> {
    operation.start_step(STEP_ROUTER);
    ctx.save(operation).await?;
    if !network.is_live() {
        operation.finish_step(STEP_ROUTER, false);
        return Ok(Err(format!("the network of {} was deleted", network.owner)));
    }
    let outcome = match tenant_settings(&ctx.config().networks) {
        Err(error) => Err(error.to_string()),
        Ok(settings) => {
            let spec = router_spec(&network, settings);
            match router.ensure(&spec).await {
                Ok(status) if status.matches(&spec) => Ok(()),
                Ok(status) => Err(drift(&status, &spec)),
                Err(error) => Err(format!("the {} router failed: {error}", router.backend_name())),
            }
        }
    };
    if let Err(reason) = &outcome {
        operation.append_log([reason.clone()]);
    }
    operation.finish_step(STEP_ROUTER, outcome.is_ok());
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

#[async_trait]
impl OperationHandler for Delete {
    async fn run(&self, ctx: &OperationContext<'_>, mut operation: Operation) -> Result<Operation> {
        let Some(network) = operation_network(ctx, &mut operation).await? else {
            return Ok(operation);
        };
        let outcome = match remove_network(ctx, &*self.0, &mut operation, network).await {
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

/// Removes `network`'s router, then records the network deleted, which frees its VLAN ids and
/// WAN address (steps [`STEP_REMOVE_ROUTER`] and [`STEP_FREE`] of `operation`).
pub(crate) async fn remove_network(
    ctx: &OperationContext<'_>,
    router: &dyn TenantRouter,
    operation: &mut Operation,
    mut network: Network,
) -> Result<()> {
    operation.start_step(STEP_REMOVE_ROUTER);
    ctx.save(operation).await?;
    if network.is_live() {
        if let Err(error) = router.remove(&network.owner).await {
            operation.finish_step(STEP_REMOVE_ROUTER, false);
            return Err(Error::Conflict(format!("removing the {} router failed: {error}", router.backend_name())));
        }
    }
    operation.finish_step(STEP_REMOVE_ROUTER, true);
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
