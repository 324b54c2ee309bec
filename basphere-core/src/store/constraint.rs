//! What a violated store constraint means to the domain, for the SQL stores: each names its
//! constraints and maps every name to a [`Meaning`]; the error is made here, the same for both.

use std::fmt;

use crate::error::Error;

/// The domain error a violation means. `column` names the value the error shows, taken from
/// the values the statement wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meaning {
    /// `AlreadyExists { kind, name: <column's value> }`.
    AlreadyExists { kind: &'static str, column: &'static str },
    /// `NotFound { kind, name: <column's value> }`: the row refers to something absent.
    NotFound { kind: &'static str, column: &'static str },
    /// `Conflict("<what> <column's value> exists already")`.
    Conflict { what: &'static str, column: &'static str },
    /// `InvalidInput { field: column }`, saying what is accepted.
    Invalid { column: &'static str, accepted: &'static str },
}

/// The values a statement wrote, by column, for the error to show.
pub type Values<'a> = &'a [(&'static str, &'a dyn fmt::Display)];

impl Meaning {
    /// The domain error for a violation of constraint `name`, or `None` when `values` lacks the
    /// column to show (a bug of the caller).
    pub fn error(&self, name: &str, values: Values<'_>) -> Option<Error> {
        let column = match *self {
            Meaning::AlreadyExists { column, .. }
            | Meaning::NotFound { column, .. }
            | Meaning::Conflict { column, .. }
            | Meaning::Invalid { column, .. } => column,
        };
        let value = values.iter().find(|(name, _)| *name == column)?.1;
        Some(match *self {
            Meaning::AlreadyExists { kind, .. } => Error::already_exists(kind, value),
            Meaning::NotFound { kind, .. } => Error::not_found(kind, value),
            Meaning::Conflict { what, .. } => Error::Conflict(format!("{what} {value} exists already")),
            Meaning::Invalid { accepted, .. } => Error::invalid(
                column,
                format!("{:?} is refused by the store ({name}); accepted: {accepted}", value.to_string()),
            ),
        })
    }
}
