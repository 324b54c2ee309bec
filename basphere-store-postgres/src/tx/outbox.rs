//! The outbox. Events are stored as JSON and parsed back through the model.

use basphere_core::model::*;
use basphere_core::store::{OutboxFilter, OutboxRead, OutboxTx};
use basphere_core::Result;
use uuid::Uuid;

use super::{Param, PgTx, Select};
use crate::rows::*;

const OUTBOX_COLUMNS: &str =
    "id, event, state, attempts, next_attempt_at, last_error, created_at, delivered_at, claimed_by, channel";

impl OutboxRead for PgTx<'_> {
    fn get_outbox(&self, id: Uuid) -> Result<Option<OutboxMessage>> {
        self.one(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1"), &[&id], outbox_row)
    }

    fn list_outbox(&self, filter: &OutboxFilter) -> Result<Vec<OutboxMessage>> {
        let query = Select::from(format!("SELECT {OUTBOX_COLUMNS} FROM outbox"))
            .when("state = ?", filter.state.map(|s| s.as_str().to_owned()))
            .when("id > ?", filter.after)
            .tail("ORDER BY id", filter.limit);
        self.all(&query.sql, &query.params(), outbox_row)
    }
}

impl PgTx<'_> {
    fn write_outbox(&self, statement: &str, m: &OutboxMessage, missing: bool) -> Result<()> {
        let event = outbox_event_json(&m.event)?;
        let params: [Param<'_>; 10] = [
            &m.id,
            &event,
            &m.state.as_str(),
            &i64::from(m.attempts),
            &m.next_attempt_at,
            &m.last_error,
            &m.created_at,
            &m.delivered_at,
            &m.claimed_by,
            &m.channel,
        ];
        let values: super::Values<'_> = &[("id", &m.id), ("state", &m.state), ("attempts", &m.attempts)];
        if missing {
            self.insert(statement, &params, "outbox", values)
        } else {
            self.update(statement, &params, "outbox message", m.id, "outbox", values)
        }
    }
}

impl OutboxTx for PgTx<'_> {
    fn insert_outbox(&mut self, m: &OutboxMessage) -> Result<()> {
        self.write_outbox(
            &format!("INSERT INTO outbox ({OUTBOX_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
            m,
            true,
        )
    }

    fn claim_outbox(
        &mut self,
        worker: &str,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Rows another replica is claiming right now are skipped, not waited for.
        let due = self.all(
            &format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED"
            ),
            &[&now, &i64::try_from(limit).unwrap_or(i64::MAX)],
            outbox_row,
        )?;
        let mut claimed = Vec::with_capacity(due.len());
        for mut message in due {
            self.exec(
                "UPDATE outbox SET next_attempt_at = $2, claimed_by = $3 WHERE id = $1",
                &[&message.id, &until, &worker],
            )?;
            message.next_attempt_at = until;
            message.claimed_by = Some(worker.to_owned());
            claimed.push(message);
        }
        Ok(claimed)
    }

    fn update_outbox(&mut self, m: &OutboxMessage) -> Result<()> {
        self.write_outbox(
            "UPDATE outbox SET event = $2, state = $3, attempts = $4, next_attempt_at = $5, last_error = $6, created_at = $7, delivered_at = $8, claimed_by = $9, channel = $10 WHERE id = $1",
            m,
            false,
        )
    }
}
