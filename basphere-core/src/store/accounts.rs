//! Accounts: users, registration and key-change requests, quota overrides, and what an
//! account holds (`usage`).

use crate::error::Result;
use crate::model::*;
use crate::validate::{Email, Username};
use uuid::Uuid;

/// Which registration or key change requests to list, oldest first (by id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestFilter {
    pub status: Option<RequestStatus>,
    pub username: Option<Username>,
    /// Only requests after this id (the previous page's last).
    pub after: Option<Uuid>,
    pub limit: Option<usize>,
}

/// Reads of accounts and their requests.
pub trait AccountsRead {
    fn get_user(&self, username: &Username) -> Result<Option<User>>;
    fn user_by_uid(&self, uid: u32) -> Result<Option<User>>;
    /// The account whose SSH key has this fingerprint.
    fn user_by_key_fingerprint(&self, fingerprint: &str) -> Result<Option<User>>;
    /// An account whose email names the same mailbox (compared without regard to ASCII case).
    fn user_by_email(&self, email: &Email) -> Result<Option<User>>;
    /// All accounts ordered by username.
    fn list_users(&self) -> Result<Vec<User>>;

    fn get_registration(&self, id: Uuid) -> Result<Option<RegistrationRequest>>;
    /// Oldest first; a page of them costs the page, not every request (10,000 pending are
    /// listed a page at a time).
    fn list_registrations(&self, filter: &RequestFilter) -> Result<Vec<RegistrationRequest>>;
    fn get_key_change(&self, id: Uuid) -> Result<Option<KeyChangeRequest>>;
    /// Oldest first, like `list_registrations`.
    fn list_key_changes(&self, filter: &RequestFilter) -> Result<Vec<KeyChangeRequest>>;

    fn quota_override(&self, owner: &Username) -> Result<Option<QuotaOverride>>;
    /// What `owner` holds now: live VMs and clusters, their sizes, and leased addresses.
    ///
    /// It lives with the account rather than with VMs, clusters or IPAM because it is a fact
    /// about the account that spans all three, and it is read together with
    /// [`quota_override`](Self::quota_override) for every quota decision.
    fn usage(&self, owner: &Username) -> Result<Usage>;
}

/// Writes of accounts and their requests.
///
/// # Contract
///
/// - `insert_user`: `AlreadyExists` for a taken username, uid or SSH key fingerprint.
/// - `update_user`: `NotFound` for an unknown user; the same uniqueness as `insert_user`.
/// - `delete_user` removes the account, its tokens and quota override; `NotFound` for an unknown
///   user, `Conflict` while it holds blocks, leases, or live VMs or clusters.
/// - `insert_registration`: `AlreadyExists` for a taken id, or when a pending request has the
///   same username or (case-insensitively) email; `update_registration` keeps that rule.
/// - `insert_key_change`: `AlreadyExists` for a taken id, or when the user has a pending key
///   change; `update_key_change` keeps that rule.
/// - `set_quota_override`: `NotFound` for an unknown user; `None` removes the override.
pub trait AccountsTx: AccountsRead {
    fn insert_user(&mut self, user: &User) -> Result<()>;
    fn update_user(&mut self, user: &User) -> Result<()>;
    fn delete_user(&mut self, username: &Username) -> Result<()>;

    fn insert_registration(&mut self, request: &RegistrationRequest) -> Result<()>;
    fn update_registration(&mut self, request: &RegistrationRequest) -> Result<()>;
    fn insert_key_change(&mut self, request: &KeyChangeRequest) -> Result<()>;
    fn update_key_change(&mut self, request: &KeyChangeRequest) -> Result<()>;

    fn set_quota_override(&mut self, owner: &Username, quota: Option<&QuotaOverride>) -> Result<()>;
}
