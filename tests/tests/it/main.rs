//! Cross-crate scenarios, one integration-test binary.

mod concurrency;
mod crash;
mod ipam;
mod platform;
