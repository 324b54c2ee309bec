//! API tokens: their views (never their secrets, except once at creation) and the request for one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An API token (never its secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenView {
    pub id: Uuid,
    pub owner: String,
    pub name: String,
    /// user or admin.
    pub scope: String,
    #[serde(serialize_with = "crate::text::time")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::text::opt_time")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::text::opt_time")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A request for a new token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    #[cfg_attr(feature = "openapi", schema(example = "laptop"))]
    pub name: String,
    /// user (default) or admin.
    #[serde(default)]
    pub scope: Option<String>,
    /// Days until it expires; no expiry when absent.
    #[cfg_attr(feature = "openapi", schema(maximum = 3650))]
    pub expires_in_days: Option<u32>,
}

/// A new token: the secret is shown here once and never again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub token: TokenView,
    pub secret: String,
}

/// A single-use link that signs a browser in as the caller (`basphere web`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignInLinkView {
    /// Open it in a browser; it works once.
    #[cfg_attr(feature = "openapi", schema(example = "https://basphere.example.com/sign-in/bsl_..."))]
    pub url: String,
    /// The link stops working at this time (five minutes after it was made).
    #[serde(serialize_with = "crate::text::time")]
    pub expires_at: DateTime<Utc>,
}
