//! Who is looking at a page, and signing in and out.
//!
//! A session is a cookie holding a secret whose hash the store keeps (`HttpOnly`,
//! `SameSite=Strict`, `Secure` when `server.public_url` is https); every request's session is
//! checked by `Platform::identify_web_session`. The CSRF token of a signed-in visitor is derived
//! from the session's secret (another site can neither read nor guess it); an anonymous visitor's
//! forms carry the value of a random `basphere_csrf` cookie instead.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use basphere_core::platform::Action;
use basphere_core::{Actor, Error};
use cookie::{Cookie, SameSite};
use minijinja::{context, Value};
use sha2::Digest;

use crate::auth::Transport;
use crate::AppState;

/// The session cookie.
pub const SESSION_COOKIE: &str = "basphere_session";
/// An anonymous visitor's CSRF cookie.
pub const CSRF_COOKIE: &str = "basphere_csrf";

/// A short notice shown at the top of the next page, named in its URL (`?done=`), so that no
/// text from a URL is ever shown.
fn notice(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "signed-out" => ("ok", "You are signed out."),
        "session-ended" => ("warn", "Your session has ended; sign in again."),
        "vm-created" => ("ok", "The VM is being created; it appears below and its state updates as it runs."),
        "vm-deleting" => ("ok", "The VM is being deleted; its address is freed once vSphere confirms it is gone."),
        "vm-start" => ("ok", "The VM is starting."),
        "vm-stop" => ("ok", "The VM is stopping."),
        "vm-reboot" => ("ok", "The VM is rebooting."),
        "token-revoked" => ("ok", "The token is revoked; it stops working at once."),
        "approved" => ("ok", "Approved. Accounts and keys are set up in the background; the outbox shows the emails."),
        "rejected" => ("ok", "Rejected; the requester is told the reason."),
        "suspended" => ("ok", "The account is suspended and signed out everywhere."),
        "resumed" => ("ok", "The account is active again."),
        "purging" => ("ok", "The account is being purged: its VMs are destroyed, then the account is deleted."),
        "quota-saved" => ("ok", "The quota is saved."),
        "retried" => ("ok", "The notification is queued again."),
        "reconciled" => ("ok", "Reconciliation ran; the report is below."),
        _ => return None,
    })
}

/// The visitor of a page: signed in or not, with the CSRF token its forms carry.
#[derive(Clone, Debug)]
pub struct Visitor {
    pub actor: Option<Actor>,
    pub csrf: String,
    /// Where the request came from, for the audit log (`tcp:ADDR` or `unix:uid=N`).
    pub source: String,
    /// The client's address as the abuse limits count it.
    pub client: String,
    pub(super) session_secret: Option<String>,
    /// The request carried a session that has ended (expired, signed out, or suspended).
    pub(super) ended: bool,
    pub(super) set_cookies: Vec<String>,
    secure: bool,
    notices: Vec<(&'static str, &'static str)>,
}

fn csrf_of_session(secret: &str) -> String {
    let digest = sha2::Sha256::digest(format!("basphere-csrf:{secret}").as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn random_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(visitor) = parts.extensions.get::<Visitor>() {
            return Ok(visitor.clone());
        }
        let transport = parts.extensions.get::<Transport>().cloned();
        let source = transport.as_ref().map_or_else(|| "web".to_owned(), Transport::source);
        let client = crate::requests::client(transport.as_ref(), &parts.headers, &state.server.trusted_proxies);
        let secure = state.server.public_url.as_deref().is_some_and(|url| url.starts_with("https://"));
        let mut session = None;
        let mut csrf_cookie = None;
        for value in parts.headers.get_all(header::COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            for cookie in Cookie::split_parse(text).flatten() {
                match cookie.name() {
                    SESSION_COOKIE => session = Some(cookie.value().to_owned()),
                    CSRF_COOKIE
                        if cookie.value().len() == 64 && cookie.value().bytes().all(|b| b.is_ascii_hexdigit()) =>
                    {
                        csrf_cookie = Some(cookie.value().to_owned())
                    }
                    _ => {}
                }
            }
        }
        let notices = parts
            .uri
            .query()
            .map(|query| {
                form_urlencoded::parse(query.as_bytes())
                    .filter(|(key, _)| key == "done")
                    .filter_map(|(_, code)| notice(&code))
                    .collect()
            })
            .unwrap_or_default();
        let mut visitor = Visitor {
            actor: None,
            csrf: String::new(),
            source,
            client,
            session_secret: None,
            ended: false,
            set_cookies: Vec::new(),
            secure,
            notices,
        };
        if let Some(secret) = session {
            match state.platform.credentials().identify_web_session(&secret, &visitor.source).await {
                Ok(actor) => {
                    visitor.csrf = csrf_of_session(&secret);
                    visitor.actor = Some(actor);
                    visitor.session_secret = Some(secret);
                }
                Err(Error::Unauthorized(_)) => {
                    visitor.set_cookies.push(visitor.cookie(SESSION_COOKIE, "", Some(0)));
                    visitor.notices.push(("warn", "Your session has ended; sign in again."));
                    visitor.ended = true;
                }
                Err(error) => {
                    return Err(visitor.error(state, error));
                }
            }
        }
        if visitor.actor.is_none() {
            visitor.csrf = match csrf_cookie {
                Some(token) => token,
                None => {
                    let token = random_token();
                    visitor.set_cookies.push(visitor.cookie(CSRF_COOKIE, &token, None));
                    token
                }
            };
        }
        parts.extensions.insert(visitor.clone());
        Ok(visitor)
    }
}

impl Visitor {
    pub(super) fn cookie(&self, name: &'static str, value: &str, max_age_seconds: Option<i64>) -> String {
        let mut cookie = Cookie::build((name, value.to_owned()))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure)
            .build();
        if let Some(seconds) = max_age_seconds {
            cookie.set_max_age(cookie::time::Duration::seconds(seconds));
        }
        cookie.to_string()
    }

    /// Whether the request carried a session that has ended.
    pub fn session_ended(&self) -> bool {
        self.ended
    }

    /// The values every page shows: who is signed in, the CSRF token, the notices.
    fn common(&self) -> Value {
        let who = self.actor.as_ref().map(|actor| {
            context! { name => actor.name.clone(), admin => actor.is_admin(), account => actor.account.is_some() }
        });
        let notices: Vec<Value> =
            self.notices.iter().map(|(kind, text)| context! { kind => *kind, text => *text }).collect();
        context! { who, csrf => self.csrf.clone(), notices, asset_version => env!("CARGO_PKG_VERSION") }
    }

    fn with_cookies(&self, mut response: Response) -> Response {
        for cookie in &self.set_cookies {
            if let Ok(value) = HeaderValue::from_str(cookie) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
        response
    }

    /// Renders `template` with the common values and `values`.
    pub fn page(&self, state: &AppState, status: StatusCode, template: &str, title: &str, values: Value) -> Response {
        let context = context! { ..values, ..context! { title => title }, ..self.common() };
        match state.pages.render(template, context) {
            Ok(html) => self.with_cookies((status, Html(html)).into_response()),
            Err(error) => {
                tracing::error!(template, error = format!("{error:#}"), "a page failed to render");
                self.with_cookies(
                    (StatusCode::INTERNAL_SERVER_ERROR, "This page failed to render; the error was logged.")
                        .into_response(),
                )
            }
        }
    }

    /// A template alone, without the page around it (the live region the script fetches).
    pub fn fragment(&self, state: &AppState, template: &str, values: Value) -> Response {
        self.page(state, StatusCode::OK, template, "", values)
    }

    /// A page with one message (errors, refusals).
    pub fn message(&self, state: &AppState, status: StatusCode, title: &str, message: &str, kind: &str) -> Response {
        self.page(state, status, "message.html", title, context! { message, kind, back => "/" })
    }

    /// A platform error as a page: its status and its message (internals only in the log).
    pub fn error(&self, state: &AppState, error: Error) -> Response {
        let problem = crate::problem::ApiError::from(error);
        let title = match problem.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::UNAUTHORIZED => "Sign in first",
            StatusCode::CONFLICT => "Not possible now",
            StatusCode::TOO_MANY_REQUESTS => "Too many requests",
            status if status.is_server_error() => "Something went wrong",
            _ => "Not accepted",
        };
        self.message(state, problem.status, title, &problem.detail, "error")
    }

    /// `303 See Other` to `to` (after a POST), keeping the cookies this request set.
    pub fn redirect(&self, to: &str) -> Response {
        self.with_cookies(Redirect::to(to).into_response())
    }

    pub(super) fn signed_in_as(mut self, secret: &str, max_age: i64) -> Self {
        self.set_cookies.push(self.cookie(SESSION_COOKIE, secret, Some(max_age)));
        self
    }
}

/// A visitor who is signed in.
pub struct SignedIn {
    pub visitor: Visitor,
    pub actor: Actor,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let visitor = Visitor::from_request_parts(parts, state).await?;
        match visitor.actor.clone() {
            Some(actor) => Ok(SignedIn { visitor, actor }),
            None if visitor.ended => Err(visitor.redirect("/sign-in?done=session-ended")),
            None => Err(visitor.redirect("/sign-in")),
        }
    }
}

/// A signed-in administrator, as the platform's authorization table decides.
pub struct Admin {
    pub visitor: Visitor,
    pub actor: Actor,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let SignedIn { visitor, actor } = SignedIn::from_request_parts(parts, state).await?;
        match state.platform.authorize(&actor, Action::Administer) {
            Ok(()) => Ok(Admin { visitor, actor }),
            Err(error) => Err(visitor.error(state, error)),
        }
    }
}
