//! The server in process: `app()` on `MemoryStore` and the simulated vSphere, driven with
//! `tower::ServiceExt::oneshot`, the caller's identity injected as the listeners would (a Unix uid
//! or a TCP connection with its bearer token). Everything is checked through HTTP only, so these
//! tests hold whatever the handlers and the platform look like inside. The end-to-end suite on
//! the real binaries is in the `tests` crate; this one runs in milliseconds.

mod authz;
mod bad_input;
mod fixture;
mod listener;
mod networks;
mod registration;
mod web;
