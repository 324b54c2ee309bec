//! Duties: named singleton leases, one row each while held.

use basphere_core::model::Timestamp;
use basphere_core::store::DutiesTx;
use basphere_core::Result;
use rusqlite::params;

use super::SqlTx;
use crate::rows::micros;
use crate::sql;

impl DutiesTx for SqlTx<'_> {
    fn claim_duty(&mut self, name: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        // One statement: insert when free; else take over when expired or held by an earlier
        // life of the same instance (`<instance>/<boot>`), or renew when held by `holder`; else
        // change nothing (no row counted).
        // `<instance>/`: what every life of this holder's instance starts with.
        let instance = holder.rsplit_once('/').map(|(instance, _)| format!("{instance}/")).unwrap_or_default();
        let changed = self
            .exec(
                "INSERT INTO duties (name, holder, expires_at) VALUES (?1, ?2, ?4)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                 WHERE duties.holder = excluded.holder OR duties.expires_at <= ?3
                    OR (?5 <> '' AND substr(duties.holder, 1, length(?5)) = ?5
                        AND instr(substr(duties.holder, length(?5) + 1), '/') = 0)",
                params![name, holder, micros(now), micros(until), instance],
            )
            .map_err(sql)?;
        Ok(changed > 0)
    }

    fn release_duty(&mut self, name: &str, holder: &str) -> Result<()> {
        self.exec("DELETE FROM duties WHERE name = ?1 AND holder = ?2", params![name, holder]).map_err(sql)?;
        Ok(())
    }
}
