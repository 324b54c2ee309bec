//! `PgTx`: one PostgreSQL transaction (read or write) seen as core's store traits, one module per
//! aggregate, and the helpers they share.

mod accounts;
mod audit;
mod clusters;
mod duties;
mod idempotency;
mod ipam;
mod networks;
mod operations;
mod outbox;
mod tokens;
mod vms;
mod web_sessions;

use std::cell::Cell;
use std::net::Ipv4Addr;

use basphere_core::{Error, Result};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::constraints::violation;
pub(crate) use crate::constraints::Values;
use crate::{block_on, pg};

/// What happened to a transaction's statements, for the store to decide how it ends.
#[derive(Default)]
pub(crate) struct TxState {
    /// A statement failed outside a savepoint: the transaction cannot commit.
    pub aborted: Cell<bool>,
}

/// A read or write transaction on one connection.
pub(crate) struct PgTx<'c> {
    pub(crate) client: &'c deadpool_postgres::Client,
    pub(crate) state: &'c TxState,
}

pub(crate) type Param<'a> = &'a (dyn ToSql + Sync);

fn ip(address: Ipv4Addr) -> i64 {
    i64::from(u32::from(address))
}

/// A row count as PostgreSQL gives it.
fn count(rows: u64) -> usize {
    usize::try_from(rows).unwrap_or(usize::MAX)
}

impl PgTx<'_> {
    /// Notes what a failed statement means for the transaction.
    fn failed(&self, error: tokio_postgres::Error) -> tokio_postgres::Error {
        self.state.aborted.set(true);
        error
    }

    fn statement(&self, query: &str) -> Result<tokio_postgres::Statement> {
        block_on(self.client.prepare_cached(query)).map_err(|error| pg(self.failed(error)))
    }

    fn rows(&self, query: &str, params: &[Param<'_>]) -> Result<Vec<Row>> {
        let statement = self.statement(query)?;
        block_on(self.client.query(&statement, params)).map_err(|error| pg(self.failed(error)))
    }

    fn one<T>(&self, query: &str, params: &[Param<'_>], map: fn(&Row) -> Result<T>) -> Result<Option<T>> {
        self.rows(query, params)?.first().map(map).transpose()
    }

    fn all<T>(&self, query: &str, params: &[Param<'_>], map: fn(&Row) -> Result<T>) -> Result<Vec<T>> {
        self.rows(query, params)?.iter().map(map).collect()
    }

    /// A statement that cannot violate a constraint; its row count.
    fn exec(&self, query: &str, params: &[Param<'_>]) -> Result<usize> {
        let statement = self.statement(query)?;
        block_on(self.client.execute(&statement, params)).map(count).map_err(|error| pg(self.failed(error)))
    }

    /// A statement that may violate a constraint, inside a savepoint: a violation is undone
    /// alone and the transaction goes on, as after SQLite's statement rollback. The savepoint,
    /// the statement and the release travel in one round trip.
    fn guarded(&self, query: &str, params: &[Param<'_>]) -> Result<std::result::Result<u64, tokio_postgres::Error>> {
        let statement = self.statement(query)?;
        let (opened, executed, released) = block_on(async {
            futures_util::join!(
                self.client.batch_execute("SAVEPOINT basphere_statement"),
                self.client.execute(&statement, params),
                self.client.batch_execute("RELEASE SAVEPOINT basphere_statement"),
            )
        });
        opened.map_err(|error| pg(self.failed(error)))?;
        match executed {
            Ok(rows) => {
                released.map_err(|error| pg(self.failed(error)))?;
                Ok(Ok(rows))
            }
            Err(error) => {
                block_on(self.client.batch_execute("ROLLBACK TO SAVEPOINT basphere_statement"))
                    .map_err(|error| pg(self.failed(error)))?;
                block_on(self.client.batch_execute("RELEASE SAVEPOINT basphere_statement"))
                    .map_err(|error| pg(self.failed(error)))?;
                Ok(Err(error))
            }
        }
    }

    /// Runs an INSERT (or another write) into `table`; a constraint violation becomes its
    /// domain error (showing one of `values`).
    fn insert(&self, query: &str, params: &[Param<'_>], table: &'static str, values: Values<'_>) -> Result<()> {
        self.guarded(query, params)?.map_err(|error| violation(error, table, values))?;
        Ok(())
    }

    /// Runs an UPDATE of `table` and turns "no row" into `NotFound` (`kind` `name`).
    fn update(
        &self,
        query: &str,
        params: &[Param<'_>],
        kind: &'static str,
        name: impl std::fmt::Display,
        table: &'static str,
        values: Values<'_>,
    ) -> Result<()> {
        match self.guarded(query, params)? {
            Ok(0) => Err(Error::not_found(kind, name)),
            Ok(_) => Ok(()),
            Err(error) => Err(violation(error, table, values)),
        }
    }
}

/// A SELECT whose WHERE clause holds only the filters in use, with its parameters numbered.
struct Select {
    sql: String,
    clauses: Vec<String>,
    values: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Select {
    fn from(sql: String) -> Self {
        Select { sql, clauses: Vec::new(), values: Vec::new() }
    }

    /// Adds `clause` (with one `?`, numbered here) when `value` is present.
    fn when<V: ToSql + Sync + Send + 'static>(mut self, clause: &'static str, value: Option<V>) -> Self {
        if let Some(value) = value {
            self.values.push(Box::new(value));
            self.clauses.push(clause.replace('?', &format!("${}", self.values.len())));
        }
        self
    }

    /// Adds a clause without a parameter.
    fn only(mut self, clause: &'static str, apply: bool) -> Self {
        if apply {
            self.clauses.push(clause.to_owned());
        }
        self
    }

    fn tail(mut self, tail: &str, limit: Option<usize>) -> Query {
        if !self.clauses.is_empty() {
            self.sql.push_str(" WHERE ");
            self.sql.push_str(&self.clauses.join(" AND "));
        }
        self.sql.push(' ');
        self.sql.push_str(tail);
        if let Some(limit) = limit {
            self.values.push(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
            self.sql.push_str(&format!(" LIMIT ${}", self.values.len()));
        }
        Query { sql: self.sql, values: self.values }
    }
}

/// A built query and its parameters.
struct Query {
    sql: String,
    values: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Query {
    fn params(&self) -> Vec<Param<'_>> {
        self.values.iter().map(|value| &**value as Param<'_>).collect()
    }
}
