//! The `Bastion` trait: the Unix login each approved account gets on the bastion host, where
//! developers SSH in and run `basphere` (the server knows them there by their uid).

use async_trait::async_trait;

use crate::error::Result;
use crate::validate::{SshPublicKey, Username};

/// Creates, rekeys and removes bastion logins.
///
/// # Contract
///
/// - `ensure_login` creates the login `username` (no password, the configured group and shell)
///   with `key` as its only authorized key, or adopts the login when it exists already and was
///   made by Basphere (so a half-done approval can be repeated), and returns its uid. It refuses
///   (`AlreadyExists`) a login of that name that Basphere did not make, such as a system
///   account. `None` when the deployment has no bastion logins.
/// - `set_key` replaces the login's authorized keys with `key`, atomically: a reader sees the
///   old file or the new one, never a partial one. `NotFound` when the login does not exist.
/// - `remove_login` removes the login and its home; removing one that is gone succeeds.
/// - Every field that reaches a system file (passwd, group, authorized_keys) is one the
///   validation rules already restrict: a username, a parsed key. Implementations still refuse
///   anything with a control character or a `:`.
#[async_trait]
pub trait Bastion: Send + Sync {
    fn backend_name(&self) -> &'static str;
    async fn ensure_login(&self, username: &Username, key: &SshPublicKey) -> Result<Option<u32>>;
    async fn set_key(&self, username: &Username, key: &SshPublicKey) -> Result<()>;
    async fn remove_login(&self, username: &Username) -> Result<()>;
}

/// For deployments without bastion logins: every call succeeds and nothing is made.
#[derive(Debug, Default)]
pub struct NoBastion;

#[async_trait]
impl Bastion for NoBastion {
    fn backend_name(&self) -> &'static str {
        "none"
    }

    async fn ensure_login(&self, _username: &Username, _key: &SshPublicKey) -> Result<Option<u32>> {
        Ok(None)
    }

    async fn set_key(&self, _username: &Username, _key: &SshPublicKey) -> Result<()> {
        Ok(())
    }

    async fn remove_login(&self, _username: &Username) -> Result<()> {
        Ok(())
    }
}
