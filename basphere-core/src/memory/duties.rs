//! Duties in memory.

use super::{remember, State, WriteTx};
use crate::error::Result;
use crate::model::Timestamp;
use crate::store::DutiesTx;

impl DutiesTx for WriteTx<'_> {
    fn claim_duty(&mut self, name: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        let free = match self.state.duties.get(name) {
            None => true,
            Some((current, expires_at)) => current == holder || *expires_at <= now || same_instance(current, holder),
        };
        if free {
            let previous = self.state.duties.insert(name.to_owned(), (holder.to_owned(), until));
            remember!(self, duties, name.to_owned(), previous);
        }
        Ok(free)
    }

    fn release_duty(&mut self, name: &str, holder: &str) -> Result<()> {
        if self.state.duties.get(name).is_some_and(|(current, _)| current == holder) {
            let previous = self.state.duties.remove(name);
            remember!(self, duties, name.to_owned(), previous);
        }
        Ok(())
    }
}

/// Whether two holders (`<instance>/<boot>`) are lives of the same instance.
fn same_instance(a: &str, b: &str) -> bool {
    match (a.rsplit_once('/'), b.rsplit_once('/')) {
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}
