//! Moving an installation from one store to another (`basphere-server migrate-store`): every
//! durable record read from the source in one snapshot, written to an empty target in one
//! transaction, then read back from both and compared record by record.
//!
//! What is not moved, on purpose: browser sessions and sign-in links (people sign in again),
//! idempotency keys (they only matter to a retry of a request made moments before), operation
//! claims (the servers are stopped; the next one claims the unfinished operations afresh) and
//! duties (held by running servers only).

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::model::*;
use crate::store::*;

/// Every record a move carries, as read in one snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub users: Vec<User>,
    pub quota_overrides: Vec<(crate::validate::Username, QuotaOverride)>,
    pub tokens: Vec<ApiToken>,
    pub registrations: Vec<RegistrationRequest>,
    pub key_changes: Vec<KeyChangeRequest>,
    pub blocks: Vec<IpBlock>,
    pub leases: Vec<Lease>,
    pub vms: Vec<Vm>,
    pub clusters: Vec<Cluster>,
    pub networks: Vec<Network>,
    pub operations: Vec<Operation>,
    pub audit: Vec<AuditEvent>,
    pub outbox: Vec<OutboxMessage>,
}

impl Snapshot {
    /// Reads every record of `store`.
    pub fn read(store: &dyn Store) -> Result<Snapshot> {
        StoreExt::query(store, |tx| {
            let users = tx.list_users()?;
            let mut snapshot = Snapshot::default();
            for user in &users {
                if let Some(quota) = tx.quota_override(&user.username)? {
                    snapshot.quota_overrides.push((user.username.clone(), quota));
                }
                snapshot.tokens.extend(tx.list_tokens(&user.username)?);
            }
            snapshot.users = users;
            snapshot.registrations = tx.list_registrations(&RequestFilter::default())?;
            snapshot.key_changes = tx.list_key_changes(&RequestFilter::default())?;
            snapshot.blocks = tx.list_blocks(None)?;
            snapshot.leases = tx.list_leases(None)?;
            snapshot.vms = tx.list_vms(&VmFilter { include_deleted: true, ..Default::default() })?;
            snapshot.clusters = tx.list_clusters(&ClusterFilter { include_deleted: true, ..Default::default() })?;
            snapshot.networks = tx.list_networks(&NetworkFilter { include_deleted: true, ..Default::default() })?;
            snapshot.operations = tx.list_operations(&OperationFilter::default())?;
            snapshot.audit = tx.list_audit(&AuditFilter::default())?;
            snapshot.outbox = tx.list_outbox(&OutboxFilter::default())?;
            Ok(snapshot)
        })
    }

    /// How many records of each kind, by name.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        BTreeMap::from([
            ("users", self.users.len()),
            ("quota overrides", self.quota_overrides.len()),
            ("tokens", self.tokens.len()),
            ("registrations", self.registrations.len()),
            ("key changes", self.key_changes.len()),
            ("ip blocks", self.blocks.len()),
            ("leases", self.leases.len()),
            ("vms", self.vms.len()),
            ("clusters", self.clusters.len()),
            ("networks", self.networks.len()),
            ("operations", self.operations.len()),
            ("audit events", self.audit.len()),
            ("outbox messages", self.outbox.len()),
        ])
    }

    fn is_empty(&self) -> bool {
        self.counts().values().all(|count| *count == 0)
    }

    /// Writes every record into `target` in one transaction: all of them or none.
    pub fn write(&self, target: &dyn Store) -> Result<()> {
        StoreExt::transact(target, |tx| self.write_in(tx))
    }

    /// Writes every record inside the caller's transaction, in an order every constraint
    /// accepts (accounts before what they own).
    pub fn write_in(&self, tx: &mut dyn StoreTx) -> Result<()> {
        for user in &self.users {
            tx.insert_user(user)?;
        }
        for (owner, quota) in &self.quota_overrides {
            tx.set_quota_override(owner, Some(quota))?;
        }
        for token in &self.tokens {
            tx.insert_token(token)?;
        }
        for request in &self.registrations {
            tx.insert_registration(request)?;
        }
        for request in &self.key_changes {
            tx.insert_key_change(request)?;
        }
        for block in &self.blocks {
            tx.insert_block(block)?;
        }
        for lease in &self.leases {
            tx.insert_lease(lease)?;
        }
        for vm in &self.vms {
            tx.insert_vm(vm)?;
        }
        for cluster in &self.clusters {
            tx.insert_cluster(cluster)?;
        }
        for network in &self.networks {
            tx.insert_network(network)?;
        }
        for operation in &self.operations {
            tx.insert_operation(operation)?;
        }
        for event in &self.audit {
            tx.append_audit(event)?;
        }
        for message in &self.outbox {
            tx.insert_outbox(message)?;
        }
        Ok(())
    }
}

/// What a move did: the records of each kind, as counted in the source and found in the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveReport {
    pub counts: BTreeMap<&'static str, usize>,
}

/// Moves every record of `source` into `target`, which must be empty, then checks that the
/// target holds exactly what the source does. Run it with the servers stopped.
pub fn move_store(source: &dyn Store, target: &dyn Store) -> Result<MoveReport> {
    let existing = Snapshot::read(target)?;
    if !existing.is_empty() {
        let held: Vec<String> =
            existing.counts().into_iter().filter(|(_, n)| *n > 0).map(|(kind, n)| format!("{n} {kind}")).collect();
        return Err(Error::Conflict(format!(
            "the target store already holds {}; move into an empty database",
            held.join(", ")
        )));
    }
    let snapshot = Snapshot::read(source)?;
    snapshot.write(target)?;
    let moved = Snapshot::read(target)?;
    if let Some(kind) = first_difference(&snapshot, &moved) {
        return Err(Error::Conflict(format!(
            "after the move the target's {kind} differ from the source's; the target must be emptied before trying again"
        )));
    }
    Ok(MoveReport { counts: snapshot.counts() })
}

/// The first kind of record whose lists differ.
fn first_difference(a: &Snapshot, b: &Snapshot) -> Option<&'static str> {
    let checks: [(&'static str, bool); 13] = [
        ("users", a.users == b.users),
        ("quota overrides", a.quota_overrides == b.quota_overrides),
        ("tokens", a.tokens == b.tokens),
        ("registrations", a.registrations == b.registrations),
        ("key changes", a.key_changes == b.key_changes),
        ("ip blocks", a.blocks == b.blocks),
        ("leases", a.leases == b.leases),
        ("vms", a.vms == b.vms),
        ("clusters", a.clusters == b.clusters),
        ("networks", a.networks == b.networks),
        ("operations", a.operations == b.operations),
        ("audit events", a.audit == b.audit),
        ("outbox messages", a.outbox == b.outbox),
    ];
    checks.into_iter().find(|(_, same)| !same).map(|(kind, _)| kind)
}
