//! The HTTP API under `/api/v1`. Each handler states who may call it in its doc line:
//! *user* (any authenticated account, acting on its own resources) or *admin*.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use basphere_core::model::*;
use basphere_core::platform::{Accepted, CreateVms};
use basphere_core::provisioner::PowerAction;
use basphere_core::store::{AuditFilter, OperationFilter, VmFilter};
use basphere_core::validate::{RegistrationForm, ResourceName, Username};
use basphere_core::{Store, StoreExt};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::Caller;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::openapi::{
    Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge, ServerError, Unauthenticated, UnsupportedMediaType,
};
use crate::problem::{ApiError, ApiResult};
use crate::wire::*;
use crate::AppState;

/// The `/api/v1` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/me", get(me))
        .route("/catalog", get(catalog))
        .route("/quota", get(quota))
        .route("/vms", get(list_vms).post(create_vms))
        .route("/vms/{name}", get(get_vm).delete(delete_vm))
        .route("/vms/{name}/{action}", post(vm_action))
        .route("/operations", get(list_operations))
        .route("/operations/{id}", get(get_operation))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/admin/users", get(admin_list_users).post(admin_create_user))
        .route("/admin/users/{username}", get(admin_get_user))
        .route("/admin/users/{username}/quota", get(admin_get_quota).put(admin_set_quota).delete(admin_reset_quota))
        .route("/admin/users/{username}/tokens", post(admin_create_token))
        .route("/admin/users/{username}/vms", get(admin_user_vms).post(admin_create_vms))
        .route("/admin/users/{username}/vms/{name}", get(admin_get_vm).delete(admin_delete_vm))
        .route("/admin/users/{username}/vms/{name}/{action}", post(admin_vm_action))
        .route("/admin/vms", get(admin_list_vms))
        .route("/admin/operations", get(admin_list_operations))
        .route("/admin/audit", get(admin_audit))
        .route("/admin/reconcile", get(admin_last_reconcile).post(admin_reconcile))
}

/// Runs store reads off the async executor.
async fn read<T, F>(state: &AppState, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> basphere_core::Result<T> + Send + 'static,
{
    let store = state.platform.store().clone();
    match tokio::task::spawn_blocking(move || f(&*store)).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(_) => Err(ApiError::from(basphere_core::Error::Timeout("the store did not answer".into()))),
    }
}

fn username(value: &str) -> ApiResult<Username> {
    Username::parse(value).map_err(|_| ApiError::not_found(format!("user not found: {value}")))
}

fn resource_name(value: &str) -> ApiResult<ResourceName> {
    // An invalid name cannot exist: answer like for a missing VM.
    ResourceName::parse(value).map_err(|_| ApiError::not_found(format!("vm not found: {value}")))
}

/// `?limit=&after=`: pagination of lists ordered by creation.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many items (1-1000, default 100).
    pub limit: Option<usize>,
    /// The `next` value of the previous page.
    pub after: Option<Uuid>,
    /// Only VMs in this state.
    pub state: Option<String>,
    /// Admin lists only: one owner's items.
    pub owner: Option<String>,
}

impl ListQuery {
    fn limit(&self) -> ApiResult<usize> {
        match self.limit {
            None => Ok(100),
            Some(limit) if (1..=1000).contains(&limit) => Ok(limit),
            Some(limit) => Err(ApiError::invalid(format!("limit {limit} is not accepted: use 1-1000"))),
        }
    }

    fn vm_filter(&self, owner: Option<Username>) -> ApiResult<VmFilter> {
        let state = self.state.as_deref().map(VmState::parse).transpose().map_err(ApiError::from)?;
        Ok(VmFilter {
            owner,
            state,
            include_deleted: state == Some(VmState::Deleted),
            after: self.after,
            limit: Some(self.limit()? + 1),
        })
    }
}

/// Cuts the extra item fetched to know whether there is a next page.
fn page<T, V>(mut items: Vec<T>, limit: usize, id: impl Fn(&T) -> Uuid, view: impl Fn(&T) -> V) -> Page<V> {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|item| id(item).to_string())
    } else {
        None
    };
    Page { items: items.iter().map(view).collect(), next }
}

fn accepted(operation: &Operation, body: impl serde::Serialize) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/operations/{}", operation.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Who the server believes you are. *user*
#[utoipa::path(get, path = "/api/v1/me", tag = "account", responses((status = 200, body = MeView), Unauthenticated, Forbidden, ServerError))]
pub async fn me(caller: Caller) -> Json<MeView> {
    Json(MeView {
        name: caller.actor.name.clone(),
        role: caller.actor.role.as_str().to_owned(),
        source: caller.actor.source.clone(),
        account: caller.account.as_ref().map(UserView::from_core),
    })
}

/// The OS images and VM specs that may be asked for. *user*
#[utoipa::path(get, path = "/api/v1/catalog", tag = "account", responses((status = 200, body = CatalogView), Unauthenticated, Forbidden, ServerError))]
pub async fn catalog(_caller: Caller, State(state): State<AppState>) -> Json<CatalogView> {
    let config = state.platform.config();
    // Specs from the smallest to the largest, as a menu should show them.
    let mut specs: Vec<&VmSpec> = config.vm_specs.values().collect();
    specs.sort_by_key(|s| (s.cpu, s.memory_mb, s.disk_gb, s.key.clone()));
    Json(CatalogView {
        os: config
            .os_images
            .values()
            .map(|os| CatalogOs { key: os.key.clone(), description: os.description.clone() })
            .collect(),
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
    })
}

/// Your limits and usage. *user*
#[utoipa::path(get, path = "/api/v1/quota", tag = "account", responses((status = 200, body = QuotaView), Unauthenticated, Forbidden, ServerError))]
pub async fn quota(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<QuotaView>> {
    let report = state.platform.quota(&caller.account()?.username).await?;
    Ok(Json(QuotaView::from_core(&report)))
}

/// Your VMs. *user*
#[utoipa::path(get, path = "/api/v1/vms", tag = "vms", params(ListQuery), responses((status = 200, body = Page<VmView>), InvalidInput, Unauthenticated, Forbidden, ServerError))]
pub async fn list_vms(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<VmView>>> {
    if query.owner.is_some() {
        return Err(ApiError::invalid("owner is for the admin list (/api/v1/admin/vms)"));
    }
    let filter = query.vm_filter(Some(caller.account()?.username.clone()))?;
    let vms = read(&state, move |store| store.query(|tx| tx.list_vms(&filter))).await?;
    Ok(Json(page(vms, query.limit()?, |vm| vm.id, VmView::from_core)))
}

async fn create_for(
    state: &AppState,
    caller: &Caller,
    owner: &Username,
    headers: &HeaderMap,
    body: CreateVmsRequest,
) -> ApiResult<Response> {
    let key = match headers.get("idempotency-key") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::invalid("the Idempotency-Key header must be visible ASCII"))?
                .to_owned(),
        ),
        None => None,
    };
    let request = CreateVms { name: body.name, os: body.os, spec: body.spec, count: body.count };
    let outcome = state.platform.create_vms(&caller.actor, owner, request, key.as_deref()).await?;
    let first =
        outcome.accepted.first().map(|a| a.operation.clone()).ok_or_else(|| ApiError::invalid("nothing to create"))?;
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
#[utoipa::path(post, path = "/api/v1/vms", tag = "vms", request_body = CreateVmsRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create return the first answer")),
    responses((status = 202, body = CreateVmsResponse, headers(("Location" = String, description = "The first operation: /api/v1/operations/{id}"), ("Idempotent-Replayed" = String, description = "`true` when this is the first answer to the same Idempotency-Key, replayed"))), InvalidInput, PayloadTooLarge, UnsupportedMediaType, Unauthenticated, Forbidden, Conflict, ServerError))]
pub async fn create_vms(
    caller: Caller,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateVmsRequest>,
) -> ApiResult<Response> {
    let owner = caller.account()?.username.clone();
    create_for(&state, &caller, &owner, &headers, body).await
}

async fn vm_of(state: &AppState, owner: Username, name: &str) -> ApiResult<Vm> {
    let name = resource_name(name)?;
    read(state, move |store| store.vm(&owner, &name)).await
}

/// One of your VMs. *user*
#[utoipa::path(get, path = "/api/v1/vms/{name}", tag = "vms", params(("name" = String, Path)), responses((status = 200, body = VmView), InvalidInput, Unauthenticated, Forbidden, NotFound, ServerError))]
pub async fn get_vm(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<VmView>> {
    let vm = vm_of(&state, caller.account()?.username.clone(), &name).await?;
    Ok(Json(VmView::from_core(&vm)))
}

/// Delete one of your VMs; its address is freed once vSphere confirms it is gone. *user*
#[utoipa::path(delete, path = "/api/v1/vms/{name}", tag = "vms", params(("name" = String, Path)), responses((status = 202, body = OperationView, headers(("Location" = String, description = "The operation: /api/v1/operations/{id}"))), InvalidInput, Unauthenticated, Forbidden, NotFound, Conflict, ServerError))]
pub async fn delete_vm(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    let owner = caller.account()?.username.clone();
    let operation = state.platform.delete_vm(&caller.actor, &owner, &resource_name(&name)?).await?;
    Ok(accepted(&operation, OperationView::from_core(&operation)))
}

fn power_action(action: &str) -> ApiResult<PowerAction> {
    match action {
        "start" => Ok(PowerAction::Start),
        "stop" => Ok(PowerAction::Stop),
        "reboot" => Ok(PowerAction::Reboot),
        other => Err(ApiError::not_found(format!("no action {other:?}; use start, stop or reboot"))),
    }
}

/// Start, stop or reboot one of your VMs. *user*
#[utoipa::path(post, path = "/api/v1/vms/{name}/{action}", tag = "vms", params(("name" = String, Path), ("action" = String, Path, description = "start, stop or reboot")),
    responses((status = 202, body = OperationView, headers(("Location" = String, description = "The operation: /api/v1/operations/{id}"))), InvalidInput, Unauthenticated, Forbidden, NotFound, Conflict, ServerError))]
pub async fn vm_action(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((name, action)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let owner = caller.account()?.username.clone();
    let action = power_action(&action)?;
    let operation = state.platform.power_vm(&caller.actor, &owner, &resource_name(&name)?, action).await?;
    Ok(accepted(&operation, OperationView::from_core(&operation)))
}

/// Your operations, oldest first. *user*
#[utoipa::path(get, path = "/api/v1/operations", tag = "operations", params(ListQuery), responses((status = 200, body = Page<OperationView>), InvalidInput, Unauthenticated, Forbidden, ServerError))]
pub async fn list_operations(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<OperationView>>> {
    let limit = query.limit()?;
    let filter = OperationFilter {
        owner: Some(caller.account()?.username.clone()),
        after: query.after,
        limit: Some(limit + 1),
        ..OperationFilter::default()
    };
    let operations = read(&state, move |store| store.query(|tx| tx.list_operations(&filter))).await?;
    Ok(Json(page(operations, limit, |op| op.id, OperationView::from_core)))
}

/// One operation: yours, or any for an admin. *user*
#[utoipa::path(get, path = "/api/v1/operations/{id}", tag = "operations", params(("id" = Uuid, Path)), responses((status = 200, body = OperationView), InvalidInput, Unauthenticated, Forbidden, NotFound, ServerError))]
pub async fn get_operation(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<OperationView>> {
    let missing = || ApiError::not_found(format!("operation not found: {id}"));
    let parsed = Uuid::parse_str(&id).map_err(|_| missing())?;
    let operation = read(&state, move |store| store.query(|tx| tx.get_operation(parsed))).await?.ok_or_else(missing)?;
    if !caller.actor.may_act_for(&operation.owner) {
        return Err(missing());
    }
    Ok(Json(OperationView::from_core(&operation)))
}

/// Your API tokens (never their secrets). *user*
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, body = Vec<TokenView>), Unauthenticated, Forbidden, ServerError))]
pub async fn list_tokens(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<Vec<TokenView>>> {
    let owner = caller.account()?.username.clone();
    let tokens = read(&state, move |store| store.query(|tx| tx.list_tokens(&owner))).await?;
    Ok(Json(tokens.iter().map(TokenView::from_core).collect()))
}

async fn token_for(
    state: &AppState,
    caller: &Caller,
    owner: &Username,
    body: CreateTokenRequest,
) -> ApiResult<Response> {
    let scope = match body.scope.as_deref() {
        None => TokenScope::User,
        Some(scope) => TokenScope::parse(scope).map_err(ApiError::from)?,
    };
    let expires_at = match body.expires_in_days {
        None => None,
        Some(days) if (1..=3650).contains(&days) => Some(now() + chrono::Duration::days(i64::from(days))),
        Some(days) => return Err(ApiError::invalid(format!("expires_in_days {days} is not accepted: use 1-3650"))),
    };
    let created = state.platform.create_token(&caller.actor, owner, &body.name, scope, expires_at).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken { token: TokenView::from_core(&created.token), secret: created.secret }),
    )
        .into_response())
}

/// Create an API token; its secret is in this answer only. *user*
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateTokenRequest, responses((status = 201, body = CreatedToken), InvalidInput, PayloadTooLarge, UnsupportedMediaType, Unauthenticated, Forbidden, ServerError))]
pub async fn create_token(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateTokenRequest>,
) -> ApiResult<Response> {
    let owner = caller.account()?.username.clone();
    token_for(&state, &caller, &owner, body).await
}

/// Revoke one of your tokens (any token, for an admin). *user*
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = Uuid, Path)), responses((status = 200, body = TokenView), InvalidInput, Unauthenticated, Forbidden, NotFound, ServerError))]
pub async fn revoke_token(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TokenView>> {
    let parsed = Uuid::parse_str(&id).map_err(|_| ApiError::not_found(format!("token not found: {id}")))?;
    let token = state.platform.revoke_token(&caller.actor, parsed).await?;
    Ok(Json(TokenView::from_core(&token)))
}

/// Every account. *admin*
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", responses((status = 200, body = Vec<UserView>), Unauthenticated, Forbidden, ServerError))]
pub async fn admin_list_users(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<Vec<UserView>>> {
    caller.require_admin()?;
    let users = read(&state, |store| store.query(|tx| tx.list_users())).await?;
    Ok(Json(users.iter().map(UserView::from_core).collect()))
}

/// Create an account: the user record, an IP block and the vSphere folder. *admin*
#[utoipa::path(post, path = "/api/v1/admin/users", tag = "admin", request_body = CreateUserRequest, responses((status = 201, body = UserView), InvalidInput, PayloadTooLarge, UnsupportedMediaType, Unauthenticated, Forbidden, Conflict, ServerError))]
pub async fn admin_create_user(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let form =
        RegistrationForm { username: body.username, email: body.email, team: body.team, public_key: body.ssh_key };
    let valid = form.validate(&state.platform.config().allowed_email_domains).map_err(|errors| {
        let mut error = ApiError::invalid(errors.messages().join("; "));
        error.errors = errors.messages();
        error
    })?;
    let at = now();
    let user = User {
        username: valid.username,
        email: valid.email,
        team: valid.team,
        ssh_key: valid.ssh_key,
        role: if body.admin { Role::Admin } else { Role::User },
        status: UserStatus::Active,
        uid: body.uid,
        created_at: at,
        updated_at: at,
    };
    // The store's constraint refuses a taken name, key or uid, even under concurrent requests;
    // provisioning the block and folder afterwards is idempotent.
    let record = user.clone();
    let store = state.platform.store().clone();
    tokio::task::spawn_blocking(move || store.transact(|tx| tx.insert_user(&record)))
        .await
        .map_err(|_| ApiError::from(basphere_core::Error::Timeout("the store did not answer".into())))??;
    let created = state.platform.provision_account(user).await?;
    Ok((StatusCode::CREATED, Json(UserView::from_core(&created))).into_response())
}

/// One account. *admin*
#[utoipa::path(get, path = "/api/v1/admin/users/{username}", tag = "admin", params(("username" = String, Path)), responses((status = 200, body = UserView), InvalidInput, Unauthenticated, Forbidden, NotFound, ServerError))]
pub async fn admin_get_user(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<UserView>> {
    caller.require_admin()?;
    let name = username(&name)?;
    let user = read(&state, move |store| store.user(&name)).await?;
    Ok(Json(UserView::from_core(&user)))
}

/// One account's limits and usage. *admin*
#[utoipa::path(get, path = "/api/v1/admin/users/{username}/quota", tag = "admin", params(("username" = String, Path)), responses((status = 200, body = QuotaView), InvalidInput, Unauthenticated, Forbidden, NotFound, ServerError))]
pub async fn admin_get_quota(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<QuotaView>> {
    caller.require_admin()?;
    let name = username(&name)?;
    let check = name.clone();
    read(&state, move |store| store.user(&check)).await?;
    Ok(Json(QuotaView::from_core(&state.platform.quota(&name).await?)))
}

/// Override one account's limits; absent fields keep the default. *admin*
#[utoipa::path(put, path = "/api/v1/admin/users/{username}/quota", tag = "admin", params(("username" = String, Path)), request_body = QuotaOverrideRequest, responses((status = 200, body = QuotaView), InvalidInput, PayloadTooLarge, UnsupportedMediaType, Unauthenticated, Forbidden, NotFound, ServerError))]
pub async fn admin_set_quota(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<QuotaOverrideRequest>,
) -> ApiResult<Json<QuotaView>> {
    caller.require_admin()?;
    let report = state.platform.set_quota_override(&caller.actor, &username(&name)?, Some(body.into_core())).await?;
    Ok(Json(QuotaView::from_core(&report)))
}

/// Back to the default limits. *admin*
#[utoipa::path(delete, path = "/api/v1/admin/users/{username}/quota", tag = "admin", params(("username" = String, Path)), responses((status = 200, body = QuotaView), InvalidInput, Unauthenticated, Forbidden, NotFound, ServerError))]
pub async fn admin_reset_quota(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<QuotaView>> {
    caller.require_admin()?;
    let report = state.platform.set_quota_override(&caller.actor, &username(&name)?, None).await?;
    Ok(Json(QuotaView::from_core(&report)))
}

/// Create a token for an account (its first, say). *admin*
#[utoipa::path(post, path = "/api/v1/admin/users/{username}/tokens", tag = "admin", params(("username" = String, Path)), request_body = CreateTokenRequest, responses((status = 201, body = CreatedToken), InvalidInput, PayloadTooLarge, UnsupportedMediaType, Unauthenticated, Forbidden, NotFound, ServerError))]
pub async fn admin_create_token(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<CreateTokenRequest>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    token_for(&state, &caller, &username(&name)?, body).await
}

/// One account's VMs. *admin*
#[utoipa::path(get, path = "/api/v1/admin/users/{username}/vms", tag = "admin", params(("username" = String, Path), ListQuery), responses((status = 200, body = Page<VmView>), InvalidInput, Unauthenticated, Forbidden, NotFound, ServerError))]
pub async fn admin_user_vms(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<VmView>>> {
    caller.require_admin()?;
    let filter = query.vm_filter(Some(username(&name)?))?;
    let vms = read(&state, move |store| store.query(|tx| tx.list_vms(&filter))).await?;
    Ok(Json(page(vms, query.limit()?, |vm| vm.id, VmView::from_core)))
}

/// Create VMs for an account. *admin*
#[utoipa::path(post, path = "/api/v1/admin/users/{username}/vms", tag = "admin", params(("username" = String, Path)), request_body = CreateVmsRequest, responses((status = 202, body = CreateVmsResponse, headers(("Location" = String, description = "The first operation: /api/v1/operations/{id}"), ("Idempotent-Replayed" = String, description = "`true` when this is the first answer to the same Idempotency-Key, replayed"))), InvalidInput, PayloadTooLarge, UnsupportedMediaType, Unauthenticated, Forbidden, NotFound, Conflict, ServerError))]
pub async fn admin_create_vms(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateVmsRequest>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    create_for(&state, &caller, &username(&name)?, &headers, body).await
}

/// One VM of an account. *admin*
#[utoipa::path(get, path = "/api/v1/admin/users/{username}/vms/{name}", tag = "admin", params(("username" = String, Path), ("name" = String, Path)), responses((status = 200, body = VmView), InvalidInput, Unauthenticated, Forbidden, NotFound, ServerError))]
pub async fn admin_get_vm(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((owner, name)): ApiPath<(String, String)>,
) -> ApiResult<Json<VmView>> {
    caller.require_admin()?;
    Ok(Json(VmView::from_core(&vm_of(&state, username(&owner)?, &name).await?)))
}

/// Delete a VM of an account. *admin*
#[utoipa::path(delete, path = "/api/v1/admin/users/{username}/vms/{name}", tag = "admin", params(("username" = String, Path), ("name" = String, Path)), responses((status = 202, body = OperationView, headers(("Location" = String, description = "The operation: /api/v1/operations/{id}"))), InvalidInput, Unauthenticated, Forbidden, NotFound, Conflict, ServerError))]
pub async fn admin_delete_vm(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((owner, name)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let operation = state.platform.delete_vm(&caller.actor, &username(&owner)?, &resource_name(&name)?).await?;
    Ok(accepted(&operation, OperationView::from_core(&operation)))
}

/// Start, stop or reboot a VM of an account. *admin*
#[utoipa::path(post, path = "/api/v1/admin/users/{username}/vms/{name}/{action}", tag = "admin", params(("username" = String, Path), ("name" = String, Path), ("action" = String, Path)), responses((status = 202, body = OperationView, headers(("Location" = String, description = "The operation: /api/v1/operations/{id}"))), InvalidInput, Unauthenticated, Forbidden, NotFound, Conflict, ServerError))]
pub async fn admin_vm_action(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath((owner, name, action)): ApiPath<(String, String, String)>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let operation = state
        .platform
        .power_vm(&caller.actor, &username(&owner)?, &resource_name(&name)?, power_action(&action)?)
        .await?;
    Ok(accepted(&operation, OperationView::from_core(&operation)))
}

/// Every VM, of every account (`?owner=` for one). *admin*
#[utoipa::path(get, path = "/api/v1/admin/vms", tag = "admin", params(ListQuery), responses((status = 200, body = Page<VmView>), InvalidInput, Unauthenticated, Forbidden, NotFound, ServerError))]
pub async fn admin_list_vms(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<VmView>>> {
    caller.require_admin()?;
    let owner = query.owner.as_deref().map(username).transpose()?;
    let filter = query.vm_filter(owner)?;
    let vms = read(&state, move |store| store.query(|tx| tx.list_vms(&filter))).await?;
    Ok(Json(page(vms, query.limit()?, |vm| vm.id, VmView::from_core)))
}

/// Every operation (`?owner=` for one account). *admin*
#[utoipa::path(get, path = "/api/v1/admin/operations", tag = "admin", params(ListQuery), responses((status = 200, body = Page<OperationView>), InvalidInput, Unauthenticated, Forbidden, NotFound, ServerError))]
pub async fn admin_list_operations(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<OperationView>>> {
    caller.require_admin()?;
    let limit = query.limit()?;
    let owner = query.owner.as_deref().map(username).transpose()?;
    let filter = OperationFilter { owner, after: query.after, limit: Some(limit + 1), ..OperationFilter::default() };
    let operations = read(&state, move |store| store.query(|tx| tx.list_operations(&filter))).await?;
    Ok(Json(page(operations, limit, |op| op.id, OperationView::from_core)))
}

/// `?actor=&after=&limit=&format=jsonl`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub after: Option<Uuid>,
    pub limit: Option<usize>,
    /// `json` (a page, default) or `jsonl` (JSON lines, for export).
    pub format: Option<String>,
}

/// The audit log, oldest first. *admin*
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin", params(AuditQuery), responses((status = 200, description = "A page of events, or JSON lines with `format=jsonl`", content((Page<AuditView> = "application/json"), (String = "application/x-ndjson"))), InvalidInput, Unauthenticated, Forbidden, ServerError))]
pub async fn admin_audit(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let limit = match query.limit {
        None => 1000,
        Some(limit) if (1..=100_000).contains(&limit) => limit,
        Some(limit) => return Err(ApiError::invalid(format!("limit {limit} is not accepted: use 1-100000"))),
    };
    let filter = AuditFilter { actor: query.actor.clone(), after: query.after, limit: Some(limit + 1) };
    let events = read(&state, move |store| store.query(|tx| tx.list_audit(&filter))).await?;
    match query.format.as_deref() {
        None | Some("json") => Ok(Json(page(events, limit, |e| e.id, AuditView::from_core)).into_response()),
        Some("jsonl") => {
            let mut body = String::new();
            for event in events.iter().take(limit) {
                body.push_str(&serde_json::to_string(&AuditView::from_core(event)).unwrap_or_default());
                body.push('\n');
            }
            Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
        }
        Some(other) => Err(ApiError::invalid(format!("format {other:?} is not accepted: use json or jsonl"))),
    }
}

/// The last reconciliation of the store with vSphere (run every `reconcile.interval_seconds`). *admin*
#[utoipa::path(get, path = "/api/v1/admin/reconcile", tag = "admin", responses((status = 200, body = ReconcileView), Unauthenticated, Forbidden, ServerError))]
pub async fn admin_last_reconcile(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<ReconcileView>> {
    caller.require_admin()?;
    let last = state.last_reconcile.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(Json(last.as_ref().map(ReconcileView::from_core).unwrap_or_default()))
}

/// Reconcile now. *admin*
#[utoipa::path(post, path = "/api/v1/admin/reconcile", tag = "admin", responses((status = 200, body = ReconcileView), Unauthenticated, Forbidden, ServerError))]
pub async fn admin_reconcile(caller: Caller, State(state): State<AppState>) -> ApiResult<Json<ReconcileView>> {
    caller.require_admin()?;
    let report = state.platform.reconcile().await?;
    let view = ReconcileView::from_core(&report);
    *state.last_reconcile.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
    Ok(Json(view))
}
