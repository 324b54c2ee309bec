//! Duties: named singleton leases, so that one process of several does a job (e.g.
//! `reconcile`).
//!
//! There is no read side: whether a process holds a duty is the answer of its own claim, and a
//! duty's holder matters to nobody else.

use crate::error::Result;
use crate::model::Timestamp;

/// Claims and releases of duties.
///
/// # Contract
///
/// - `claim_duty` takes or renews the duty `name` for `holder` until `until` when it is free,
///   expired at `now` (`expires_at <= now`), already held by `holder`, or held by an earlier life
///   of the same instance (holders are `<instance>/<boot>`: the same text before the last `/`);
///   otherwise it leaves the duty alone. Returns whether `holder` holds it after the call.
/// - `release_duty` gives the duty up if `holder` holds it; a no-op otherwise.
pub trait DutiesTx {
    fn claim_duty(&mut self, name: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool>;
    fn release_duty(&mut self, name: &str, holder: &str) -> Result<()>;
}
