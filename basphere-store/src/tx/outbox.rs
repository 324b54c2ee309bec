//! The outbox. Events are stored as JSON and parsed back through the model.

use basphere_core::model::*;
use basphere_core::store::{OutboxFilter, OutboxRead, OutboxTx};
use basphere_core::Result;
use rusqlite::params;
use uuid::Uuid;

use super::{Select, SqlTx};
use crate::rows::*;
use crate::sql;

const OUTBOX_COLUMNS: &str =
    "id, event, state, attempts, next_attempt_at, last_error, created_at, delivered_at, claimed_by, channel";

impl OutboxRead for SqlTx<'_> {
    fn get_outbox(&self, id: Uuid) -> Result<Option<OutboxMessage>> {
        self.one(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?1"), [id.to_string()], outbox_row)
    }

    fn list_outbox(&self, filter: &OutboxFilter) -> Result<Vec<OutboxMessage>> {
        let (query, values) = Select::from(format!("SELECT {OUTBOX_COLUMNS} FROM outbox"))
            .when("state = ?", filter.state.map(|s| s.as_str().to_owned()))
            .when("id > ?", filter.after.map(|id| id.to_string()))
            .tail("ORDER BY id", filter.limit);
        self.all(&query, rusqlite::params_from_iter(values), outbox_row)
    }
}

impl OutboxTx for SqlTx<'_> {
    fn insert_outbox(&mut self, m: &OutboxMessage) -> Result<()> {
        self.insert(
            &format!("INSERT INTO outbox ({OUTBOX_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
            params![
                m.id.to_string(),
                outbox_event_json(&m.event)?,
                m.state.as_str(),
                m.attempts,
                micros(m.next_attempt_at),
                m.last_error,
                micros(m.created_at),
                m.delivered_at.map(micros),
                m.claimed_by,
                m.channel
            ],
            "outbox",
            &[("id", &m.id), ("state", &m.state), ("attempts", &m.attempts)],
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
        // INDEXED BY: the planner would otherwise prefer outbox_state's equality on state and
        // sort; outbox_due answers "due, longest first" directly. The write transaction is
        // BEGIN IMMEDIATE, so nobody else takes these messages before the UPDATEs.
        let due = self.all(
            &format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox INDEXED BY outbox_due WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT {}",
                // A literal: a bound LIMIT makes SQLite plan the statement again at every run.
                i64::try_from(limit).unwrap_or(-1)
            ),
            params![micros(now)],
            outbox_row,
        )?;
        let mut claimed = Vec::with_capacity(due.len());
        for mut message in due {
            self.exec(
                "UPDATE outbox SET next_attempt_at = ?2, claimed_by = ?3 WHERE id = ?1",
                params![message.id.to_string(), micros(until), worker],
            )
            .map_err(sql)?;
            message.next_attempt_at = until;
            message.claimed_by = Some(worker.to_owned());
            claimed.push(message);
        }
        Ok(claimed)
    }

    fn update_outbox(&mut self, m: &OutboxMessage) -> Result<()> {
        self.update(
            "UPDATE outbox SET event = ?2, state = ?3, attempts = ?4, next_attempt_at = ?5, last_error = ?6, created_at = ?7, delivered_at = ?8, claimed_by = ?9, channel = ?10 WHERE id = ?1",
            params![
                m.id.to_string(),
                outbox_event_json(&m.event)?,
                m.state.as_str(),
                m.attempts,
                micros(m.next_attempt_at),
                m.last_error,
                micros(m.created_at),
                m.delivered_at.map(micros),
                m.claimed_by,
                m.channel
            ],
            "outbox message",
            m.id,
            "outbox",
            &[("id", &m.id), ("state", &m.state), ("attempts", &m.attempts)],
        )
    }
}
