//! Registration and key change requests: the public submissions (JSON or form-encoded, both
//! through the same limits and bot check) and what administrators do with them and with
//! accounts (approve, reject, suspend, resume, delete, purge).

use axum::extract::{FromRequest, Request, State};
use std::net::IpAddr;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use basphere_core::model::*;
use basphere_core::platform::{PageRequest, RequestQuery, Submission};
use basphere_core::validate::{KeyChangeForm, RegistrationForm};
use serde::de::DeserializeOwned;

use crate::auth::{Caller, Transport};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::problem::{ApiError, ApiResult};
use crate::respond::{page, PageJson};
use crate::wire::*;
use crate::AppState;

/// A body as JSON or as a form (`application/x-www-form-urlencoded`), for the public
/// submissions that web pages post too.
pub struct JsonOrForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonOrForm<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim_start().starts_with("application/x-www-form-urlencoded"));
        if form {
            match axum::Form::<T>::from_request(request, state).await {
                Ok(axum::Form(value)) => Ok(JsonOrForm(value)),
                Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "the request body is larger than the 64 KiB accepted",
                )),
                Err(rejection) => Err(ApiError::invalid(format!("the form is not valid: {}", rejection.body_text()))),
            }
        } else {
            let ApiJson(value) = ApiJson::<T>::from_request(request, state).await.map_err(|error| {
                if error.status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                    ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "unsupported-media-type",
                        "send the body as JSON (application/json) or as a form (application/x-www-form-urlencoded)",
                    )
                } else {
                    error
                }
            })?;
            Ok(JsonOrForm(value))
        }
    }
}

/// Where a public submission came from: the TCP peer's address (or, when the peer is one of
/// `server.trusted_proxies`, the client its `X-Forwarded-For` names: the right-most address that
/// is not a trusted proxy itself), or the socket's uid.
pub(crate) fn client(transport: Option<&Transport>, headers: &HeaderMap, trusted: &[IpAddr]) -> String {
    match transport {
        Some(Transport::Tcp { peer }) if trusted.contains(&peer.ip()) => {
            let forwarded = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .map(|hop| hop.trim().parse::<IpAddr>())
                .collect::<Vec<_>>();
            // Walk back from the hop our proxy added; an unparsable hop ends the walk (anything
            // to its left was written by the client and proves nothing).
            let mut client = peer.ip();
            for hop in forwarded.into_iter().rev() {
                match hop {
                    Ok(address) => {
                        client = address;
                        if !trusted.contains(&address) {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            client.to_string()
        }
        Some(Transport::Tcp { peer }) => peer.ip().to_string(),
        Some(Transport::Unix { uid, .. }) => format!("unix:uid={uid}"),
        None => "unknown".to_owned(),
    }
}

fn submitted(message: &str) -> Response {
    (StatusCode::ACCEPTED, Json(SubmittedView { status: "received".into(), message: message.to_owned() }))
        .into_response()
}

/// Asks for an account. Answered 202 whether or not the username or email is taken (an
/// administrator sees why a request was not recorded in the audit log). *public*
pub async fn register(
    State(state): State<AppState>,
    transport: Option<axum::Extension<Transport>>,
    headers: HeaderMap,
    JsonOrForm(body): JsonOrForm<RegisterRequest>,
) -> ApiResult<Response> {
    let trusted = &state.server.trusted_proxies;
    let from =
        Submission { client: client(transport.as_deref(), &headers, trusted), human_response: body.recaptcha_response };
    let form =
        RegistrationForm { username: body.username, email: body.email, team: body.team, public_key: body.ssh_key };
    Ok(submitted(state.platform.accounts().register(&from, form).await?))
}

/// Asks for an account's SSH key to be replaced; the email must be the account's. Answered
/// 202 whatever becomes of it. *public*
pub async fn key_change(
    State(state): State<AppState>,
    transport: Option<axum::Extension<Transport>>,
    headers: HeaderMap,
    JsonOrForm(body): JsonOrForm<KeyChangeRequestBody>,
) -> ApiResult<Response> {
    let trusted = &state.server.trusted_proxies;
    let from =
        Submission { client: client(transport.as_deref(), &headers, trusted), human_response: body.recaptcha_response };
    let form =
        KeyChangeForm { username: body.username, email: body.email, new_public_key: body.ssh_key, reason: body.reason };
    Ok(submitted(state.platform.accounts().request_key_change(&from, form).await?))
}

/// `?status=&limit=&after=` as the platform asks for them.
trait RequestListQueryExt {
    fn core(self) -> RequestQuery;
}

impl RequestListQueryExt for RequestListQuery {
    fn core(self) -> RequestQuery {
        RequestQuery { status: self.status, page: PageRequest { limit: self.limit, after: self.after } }
    }
}

fn accepted(operation: &Operation) -> Response {
    // An operation that had finished before this request (an approval asked for again) is
    // answered as it is, not as work accepted.
    let status = if operation.state.is_finished() { StatusCode::OK } else { StatusCode::ACCEPTED };
    let mut response = (status, Json(OperationView::from_core(operation))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/operations/{}", operation.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Registration requests, oldest first (pending unless `?status=`). *admin*
pub async fn admin_registrations(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<RequestListQuery>,
) -> ApiResult<PageJson<RegistrationView>> {
    let requests = state.platform.accounts().registrations(&caller.actor, query.core()).await?;
    Ok(page(requests, RegistrationView::from_owned))
}

/// A username's latest registration request. *admin*
pub async fn admin_registration(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<RegistrationView>> {
    Ok(Json(RegistrationView::from_core(&state.platform.accounts().registration(&caller.actor, &name).await?)))
}

/// Approves a registration: the account is active at once; the operation gives it its IP
/// block, vSphere folder and bastion login, then tells the user. Approving again finishes an
/// approval that failed part-way, and answers an approval that succeeded with that operation
/// (200), so an account is welcomed once. *admin*
pub async fn admin_approve_registration(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    Ok(accepted(&state.platform.accounts().approve_registration(&caller.actor, &name).await?))
}

/// Rejects a pending registration; the applicant is told the reason. *admin*
pub async fn admin_reject_registration(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<RejectRequest>,
) -> ApiResult<Json<RegistrationView>> {
    let request = state.platform.accounts().reject_registration(&caller.actor, &name, &body.reason).await?;
    Ok(Json(RegistrationView::from_core(&request)))
}

/// Key change requests, oldest first (pending unless `?status=`). *admin*
pub async fn admin_key_changes(
    caller: Caller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<RequestListQuery>,
) -> ApiResult<PageJson<KeyChangeView>> {
    let requests = state.platform.accounts().key_changes(&caller.actor, query.core()).await?;
    Ok(page(requests, KeyChangeView::from_owned))
}

/// Approves a pending key change: the account's key is replaced at once, on the bastion by
/// the operation. *admin*
pub async fn admin_approve_key_change(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    Ok(accepted(&state.platform.accounts().approve_key_change(&caller.actor, &name).await?))
}

/// Rejects a pending key change; the user is told the reason. *admin*
pub async fn admin_reject_key_change(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<RejectRequest>,
) -> ApiResult<Json<KeyChangeView>> {
    let request = state.platform.accounts().reject_key_change(&caller.actor, &name, &body.reason).await?;
    Ok(Json(KeyChangeView::from_core(&request)))
}

/// Suspends an account: its tokens and socket identity are refused; its resources stay. *admin*
pub async fn admin_suspend_user(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(UserView::from_core(&state.platform.accounts().set_suspended(&caller.actor, &name, true).await?)))
}

/// Resumes a suspended account. *admin*
pub async fn admin_resume_user(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(UserView::from_core(&state.platform.accounts().set_suspended(&caller.actor, &name, false).await?)))
}

/// Deletes an account that owns no VM or cluster: frees its IP block, removes its bastion
/// login and its tokens. *admin*
pub async fn admin_delete_user(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.platform.accounts().delete(&caller.actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Purges an account: suspends it, then the operation destroys its VMs, frees its addresses
/// and blocks, removes its bastion login and the account. *admin*
pub async fn admin_purge_user(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    Ok(accepted(&state.platform.accounts().purge(&caller.actor, &name).await?))
}
