//! The public submissions: asking for an account or a new SSH key.

use crate::endpoint::ProblemResponse::*;
use crate::endpoint::{endpoint, BodyMedia, ProblemResponse, Reply};
use crate::{KeyChangeRequestBody, RegisterRequest, SubmittedView};

const SUBMISSION: &[ProblemResponse] =
    &[InvalidInput, Forbidden, PayloadTooLarge, UnsupportedMediaType, TooManyRequests, ServerError];

endpoint! {
    /// `POST /api/v1/register`
    Register = Post "/api/v1/register", register, tag "registration",
    types((), (), RegisterRequest => SubmittedView);
    SUMMARY = "Asks for an account. Answered 202 whether or not the username or email is taken (an\nadministrator sees why a request was not recorded in the audit log). *public*";
    PUBLIC = true;
    BODY = BodyMedia::JsonOrForm;
    REPLIES = &[Reply::json(202)];
    PROBLEMS = SUBMISSION;
}

endpoint! {
    /// `POST /api/v1/key-change`
    KeyChange = Post "/api/v1/key-change", key_change, tag "registration",
    types((), (), KeyChangeRequestBody => SubmittedView);
    SUMMARY = "Asks for an account's SSH key to be replaced; the email must be the account's. Answered\n202 whatever becomes of it. *public*";
    PUBLIC = true;
    BODY = BodyMedia::JsonOrForm;
    REPLIES = &[Reply::json(202)];
    PROBLEMS = SUBMISSION;
}
