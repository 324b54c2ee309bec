//! The file as written: every key optional, unknown keys refused; `Config::from_raw` fills the
//! defaults and checks the rules.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    // The server's section: kept whole (null when absent), parsed by the server but `workers`.
    pub(super) server: serde_yaml::Value,
    // The backend's sections: kept whole (null when absent), parsed by the backend crate.
    pub(super) backend: serde_yaml::Value,
    pub(super) vsphere: serde_yaml::Value,
    pub(super) templates: RawTemplates,
    pub(super) network: RawNetwork,
    pub(super) networks: super::networks::RawNetworks,
    pub(super) quotas: RawQuotas,
    pub(super) vm_specs: Option<BTreeMap<String, RawVmSpec>>,
    pub(super) cluster_types: Option<BTreeMap<String, RawClusterType>>,
    pub(super) cluster_node_specs: Option<BTreeMap<String, RawNodeSpec>>,
    pub(super) cluster_quotas: RawClusterQuotas,
    pub(super) kubernetes: RawKubernetes,
    // The cluster backend's section: kept whole, parsed by the cluster backend crate.
    pub(super) management_cluster: serde_yaml::Value,
    pub(super) recaptcha: RawRecaptcha,
    pub(super) registration: RawRegistration,
    pub(super) notifications: RawNotifications,
    pub(super) validation: RawValidation,
    pub(super) bastion: RawBastion,
    pub(super) reconcile: RawReconcile,
    pub(super) terraform: serde_yaml::Value,
    pub(super) work: RawWork,
    pub(super) web: RawWeb,
    pub(super) store: RawStore,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    pub(super) url: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) pool_size: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawWork {
    pub(super) instance: Option<String>,
    pub(super) lease_seconds: Option<u64>,
    pub(super) notification_attempts: Option<u32>,
    pub(super) notification_retry_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawWeb {
    pub(super) session_idle_minutes: Option<u64>,
    pub(super) session_max_hours: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTemplates {
    pub(super) os: Option<BTreeMap<String, RawOs>>,
    pub(super) kubernetes: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawOs {
    pub(super) template: Option<String>,
    /// Accepted for compatibility with the original; the login user is always the owner.
    #[allow(dead_code)]
    pub(super) default_user: Option<String>,
    pub(super) description: Option<String>,
    pub(super) interface: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNetwork {
    pub(super) cidr: Option<String>,
    pub(super) gateway: Option<Ipv4Addr>,
    pub(super) netmask: Option<Ipv4Addr>,
    pub(super) prefix_length: Option<u8>,
    pub(super) mtu: Option<u32>,
    pub(super) dns: Option<Vec<Ipv4Addr>>,
    pub(super) block_size: Option<u32>,
    pub(super) reserved: Option<Vec<Ipv4Addr>>,
    pub(super) pools: Vec<RawPool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPool {
    pub(super) name: Option<String>,
    pub(super) cidr: Option<String>,
    pub(super) gateway: Option<Ipv4Addr>,
    pub(super) block_size: Option<u32>,
    pub(super) reserved: Vec<Ipv4Addr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawQuotas {
    pub(super) default: RawQuota,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawQuota {
    pub(super) max_vms: Option<u64>,
    pub(super) max_clusters: Option<u64>,
    pub(super) max_nodes_per_cluster: Option<u64>,
    pub(super) max_ips: Option<u64>,
    pub(super) max_vcpus: Option<u64>,
    pub(super) max_memory_mb: Option<u64>,
    pub(super) max_disk_gb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawClusterQuotas {
    pub(super) default: RawClusterQuota,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawClusterQuota {
    pub(super) max_clusters: Option<u64>,
    pub(super) max_nodes_per_cluster: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawVmSpec {
    pub(super) description: Option<String>,
    pub(super) cpu: Option<u32>,
    pub(super) memory_mb: Option<u64>,
    pub(super) disk_gb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawClusterType {
    pub(super) description: Option<String>,
    pub(super) control_plane_count: Option<u32>,
    pub(super) worker_count: Option<u32>,
    pub(super) control_plane_spec: Option<String>,
    pub(super) worker_spec_default: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNodeSpec {
    pub(super) cpu: Option<u32>,
    pub(super) memory_mb: Option<u64>,
    pub(super) disk_gb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawKubernetes {
    pub(super) version: Option<String>,
    pub(super) delete_timeout_minutes: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRecaptcha {
    pub(super) enabled: Option<bool>,
    pub(super) site_key: Option<String>,
    pub(super) secret_key: Option<String>,
    pub(super) secret_file: Option<PathBuf>,
    pub(super) verify_url: Option<String>,
    pub(super) hostname: Option<String>,
    pub(super) timeout_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRegistration {
    pub(super) per_address_per_hour: Option<u32>,
    pub(super) per_email_per_day: Option<u32>,
    pub(super) per_day: Option<u32>,
    pub(super) answer_after_ms: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNotifications {
    pub(super) admin_emails: Vec<String>,
    // The notifier's sections: kept whole (null when absent), parsed by the notifier crate.
    pub(super) webhook: serde_yaml::Value,
    pub(super) email: serde_yaml::Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawValidation {
    pub(super) allowed_email_domains: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawBastion {
    pub(super) address: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) logins: Option<String>,
    pub(super) group: Option<String>,
    pub(super) shell: Option<PathBuf>,
    pub(super) home: Option<PathBuf>,
    pub(super) root: Option<PathBuf>,
    pub(super) helper_socket: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawReconcile {
    pub(super) interval_seconds: Option<u64>,
}
