//! Operations: the background work the server accepted.

use super::IdPath;
use crate::endpoint::problems::{LIST, ONE};
use crate::endpoint::{endpoint, Reply};
use crate::{ListQuery, OperationView, Page};

endpoint! {
    /// `GET /api/v1/operations`
    List = Get "/api/v1/operations", list_operations, tag "operations",
    types((), ListQuery, () => Page<OperationView>);
    SUMMARY = "Your operations, oldest first. *user*";
    REPLIES = &[Reply::OK];
    PROBLEMS = LIST;
}

endpoint! {
    /// `GET /api/v1/operations/{id}`
    Get = Get "/api/v1/operations/{id}", get_operation, tag "operations",
    types(IdPath, (), () => OperationView);
    SUMMARY = "One operation: yours, or any for an admin. *user*";
    REPLIES = &[Reply::OK];
    PROBLEMS = ONE;
}
