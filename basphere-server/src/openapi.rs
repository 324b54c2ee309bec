//! The OpenAPI document the server serves at `/api/v1/openapi.json`, generated from the
//! handlers' own annotations so it cannot drift from the routes.
//!
//! Every answer the server can give is in it, so that a client generated from it handles them
//! all: the error responses below are the problems each extractor and handler can answer with
//! (`application/problem+json`), and the `bearer` scheme says how a TCP caller is identified.
//! The tests crate checks every answer it provokes against this document.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi};

use crate::problem::Problem;
use crate::wire::*;
use crate::{api, requests};

#[derive(OpenApi)]
#[openapi(
    info(title = "Basphere API", description = "Self-service VMs on vSphere. Over the Unix socket the caller is identified by the kernel; over TCP by `Authorization: Bearer <token>`. Errors are RFC 9457 problem documents.\n\n\
On the Unix socket the kernel's peer credentials say who connected: root or the server's own user is the administrator, \
a registered `uid` is that account, and no header is needed. Over TCP the `bearer` security scheme applies.\n\n\
Every error, on every route, is a problem document (`application/problem+json`) whose `type` is \
`urn:basphere:problem:<kind>`. An unknown path is answered 404, a method a path does not list 405, and a request \
that takes longer than 30 seconds 504, all as problem documents."),
    paths(
        api::me, api::catalog, api::quota, crate::clusters::list_clusters, crate::clusters::create_cluster, crate::clusters::get_cluster, crate::clusters::watch_cluster, crate::clusters::cluster_kubeconfig, crate::clusters::scale_cluster, crate::clusters::delete_cluster, crate::clusters::admin_list_clusters, crate::clusters::admin_delete_cluster, api::list_vms, api::create_vms, api::get_vm, api::delete_vm, api::vm_action,
        api::list_operations, api::get_operation, api::list_tokens, api::create_token, api::revoke_token, api::create_sign_in_link,
        api::admin_list_users, api::admin_create_user, api::admin_get_user, api::admin_get_quota, api::admin_set_quota,
        api::admin_reset_quota, api::admin_create_token, api::admin_user_vms, api::admin_create_vms, api::admin_get_vm,
        api::admin_delete_vm, api::admin_vm_action, api::admin_list_vms, api::admin_list_operations, api::admin_audit,
        api::admin_last_reconcile, api::admin_reconcile, api::admin_outbox, api::admin_retry_notification,
        requests::register, requests::key_change, requests::admin_registrations, requests::admin_registration,
        requests::admin_approve_registration, requests::admin_reject_registration, requests::admin_key_changes,
        requests::admin_approve_key_change, requests::admin_reject_key_change, requests::admin_suspend_user,
        requests::admin_resume_user, requests::admin_delete_user, requests::admin_purge_user,
        crate::healthz, crate::readyz, crate::metrics::render, document,
    ),
    components(schemas(Problem, ClusterView, ClusterConditionView, CreateClusterRequest, CreateClusterResponse, ScaleClusterRequest, KubeconfigView, CatalogClusterType, CatalogNodeSpec, VmView, OperationView, StepView, ResourceView, CreateVmsRequest, CreateVmsResponse, QuotaView, QuotaNumbers,
        QuotaOverrideRequest, UserView, MeView, CreateUserRequest, TokenView, CreateTokenRequest, CreatedToken, SignInLinkView, AuditView, OutboxView, CatalogView, CatalogOs, CatalogSpec, ReconcileView, PowerChangeView, StrayView,
        Health, Readiness, RegisterRequest, KeyChangeRequestBody, SubmittedView, RegistrationView, KeyChangeView, RejectRequest)),
    tags((name = "registration", description = "Public: asking for an account or a new SSH key. Limited per client address, per email address and per day; protected by the bot check when the server has one."),
        (name = "vms"), (name = "clusters"), (name = "operations"), (name = "account"), (name = "tokens"), (name = "admin"),
        (name = "service", description = "Liveness, readiness, metrics and this document: public, on both listeners.")),
    security(("bearer" = [])),
    modifiers(&Security),
)]
pub struct ApiDoc;

/// The `bearer` security scheme.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("bsp_...".to_owned());
        bearer.description = Some(
            "An API token over TCP (`basphere token create`). Over the Unix socket the server uses the kernel's \
             peer credentials instead, and this header is ignored."
                .to_owned(),
        );
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(bearer));
    }
}

/// `GET /api/v1/openapi.json`. Public.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "service", security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1).", body = Object)))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

// The problems an operation can answer with, named by what went wrong (the description says
// when); the handlers' annotations list the ones each can give. Each is a problem document.

#[derive(IntoResponses)]
#[response(
    status = 400,
    description = "The request is not valid (a field, the query string, a path segment or the JSON itself); the detail says what is accepted.",
    content_type = "application/problem+json"
)]
pub struct InvalidInput(#[allow(dead_code)] Problem);

#[derive(IntoResponses)]
#[response(status = 401, description = "No credential, or one the server does not accept (unknown, revoked or expired token; a socket uid with no account).",
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"basphere\"`")))]
pub struct Unauthenticated(#[allow(dead_code)] Problem);

#[derive(IntoResponses)]
#[response(
    status = 403,
    description = "The caller may not do this (not an administrator, a suspended account, a token scope or a quota that does not allow it).",
    content_type = "application/problem+json"
)]
pub struct Forbidden(#[allow(dead_code)] Problem);

#[derive(IntoResponses)]
#[response(
    status = 404,
    description = "No such resource, or none the caller may see.",
    content_type = "application/problem+json"
)]
pub struct NotFound(#[allow(dead_code)] Problem);

#[derive(IntoResponses)]
#[response(
    status = 409,
    description = "The resource's state does not allow this now (a name taken, an operation running, an Idempotency-Key used for another request, no address left).",
    content_type = "application/problem+json"
)]
pub struct Conflict(#[allow(dead_code)] Problem);

#[derive(IntoResponses)]
#[response(
    status = 413,
    description = "The body is larger than the 64 KiB accepted.",
    content_type = "application/problem+json"
)]
pub struct PayloadTooLarge(#[allow(dead_code)] Problem);

#[derive(IntoResponses)]
#[response(
    status = 415,
    description = "The body is not sent as `Content-Type: application/json`.",
    content_type = "application/problem+json"
)]
pub struct UnsupportedMediaType(#[allow(dead_code)] Problem);

#[derive(IntoResponses)]
#[response(
    status = "5XX",
    description = "The server or a backend failed (500), a feature is not available (501), a backend is unavailable (503) or a step timed out (504); the detail never carries internals.",
    content_type = "application/problem+json"
)]
pub struct ServerError(#[allow(dead_code)] Problem);

#[derive(IntoResponses)]
#[response(
    status = 429,
    description = "Too many submissions from this address, for this email address or today; `Retry-After` says when to try again.",
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait."))
)]
pub struct TooManyRequests(#[allow(dead_code)] Problem);
