//! Tenant networks through the platform, on every store: made on approval with VLAN ids of
//! their own, shown to their account only, refused deletion while something is on them, made
//! again after a router failure, removed by purge; distinct VLAN ids under 200 concurrent
//! approvals, and a full range refused with nothing half made.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use basphere_core::config::RegistrationLimits;
use basphere_core::mock::{MockProvisioner, RecordingBastion, RecordingNotifier, RecordingRouter, RouterCall};
use basphere_core::model::*;
use basphere_core::platform::{CreateVms, PageRequest, RouterState, Submission};
use basphere_core::store::NetworkFilter;
use basphere_core::testing::{ssh_key, username};
use basphere_core::validate::{RegistrationForm, ResourceName};
use basphere_core::{Actor, Config, Platform, Store, StoreExt};
use tests::{block_ipam, Backend, BACKENDS};

const WAIT: Duration = Duration::from_secs(120);

struct Rig {
    platform: Arc<Platform>,
    store: Arc<dyn Store>,
    router: Arc<RecordingRouter>,
    vsphere: Arc<MockProvisioner>,
    _background: basphere_core::platform::Background,
}

fn rig(backend: Backend, dir: &std::path::Path, vlans: &str) -> Rig {
    let yaml = format!(
        "recaptcha: {{enabled: false}}\nwork: {{notification_retry_seconds: 1}}\n\
         network: {{cidr: 10.200.0.0/16, gateway: 10.200.0.1}}\n\
         networks: {{mode: tenant, vlan_range: \"{vlans}\", distributed_switch: dvs-tenants, \
         wan_port_group: pg-wan, wan: {{cidr: 192.0.2.0/24, gateway: 192.0.2.1}}}}\n"
    );
    let generous = RegistrationLimits {
        per_address_per_hour: 100_000,
        per_email_per_day: 100_000,
        per_day: 100_000,
        ..RegistrationLimits::DEFAULT
    };
    let config = Arc::new(Config { registration: generous, ..Config::from_yaml(&yaml).unwrap() });
    let store = backend.open(dir);
    let router = Arc::new(RecordingRouter::new());
    let vsphere = Arc::new(MockProvisioner::with_default_catalog());
    let platform = Platform::builder(
        config.clone(),
        store.clone(),
        block_ipam(config.pools.clone()),
        vsphere.clone(),
        Arc::new(RecordingNotifier::new()),
    )
    .bastion(Arc::new(RecordingBastion::new()))
    .router(router.clone())
    .build();
    let _background = platform.start_background();
    Rig { platform, store, router, vsphere, _background }
}

fn admin() -> Actor {
    Actor::admin("root", "test")
}

fn form(name: &str, seed: u64) -> RegistrationForm {
    RegistrationForm {
        username: name.into(),
        email: format!("{name}@example.com"),
        team: "payments".into(),
        public_key: ssh_key(seed).as_str().into(),
    }
}

impl Rig {
    async fn wait(&self, operation: &Operation) -> Operation {
        self.platform.runtime().wait_operation(operation.id, WAIT).await.unwrap()
    }

    async fn register(&self, name: &str, seed: u64) {
        let from = Submission { client: "192.0.2.1".into(), human_response: None };
        self.platform.accounts().register(&from, form(name, seed)).await.unwrap();
    }

    /// Registers and approves `name`; the approval operation as it ended.
    async fn approved(&self, name: &str, seed: u64) -> Operation {
        self.register(name, seed).await;
        let operation = self.platform.accounts().approve_registration(&admin(), name).await.unwrap();
        self.wait(&operation).await
    }

    fn network(&self, name: &str) -> Option<Network> {
        self.store.query(|tx| tx.network_of(&username(name))).unwrap()
    }

    /// The simulated vCenter's port groups: name, VLAN id.
    fn port_groups(&self) -> Vec<(String, u16)> {
        self.vsphere.port_groups().into_iter().map(|group| (group.name, group.vlan)).collect()
    }

    fn all_networks(&self) -> Vec<Network> {
        self.store.query(|tx| tx.list_networks(&NetworkFilter { include_deleted: true, ..Default::default() })).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_network_is_made_on_approval_shown_to_its_account_and_removed_by_purge() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(backend, dir.path(), "2001-2999");
        for (name, seed) in [("alice", 1), ("bob", 2)] {
            let approval = rig.approved(name, seed).await;
            assert_eq!(approval.state, OperationState::Succeeded, "{backend:?}: {:?}", approval.error);
            assert!(approval.steps.iter().any(|s| s.name == "tenant network" && s.state == StepState::Done));
        }
        let alice_net = rig.network("alice").expect("alice's network");
        let bob_net = rig.network("bob").expect("bob's network");
        assert_eq!(alice_net.state, NetworkState::Ready, "{backend:?}: {:?}", alice_net.reason);
        assert_eq!(alice_net.vlans().collect::<Vec<_>>(), [2001, 2002], "{backend:?}: the lowest ids, one per LAN");
        assert_eq!(bob_net.vlans().collect::<Vec<_>>(), [2003, 2004]);
        assert_eq!(alice_net.lans[0].cidr, bob_net.lans[0].cidr, "the same subnets in every tenant");
        assert_eq!((alice_net.mtu, alice_net.lans[1].gateway.to_string().as_str()), (1450, "10.0.2.1"));
        assert_ne!(alice_net.wan_address, bob_net.wan_address);
        assert_eq!(alice_net.wan_address.to_string(), "192.0.2.2", "the lowest WAN host address but the gateway");

        // The router was asked exactly what the records say.
        let held = rig.router.tenants();
        let spec = &held[&username("alice")];
        assert_eq!(
            spec.lans.iter().map(|l| (l.vlan, l.gateway.to_string())).collect::<Vec<_>>(),
            [(2001, "10.0.1.1/24".to_owned()), (2002, "10.0.2.1/24".to_owned())]
        );
        assert_eq!((spec.mtu, spec.wan_address.to_string()), (1450, "192.0.2.2/24".to_owned()));
        // Each LAN is a port group on the distributed switch, on the LAN's VLAN id.
        assert_eq!(
            rig.port_groups(),
            [
                ("basphere-alice-lan1".to_owned(), 2001),
                ("basphere-alice-lan2".to_owned(), 2002),
                ("basphere-bob-lan1".to_owned(), 2003),
                ("basphere-bob-lan2".to_owned(), 2004)
            ],
            "{backend:?}"
        );

        // Shown to alice and administrators; another account sees nothing.
        let alice = Actor::user(&username("alice"), "test");
        let bob = Actor::user(&username("bob"), "test");
        let report = rig.platform.networks().show(&alice, &username("alice")).await.unwrap();
        assert_eq!(
            (report.network.id, report.router.clone(), report.wan_prefix),
            (alice_net.id, RouterState::InPlace, Some(24))
        );
        assert_eq!(rig.platform.networks().show(&bob, &username("alice")).await.unwrap_err().kind(), "not-found");
        assert_eq!(rig.platform.networks().create(&alice, &username("alice")).await.unwrap_err().kind(), "forbidden");
        assert_eq!(
            rig.platform.networks().list(&alice, None, PageRequest::default()).await.unwrap_err().kind(),
            "forbidden"
        );
        let listed = rig.platform.networks().list(&admin(), None, PageRequest::default()).await.unwrap().items;
        assert_eq!(listed.iter().map(|n| n.owner.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);
        let twice = rig.platform.networks().create(&admin(), &username("alice")).await.unwrap_err();
        assert_eq!(twice.kind(), "conflict", "{twice}");

        // Refused while a VM is on it; deleted once nothing is; made again with the freed ids.
        let request = CreateVms { name: "web".into(), os: "ubuntu-24.04".into(), spec: "tiny".into(), count: 1 };
        let made = rig.platform.vms().create(&alice, &username("alice"), request.clone(), None).await.unwrap();
        assert_eq!(rig.wait(&made.accepted[0].operation).await.state, OperationState::Succeeded);
        // Both tenants' first VM holds the same address, each on its own LAN's port group,
        // behind its own router, with the tenant MTU.
        let bobs = rig.platform.vms().create(&bob, &username("bob"), request, None).await.unwrap();
        assert_eq!(rig.wait(&bobs.accepted[0].operation).await.state, OperationState::Succeeded);
        for (owner, vm) in [("alice", &made.accepted[0].vm), ("bob", &bobs.accepted[0].vm)] {
            assert_eq!(vm.ip.map(|ip| ip.to_string()).as_deref(), Some("10.0.1.2"), "{backend:?}: {owner}");
            let clone = rig.vsphere.vm(&format!("{owner}-web")).and_then(|vm| vm.clone).expect("cloned");
            let guest = &clone.network;
            assert_eq!(guest.port_group.as_deref(), Some(format!("basphere-{owner}-lan1").as_str()));
            assert_eq!((guest.gateway.to_string(), guest.prefix_len, guest.mtu), ("10.0.1.1".to_owned(), 24, 1450));
        }
        let leases = rig.store.query(|tx| tx.list_leases(None)).unwrap();
        let scopes: BTreeSet<Option<uuid::Uuid>> = leases.iter().map(|lease| lease.network).collect();
        assert_eq!(scopes, BTreeSet::from([Some(alice_net.id), Some(bob_net.id)]), "{backend:?}: tenant scopes only");
        let refused = rig.platform.networks().delete(&admin(), &username("alice")).await.unwrap_err();
        assert!(refused.to_string().contains("VM web"), "{refused}");
        let refused = rig.platform.accounts().delete(&admin(), "alice").await.unwrap_err();
        assert_eq!(refused.kind(), "conflict");
        let gone = rig.platform.vms().delete(&alice, &username("alice"), &ResourceName::parse("web").unwrap()).await;
        assert_eq!(rig.wait(&gone.unwrap()).await.state, OperationState::Succeeded);
        let refused = rig.platform.accounts().delete(&admin(), "alice").await.unwrap_err();
        assert!(refused.to_string().contains("network"), "an account is not deleted under its network: {refused}");
        let deletion = rig.platform.networks().delete(&admin(), &username("alice")).await.unwrap();
        assert_eq!(deletion.network.state, NetworkState::Deleting);
        let deletion = rig.wait(&deletion.operation).await;
        assert_eq!(deletion.state, OperationState::Succeeded, "{backend:?}: {:?}", deletion.error);
        assert_eq!(rig.network("alice"), None);
        assert!(!rig.router.tenants().contains_key(&username("alice")), "the router holds nothing of alice's");
        assert!(!rig.port_groups().iter().any(|(name, _)| name.contains("-alice-")), "{:?}", rig.port_groups());
        assert_eq!(rig.platform.networks().show(&alice, &username("alice")).await.unwrap_err().kind(), "not-found");
        let again = rig.platform.networks().create(&admin(), &username("alice")).await.unwrap();
        assert_eq!(again.network.vlans().collect::<Vec<_>>(), [2001, 2002], "the freed ids are taken again");
        assert_eq!(rig.wait(&again.operation).await.state, OperationState::Succeeded);
        assert_eq!(rig.network("alice").unwrap().state, NetworkState::Ready);

        // Purge removes the network after the account's VMs; the record stays as history.
        let purge = rig.platform.accounts().purge(&admin(), "bob").await.unwrap();
        let purge = rig.wait(&purge).await;
        assert_eq!(purge.state, OperationState::Succeeded, "{backend:?}: {:?}", purge.error);
        assert!(purge.steps.iter().any(|s| s.name == "remove tenant network" && s.state == StepState::Done));
        assert_eq!(rig.network("bob"), None);
        assert!(!rig.router.tenants().contains_key(&username("bob")));
        assert_eq!(rig.router.calls().last(), Some(&RouterCall::Remove(username("bob"))));
        assert!(rig.vsphere.vm("bob-web").is_none(), "purge destroyed bob's VM first");
        assert_eq!(
            rig.port_groups(),
            [("basphere-alice-lan1".to_owned(), 2001), ("basphere-alice-lan2".to_owned(), 2002)],
            "{backend:?}: nothing of bob's is left on the switch"
        );
        let history = rig.all_networks();
        assert_eq!(history.iter().filter(|n| n.state == NetworkState::Deleted).count(), 2, "{history:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_failure_fails_the_approval_and_approving_again_finishes_the_same_network() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(backend, dir.path(), "2001-2999");
        rig.router.fail_next(1);
        let first = rig.approved("alice", 1).await;
        assert_eq!(first.state, OperationState::Failed, "{backend:?}");
        let reason = first.error.clone().unwrap();
        assert!(reason.contains("tenant network") && reason.contains("basphere admin user approve alice"), "{reason}");
        let failed = rig.network("alice").expect("the record stays, with its VLAN ids");
        assert_eq!(failed.state, NetworkState::Failed);
        assert!(failed.reason.as_deref().unwrap_or_default().contains("did not answer"), "{failed:?}");
        let report = rig.platform.networks().show(&admin(), &username("alice")).await.unwrap();
        assert_eq!(report.router, RouterState::Absent);

        let again = rig.platform.accounts().approve_registration(&admin(), "alice").await.unwrap();
        let again = rig.wait(&again).await;
        assert_eq!(again.state, OperationState::Succeeded, "{backend:?}: {:?}", again.error);
        let ready = rig.network("alice").unwrap();
        assert_eq!((ready.id, ready.state), (failed.id, NetworkState::Ready), "the same network, made");
        assert_eq!(rig.all_networks().len(), 1, "one record however often approval ran");
    }
}

/// 200 approvals at once get 200 networks with 400 distinct VLAN ids; the next one finds the
/// range full and is refused, naming the key, with no network recorded for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_approvals_get_distinct_vlan_ids_and_a_full_range_is_refused() {
    const TENANTS: usize = 200;
    for backend in [Backend::SqliteFile, Backend::Postgres] {
        let dir = tempfile::tempdir().unwrap();
        let rig = Arc::new(rig(backend, dir.path(), "2001-2400"));
        for n in 0..=TENANTS {
            rig.register(&format!("tenant{n}"), n as u64 + 10).await;
        }
        let approvals: Vec<_> = (0..TENANTS)
            .map(|n| {
                let rig = rig.clone();
                tokio::spawn(async move {
                    let name = format!("tenant{n}");
                    let operation = rig.platform.accounts().approve_registration(&admin(), &name).await.unwrap();
                    rig.wait(&operation).await
                })
            })
            .collect();
        for approval in approvals {
            let done = approval.await.unwrap();
            assert_eq!(done.state, OperationState::Succeeded, "{backend:?}: {:?}", done.error);
        }
        let networks = rig.all_networks();
        assert_eq!(networks.len(), TENANTS, "{backend:?}");
        let vlans: BTreeSet<u16> = networks.iter().flat_map(Network::vlans).collect();
        assert_eq!(vlans, (2001..=2400).collect(), "{backend:?}: every id once");
        let wan: BTreeSet<_> = networks.iter().map(|n| n.wan_address).collect();
        assert_eq!(wan.len(), TENANTS);
        assert_eq!(rig.router.tenants().len(), TENANTS);

        let late = format!("tenant{TENANTS}");
        let refused = rig.platform.accounts().approve_registration(&admin(), &late).await.unwrap();
        let refused = rig.wait(&refused).await;
        assert_eq!(refused.state, OperationState::Failed);
        let reason = refused.error.unwrap();
        assert!(reason.contains("networks.vlan_range") && reason.contains("2001-2400"), "{reason}");
        assert_eq!(rig.network(&late), None, "nothing half made");
        assert_eq!(rig.all_networks().len(), TENANTS);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_made_by_an_administrator_gets_its_network_too() {
    use basphere_core::platform::NewAccount;
    for backend in [Backend::Memory, Backend::SqliteFile] {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(backend, dir.path(), "2001-2999");
        let account = NewAccount {
            username: "carol".into(),
            email: "carol@example.com".into(),
            team: "payments".into(),
            ssh_key: ssh_key(3).as_str().into(),
            admin: false,
            uid: None,
        };
        rig.platform.accounts().create(&admin(), account).await.unwrap();
        let recorded = rig.network("carol").expect("the network is recorded with the account");
        let operations =
            rig.platform.runtime().list_operations(&admin(), None, PageRequest::default()).await.unwrap().items;
        let making = operations.iter().find(|op| op.kind == OperationKind::CreateNetwork).expect("its operation");
        assert_eq!(rig.wait(making).await.state, OperationState::Succeeded, "{backend:?}");
        assert_eq!(rig.network("carol").unwrap().state, NetworkState::Ready);
        assert_eq!(recorded.vlans().collect::<Vec<_>>(), [2001, 2002]);
        assert!(rig.router.tenants().contains_key(&username("carol")));
        // Provisioning again (a repeated import, say) makes no second network.
        let again = rig.platform.accounts().provision(&admin(), basphere_core::testing::user("carol", 3)).await;
        assert!(again.is_ok(), "{again:?}");
        assert_eq!(rig.all_networks().len(), 1);
    }
}
