//! Browsers' sign-in links and sessions in memory.

use uuid::Uuid;

use super::{remember, ReadTx, State, WriteTx};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::{WebSessionsRead, WebSessionsTx};
use crate::validate::Username;

macro_rules! reads {
    ($ty:ty) => {
        impl WebSessionsRead for $ty {
            fn web_session_by_hash(&self, secret_hash: &str) -> Result<Option<WebSession>> {
                Ok(self.state().web_sessions.values().find(|s| s.secret_hash == secret_hash).cloned())
            }
        }
    };
}

reads!(ReadTx<'_>);
reads!(WriteTx<'_>);

impl WebSessionsTx for WriteTx<'_> {
    fn insert_web_session(&mut self, session: &WebSession) -> Result<()> {
        if self.state.web_sessions.contains_key(&session.id)
            || self.state.web_sessions.values().any(|s| s.secret_hash == session.secret_hash)
        {
            return Err(Error::already_exists("web session", session.id));
        }
        if let Some(owner) = &session.owner {
            if !self.state.users.contains_key(owner) {
                return Err(Error::not_found("user", owner));
            }
        }
        self.state.web_sessions.insert(session.id, session.clone());
        remember!(self, web_sessions, session.id, None::<WebSession>);
        Ok(())
    }

    fn update_web_session(&mut self, session: &WebSession) -> Result<()> {
        if !self.state.web_sessions.contains_key(&session.id) {
            return Err(Error::not_found("web session", session.id));
        }
        let previous = self.state.web_sessions.insert(session.id, session.clone());
        remember!(self, web_sessions, session.id, previous);
        Ok(())
    }

    fn end_web_sessions_of(&mut self, owner: &Username, at: Timestamp) -> Result<usize> {
        let ids: Vec<Uuid> = self
            .state
            .web_sessions
            .values()
            .filter(|s| s.owner.as_ref() == Some(owner) && s.ended_at.is_none())
            .map(|s| s.id)
            .collect();
        for id in &ids {
            let mut ended = self.state.web_sessions[id].clone();
            ended.ended_at = Some(at);
            let previous = self.state.web_sessions.insert(*id, ended);
            remember!(self, web_sessions, *id, previous);
        }
        Ok(ids.len())
    }

    fn delete_web_sessions_before(&mut self, before: Timestamp) -> Result<usize> {
        let ids: Vec<Uuid> = self
            .state
            .web_sessions
            .values()
            .filter(|s| s.expires_at < before || s.ended_at.is_some_and(|ended| ended < before))
            .map(|s| s.id)
            .collect();
        for id in &ids {
            let previous = self.state.web_sessions.remove(id);
            remember!(self, web_sessions, *id, previous);
        }
        Ok(ids.len())
    }
}
