//! Mapping the original's records onto Basphere's, against what the store already holds.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use basphere_core::config::PoolConfig;
use basphere_core::error::Result;
use basphere_core::model::*;
use basphere_core::store::copy::Snapshot;
use basphere_core::store::{RequestFilter, StoreRead, StoreTx};
use basphere_core::validate::{Email, ResourceName, SshPublicKey, Username};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::source::{parse_time, LeaseRow, Original, RegistrationJson};
use crate::Fault;

/// What an import creates, what it finds already there, and what stands in its way.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub users: Vec<User>,
    pub quota_overrides: Vec<(Username, QuotaOverride)>,
    pub registrations: Vec<RegistrationRequest>,
    pub key_changes: Vec<KeyChangeRequest>,
    pub blocks: Vec<IpBlock>,
    pub vms: Vec<Vm>,
    pub clusters: Vec<Cluster>,
    pub leases: Vec<Lease>,
    /// Records the store already holds from an earlier run, by kind.
    pub unchanged: BTreeMap<&'static str, usize>,
    /// What stops the import: nothing is written while there is one.
    pub conflicts: Vec<Fault>,
    /// Faults in the source, each with what the import does about it.
    pub faults: Vec<Fault>,
    /// Things the operator should know (not faults).
    pub notes: Vec<String>,
}

/// An id for an imported record: time-ordered by `at` like the ids Basphere makes, and the same
/// on every run for the same record of the original (`key`).
pub(crate) fn stable_id(at: Option<DateTime<Utc>>, key: &str) -> Uuid {
    let digest = Sha256::digest(format!("basphere-import:{key}").as_bytes());
    let mut tail = [0u8; 10];
    tail.copy_from_slice(&digest[..10]);
    let millis = at.map_or(0, |at| at.timestamp_millis().max(0) as u64);
    uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid()
}

fn trunc(at: DateTime<Utc>) -> Timestamp {
    use chrono::SubsecRound;
    at.trunc_subsecs(6)
}

/// `"" -> None`.
fn non_empty(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// The original's request status.
fn request_status(value: &str) -> Option<RequestStatus> {
    RequestStatus::parse(value.trim()).ok()
}

/// A VM planned, with what the original said of its address.
struct PlannedVm {
    vm: Vm,
    /// The address from `metadata.json` or `main.tf`.
    claimed_ip: Option<Ipv4Addr>,
}

impl Plan {
    /// Whether the plan writes nothing.
    pub fn is_empty(&self) -> bool {
        self.counts().values().all(|n| *n == 0)
    }

    /// How many records of each kind the plan creates.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        BTreeMap::from([
            ("accounts", self.users.len()),
            ("quota overrides", self.quota_overrides.len()),
            ("registrations", self.registrations.len()),
            ("key changes", self.key_changes.len()),
            ("ip blocks", self.blocks.len()),
            ("leases", self.leases.len()),
            ("vms", self.vms.len()),
            ("clusters", self.clusters.len()),
        ])
    }

    fn same(&mut self, kind: &'static str) {
        *self.unchanged.entry(kind).or_default() += 1;
    }

    fn fault(&mut self, subject: impl Into<String>, what: impl Into<String>) {
        self.faults.push(Fault::new(subject, what));
    }

    fn conflict(&mut self, subject: impl Into<String>, what: impl Into<String>) {
        self.conflicts.push(Fault::new(subject, what));
    }

    /// Plans the import of `original` into a store holding what `tx` reads, with the pools of
    /// the configuration Basphere runs with.
    pub fn make(original: &Original, pools: &[PoolConfig], tx: &dyn StoreRead) -> Result<Plan> {
        let mut plan = Plan { faults: original.faults.clone(), ..Plan::default() };
        let approved = approved_registrations(original);
        let owners = plan.users(original, &approved, tx)?;
        plan.users_without_records(original, &owners);
        plan.registrations(original, &owners, tx)?;
        plan.key_changes(original, &owners, tx)?;
        plan.blocks(original, pools, &owners, tx)?;
        let leases = plan.lease_rows(original);
        let vms = plan.vms(original, &owners, tx)?;
        plan.vm_leases(pools, vms, &leases, tx)?;
        plan.clusters(original, pools, &owners, &leases, tx)?;
        plan.unused_leases(original, &leases, &owners);
        if original.audit_lines > 0 {
            plan.notes.push(format!(
                "/var/log/basphere/audit.log has {} lines; it is not imported (keep it as the record of what the original did)",
                original.audit_lines
            ));
        }
        Ok(plan)
    }

    /// Writes the plan inside the caller's transaction (the caller checked there are no
    /// conflicts), as a move between stores writes its records.
    pub fn write(&self, tx: &mut dyn StoreTx) -> Result<()> {
        Snapshot {
            users: self.users.clone(),
            quota_overrides: self.quota_overrides.clone(),
            registrations: self.registrations.clone(),
            key_changes: self.key_changes.clone(),
            blocks: self.blocks.clone(),
            leases: self.leases.clone(),
            vms: self.vms.clone(),
            clusters: self.clusters.clone(),
            ..Snapshot::default()
        }
        .write_in(tx)
    }

    // ---- accounts ------------------------------------------------------------------------------

    /// Plans the accounts; returns every owner whose records can be imported (planned now, or
    /// already in the store from an earlier run).
    fn users(
        &mut self,
        original: &Original,
        approved: &BTreeMap<String, RegistrationJson>,
        tx: &dyn StoreRead,
    ) -> Result<BTreeSet<String>> {
        let mut owners = BTreeSet::new();
        let mut fingerprints: BTreeMap<String, String> = BTreeMap::new();
        for source in &original.users {
            let file = original.rel(&source.file);
            let name = &source.name;
            let username = match Username::parse(name) {
                Ok(username) => username,
                Err(error) => {
                    self.fault(file, format!("names an account Basphere cannot accept ({error}); not imported"));
                    continue;
                }
            };
            let meta = source.metadata.as_ref();
            let request = approved.get(name.as_str());
            if meta.is_none() && request.is_some() {
                self.fault(
                    name.clone(),
                    "has no readable metadata.json: its email, team and creation time come from its approved registration",
                );
            }
            let email_text = meta
                .and_then(|m| m.email.as_deref())
                .and_then(non_empty)
                .or_else(|| request.and_then(|r| non_empty(&r.email)));
            let Some(email_text) = email_text else {
                self.fault(
                    name.clone(),
                    format!(
                        "has no email (the original's API approval left it empty) and no approved registration gives one; not imported: add \"email\" to {file} and run again"
                    ),
                );
                continue;
            };
            let email = match Email::parse(&email_text) {
                Ok(email) => email,
                Err(error) => {
                    self.fault(
                        name.clone(),
                        format!("{error}; not imported: correct \"email\" in {file} and run again"),
                    );
                    continue;
                }
            };
            let key_file = original.rel(&source.key_file);
            let from_login = source.authorized_key.as_deref().map(SshPublicKey::parse);
            let key = match from_login {
                Some(Ok(key)) => key,
                other => {
                    let from_request = request.map(|r| SshPublicKey::parse(r.public_key.trim()));
                    match (other, from_request) {
                        (Some(Err(error)), Some(Ok(key))) => {
                            self.fault(name.clone(), format!("the key in {key_file} is not accepted ({error}); the key of its approved registration is used"));
                            key
                        }
                        (None, Some(Ok(key))) => {
                            self.fault(
                                name.clone(),
                                format!("{key_file} is missing; the key of its approved registration is used"),
                            );
                            key
                        }
                        (Some(Err(error)), _) => {
                            self.fault(
                                name.clone(),
                                format!("the key in {key_file} is not accepted ({error}); not imported"),
                            );
                            continue;
                        }
                        _ => {
                            self.fault(
                                name.clone(),
                                format!("has no SSH key: neither {key_file} nor an approved registration holds one; not imported"),
                            );
                            continue;
                        }
                    }
                }
            };
            if let Some(first) = fingerprints.get(key.fingerprint()) {
                self.fault(
                    name.clone(),
                    format!(
                        "uses the same SSH key as {first}; in Basphere a key identifies one account, so {name} is not imported: give {name} its own key in {key_file} and run again"
                    ),
                );
                continue;
            }
            let created = meta
                .and_then(|m| m.created_at.as_deref())
                .and_then(parse_time)
                .or_else(|| request.and_then(|r| parse_time(&r.created_at)))
                .or_else(|| source.modified.map(DateTime::<Utc>::from))
                .unwrap_or_default();
            let team = meta
                .and_then(|m| m.team.as_deref())
                .and_then(non_empty)
                .or_else(|| request.and_then(|r| non_empty(&r.team)))
                .unwrap_or_default();
            let uid = original.passwd.get(name.as_str()).map(|entry| entry.uid);
            if uid.is_none() {
                self.notes.push(format!("{name} has no login in /etc/passwd: its account is imported without a uid"));
            }
            let user = User {
                username: username.clone(),
                email,
                team,
                ssh_key: key,
                role: Role::User,
                status: UserStatus::Active,
                uid,
                created_at: trunc(created),
                updated_at: trunc(created),
            };
            match tx.get_user(&username)? {
                Some(existing) => {
                    let same_person = (existing.uid.is_some() && existing.uid == user.uid)
                        || existing.ssh_key.fingerprint() == user.ssh_key.fingerprint()
                        || existing.email.matches(&user.email);
                    if !same_person {
                        self.conflict(
                            name.clone(),
                            "Basphere already has an account of this name with another uid, key and email; rename or remove one of them",
                        );
                        continue;
                    }
                    self.same("accounts");
                }
                None => {
                    if let Some(other) = uid.map(|uid| tx.user_by_uid(uid)).transpose()?.flatten() {
                        self.conflict(
                            name.clone(),
                            format!(
                                "its uid {} belongs to the Basphere account {}",
                                uid.unwrap_or_default(),
                                other.username
                            ),
                        );
                        continue;
                    }
                    if let Some(other) = tx.user_by_key_fingerprint(user.ssh_key.fingerprint())? {
                        self.conflict(
                            name.clone(),
                            format!("its SSH key is already the key of the Basphere account {}", other.username),
                        );
                        continue;
                    }
                    self.users.push(user.clone());
                }
            }
            fingerprints.insert(user.ssh_key.fingerprint().to_owned(), name.clone());
            owners.insert(name.clone());
            let max_clusters = meta.and_then(|m| m.max_clusters.as_ref()).and_then(|value| match value {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            });
            if let Some(max_clusters) = max_clusters {
                if tx.quota_override(&username)?.is_some() {
                    self.same("quota overrides");
                } else {
                    self.quota_overrides.push((
                        username,
                        QuotaOverride { max_clusters: Some(max_clusters), ..QuotaOverride::default() },
                    ));
                }
            }
        }
        Ok(owners)
    }

    /// Names that hold something in the original but have no user record.
    fn users_without_records(&mut self, original: &Original, owners: &BTreeSet<String>) {
        let recorded: BTreeSet<&str> = original.users.iter().map(|u| u.name.as_str()).collect();
        let mut held: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for row in &original.allocations {
            held.entry(&row.user).or_default().push(format!("block {}", row.start));
        }
        for row in &original.leases {
            held.entry(&row.user).or_default().push(format!("lease {}", row.address));
        }
        for vm in &original.vms {
            held.entry(&vm.owner).or_default().push(format!("VM {}", vm.name));
        }
        for cluster in &original.clusters {
            held.entry(&cluster.owner).or_default().push(format!("cluster {}", cluster.name));
        }
        for member in &original.group_members {
            held.entry(member).or_default();
        }
        for (name, what) in held {
            if recorded.contains(name) {
                if !owners.contains(name) && !what.is_empty() {
                    self.fault(
                        name.to_owned(),
                        format!("is not imported, so neither is what it holds: {}", what.join(", ")),
                    );
                }
                continue;
            }
            let holds =
                if what.is_empty() { "a login in the basphere-users group".to_owned() } else { what.join(", ") };
            self.fault(
                name.to_owned(),
                format!(
                    "has no /{}/users/{name}/metadata.json (a user without a record) but holds {holds}; not imported",
                    crate::source::DATA_DIR
                ),
            );
        }
    }

    // ---- requests ------------------------------------------------------------------------------

    fn registrations(&mut self, original: &Original, owners: &BTreeSet<String>, tx: &dyn StoreRead) -> Result<()> {
        let mut requests: Vec<_> = original.registrations.iter().collect();
        requests.sort_by_key(|(_, json)| (parse_time(&json.created_at), json.id.clone()));
        let mut pending_names = BTreeSet::new();
        let pending_in_store =
            tx.list_registrations(&RequestFilter { status: Some(RequestStatus::Pending), ..RequestFilter::default() })?;
        for (file, json) in requests {
            let subject = original.rel(file);
            let Some(status) = request_status(&json.status) else {
                self.fault(
                    subject,
                    format!("has status {:?}, not pending/approved/rejected; not imported", json.status),
                );
                continue;
            };
            let parsed = (|| {
                Ok::<_, basphere_core::Error>((
                    Username::parse(json.username.trim())?,
                    Email::parse(json.email.trim())?,
                    SshPublicKey::parse(json.public_key.trim())?,
                ))
            })();
            let (username, email, key) = match parsed {
                Ok(fields) => fields,
                Err(error) => {
                    self.fault(subject, format!("{error}; not imported"));
                    continue;
                }
            };
            let created = parse_time(&json.created_at);
            let id = stable_id(created, &format!("registration:{}", json.id));
            if tx.get_registration(id)?.is_some() {
                self.same("registrations");
                continue;
            }
            if status == RequestStatus::Pending {
                if owners.contains(username.as_str()) || tx.get_user(&username)?.is_some() {
                    self.fault(subject, format!("is pending, but {username} is already an account; not imported"));
                    continue;
                }
                let key = (username.to_string(), email.as_str().to_lowercase());
                let in_store = pending_in_store.iter().any(|r| r.username.as_str() == key.0 || r.email.matches(&email));
                if in_store || pending_names.iter().any(|(u, e): &(String, String)| *u == key.0 || *e == key.1) {
                    self.fault(subject, format!("is a second pending request for {username} or {email}; not imported"));
                    continue;
                }
                pending_names.insert(key);
            }
            self.registrations.push(RegistrationRequest {
                id,
                username,
                email,
                team: json.team.trim().to_owned(),
                ssh_key: key,
                status,
                created_at: trunc(created.unwrap_or_default()),
                processed_by: non_empty(&json.processed_by),
                processed_at: parse_time(&json.processed_at).map(trunc),
                reject_reason: non_empty(&json.reject_reason),
            });
        }
        Ok(())
    }

    fn key_changes(&mut self, original: &Original, owners: &BTreeSet<String>, tx: &dyn StoreRead) -> Result<()> {
        let mut requests: Vec<_> = original.key_changes.iter().collect();
        requests.sort_by_key(|(_, json)| (parse_time(&json.created_at), json.id.clone()));
        let mut pending_for = BTreeSet::new();
        for (file, json) in requests {
            let subject = original.rel(file);
            let Some(status) = request_status(&json.status) else {
                self.fault(
                    subject,
                    format!("has status {:?}, not pending/approved/rejected; not imported", json.status),
                );
                continue;
            };
            let parsed = (|| {
                Ok::<_, basphere_core::Error>((
                    Username::parse(json.username.trim())?,
                    Email::parse(json.email.trim())?,
                    SshPublicKey::parse(json.new_public_key.trim())?,
                ))
            })();
            let (username, email, key) = match parsed {
                Ok(fields) => fields,
                Err(error) => {
                    self.fault(subject, format!("{error}; not imported"));
                    continue;
                }
            };
            if !owners.contains(username.as_str()) {
                self.fault(subject, format!("is for {username}, who is not imported; not imported"));
                continue;
            }
            let created = parse_time(&json.created_at);
            let id = stable_id(created, &format!("key-change:{}", json.id));
            if tx.get_key_change(id)?.is_some() {
                self.same("key changes");
                continue;
            }
            if status == RequestStatus::Pending {
                let in_store = !tx
                    .list_key_changes(&RequestFilter {
                        status: Some(RequestStatus::Pending),
                        username: Some(username.clone()),
                        ..RequestFilter::default()
                    })?
                    .is_empty();
                if in_store || !pending_for.insert(username.to_string()) {
                    self.fault(subject, format!("is a second pending key change for {username}; not imported"));
                    continue;
                }
            }
            self.key_changes.push(KeyChangeRequest {
                id,
                username,
                email,
                new_ssh_key: key,
                reason: json.reason.trim().to_owned(),
                status,
                created_at: trunc(created.unwrap_or_default()),
                processed_by: non_empty(&json.processed_by),
                processed_at: parse_time(&json.processed_at).map(trunc),
                reject_reason: non_empty(&json.reject_reason),
            });
        }
        Ok(())
    }

    // ---- IPAM ----------------------------------------------------------------------------------

    fn blocks(
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
    fn block_of(&self, owner: &Username, address: Ipv4Addr, tx: &dyn StoreRead) -> Result<Option<IpBlock>> {
        if let Some(block) = self.blocks.iter().find(|b| &b.owner == owner && b.contains(address)) {
            return Ok(Some(block.clone()));
        }
        Ok(tx.blocks_of(owner)?.into_iter().find(|b| b.contains(address)))
    }

    /// Lease rows by address, one per address: where two rows hold an address, the one whose
    /// VM or cluster says it has that address is kept.
    fn lease_rows(&mut self, original: &Original) -> BTreeMap<Ipv4Addr, LeaseRow> {
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

    // ---- VMs -----------------------------------------------------------------------------------

    fn vms(&mut self, original: &Original, owners: &BTreeSet<String>, tx: &dyn StoreRead) -> Result<Vec<PlannedVm>> {
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
    fn vm_leases(
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
    fn lease_for(
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
            pool: block.pool,
            owner: owner.clone(),
            resource: ResourceRef { kind: ResourceKind::Vm, id: Uuid::nil(), name: String::new() },
            state: LeaseState::Active,
            created_at: trunc(at.unwrap_or_default()),
        }))
    }

    /// Plans a lease unless the store holds it already (or holds the address for another).
    fn push_lease(&mut self, subject: &str, lease: Lease, tx: &dyn StoreRead) -> Result<()> {
        match tx.get_lease(lease.address)? {
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

    // ---- clusters ------------------------------------------------------------------------------

    fn clusters(
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
    fn unused_leases(&mut self, original: &Original, leases: &BTreeMap<Ipv4Addr, LeaseRow>, owners: &BTreeSet<String>) {
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

/// The `specs.yaml` spec of this size, or `custom`.
fn spec_of_size(original: &Original, cpu: u32, memory_mb: u64, disk_gb: u64) -> String {
    original
        .config
        .specs_key(&["vm_specs"])
        .and_then(|specs| specs.as_mapping())
        .and_then(|specs| {
            specs
                .keys()
                .filter_map(|k| k.as_str())
                .find(|key| original.config.vm_size(key) == Some((cpu, memory_mb, disk_gb)))
        })
        .map_or_else(|| "custom".to_owned(), str::to_owned)
}

/// The latest approved registration of each username: where the original's API approval left
/// the account's email and team (it passed neither to `basphere-admin user add`).
fn approved_registrations(original: &Original) -> BTreeMap<String, RegistrationJson> {
    let mut approved: BTreeMap<String, RegistrationJson> = BTreeMap::new();
    for (_, json) in &original.registrations {
        if json.status.trim() != "approved" {
            continue;
        }
        let newer = approved
            .get(json.username.trim())
            .is_none_or(|seen| parse_time(&seen.created_at) <= parse_time(&json.created_at));
        if newer {
            approved.insert(json.username.trim().to_owned(), json.clone());
        }
    }
    approved
}
