//! The query strings the API accepts. The server parses them (unknown parameters refused); the
//! CLI writes them ([`crate::endpoint::query_string`]: `None` fields are left out).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::endpoint::Paged;

/// `?limit=&after=`: pagination of lists ordered by creation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// At most this many items (1-1000, default 100).
    pub limit: Option<usize>,
    /// The `next` value of the previous page.
    pub after: Option<Uuid>,
    /// Only VMs in this state.
    pub state: Option<String>,
    /// Admin lists only: one owner's items.
    pub owner: Option<String>,
}

/// `?since=&timeout=`: a cluster's long poll.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct WatchQuery {
    /// The `updated_at` you saw last: the answer comes once the cluster changed after it.
    pub since: Option<DateTime<Utc>>,
    /// Seconds to wait for a change (1-25, default 25); then the cluster as it is.
    pub timeout: Option<u64>,
}

/// `?actor=&after=&limit=&format=jsonl`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub after: Option<Uuid>,
    pub limit: Option<usize>,
    /// `json` (a page, default) or `jsonl` (JSON lines, for export).
    pub format: Option<String>,
}

/// `?state=&limit=&after=`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    /// pending, delivered or dead.
    pub state: Option<String>,
    pub limit: Option<usize>,
    pub after: Option<Uuid>,
}

/// `?status=&limit=&after=`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct RequestListQuery {
    /// pending (default), approved or rejected.
    pub status: Option<String>,
    /// At most this many items (1-1000, default 100).
    pub limit: Option<usize>,
    /// The `next` value of the previous page.
    pub after: Option<Uuid>,
}

/// `?state=&limit=&after=`: the tenant networks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct NetworkListQuery {
    /// Only networks in this state: pending, ready, failed or deleting; deleted lists the
    /// history of deleted ones.
    pub state: Option<String>,
    /// At most this many items (1-1000, default 100).
    pub limit: Option<usize>,
    /// The `next` value of the previous page.
    pub after: Option<Uuid>,
}

/// A query with `limit` and `after` fields: the CLI sets them page by page.
macro_rules! paged {
    ($($query:ty),*) => {$(
        impl Paged for $query {
            fn page(&mut self, limit: usize, after: Option<Uuid>) {
                self.limit = Some(limit);
                self.after = after;
            }
        }
    )*};
}

paged!(ListQuery, OutboxQuery, RequestListQuery, NetworkListQuery);
