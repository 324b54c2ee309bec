//! `SqlTx`: one SQLite transaction (read or write) seen as core's store traits, one module per
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

use std::net::Ipv4Addr;

use basphere_core::{Error, Result};
use rusqlite::Connection;

use crate::constraints::{violation, Values};
use crate::sql;

/// A read or write transaction.
pub(crate) struct SqlTx<'c> {
    pub(crate) conn: &'c Connection,
}

fn ip(address: Ipv4Addr) -> i64 {
    i64::from(u32::from(address))
}

impl SqlTx<'_> {
    fn one<T>(
        &self,
        query: &str,
        params: impl rusqlite::Params,
        map: fn(&rusqlite::Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut statement = self.conn.prepare_cached(query).map_err(sql)?;
        let mut rows = statement.query(params).map_err(sql)?;
        match rows.next().map_err(sql)? {
            Some(row) => Ok(Some(map(row)?)),
            None => Ok(None),
        }
    }

    fn all<T>(
        &self,
        query: &str,
        params: impl rusqlite::Params,
        map: fn(&rusqlite::Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.all_sized(query, params, map, 0)
    }

    /// [`SqlTx::all`] into a list made for `expected` rows (a page's limit): no regrowing.
    fn all_sized<T>(
        &self,
        query: &str,
        params: impl rusqlite::Params,
        map: fn(&rusqlite::Row<'_>) -> Result<T>,
        expected: usize,
    ) -> Result<Vec<T>> {
        let mut statement = self.conn.prepare_cached(query).map_err(sql)?;
        let mut rows = statement.query(params).map_err(sql)?;
        let mut out = Vec::with_capacity(expected);
        while let Some(row) = rows.next().map_err(sql)? {
            out.push(map(row)?);
        }
        Ok(out)
    }

    fn exec(&self, query: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(query)?.execute(params)
    }

    /// Runs an INSERT (or another write) into `table`; a constraint violation becomes its
    /// domain error (showing one of `values`).
    fn insert(
        &self,
        query: &str,
        params: impl rusqlite::Params,
        table: &'static str,
        values: Values<'_>,
    ) -> Result<()> {
        self.exec(query, params).map_err(|error| violation(error, table, values))?;
        Ok(())
    }

    /// Runs an UPDATE of `table` and turns "no row" into `NotFound` (`kind` `name`).
    fn update(
        &self,
        query: &str,
        params: impl rusqlite::Params,
        kind: &'static str,
        name: impl std::fmt::Display,
        table: &'static str,
        values: Values<'_>,
    ) -> Result<()> {
        match self.exec(query, params) {
            Ok(0) => Err(Error::not_found(kind, name)),
            Ok(_) => Ok(()),
            Err(error) => Err(violation(error, table, values)),
        }
    }
}

/// A SELECT whose WHERE clause holds only the filters in use, so SQLite can use its indexes
/// (a `?1 IS NULL OR col = ?1` pattern would make it scan).
struct Select {
    sql: String,
    clauses: Vec<&'static str>,
    values: Vec<rusqlite::types::Value>,
}

impl Select {
    fn from(sql: String) -> Self {
        Select { sql, clauses: Vec::new(), values: Vec::new() }
    }

    /// Adds `clause` (with one `?`) when `value` is present.
    fn when<V: Into<rusqlite::types::Value>>(mut self, clause: &'static str, value: Option<V>) -> Self {
        if let Some(value) = value {
            self.clauses.push(clause);
            self.values.push(value.into());
        }
        self
    }

    /// Adds a clause without a parameter.
    fn only(mut self, clause: &'static str, apply: bool) -> Self {
        if apply {
            self.clauses.push(clause);
        }
        self
    }

    fn tail(mut self, tail: &str, limit: Option<usize>) -> (String, Vec<rusqlite::types::Value>) {
        if !self.clauses.is_empty() {
            self.sql.push_str(" WHERE ");
            self.sql.push_str(&self.clauses.join(" AND "));
        }
        self.sql.push(' ');
        self.sql.push_str(tail);
        if let Some(limit) = limit {
            // A literal, not a parameter: SQLite plans with a bound LIMIT's value, so a statement
            // with `LIMIT ?` is parsed and planned again at every run (measured with
            // SQLITE_STMTSTATUS_REPREPARE). Pages use a few limits, so the cache holds them all.
            // SQLite's LIMIT is signed; a negative one means no limit.
            self.sql.push_str(&format!(" LIMIT {}", i64::try_from(limit).unwrap_or(-1)));
        }
        (self.sql, self.values)
    }
}
