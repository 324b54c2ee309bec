//! The cluster routes of the HTTP API under `/api/v1`: create, list, show (with conditions),
//! watch (a long poll), kubeconfig, scale and delete. Each handler states who may call it.

use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use basphere_core::model::Cluster;
use basphere_core::platform::{lookup_username, ClusterQuery, CreateCluster, PageRequest};

use crate::auth::Caller;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::problem::{ApiError, ApiResult};
use crate::respond::{accepted, PageJson};
use crate::wire::*;
use crate::AppState;

/// The longest a watch waits for a change: within the server's 30 s answer time.
const MAX_WATCH: Duration = Duration::from_secs(25);

fn query(list: &ListQuery) -> ClusterQuery {
    ClusterQuery { state: list.state.clone(), page: PageRequest { limit: list.limit, after: list.after } }
}

/// Views of `clusters`, with their node addresses.
async fn views(state: &AppState, clusters: &[Cluster]) -> ApiResult<Vec<ClusterView>> {
    let addresses = state.platform.clusters().node_addresses(clusters).await?;
    Ok(clusters
        .iter()
        .map(|c| {
            let mut view = ClusterView::from_core(c);
            view.node_addresses = addresses.get(&c.id).cloned().unwrap_or_default();
            view
        })
        .collect())
}

async fn view(state: &AppState, cluster: &Cluster) -> ApiResult<ClusterView> {
    Ok(views(state, std::slice::from_ref(cluster)).await?.remove(0))
}

/// Your clusters, oldest first. *user*
pub async fn list_clusters(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(list): ApiQuery<ListQuery>,
) -> ApiResult<PageJson<ClusterView>> {
    if list.owner.is_some() {
        return Err(ApiError::invalid("owner is for the admin list (/api/v1/admin/clusters)"));
    }
    let found = state.platform.clusters().list(&caller.actor, Some(caller.own()?), query(&list)).await?;
    let items = views(&state, &found.items).await?;
    Ok(PageJson(Page { items, next: found.next.map(|id| id.to_string()) }))
}

/// Create a cluster: its VIP and node addresses are leased at once, Cluster API builds it in
/// the background. `Idempotency-Key` makes a retry safe. *user*
pub async fn create_cluster(
    caller: Caller,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateClusterRequest>,
) -> ApiResult<Response> {
    let key = headers.get("idempotency-key").map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let request = CreateCluster {
        name: body.name,
        cluster_type: body.cluster_type,
        worker_spec: body.worker_spec,
        workers: body.workers,
    };
    let (cluster, operation, _) =
        state.platform.clusters().create(&caller.actor, caller.own()?, request, key.as_deref()).await?;
    let body = CreateClusterResponse {
        cluster: view(&state, &cluster).await?,
        operation: OperationView::from_core(&operation),
    };
    Ok(accepted(&operation, body))
}

/// One of your clusters, with its conditions. *user*
pub async fn get_cluster(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<ClusterView>> {
    let cluster = state.platform.clusters().get(&caller.actor, caller.own()?, &name).await?;
    Ok(Json(view(&state, &cluster).await?))
}

/// Waits for one of your clusters to change (a long poll): the answer is the cluster once its
/// `updated_at` is after `since`, or as it is when `timeout` passes. *user*
pub async fn watch_cluster(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(watch): ApiQuery<WatchQuery>,
) -> ApiResult<Json<ClusterView>> {
    let timeout = match watch.timeout {
        None => MAX_WATCH,
        Some(seconds @ 1..=25) => Duration::from_secs(seconds),
        Some(other) => return Err(ApiError::invalid(format!("timeout {other} is not accepted: use 1-25 seconds"))),
    };
    let cluster = state
        .platform
        .clusters()
        .watch(&caller.actor, caller.own()?, &name, watch.since, timeout.min(MAX_WATCH))
        .await?;
    Ok(Json(view(&state, &cluster).await?))
}

/// The admin kubeconfig of one of your clusters, once its control plane is up. *user*
pub async fn cluster_kubeconfig(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<KubeconfigView>> {
    let kubeconfig = state.platform.clusters().kubeconfig(&caller.actor, caller.own()?, &name).await?;
    Ok(Json(KubeconfigView { cluster: name, kubeconfig }))
}

/// Change the number of workers of one of your clusters. *user*
pub async fn scale_cluster(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ScaleClusterRequest>,
) -> ApiResult<Response> {
    let operation = state.platform.clusters().scale(&caller.actor, caller.own()?, &name, body.workers).await?;
    Ok(accepted(&operation, OperationView::from_core(&operation)))
}

/// Delete one of your clusters; its addresses are freed once Cluster API removed everything. *user*
pub async fn delete_cluster(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    let operation = state.platform.clusters().delete(&caller.actor, caller.own()?, &name).await?;
    Ok(accepted(&operation, OperationView::from_core(&operation)))
}

/// Every cluster (`?owner=` for one account). *admin*
pub async fn admin_list_clusters(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(list): ApiQuery<ListQuery>,
) -> ApiResult<PageJson<ClusterView>> {
    let owner = list.owner.as_deref().map(lookup_username).transpose()?;
    let found = state.platform.clusters().list(&caller.actor, owner.as_ref(), query(&list)).await?;
    let items = views(&state, &found.items).await?;
    Ok(PageJson(Page { items, next: found.next.map(|id| id.to_string()) }))
}

/// Delete a cluster of an account. *admin*
pub async fn admin_delete_cluster(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((owner, name)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let operation = state.platform.clusters().delete(&caller.actor, &lookup_username(&owner)?, &name).await?;
    Ok(accepted(&operation, OperationView::from_core(&operation)))
}
