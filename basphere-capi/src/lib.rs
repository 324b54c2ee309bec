//! Kubernetes clusters through Cluster API and CAPV objects, with the `kube` crate.
//!
//! Not built yet: cluster operations answer `NotSupported` until this backend exists.
