//! Pages of lists.

use serde::{Deserialize, Serialize};

/// A page of a list, ordered by creation; pass `next` as `after` for the following page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}
