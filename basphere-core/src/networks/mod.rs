//! Tenant networks (`networks.mode: tenant`): a network per account, its LANs on VLAN ids of its
//! own, behind its own router.

mod allocate;

pub use allocate::new_network;
