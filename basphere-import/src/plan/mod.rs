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

mod accounts;
mod clusters;
mod ipam;
mod vms;

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
