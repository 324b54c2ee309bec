//! Durable background work across processes: two platforms sharing one SQLite file never run
//! the same operation at once, a platform that dies leaves its work to the other, and every
//! notification is delivered through the outbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use basphere_core::mock::{MockDelays, MockProvisioner, RecordingNotifier};
use basphere_core::model::*;
use basphere_core::platform::CreateVms;
use basphere_core::provisioner::*;
use basphere_core::store::{OperationFilter, OutboxFilter};
use basphere_core::testing::{user, username};
use basphere_core::validate::Username;
use basphere_core::{Actor, Config, Platform, Result, Store, StoreExt};
use tests::block_ipam;

/// Wraps a provisioner and records, for every VM, how many calls for it run at once: the
/// platform promises never more than one.
struct OverlapDetector {
    inner: Arc<dyn Provisioner>,
    in_flight: Mutex<HashMap<String, u32>>,
    overlaps: Mutex<Vec<String>>,
    calls: Mutex<HashMap<String, u32>>,
}

impl OverlapDetector {
    fn new(inner: Arc<dyn Provisioner>) -> Self {
        OverlapDetector {
            inner,
            in_flight: Mutex::new(HashMap::new()),
            overlaps: Mutex::new(Vec::new()),
            calls: Mutex::new(HashMap::new()),
        }
    }

    async fn around<T>(&self, vm: &str, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        {
            let mut in_flight = self.in_flight.lock().unwrap();
            let count = in_flight.entry(vm.to_owned()).or_default();
            *count += 1;
            if *count > 1 {
                self.overlaps.lock().unwrap().push(vm.to_owned());
            }
            *self.calls.lock().unwrap().entry(vm.to_owned()).or_default() += 1;
        }
        // Counted down even when the call is dropped (the process died under it).
        let _done = Done(self, vm.to_owned());
        call.await
    }
}

struct Done<'a>(&'a OverlapDetector, String);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        if let Some(count) = self.0.in_flight.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&self.1) {
            *count -= 1;
        }
    }
}

#[async_trait]
impl Provisioner for OverlapDetector {
    fn backend_name(&self) -> &'static str {
        "overlap-detector"
    }
    async fn preflight(&self) -> Result<()> {
        self.inner.preflight().await
    }
    async fn ensure_folder(&self, owner: &Username) -> Result<()> {
        self.inner.ensure_folder(owner).await
    }
    async fn create_vm(&self, request: &VmRequest) -> Result<VmHandle> {
        self.around(&request.id.to_string(), self.inner.create_vm(request)).await
    }
    async fn destroy_vm(&self, vm: &VmRef) -> Result<()> {
        self.around(&vm.id.to_string(), self.inner.destroy_vm(vm)).await
    }
    async fn power(&self, vm: &VmRef, action: PowerAction) -> Result<PowerState> {
        self.around(&vm.id.to_string(), self.inner.power(vm, action)).await
    }
    async fn inventory(&self) -> Result<Vec<InventoryVm>> {
        self.inner.inventory().await
    }
}

fn config(workers: usize) -> Arc<Config> {
    let text = format!("server: {{workers: {workers}}}\nwork: {{lease_seconds: 1, notification_retry_seconds: 1}}\n");
    Arc::new(Config::from_yaml(&text).unwrap())
}

fn platform(
    instance: &str,
    workers: usize,
    store: Arc<dyn Store>,
    provisioner: Arc<dyn Provisioner>,
    notifier: Arc<RecordingNotifier>,
) -> Arc<Platform> {
    let config = config(workers);
    Platform::builder(config.clone(), store, block_ipam(config.pools.clone()), provisioner, notifier)
        .instance(instance)
        .build()
}

#[test]
fn two_platforms_on_one_database_never_run_an_operation_twice_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let sim = Arc::new(MockProvisioner::with_default_catalog().with_delays(MockDelays {
        clone: Duration::from_millis(40),
        power: Duration::from_millis(5),
        destroy: Duration::from_millis(10),
    }));
    let detector = Arc::new(OverlapDetector::new(sim.clone()));
    let notifier = Arc::new(RecordingNotifier::new());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    runtime.block_on(async {
        let open = || -> Arc<dyn Store> { Arc::new(basphere_store::SqliteStore::open(&path).unwrap()) };
        // Two workers each: most operations wait unclaimed, and both sweepers go for them.
        let a = platform("replica-a", 2, open(), detector.clone(), notifier.clone());
        let b = platform("replica-b", 2, open(), detector.clone(), notifier.clone());
        let _background_a = a.start_background();
        let _background_b = b.start_background();
        for name in ["alice", "bob"] {
            a.accounts()
                .provision(&basphere_core::Actor::system(), user(name, if name == "alice" { 1 } else { 2 }))
                .await
                .unwrap();
            a.accounts()
                .set_quota_override(
                    &Actor::admin("root", "test"),
                    &username(name),
                    Some(QuotaOverride {
                        max_vms: Some(40),
                        max_ips: Some(40),
                        max_vcpus: Some(400),
                        max_memory_mb: Some(1_000_000),
                        max_disk_gb: Some(10_000),
                        ..QuotaOverride::default()
                    }),
                )
                .await
                .unwrap();
        }
        for round in 0..3 {
            for (platform, owner) in [(&a, "alice"), (&b, "bob")] {
                let request =
                    CreateVms { name: format!("r{round}"), os: "ubuntu-24.04".into(), spec: "tiny".into(), count: 10 };
                platform
                    .vms()
                    .create(&Actor::user(&username(owner), "test"), &username(owner), request, None)
                    .await
                    .unwrap();
            }
        }
        a.runtime().wait_idle(Duration::from_secs(60)).await.unwrap();
        b.runtime().wait_idle(Duration::from_secs(60)).await.unwrap();

        let overlaps = detector.overlaps.lock().unwrap().clone();
        assert!(overlaps.is_empty(), "calls for one VM ran at once: {overlaps:?}");
        let calls = detector.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 60, "every VM was made");
        assert!(calls.values().all(|count| *count == 1), "every create ran once: {calls:?}");
        assert_eq!(sim.vm_count(), 60);
        let store = open();
        let operations = store.query(|tx| tx.list_operations(&OperationFilter::default())).unwrap();
        assert!(operations.iter().all(|op| op.state == OperationState::Succeeded), "{operations:?}");
        // Every VM's readiness reaches people exactly once, whichever replica ran it.
        // A delivery is recorded just after the notifier took it: wait for both.
        let pending = || {
            store
                .query(|tx| {
                    tx.list_outbox(&OutboxFilter { state: Some(OutboxState::Pending), ..OutboxFilter::default() })
                })
                .unwrap()
        };
        wait_for(|| notifier.events().len() >= 60 && pending().is_empty()).await;
        let ready = notifier.events().iter().filter(|e| matches!(e, NotificationEvent::VmReady { .. })).count();
        assert_eq!(ready, 60);
    });
}

#[test]
fn a_replica_that_dies_leaves_its_operations_to_another_after_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let sim = Arc::new(MockProvisioner::with_default_catalog());
    let detector = Arc::new(OverlapDetector::new(sim.clone()));
    let notifier = Arc::new(RecordingNotifier::new());
    let open = || -> Arc<dyn Store> { Arc::new(basphere_store::SqliteStore::open(&path).unwrap()) };

    // Replica a accepts four creates and dies while the backend calls hang.
    let first = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let faults = Arc::new(basphere_core::mock::FaultInjectingProvisioner::new(detector.clone()));
    let ids = first.block_on(async {
        let a = platform("replica-a", 4, open(), faults.clone(), notifier.clone());
        a.accounts().provision(&basphere_core::Actor::system(), user("alice", 1)).await.unwrap();
        faults.inject(
            basphere_core::mock::Method::CreateVm,
            basphere_core::mock::Fault::HangAfter(Duration::from_secs(3600)),
            4,
        );
        let request = CreateVms { name: "web".into(), os: "ubuntu-24.04".into(), spec: "tiny".into(), count: 4 };
        let outcome =
            a.vms().create(&Actor::user(&username("alice"), "test"), &username("alice"), request, None).await.unwrap();
        wait_for(|| sim.vm_count() == 4).await;
        outcome.accepted.iter().map(|item| item.operation.id).collect::<Vec<_>>()
    });
    first.shutdown_timeout(Duration::from_millis(100));

    // Replica b finds the claims, waits for them to expire, and finishes the work, adopting
    // the VMs a made.
    let second = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    second.block_on(async {
        let store = open();
        let claimed: Vec<_> =
            ids.iter().map(|id| store.query(|tx| tx.operation_claim(*id)).unwrap().map(|c| c.worker)).collect();
        assert!(
            claimed.iter().all(|worker| worker.as_deref().is_some_and(|w| w.starts_with("replica-a/"))),
            "{claimed:?}"
        );
        let b = platform("replica-b", 4, store.clone(), detector.clone(), notifier.clone());
        let _background = b.start_background();
        for id in &ids {
            let done = b.runtime().wait_operation(*id, Duration::from_secs(30)).await.unwrap();
            assert_eq!(done.state, OperationState::Succeeded, "{done:?}");
        }
        assert_eq!(sim.vm_count(), 4, "the VMs a made were adopted, not made again");
        assert!(detector.overlaps.lock().unwrap().is_empty());
    });
}

async fn wait_for(mut condition: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the condition did not hold within 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_that_keeps_failing_is_dead_lettered_and_can_be_retried() {
    let store: Arc<dyn Store> = Arc::new(basphere_core::MemoryStore::new());
    let notifier = Arc::new(RecordingNotifier::new());
    let config =
        Arc::new(Config::from_yaml("work: {notification_attempts: 2, notification_retry_seconds: 1}\n").unwrap());
    let sim = Arc::new(MockProvisioner::with_default_catalog());
    let platform =
        Platform::new(config.clone(), store.clone(), block_ipam(config.pools.clone()), sim, notifier.clone());
    let _background = platform.start_background();
    platform.accounts().provision(&basphere_core::Actor::system(), user("alice", 1)).await.unwrap();
    notifier.fail_next(2);
    let request = CreateVms { name: "web".into(), os: "ubuntu-24.04".into(), spec: "tiny".into(), count: 1 };
    let alice = Actor::user(&username("alice"), "test");
    let outcome = platform.vms().create(&alice, &username("alice"), request, None).await.unwrap();
    platform.runtime().wait_operation(outcome.accepted[0].operation.id, Duration::from_secs(10)).await.unwrap();

    let admin = Actor::admin("root", "test");
    let dead = |platform: Arc<Platform>| async move {
        let query = basphere_core::platform::OutboxQuery { state: Some("dead".into()), ..Default::default() };
        platform.runtime().outbox(&Actor::admin("root", "test"), query).await.unwrap().items
    };
    let mut dead_now = Vec::new();
    for _ in 0..500 {
        dead_now = dead(platform.clone()).await;
        if !dead_now.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dead_now.len(), 1, "dead-lettered after two failed attempts");
    assert_eq!(dead_now[0].attempts, 2);
    assert!(dead_now[0].last_error.as_deref().is_some_and(|e| !e.is_empty()));
    assert!(notifier.events().is_empty(), "nothing was delivered");
    assert_eq!(
        platform.runtime().outbox(&alice, Default::default()).await.unwrap_err().kind(),
        "forbidden",
        "the outbox is for administrators"
    );

    let retried = platform.runtime().retry_notification(&admin, &dead_now[0].id.to_string()).await.unwrap();
    assert_eq!(retried.state, OutboxState::Pending);
    wait_for(|| notifier.events().len() == 1).await;
    assert!(matches!(notifier.events()[0], NotificationEvent::VmReady { .. }));
    let id = dead_now[0].id;
    let delivered = || store.query(|tx| tx.get_outbox(id)).unwrap().is_some_and(|m| m.state == OutboxState::Delivered);
    wait_for(delivered).await;
    let again = platform.runtime().retry_notification(&admin, &id.to_string()).await.unwrap_err();
    assert_eq!(again.kind(), "conflict", "only dead notifications are retried: {again}");
    let audited = store.query(|tx| tx.list_audit(&Default::default())).unwrap();
    assert!(audited.iter().any(|event| event.action == "notification.retry" && event.actor == "root"));
}

/// A server killed while delivering notifications holds their claims; when the same instance
/// starts again it takes them back at once, not after the claim window. Another instance's
/// claims are left alone until they run out.
#[tokio::test]
async fn a_restarted_instance_takes_back_the_notifications_it_was_delivering() {
    let store: Arc<dyn Store> = Arc::new(basphere_core::MemoryStore::new());
    let notifier = Arc::new(RecordingNotifier::new());
    let event = |name: &str| NotificationEvent::KeyChangeRequested { username: username(name) };
    let messages = [event("alice"), event("bob"), event("carol")].map(OutboxMessage::new);
    let later = now() + chrono::Duration::seconds(600);
    store
        .transact(|tx| {
            messages.iter().try_for_each(|message| tx.insert_outbox(message))?;
            // An earlier boot of `east` took two; the live replica `west` took the third.
            assert_eq!(tx.claim_outbox("east/earlier-boot", now(), later, 2)?.len(), 2);
            assert_eq!(tx.claim_outbox("west/its-boot", now(), later, 1)?.len(), 1);
            Ok(())
        })
        .unwrap();
    let sim = Arc::new(MockProvisioner::with_default_catalog());
    let east = platform("east", 1, store.clone(), sim, notifier.clone());
    assert_eq!(east.runtime().dispatch_outbox().await.unwrap(), 0, "nothing is due before the restart takes them back");

    east.runtime().resume_unfinished().await.unwrap();
    assert_eq!(east.runtime().dispatch_outbox().await.unwrap(), 2, "its own earlier claims are due at once");
    assert_eq!(notifier.events(), [event("alice"), event("bob")]);
    let stored = store.query(|tx| tx.list_outbox(&OutboxFilter::default())).unwrap();
    let states: Vec<_> = stored.iter().map(|m| (m.state, m.claimed_by.clone())).collect();
    assert_eq!(
        states,
        [
            (OutboxState::Delivered, None),
            (OutboxState::Delivered, None),
            (OutboxState::Pending, Some("west/its-boot".to_owned()))
        ],
        "another instance's claim is left to run out"
    );
}

/// Delivers on two channels, `hook` failing its first deliveries; records what each delivered.
#[derive(Default)]
struct TwoChannels {
    delivered: Mutex<Vec<(String, String)>>,
    hook_failures_left: Mutex<u32>,
}

#[async_trait]
impl basphere_core::Notifier for TwoChannels {
    fn backend_name(&self) -> &'static str {
        "two-channels"
    }

    async fn notify(&self, _event: &NotificationEvent, _recipient: &basphere_core::notifier::Recipient) -> Result<()> {
        panic!("every message names its channel")
    }

    fn channels(&self) -> Vec<String> {
        vec!["hook".into(), "mail".into()]
    }

    async fn notify_on(
        &self,
        channel: &str,
        _id: uuid::Uuid,
        event: &NotificationEvent,
        _recipient: &basphere_core::notifier::Recipient,
    ) -> Result<()> {
        if channel == "hook" {
            let mut left = self.hook_failures_left.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Err(basphere_core::Error::backend("hook", basphere_core::error::Message("down".into())));
            }
        }
        self.delivered.lock().unwrap().push((channel.to_owned(), event.name().to_owned()));
        Ok(())
    }
}

/// A channel that is down is retried on its own: the others deliver once, not once per retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_is_down_is_retried_without_sending_again_on_the_others() {
    let store: Arc<dyn Store> = Arc::new(basphere_core::MemoryStore::new());
    let notifier = Arc::new(TwoChannels { hook_failures_left: Mutex::new(2), ..TwoChannels::default() });
    let config = Arc::new(Config::from_yaml("work: {notification_retry_seconds: 1}\n").unwrap());
    let sim = Arc::new(MockProvisioner::with_default_catalog());
    let platform =
        Platform::new(config.clone(), store.clone(), block_ipam(config.pools.clone()), sim, notifier.clone());
    let _background = platform.start_background();
    platform.accounts().provision(&basphere_core::Actor::system(), user("alice", 1)).await.unwrap();
    let request = CreateVms { name: "web".into(), os: "ubuntu-24.04".into(), spec: "tiny".into(), count: 1 };
    let alice = Actor::user(&username("alice"), "test");
    let outcome = platform.vms().create(&alice, &username("alice"), request, None).await.unwrap();
    platform.runtime().wait_operation(outcome.accepted[0].operation.id, Duration::from_secs(10)).await.unwrap();
    // A delivery is recorded just after the notifier took it: wait for both.
    let all_delivered = || {
        store
            .query(|tx| tx.list_outbox(&OutboxFilter::default()))
            .unwrap()
            .iter()
            .all(|m| m.state == OutboxState::Delivered)
    };
    wait_for(|| notifier.delivered.lock().unwrap().len() == 2 && all_delivered()).await;
    let delivered = notifier.delivered.lock().unwrap().clone();
    assert_eq!(
        delivered,
        [("mail".to_owned(), "vm_ready".to_owned()), ("hook".to_owned(), "vm_ready".to_owned())],
        "mail once, at once; hook once, after its two failures"
    );
    let queued = store.query(|tx| tx.list_outbox(&OutboxFilter::default())).unwrap();
    let mut rows: Vec<(String, u32)> = queued.iter().map(|m| (m.channel.clone(), m.attempts)).collect();
    rows.sort();
    assert_eq!(rows, [("hook".to_owned(), 3), ("mail".to_owned(), 1)]);
}

/// A store that counts its calls running at once, each made to last a little, and says two can
/// make progress together.
struct TurnCounter {
    inner: Arc<dyn Store>,
    running: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl TurnCounter {
    fn call<T>(&self, f: impl FnOnce() -> T) -> T {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        std::thread::sleep(Duration::from_millis(2));
        let result = f();
        self.running.fetch_sub(1, SeqCst);
        result
    }
}

impl Store for TurnCounter {
    fn backend_name(&self) -> &'static str {
        "turn-counter"
    }
    fn read(&self, f: &mut dyn FnMut(&dyn basphere_core::store::StoreRead) -> Result<()>) -> Result<()> {
        self.call(|| self.inner.read(f))
    }
    fn write(&self, f: &mut dyn FnMut(&mut dyn basphere_core::store::StoreTx) -> Result<()>) -> Result<()> {
        self.call(|| self.inner.write(f))
    }
    fn blocking_calls(&self) -> usize {
        2
    }
}

/// Store calls wait for their turn as tasks: however many requests come at once, no more run at
/// once than the store serves (on that many threads of the platform's), and every one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_calls_take_the_turns_the_store_offers() {
    let counter = Arc::new(TurnCounter {
        inner: Arc::new(basphere_core::MemoryStore::new()),
        running: Default::default(),
        most: Default::default(),
    });
    let config = Arc::new(Config::from_yaml("network: {cidr: 10.0.0.0/16, block_size: 128}\n").unwrap());
    let sim = Arc::new(MockProvisioner::with_default_catalog());
    let store: Arc<dyn Store> = counter.clone();
    let platform =
        Platform::new(config.clone(), store, block_ipam(config.pools.clone()), sim, Arc::new(RecordingNotifier::new()));
    let names: Vec<String> = (0..10).map(|n| format!("user{n}")).collect();
    for (uid, name) in names.iter().enumerate() {
        platform.accounts().provision(&basphere_core::Actor::system(), user(name, 1000 + uid as u64)).await.unwrap();
    }
    let mut creates = Vec::new();
    for name in &names {
        for n in 0..4 {
            let (platform, owner) = (platform.clone(), username(name));
            creates.push(tokio::spawn(async move {
                let request =
                    CreateVms { name: format!("vm{n}"), os: "ubuntu-24.04".into(), spec: "tiny".into(), count: 1 };
                platform.vms().create(&Actor::user(&owner, "test"), &owner, request, None).await
            }));
        }
    }
    for create in creates {
        assert_eq!(create.await.unwrap().unwrap().accepted.len(), 1);
    }
    let most = counter.most.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(most, 2, "at most two store calls at once, and both turns used");
}
