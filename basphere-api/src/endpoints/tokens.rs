//! The caller's API tokens.

use super::IdPath;
use crate::endpoint::problems::{ONE, READ};
use crate::endpoint::ProblemResponse::*;
use crate::endpoint::{endpoint, BodyMedia, Reply};
use crate::{CreateTokenRequest, CreatedToken, TokenView};

endpoint! {
    /// `GET /api/v1/tokens`
    List = Get "/api/v1/tokens", list_tokens, tag "tokens",
    types((), (), () => Vec<TokenView>);
    SUMMARY = "Your API tokens (never their secrets). *user*";
    REPLIES = &[Reply::OK];
    PROBLEMS = READ;
}

endpoint! {
    /// `POST /api/v1/tokens`
    Create = Post "/api/v1/tokens", create_token, tag "tokens",
    types((), (), CreateTokenRequest => CreatedToken);
    SUMMARY = "Create an API token; its secret is in this answer only. *user*";
    BODY = BodyMedia::Json;
    REPLIES = &[Reply::CREATED];
    PROBLEMS = &[InvalidInput, PayloadTooLarge, UnsupportedMediaType, Unauthenticated, Forbidden, ServerError];
}

endpoint! {
    /// `DELETE /api/v1/tokens/{id}`
    Revoke = Delete "/api/v1/tokens/{id}", revoke_token, tag "tokens",
    types(IdPath, (), () => TokenView);
    SUMMARY = "Revoke one of your tokens (any token, for an admin). *user*";
    REPLIES = &[Reply::OK];
    PROBLEMS = ONE;
}
