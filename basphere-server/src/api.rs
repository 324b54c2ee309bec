//! The HTTP API under `/api/v1`: the handlers of VMs, operations, tokens, the caller's account
//! and the administrators' endpoints (their definitions are `basphere_api::endpoints`; the route
//! table is `routes`). Each handler states who may call it in its doc line: *user* (any
//! authenticated account, acting on its own resources) or *admin*.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use basphere_core::model::*;
use basphere_core::platform::{
    bounded, lookup_username, lookup_vm_name, token_expiry, token_scope, Accepted, AuditQuery as AuditRequest,
    CreateVms, NewAccount, PageRequest,
};
use basphere_core::provisioner::PowerAction;
use basphere_core::validate::Username;
use uuid::Uuid;

use crate::auth::Caller;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::problem::{ApiError, ApiResult};
use crate::respond::{accepted, page, ListQueryExt, PageJson};
use crate::wire::*;
use crate::AppState;

/// Who the server believes you are. *user*
pub async fn me(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<MeView>> {
    let account = state.platform.accounts().whoami(&caller.actor).await?;
    Ok(Json(MeView {
        name: caller.actor.name.clone(),
        role: caller.actor.role.as_str().to_owned(),
        source: caller.actor.source.clone(),
        account: account.as_ref().map(UserView::from_core),
    }))
}

/// The OS images and VM specs that may be asked for. *user*
pub async fn catalog(_caller: Caller, State(state): State<AppState>) -> Json<CatalogView> {
    Json(catalog_view(state.platform.config()))
}

/// The catalog of a configuration, as the API and the pages show it.
pub fn catalog_view(config: &basphere_core::Config) -> CatalogView {
    // Specs from the smallest to the largest, as a menu should show them.
    let mut specs: Vec<&VmSpec> = config.vm_specs.values().collect();
    specs.sort_by_key(|s| (s.cpu, s.memory_mb, s.disk_gb, s.key.clone()));
    CatalogView {
        os: config
            .os_images
            .values()
            .map(|os| CatalogOs { key: os.key.clone(), description: os.description.clone() })
            .collect(),
        cluster_types: config
            .cluster_types
            .values()
            .map(|t| CatalogClusterType {
                key: t.key.clone(),
                description: t.description.clone(),
                control_plane_count: t.control_plane_count,
                worker_count: t.worker_count,
                control_plane_spec: t.control_plane_spec.clone(),
                worker_spec: t.worker_spec_default.clone(),
            })
            .collect(),
        node_specs: {
            let mut nodes: Vec<&NodeSpec> = config.node_specs.values().collect();
            nodes.sort_by_key(|s| (s.cpu, s.memory_mb, s.disk_gb, s.key.clone()));
            nodes
                .into_iter()
                .map(|s| CatalogNodeSpec { key: s.key.clone(), cpu: s.cpu, memory_mb: s.memory_mb, disk_gb: s.disk_gb })
                .collect()
        },
        specs: specs
            .into_iter()
            .map(|s| CatalogSpec {
                key: s.key.clone(),
                description: s.description.clone(),
                cpu: s.cpu,
                memory_mb: s.memory_mb,
                disk_gb: s.disk_gb,
            })
            .collect(),
    }
}

/// Your limits and usage. *user*
pub async fn quota(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<QuotaView>> {
    let report = state.platform.accounts().quota(&caller.actor, caller.own()?).await?;
    Ok(Json(QuotaView::from_core(&report)))
}

/// Your VMs. *user*
pub async fn list_vms(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<PageJson<VmView>> {
    if query.owner.is_some() {
        return Err(ApiError::invalid("owner is for the admin list (/api/v1/admin/vms)"));
    }
    let vms = state.platform.vms().list(&caller.actor, Some(caller.own()?), query.vms()).await?;
    Ok(page(vms, VmView::from_owned))
}

async fn create_for(
    state: &AppState,
    caller: &Caller,
    owner: &Username,
    headers: &HeaderMap,
    body: CreateVmsRequest,
) -> ApiResult<Response> {
    // The platform checks the key's rule; bytes that are not text reach it as replacement
    // characters and are refused there.
    let key = headers.get("idempotency-key").map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let request = CreateVms { name: body.name, os: body.os, spec: body.spec, count: body.count };
    let outcome = state.platform.vms().create(&caller.actor, owner, request, key.as_deref()).await?;
    let first = outcome
        .accepted
        .first()
        .map(|a| a.operation.clone())
        .ok_or_else(|| ApiError::from(basphere_core::Error::invalid("count", "nothing to create")))?;
    let body = CreateVmsResponse {
        vms: outcome.accepted.iter().map(|Accepted { vm, .. }| VmView::from_core(vm)).collect(),
        operations: outcome
            .accepted
            .iter()
            .map(|Accepted { operation, .. }| OperationView::from_core(operation))
            .collect(),
    };
    let mut response = accepted(&first, body);
    if outcome.replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Create one VM or a batch of up to 10. Returns 202 with the operations; `Idempotency-Key`
/// makes a retry return the first answer. *user*
pub async fn create_vms(
    caller: Caller,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateVmsRequest>,
) -> ApiResult<Response> {
    let owner = caller.own()?.clone();
    create_for(&state, &caller, &owner, &headers, body).await
}

/// One of your VMs. *user*
pub async fn get_vm(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<VmView>> {
    let vm = state.platform.vms().get(&caller.actor, caller.own()?, &name).await?;
    Ok(Json(VmView::from_core(&vm)))
}

/// Delete one of your VMs; its address is freed once vSphere confirms it is gone. *user*
pub async fn delete_vm(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    let operation = state.platform.vms().delete(&caller.actor, caller.own()?, &lookup_vm_name(&name)?).await?;
    Ok(accepted(&operation, OperationView::from_core(&operation)))
}

fn power_action(action: &str) -> ApiResult<PowerAction> {
    match action {
        "start" => Ok(PowerAction::Start),
        "stop" => Ok(PowerAction::Stop),
        "reboot" => Ok(PowerAction::Reboot),
        other => Err(ApiError::not_found(format!("no action {:?}; use start, stop or reboot", bounded(other)))),
    }
}

/// Start, stop or reboot one of your VMs. *user*
pub async fn vm_action(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((name, action)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let action = power_action(&action)?;
    let operation = state.platform.vms().power(&caller.actor, caller.own()?, &lookup_vm_name(&name)?, action).await?;
    Ok(accepted(&operation, OperationView::from_core(&operation)))
}

/// Your operations, oldest first. *user*
pub async fn list_operations(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<PageJson<OperationView>> {
    let operations = state.platform.runtime().list_operations(&caller.actor, Some(caller.own()?), query.page()).await?;
    Ok(page(operations, OperationView::from_owned))
}

/// One operation: yours, or any for an admin. *user*
pub async fn get_operation(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<OperationView>> {
    let operation = state.platform.runtime().operation(&caller.actor, &id).await?;
    Ok(Json(OperationView::from_core(&operation)))
}

/// Your API tokens (never their secrets). *user*
pub async fn list_tokens(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<Vec<TokenView>>> {
    let tokens = state.platform.credentials().list_tokens(&caller.actor, caller.own()?).await?;
    Ok(Json(tokens.iter().map(TokenView::from_core).collect()))
}

async fn token_for(
    state: &AppState,
    caller: &Caller,
    owner: &Username,
    body: CreateTokenRequest,
) -> ApiResult<Response> {
    let scope = token_scope(body.scope.as_deref())?;
    let expires_at = token_expiry(body.expires_in_days.map(i64::from))?;
    let created =
        state.platform.credentials().create_token(&caller.actor, owner, &body.name, scope, expires_at).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken { token: TokenView::from_core(&created.token), secret: created.secret }),
    )
        .into_response())
}

/// Create an API token; its secret is in this answer only. *user*
pub async fn create_token(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateTokenRequest>,
) -> ApiResult<Response> {
    let owner = caller.own()?.clone();
    token_for(&state, &caller, &owner, body).await
}

/// Revoke one of your tokens (any token, for an admin). *user*
pub async fn revoke_token(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TokenView>> {
    let parsed = Uuid::parse_str(&id).map_err(|_| ApiError::not_found(format!("token not found: {}", bounded(&id))))?;
    let token = state.platform.credentials().revoke_token(&caller.actor, parsed).await?;
    Ok(Json(TokenView::from_core(&token)))
}

/// A single-use link, valid five minutes, that signs a browser in as you (what `basphere web`
/// prints). Any caller; on the bastion, the socket says who you are. *user*
pub async fn create_sign_in_link(caller: Caller, State(state): State<AppState>) -> ApiResult<Response> {
    let link = state.platform.credentials().create_sign_in_link(&caller.actor).await?;
    let view = SignInLinkView {
        url: format!("{}/sign-in/{}", state.public_url, link.secret),
        expires_at: link.session.expires_at,
    };
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Every account. *admin*
pub async fn admin_list_users(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<Vec<UserView>>> {
    let users = state.platform.accounts().list(&caller.actor, Default::default()).await?;
    Ok(Json(users.iter().map(UserView::from_core).collect()))
}

/// Create an account: the user record, an IP block and the vSphere folder. *admin*
pub async fn admin_create_user(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> ApiResult<Response> {
    let account = NewAccount {
        username: body.username,
        email: body.email,
        team: body.team,
        ssh_key: body.ssh_key,
        admin: body.admin,
        uid: body.uid,
    };
    let created = state.platform.accounts().create(&caller.actor, account).await?;
    Ok((StatusCode::CREATED, Json(UserView::from_core(&created))).into_response())
}

/// One account. *admin*
pub async fn admin_get_user(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<UserView>> {
    let user = state.platform.accounts().get(&caller.actor, &name).await?;
    Ok(Json(UserView::from_core(&user)))
}

/// One account's limits and usage. *admin*
pub async fn admin_get_quota(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<QuotaView>> {
    Ok(Json(QuotaView::from_core(&state.platform.accounts().quota(&caller.actor, &lookup_username(&name)?).await?)))
}

/// Override one account's limits; absent fields keep the default. *admin*
pub async fn admin_set_quota(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<QuotaOverrideRequest>,
) -> ApiResult<Json<QuotaView>> {
    let report = state
        .platform
        .accounts()
        .set_quota_override(&caller.actor, &lookup_username(&name)?, Some(body.into_core()))
        .await?;
    Ok(Json(QuotaView::from_core(&report)))
}

/// Back to the default limits. *admin*
pub async fn admin_reset_quota(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<QuotaView>> {
    let report = state.platform.accounts().set_quota_override(&caller.actor, &lookup_username(&name)?, None).await?;
    Ok(Json(QuotaView::from_core(&report)))
}

/// Create a token for an account (its first, say). *admin*
pub async fn admin_create_token(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<CreateTokenRequest>,
) -> ApiResult<Response> {
    token_for(&state, &caller, &lookup_username(&name)?, body).await
}

/// One account's VMs. *admin*
pub async fn admin_user_vms(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<PageJson<VmView>> {
    let vms = state.platform.vms().list(&caller.actor, Some(&lookup_username(&name)?), query.vms()).await?;
    Ok(page(vms, VmView::from_owned))
}

/// Create VMs for an account. *admin*
pub async fn admin_create_vms(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateVmsRequest>,
) -> ApiResult<Response> {
    create_for(&state, &caller, &lookup_username(&name)?, &headers, body).await
}

/// One VM of an account. *admin*
pub async fn admin_get_vm(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((owner, name)): ApiPath<(String, String)>,
) -> ApiResult<Json<VmView>> {
    Ok(Json(VmView::from_core(&state.platform.vms().get(&caller.actor, &lookup_username(&owner)?, &name).await?)))
}

/// Delete a VM of an account. *admin*
pub async fn admin_delete_vm(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((owner, name)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let operation =
        state.platform.vms().delete(&caller.actor, &lookup_username(&owner)?, &lookup_vm_name(&name)?).await?;
    Ok(accepted(&operation, OperationView::from_core(&operation)))
}

/// Start, stop or reboot a VM of an account. *admin*
pub async fn admin_vm_action(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((owner, name, action)): ApiPath<(String, String, String)>,
) -> ApiResult<Response> {
    let operation = state
        .platform
        .vms()
        .power(&caller.actor, &lookup_username(&owner)?, &lookup_vm_name(&name)?, power_action(&action)?)
        .await?;
    Ok(accepted(&operation, OperationView::from_core(&operation)))
}

/// Every VM, of every account (`?owner=` for one). *admin*
pub async fn admin_list_vms(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<PageJson<VmView>> {
    let owner = query.owner.as_deref().map(lookup_username).transpose()?;
    let vms = state.platform.vms().list(&caller.actor, owner.as_ref(), query.vms()).await?;
    Ok(page(vms, VmView::from_owned))
}

/// Every operation (`?owner=` for one account). *admin*
pub async fn admin_list_operations(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<PageJson<OperationView>> {
    let owner = query.owner.as_deref().map(lookup_username).transpose()?;
    let operations = state.platform.runtime().list_operations(&caller.actor, owner.as_ref(), query.page()).await?;
    Ok(page(operations, OperationView::from_owned))
}

/// The audit log, oldest first. *admin*
pub async fn admin_audit(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Response> {
    if let Some(other) = query.format.as_deref().filter(|format| !matches!(*format, "json" | "jsonl")) {
        return Err(ApiError::invalid(format!("format {:?} is not accepted: use json or jsonl", bounded(other))));
    }
    let request = AuditRequest {
        actor: query.actor.clone(),
        page: PageRequest { limit: query.limit, after: query.after },
        ..Default::default()
    };
    let events = state.platform.runtime().audit_log(&caller.actor, request).await?;
    match query.format.as_deref() {
        Some("jsonl") => {
            let mut body = String::new();
            for event in &events.items {
                body.push_str(&serde_json::to_string(&AuditView::from_core(event)).unwrap_or_default());
                body.push('\n');
            }
            Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
        }
        _ => Ok(page(events, AuditView::from_owned).into_response()),
    }
}

/// The last reconciliation of the store with vSphere (run every `reconcile.interval_seconds`). *admin*
pub async fn admin_last_reconcile(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<ReconcileView>> {
    let last = state.platform.vms().last_reconcile_for(&caller.actor)?;
    Ok(Json(last.as_ref().map(ReconcileView::from_core).unwrap_or_default()))
}

/// Reconcile now. *admin*
pub async fn admin_reconcile(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<ReconcileView>> {
    let report = state.platform.vms().reconcile_now(&caller.actor).await?;
    Ok(Json(ReconcileView::from_core(&report)))
}

/// Notifications waiting for delivery, delivered, or dead-lettered after every retry, oldest
/// first. *admin*
pub async fn admin_outbox(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<OutboxQuery>,
) -> ApiResult<PageJson<OutboxView>> {
    let request = basphere_core::platform::OutboxQuery {
        state: query.state,
        page: PageRequest { limit: query.limit, after: query.after },
    };
    let messages = state.platform.runtime().outbox(&caller.actor, request).await?;
    Ok(page(messages, OutboxView::from_owned))
}

/// Put a dead-lettered notification back in line for delivery. *admin*
pub async fn admin_retry_notification(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<OutboxView>> {
    let message = state.platform.runtime().retry_notification(&caller.actor, &id).await?;
    Ok(Json(OutboxView::from_core(&message)))
}
