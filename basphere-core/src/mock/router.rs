//! A tenant router that records what it is asked and checks every spec as a real router would
//! need it (tests only).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::{Error, Message, Result};
use crate::router::{RouterStatus, TenantRouter, TenantRouterSpec};
use crate::validate::Username;

/// One call a [`RecordingRouter`] was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouterCall {
    Ensure(TenantRouterSpec),
    Remove(Username),
}

/// Holds each tenant's spec as its router; refuses a spec no router could make (no LAN, a VLAN
/// id outside 1-4094 or used twice, two LANs of one name or overlapping subnets, a gateway
/// that is its subnet's network or broadcast address, an MTU outside 1280-9000, a WAN address
/// another tenant's router has); can be told to fail the next calls.
#[derive(Default)]
pub struct RecordingRouter {
    tenants: Mutex<BTreeMap<Username, TenantRouterSpec>>,
    calls: Mutex<Vec<RouterCall>>,
    failures_left: Mutex<u32>,
}

impl RecordingRouter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call, in order (refused ones too).
    pub fn calls(&self) -> Vec<RouterCall> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The tenants it holds, with what each was given.
    pub fn tenants(&self) -> BTreeMap<Username, TenantRouterSpec> {
        self.tenants.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes the next `count` calls of `ensure` and `remove` fail.
    pub fn fail_next(&self, count: u32) {
        *self.failures_left.lock().unwrap_or_else(|p| p.into_inner()) = count;
    }

    fn failing(&self) -> Result<()> {
        let mut left = self.failures_left.lock().unwrap_or_else(|p| p.into_inner());
        if *left > 0 {
            *left -= 1;
            return Err(Error::backend("recording", Message("the router host did not answer".into())));
        }
        Ok(())
    }

    fn status_of(spec: &TenantRouterSpec) -> RouterStatus {
        let mut lans: Vec<_> = spec.lans.iter().map(|lan| (lan.name.clone(), Some(lan.gateway))).collect();
        lans.sort();
        RouterStatus { wan_address: Some(spec.wan_address), lans, rules: true }
    }
}

/// Whether a router could make `spec`; what is wrong otherwise.
fn check(spec: &TenantRouterSpec, others: &BTreeMap<Username, TenantRouterSpec>) -> std::result::Result<(), String> {
    if spec.lans.is_empty() {
        return Err("no LAN".into());
    }
    if !(1280..=9000).contains(&spec.mtu) {
        return Err(format!("MTU {} is outside 1280-9000", spec.mtu));
    }
    let (mut names, mut vlans) = (BTreeSet::new(), BTreeSet::new());
    for (index, lan) in spec.lans.iter().enumerate() {
        if !names.insert(&lan.name) || !vlans.insert(lan.vlan) || !(1..=4094).contains(&lan.vlan) {
            return Err(format!(
                "LAN {} (VLAN {}) is named twice, or its VLAN id is repeated or invalid",
                lan.name, lan.vlan
            ));
        }
        let address = lan.gateway.ip();
        if address == lan.gateway.network() || address == lan.gateway.broadcast() {
            return Err(format!("the gateway {} of {} is not a host address", lan.gateway, lan.name));
        }
        if spec.lans[..index].iter().any(|other| other.gateway.overlaps(lan.gateway)) {
            return Err(format!("the subnet of {} overlaps another LAN's", lan.name));
        }
    }
    if let Some((tenant, _)) =
        others.iter().find(|(tenant, other)| **tenant != spec.tenant && other.wan_address.ip() == spec.wan_address.ip())
    {
        return Err(format!("the WAN address {} is {tenant}'s router's", spec.wan_address));
    }
    Ok(())
}

#[async_trait]
impl TenantRouter for RecordingRouter {
    fn backend_name(&self) -> &'static str {
        "recording"
    }

    async fn ensure(&self, spec: &TenantRouterSpec) -> Result<RouterStatus> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(RouterCall::Ensure(spec.clone()));
        self.failing()?;
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        check(spec, &tenants).map_err(|problem| Error::invalid("router spec", problem))?;
        tenants.insert(spec.tenant.clone(), spec.clone());
        Ok(Self::status_of(spec))
    }

    async fn status(&self, tenant: &Username) -> Result<Option<RouterStatus>> {
        Ok(self.tenants.lock().unwrap_or_else(|p| p.into_inner()).get(tenant).map(Self::status_of))
    }

    async fn remove(&self, tenant: &Username) -> Result<()> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(RouterCall::Remove(tenant.clone()));
        self.failing()?;
        self.tenants.lock().unwrap_or_else(|p| p.into_inner()).remove(tenant);
        Ok(())
    }
}
