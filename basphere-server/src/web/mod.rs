//! The web pages, served by the server itself: public pages (registration, SSH guide, key
//! change), signing in (a single-use link from `basphere web`, or an API token), the developer's
//! dashboard and the administrators' console.
//!
//! Server-rendered with minijinja from templates compiled into the binary, with one stylesheet
//! and one small script from the server (no CDN, no inline script or style, so the
//! Content-Security-Policy forbids both). Every value is escaped where it lands (minijinja's
//! HTML auto-escaping; `urlencode` in URLs). Every state-changing request is a POST carrying a
//! CSRF token (`session`), and every page goes through the same `Platform` use cases as the
//! API, so the platform's authorization table decides what a page may show or do.

mod admin;
mod dashboard;
mod form;
mod pages;
mod public;
mod session;
mod sign_in;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

pub use pages::Pages;
pub use session::{Visitor, SESSION_COOKIE};

use crate::AppState;

/// The web routes.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/static/{file}", get(asset))
        .merge(public::routes())
        .merge(sign_in::routes())
        .merge(dashboard::routes())
        .merge(admin::routes())
        .layer(axum::middleware::from_fn_with_state(state, security_headers))
}

/// `/`: the dashboard when signed in (the console for the system administrator), else the
/// sign-in page.
async fn home(visitor: Visitor) -> Response {
    match &visitor.actor {
        Some(actor) if actor.account.is_some() => Redirect::to("/dashboard").into_response(),
        Some(_) => Redirect::to("/admin").into_response(),
        None => Redirect::to("/sign-in").into_response(),
    }
}

const CSS: &str = include_str!("../../web/static/basphere.css");
const JS: &str = include_str!("../../web/static/basphere.js");

/// The stylesheet and the script. They change only with the binary, whose version is in their
/// URLs (`?v=`), so browsers may keep them for a day.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "basphere.css" => (CSS, "text/css; charset=utf-8"),
        "basphere.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=86400")], body).into_response()
}

/// The headers of every web response: a Content-Security-Policy without `unsafe-inline` (the
/// reCAPTCHA script's origins added only when it is on), no framing, no sniffing, referrers only
/// to this site (sign-in links are in URLs; `no-referrer` would make browsers send `Origin: null`
/// with forms, which the CSRF check refuses), and no caching of pages that show private data.
async fn security_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let recaptcha = matches!(state.platform.config().recaptcha, basphere_core::config::RecaptchaConfig::On(_));
    let csp = if recaptcha {
        "default-src 'none'; script-src 'self' https://www.google.com/recaptcha/ https://www.gstatic.com/recaptcha/; \
         frame-src https://www.google.com/recaptcha/; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    } else {
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    headers.insert("permissions-policy", HeaderValue::from_static("camera=(), microphone=(), geolocation=()"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
