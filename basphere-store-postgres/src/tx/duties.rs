//! Duties: named singleton leases, one row each while held.

use basphere_core::model::Timestamp;
use basphere_core::store::DutiesTx;
use basphere_core::Result;

use super::PgTx;

impl DutiesTx for PgTx<'_> {
    fn claim_duty(&mut self, name: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        // One statement: insert when free; else take over when expired or held by an earlier
        // life of the same instance (`<instance>/<boot>`), or renew when held by `holder`; else
        // change nothing (no row counted).
        let instance = holder.rsplit_once('/').map(|(instance, _)| format!("{instance}/")).unwrap_or_default();
        let changed = self.exec(
            "INSERT INTO duties (name, holder, expires_at) VALUES ($1, $2, $4)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE duties.holder = excluded.holder OR duties.expires_at <= $3
                OR ($5::text <> '' AND starts_with(duties.holder, $5::text)
                    AND strpos(substr(duties.holder, length($5::text) + 1), '/') = 0)",
            &[&name, &holder, &now, &until, &instance],
        )?;
        Ok(changed > 0)
    }

    fn release_duty(&mut self, name: &str, holder: &str) -> Result<()> {
        self.exec("DELETE FROM duties WHERE name = $1 AND holder = $2", &[&name, &holder])?;
        Ok(())
    }
}
