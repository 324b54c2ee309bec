//! Planning clusters and the leases the original made for them.

use super::*;

impl Plan {
    pub(super) fn clusters(
        &mut self,
        original: &Original,
        pools: &[PoolConfig],
        owners: &BTreeSet<String>,
        leases: &BTreeMap<Ipv4Addr, LeaseRow>,
        tx: &dyn StoreRead,
    ) -> Result<()> {
        for source in original.clusters.iter().filter(|c| owners.contains(&c.owner)) {
            let subject = format!("{}/{} (cluster)", source.owner, source.name);
            let Some(meta) = &source.metadata else {
                self.fault(subject, "has no readable metadata.json; not imported (its Cluster API objects, if any, stay in the original's management cluster)");
                continue;
            };
            let name = match ResourceName::parse(&source.name) {
                Ok(name) => name,
                Err(error) => {
                    self.fault(subject, format!("{error}; not imported"));
                    continue;
                }
            };
            let owner = Username::parse(&source.owner).expect("owners are valid usernames");
            let cluster_type = non_empty(&meta.cluster_type).unwrap_or_else(|| "dev".to_owned());
            let cp_spec = original.config.control_plane_spec(&cluster_type);
            let worker_spec = non_empty(&meta.worker_spec).unwrap_or_else(|| "medium".to_owned());
            let node = |key: &str| {
                let (cpu, memory_mb, disk_gb) = original.config.node_size(key);
                NodeSpec { key: key.to_owned(), cpu, memory_mb, disk_gb }
            };
            let created = parse_time(&meta.created_at);
            let (state, reason) = match meta.status.trim() {
                "failed" => (
                    ClusterState::Failed,
                    Some("its creation failed in the original Basphere (kubectl apply)".to_owned()),
                ),
                _ => (ClusterState::Provisioning, None),
            };
            let at = trunc(created.unwrap_or_default());
            let mut cluster = Cluster {
                id: stable_id(created, &format!("cluster:{}/{}", source.owner, source.name)),
                owner: owner.clone(),
                name: name.clone(),
                cluster_type,
                kubernetes_version: non_empty(&meta.k8s_version).unwrap_or_else(|| "v1.28.0".to_owned()),
                control_plane_count: meta.control_plane_count.max(1),
                worker_count: meta.worker_count,
                control_plane_spec: node(&cp_spec),
                worker_spec: node(&worker_spec),
                control_plane_endpoint: None,
                state,
                reason,
                status: ClusterStatus::default(),
                created_at: at,
                updated_at: at,
            };
            if tx.get_cluster(cluster.id)?.is_some() {
                self.same("clusters");
                continue;
            }
            if let Some(live) = tx.cluster_by_name(&owner, &name)? {
                self.conflict(
                    subject,
                    format!("Basphere already has a cluster {} of {}; delete one of them first", live.name, owner),
                );
                continue;
            }
            // The original's leases: `<c>-cp` (the endpoint) and `<c>-worker-<i>`; they become
            // Basphere's `<c>-vip` and `<c>-node-<n>`.
            let mut node = 0;
            for row in leases.values().filter(|row| row.user == source.owner) {
                let (kind, lease_name) = if row.kind == "cluster-cp" && row.resource == format!("{}-cp", source.name) {
                    (ResourceKind::ClusterEndpoint, format!("{name}-vip"))
                } else if row.kind == "cluster-worker" && row.resource.starts_with(&format!("{}-worker-", source.name))
                {
                    node += 1;
                    (ResourceKind::ClusterNode, format!("{name}-node-{node}"))
                } else {
                    continue;
                };
                if let Some(lease) =
                    self.lease_for(&subject, &owner, row.address, row.allocated_at.or(created), pools, tx)?
                {
                    if kind == ResourceKind::ClusterEndpoint {
                        cluster.control_plane_endpoint = Some(row.address);
                    }
                    let lease = Lease { resource: ResourceRef { kind, id: cluster.id, name: lease_name }, ..lease };
                    self.push_lease(&subject, lease, tx)?;
                }
            }
            self.notes.push(format!(
                "cluster {}/{}: its Cluster API objects stay in the original's management cluster (namespace user-{}); its status is followed there when management_cluster points at it",
                source.owner, source.name, source.owner
            ));
            self.clusters.push(cluster);
        }
        Ok(())
    }

    /// Lease rows that no imported VM or cluster took: leases without a resource.
    pub(super) fn unused_leases(
        &mut self,
        original: &Original,
        leases: &BTreeMap<Ipv4Addr, LeaseRow>,
        owners: &BTreeSet<String>,
    ) {
        let file = format!("/{}/ipam/leases.tsv", crate::source::DATA_DIR);
        let taken: BTreeSet<Ipv4Addr> = self.leases.iter().map(|l| l.address).collect();
        for row in leases.values() {
            if taken.contains(&row.address) || !owners.contains(&row.user) {
                continue;
            }
            let has_resource = match row.kind.as_str() {
                "vm" => original.vms.iter().any(|vm| vm.owner == row.user && vm.name == row.resource),
                _ => original
                    .clusters
                    .iter()
                    .any(|c| c.owner == row.user && row.resource.starts_with(&format!("{}-", c.name))),
            };
            if !has_resource {
                self.fault(
                    format!("{file}:{}", row.line),
                    format!(
                        "leases {} to {}/{} ({}), which does not exist (a lease without a VM); not imported, so {} is free again",
                        row.address, row.user, row.resource, row.kind, row.address
                    ),
                );
            }
        }
    }
}
