//! API tokens in memory.

use uuid::Uuid;

use super::{remember, ReadTx, State, WriteTx};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::{TokensRead, TokensTx};
use crate::validate::Username;

macro_rules! reads {
    ($ty:ty) => {
        impl TokensRead for $ty {
            fn get_token(&self, id: Uuid) -> Result<Option<ApiToken>> {
                Ok(self.state().tokens.get(&id).cloned())
            }
            fn token_by_hash(&self, secret_hash: &str) -> Result<Option<ApiToken>> {
                Ok(self.state().tokens.values().find(|t| t.secret_hash == secret_hash).cloned())
            }
            fn list_tokens(&self, owner: &Username) -> Result<Vec<ApiToken>> {
                Ok(self.state().tokens.values().filter(|t| t.owner == *owner).cloned().collect())
            }
        }
    };
}

reads!(ReadTx<'_>);
reads!(WriteTx<'_>);

impl TokensTx for WriteTx<'_> {
    fn insert_token(&mut self, token: &ApiToken) -> Result<()> {
        if self.state.tokens.contains_key(&token.id)
            || self.state.tokens.values().any(|t| t.secret_hash == token.secret_hash)
        {
            return Err(Error::already_exists("token", token.id));
        }
        if !self.state.users.contains_key(&token.owner) {
            return Err(Error::not_found("user", &token.owner));
        }
        self.state.tokens.insert(token.id, token.clone());
        remember!(self, tokens, token.id, None::<ApiToken>);
        Ok(())
    }

    fn update_token(&mut self, token: &ApiToken) -> Result<()> {
        if !self.state.tokens.contains_key(&token.id) {
            return Err(Error::not_found("token", token.id));
        }
        if self.state.tokens.values().any(|t| t.id != token.id && t.secret_hash == token.secret_hash) {
            return Err(Error::already_exists("token", token.id));
        }
        let previous = self.state.tokens.insert(token.id, token.clone());
        remember!(self, tokens, token.id, previous);
        Ok(())
    }
}
