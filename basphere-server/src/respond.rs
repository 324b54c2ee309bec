//! What the API's handlers share: the list query's meaning for the platform, pages answered as
//! JSON, and the answer to accepted work.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use basphere_core::model::Operation;
use basphere_core::platform::{Page as CorePage, PageRequest, VmQuery};

use crate::wire::*;

/// `?limit=&after=&state=` as the platform asks for them.
pub(crate) trait ListQueryExt {
    fn page(&self) -> PageRequest;
    fn vms(&self) -> VmQuery;
}

impl ListQueryExt for ListQuery {
    fn page(&self) -> PageRequest {
        PageRequest { limit: self.limit, after: self.after }
    }

    fn vms(&self) -> VmQuery {
        VmQuery { state: self.state.clone(), page: self.page() }
    }
}

/// A page of core records as its wire view.
pub(crate) fn page<T, V>(page: CorePage<T>, view: impl FnMut(T) -> V) -> PageJson<V> {
    PageJson(Page { items: page.items.into_iter().map(view).collect(), next: page.next.map(|id| id.to_string()) })
}

/// What one listed record takes in JSON, about (a VM is about 400 bytes).
const PAGE_ITEM_BYTES: usize = 512;

/// A page answered as JSON, serialised into one buffer sized for its items up front: axum's
/// `Json` starts at 128 bytes and grows (copying) about ten times for a page of 100 VMs, which
/// was an eighth of a list request's time in a profile.
pub struct PageJson<V>(pub Page<V>);

impl<V: WriteJson> IntoResponse for PageJson<V> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(64 + self.0.items.len() * PAGE_ITEM_BYTES);
        match write_page(&self.0, &mut body) {
            Ok(()) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response(),
            Err(error) => {
                tracing::error!(%error, "a page could not be written as JSON");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

/// 202 with `body` and the operation's `Location`.
pub(crate) fn accepted(operation: &Operation, body: impl serde::Serialize) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/operations/{}", operation.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
