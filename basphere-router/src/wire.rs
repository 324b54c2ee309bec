//! What crosses the SSH connection between the server ([`crate::SshRouter`]) and the router
//! host's helper ([`crate::helper`]): one JSON request on the helper's standard input, one JSON
//! answer on its standard output, each on one line.
//!
//! - `{"op":"ensure","spec":{"tenant":"alice","lans":[{"name":"lan1","vlan":2001,"gateway":"10.0.1.1/24"}],"mtu":1450,"wan_address":"192.0.2.11/24","wan_gateway":"192.0.2.1"}}`
//!   → `{"status":{"wan_address":"192.0.2.11/24","lans":[["lan1","10.0.1.1/24"]],"rules":true}}`
//! - `{"op":"status","tenant":"alice"}` → `{"status":{...}}`, or `{}` when the host has nothing
//!   of alice's
//! - `{"op":"remove","tenant":"alice"}` → `{}`
//! - `{"op":"ping"}` → `{"helper":"basphere-router-helper 0.1.0"}`
//! - any failure → `{"error":{"kind":"invalid-input","field":"spec.lans[0].vlan","message":"..."}}`,
//!   the kind being core's [`Error::kind`].
//!
//! Names and addresses travel as text and the numbers wider than they may be, so that the helper
//! checks every field itself ([`WireSpec::check`]) and names the one that is wrong.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use basphere_core::error::{Error, Result};
use basphere_core::router::{RouterStatus, TenantLan, TenantRouterSpec};
use basphere_core::validate::Username;
use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::rules::WAN;

/// The most LANs one tenant's router takes.
pub const MAX_LANS: usize = 64;

/// One request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Ensure {
        spec: WireSpec,
    },
    Status {
        tenant: String,
    },
    Remove {
        tenant: String,
    },
    /// Whether the helper answers and its configuration holds (check-config).
    Ping,
}

/// A [`TenantRouterSpec`] as it crosses the connection.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireSpec {
    pub tenant: String,
    pub lans: Vec<WireLan>,
    pub mtu: u64,
    pub wan_address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wan_gateway: Option<String>,
}

/// A [`TenantLan`] as it crosses the connection.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireLan {
    pub name: String,
    pub vlan: u64,
    pub gateway: String,
}

/// A [`RouterStatus`] as it crosses the connection.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireStatus {
    pub wan_address: Option<Ipv4Network>,
    pub lans: Vec<(String, Option<Ipv4Network>)>,
    pub rules: bool,
}

/// An error as it crosses the connection: its kind, the field for invalid input, what was wrong.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireError {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

/// One answer: at most one of its fields.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<WireStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helper: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WireError>,
}

impl From<&TenantRouterSpec> for WireSpec {
    fn from(spec: &TenantRouterSpec) -> Self {
        WireSpec {
            tenant: spec.tenant.to_string(),
            lans: spec
                .lans
                .iter()
                .map(|lan| WireLan { name: lan.name.clone(), vlan: lan.vlan.into(), gateway: lan.gateway.to_string() })
                .collect(),
            mtu: spec.mtu.into(),
            wan_address: spec.wan_address.to_string(),
            wan_gateway: spec.wan_gateway.map(|gateway| gateway.to_string()),
        }
    }
}

impl From<RouterStatus> for WireStatus {
    fn from(status: RouterStatus) -> Self {
        WireStatus { wan_address: status.wan_address, lans: status.lans, rules: status.rules }
    }
}

impl From<WireStatus> for RouterStatus {
    fn from(status: WireStatus) -> Self {
        RouterStatus { wan_address: status.wan_address, lans: status.lans, rules: status.rules }
    }
}

impl WireError {
    /// `error` as it crosses: its kind, and its own words without the kind's prefix.
    pub fn from_error(error: &Error) -> Self {
        let (field, message) = match error {
            Error::InvalidInput { field, message } => (Some(field.clone()), message.clone()),
            Error::NotFound { name, .. } | Error::AlreadyExists { name, .. } => (None, name.clone()),
            Error::Conflict(message)
            | Error::Timeout(message)
            | Error::NotSupported(message)
            | Error::Forbidden(message)
            | Error::Exhausted(message) => (None, message.clone()),
            Error::Backend { source, .. } => (None, source.to_string()),
            other => (None, other.to_string()),
        };
        WireError { kind: error.kind().to_owned(), field, message }
    }
}

impl Response {
    pub fn failure(error: &Error) -> Self {
        Response { error: Some(WireError::from_error(error)), ..Response::default() }
    }
}

/// A tenant name by core's rule for account names, named `field` when it is not one.
pub fn tenant(field: &str, value: &str) -> Result<Username> {
    Username::parse(value).map_err(|error| match error {
        Error::InvalidInput { message, .. } => Error::invalid(field, message),
        other => other,
    })
}

/// An address with its prefix (`10.0.1.1/24`) that is a host of its subnet (not the network's
/// or the broadcast address, a prefix of 8 to 30 bits).
fn host_address(field: &str, value: &str) -> Result<Ipv4Network> {
    let network: Ipv4Network = value.split_once('/').and_then(|_| value.parse().ok()).ok_or_else(|| {
        Error::invalid(field, format!("{value:?} is not an IPv4 address with its prefix, like 10.0.1.1/24"))
    })?;
    if !(8..=30).contains(&network.prefix()) {
        return Err(Error::invalid(field, format!("{value}: the prefix must be 8 to 30 bits")));
    }
    if network.ip() == network.network() || network.ip() == network.broadcast() {
        return Err(Error::invalid(field, format!("{value} is its subnet's network or broadcast address, not a host")));
    }
    Ok(network)
}

impl WireSpec {
    /// The spec, every field checked by the rules a router needs (the helper does not trust its
    /// caller): the tenant an account name (`Username::parse`); 1 to [`MAX_LANS`] LANs, each an
    /// interface name other than `wan` and `lo`, a VLAN id of 1-4094, both used once, a gateway
    /// that is a host address, no two subnets overlapping; an MTU of 576-9000; the WAN address a
    /// host address apart from every LAN; the WAN gateway, when given, another host of the WAN.
    pub fn check(self) -> Result<TenantRouterSpec> {
        let tenant = tenant("spec.tenant", &self.tenant)?;
        if self.lans.is_empty() || self.lans.len() > MAX_LANS {
            return Err(Error::invalid(
                "spec.lans",
                format!("{} LANs: a router takes 1 to {MAX_LANS}", self.lans.len()),
            ));
        }
        let (mut names, mut vlans) = (BTreeSet::new(), BTreeSet::new());
        let mut lans: Vec<TenantLan> = Vec::with_capacity(self.lans.len());
        for (index, lan) in self.lans.into_iter().enumerate() {
            let at = |key: &str| format!("spec.lans[{index}].{key}");
            if !crate::interface_name(&lan.name) || lan.name == WAN || lan.name == "lo" {
                return Err(Error::invalid(
                    at("name"),
                    format!("{:?} is not a LAN name (1 to 15 letters, digits, - or _; not {WAN} or lo)", lan.name),
                ));
            }
            if !names.insert(lan.name.clone()) {
                return Err(Error::invalid(at("name"), format!("{} names two LANs", lan.name)));
            }
            let vlan = match u16::try_from(lan.vlan) {
                Ok(vlan @ 1..=4094) => vlan,
                _ => return Err(Error::invalid(at("vlan"), format!("{} is not a VLAN id (1-4094)", lan.vlan))),
            };
            if !vlans.insert(vlan) {
                return Err(Error::invalid(at("vlan"), format!("VLAN {vlan} is given to two LANs")));
            }
            let gateway = host_address(&at("gateway"), &lan.gateway)?;
            if let Some(other) = lans.iter().find(|other| other.gateway.overlaps(gateway)) {
                return Err(Error::invalid(
                    at("gateway"),
                    format!("{gateway} overlaps {} ({})", other.name, other.gateway),
                ));
            }
            lans.push(TenantLan { name: lan.name, vlan, gateway });
        }
        let mtu = match u16::try_from(self.mtu) {
            Ok(mtu @ 576..=9000) => mtu,
            _ => return Err(Error::invalid("spec.mtu", format!("{} is outside 576-9000", self.mtu))),
        };
        let wan_address = host_address("spec.wan_address", &self.wan_address)?;
        if let Some(lan) = lans.iter().find(|lan| lan.gateway.overlaps(wan_address)) {
            return Err(Error::invalid(
                "spec.wan_address",
                format!("{wan_address} overlaps {} ({})", lan.name, lan.gateway),
            ));
        }
        let wan_gateway = match self.wan_gateway {
            None => None,
            Some(text) => {
                let gateway: Ipv4Addr = text
                    .parse()
                    .map_err(|_| Error::invalid("spec.wan_gateway", format!("{text:?} is not an IPv4 address")))?;
                if !wan_address.contains(gateway) || gateway == wan_address.ip() || gateway == wan_address.broadcast() {
                    return Err(Error::invalid(
                        "spec.wan_gateway",
                        format!("{gateway} is not another host of the WAN {wan_address}"),
                    ));
                }
                Some(gateway)
            }
        };
        Ok(TenantRouterSpec { tenant, lans, mtu, wan_address, wan_gateway })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basphere_core::testing::router::spec;
    use serde_json::json;

    fn checked(change: impl FnOnce(&mut serde_json::Value)) -> Result<TenantRouterSpec> {
        let mut value = serde_json::to_value(WireSpec::from(&spec("alice", [2001, 2002], "192.0.2.11/24"))).unwrap();
        change(&mut value);
        serde_json::from_value::<WireSpec>(value).unwrap().check()
    }

    #[test]
    fn a_spec_crosses_unchanged() {
        let mut original = spec("alice", [2001, 2002], "192.0.2.11/24");
        original.wan_gateway = Some("192.0.2.1".parse().unwrap());
        let line = serde_json::to_string(&Request::Ensure { spec: WireSpec::from(&original) }).unwrap();
        assert!(line.starts_with(r#"{"op":"ensure","spec":{"tenant":"alice""#), "{line}");
        let Request::Ensure { spec } = serde_json::from_str(&line).unwrap() else { panic!("an ensure") };
        assert_eq!(spec.check().unwrap(), original);
    }

    #[test]
    fn every_field_is_checked_again_and_named() {
        for (change, field, said) in [
            (json!({"tenant": "root"}), "spec.tenant", "reserved"),
            (json!({"tenant": "../etc"}), "spec.tenant", "not valid"),
            (json!({"lans": []}), "spec.lans", "1 to 64"),
            (json!({"mtu": 70000}), "spec.mtu", "576-9000"),
            (json!({"mtu": 100}), "spec.mtu", "576-9000"),
            (json!({"wan_address": "192.0.2.11"}), "spec.wan_address", "with its prefix"),
            (json!({"wan_address": "192.0.2.0/24"}), "spec.wan_address", "network or broadcast"),
            (json!({"wan_address": "10.0.1.200/16"}), "spec.wan_address", "overlaps lan1"),
            (json!({"wan_gateway": "198.51.100.1"}), "spec.wan_gateway", "not another host"),
            (json!({"wan_gateway": "192.0.2.11"}), "spec.wan_gateway", "not another host"),
            (json!({"wan_gateway": "gw"}), "spec.wan_gateway", "not an IPv4 address"),
        ] {
            let error = checked(|value| {
                for (key, new) in change.as_object().unwrap() {
                    value[key] = new.clone();
                }
            })
            .expect_err(&change.to_string());
            assert!(matches!(&error, Error::InvalidInput { field: f, .. } if f == field), "{change}: {error}");
            assert!(error.to_string().contains(said), "{change}: {error}");
        }
        for (key, new, field, said) in [
            ("vlan", json!(0), "spec.lans[1].vlan", "1-4094"),
            ("vlan", json!(4095), "spec.lans[1].vlan", "1-4094"),
            ("vlan", json!(2001), "spec.lans[1].vlan", "two LANs"),
            ("name", json!("wan"), "spec.lans[1].name", "not a LAN name"),
            ("name", json!("lan1"), "spec.lans[1].name", "two LANs"),
            ("name", json!("a b; reboot"), "spec.lans[1].name", "not a LAN name"),
            ("gateway", json!("10.0.1.2/24"), "spec.lans[1].gateway", "overlaps lan1"),
            ("gateway", json!("10.0.2.255/24"), "spec.lans[1].gateway", "broadcast"),
            ("gateway", json!("10.0.2.1/31"), "spec.lans[1].gateway", "8 to 30"),
        ] {
            let error = checked(|value| value["lans"][1][key] = new.clone()).expect_err(key);
            assert!(matches!(&error, Error::InvalidInput { field: f, .. } if f == field), "{key} {new}: {error}");
            assert!(error.to_string().contains(said), "{key} {new}: {error}");
        }
    }

    #[test]
    fn an_error_keeps_its_kind_and_field() {
        let wire = WireError::from_error(&Error::invalid("spec.mtu", "100 is outside 576-9000"));
        assert_eq!((wire.kind.as_str(), wire.field.as_deref()), ("invalid-input", Some("spec.mtu")));
        assert_eq!(wire.message, "100 is outside 576-9000");
        let wire = WireError::from_error(&Error::Timeout("`ip` did not finish".into()));
        assert_eq!((wire.kind.as_str(), wire.message.as_str()), ("timeout", "`ip` did not finish"));
    }
}
