//! The `TenantRouter` conformance suite, for routers that hold something (not `NoRouter`).

use crate::router::{TenantLan, TenantRouter, TenantRouterSpec};

use super::username;

/// A tenant's spec as the platform makes it: the two LANs every tenant gets (the same subnets
/// in every tenant), MTU 1450, the WAN address `wan`.
pub fn spec(tenant: &str, vlans: [u16; 2], wan: &str) -> TenantRouterSpec {
    TenantRouterSpec {
        tenant: username(tenant),
        lans: vec![
            TenantLan { name: "lan1".into(), vlan: vlans[0], gateway: "10.0.1.1/24".parse().expect("a network") },
            TenantLan { name: "lan2".into(), vlan: vlans[1], gateway: "10.0.2.1/24".parse().expect("a network") },
        ],
        mtu: 1450,
        wan_address: wan.parse().expect("a WAN address"),
        wan_gateway: None,
    }
}

/// Runs the contract against `router` with the tenants `router-alpha` and `router-beta`, which
/// it must not hold yet; it removes both at the end. `wan` gives three WAN addresses in one
/// subnet the router's WAN side accepts.
pub async fn check_all(router: &dyn TenantRouter, wan: [&str; 3]) {
    let alpha = spec("router-alpha", [3001, 3002], wan[0]);
    let beta = spec("router-beta", [3003, 3004], wan[1]);
    assert!(!router.backend_name().is_empty());
    for tenant in [&alpha.tenant, &beta.tenant] {
        assert_eq!(router.status(tenant).await.expect("status"), None, "the suite starts without {tenant}");
    }

    let made = router.ensure(&alpha).await.expect("ensure makes the tenant's router");
    assert!(made.matches(&alpha), "ensure answers what it made: {made:?}");
    assert_eq!(router.status(&alpha.tenant).await.expect("status"), Some(made.clone()), "status reads the same");
    let again = router.ensure(&alpha).await.expect("ensure again");
    assert_eq!(again, made, "a second ensure with the same spec changes nothing");

    let other = router.ensure(&beta).await.expect("ensure another tenant, the same LAN subnets");
    assert!(other.matches(&beta), "{other:?}");
    assert_eq!(router.status(&alpha.tenant).await.expect("status"), Some(made), "the other tenant left alpha alone");

    let mut moved = alpha.clone();
    moved.wan_address = wan[2].parse().expect("a WAN address");
    let changed = router.ensure(&moved).await.expect("ensure a changed spec");
    assert!(changed.matches(&moved), "the change is made, the old address gone: {changed:?}");
    assert!(!changed.matches(&alpha));
    assert!(router.status(&beta.tenant).await.expect("status").is_some_and(|status| status.matches(&beta)));

    router.remove(&alpha.tenant).await.expect("remove");
    assert_eq!(router.status(&alpha.tenant).await.expect("status"), None, "nothing of alpha's is left");
    router.remove(&alpha.tenant).await.expect("removing what is not there succeeds");
    assert!(
        router.status(&beta.tenant).await.expect("status").is_some_and(|status| status.matches(&beta)),
        "removing alpha left beta alone"
    );
    router.remove(&beta.tenant).await.expect("remove beta");
    assert_eq!(router.status(&beta.tenant).await.expect("status"), None);
}
