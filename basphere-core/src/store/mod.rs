//! The `Store` trait: where the platform's state lives, and its unit of atomicity.
//!
//! The operations are cut by aggregate, one read trait and one write trait each: accounts
//! (users, requests, quota overrides), tokens, browser sessions, VMs, clusters, tenant networks, IPAM, operations (with their
//! claims), audit, outbox, idempotency and duties. Each trait's `# Contract` names the
//! constraints the store enforces for that aggregate. [`StoreRead`] and [`StoreTx`] are the
//! composition of all of them: what a `Store` hands to `read` and `write`.

mod accounts;
mod audit;
mod clusters;
pub mod constraint;
pub mod copy;
pub mod decode;
mod duties;
mod idempotency;
mod ipam;
mod networks;
mod operations;
mod outbox;
mod tokens;
mod vms;
mod web_sessions;

pub use accounts::{AccountsRead, AccountsTx, RequestFilter};
pub use audit::{AuditFilter, AuditRead, AuditTx};
pub use clusters::{ClusterFilter, ClustersRead, ClustersTx};
pub use duties::DutiesTx;
pub use idempotency::{IdempotencyRead, IdempotencyTx};
pub use ipam::{IpamRead, IpamTx};
pub use networks::{NetworkFilter, NetworksRead, NetworksTx};
pub use operations::{claim_lost, OperationFilter, OperationsRead, OperationsTx};
pub use outbox::{OutboxFilter, OutboxRead, OutboxTx};
pub use tokens::{TokensRead, TokensTx};
pub use vms::{VmFilter, VmsRead, VmsTx};
pub use web_sessions::{WebSessionsRead, WebSessionsTx};

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::*;
use crate::validate::{ResourceName, Username};

/// Reads, inside a consistent snapshot: every aggregate's read trait.
///
/// Implemented for every type that implements them all, so a backend implements the aggregate
/// traits and gets this one.
pub trait StoreRead:
    AccountsRead
    + TokensRead
    + VmsRead
    + ClustersRead
    + NetworksRead
    + IpamRead
    + OperationsRead
    + AuditRead
    + OutboxRead
    + IdempotencyRead
    + WebSessionsRead
{
}

impl<T> StoreRead for T where
    T: AccountsRead
        + TokensRead
        + VmsRead
        + ClustersRead
        + NetworksRead
        + IpamRead
        + OperationsRead
        + AuditRead
        + OutboxRead
        + IdempotencyRead
        + WebSessionsRead
        + ?Sized
{
}

/// Writes, inside a transaction: every aggregate's write trait (and every read). Every
/// constraint named in the aggregate traits' contracts is enforced by the store itself.
pub trait StoreTx:
    StoreRead
    + AccountsTx
    + TokensTx
    + VmsTx
    + ClustersTx
    + NetworksTx
    + IpamTx
    + OperationsTx
    + AuditTx
    + OutboxTx
    + IdempotencyTx
    + DutiesTx
    + WebSessionsTx
{
}

impl<T> StoreTx for T where
    T: StoreRead
        + AccountsTx
        + TokensTx
        + VmsTx
        + ClustersTx
        + NetworksTx
        + IpamTx
        + OperationsTx
        + AuditTx
        + OutboxTx
        + IdempotencyTx
        + DutiesTx
        + WebSessionsTx
        + ?Sized
{
}

/// Durable platform state.
///
/// # Contract
///
/// - `write` runs its closure inside one transaction: either every write it made is committed,
///   or (when it returns an error, or the process dies) none is. This is the unit of atomicity
///   that covers "check quota + lease address + record resource", and "record an outcome + queue
///   its notification in the outbox".
/// - Writers are serialised: two `write` calls never interleave, so a check made inside the
///   closure still holds when it commits. A closure may be run more than once when the backend
///   must retry (e.g. a busy database), so it must not have effects outside the store.
/// - `read` sees a consistent snapshot including everything committed before it started.
/// - What `write` committed survives a restart of the process (for durable backends), and is
///   seen by every process sharing the store (claims, the outbox and duties are how several
///   processes share background work).
/// - Constraints named in the aggregate traits' contracts ([`AccountsTx`], [`TokensTx`],
///   [`VmsTx`], [`ClustersTx`], [`NetworksTx`], [`IpamTx`], [`OperationsTx`], [`AuditTx`], [`OutboxTx`],
///   [`IdempotencyTx`], [`DutiesTx`], [`WebSessionsTx`]) are enforced by the store, not by its callers: a violation
///   is an `AlreadyExists`/`Conflict`/`NotFound` error, never a silent overwrite.
/// - Lookups of something absent return `Ok(None)`; updates of something absent are `NotFound`.
/// - Times are compared as given by the caller (`now` parameters), never read from a clock, so
///   every process decides by the same rule and tests control time.
/// - Every other failure is `Error::Backend`.
pub trait Store: Send + Sync {
    /// A short name of the backend (`memory`, `sqlite`).
    fn backend_name(&self) -> &'static str;
    fn read(&self, f: &mut dyn FnMut(&dyn StoreRead) -> Result<()>) -> Result<()>;
    fn write(&self, f: &mut dyn FnMut(&mut dyn StoreTx) -> Result<()>) -> Result<()>;

    /// Whether a read is brief local work that may run on the caller's own thread (an embedded
    /// database read through connections of its own, which no write holds up), rather than on
    /// a thread set aside for blocking work. Handing a read to such a thread and back costs
    /// more than a short read itself.
    fn reads_in_place(&self) -> bool {
        false
    }

    /// How many calls make progress at once: an embedded database's one writer, a pool's
    /// connections. The platform runs store calls on that many threads of its own; further
    /// calls wait as tasks, which cost next to nothing, instead of holding a thread each, all
    /// waiting for the same lock.
    fn blocking_calls(&self) -> usize {
        16
    }
}

/// Typed conveniences over [`Store`].
pub trait StoreExt: Store {
    /// Runs a read and returns its value.
    fn query<T>(&self, mut f: impl FnMut(&dyn StoreRead) -> Result<T>) -> Result<T> {
        let mut out = None;
        self.read(&mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        Ok(out.expect("read closure ran"))
    }

    /// Runs a transaction and returns its value.
    fn transact<T>(&self, mut f: impl FnMut(&mut dyn StoreTx) -> Result<T>) -> Result<T> {
        let mut out = None;
        self.write(&mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        Ok(out.expect("write closure ran"))
    }

    fn user(&self, username: &Username) -> Result<User> {
        self.query(|tx| tx.get_user(username))?.ok_or_else(|| Error::not_found("user", username))
    }

    fn vm(&self, owner: &Username, name: &ResourceName) -> Result<Vm> {
        self.query(|tx| tx.vm_by_name(owner, name))?.ok_or_else(|| Error::not_found("vm", name))
    }

    fn operation(&self, id: Uuid) -> Result<Operation> {
        self.query(|tx| tx.get_operation(id))?.ok_or_else(|| Error::not_found("operation", id))
    }
}

impl<S: Store + ?Sized> StoreExt for S {}
