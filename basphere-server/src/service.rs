//! The service's own endpoints: liveness and readiness (metrics are `metrics`, the document
//! `routes`). Public, on both listeners.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::AppState;

/// Liveness: the process serves requests. Public.
pub async fn healthz() -> Json<basphere_api::Health> {
    Json(basphere_api::Health { status: "ok".to_owned() })
}

/// Readiness: the store answers and the VM backend passes its preflight. Public.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let store_ok = state.platform.store_ready().await.is_ok();
    let backend = state.platform.vms().provisioner().preflight().await;
    let body = basphere_api::Readiness {
        backend: match &backend {
            Ok(()) => "ok".to_owned(),
            Err(error) => error.to_string(),
        },
        store: if store_ok { "ok" } else { "unavailable" }.to_owned(),
        vm_backend: state.platform.vms().provisioner().backend_name().to_owned(),
    };
    let status = if store_ok && backend.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}
