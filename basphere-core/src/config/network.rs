//! The IPAM's pools (`network.*`): IPv4 networks through `ipnetwork`, each error naming the key.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnetwork::{IpNetworkError, Ipv4Network};

use super::check_catalog_key;
use super::raw::RawNetwork;
use crate::error::{Error, Result};

/// An IPv4 network written `a.b.c.d/n`, its base address aligned to its prefix (an
/// [`Ipv4Network`] whose address is its network address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr(Ipv4Network);

impl Cidr {
    /// The network's first address.
    pub fn base(&self) -> Ipv4Addr {
        self.0.network()
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix()
    }

    /// Its addresses, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix_len())
    }

    pub fn first(&self) -> u32 {
        u32::from(self.0.network())
    }

    pub fn last(&self) -> u32 {
        u32::from(self.0.broadcast())
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        self.0.contains(address)
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.0.overlaps(other.0)
    }

    pub fn netmask(&self) -> Ipv4Addr {
        self.0.mask()
    }

    pub fn network(&self) -> Ipv4Network {
        self.0
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `a.b.c.d/n` only: neither a bare address nor a netmask after the slash (which
    /// `Ipv4Network` also reads), and the base address aligned.
    fn from_str(value: &str) -> std::result::Result<Self, String> {
        let (base, prefix) =
            value.split_once('/').ok_or_else(|| format!("{value:?} is not a CIDR like 10.254.0.0/21"))?;
        if prefix.contains('.') {
            return Err(format!("{prefix:?} is not a prefix length 0-32"));
        }
        let network = Ipv4Network::from_str(value).map_err(|error| match error {
            IpNetworkError::InvalidAddr(_) => format!("{base:?} is not an IPv4 address"),
            IpNetworkError::InvalidPrefix => format!("{prefix:?} is not a prefix length 0-32"),
            other => format!("{value:?} is not a CIDR like 10.254.0.0/21: {other}"),
        })?;
        if network.ip() != network.network() {
            return Err(format!("{value} is not aligned: the base address must be {}", network.network()));
        }
        Ok(Cidr(network))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base(), self.prefix_len())
    }
}

/// One address pool of the IPAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    pub name: String,
    pub cidr: Cidr,
    pub gateway: Ipv4Addr,
    pub reserved: BTreeSet<Ipv4Addr>,
    pub block_size: u32,
}

impl PoolConfig {
    /// Checks the pool's own rules; `key` is where it was configured, for error messages.
    pub fn validate(&self, key: &str) -> Result<()> {
        let size = self.cidr.size();
        if !self.block_size.is_power_of_two() || self.block_size < 4 || u64::from(self.block_size) > size / 2 {
            return Err(Error::invalid(
                format!("{key}.block_size"),
                format!(
                    "{} is not accepted: use a power of two from 4 up to half the pool ({} addresses in {})",
                    self.block_size, size, self.cidr
                ),
            ));
        }
        if !self.cidr.contains(self.gateway) {
            return Err(Error::invalid(format!("{key}.gateway"), format!("{} is outside {}", self.gateway, self.cidr)));
        }
        if let Some(outside) = self.reserved.iter().find(|address| !self.cidr.contains(**address)) {
            return Err(Error::invalid(format!("{key}.reserved"), format!("{outside} is outside {}", self.cidr)));
        }
        Ok(())
    }

    /// Whether an address may never be leased: network, broadcast, gateway, reserved.
    pub fn is_unleasable(&self, address: Ipv4Addr) -> bool {
        let raw = u32::from(address);
        raw == self.cidr.first()
            || raw == self.cidr.last()
            || address == self.gateway
            || self.reserved.contains(&address)
    }
}

/// What the guests' cloud-init network configuration gets besides the address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestNetworkConfig {
    pub mtu: u32,
    pub dns: Vec<Ipv4Addr>,
}

pub(super) fn pools_from(network: &RawNetwork) -> Result<Vec<PoolConfig>> {
    let cidr_text = network.cidr.clone().unwrap_or_else(|| "10.254.0.0/21".into());
    let cidr: Cidr = cidr_text.parse().map_err(|message| Error::invalid("network.cidr", message))?;
    if cidr.prefix_len() > 29 {
        return Err(Error::invalid("network.cidr", format!("{cidr} is too small: use a prefix length of 29 or less")));
    }
    if let Some(prefix) = network.prefix_length {
        if prefix != cidr.prefix_len() {
            return Err(Error::invalid(
                "network.prefix_length",
                format!("{prefix} disagrees with network.cidr {cidr}; leave it out or use {}", cidr.prefix_len()),
            ));
        }
    }
    if let Some(netmask) = network.netmask {
        if netmask != cidr.netmask() {
            return Err(Error::invalid(
                "network.netmask",
                format!("{netmask} disagrees with network.cidr {cidr}; leave it out or use {}", cidr.netmask()),
            ));
        }
    }
    let default_pool = PoolConfig {
        name: "default".into(),
        cidr,
        gateway: network.gateway.unwrap_or_else(|| Ipv4Addr::from(cidr.first() + 1)),
        reserved: network.reserved.iter().flatten().copied().collect(),
        block_size: network.block_size.unwrap_or(32),
    };
    default_pool.validate("network")?;
    let mut pools = vec![default_pool];
    for (index, raw) in network.pools.iter().enumerate() {
        let at = format!("network.pools[{index}]");
        let name = raw.name.clone().ok_or_else(|| Error::invalid(format!("{at}.name"), "is required"))?;
        check_catalog_key(&format!("{at}.name"), &name)?;
        if pools.iter().any(|pool| pool.name == name) {
            return Err(Error::invalid(format!("{at}.name"), format!("{name:?} is used by another pool")));
        }
        let cidr: Cidr = raw
            .cidr
            .as_deref()
            .ok_or_else(|| Error::invalid(format!("{at}.cidr"), "is required"))?
            .parse()
            .map_err(|message| Error::invalid(format!("{at}.cidr"), message))?;
        let pool = PoolConfig {
            name,
            cidr,
            gateway: raw.gateway.unwrap_or_else(|| Ipv4Addr::from(cidr.first() + 1)),
            reserved: raw.reserved.iter().copied().collect(),
            block_size: raw.block_size.unwrap_or(pools[0].block_size),
        };
        pool.validate(&at)?;
        if let Some(other) = pools.iter().find(|other| other.cidr.overlaps(&pool.cidr)) {
            return Err(Error::invalid(
                format!("{at}.cidr"),
                format!("{} overlaps pool {:?} ({})", pool.cidr, other.name, other.cidr),
            ));
        }
        pools.push(pool);
    }
    Ok(pools)
}
