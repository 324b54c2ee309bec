//! The caller's own account: who it is, what it may ask for, its quota, a browser sign-in.

use crate::endpoint::problems::READ;
use crate::endpoint::{endpoint, Reply};
use crate::{CatalogView, MeView, QuotaView, SignInLinkView};

endpoint! {
    /// `GET /api/v1/me`
    Me = Get "/api/v1/me", me, tag "account",
    types((), (), () => MeView);
    SUMMARY = "Who the server believes you are. *user*";
    REPLIES = &[Reply::OK];
    PROBLEMS = READ;
}

endpoint! {
    /// `GET /api/v1/catalog`
    Catalog = Get "/api/v1/catalog", catalog, tag "account",
    types((), (), () => CatalogView);
    SUMMARY = "The OS images and VM specs that may be asked for. *user*";
    REPLIES = &[Reply::OK];
    PROBLEMS = READ;
}

endpoint! {
    /// `GET /api/v1/quota`
    Quota = Get "/api/v1/quota", quota, tag "account",
    types((), (), () => QuotaView);
    SUMMARY = "Your limits and usage. *user*";
    REPLIES = &[Reply::OK];
    PROBLEMS = READ;
}

endpoint! {
    /// `POST /api/v1/web/sign-in-link`
    SignInLink = Post "/api/v1/web/sign-in-link", create_sign_in_link, tag "account",
    types((), (), () => SignInLinkView);
    SUMMARY = "A single-use link, valid five minutes, that signs a browser in as you (what `basphere web`\nprints). Any caller; on the bastion, the socket says who you are. *user*";
    REPLIES = &[Reply::CREATED];
    PROBLEMS = READ;
}
