//! Idempotency records: the first answer to a create request that carried a key.

use crate::error::Result;
use crate::model::*;
use crate::validate::Username;

/// Reads of idempotency records.
pub trait IdempotencyRead {
    fn get_idempotency(&self, owner: &Username, key: &str) -> Result<Option<IdempotencyRecord>>;
}

/// Writes of idempotency records.
///
/// # Contract
///
/// - `insert_idempotency`: `AlreadyExists` when the owner already used the key (keys are per
///   owner).
pub trait IdempotencyTx: IdempotencyRead {
    fn insert_idempotency(&mut self, record: &IdempotencyRecord) -> Result<()>;
}
