//! Signing in and out: the sign-in page (an API token pasted), a sign-in link's page and its
//! confirmation, and signing out. The session itself, and who the visitor is, are `session`'s.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use basphere_core::{Actor, Error};
use minijinja::context;

use crate::AppState;

use super::form::Posted;
use super::session::{Visitor, SESSION_COOKIE};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sign-in", get(sign_in_page).post(sign_in_with_token))
        .route("/sign-in/link", post(sign_in_with_link))
        .route("/sign-in/{code}", get(sign_in_link_page))
        .route("/sign-out", post(sign_out))
}

fn landing(actor: &Actor) -> &'static str {
    if actor.account.is_some() {
        "/dashboard"
    } else {
        "/admin"
    }
}

async fn sign_in_page(State(state): State<AppState>, visitor: Visitor) -> Response {
    if let Some(actor) = &visitor.actor {
        return visitor.redirect(landing(actor));
    }
    sign_in_form(&state, &visitor, StatusCode::OK, None)
}

fn sign_in_form(state: &AppState, visitor: &Visitor, status: StatusCode, error: Option<String>) -> Response {
    let errors = context! { token => error };
    let max_hours = state.platform.config().web.session_max_hours;
    visitor.page(state, status, "sign_in.html", "Sign in", context! { errors, max_hours })
}

async fn sign_in_with_token(State(state): State<AppState>, Posted { visitor, form }: Posted) -> Response {
    let token = form.get("token").trim();
    if token.is_empty() {
        return sign_in_form(&state, &visitor, StatusCode::BAD_REQUEST, Some("Paste an API token.".into()));
    }
    match state.platform.credentials().sign_in_with_token(token, &visitor.source).await {
        Ok(new) => {
            let to = if new.session.owner.is_some() { "/dashboard" } else { "/admin" };
            visitor.signed_in_as(&new.secret, max_age(&state)).redirect(to)
        }
        Err(Error::Unauthorized(message)) => sign_in_form(&state, &visitor, StatusCode::UNAUTHORIZED, Some(message)),
        Err(error) => visitor.error(&state, error),
    }
}

fn max_age(state: &AppState) -> i64 {
    state.platform.config().web.session_max_hours as i64 * 3600
}

/// The page a sign-in link opens: it asks for a click, so that a link previewer or a prefetch
/// cannot use the link up.
async fn sign_in_link_page(State(state): State<AppState>, visitor: Visitor, Path(code): Path<String>) -> Response {
    let code = if code.len() <= 100 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        code
    } else {
        String::new()
    };
    match state.platform.credentials().sign_in_link_holder(&code).await {
        Ok(Some(holder)) => {
            let values = context! { code, holder, errors => context! {} };
            visitor.page(&state, StatusCode::OK, "sign_in_link.html", "Sign in", values)
        }
        Ok(None) => {
            let refused = "this sign-in link was used already, has expired or is not one; run `basphere web` again";
            let values = context! { code => "", errors => context! { form => refused } };
            visitor.page(&state, StatusCode::UNAUTHORIZED, "sign_in_link.html", "Sign in", values)
        }
        Err(error) => visitor.error(&state, error),
    }
}

async fn sign_in_with_link(State(state): State<AppState>, Posted { visitor, form }: Posted) -> Response {
    match state.platform.credentials().sign_in_with_link(form.get("code"), &visitor.source).await {
        Ok(new) => {
            let to = if new.session.owner.is_some() { "/dashboard" } else { "/admin" };
            visitor.signed_in_as(&new.secret, max_age(&state)).redirect(to)
        }
        Err(Error::Unauthorized(message)) => visitor.page(
            &state,
            StatusCode::UNAUTHORIZED,
            "sign_in_link.html",
            "Sign in",
            context! { code => "", errors => context! { form => message } },
        ),
        Err(error) => visitor.error(&state, error),
    }
}

async fn sign_out(State(state): State<AppState>, Posted { mut visitor, .. }: Posted) -> Response {
    if let Some(secret) = visitor.session_secret.clone() {
        if let Err(error) = state.platform.credentials().sign_out(&secret, &visitor.source).await {
            return visitor.error(&state, error);
        }
    }
    visitor.set_cookies.push(visitor.cookie(SESSION_COOKIE, "", Some(0)));
    visitor.redirect("/sign-in?done=signed-out")
}
