//! basphere-capi's tests: every rendered object against the real CRD schema of its kind and
//! version, snapshots, injection, the status read from conditions, and the `ClusterProvisioner`
//! conformance suite on the simulated management cluster.

mod access;
mod client;
mod conformance;
mod render;
mod status;
mod verifier;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use basphere_capi::render::Layout;
use basphere_core::cluster_provisioner::ClusterRequest;
use basphere_core::model::NodeSpec;
use basphere_core::testing::{ssh_key, username};
use basphere_core::validate::ResourceName;

pub fn layout() -> Layout {
    Layout {
        namespace_prefix: "user-".into(),
        identity: "basphere-vsphere".into(),
        server: "vcenter.example.com".into(),
        thumbprint: Some("AA:BB:CC".into()),
        datacenter: "DC0".into(),
        datastore: "LocalDS_0".into(),
        resource_pool: "/DC0/host/DC0_C0/Resources".into(),
        network: "VM Network".into(),
        folder: "basphere-clusters".into(),
        storage_policy: None,
        pod_cidr: "192.168.0.0/16".into(),
        service_cidr: "10.128.0.0/12".into(),
        kube_vip_image: "ghcr.io/kube-vip/kube-vip:v0.8.9".into(),
        vip_interface: None,
        addons: BTreeMap::from([
            ("calico".to_owned(), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: calico}\n".to_owned()),
            ("cpi".to_owned(), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cpi}\n".to_owned()),
        ]),
        address_reuse_grace_seconds: 60,
    }
}

pub fn spec(key: &str) -> NodeSpec {
    let (cpu, memory_gb, disk_gb) = match key {
        "small" => (2, 4, 50),
        "medium" => (4, 8, 100),
        _ => (8, 16, 200),
    };
    NodeSpec { key: key.into(), cpu, memory_mb: memory_gb * 1024, disk_gb }
}

/// A request like the platform makes: VIP .40, nodes from .41 on.
pub fn request(control_plane: u32, workers: u32, worker_spec: &str) -> ClusterRequest {
    let pool = control_plane + workers + 2;
    ClusterRequest {
        id: "0196f1a2-0000-7000-8000-000000000001".parse().unwrap(),
        owner: username("alice"),
        name: ResourceName::parse("dev").unwrap(),
        kubernetes_version: "v1.31.4".into(),
        node_template: "ubuntu-2204-kube-v1.31.4".into(),
        control_plane_count: control_plane,
        control_plane_spec: spec("medium"),
        worker_count: workers,
        worker_spec: spec(worker_spec),
        endpoint: Ipv4Addr::new(10, 254, 0, 40),
        node_addresses: (0..pool).map(|i| Ipv4Addr::new(10, 254, 0, 41 + i as u8)).collect(),
        prefix_len: 21,
        gateway: Ipv4Addr::new(10, 254, 0, 1),
        dns: vec![Ipv4Addr::new(10, 254, 0, 2)],
        lan: None,
        ssh_key: ssh_key(1),
    }
}
