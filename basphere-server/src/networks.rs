//! The tenant network routes of the HTTP API under `/api/v1`: the caller's own network, and the
//! administrators' list, show, create and delete of every account's. Each handler states who may
//! call it.

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use basphere_core::config::NetworksConfig;
use basphere_core::platform::{lookup_username, NetworkReport, PageRequest, RouterState};
use basphere_core::{Actor, Config};

use crate::auth::Caller;
use crate::extract::{ApiPath, ApiQuery};
use crate::problem::ApiResult;
use crate::respond::{accepted, page, PageJson};
use crate::wire::*;
use crate::AppState;

/// What an account that is not an administrator reads instead of why its router could not be
/// asked: that reason may carry the router host's internals, so it goes to the log, as a
/// backend's error does in problem documents.
pub const UNREACHABLE_FOR_USERS: &str = "the router could not be asked; the error was logged for the operator";

/// The view of `report` for `actor`: all of it for an administrator; for anyone else, an
/// unreachable router's reason stays in the log.
pub fn network_view(report: &NetworkReport, actor: &Actor) -> NetworkView {
    let mut view = NetworkView::from_core(report);
    if let (RouterState::Unreachable(reason), false) = (&report.router, actor.is_admin()) {
        tracing::warn!(owner = %report.network.owner, %reason, "a tenant router could not be asked");
        if let Some(router) = view.router.as_mut() {
            router.detail = Some(UNREACHABLE_FOR_USERS.to_owned());
        }
    }
    view
}

/// The prefix length of the routers' WAN addresses (the WAN network's), when tenant networks
/// are on.
pub fn wan_prefix(config: &Config) -> Option<u8> {
    match &config.networks {
        NetworksConfig::Tenant(tenant) => Some(tenant.wan.cidr.prefix_len()),
        NetworksConfig::Flat => None,
    }
}

/// Your tenant network: its LANs (VLAN ids, subnets, gateways), MTU, the router's WAN address
/// and what the router holds now. *user*
pub async fn network(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<NetworkView>> {
    let report = state.platform.networks().show(&caller.actor, caller.own()?).await?;
    Ok(Json(network_view(&report, &caller.actor)))
}

/// Every account's tenant network, oldest first, without asking the routers. *admin*
pub async fn admin_list_networks(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<NetworkListQuery>,
) -> ApiResult<PageJson<NetworkView>> {
    let request = PageRequest { limit: query.limit, after: query.after };
    let found = state.platform.networks().list(&caller.actor, query.state.as_deref(), request).await?;
    let prefix = wan_prefix(state.platform.config());
    Ok(page(found, |network| NetworkView { wan_prefix: prefix, ..NetworkView::from_core(&network) }))
}

/// One account's tenant network, with what its router holds now. *admin*
pub async fn admin_get_network(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(owner): ApiPath<String>,
) -> ApiResult<Json<NetworkView>> {
    let report = state.platform.networks().show(&caller.actor, &lookup_username(&owner)?).await?;
    Ok(Json(network_view(&report, &caller.actor)))
}

/// Makes an account's tenant network, or makes again one whose making failed. *admin*
pub async fn admin_create_network(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(owner): ApiPath<String>,
) -> ApiResult<Response> {
    let change = state.platform.networks().create(&caller.actor, &lookup_username(&owner)?).await?;
    Ok(accepted(&change.operation, OperationView::from_core(&change.operation)))
}

/// Deletes an account's tenant network once nothing is on it. *admin*
pub async fn admin_delete_network(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(owner): ApiPath<String>,
) -> ApiResult<Response> {
    let change = state.platform.networks().delete(&caller.actor, &lookup_username(&owner)?).await?;
    Ok(accepted(&change.operation, OperationView::from_core(&change.operation)))
}
