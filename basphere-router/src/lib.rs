//! Basphere's tenant routers. [`LinuxRouter`] (`networks.router: linux`) is a software router on
//! a Linux host: a network namespace per tenant (`<prefix><tenant>`), the tenant's LANs as
//! bridges in it with the router's address on each (the LANs' gateway) and the tenant's MTU, a
//! WAN port (a veth pair whose outer end joins the WAN bridge of the router host), forwarding on,
//! and the tenant's nftables table ([`rules`]). Every tenant has its own namespace and table, so
//! a packet's cost does not grow with the number of tenants, one tenant's change touches nothing
//! of another's, and two tenants hold the same LAN addresses without meeting.
//!
//! In production the LAN bridges are joined by VLAN interfaces on the router host's trunk
//! (`networks.linux.trunk`, the interface that carries the tenants' VLANs tagged from the
//! distributed switch): each LAN's bridge holds `t<vlan id>`, so the VMs on the LAN's port group
//! reach their gateway. In tests, by the test's own "VMs" (namespaces with a veth on the bridge)
//! and by a trunk the test makes.
//!
//! [`router`] makes the router `networks.linux` names: [`LinuxRouter`] on the server's own host,
//! or, with `networks.linux.ssh`, [`SshRouter`] for a separate router host.
//!
//! # The router host
//!
//! The server runs unprivileged (under systemd's `NoNewPrivileges`) and the routers need root,
//! so on a router host of its own the routers are made by `basphere-router-helper` ([`helper`]),
//! which the server reaches with the system's `ssh` client, one call per session: one JSON
//! request on the helper's standard input, one JSON answer on its standard output ([`wire`]).
//! The helper checks every field of a request again (core's rules for the tenant's name, VLAN
//! ids 1-4094, the MTU, the addresses) and takes its router settings from its own file, never
//! from the request.
//!
//! The router host needs:
//!
//! - root for the helper, `ip` (iproute2) and `nft` (nftables), and a kernel with network
//!   namespaces, veth, bridges and nftables' NAT;
//! - the WAN bridge (`br-wan` unless its file says otherwise) in its own namespace, joined by
//!   the host's interface on the WAN;
//! - the trunk from the distributed switch (`trunk`), carrying the VLAN ids of
//!   `networks.vlan_range` tagged, and a kernel with 802.1Q (`modprobe 8021q`): the router joins
//!   each LAN's bridge to the trunk's VLAN of the LAN's id;
//! - the helper at `/usr/lib/basphere/basphere-router-helper` and its file,
//!   `/etc/basphere/router.yaml`, holding the `networks.linux` keys of a router on this host
//!   (not `ssh`), as the server's file would:
//!
//!   ```yaml
//!   networks:
//!     linux:
//!       wan_bridge: br-wan        # the default
//!       trunk: bond0              # the tenants' VLANs, tagged
//!       namespace_prefix: bsp-    # the default
//!       timeout_seconds: 10       # for one `ip` or `nft`; the default
//!   ```
//!
//! - the server's public key in root's `~/.ssh/authorized_keys`, with the helper as its forced
//!   command and nothing else allowed (whatever command a client asks for, the helper runs, and
//!   it ignores `SSH_ORIGINAL_COMMAND`):
//!
//!   ```text
//!   command="/usr/lib/basphere/basphere-router-helper --config /etc/basphere/router.yaml",restrict ssh-ed25519 AAAA... basphere-server
//!   ```
//!
//!   and sshd allowing root to log in with a key for a forced command alone
//!   (`PermitRootLogin forced-commands-only`).
//!
//! The server's side, in its configuration (its key readable by its account alone, mode 0600;
//! the router host's key from `ssh-keyscan -p 22 router1.example.org`):
//!
//! ```yaml
//! networks:
//!   linux:
//!     ssh:
//!       host: router1.example.org
//!       port: 22                  # the default
//!       user: root                # the default
//!       identity_file: /etc/basphere/router-ssh/id_ed25519
//!       known_hosts_file: /etc/basphere/router-ssh/known_hosts
//!       timeout_seconds: 120      # for one call; the default
//! ```
//!
//! `check-config` can ask the helper whether it answers and its WAN bridge is there ([`check`]).

mod command;
pub mod helper;
pub mod rules;
mod settings;
mod ssh;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use basphere_core::error::{Error, Message, Result};
use basphere_core::router::{RouterStatus, TenantRouter, TenantRouterSpec};
use basphere_core::validate::Username;
use ipnetwork::Ipv4Network;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::rules::WAN;
pub use crate::settings::{RouterSettings, SshRouterSettings};
pub use crate::ssh::SshRouter;

/// The backend name in errors.
pub(crate) const BACKEND: &str = "linux router";

/// Where a [`LinuxRouter`] makes its namespaces and what it joins them to.
#[derive(Clone, Debug)]
pub struct LinuxRouterSettings {
    /// Every namespace this router makes is `<prefix><tenant>`; it touches no other.
    pub namespace_prefix: String,
    /// The namespace holding the WAN bridge: `None` for the router host's own.
    pub host_namespace: Option<String>,
    /// The bridge on the WAN side that every tenant's WAN port joins.
    pub wan_bridge: String,
    /// The interface carrying the tenants' VLANs tagged (in the host namespace): each LAN's
    /// bridge is joined by a VLAN interface of it for the LAN's id. `None`: the LANs are joined
    /// otherwise (tests).
    pub trunk: Option<String>,
    /// How long one `ip` or `nft` may take.
    pub timeout: Duration,
}

/// The `linux` tenant router.
pub struct LinuxRouter {
    settings: LinuxRouterSettings,
}

/// One interface as `ip -j addr show` lists it.
#[derive(Debug, Deserialize)]
struct Link {
    ifname: String,
    #[serde(default)]
    addr_info: Vec<Address>,
}

#[derive(Debug, Deserialize)]
struct Address {
    family: String,
    local: String,
    prefixlen: u8,
}

impl Link {
    fn ipv4(&self) -> Vec<Ipv4Network> {
        self.addr_info
            .iter()
            .filter(|address| address.family == "inet")
            .filter_map(|address| Ipv4Network::new(address.local.parse().ok()?, address.prefixlen).ok())
            .collect()
    }
}

/// A name the kernel takes for an interface: 1 to 15 letters, digits, `-` or `_`.
pub(crate) fn interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl LinuxRouter {
    pub fn new(settings: LinuxRouterSettings) -> Result<LinuxRouter> {
        if !interface_name(&settings.wan_bridge) {
            return Err(Error::invalid(
                "networks.linux.wan_bridge",
                format!("{:?} is not an interface name (1 to 15 letters, digits, - or _)", settings.wan_bridge),
            ));
        }
        if let Some(trunk) = settings.trunk.as_deref().filter(|trunk| !interface_name(trunk)) {
            return Err(Error::invalid(
                "networks.linux.trunk",
                format!("{trunk:?} is not an interface name (1 to 15 letters, digits, - or _)"),
            ));
        }
        let prefix_ok = !settings.namespace_prefix.is_empty()
            && settings.namespace_prefix.len() <= 32
            && settings.namespace_prefix.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !prefix_ok {
            return Err(Error::invalid(
                "networks.linux.namespace_prefix",
                format!("{:?} must be 1 to 32 letters, digits, -, _ or .", settings.namespace_prefix),
            ));
        }
        Ok(LinuxRouter { settings })
    }

    /// The tenant's namespace.
    pub fn namespace(&self, tenant: &Username) -> String {
        format!("{}{tenant}", self.settings.namespace_prefix)
    }

    /// The outer end of the tenant's WAN port, on the WAN bridge: `bw` and 12 hex digits of the
    /// namespace's digest (interface names have at most 15 characters).
    pub fn wan_port(&self, tenant: &Username) -> String {
        let digest = Sha256::digest(self.namespace(tenant).as_bytes());
        let hex: String = digest.iter().take(6).map(|byte| format!("{byte:02x}")).collect();
        format!("bw{hex}")
    }

    /// The VLAN interface of the trunk that joins a LAN of VLAN `vlan` to its bridge.
    fn vlan_link(vlan: u16) -> String {
        format!("t{vlan}")
    }

    /// Joins each LAN's bridge to the trunk's VLAN of the LAN's id (when there is a trunk), and
    /// takes away a VLAN interface no LAN asks for any more.
    async fn join_trunk(&self, namespace: &str, links: &[Link], spec: &TenantRouterSpec) -> Result<()> {
        let Some(trunk) = &self.settings.trunk else { return Ok(()) };
        let wanted: Vec<String> = spec.lans.iter().map(|lan| Self::vlan_link(lan.vlan)).collect();
        for stale in links.iter().map(|link| &link.ifname).filter(|name| is_vlan_link(name) && !wanted.contains(name)) {
            self.ip(namespace, &["link", "del", stale]).await?;
        }
        for lan in &spec.lans {
            let link = Self::vlan_link(lan.vlan);
            if !links.iter().any(|l| l.ifname == link) {
                let id = lan.vlan.to_string();
                let made = self
                    .host_ip(&[
                        "link", "add", "link", trunk, "name", &link, "netns", namespace, "type", "vlan", "id", &id,
                    ])
                    .await;
                if let Err(error) = made {
                    // The kernel's 802.1Q support, when loaded, keeps its table under /proc/net/vlan.
                    if !std::path::Path::new("/proc/net/vlan").exists() {
                        return Err(Error::invalid(
                            "networks.linux.trunk",
                            format!(
                                "the router host's kernel cannot make VLAN interfaces on {trunk} (load the 8021q \
                                 module: modprobe 8021q), so the LANs cannot reach the switch: {error}"
                            ),
                        ));
                    }
                    return Err(error);
                }
            }
            let mtu = spec.mtu.to_string();
            self.ip(namespace, &["link", "set", &link, "mtu", &mtu, "master", &lan.name, "up"]).await?;
        }
        Ok(())
    }

    /// Whether this host can make routers: `nft` runs and the WAN bridge is there.
    pub async fn check(&self) -> Result<()> {
        self.run(&["nft", "--version"], None).await?;
        self.host_ip(&["link", "show", "dev", &self.settings.wan_bridge]).await.map_err(|error| {
            Error::backend(
                BACKEND,
                Message(format!(
                    "the WAN bridge {} (networks.linux.wan_bridge) is not usable on this host: {error}",
                    self.settings.wan_bridge
                )),
            )
        })?;
        Ok(())
    }

    async fn run(&self, words: &[&str], input: Option<&str>) -> Result<String> {
        let words: Vec<String> = words.iter().map(|word| (*word).to_owned()).collect();
        command::run(&words, input, self.settings.timeout).await?.into_result()
    }

    /// `ip` in the host's namespace (the WAN bridge's).
    async fn host_ip(&self, args: &[&str]) -> Result<String> {
        let mut words = vec!["ip"];
        if let Some(host) = &self.settings.host_namespace {
            words.extend(["-n", host.as_str()]);
        }
        words.extend(args);
        self.run(&words, None).await
    }

    /// `ip` in the tenant's namespace.
    async fn ip(&self, namespace: &str, args: &[&str]) -> Result<String> {
        let mut words = vec!["ip", "-n", namespace];
        words.extend(args);
        self.run(&words, None).await
    }

    /// A program run inside the tenant's namespace.
    async fn inside(&self, namespace: &str, args: &[&str], input: Option<&str>) -> Result<String> {
        let mut words = vec!["ip", "netns", "exec", namespace];
        words.extend(args);
        self.run(&words, input).await
    }

    async fn namespace_exists(&self, namespace: &str) -> Result<bool> {
        #[derive(Deserialize)]
        struct Named {
            name: String,
        }
        let listed = self.run(&["ip", "-j", "netns", "list"], None).await?;
        if listed.trim().is_empty() {
            return Ok(false);
        }
        let names: Vec<Named> = serde_json::from_str(&listed)
            .map_err(|error| Error::backend(BACKEND, Message(format!("`ip -j netns list`: {error}"))))?;
        Ok(names.iter().any(|named| named.name == namespace))
    }

    async fn links(&self, namespace: &str) -> Result<Vec<Link>> {
        let listed = self.ip(namespace, &["-j", "addr", "show"]).await?;
        serde_json::from_str(&listed)
            .map_err(|error| Error::backend(BACKEND, Message(format!("`ip -j addr show` in {namespace}: {error}"))))
    }

    /// The bridges in the tenant's namespace: its LANs.
    async fn bridges(&self, namespace: &str) -> Result<Vec<String>> {
        let listed = self.ip(namespace, &["-j", "link", "show", "type", "bridge"]).await?;
        let links: Vec<Link> = if listed.trim().is_empty() {
            Vec::new()
        } else {
            serde_json::from_str(&listed).map_err(|error| {
                Error::backend(BACKEND, Message(format!("`ip -j link show type bridge` in {namespace}: {error}")))
            })?
        };
        Ok(links.into_iter().map(|link| link.ifname).collect())
    }

    /// Gives `link` exactly the IPv4 address `wanted`.
    async fn address(&self, namespace: &str, links: &[Link], link: &str, wanted: Ipv4Network) -> Result<()> {
        let current = links.iter().find(|l| l.ifname == link).map(Link::ipv4).unwrap_or_default();
        for stale in current.iter().filter(|address| **address != wanted) {
            self.ip(namespace, &["addr", "del", &stale.to_string(), "dev", link]).await?;
        }
        if !current.contains(&wanted) {
            self.ip(namespace, &["addr", "add", &wanted.to_string(), "dev", link]).await?;
        }
        Ok(())
    }
}

/// Whether `name` is one of the router's VLAN interfaces (`t<vlan id>`).
fn is_vlan_link(name: &str) -> bool {
    name.strip_prefix('t').is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

fn check_spec(spec: &TenantRouterSpec) -> Result<()> {
    if let Some(lan) = spec.lans.iter().find(|lan| !(1..=4094).contains(&lan.vlan)) {
        return Err(Error::invalid("networks.vlan_range", format!("{} is not a VLAN id (1-4094)", lan.vlan)));
    }
    for lan in &spec.lans {
        if !interface_name(&lan.name) || lan.name == WAN {
            return Err(Error::invalid(
                "networks.lans",
                format!("{:?} cannot name a LAN (an interface name other than {WAN})", lan.name),
            ));
        }
    }
    if !(576..=9000).contains(&spec.mtu) {
        return Err(Error::invalid("networks.mtu", format!("{} is outside 576..=9000", spec.mtu)));
    }
    Ok(())
}

#[async_trait]
impl TenantRouter for LinuxRouter {
    fn backend_name(&self) -> &'static str {
        "linux"
    }

    async fn ensure(&self, spec: &TenantRouterSpec) -> Result<RouterStatus> {
        check_spec(spec)?;
        let namespace = self.namespace(&spec.tenant);
        if !self.namespace_exists(&namespace).await? {
            self.run(&["ip", "netns", "add", &namespace], None).await?;
        }
        self.ip(&namespace, &["link", "set", "lo", "up"]).await?;
        let mut links = self.links(&namespace).await?;
        let port = self.wan_port(&spec.tenant);
        if !links.iter().any(|link| link.ifname == WAN) {
            self.host_ip(&["link", "add", &port, "type", "veth", "peer", "name", WAN, "netns", &namespace]).await?;
        }
        self.host_ip(&["link", "set", &port, "master", &self.settings.wan_bridge, "up"]).await?;
        for lan in &spec.lans {
            if !links.iter().any(|link| link.ifname == lan.name) {
                self.ip(&namespace, &["link", "add", &lan.name, "type", "bridge"]).await?;
            }
            self.ip(&namespace, &["link", "set", &lan.name, "mtu", &spec.mtu.to_string(), "up"]).await?;
        }
        links = self.links(&namespace).await?;
        self.join_trunk(&namespace, &links, spec).await?;
        self.address(&namespace, &links, WAN, spec.wan_address).await?;
        for lan in &spec.lans {
            self.address(&namespace, &links, &lan.name, lan.gateway).await?;
        }
        self.ip(&namespace, &["link", "set", WAN, "up"]).await?;
        if let Some(gateway) = spec.wan_gateway {
            self.ip(&namespace, &["route", "replace", "default", "via", &gateway.to_string(), "dev", WAN]).await?;
        }
        self.inside(&namespace, &["tee", "/proc/sys/net/ipv4/ip_forward"], Some("1\n")).await?;
        self.inside(&namespace, &["nft", "-j", "-f", "-"], Some(&rules::ruleset(spec).to_string())).await?;
        let status = self.status(&spec.tenant).await?.ok_or_else(|| Error::not_found("tenant router", &namespace))?;
        tracing::info!(tenant = %spec.tenant, %namespace, "tenant router in place");
        Ok(status)
    }

    async fn status(&self, tenant: &Username) -> Result<Option<RouterStatus>> {
        let namespace = self.namespace(tenant);
        if !self.namespace_exists(&namespace).await? {
            return Ok(None);
        }
        let links = self.links(&namespace).await?;
        let wan_address = links.iter().find(|link| link.ifname == WAN).and_then(|link| link.ipv4().first().copied());
        let bridges = self.bridges(&namespace).await?;
        let mut lans: Vec<(String, Option<Ipv4Network>)> = links
            .iter()
            .filter(|link| bridges.contains(&link.ifname))
            .map(|link| (link.ifname.clone(), link.ipv4().first().copied()))
            .collect();
        lans.sort();
        let listed = self.inside(&namespace, &["nft", "-j", "list", "table", "inet", rules::TABLE], None).await;
        let rules = match listed {
            Ok(text) => serde_json::from_str(&text).map(|listed| rules::complete(&listed)).unwrap_or(false),
            Err(_) => false,
        };
        Ok(Some(RouterStatus { wan_address, lans, rules }))
    }

    async fn remove(&self, tenant: &Username) -> Result<()> {
        let namespace = self.namespace(tenant);
        // The WAN port first, at once (a veth pair ends with either end): a namespace's own
        // devices go some moments after the namespace, and the port would linger on the bridge.
        let port = self.wan_port(tenant);
        let listed = self.host_ip(&["-j", "link", "show"]).await?;
        let host_links: Vec<Link> = serde_json::from_str(&listed)
            .map_err(|error| Error::backend(BACKEND, Message(format!("`ip -j link show`: {error}"))))?;
        if host_links.iter().any(|link| link.ifname == port) {
            self.host_ip(&["link", "del", &port]).await?;
        }
        if self.namespace_exists(&namespace).await? {
            self.run(&["ip", "netns", "del", &namespace], None).await?;
        }
        Ok(())
    }
}

/// The tenant router `networks.linux` (`section`, null when absent) names: [`LinuxRouter`] on
/// this host, or [`SshRouter`] for the router host of `networks.linux.ssh` (its identity and
/// known hosts files checked). Errors name the key.
pub fn router(section: &serde_yaml::Value) -> Result<Arc<dyn TenantRouter>> {
    Ok(match RouterSettings::from_section(section)? {
        RouterSettings::Local(settings) => Arc::new(LinuxRouter::new(settings)?),
        RouterSettings::Ssh(settings) => Arc::new(SshRouter::new(settings)?),
    })
}

/// For `check-config`: whether the router `networks.linux` names can make routers, changing
/// nothing (on this host: `nft` runs and the WAN bridge is there; a router host: its helper
/// answers over SSH and finds the same there). What was found, in one line.
pub async fn check(section: &serde_yaml::Value) -> Result<String> {
    match RouterSettings::from_section(section)? {
        RouterSettings::Local(settings) => {
            let bridge = settings.wan_bridge.clone();
            LinuxRouter::new(settings)?.check().await?;
            Ok(format!("linux router on this host, WAN bridge {bridge}"))
        }
        RouterSettings::Ssh(settings) => SshRouter::new(settings)?.ping().await,
    }
}
