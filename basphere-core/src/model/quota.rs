//! Quotas: per-user limits, overrides and what a user holds now.

use super::*;

/// Per-user limits. `None` in an override means "use the default".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub max_vms: u64,
    pub max_clusters: u64,
    pub max_nodes_per_cluster: u64,
    pub max_ips: u64,
    pub max_vcpus: u64,
    pub max_memory_mb: u64,
    pub max_disk_gb: u64,
}

/// An administrator's per-user change to the default quota; unset fields keep the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaOverride {
    pub max_vms: Option<u64>,
    pub max_clusters: Option<u64>,
    pub max_nodes_per_cluster: Option<u64>,
    pub max_ips: Option<u64>,
    pub max_vcpus: Option<u64>,
    pub max_memory_mb: Option<u64>,
    pub max_disk_gb: Option<u64>,
}

impl Quota {
    pub fn with_override(self, o: &QuotaOverride) -> Quota {
        Quota {
            max_vms: o.max_vms.unwrap_or(self.max_vms),
            max_clusters: o.max_clusters.unwrap_or(self.max_clusters),
            max_nodes_per_cluster: o.max_nodes_per_cluster.unwrap_or(self.max_nodes_per_cluster),
            max_ips: o.max_ips.unwrap_or(self.max_ips),
            max_vcpus: o.max_vcpus.unwrap_or(self.max_vcpus),
            max_memory_mb: o.max_memory_mb.unwrap_or(self.max_memory_mb),
            max_disk_gb: o.max_disk_gb.unwrap_or(self.max_disk_gb),
        }
    }

    /// Checks that `usage + extra` fits; names the first limit that would be exceeded.
    pub fn check(&self, usage: &Usage, extra: &Usage) -> Result<()> {
        let checks: [(&'static str, u64, u64, u64); 6] = [
            ("vms", usage.vms, extra.vms, self.max_vms),
            ("clusters", usage.clusters, extra.clusters, self.max_clusters),
            ("ips", usage.ips, extra.ips, self.max_ips),
            ("vcpus", usage.vcpus, extra.vcpus, self.max_vcpus),
            ("memory_mb", usage.memory_mb, extra.memory_mb, self.max_memory_mb),
            ("disk_gb", usage.disk_gb, extra.disk_gb, self.max_disk_gb),
        ];
        for (resource, used, more, limit) in checks {
            if more > 0 && used + more > limit {
                return Err(Error::QuotaExceeded { resource, used, requested: used + more, limit });
            }
        }
        Ok(())
    }
}

/// What a user holds now. Computed by the store from live records and leases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub vms: u64,
    pub clusters: u64,
    pub ips: u64,
    pub vcpus: u64,
    pub memory_mb: u64,
    pub disk_gb: u64,
}
