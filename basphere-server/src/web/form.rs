//! Posted forms: the body parsed as `application/x-www-form-urlencoded` (repeated fields kept,
//! for lists of checkboxes), after the request proved it came from one of this site's own pages.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

use super::session::Visitor;
use crate::AppState;
use basphere_core::platform::Action;
use basphere_core::Actor;

/// The largest form accepted (a form carries at most an SSH key and a few fields).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// A form's fields, in order.
#[derive(Clone, Debug, Default)]
pub struct FormData(Vec<(String, String)>);

impl FormData {
    pub fn parse(body: &[u8]) -> Self {
        FormData(form_urlencoded::parse(body).into_owned().collect())
    }

    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        FormData(pairs)
    }

    /// The first value of `name`, or "".
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(key, _)| key == name).map_or("", |(_, value)| value.as_str())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(key, _)| key == name).map(|(_, value)| value.as_str()).collect()
    }
}

/// A POSTed form from one of this site's pages: the CSRF token matches the visitor's, and the
/// browser does not say it came from another origin.
pub struct Posted {
    pub visitor: Visitor,
    pub form: FormData,
}

impl FromRequest<AppState> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let visitor = Visitor::from_request_parts(&mut parts, state).await?;
        let refuse = |visitor: &Visitor, message: &str| {
            visitor.message(state, StatusCode::FORBIDDEN, "Form refused", message, "error")
        };
        if !from_this_site(&parts.headers) {
            return Err(refuse(&visitor, "This form was sent from another site, so it was not acted on."));
        }
        let form_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim_start().starts_with("application/x-www-form-urlencoded"));
        if !form_type {
            return Err(visitor.message(
                state,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Form refused",
                "Send the form as application/x-www-form-urlencoded, as the page does.",
                "error",
            ));
        }
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
            return Err(visitor.message(
                state,
                StatusCode::PAYLOAD_TOO_LARGE,
                "Form refused",
                "The form is larger than the 64 KiB accepted.",
                "error",
            ));
        };
        let form = FormData::parse(&bytes);
        if !same_secret(form.get("csrf"), &visitor.csrf) && visitor.session_ended() {
            // A form from a page of a session that has since ended: say that, not "expired form".
            return Err(visitor.redirect("/sign-in?done=session-ended"));
        }
        if !same_secret(form.get("csrf"), &visitor.csrf) {
            return Err(refuse(
                &visitor,
                "This form has expired or did not come from this site's page. Reload the page and send it again.",
            ));
        }
        Ok(Posted { visitor, form })
    }
}

/// Whether the browser's own headers allow this request as coming from this site: an `Origin`
/// naming this host (browsers send it with every POST), and `Sec-Fetch-Site` (when sent)
/// `same-origin` or `none` (typed or bookmarked). A client that sends neither is not a browser
/// acting for someone else, and still needs the CSRF token.
pub fn from_this_site(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|value: &axum::http::HeaderValue| value.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    match text("origin") {
        None => true,
        Some(origin) => {
            let host = text("host").unwrap_or_default();
            let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
            !host.is_empty() && authority.eq_ignore_ascii_case(host)
        }
    }
}

/// Compares two secrets in time that depends only on their length.
pub fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && !expected.is_empty()
        && given.bytes().zip(expected.bytes()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

/// A POSTed form of a signed-in visitor.
pub struct SignedInForm {
    pub visitor: Visitor,
    pub actor: Actor,
    pub form: FormData,
}

impl axum::extract::FromRequest<AppState> for SignedInForm {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &AppState) -> Result<Self, Response> {
        let Posted { visitor, form } = Posted::from_request(request, state).await?;
        match visitor.actor.clone() {
            Some(actor) => Ok(SignedInForm { visitor, actor, form }),
            None if visitor.ended => Err(visitor.redirect("/sign-in?done=session-ended")),
            None => Err(visitor.redirect("/sign-in")),
        }
    }
}

/// A POSTed form of an administrator.
pub struct AdminForm {
    pub visitor: Visitor,
    pub actor: Actor,
    pub form: FormData,
}

impl axum::extract::FromRequest<AppState> for AdminForm {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &AppState) -> Result<Self, Response> {
        let SignedInForm { visitor, actor, form } = SignedInForm::from_request(request, state).await?;
        match state.platform.authorize(&actor, Action::Administer) {
            Ok(()) => Ok(AdminForm { visitor, actor, form }),
            Err(error) => Err(visitor.error(state, error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn only_this_sites_pages_may_post() {
        assert!(from_this_site(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")])));
        assert!(from_this_site(&headers(&[("host", "b.example"), ("sec-fetch-site", "same-origin")])));
        assert!(from_this_site(&headers(&[("host", "b.example")])), "no browser headers: the token decides");
        assert!(!from_this_site(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:9090")])));
        assert!(!from_this_site(&headers(&[("host", "b.example"), ("origin", "null")])));
        assert!(!from_this_site(&headers(&[("host", "b.example"), ("sec-fetch-site", "same-site")])));
        assert!(!from_this_site(&headers(&[("host", "b.example"), ("sec-fetch-site", "cross-site")])));
    }

    #[test]
    fn forms_keep_repeated_fields_and_secrets_compare_whole() {
        let form = FormData::parse(b"csrf=abc&username=a&username=b&reason=x+y%21");
        assert_eq!(form.all("username"), ["a", "b"]);
        assert_eq!(form.get("reason"), "x y!");
        assert_eq!(form.get("missing"), "");
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
        assert!(!same_secret("", ""));
    }
}
