//! The audit log in memory.

use super::{page, ReadTx, State, WriteTx};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::{AuditFilter, AuditRead, AuditTx};

macro_rules! reads {
    ($ty:ty) => {
        impl AuditRead for $ty {
            fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
                let wanted = |event: &&AuditEvent| {
                    filter.actor.as_ref().is_none_or(|a| event.actor == *a)
                        && filter.action.as_ref().is_none_or(|a| event.action == *a)
                        && filter.after.is_none_or(|after| {
                            if filter.newest_first {
                                event.id < after
                            } else {
                                event.id > after
                            }
                        })
                };
                let audit = &self.state().audit;
                if filter.newest_first {
                    return Ok(page(audit.iter().rev().filter(wanted).cloned(), filter.limit));
                }
                Ok(page(audit.iter().filter(wanted).cloned(), filter.limit))
            }
        }
    };
}

reads!(ReadTx<'_>);
reads!(WriteTx<'_>);

impl AuditTx for WriteTx<'_> {
    fn append_audit(&mut self, event: &AuditEvent) -> Result<()> {
        if self.state.audit.iter().any(|e| e.id == event.id) {
            return Err(Error::already_exists("audit event", event.id));
        }
        let index = self.state.audit.partition_point(|e| e.id < event.id);
        self.state.audit.insert(index, event.clone());
        let id = event.id;
        self.undo.push(Box::new(move |state: &mut State| state.audit.retain(|e| e.id != id)));
        Ok(())
    }
}
