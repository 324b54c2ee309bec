//! Domain types: accounts, requests, tokens, VMs, clusters, quotas, IPAM records, operations and
//! their claims, audit and notification events, outbox messages, tenant networks. These are the store's records;
//! wire formats live elsewhere.

use std::fmt;
use std::net::Ipv4Addr;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
pub use uuid::Uuid;

use crate::error::{Error, Result};
use crate::validate::{Email, ResourceName, SshPublicKey, Username};

/// Timestamps are kept to the microsecond, the precision every store keeps.
pub type Timestamp = DateTime<Utc>;

/// The current time at store precision.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(6)
}

/// Declares a `snake_case` string enum with `as_str` / `parse` used by stores and wire types.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(value: &str) -> Result<Self> {
                match value {
                    $($text => Ok($name::$variant),)+
                    other => Err(Error::invalid(
                        stringify!($name),
                        format!("{other:?} is not one of: {}", [$($text),+].join(", ")),
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

mod accounts;
mod catalog;
mod clusters;
mod events;
mod ipam;
mod networks;
mod operations;
mod quota;
mod vms;

pub use accounts::*;
pub use catalog::*;
pub use clusters::*;
pub use events::*;
pub use ipam::*;
pub use networks::*;
pub use operations::*;
pub use quota::*;
pub use vms::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occupancy_first_free_skips_taken_offsets() {
        let mut set = Occupancy::new(130);
        assert_eq!(set.first_free(), Some(0));
        for offset in 0..70 {
            set.set(offset);
        }
        assert_eq!(set.first_free(), Some(70));
        set.clear(3);
        assert_eq!(set.first_free(), Some(3));
        for offset in 0..130 {
            set.set(offset);
        }
        assert_eq!(set.first_free(), None);
        assert_eq!(set.count(), 130);
    }

    #[test]
    fn quota_check_names_the_exceeded_limit() {
        let quota = Quota {
            max_vms: 10,
            max_clusters: 3,
            max_nodes_per_cluster: 10,
            max_ips: 32,
            max_vcpus: 40,
            max_memory_mb: 1 << 20,
            max_disk_gb: 4000,
        };
        let usage = Usage { vms: 9, vcpus: 18, ..Usage::default() };
        assert!(quota.check(&usage, &Usage { vms: 1, vcpus: 2, ..Usage::default() }).is_ok());
        match quota.check(&usage, &Usage { vms: 2, vcpus: 4, ..Usage::default() }) {
            Err(Error::QuotaExceeded { resource: "vms", used: 9, requested: 11, limit: 10 }) => {}
            other => panic!("unexpected {other:?}"),
        }
        let overridden = quota.with_override(&QuotaOverride { max_vms: Some(20), ..QuotaOverride::default() });
        assert_eq!(overridden.max_vms, 20);
        assert_eq!(overridden.max_ips, 32);
    }

    #[test]
    fn token_validity_and_redaction() {
        let at = now();
        let token = ApiToken {
            id: Uuid::now_v7(),
            owner: Username::parse("alice").unwrap(),
            name: "ci".into(),
            scope: TokenScope::User,
            secret_hash: ApiToken::hash_secret("bsp_secret"),
            created_at: at,
            expires_at: Some(at + chrono::Duration::hours(1)),
            revoked_at: None,
            last_used_at: None,
        };
        assert!(token.is_valid_at(at));
        assert!(!token.is_valid_at(at + chrono::Duration::hours(2)));
        assert!(!format!("{token:?}").contains(&token.secret_hash));
        assert_eq!(ApiToken::hash_secret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn operation_log_tail_is_bounded() {
        let mut op = Operation::new(
            OperationKind::CreateVm,
            Username::parse("alice").unwrap(),
            ResourceRef { kind: ResourceKind::Vm, id: Uuid::now_v7(), name: "web".into() },
            "alice",
            &["provision"],
        );
        op.append_log((0..120).map(|line| line.to_string()));
        assert_eq!(op.log_tail.len(), Operation::LOG_TAIL_LINES);
        assert_eq!(op.log_tail.last().unwrap(), "119");
        assert_eq!(VmState::parse("running").unwrap(), VmState::Running);
        assert!(VmState::parse("bogus").unwrap_err().to_string().contains("running"));
    }
}
