//! Basphere's Kubernetes cluster backend: Cluster API with the vSphere provider (CAPV), kube-vip
//! for the control-plane VIP, and the in-cluster IPAM provider holding exactly the node
//! addresses Basphere leased.
//!
//! `render` makes every object of a cluster for either contract version, `kubevip` the static
//! pod serving the VIP, and `status` reads a cluster's state from its conditions.

pub mod client;
pub mod fake;
pub mod kubevip;
pub mod render;
pub mod schema;
pub mod status;
