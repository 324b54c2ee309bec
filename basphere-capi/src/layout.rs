//! Where and how clusters are built (the site's choices, from configuration), and the port the
//! clusters' API servers listen on: what rendering and kube-vip's static pod both read.

use std::collections::BTreeMap;

/// Where and how clusters are built: the site's choices, from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub namespace_prefix: String,
    /// The VSphereClusterIdentity every cluster uses.
    pub identity: String,
    pub server: String,
    pub thumbprint: Option<String>,
    pub datacenter: String,
    pub datastore: String,
    pub resource_pool: String,
    pub network: String,
    pub folder: String,
    pub storage_policy: Option<String>,
    pub pod_cidr: String,
    pub service_cidr: String,
    pub kube_vip_image: String,
    /// The guest NIC kube-vip serves the VIP on (`None`: kube-vip finds it).
    pub vip_interface: Option<String>,
    /// The add-on manifests (cloud provider, CNI) installed in every cluster, by name.
    pub addons: BTreeMap<String, String>,
    /// Seconds an address freed by a machine stays unused before the pool hands it out again.
    pub address_reuse_grace_seconds: u32,
}

/// What the kube-vip static pod and the kubelet talk to.
pub const API_SERVER_PORT: u16 = 6443;
