//! Planning vMs, and the leases of their addresses.

use super::*;

impl Plan {
    pub(super) fn vms(
        &mut self,
        original: &Original,
        owners: &BTreeSet<String>,
        tx: &dyn StoreRead,
    ) -> Result<Vec<PlannedVm>> {
        let mut planned = Vec::new();
        for source in original.vms.iter().filter(|vm| owners.contains(&vm.owner)) {
            let subject = format!("{}/{}", source.owner, source.name);
            let name = match ResourceName::parse(&source.name) {
                Ok(name) => name,
                Err(error) => {
                    self.fault(
                        subject,
                        format!(
                            "{error}; not imported (its vSphere VM {}-{} is left alone)",
                            source.owner, source.name
                        ),
                    );
                    continue;
                }
            };
            let owner = Username::parse(&source.owner).expect("owners are valid usernames");
            let main_tf = source.main_tf.clone().unwrap_or_default();
            let (vm, claimed_ip) = match &source.metadata {
                Some(meta) => {
                    if non_empty(&meta.owner).is_some_and(|o| o != source.owner) {
                        self.fault(
                            subject.clone(),
                            format!(
                                "its metadata.json names the owner {:?}; the directory's owner {} is used",
                                meta.owner, source.owner
                            ),
                        );
                    }
                    let spec = non_empty(&meta.spec).unwrap_or_else(|| "unknown".to_owned());
                    let (cpu, memory_mb, disk_gb) = match original.config.vm_size(&spec) {
                        Some(size) => size,
                        None => {
                            let size = (
                                main_tf.num_cpus.unwrap_or(2),
                                main_tf.memory.unwrap_or(4096),
                                main_tf.disk_size.unwrap_or(50),
                            );
                            self.fault(
                                subject.clone(),
                                format!(
                                    "has the spec {spec:?}, which specs.yaml does not define; sized {} vCPU, {} MB, {} GB as the original built it",
                                    size.0, size.1, size.2
                                ),
                            );
                            size
                        }
                    };
                    let created = parse_time(&meta.created_at);
                    let (state, reason) = match meta.status.trim() {
                        "running" => (VmState::Running, None),
                        "failed" => (
                            VmState::Failed,
                            Some("its creation failed in the original Basphere (Terraform apply); delete it to free its address".to_owned()),
                        ),
                        other => (
                            VmState::Lost,
                            Some(format!(
                                "imported from the original Basphere while {other:?}; reconciliation marks it running or stopped once vSphere has it"
                            )),
                        ),
                    };
                    let at = created.or_else(|| source.modified.map(DateTime::<Utc>::from)).unwrap_or_default();
                    let vm = Vm {
                        id: stable_id(created, &format!("vm:{subject}")),
                        owner,
                        name,
                        os: non_empty(&meta.os).unwrap_or_else(|| "unknown".to_owned()),
                        spec,
                        cpu,
                        memory_mb,
                        disk_gb,
                        ip: None,
                        state,
                        reason,
                        backend_id: Some(Vm::IMPORTED.to_owned()),
                        created_at: trunc(at),
                        updated_at: trunc(at),
                    };
                    (vm, meta.ip_address.trim().parse().ok().or(main_tf.ip_address))
                }
                None => {
                    let (cpu, memory_mb, disk_gb) = (
                        main_tf.num_cpus.unwrap_or(2),
                        main_tf.memory.unwrap_or(4096),
                        main_tf.disk_size.unwrap_or(50),
                    );
                    let os = main_tf.template.as_deref().and_then(|t| original.config.os_for_template(t));
                    let spec = spec_of_size(original, cpu, memory_mb, disk_gb);
                    let from = if source.main_tf.is_some() {
                        "its main.tf and its lease"
                    } else {
                        "its lease (no main.tf either)"
                    };
                    self.fault(
                        subject.clone(),
                        format!(
                            "has no readable metadata.json: rebuilt from {from} ({cpu} vCPU, {memory_mb} MB, {disk_gb} GB, OS {}) and imported as lost; reconciliation marks it running once vSphere has it",
                            os.as_deref().unwrap_or("unknown")
                        ),
                    );
                    let at = source.modified.map(DateTime::<Utc>::from).unwrap_or_default();
                    let vm = Vm {
                        id: stable_id(None, &format!("vm:{subject}")),
                        owner,
                        name,
                        os: os.unwrap_or_else(|| "unknown".to_owned()),
                        spec,
                        cpu,
                        memory_mb,
                        disk_gb,
                        ip: None,
                        state: VmState::Lost,
                        reason: Some(
                            "imported from the original Basphere without its metadata.json; reconciliation marks it running or stopped once vSphere has it"
                                .to_owned(),
                        ),
                        backend_id: Some(Vm::IMPORTED.to_owned()),
                        created_at: trunc(at),
                        updated_at: trunc(at),
                    };
                    (vm, main_tf.ip_address)
                }
            };
            if tx.get_vm(vm.id)?.is_some() {
                self.same("vms");
                continue;
            }
            if let Some(live) = tx.vm_by_name(&vm.owner, &vm.name)? {
                self.conflict(
                    subject,
                    format!(
                        "Basphere already has a VM {} (created {}), which is the same vSphere VM {}; delete one of them first",
                        live.name,
                        live.created_at.format("%Y-%m-%d"),
                        vm.vsphere_name()
                    ),
                );
                continue;
            }
            planned.push(PlannedVm { vm, claimed_ip });
        }
        Ok(planned)
    }

    /// Gives each planned VM its lease (or repairs a missing one), then plans the VMs.
    pub(super) fn vm_leases(
        &mut self,
        pools: &[PoolConfig],
        vms: Vec<PlannedVm>,
        leases: &BTreeMap<Ipv4Addr, LeaseRow>,
        tx: &dyn StoreRead,
    ) -> Result<()> {
        for PlannedVm { mut vm, claimed_ip } in vms {
            let subject = format!("{}/{}", vm.owner, vm.name);
            let row = leases
                .values()
                .find(|row| row.user == vm.owner.as_str() && row.resource == vm.name.as_str() && row.kind == "vm");
            let address = match (row, claimed_ip) {
                (Some(row), claimed) => {
                    if claimed.is_some_and(|ip| ip != row.address) {
                        self.fault(
                            subject.clone(),
                            format!(
                                "its metadata says {}, leases.tsv leases {} to it; {} is kept (the address the original reserved)",
                                claimed.expect("checked"),
                                row.address,
                                row.address
                            ),
                        );
                    }
                    Some((row.address, row.allocated_at, false))
                }
                (None, Some(ip)) => match leases.get(&ip) {
                    Some(other) => {
                        self.fault(
                            subject.clone(),
                            format!("has {ip} but no lease, and leases.tsv leases {ip} to {}/{}; imported without an address", other.user, other.resource),
                        );
                        None
                    }
                    None => Some((ip, None, true)),
                },
                (None, None) => None,
            };
            if let Some((address, at, repaired)) = address {
                if let Some(lease) =
                    self.lease_for(&subject, &vm.owner, address, at.or(Some(vm.created_at)), pools, tx)?
                {
                    if repaired {
                        self.fault(
                            subject.clone(),
                            format!("has {address} but no lease (a VM without a lease): {address} is leased to it"),
                        );
                    }
                    vm.ip = Some(address);
                    let lease = Lease {
                        resource: ResourceRef { kind: ResourceKind::Vm, id: vm.id, name: vm.name.to_string() },
                        ..lease
                    };
                    self.push_lease(&subject, lease, tx)?;
                }
            }
            self.vms.push(vm);
        }
        Ok(())
    }

    /// A lease of `address` to `owner`, if it lies in one of the owner's blocks (a fault if not).
    /// The resource is filled in by the caller.
    pub(super) fn lease_for(
        &mut self,
        subject: &str,
        owner: &Username,
        address: Ipv4Addr,
        at: Option<DateTime<Utc>>,
        pools: &[PoolConfig],
        tx: &dyn StoreRead,
    ) -> Result<Option<Lease>> {
        let Some(block) = self.block_of(owner, address, tx)? else {
            let pool = pools.iter().find(|p| p.cidr.contains(address)).map(|p| p.name.as_str());
            self.fault(
                subject.to_owned(),
                format!(
                    "{address} is not in {owner}'s block{}; its lease is not imported",
                    pool.map_or_else(|| " nor in any configured pool".to_owned(), |_| String::new())
                ),
            );
            return Ok(None);
        };
        Ok(Some(Lease {
            address,
            network: None,
            pool: block.pool,
            owner: owner.clone(),
            resource: ResourceRef { kind: ResourceKind::Vm, id: Uuid::nil(), name: String::new() },
            state: LeaseState::Active,
            created_at: trunc(at.unwrap_or_default()),
        }))
    }

    /// Plans a lease unless the store holds it already (or holds the address for another).
    pub(super) fn push_lease(&mut self, subject: &str, lease: Lease, tx: &dyn StoreRead) -> Result<()> {
        match tx.get_lease(lease.network, lease.address)? {
            Some(held) if held.resource.id == lease.resource.id => self.same("leases"),
            Some(held) => self.conflict(
                subject.to_owned(),
                format!(
                    "{} is already leased in Basphere to {}'s {} {}",
                    lease.address, held.owner, held.resource.kind, held.resource.name
                ),
            ),
            None => self.leases.push(lease),
        }
        Ok(())
    }
}
