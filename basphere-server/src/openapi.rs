//! The OpenAPI document the server serves at `/api/v1/openapi.json`, generated from the
//! handlers' own annotations so it cannot drift from the routes.

use axum::Json;
use utoipa::OpenApi;

use crate::api;
use crate::problem::Problem;
use crate::wire::*;

#[derive(OpenApi)]
#[openapi(
    info(title = "Basphere API", description = "Self-service VMs on vSphere. Over the Unix socket the caller is identified by the kernel; over TCP by `Authorization: Bearer <token>`. Errors are RFC 9457 problem documents."),
    paths(
        api::me, api::catalog, api::quota, api::list_vms, api::create_vms, api::get_vm, api::delete_vm, api::vm_action,
        api::list_operations, api::get_operation, api::list_tokens, api::create_token, api::revoke_token,
        api::admin_list_users, api::admin_create_user, api::admin_get_user, api::admin_get_quota, api::admin_set_quota,
        api::admin_reset_quota, api::admin_create_token, api::admin_user_vms, api::admin_create_vms, api::admin_get_vm,
        api::admin_delete_vm, api::admin_vm_action, api::admin_list_vms, api::admin_list_operations, api::admin_audit,
        api::admin_last_reconcile, api::admin_reconcile, api::admin_outbox, api::admin_retry_notification,
    ),
    components(schemas(Problem, VmView, OperationView, StepView, ResourceView, CreateVmsRequest, CreateVmsResponse, QuotaView, QuotaNumbers,
        QuotaOverrideRequest, UserView, MeView, CreateUserRequest, TokenView, CreateTokenRequest, CreatedToken, AuditView, OutboxView, CatalogView, CatalogOs, CatalogSpec, ReconcileView, PowerChangeView, StrayView)),
    tags((name = "vms"), (name = "operations"), (name = "account"), (name = "tokens"), (name = "admin")),
)]
pub struct ApiDoc;

/// `GET /api/v1/openapi.json`. Public.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
