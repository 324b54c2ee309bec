//! The wire types of Basphere's HTTP API (`/api/v1`): the JSON views the server renders, the
//! request bodies and query strings it accepts and the problem document it answers errors with;
//! and every endpoint, defined once in `endpoints` (method, path, parameters, body, answer,
//! problems), which the server routes and documents and the CLI calls.
//!
//! They are a promise to clients, written out by hand rather than derived from core types, so
//! that a change inside Basphere cannot change the API by accident. The server converts core
//! types into them (in `basphere-server`, which knows core); the CLI parses answers into them
//! (it does not link core). This crate depends on no other Basphere crate.
//!
//! Views keep the field order the server has always sent and skip no field, and they accept
//! fields they do not know, so an older client keeps working against a newer server. Request
//! bodies refuse unknown fields: a misspelt field is an error, not a silent default.
//!
//! With the `openapi` feature each type also derives utoipa's `ToSchema`, for the server's
//! OpenAPI document; clients leave it off.

mod account;
mod admin;
mod cluster;
pub mod endpoint;
pub mod endpoints;
pub mod json;
mod network;
mod operation;
mod page;
mod problem;
mod query;
mod request;
mod service;
pub mod text;
mod token;
mod vm;

pub use account::*;
pub use admin::*;
pub use cluster::*;
pub use json::{write_page, WriteJson};
pub use network::*;
pub use operation::*;
pub use page::*;
pub use problem::*;
pub use query::*;
pub use request::*;
pub use service::*;
pub use token::*;
pub use vm::*;

#[cfg(test)]
mod tests;
