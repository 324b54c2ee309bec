//! The outbox in memory.

use uuid::Uuid;

use super::{after, page, remember, ReadTx, State, WriteTx};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::{OutboxFilter, OutboxRead, OutboxTx};

macro_rules! reads {
    ($ty:ty) => {
        impl OutboxRead for $ty {
            fn get_outbox(&self, id: Uuid) -> Result<Option<OutboxMessage>> {
                Ok(self.state().outbox.get(&id).cloned())
            }
            fn list_outbox(&self, filter: &OutboxFilter) -> Result<Vec<OutboxMessage>> {
                Ok(page(
                    after(&self.state().outbox, filter.after)
                        .filter(|message| filter.state.is_none_or(|s| message.state == s))
                        .cloned(),
                    filter.limit,
                ))
            }
        }
    };
}

reads!(ReadTx<'_>);
reads!(WriteTx<'_>);

impl OutboxTx for WriteTx<'_> {
    fn insert_outbox(&mut self, message: &OutboxMessage) -> Result<()> {
        if self.state.outbox.contains_key(&message.id) {
            return Err(Error::already_exists("outbox message", message.id));
        }
        self.state.outbox.insert(message.id, message.clone());
        remember!(self, outbox, message.id, None::<OutboxMessage>);
        Ok(())
    }

    fn claim_outbox(
        &mut self,
        worker: &str,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>> {
        let mut due: Vec<&OutboxMessage> = self
            .state
            .outbox
            .values()
            .filter(|message| message.state == OutboxState::Pending && message.next_attempt_at <= now)
            .collect();
        due.sort_by_key(|message| (message.next_attempt_at, message.id));
        let ids: Vec<Uuid> = due.into_iter().take(limit).map(|message| message.id).collect();
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let mut message = self.state.outbox[&id].clone();
            message.next_attempt_at = until;
            message.claimed_by = Some(worker.to_owned());
            let previous = self.state.outbox.insert(id, message.clone());
            remember!(self, outbox, id, previous);
            claimed.push(message);
        }
        Ok(claimed)
    }

    fn update_outbox(&mut self, message: &OutboxMessage) -> Result<()> {
        if !self.state.outbox.contains_key(&message.id) {
            return Err(Error::not_found("outbox message", message.id));
        }
        let previous = self.state.outbox.insert(message.id, message.clone());
        remember!(self, outbox, message.id, previous);
        Ok(())
    }
}
