//! Planning iP blocks and leases.

use super::*;

impl Plan {
    pub(super) fn blocks(
        &mut self,
        original: &Original,
        pools: &[PoolConfig],
        owners: &BTreeSet<String>,
        tx: &dyn StoreRead,
    ) -> Result<()> {
        let size = original.config.block_size();
        let existing = tx.list_blocks(None)?;
        let mut rows: Vec<_> = original.allocations.iter().filter(|row| owners.contains(&row.user)).collect();
        rows.sort_by_key(|row| (row.allocated_at, row.line));
        let file = format!("/{}/ipam/allocations.tsv", crate::source::DATA_DIR);
        for row in rows {
            let subject = format!("{file}:{}", row.line);
            let Some(pool) = pools.iter().find(|pool| pool.cidr.contains(row.start)) else {
                self.conflict(
                    subject,
                    format!(
                        "{}'s block {} is in no pool of Basphere's configuration: add the original's network ({}) to network.cidr or network.pools",
                        row.user,
                        row.start,
                        original.config.config_key(&["network", "cidr"]).and_then(|v| v.as_str()).unwrap_or("10.254.0.0/21")
                    ),
                );
                continue;
            };
            if pool.block_size != size {
                self.conflict(
                    subject,
                    format!(
                        "the original's blocks hold {size} addresses, Basphere's pool {} holds {}: set network.block_size to {size}",
                        pool.name, pool.block_size
                    ),
                );
                continue;
            }
            if (u32::from(row.start) - pool.cidr.first()) % size != 0 {
                self.fault(
                    subject,
                    format!(
                        "{}'s block {} does not start on a block boundary of {}; not imported",
                        row.user, row.start, pool.cidr
                    ),
                );
                continue;
            }
            let owner = Username::parse(&row.user).expect("owners are valid usernames");
            let block = IpBlock {
                pool: pool.name.clone(),
                start: row.start,
                size,
                owner: owner.clone(),
                allocated_at: trunc(row.allocated_at.unwrap_or_default()),
            };
            if let Some(planned) = self.blocks.iter().find(|b| b.start == block.start) {
                let what = if planned.owner == owner {
                    "is a second row for the same block; ignored".to_owned()
                } else {
                    format!(
                        "gives {} to {} as well as to {}; it stays {}'s",
                        block.start, owner, planned.owner, planned.owner
                    )
                };
                self.fault(subject, what);
                continue;
            }
            let overlapping = existing
                .iter()
                .find(|b| u32::from(b.start) <= u32::from(block.end()) && u32::from(block.start) <= u32::from(b.end()));
            match overlapping {
                Some(b) if b.start == block.start && b.owner == block.owner && b.size == block.size => {
                    self.same("ip blocks")
                }
                Some(b) => self.conflict(
                    subject,
                    format!(
                        "{}'s block {}-{} overlaps Basphere's block {}-{} of {}",
                        owner,
                        block.start,
                        block.end(),
                        b.start,
                        b.end(),
                        b.owner
                    ),
                ),
                None => self.blocks.push(block),
            }
        }
        Ok(())
    }

    /// The owner's block holding `address`: planned, or in the store.
    pub(super) fn block_of(&self, owner: &Username, address: Ipv4Addr, tx: &dyn StoreRead) -> Result<Option<IpBlock>> {
        if let Some(block) = self.blocks.iter().find(|b| &b.owner == owner && b.contains(address)) {
            return Ok(Some(block.clone()));
        }
        Ok(tx.blocks_of(owner)?.into_iter().find(|b| b.contains(address)))
    }

    /// Lease rows by address, one per address: where two rows hold an address, the one whose
    /// VM or cluster says it has that address is kept.
    pub(super) fn lease_rows(&mut self, original: &Original) -> BTreeMap<Ipv4Addr, LeaseRow> {
        let file = format!("/{}/ipam/leases.tsv", crate::source::DATA_DIR);
        let mut by_address: BTreeMap<Ipv4Addr, Vec<&LeaseRow>> = BTreeMap::new();
        for row in &original.leases {
            by_address.entry(row.address).or_default().push(row);
        }
        let claims = |row: &LeaseRow| -> bool {
            let ip = row.address.to_string();
            original.vms.iter().any(|vm| {
                vm.owner == row.user
                    && vm.name == row.resource
                    && vm.metadata.as_ref().is_some_and(|m| m.ip_address.trim() == ip)
            }) || original.clusters.iter().any(|c| {
                c.owner == row.user
                    && c.metadata.as_ref().is_some_and(|m| m.control_plane_ip == ip || m.worker_ips.contains(&ip))
            })
        };
        let mut kept = BTreeMap::new();
        for (address, rows) in by_address {
            let keep = rows.iter().copied().find(|row| claims(row)).unwrap_or(rows[0]);
            for row in rows.iter().filter(|row| row.line != keep.line) {
                self.fault(
                    format!("{file}:{}", row.line),
                    format!(
                        "leases {address} to {}/{} although line {} leases it to {}/{}: two leases for one address; line {} is kept",
                        row.user, row.resource, keep.line, keep.user, keep.resource, keep.line
                    ),
                );
            }
            kept.insert(address, keep.clone());
        }
        kept
    }
}
