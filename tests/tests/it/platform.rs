//! The platform end to end over every store: the VM journey, bad input, isolation between
//! users, backend failures, concurrency, and restart after a crash.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use basphere_core::mock::{Fault, FaultInjectingProvisioner, Method, MockProvisioner, RecordingNotifier};
use basphere_core::model::*;
use basphere_core::platform::{Accepted, CreateVms};
use basphere_core::provisioner::PowerAction;
use basphere_core::store::{AuditFilter, VmFilter};
use basphere_core::testing::{user, username};
use basphere_core::validate::ResourceName;
use basphere_core::{Actor, Config, Error, Platform, Store, StoreExt};
use tests::{block_ipam, Backend, BACKENDS};

/// How long a test waits for a condition before it fails: never reached when things work, and
/// generous, so that a slow or busy machine does not fail a test.
const WAIT: Duration = Duration::from_secs(60);

struct Rig {
    platform: Arc<Platform>,
    store: Arc<dyn Store>,
    sim: Arc<MockProvisioner>,
    faults: Arc<FaultInjectingProvisioner>,
    notifier: Arc<RecordingNotifier>,
    /// The sweeper and the outbox dispatcher, as a server runs them.
    _background: basphere_core::platform::Background,
}

fn rig_with(store: Arc<dyn Store>, sim: Arc<MockProvisioner>) -> Rig {
    rig_configured(store, sim, "work: {notification_retry_seconds: 1}")
}

fn rig_configured(store: Arc<dyn Store>, sim: Arc<MockProvisioner>, yaml: &str) -> Rig {
    let config = Arc::new(Config::from_yaml(yaml).unwrap());
    let faults = Arc::new(FaultInjectingProvisioner::new(sim.clone()));
    let notifier = Arc::new(RecordingNotifier::new());
    let platform = Platform::new(
        config.clone(),
        store.clone(),
        block_ipam(config.pools.clone()),
        faults.clone(),
        notifier.clone(),
    );
    let _background = platform.start_background();
    Rig { platform, store, sim, faults, notifier, _background }
}

fn rig(backend: Backend, dir: &std::path::Path) -> Rig {
    rig_with(backend.open(dir), Arc::new(MockProvisioner::with_default_catalog()))
}

fn request(name: &str, count: u32) -> CreateVms {
    CreateVms { name: name.into(), os: "ubuntu-24.04".into(), spec: "small".into(), count }
}

fn alice() -> Actor {
    Actor::user(&username("alice"), "test")
}

fn name(value: &str) -> ResourceName {
    ResourceName::parse(value).unwrap()
}

impl Rig {
    async fn account(&self, name: &str, seed: u64) {
        self.platform.accounts().provision(&basphere_core::Actor::system(), user(name, seed)).await.unwrap();
    }

    async fn create(&self, actor: &Actor, owner: &str, request: CreateVms) -> Result<Vec<Accepted>, Error> {
        self.platform.vms().create(actor, &username(owner), request, None).await.map(|outcome| outcome.accepted)
    }

    async fn wait(&self, operation: &Operation) -> Operation {
        self.platform.runtime().wait_operation(operation.id, WAIT).await.unwrap()
    }

    fn vms(&self, owner: &str) -> Vec<Vm> {
        self.store.query(|tx| tx.list_vms(&VmFilter { owner: Some(username(owner)), ..VmFilter::default() })).unwrap()
    }

    fn leases(&self) -> Vec<Lease> {
        self.store.query(|tx| tx.list_leases(None)).unwrap()
    }

    /// Waits until `count` notifications have been delivered.
    async fn events(&self, count: usize) -> Vec<NotificationEvent> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let events = self.notifier.events();
            if events.len() >= count {
                return events;
            }
            assert!(tokio::time::Instant::now() < deadline, "{count} notifications expected, got {events:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn vm_journey_on_every_store() {
    let dir = tempfile::tempdir().unwrap();
    for backend in BACKENDS {
        let rig = rig(backend, dir.path());
        rig.account("alice", 1).await;
        assert_eq!(rig.sim.folders(), ["basphere-vms/alice"], "{backend:?}: the owner's folder exists");

        let accepted = rig.create(&alice(), "alice", request("web", 3)).await.unwrap();
        let names: Vec<String> = accepted.iter().map(|a| a.vm.name.to_string()).collect();
        assert_eq!(names, ["web-1", "web-2", "web-3"], "{backend:?}");
        let ips: Vec<Ipv4Addr> = accepted.iter().map(|a| a.vm.ip.unwrap()).collect();
        assert_eq!(
            ips,
            [Ipv4Addr::new(10, 254, 0, 32), Ipv4Addr::new(10, 254, 0, 33), Ipv4Addr::new(10, 254, 0, 34)],
            "{backend:?}: lowest addresses of alice's block"
        );
        for item in &accepted {
            let done = rig.wait(&item.operation).await;
            assert_eq!(done.state, OperationState::Succeeded, "{backend:?}: {done:?}");
            assert!(done.steps.iter().all(|s| s.state == StepState::Done));
            assert!(!done.log_tail.is_empty(), "the backend's log reaches the operation");
        }
        let vms = rig.vms("alice");
        assert!(vms.iter().all(|vm| vm.state == VmState::Running && vm.backend_id.is_some()), "{backend:?}: {vms:?}");
        assert!(rig.leases().iter().all(|l| l.state == LeaseState::Active));

        let simulated = rig.sim.vm("alice-web-2").expect("in vSphere as <owner>-<name>");
        assert_eq!(simulated.folder, "basphere-vms/alice");
        let sent = simulated.clone.unwrap();
        assert_eq!(
            (sent.network.address, sent.network.prefix_len, sent.network.gateway),
            (Ipv4Addr::new(10, 254, 0, 33), 21, Ipv4Addr::new(10, 254, 0, 1))
        );
        assert_eq!(sent.network.interface, "ens192");
        assert_eq!((sent.cpu, sent.memory_mb, sent.disk_gb), (2, 8192, 50));
        assert_eq!(sent.ssh_key, user("alice", 1).ssh_key.as_str(), "the owner's key goes to the guest");

        let report = rig.platform.accounts().quota(&alice(), &username("alice")).await.unwrap();
        assert_eq!((report.usage.vms, report.usage.ips, report.usage.vcpus, report.usage.memory_mb), (3, 3, 6, 24576));
        assert_eq!(report.quota.max_vms, 10);
        let ready = rig.events(3).await;
        assert_eq!(ready.iter().filter(|e| matches!(e, NotificationEvent::VmReady { .. })).count(), 3);

        let stop =
            rig.platform.vms().power(&alice(), &username("alice"), &name("web-1"), PowerAction::Stop).await.unwrap();
        assert_eq!(rig.wait(&stop).await.state, OperationState::Succeeded);
        assert_eq!(rig.store.vm(&username("alice"), &name("web-1")).unwrap().state, VmState::Stopped);
        let error = rig
            .platform
            .vms()
            .power(&alice(), &username("alice"), &name("web-1"), PowerAction::Reboot)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "conflict", "reboot of a stopped VM");
        let start =
            rig.platform.vms().power(&alice(), &username("alice"), &name("web-1"), PowerAction::Start).await.unwrap();
        assert_eq!(rig.wait(&start).await.state, OperationState::Succeeded);
        assert_eq!(rig.store.vm(&username("alice"), &name("web-1")).unwrap().state, VmState::Running);

        let delete = rig.platform.vms().delete(&alice(), &username("alice"), &name("web-2")).await.unwrap();
        assert_eq!(rig.wait(&delete).await.state, OperationState::Succeeded);
        assert!(rig.sim.vm("alice-web-2").is_none(), "{backend:?}: gone from vSphere");
        assert!(
            rig.store.query(|tx| tx.get_lease(None, Ipv4Addr::new(10, 254, 0, 33))).unwrap().is_none(),
            "address released after the VM is gone"
        );
        assert_eq!(rig.vms("alice").len(), 2);
        let history = rig.store.query(|tx| tx.get_vm(accepted[1].vm.id)).unwrap().unwrap();
        assert_eq!(history.state, VmState::Deleted, "deleted VMs stay as history");

        let again = rig.create(&alice(), "alice", request("web-2", 1)).await.unwrap();
        assert_eq!(again[0].vm.ip, Some(Ipv4Addr::new(10, 254, 0, 33)), "the freed name and address are reused");
        rig.wait(&again[0].operation).await;

        let audit = rig
            .store
            .query(|tx| tx.list_audit(&AuditFilter { actor: Some("alice".into()), ..AuditFilter::default() }))
            .unwrap();
        let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            ["vm.create", "vm.create", "vm.create", "stop_vm", "start_vm", "delete_vm", "vm.create"],
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn bad_requests_are_refused_and_record_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for backend in BACKENDS {
        let rig = rig(backend, dir.path());
        rig.account("alice", 1).await;
        let cases: Vec<(CreateVms, &str, &str)> = vec![
            (request("web", 0), "invalid-input", "1-10"),
            (request("web", 11), "invalid-input", "1-10"),
            (request("Web", 1), "invalid-input", "lowercase letter first"),
            (request("../etc", 1), "invalid-input", "lowercase letter first"),
            (request("web--1", 1), "invalid-input", "single hyphens"),
            (CreateVms { os: "windows".into(), ..request("web", 1) }, "invalid-input", "rocky-10.1, ubuntu-24.04"),
            (
                CreateVms { spec: "giant".into(), ..request("web", 1) },
                "invalid-input",
                "huge, large, medium, small, tiny",
            ),
            (request("web", 10).clone(), "ok", ""),
            (request("more", 1), "quota-exceeded", "vms"),
        ];
        for (request, kind, message) in cases {
            let result = rig.create(&alice(), "alice", request.clone()).await;
            match (kind, result) {
                ("ok", Ok(accepted)) => {
                    for item in &accepted {
                        rig.wait(&item.operation).await;
                    }
                }
                (_, Err(error)) => {
                    assert_eq!(error.kind(), kind, "{backend:?} {request:?}: {error}");
                    assert!(error.to_string().contains(message), "{request:?}: {error}");
                }
                (_, Ok(accepted)) => panic!("{backend:?} {request:?} must be refused, got {} VMs", accepted.len()),
            }
        }
        assert_eq!(rig.vms("alice").len(), 10);
        assert_eq!(rig.leases().len(), 10, "no address leaked by refused requests");

        let error = rig.create(&Actor::user(&username("ghost"), "test"), "ghost", request("web", 1)).await.unwrap_err();
        assert_eq!(error.kind(), "not-found");
        let mut suspended = user("sam", 9);
        suspended.status = UserStatus::Suspended;
        rig.platform.accounts().provision(&basphere_core::Actor::system(), suspended).await.unwrap();
        let error = rig.create(&Actor::user(&username("sam"), "test"), "sam", request("web", 1)).await.unwrap_err();
        assert_eq!(error.kind(), "forbidden", "a suspended account creates nothing");
        let denied = rig
            .store
            .query(|tx| tx.list_audit(&AuditFilter::default()))
            .unwrap()
            .into_iter()
            .filter(|e| e.outcome == Outcome::Denied)
            .count();
        assert_eq!(denied, 2, "quota and suspension refusals are audited");
    }
}

#[tokio::test]
async fn users_cannot_see_or_touch_each_others_vms() {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig(Backend::SqliteMemory, dir.path());
    rig.account("alice", 1).await;
    rig.account("bob", 2).await;
    let accepted = rig.create(&alice(), "alice", request("web", 1)).await.unwrap();
    rig.wait(&accepted[0].operation).await;
    let bob = Actor::user(&username("bob"), "test");
    let error = rig.platform.vms().delete(&bob, &username("alice"), &name("web")).await.unwrap_err();
    assert_eq!(error.kind(), "not-found", "another user's VM is not disclosed");
    let error = rig.platform.vms().power(&bob, &username("alice"), &name("web"), PowerAction::Stop).await.unwrap_err();
    assert_eq!(error.kind(), "not-found");
    let error = rig.create(&bob, "alice", request("evil", 1)).await.unwrap_err();
    assert_eq!(error.kind(), "forbidden");
    let bobs = rig.create(&bob, "bob", request("web", 1)).await.unwrap();
    assert_eq!(bobs[0].vm.ip, Some(Ipv4Addr::new(10, 254, 0, 64)), "bob's block is his own");
    rig.wait(&bobs[0].operation).await;
    let admin = Actor::admin("root", "unix:uid=0");
    let delete = rig.platform.vms().delete(&admin, &username("alice"), &name("web")).await.unwrap();
    assert_eq!(rig.wait(&delete).await.state, OperationState::Succeeded, "an admin may act for any owner");
    assert!(rig.sim.vm("bob-web").is_some());
}

#[tokio::test]
async fn failed_creates_clean_up_and_free_the_address_only_when_the_vm_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig(Backend::SqliteFile, dir.path());
    rig.account("alice", 1).await;

    rig.faults.inject(Method::CreateVm, Fault::Fail, 1);
    let failed = rig.create(&alice(), "alice", request("one", 1)).await.unwrap();
    let op = rig.wait(&failed[0].operation).await;
    assert_eq!(op.state, OperationState::Failed);
    assert!(op.error.as_deref().unwrap().contains("creation failed"), "{op:?}");
    assert!(
        op.log_tail.iter().any(|line| line.contains("fault injected")),
        "the backend's log tail: {:?}",
        op.log_tail
    );
    let vm = rig.store.vm(&username("alice"), &name("one")).unwrap();
    assert_eq!((vm.state, vm.ip), (VmState::Failed, None));
    assert!(rig.leases().is_empty(), "address freed: the backend confirmed nothing is there");

    rig.faults.inject(Method::CreateVm, Fault::FailAfter, 1);
    let half = rig.create(&alice(), "alice", request("two", 1)).await.unwrap();
    assert_eq!(rig.wait(&half[0].operation).await.state, OperationState::Failed);
    assert!(rig.sim.vm("alice-two").is_none(), "the half-made VM was removed, no stray VM");
    assert!(rig.leases().is_empty());

    rig.faults.inject(Method::CreateVm, Fault::FailAfter, 1);
    rig.faults.inject(Method::DestroyVm, Fault::Fail, 1);
    let stuck = rig.create(&alice(), "alice", request("three", 1)).await.unwrap();
    let op = rig.wait(&stuck[0].operation).await;
    assert!(op.error.unwrap().contains("stays reserved"));
    assert!(rig.sim.vm("alice-three").is_some());
    assert_eq!(rig.leases().len(), 1, "the address stays leased while the VM may exist");
    let delete = rig.platform.vms().delete(&alice(), &username("alice"), &name("three")).await.unwrap();
    assert_eq!(rig.wait(&delete).await.state, OperationState::Succeeded);
    assert!(rig.sim.vm("alice-three").is_none() && rig.leases().is_empty());

    let failed_events =
        rig.events(3).await.into_iter().filter(|e| matches!(e, NotificationEvent::VmFailed { .. })).count();
    assert_eq!(failed_events, 3);
}

#[tokio::test]
async fn a_failed_destroy_keeps_the_vm_and_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig(Backend::Memory, dir.path());
    rig.account("alice", 1).await;
    let accepted = rig.create(&alice(), "alice", request("web", 1)).await.unwrap();
    rig.wait(&accepted[0].operation).await;
    rig.faults.inject(Method::DestroyVm, Fault::Fail, 1);
    let delete = rig.platform.vms().delete(&alice(), &username("alice"), &name("web")).await.unwrap();
    let op = rig.wait(&delete).await;
    assert_eq!(op.state, OperationState::Failed);
    let vm = rig.store.vm(&username("alice"), &name("web")).unwrap();
    assert_eq!(vm.state, VmState::Failed);
    assert_eq!(vm.ip, Some(Ipv4Addr::new(10, 254, 0, 32)), "original.md §13.2 item 4: the address is not freed");
    assert_eq!(rig.leases().len(), 1);
    assert!(rig.sim.vm("alice-web").is_some());
    let retry = rig.platform.vms().delete(&alice(), &username("alice"), &name("web")).await.unwrap();
    assert_eq!(rig.wait(&retry).await.state, OperationState::Succeeded);
    assert!(rig.leases().is_empty());
}

/// A VM backend whose creates wait until the test lets them through, so that a test can act
/// while a create is in progress for as long as it needs, however slow the machine.
struct Gated {
    inner: Arc<MockProvisioner>,
    creates: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl basphere_core::Provisioner for Gated {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    async fn preflight(&self) -> basphere_core::Result<()> {
        self.inner.preflight().await
    }
    async fn ensure_folder(&self, owner: &basphere_core::validate::Username) -> basphere_core::Result<()> {
        self.inner.ensure_folder(owner).await
    }
    async fn create_vm(
        &self,
        request: &basphere_core::provisioner::VmRequest,
    ) -> basphere_core::Result<basphere_core::provisioner::VmHandle> {
        self.creates.acquire().await.expect("the gate is never closed").forget();
        self.inner.create_vm(request).await
    }
    async fn destroy_vm(&self, vm: &basphere_core::provisioner::VmRef) -> basphere_core::Result<()> {
        self.inner.destroy_vm(vm).await
    }
    async fn power(
        &self,
        vm: &basphere_core::provisioner::VmRef,
        action: PowerAction,
    ) -> basphere_core::Result<basphere_core::provisioner::PowerState> {
        self.inner.power(vm, action).await
    }
    async fn inventory(&self) -> basphere_core::Result<Vec<basphere_core::provisioner::InventoryVm>> {
        self.inner.inventory().await
    }
}

#[tokio::test]
async fn one_operation_at_a_time_per_vm() {
    let config = Arc::new(Config::default());
    let store: Arc<dyn Store> = Arc::new(basphere_core::MemoryStore::new());
    let gated = Arc::new(Gated {
        inner: Arc::new(MockProvisioner::with_default_catalog()),
        creates: tokio::sync::Semaphore::new(0),
    });
    let platform = Platform::new(
        config.clone(),
        store,
        block_ipam(config.pools.clone()),
        gated.clone(),
        Arc::new(RecordingNotifier::new()),
    );
    platform.accounts().provision(&basphere_core::Actor::system(), user("alice", 1)).await.unwrap();
    let accepted = platform.vms().create(&alice(), &username("alice"), request("web", 1), None).await.unwrap().accepted;
    // The create is held at the backend: a delete of the same VM is refused meanwhile.
    let error = platform.vms().delete(&alice(), &username("alice"), &name("web")).await.unwrap_err();
    assert_eq!(error.kind(), "conflict");
    assert!(error.to_string().contains("in progress"), "{error}");
    gated.creates.add_permits(1);
    let created = platform.runtime().wait_operation(accepted[0].operation.id, WAIT).await.unwrap();
    assert_eq!(created.state, OperationState::Succeeded);
    let delete = platform.vms().delete(&alice(), &username("alice"), &name("web")).await.unwrap();
    assert_eq!(platform.runtime().wait_operation(delete.id, WAIT).await.unwrap().state, OperationState::Succeeded);
}

#[tokio::test]
async fn notifications_are_retried_and_never_fail_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig(Backend::Memory, dir.path());
    rig.account("alice", 1).await;
    rig.notifier.fail_next(1);
    let accepted = rig.create(&alice(), "alice", request("web", 1)).await.unwrap();
    assert_eq!(rig.wait(&accepted[0].operation).await.state, OperationState::Succeeded);
    let events = rig.events(1).await;
    assert!(matches!(events[0], NotificationEvent::VmReady { .. }), "{events:?}");
    assert!(rig.notifier.attempts() >= 2, "the refused delivery was retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_creates_by_one_user_with_quota_ten_record_exactly_ten() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Arc::new(rig(Backend::SqliteFile, dir.path()));
    rig.account("alice", 1).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let rig = rig.clone();
            tokio::spawn(async move {
                rig.create(&alice(), "alice", CreateVms { spec: "tiny".into(), ..request(&format!("vm-{i}"), 1) }).await
            })
        })
        .collect();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(items) => accepted.extend(items),
            Err(error) => {
                assert_eq!(error.kind(), "quota-exceeded", "{error}");
                refused += 1;
            }
        }
    }
    assert_eq!((accepted.len(), refused), (10, 40));
    rig.platform.runtime().wait_idle(WAIT).await.unwrap();
    assert_eq!(rig.vms("alice").len(), 10);
    assert_eq!(rig.leases().len(), 10);
    assert_eq!(rig.sim.vms().len(), 10, "vSphere holds exactly what the store records");

    // Five concurrent creates of one name: one VM, four conflicts, nothing leaked.
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let rig = rig.clone();
            tokio::spawn(async move {
                rig.create(&Actor::admin("root", "test"), "alice", request("vm-0", 1)).await.map(|v| v.len())
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap().map_err(|e| e.kind()));
    }
    assert!(outcomes.iter().all(|o| *o == Err("already-exists") || *o == Err("quota-exceeded")), "{outcomes:?}");
    assert_eq!(rig.leases().len(), 10);
}

#[test]
fn interrupted_operations_are_resumed_after_a_restart_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restart.db");
    let sim = Arc::new(MockProvisioner::with_default_catalog());

    // First life: the backend makes two VMs but the process dies before recording them; two
    // more are still queued behind a slow call.
    let first = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let operations = first.block_on(async {
        let store: Arc<dyn Store> = Arc::new(basphere_store::SqliteStore::open(&path).unwrap());
        let rig = rig_with(store, sim.clone());
        rig.account("alice", 1).await;
        rig.faults.inject(Method::CreateVm, Fault::HangAfter(Duration::from_secs(3600)), 2);
        rig.faults.inject(Method::CreateVm, Fault::Hang(Duration::from_secs(3600)), 2);
        let accepted = rig.create(&alice(), "alice", request("web", 4)).await.unwrap();
        // Wait for the four calls to be caught by their faults, however long that takes.
        let deadline = tokio::time::Instant::now() + WAIT;
        while !(rig.faults.injected() == 4 && sim.vms().len() == 2) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} faults hit, {} VMs in vSphere",
                rig.faults.injected(),
                sim.vms().len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        accepted.into_iter().map(|a| a.operation.id).collect::<Vec<_>>()
    });
    first.shutdown_timeout(Duration::from_millis(100));

    // Second life: the unfinished operations are found and finished; existing VMs are adopted.
    let second = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    second.block_on(async {
        let store: Arc<dyn Store> = Arc::new(basphere_store::SqliteStore::open(&path).unwrap());
        let rig = rig_with(store, sim.clone());
        let mut resumed = rig.platform.runtime().resume_unfinished().await.unwrap();
        resumed.sort();
        let mut expected = operations.clone();
        expected.sort();
        assert_eq!(resumed, expected, "every interrupted operation is resumed");
        rig.platform.runtime().wait_idle(WAIT).await.unwrap();
        for id in &operations {
            assert_eq!(rig.store.operation(*id).unwrap().state, OperationState::Succeeded);
        }
        let names: Vec<String> = sim.vms().into_iter().map(|vm| vm.vsphere_name).collect();
        assert_eq!(names, ["alice-web-1", "alice-web-2", "alice-web-3", "alice-web-4"], "no duplicate, no orphan");
        assert!(rig.vms("alice").iter().all(|vm| vm.state == VmState::Running));
        assert_eq!(rig.leases().len(), 4);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotency_key_makes_a_retried_create_return_the_first_answer() {
    let dir = tempfile::tempdir().unwrap();
    for backend in BACKENDS {
        let rig = Arc::new(rig(backend, dir.path()));
        rig.account("alice", 1).await;
        let owner = username("alice");
        let first = rig.platform.vms().create(&alice(), &owner, request("web", 2), Some("key-1")).await.unwrap();
        assert!(!first.replayed);
        let again = rig.platform.vms().create(&alice(), &owner, request("web", 2), Some("key-1")).await.unwrap();
        assert!(again.replayed, "{backend:?}");
        let ids =
            |o: &basphere_core::platform::CreateOutcome| o.accepted.iter().map(|a| a.operation.id).collect::<Vec<_>>();
        assert_eq!(ids(&again), ids(&first), "the same operations come back");
        let error = rig.platform.vms().create(&alice(), &owner, request("db", 1), Some("key-1")).await.unwrap_err();
        assert_eq!(error.kind(), "conflict", "a key reused for another request");
        let error = rig.platform.vms().create(&alice(), &owner, request("db", 1), Some("bad key\n")).await.unwrap_err();
        assert_eq!(error.kind(), "invalid-input");

        // Five concurrent retries with one key: one creation, five identical answers.
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let rig = rig.clone();
                tokio::spawn(async move {
                    rig.platform
                        .vms()
                        .create(&alice(), &username("alice"), request("api", 1), Some("key-2"))
                        .await
                        .map(|o| o.accepted[0].vm.id)
                })
            })
            .collect();
        let mut vm_ids = Vec::new();
        for task in tasks {
            vm_ids.push(task.await.unwrap().unwrap());
        }
        vm_ids.dedup();
        assert_eq!(vm_ids.len(), 1, "{backend:?}: one VM for one key");
        rig.platform.runtime().wait_idle(WAIT).await.unwrap();
        assert_eq!(rig.vms("alice").len(), 3);
        assert_eq!(rig.sim.vms().len(), 3);
    }
}

#[tokio::test]
async fn tokens_are_shown_once_stored_hashed_and_revocable() {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig(Backend::SqliteMemory, dir.path());
    rig.account("alice", 1).await;
    rig.account("bob", 2).await;
    let owner = username("alice");
    let created =
        rig.platform.credentials().create_token(&alice(), &owner, "laptop", TokenScope::User, None).await.unwrap();
    assert!(created.secret.starts_with("bsp_") && created.secret.len() == 68);
    let stored = rig.store.query(|tx| tx.get_token(created.token.id)).unwrap().unwrap();
    assert_ne!(stored.secret_hash, created.secret, "only the hash is stored");
    let (user, _) = rig.platform.credentials().authenticate_token(&created.secret).await.unwrap();
    assert_eq!(user.username, owner);
    assert_eq!(rig.platform.credentials().authenticate_token("bsp_wrong").await.unwrap_err().kind(), "unauthenticated");

    let error =
        rig.platform.credentials().create_token(&alice(), &owner, "root", TokenScope::Admin, None).await.unwrap_err();
    assert_eq!(error.kind(), "forbidden", "users cannot mint admin tokens");
    let error = rig
        .platform
        .credentials()
        .create_token(&alice(), &username("bob"), "steal", TokenScope::User, None)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "forbidden");
    let past = now() - chrono::Duration::minutes(1);
    assert_eq!(
        rig.platform
            .credentials()
            .create_token(&alice(), &owner, "old", TokenScope::User, Some(past))
            .await
            .unwrap_err()
            .kind(),
        "invalid-input"
    );

    let bob = Actor::user(&username("bob"), "test");
    assert_eq!(
        rig.platform.credentials().revoke_token(&bob, created.token.id).await.unwrap_err().kind(),
        "not-found",
        "another user's token is not disclosed"
    );
    rig.platform.credentials().revoke_token(&alice(), created.token.id).await.unwrap();
    assert_eq!(
        rig.platform.credentials().authenticate_token(&created.secret).await.unwrap_err().kind(),
        "unauthenticated",
        "a revoked token no longer works"
    );
}

#[tokio::test]
async fn the_reconciler_keeps_records_true_to_vsphere_and_reports_strays() {
    let dir = tempfile::tempdir().unwrap();
    for backend in BACKENDS {
        let rig = rig(backend, dir.path());
        rig.account("alice", 1).await;
        let accepted = rig.create(&alice(), "alice", request("web", 3)).await.unwrap();
        for item in &accepted {
            rig.wait(&item.operation).await;
        }
        let quiet = rig.platform.vms().reconcile().await.unwrap();
        assert!(
            quiet.lost.is_empty()
                && quiet.power_changed.is_empty()
                && quiet.found.is_empty()
                && quiet.strays.is_empty(),
            "{backend:?}: nothing to do when both agree: {quiet:?}"
        );

        // Behind Basphere's back: one VM deleted, one powered off, one VM planted.
        rig.sim.remove_out_of_band("alice-web-1").unwrap();
        let web2 = basphere_core::provisioner::VmRef {
            id: accepted[1].vm.id,
            owner: username("alice"),
            vsphere_name: "alice-web-2".into(),
            backend_id: None,
        };
        basphere_core::Provisioner::power(&*rig.sim, &web2, PowerAction::Stop).await.unwrap();
        rig.sim.plant("basphere-vms/alice", "alice-manual");
        rig.sim.plant("other-folder", "not-ours");

        let report = rig.platform.vms().reconcile().await.unwrap();
        assert_eq!(report.lost, ["alice/web-1"], "{backend:?}");
        assert_eq!(report.power_changed, [("alice/web-2".to_owned(), VmState::Stopped)]);
        let strays: Vec<&str> = report.strays.iter().map(|vm| vm.vsphere_name.as_str()).collect();
        assert_eq!(strays, ["alice-manual"], "only Basphere's folders are watched");
        let web1 = rig.store.vm(&username("alice"), &name("web-1")).unwrap();
        assert_eq!(web1.state, VmState::Lost);
        assert!(web1.reason.unwrap().contains("no longer in vSphere"));
        assert_eq!(web1.ip, Some(Ipv4Addr::new(10, 254, 0, 32)), "a lost VM keeps its address until deleted");
        assert!(rig.sim.vm("alice-manual").is_some(), "strays are never deleted");

        // A second pass changes nothing and audits the stray only once.
        let again = rig.platform.vms().reconcile().await.unwrap();
        assert!(again.lost.is_empty() && again.power_changed.is_empty());
        assert_eq!(again.strays.len(), 1);
        let stray_audits = rig
            .store
            .query(|tx| tx.list_audit(&AuditFilter::default()))
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "vm.stray")
            .count();
        assert_eq!(stray_audits, 1);

        // Deleting a lost VM succeeds (gone is gone) and frees its address.
        let delete = rig.platform.vms().delete(&alice(), &username("alice"), &name("web-1")).await.unwrap();
        assert_eq!(rig.wait(&delete).await.state, OperationState::Succeeded);
        assert!(rig.store.query(|tx| tx.get_lease(None, Ipv4Addr::new(10, 254, 0, 32))).unwrap().is_none());
    }
}

/// The reconciler reads the records a page at a time: with more VMs than a few pages hold,
/// every record is compared (one gone from vSphere is found lost on any page, the first and the
/// last included) and none of vSphere's VMs is taken for a stray.
#[tokio::test]
async fn the_reconciler_compares_every_record_page_after_page() {
    let dir = tempfile::tempdir().unwrap();
    for backend in BACKENDS {
        // No reconciler of the background's in between: each change is reported by the pass
        // that made it.
        let sim = Arc::new(MockProvisioner::with_default_catalog());
        let rig = rig_configured(backend.open(dir.path()), sim, "reconcile: {interval_seconds: 0}");
        rig.account("alice", 1).await;
        let owner = username("alice");
        const VMS: usize = 1_201;
        rig.store
            .transact(|tx| {
                for n in 0..VMS {
                    let mut vm = basphere_core::testing::store::vm(&owner, &format!("vm-{n}"));
                    vm.state = VmState::Running;
                    tx.insert_vm(&vm)?;
                }
                Ok(())
            })
            .unwrap();
        for n in 0..VMS {
            rig.sim.plant("basphere-vms/alice", &format!("alice-vm-{n}"));
        }
        let quiet = rig.platform.vms().reconcile().await.unwrap();
        assert!(quiet.lost.is_empty() && quiet.strays.is_empty(), "{backend:?}: all {VMS} known: {quiet:?}");

        for n in [0, 499, 500, 1000, VMS - 1] {
            rig.sim.remove_out_of_band(&format!("alice-vm-{n}")).unwrap();
        }
        rig.sim.plant("basphere-vms/alice", "alice-manual");
        let report = rig.platform.vms().reconcile().await.unwrap();
        let mut lost = report.lost.clone();
        lost.sort();
        assert_eq!(
            lost,
            ["alice/vm-0", "alice/vm-1000", "alice/vm-1200", "alice/vm-499", "alice/vm-500"],
            "{backend:?}"
        );
        let strays: Vec<&str> = report.strays.iter().map(|vm| vm.vsphere_name.as_str()).collect();
        assert_eq!(strays, ["alice-manual"], "{backend:?}");
        let live = rig
            .store
            .query(|tx| tx.list_vms(&VmFilter { state: Some(VmState::Running), ..VmFilter::default() }))
            .unwrap();
        assert_eq!(live.len(), VMS - 5, "{backend:?}");
    }
}

/// A VM made while the reconciler waits for vSphere's listing is not in that listing: it must
/// not be taken for a VM that vanished.
#[tokio::test]
async fn a_vm_made_while_the_reconciler_reads_vsphere_is_not_marked_lost() {
    let dir = tempfile::tempdir().unwrap();
    for backend in BACKENDS {
        // Reconciled by the test alone: no background pass takes the injected answer.
        let sim = Arc::new(MockProvisioner::with_default_catalog());
        let rig = rig_configured(
            backend.open(dir.path()),
            sim,
            "work: {notification_retry_seconds: 1}\nreconcile: {interval_seconds: 0}",
        );
        rig.account("alice", 1).await;
        let first = rig.create(&alice(), "alice", request("before", 1)).await.unwrap();
        rig.wait(&first[0].operation).await;
        // vSphere's answer leaves at once and arrives after a create has finished.
        rig.faults.inject(Method::Inventory, Fault::DelayAfter(Duration::from_millis(700)), 1);
        let platform = rig.platform.clone();
        let reconcile = tokio::spawn(async move { platform.vms().reconcile().await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let made = rig.create(&alice(), "alice", request("during", 1)).await.unwrap();
        assert_eq!(rig.wait(&made[0].operation).await.state, OperationState::Succeeded, "{backend:?}");
        assert!(!reconcile.is_finished(), "{backend:?}: the create finished while the listing was on its way");
        let report = reconcile.await.unwrap().unwrap();
        assert!(report.lost.is_empty(), "{backend:?}: {report:?}");
        let during = rig.store.vm(&username("alice"), &name("during")).unwrap();
        assert_eq!(during.state, VmState::Running, "{backend:?}");
        // The next pass, with an answer that includes it, agrees too.
        assert!(rig.platform.vms().reconcile().await.unwrap().lost.is_empty(), "{backend:?}");
    }
}

#[tokio::test]
async fn a_refused_request_is_audited_with_a_bounded_excerpt() {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig(Backend::SqliteMemory, dir.path());
    rig.account("alice", 1).await;
    let long = "a".repeat(10_000);
    let error = rig.create(&alice(), "alice", request(&long, 1)).await.unwrap_err();
    assert_eq!(error.kind(), "invalid-input");
    let events = rig.store.query(|tx| tx.list_audit(&AuditFilter::default())).unwrap();
    let refused = events.iter().find(|e| e.action == "vm.create").expect("the refusal is audited");
    assert!(refused.resource.len() < 200, "{}", refused.resource.len());
    assert!(refused.details.to_string().len() < 1000, "{}", refused.details);
    assert!(refused.resource.contains("10000 characters"), "{}", refused.resource);
}

/// An installation of the original (the importer's broken fixture) imported into every store:
/// reconciliation then squares the imported VMs with vSphere, and the imported addresses are
/// Basphere's to manage (an imported VM is deleted, a new one takes a free address of the block).
#[tokio::test]
async fn an_imported_original_installation_is_reconciled_and_managed() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../basphere-import/tests/fixtures/broken");
    let original = basphere_import::Original::read(&root).unwrap();
    for backend in BACKENDS {
        // Reconciliation only when the test asks for it.
        let rig = rig_configured(
            backend.open(dir.path()),
            Arc::new(MockProvisioner::with_default_catalog()),
            "work: {notification_retry_seconds: 1}\nreconcile: {interval_seconds: 0}",
        );
        let plan =
            basphere_import::import(&original, &rig.platform.config().pools, &*rig.store, "root", false).unwrap();
        assert!(plan.conflicts.is_empty() && plan.vms.len() == 6, "{backend:?}: {}", plan.report("fixture", false));
        // Before reconciliation has marked them, imported VMs cannot be changed in vSphere, and
        // none is deleted (no address is freed while its VM may still run).
        let refused =
            rig.platform.vms().power(&alice(), &username("alice"), &name("web"), PowerAction::Stop).await.unwrap_err();
        assert!(refused.to_string().contains("reconcile --now"), "{backend:?}: {refused}");
        let refused = rig.platform.vms().delete(&alice(), &username("alice"), &name("web")).await.unwrap_err();
        assert_eq!(refused.kind(), "conflict", "{backend:?}: {refused}");
        // vSphere has the folders the original made at approval, alice-web and the VM whose
        // metadata was lost; db, api and big are gone.
        for owner in ["alice", "bob"] {
            basphere_core::Provisioner::ensure_folder(&*rig.sim, &username(owner)).await.unwrap();
        }
        rig.sim.plant("basphere-vms/alice", "alice-web");
        rig.sim.plant("basphere-vms/alice", "alice-cache");
        let report = rig.platform.vms().reconcile().await.unwrap();
        assert!(report.strays.is_empty(), "{backend:?}: the planted VMs are the imported ones: {report:?}");
        let state = |vm: &str| rig.store.vm(&username("alice"), &name(vm)).unwrap().state;
        assert_eq!(state("cache"), VmState::Running, "{backend:?}: found in vSphere: {report:?}");
        assert_eq!(state("web"), VmState::Running, "{backend:?}");
        for gone in ["api", "big", "db"] {
            assert_eq!(state(gone), VmState::Lost, "{backend:?}: {gone} is not in vSphere");
        }
        // The imported VMs vSphere has are marked as Basphere's (adopted); the others no longer
        // wait for it.
        assert!(rig
            .store
            .query(|tx| tx.list_vms(&VmFilter::default()))
            .unwrap()
            .iter()
            .all(|vm| !vm.awaits_adoption()));
        let web = rig.store.vm(&username("alice"), &name("web")).unwrap();
        assert_eq!(rig.sim.vm("alice-web").unwrap().basphere_id, Some(web.id), "{backend:?}");
        assert_eq!(rig.store.vm(&username("alice"), &name("cache")).unwrap().state, VmState::Running);
        assert_eq!(rig.store.vm(&username("bob"), &name("ci")).unwrap().state, VmState::Failed, "failed stays failed");

        // An imported VM is Basphere's to manage now: deleting alice-web destroys it in vSphere.
        let delete = rig.platform.vms().delete(&alice(), &username("alice"), &name("web")).await.unwrap();
        assert_eq!(rig.wait(&delete).await.state, OperationState::Succeeded, "{backend:?}");
        assert!(rig.sim.vm("alice-web").is_none(), "{backend:?}: destroyed in vSphere, not only forgotten");

        // Deleting an imported VM frees its imported lease.
        let delete = rig.platform.vms().delete(&alice(), &username("alice"), &name("db")).await.unwrap();
        assert_eq!(rig.wait(&delete).await.state, OperationState::Succeeded, "{backend:?}");
        assert!(rig.store.query(|tx| tx.get_lease(None, Ipv4Addr::new(10, 254, 0, 33))).unwrap().is_none());
        // A new VM takes the lowest free address of alice's imported block: .32, web's, freed.
        let accepted = rig.create(&alice(), "alice", request("new", 1)).await.unwrap();
        let done = rig.wait(&accepted[0].operation).await;
        assert_eq!(done.state, OperationState::Succeeded, "{backend:?}: {done:?}");
        let new = rig.store.vm(&username("alice"), &name("new")).unwrap();
        assert_eq!(new.ip, Some(Ipv4Addr::new(10, 254, 0, 32)), "{backend:?}");
    }
}
