//! Tenant networks (`networks.*`): `flat`, every VM and cluster on the one shared network (the
//! default, and the original's), or `tenant`, a network per tenant behind its own router, its LANs
//! on VLANs of the tenant's own, the same subnets in every tenant.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use serde::Deserialize;

use super::network::Cidr;
use super::within;
use crate::error::{Error, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNetworks {
    mode: Option<String>,
    vlan_range: Option<String>,
    distributed_switch: Option<String>,
    wan_port_group: Option<String>,
    port_group_prefix: Option<String>,
    wan: Option<RawWan>,
    lans: Option<Vec<RawLan>>,
    mtu: Option<u32>,
    router: Option<String>,
    /// The `linux` router's own settings, parsed by the router's crate.
    linux: serde_yaml::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWan {
    cidr: String,
    gateway: Option<Ipv4Addr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLan {
    name: String,
    cidr: String,
    gateway: Option<Ipv4Addr>,
}

/// How VMs and clusters are networked.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum NetworksConfig {
    /// Every VM and cluster on the one shared network (`vsphere.network`, `network.*`).
    #[default]
    Flat,
    /// A network per tenant behind its own router.
    Tenant(TenantNetworks),
}

/// `networks.mode: tenant`.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantNetworks {
    /// The VLAN ids tenants' LANs are given, one per LAN (`networks.vlan_range`).
    pub vlans: RangeInclusive<u16>,
    /// The distributed switch the tenants' port groups are made on.
    pub distributed_switch: String,
    /// The port group of the WAN side, where the routers' WAN ports are.
    pub wan_port_group: String,
    /// What every tenant LAN's port group is named after: `<prefix>-<account>-<lan>`
    /// (`networks.port_group_prefix`, default `basphere`).
    pub port_group_prefix: String,
    /// The WAN side's network: the routers' WAN addresses come from it.
    pub wan: WanNetwork,
    /// The LANs every tenant gets, the same subnets in each.
    pub lans: Vec<LanNetwork>,
    /// The MTU of every tenant LAN.
    pub mtu: u16,
    pub router: RouterKind,
    /// The router backend's own section (`networks.<router>`), as written, for its crate to
    /// parse (null when absent).
    pub router_section: serde_yaml::Value,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WanNetwork {
    pub cidr: Cidr,
    pub gateway: Option<Ipv4Addr>,
}

/// One LAN of every tenant: its name on the router, its subnet, its gateway (the router).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanNetwork {
    pub name: String,
    pub cidr: Cidr,
    pub gateway: Ipv4Addr,
}

/// Which tenant router runs the tenants' networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterKind {
    /// A software router on a Linux host: a namespace and an nftables table per tenant.
    Linux,
}

/// The seed's two LANs.
fn default_lans() -> Vec<LanNetwork> {
    let lan = |name: &str, cidr: &str, gateway: [u8; 4]| LanNetwork {
        name: name.into(),
        cidr: cidr.parse().expect("a CIDR"),
        gateway: Ipv4Addr::from(gateway),
    };
    vec![lan("lan1", "10.0.1.0/24", [10, 0, 1, 1]), lan("lan2", "10.0.2.0/24", [10, 0, 2, 1])]
}

/// A name that is neither empty nor longer than 80 characters, without control characters.
fn vsphere_name(key: &str, value: Option<String>) -> Result<String> {
    match value {
        Some(name) if !name.trim().is_empty() && name.len() <= 80 && !name.chars().any(char::is_control) => Ok(name),
        Some(name) => Err(Error::invalid(key, format!("{name:?} is not a vSphere name (1-80 printable characters)"))),
        None => Err(Error::invalid(key, "is required with networks.mode: tenant")),
    }
}

/// `networks.port_group_prefix`: 1-32 lower-case letters, digits and inner dashes, so that
/// `<prefix>-<account>-<lan>` is a vSphere name (at most 80 characters) for every account.
fn port_group_prefix(value: Option<String>) -> Result<String> {
    let Some(prefix) = value else { return Ok("basphere".into()) };
    let ok = (1..=32).contains(&prefix.len())
        && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !prefix.starts_with('-')
        && !prefix.ends_with('-');
    if !ok {
        return Err(Error::invalid(
            "networks.port_group_prefix",
            format!("{prefix:?} is not accepted: 1-32 lower-case letters, digits and inner dashes, such as basphere"),
        ));
    }
    Ok(prefix)
}

impl TenantNetworks {
    /// The name of `owner`'s port group of the LAN `lan`: `<prefix>-<owner>-<lan>`.
    pub fn port_group(&self, owner: &str, lan: &str) -> String {
        format!("{}-{owner}-{lan}", self.port_group_prefix)
    }
}

fn vlan_range(value: Option<String>) -> Result<RangeInclusive<u16>> {
    let key = "networks.vlan_range";
    let Some(value) = value else {
        return Err(Error::invalid(key, "is required with networks.mode: tenant, e.g. 2001-2999"));
    };
    let bad = || Error::invalid(key, format!("{value:?} is not a range of VLAN ids like 2001-2999 (1-4094)"));
    let (first, last) = value.split_once('-').ok_or_else(bad)?;
    let (first, last): (u16, u16) = (first.trim().parse().map_err(|_| bad())?, last.trim().parse().map_err(|_| bad())?);
    if first == 0 || last > 4094 || first > last {
        return Err(bad());
    }
    if last - first < 1 {
        return Err(Error::invalid(key, format!("{value:?} holds fewer than the two VLAN ids one tenant's LANs need")));
    }
    Ok(first..=last)
}

fn cidr(key: &str, value: &str) -> Result<Cidr> {
    let cidr: Cidr = value.parse().map_err(|error: String| Error::invalid(key, error))?;
    if cidr.prefix_len() > 30 {
        return Err(Error::invalid(key, format!("{value} is too small: use a /30 or larger")));
    }
    Ok(cidr)
}

/// A gateway inside `cidr`, neither its network nor its broadcast address.
fn gateway(key: &str, cidr: &Cidr, gateway: Ipv4Addr) -> Result<Ipv4Addr> {
    let address = u32::from(gateway);
    if !cidr.contains(gateway) || address == cidr.first() || address == cidr.last() {
        return Err(Error::invalid(key, format!("{gateway} is not a host address of {}", cidr.network())));
    }
    Ok(gateway)
}

fn lans(raw: Option<Vec<RawLan>>) -> Result<Vec<LanNetwork>> {
    let Some(raw) = raw else { return Ok(default_lans()) };
    if raw.is_empty() || raw.len() > 4 {
        return Err(Error::invalid("networks.lans", format!("{} LANs given; 1-4 are accepted", raw.len())));
    }
    let mut names = BTreeSet::new();
    let mut lans: Vec<LanNetwork> = Vec::new();
    for (index, lan) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("networks.lans[{index}].{field}");
        let name_ok = (1..=15).contains(&lan.name.len())
            && lan.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && lan.name != "wan";
        if !name_ok || !names.insert(lan.name.clone()) {
            return Err(Error::invalid(
                key("name"),
                format!(
                    "{:?} is not accepted: 1-15 lower-case letters and digits, not wan, each LAN its own",
                    lan.name
                ),
            ));
        }
        let cidr = cidr(&key("cidr"), &lan.cidr)?;
        if let Some(other) = lans.iter().find(|other| other.cidr.overlaps(&cidr)) {
            return Err(Error::invalid(
                key("cidr"),
                format!("{} overlaps {}'s {}", lan.cidr, other.name, other.cidr.network()),
            ));
        }
        let wanted = lan.gateway.unwrap_or_else(|| Ipv4Addr::from(cidr.first() + 1));
        let gateway = gateway(&key("gateway"), &cidr, wanted)?;
        lans.push(LanNetwork { name: lan.name, cidr, gateway });
    }
    Ok(lans)
}

/// Parses `networks.*`.
pub(super) fn networks(raw: RawNetworks) -> Result<NetworksConfig> {
    match raw.mode.as_deref().unwrap_or("flat") {
        "flat" => {
            let given = [
                ("vlan_range", raw.vlan_range.is_some()),
                ("distributed_switch", raw.distributed_switch.is_some()),
                ("wan_port_group", raw.wan_port_group.is_some()),
                ("port_group_prefix", raw.port_group_prefix.is_some()),
                ("wan", raw.wan.is_some()),
                ("lans", raw.lans.is_some()),
                ("mtu", raw.mtu.is_some()),
                ("router", raw.router.is_some()),
                ("linux", !raw.linux.is_null()),
            ];
            match given.iter().find(|(_, given)| *given) {
                Some((key, _)) => Err(Error::invalid(
                    format!("networks.{key}"),
                    "applies only to networks.mode: tenant (the mode is flat)",
                )),
                None => Ok(NetworksConfig::Flat),
            }
        }
        "tenant" => {
            let vlans = vlan_range(raw.vlan_range)?;
            let distributed_switch = vsphere_name("networks.distributed_switch", raw.distributed_switch)?;
            let wan_port_group = vsphere_name("networks.wan_port_group", raw.wan_port_group)?;
            let port_group_prefix = port_group_prefix(raw.port_group_prefix)?;
            let Some(wan) = raw.wan else {
                return Err(Error::invalid(
                    "networks.wan",
                    "is required with networks.mode: tenant: {cidr: ..., gateway: ...}",
                ));
            };
            let wan_cidr = cidr("networks.wan.cidr", &wan.cidr)?;
            let wan = WanNetwork {
                gateway: wan.gateway.map(|address| gateway("networks.wan.gateway", &wan_cidr, address)).transpose()?,
                cidr: wan_cidr,
            };
            let lans = lans(raw.lans)?;
            if let Some(lan) = lans.iter().find(|lan| lan.cidr.overlaps(&wan.cidr)) {
                return Err(Error::invalid(
                    "networks.wan.cidr",
                    format!("overlaps the LAN {} ({})", lan.name, lan.cidr.network()),
                ));
            }
            let mtu = within("networks.mtu", raw.mtu.unwrap_or(1450), 576..=9000)? as u16;
            let router = match raw.router.as_deref().unwrap_or("linux") {
                "linux" => RouterKind::Linux,
                other => {
                    return Err(Error::invalid(
                        "networks.router",
                        format!("{other:?} is not a router; accepted: linux"),
                    ))
                }
            };
            Ok(NetworksConfig::Tenant(TenantNetworks {
                vlans,
                distributed_switch,
                wan_port_group,
                port_group_prefix,
                wan,
                lans,
                mtu,
                router,
                router_section: raw.linux,
            }))
        }
        other => Err(Error::invalid("networks.mode", format!("{other:?} is not a mode; accepted: flat, tenant"))),
    }
}
