//! The `TenantRouter` trait: the router in front of one tenant's network. It joins the tenant's
//! LANs (the same subnets in every tenant) to the WAN side: the tenant's hosts reach each other
//! and the outside, seen there from the router's WAN address; nothing from the WAN reaches a LAN,
//! and nothing crosses between tenants.

use std::net::Ipv4Addr;

use async_trait::async_trait;
use ipnetwork::Ipv4Network;

use crate::error::{Error, Result};
use crate::validate::Username;

/// One LAN of a tenant: its name on the router (`lan1`), its VLAN id on the switch, and the
/// router's address on it with the LAN's prefix (`10.0.1.1/24`), which is the LAN's gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantLan {
    pub name: String,
    pub vlan: u16,
    pub gateway: Ipv4Network,
}

/// Everything a router needs to serve one tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRouterSpec {
    pub tenant: Username,
    pub lans: Vec<TenantLan>,
    /// The MTU of every LAN (1450 under an overlay).
    pub mtu: u16,
    /// The router's address on the WAN side, with the WAN's prefix.
    pub wan_address: Ipv4Network,
    /// The WAN side's gateway, the router's default route; none when the WAN is all it reaches.
    pub wan_gateway: Option<Ipv4Addr>,
}

/// What a router holds for a tenant, as read back from the router itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterStatus {
    pub wan_address: Option<Ipv4Network>,
    /// Each LAN present, with the router's address on it, by name.
    pub lans: Vec<(String, Option<Ipv4Network>)>,
    /// Whether the tenant's filter and NAT rules are in place.
    pub rules: bool,
}

impl RouterStatus {
    /// Whether the router holds exactly what `spec` asks.
    pub fn matches(&self, spec: &TenantRouterSpec) -> bool {
        let mut lans: Vec<(String, Option<Ipv4Network>)> =
            spec.lans.iter().map(|lan| (lan.name.clone(), Some(lan.gateway))).collect();
        lans.sort();
        self.rules && self.wan_address == Some(spec.wan_address) && self.lans == lans
    }
}

/// The router of tenant networks.
///
/// # Contract
///
/// - `ensure` makes or repairs everything `spec` asks and answers the status read back; it is
///   safe to call again at any time, after any crash, and a second call with the same spec
///   changes nothing. A call for one tenant never touches another tenant's router.
/// - `status` answers `None` for a tenant the router has nothing of.
/// - `remove` takes away everything of the tenant's; removing what is not there succeeds.
#[async_trait]
pub trait TenantRouter: Send + Sync {
    fn backend_name(&self) -> &'static str;
    async fn ensure(&self, spec: &TenantRouterSpec) -> Result<RouterStatus>;
    async fn status(&self, tenant: &Username) -> Result<Option<RouterStatus>>;
    async fn remove(&self, tenant: &Username) -> Result<()>;
}

/// Flat mode: every VM on the one shared network, no tenant routers.
pub struct NoRouter;

#[async_trait]
impl TenantRouter for NoRouter {
    fn backend_name(&self) -> &'static str {
        "none"
    }

    async fn ensure(&self, _spec: &TenantRouterSpec) -> Result<RouterStatus> {
        Err(Error::NotSupported(
            "tenant networks are off (networks.mode: flat); set networks.mode: tenant and a router backend".into(),
        ))
    }

    async fn status(&self, _tenant: &Username) -> Result<Option<RouterStatus>> {
        Ok(None)
    }

    async fn remove(&self, _tenant: &Username) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn flat_mode_makes_no_router_and_says_which_key_would() {
        let tenant = crate::testing::username("alice");
        let spec = TenantRouterSpec {
            tenant: tenant.clone(),
            lans: Vec::new(),
            mtu: 1450,
            wan_address: "192.0.2.11/24".parse().unwrap(),
            wan_gateway: None,
        };
        match NoRouter.ensure(&spec).await {
            Err(Error::NotSupported(message)) => assert!(message.contains("networks.mode"), "{message}"),
            other => panic!("flat mode must refuse to make a router, got {other:?}"),
        }
        assert_eq!(NoRouter.status(&tenant).await.unwrap(), None);
        NoRouter.remove(&tenant).await.unwrap();
    }
}
