//! Idempotency records.

use basphere_core::model::*;
use basphere_core::store::{IdempotencyRead, IdempotencyTx};
use basphere_core::validate::Username;
use basphere_core::Result;

use super::PgTx;
use crate::rows::*;

impl IdempotencyRead for PgTx<'_> {
    fn get_idempotency(&self, owner: &Username, key: &str) -> Result<Option<IdempotencyRecord>> {
        self.one(
            "SELECT owner, key, request_hash, operations, created_at FROM idempotency_keys WHERE owner = $1 AND key = $2",
            &[&owner.as_str(), &key],
            idempotency_row,
        )
    }
}

impl IdempotencyTx for PgTx<'_> {
    fn insert_idempotency(&mut self, record: &IdempotencyRecord) -> Result<()> {
        let operations = idempotency_operations_json(record)?;
        self.insert(
            "INSERT INTO idempotency_keys (owner, key, request_hash, operations, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[&record.owner.as_str(), &record.key, &record.request_hash, &operations, &record.created_at],
            "idempotency_keys",
            &[("owner", &record.owner), ("key", &record.key)],
        )
    }
}
