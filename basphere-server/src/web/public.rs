//! The public pages: registration, its confirmation, the SSH guide, and the key change form.
//! Submissions go through the same `Platform` use cases (limits, bot check, validation) as the
//! public API, and are answered the same whatever became of them.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use basphere_core::config::RecaptchaConfig;
use basphere_core::platform::{Submission, SUBMITTED};
use basphere_core::validate::{KeyChangeForm, RegistrationForm, Username};
use basphere_core::Error;
use basphere_notify::text::TextSettings;
use minijinja::{context, Value};

use super::form::{FormData, Posted};
use super::session::Visitor;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/register", get(register_page).post(register))
        .route("/success", get(success))
        .route("/ssh-guide", get(ssh_guide))
        .route("/key-change", get(key_change_page).post(key_change))
        .route("/key-change-success", get(key_change_success))
}

fn site_key(state: &AppState) -> Option<String> {
    match &state.platform.config().recaptcha {
        RecaptchaConfig::On(settings) => Some(settings.site_key.clone()),
        _ => None,
    }
}

/// Field errors by form field, from a platform error; what belongs to no field is `form`.
pub fn field_errors(error: Error, key_field: &str) -> Result<(StatusCode, BTreeMap<String, String>), Error> {
    let status = match &error {
        Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut errors = BTreeMap::new();
    let mut put = |error: Error| match error {
        Error::InvalidInput { field, message } => {
            let field = match field.as_str() {
                "ssh public key" | "public_key" | "ssh_key" | "new_public_key" => key_field.to_owned(),
                other => other.to_owned(),
            };
            errors.entry(field).or_insert(message);
        }
        other => {
            errors.entry("form".to_owned()).or_insert(other.to_string());
        }
    };
    match error {
        Error::InvalidFields(list) => list.into_iter().for_each(&mut put),
        error @ Error::InvalidInput { .. } => put(error),
        error @ (Error::RateLimited { .. } | Error::Forbidden(_)) => put(error),
        other => return Err(other),
    }
    Ok((status, errors))
}

/// A typed key shown back in the form, unless it is a private key (which is never echoed).
fn key_to_keep(value: &str) -> String {
    if value.contains("PRIVATE KEY") {
        String::new()
    } else {
        value.to_owned()
    }
}

fn bastion(state: &AppState) -> String {
    let config = state.platform.config();
    if config.bastion.port == 22 {
        config.bastion.address.clone()
    } else {
        format!("{}:{}", config.bastion.address, config.bastion.port)
    }
}

/// Where a submission came from, and its bot-check answer.
fn submission(visitor: &Visitor, form: &FormData) -> Submission {
    let response = form.get("g-recaptcha-response");
    Submission { client: visitor.client.clone(), human_response: (!response.is_empty()).then(|| response.to_owned()) }
}

/// The page that answers a submission, naming the username it was for.
fn answered(page: &str, form: &FormData) -> String {
    let username = form.get("username").trim();
    format!("{page}?username={}", form_urlencoded::byte_serialize(username.as_bytes()).collect::<String>())
}

async fn register_page(State(state): State<AppState>, visitor: Visitor) -> Response {
    register_form(&state, &visitor, StatusCode::OK, &FormData::default(), BTreeMap::new())
}

fn register_form(
    state: &AppState,
    visitor: &Visitor,
    status: StatusCode,
    form: &FormData,
    errors: BTreeMap<String, String>,
) -> Response {
    let form = context! {
        username => form.get("username"), email => form.get("email"), team => form.get("team"),
        public_key => key_to_keep(form.get("public_key")),
    };
    let values = context! {
        form, errors, recaptcha_site_key => site_key(state), bastion => bastion(state),
        username_rule => basphere_core::validate::USERNAME_RULE,
    };
    visitor.page(state, status, "register.html", "Register", values)
}

async fn register(State(state): State<AppState>, Posted { visitor, form }: Posted) -> Response {
    let from = submission(&visitor, &form);
    let submitted = RegistrationForm {
        username: form.get("username").to_owned(),
        email: form.get("email").to_owned(),
        team: form.get("team").to_owned(),
        public_key: form.get("public_key").to_owned(),
    };
    match state.platform.accounts().register(&from, submitted).await {
        Ok(_) => visitor.redirect(&answered("/success", &form)),
        Err(error) => match field_errors(error, "public_key") {
            Ok((status, errors)) => register_form(&state, &visitor, status, &form, errors),
            Err(error) => visitor.error(&state, error),
        },
    }
}

/// The username of a confirmation page's URL, if it is one (anything else is not shown).
fn username_of(query: &BTreeMap<String, String>) -> Option<String> {
    query.get("username").and_then(|name| Username::parse(name).ok()).map(|name| name.to_string())
}

fn ssh_values(state: &AppState, user: &str) -> Value {
    let texts = TextSettings::from_config(state.platform.config());
    let networks: Vec<String> = texts.vm_networks.iter().map(ToString::to_string).collect();
    context! {
        ssh_command => texts.ssh_command(user),
        ssh_config => texts.ssh_config(user),
        networks => if networks.is_empty() { "your VM network".to_owned() } else { networks.join(", ") },
    }
}

async fn success(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let username = username_of(&query);
    let values = ssh_values(&state, username.as_deref().unwrap_or("USER"));
    visitor.page(
        &state,
        StatusCode::OK,
        "success.html",
        "Request received",
        context! { ..values, ..context! { username, submitted => SUBMITTED } },
    )
}

async fn ssh_guide(State(state): State<AppState>, visitor: Visitor) -> Response {
    let user =
        visitor.actor.as_ref().and_then(|actor| actor.account.as_ref()).map_or("USER".to_owned(), ToString::to_string);
    visitor.page(&state, StatusCode::OK, "ssh_guide.html", "SSH guide", ssh_values(&state, &user))
}

async fn key_change_page(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let mut prefilled = Vec::new();
    for field in ["username", "email"] {
        if let Some(value) = query.get(field) {
            prefilled.push((field.to_owned(), value.chars().take(254).collect::<String>()));
        }
    }
    let form = FormData::from_pairs(prefilled);
    key_change_form(&state, &visitor, StatusCode::OK, &form, BTreeMap::new())
}

fn key_change_form(
    state: &AppState,
    visitor: &Visitor,
    status: StatusCode,
    form: &FormData,
    errors: BTreeMap<String, String>,
) -> Response {
    let form = context! {
        username => form.get("username"), email => form.get("email"),
        new_public_key => key_to_keep(form.get("new_public_key")), reason => form.get("reason"),
    };
    let values = context! { form, errors, recaptcha_site_key => site_key(state) };
    visitor.page(state, status, "key_change.html", "Change your SSH key", values)
}

async fn key_change(State(state): State<AppState>, Posted { visitor, form }: Posted) -> Response {
    let from = submission(&visitor, &form);
    let submitted = KeyChangeForm {
        username: form.get("username").to_owned(),
        email: form.get("email").to_owned(),
        new_public_key: form.get("new_public_key").to_owned(),
        reason: form.get("reason").to_owned(),
    };
    match state.platform.accounts().request_key_change(&from, submitted).await {
        Ok(_) => visitor.redirect(&answered("/key-change-success", &form)),
        Err(error) => match field_errors(error, "new_public_key") {
            Ok((status, errors)) => key_change_form(&state, &visitor, status, &form, errors),
            Err(error) => visitor.error(&state, error),
        },
    }
}

async fn key_change_success(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let values = context! { username => username_of(&query), submitted => SUBMITTED };
    visitor.page(&state, StatusCode::OK, "key_change_success.html", "Key change requested", values)
}
