//! Quotas: an account's limits (the defaults with its override) and what it uses now.

use serde_json::json;

use super::Accounts;
use crate::error::{Error, Result};
use crate::model::*;
use crate::runtime::authz::{decide, Action, Actor};
use crate::store::StoreExt;
use crate::validate::Username;

/// Limits and usage of one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaReport {
    pub quota: Quota,
    pub usage: Usage,
}

impl Accounts {
    /// The limits and usage of `owner`, as `actor` may see them.
    pub async fn quota(&self, actor: &Actor, owner: &Username) -> Result<QuotaReport> {
        decide(actor, Action::View, Some(owner), "user", owner)?;
        self.quota_report(owner).await
    }

    /// The limits and usage of an account, with no questions asked (the platform's own use).
    pub(super) async fn quota_report(&self, owner: &Username) -> Result<QuotaReport> {
        let owner = owner.clone();
        let default = self.rt.config.default_quota;
        self.rt
            .db(move |store, _| {
                store.query(|tx| {
                    if tx.get_user(&owner)?.is_none() {
                        return Err(Error::not_found("user", &owner));
                    }
                    let quota = default.with_override(&tx.quota_override(&owner)?.unwrap_or_default());
                    Ok(QuotaReport { quota, usage: tx.usage(&owner)? })
                })
            })
            .await
    }

    /// Sets (or with `None` removes) an account's quota override. Administrators only.
    pub async fn set_quota_override(
        &self,
        actor: &Actor,
        owner: &Username,
        quota: Option<QuotaOverride>,
    ) -> Result<QuotaReport> {
        decide(actor, Action::Administer, Some(owner), "user", owner)?;
        let (owner_saved, actor) = (owner.clone(), actor.clone());
        self.rt
            .db(move |store, _| {
                store.transact(|tx| {
                    if tx.get_user(&owner_saved)?.is_none() {
                        return Err(Error::not_found("user", &owner_saved));
                    }
                    tx.set_quota_override(&owner_saved, quota.as_ref())?;
                    tx.append_audit(&AuditEvent::new(
                        &actor.name,
                        "quota.set",
                        &format!("user/{owner_saved}"),
                        &actor.source,
                        Outcome::Success,
                        json!(quota),
                    ))
                })
            })
            .await?;
        self.quota_report(owner).await
    }
}
