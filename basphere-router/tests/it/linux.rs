//! The `linux` router: its conformance suite, and two tenants with the same LAN addresses proven
//! apart with real packets.

use basphere_core::router::TenantRouter;
use basphere_core::testing::{self, router::spec};

use crate::lab::{self, Lab, OUTSIDE};

fn can_run() -> bool {
    match lab::missing() {
        Some(missing) => {
            testing::skip_unless_ci(&missing);
            false
        }
        None => true,
    }
}

#[tokio::test]
async fn the_linux_router_passes_the_conformance_suite() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("c");
    let router = lab.router();
    testing::router::check_all(&router, ["192.0.2.11/24", "192.0.2.12/24", "192.0.2.13/24"]).await;
    assert_eq!(lab::namespaces(&format!("{}r-", lab.prefix)), Vec::<String>::new(), "no router namespace left");
    let ports = lab::run(&["ip", "-n", &lab.host, "-o", "link", "show"]);
    assert!(!ports.contains(" bw"), "no WAN port left on the WAN bridge: {ports}");
}

#[tokio::test]
async fn two_tenants_with_the_same_addresses_never_meet() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("p");
    let router = lab.router();
    let alice = spec("alice", [2001, 2002], "192.0.2.11/24");
    let bob = spec("bob", [2003, 2004], "192.0.2.12/24");
    router.ensure(&alice).await.expect("alice's router");
    router.ensure(&bob).await.expect("bob's router");
    let (alice_ns, bob_ns) = (router.namespace(&alice.tenant), router.namespace(&bob.tenant));
    // Each tenant's VMs as Basphere leases them: the same 10.0.1.10 in both.
    let alice_web = lab.vm(&alice_ns, "alice-web", "lan1", "10.0.1.10", "10.0.1.1");
    let alice_db = lab.vm(&alice_ns, "alice-db", "lan2", "10.0.2.20", "10.0.2.1");
    let bob_web = lab.vm(&bob_ns, "bob-web", "lan1", "10.0.1.10", "10.0.1.1");
    let bob_ci = lab.vm(&bob_ns, "bob-ci", "lan1", "10.0.1.11", "10.0.1.1");
    for (namespace, label) in
        [(&alice_web, "alice-web"), (&alice_db, "alice-db"), (&bob_web, "bob-web"), (&bob_ci, "bob-ci")]
    {
        lab.listen(namespace, 7000, label);
    }
    lab.listen(&lab.outside, 7000, "outside");

    // A tenant's VMs reach each other, on one LAN and across its two.
    assert!(lab.ping(&alice_web, "10.0.2.20", None), "alice-web reaches alice-db across her LANs");
    assert_eq!(lab.connect(&alice_web, "10.0.2.20", 7000).as_deref(), Some("alice-db 10.0.1.10"));
    assert_eq!(lab.connect(&bob_ci, "10.0.1.10", 7000).as_deref(), Some("bob-web 10.0.1.11"));

    // The outside is reached, and sees each tenant from its router's WAN address.
    assert!(lab.ping(&alice_db, OUTSIDE, None));
    assert_eq!(lab.connect(&alice_web, OUTSIDE, 7000).as_deref(), Some("outside 192.0.2.11"));
    assert_eq!(lab.connect(&bob_web, OUTSIDE, 7000).as_deref(), Some("outside 192.0.2.12"));

    // No packet crosses between the tenants: 10.0.1.10 is always one's own.
    assert_eq!(lab.connect(&bob_ci, "10.0.1.10", 7000).as_deref(), Some("bob-web 10.0.1.11"));
    assert_eq!(lab.connect(&alice_db, "10.0.1.10", 7000).as_deref(), Some("alice-web 10.0.2.20"));
    assert_eq!(lab.connect(&bob_ci, "10.0.2.20", 7000), None, "bob has no 10.0.2.20, and alice's is not his");
    // Nor through the WAN: the other tenant's router lets nothing new in.
    assert!(!lab.ping(&alice_web, "192.0.2.12", None), "bob's router does not answer alice");
    assert_eq!(lab.connect(&alice_web, "192.0.2.12", 7000), None);

    // The outside reaches no LAN address, even routed through the router.
    lab::run(&["ip", "-n", &lab.outside, "route", "add", "10.0.1.0/24", "via", "192.0.2.11"]);
    lab::run(&["ip", "-n", &lab.outside, "route", "add", "10.0.2.0/24", "via", "192.0.2.12"]);
    assert!(!lab.ping(&lab.outside, "10.0.1.10", None), "the outside does not reach alice-web");
    assert_eq!(lab.connect(&lab.outside, "10.0.1.10", 7000), None);
    assert_eq!(lab.connect(&lab.outside, "10.0.2.20", 7000), None);
    assert_eq!(lab.connect(&lab.outside, "10.0.1.1", 22), None, "nor the router itself");

    // The LANs' MTU is 1450: 1422 bytes of ICMP payload fit unfragmented, 1423 do not.
    assert!(lab.ping(&alice_web, "10.0.2.20", Some(1422)));
    assert!(!lab.ping(&alice_web, "10.0.2.20", Some(1423)));
    let lan = lab::run(&["ip", "-n", &alice_ns, "-o", "link", "show", "lan1"]);
    assert!(lan.contains("mtu 1450"), "{lan}");

    // A repeated ensure keeps everything working; removing alice leaves bob's network alone.
    assert!(router.ensure(&alice).await.unwrap().matches(&alice));
    assert_eq!(lab.connect(&alice_web, OUTSIDE, 7000).as_deref(), Some("outside 192.0.2.11"));
    router.remove(&alice.tenant).await.unwrap();
    assert!(!lab::namespaces(&lab.prefix).contains(&alice_ns));
    assert_eq!(lab.connect(&alice_web, OUTSIDE, 7000), None, "alice's VMs are cut off with her router");
    assert_eq!(lab.connect(&bob_web, OUTSIDE, 7000).as_deref(), Some("outside 192.0.2.12"));
    router.remove(&bob.tenant).await.unwrap();
    assert_eq!(lab::namespaces(&format!("{}r-", lab.prefix)), Vec::<String>::new());
}

/// The LANs reach the distributed switch through the router host's trunk: a VM on a LAN's VLAN
/// reaches its tenant's gateway and the outside (seen there from its tenant's WAN address), two
/// tenants' VMs at the same address each reach their own router, and a VM on another VLAN (the
/// tenant's other LAN, with this LAN's addresses) reaches nothing of this LAN.
#[tokio::test]
async fn the_lans_reach_the_switch_through_the_trunk_on_their_vlans() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("t");
    let router = lab.router_on_trunk();
    let alice = spec("alice", [2001, 2002], "192.0.2.11/24");
    let bob = spec("bob", [2003, 2004], "192.0.2.12/24");
    if !lab::vlans_supported() {
        // A kernel without 802.1Q (some VM kernels): the router says so, naming the key and the
        // module, instead of a network that reaches nothing.
        let refused = router.ensure(&alice).await.unwrap_err();
        let message = refused.to_string();
        assert!(message.contains("networks.linux.trunk") && message.contains("8021q"), "{message}");
        eprintln!("this kernel makes no VLAN interfaces: the trunk's packets were not sent");
        return;
    }
    router.ensure(&alice).await.unwrap();
    router.ensure(&bob).await.unwrap();
    router.ensure(&alice).await.expect("a second ensure changes nothing");
    lab.listen(&lab.outside, 8080, "outside");

    let a1 = lab.vlan_vm("a1", 2001, "10.0.1.10", "10.0.1.1");
    let b1 = lab.vlan_vm("b1", 2003, "10.0.1.10", "10.0.1.1");
    let astray = lab.vlan_vm("x", 2002, "10.0.1.20", "10.0.1.1");
    assert!(lab.ping(&a1, "10.0.1.1", None), "alice's VM reaches her gateway over VLAN 2001");
    assert!(lab.ping(&a1, "10.0.1.1", Some(1422)), "a full 1450-byte packet crosses the trunk");
    assert_eq!(lab.connect(&a1, OUTSIDE, 8080).as_deref(), Some("outside 192.0.2.11"), "seen from alice's WAN address");
    assert_eq!(lab.connect(&b1, OUTSIDE, 8080).as_deref(), Some("outside 192.0.2.12"), "bob's, at the same address");
    assert!(!lab.ping(&astray, "10.0.1.1", None), "VLAN 2002 is alice's lan2: lan1's gateway is not there");
    assert!(!lab.ping(&astray, "10.0.1.10", None));

    // Removing a tenant takes its VLAN interfaces with its namespace; the other keeps working.
    router.remove(&alice.tenant).await.unwrap();
    assert!(!lab.ping(&a1, "10.0.1.1", None), "alice's router is gone");
    assert!(lab.ping(&b1, "10.0.1.1", None), "bob's is untouched");
    let host_links = lab::run(&["ip", "-n", &lab.host, "-o", "link", "show"]);
    assert!(!host_links.contains("t2001"), "no VLAN interface of alice's is left: {host_links}");
}
