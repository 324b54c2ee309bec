//! Basphere's core: the domain model and its rules, the traits every backend implements, the
//! configuration model, and the orchestration (`Platform`) that composes them.
//!
//! This crate does no IO of its own: no SQL, no HTTP, no processes. Backends live in their own
//! crates and are composed by the binaries. The in-memory and mock backends here are real
//! implementations of the traits and serve as reference models in tests.

pub mod accounts;
pub mod bastion;
pub mod cluster_provisioner;
pub mod clusters;
pub mod config;
pub mod error;
pub mod human;
pub mod ipam;
pub mod memory;
pub mod mock;
pub mod model;
pub mod networks;
pub mod notifier;
pub mod platform;
pub mod provisioner;
pub mod router;
pub mod runtime;
pub mod store;
pub mod validate;
pub mod vms;

#[cfg(feature = "testing")]
pub mod testing;

pub use bastion::Bastion;
pub use cluster_provisioner::ClusterProvisioner;
pub use config::Config;
pub use error::{Error, Result};
pub use ipam::Ipam;
pub use memory::MemoryStore;
pub use notifier::Notifier;
pub use platform::{Actor, Platform};
pub use provisioner::Provisioner;
pub use store::{Store, StoreExt, StoreRead, StoreTx};
