//! Bringing an installation of the original Basphere (its Bash CLI and Go API) into Basphere:
//! `basphere-server import-original DIR`.
//!
//! [`Original::read`] reads the original's files leniently (every fault kept, with its file);
//! [`Plan::make`] maps them onto Basphere's records against what the store already holds, and
//! decides what each fault means; [`import`] writes the plan in one transaction, or nothing.
//!
//! The rules, as the report states them:
//! - **Conflicts stop the import.** A record that would collide with something Basphere already
//!   holds (an account of that name that is someone else's, a block or address held by another,
//!   a live VM of that name) or that the configuration cannot hold (an address outside every
//!   pool, another block size) is a conflict; while there is one, nothing is written.
//! - **Faults in the source are handled and reported**: repaired when the original's own data
//!   says how (a VM without a lease gets its address leased; a VM whose `metadata.json` is empty
//!   is rebuilt from its `main.tf` and its lease, as `lost` until reconciliation finds it in
//!   vSphere), skipped otherwise (a lease without a VM frees its address; a user without a
//!   record is not imported). Fix the source and run again to bring a skipped record across.
//! - **Idempotent.** Every record gets an id derived from the original's identity of it, so a
//!   second run finds what the first wrote and leaves it as it is (and writes nothing at all).

mod config;
mod plan;
mod report;
mod source;

pub use config::suggested_config;
pub use plan::Plan;
pub use source::{parse_main_tf, Original};

use basphere_core::config::PoolConfig;
use basphere_core::error::Result;
use basphere_core::model::{AuditEvent, Outcome};
use basphere_core::store::{Store, StoreExt, StoreRead};

/// Something in the source, or in the way of the import, with what it means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The file, row or record concerned (`/var/lib/basphere/ipam/leases.tsv:4`, `alice/web`).
    pub subject: String,
    pub what: String,
}

impl Fault {
    pub fn new(subject: impl Into<String>, what: impl Into<String>) -> Fault {
        Fault { subject: subject.into(), what: what.into() }
    }
}

/// Plans the import of `original` into `store`, and unless `dry_run`, writes it in one
/// transaction when it has no conflicts. The plan says what was (or would be) written.
pub fn import(
    original: &Original,
    pools: &[PoolConfig],
    store: &dyn Store,
    actor: &str,
    dry_run: bool,
) -> Result<Plan> {
    if dry_run {
        return store.query(|tx| Plan::make(original, pools, tx));
    }
    store.transact(|tx| {
        let plan = Plan::make(original, pools, &*tx as &dyn StoreRead)?;
        if plan.conflicts.is_empty() && !plan.is_empty() {
            plan.write(tx)?;
            let counts: serde_json::Map<String, serde_json::Value> =
                plan.counts().into_iter().map(|(kind, n)| (kind.to_owned(), n.into())).collect();
            let root = original.root.display().to_string();
            tx.append_audit(&AuditEvent::new(
                actor,
                "import.original",
                &root,
                "system",
                Outcome::Success,
                serde_json::json!({ "created": counts, "faults": plan.faults.len() }),
            ))?;
        }
        Ok(plan)
    })
}
