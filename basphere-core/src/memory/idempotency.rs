//! Idempotency records in memory.

use super::{remember, ReadTx, State, WriteTx};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::{IdempotencyRead, IdempotencyTx};
use crate::validate::Username;

macro_rules! reads {
    ($ty:ty) => {
        impl IdempotencyRead for $ty {
            fn get_idempotency(&self, owner: &Username, key: &str) -> Result<Option<IdempotencyRecord>> {
                Ok(self.state().idempotency.get(&(owner.clone(), key.to_owned())).cloned())
            }
        }
    };
}

reads!(ReadTx<'_>);
reads!(WriteTx<'_>);

impl IdempotencyTx for WriteTx<'_> {
    fn insert_idempotency(&mut self, record: &IdempotencyRecord) -> Result<()> {
        let key = (record.owner.clone(), record.key.clone());
        if self.state.idempotency.contains_key(&key) {
            return Err(Error::already_exists("idempotency key", &record.key));
        }
        self.state.idempotency.insert(key.clone(), record.clone());
        remember!(self, idempotency, key, None::<IdempotencyRecord>);
        Ok(())
    }
}
