//! Accounts through the platform, on every store: registration with its duplicate rules and
//! abuse limits, approval (and finishing one that failed part-way), rejection, key changes
//! that need the registered email, suspension, deletion and purge.

use std::sync::Arc;
use std::time::Duration;

use basphere_core::config::RegistrationLimits;
use basphere_core::mock::{MockProvisioner, RecordingBastion, RecordingNotifier};
use basphere_core::model::*;
use basphere_core::notifier::Recipient;
use basphere_core::platform::{CreateVms, RequestQuery, Submission, SUBMITTED};
use basphere_core::store::AuditFilter;
use basphere_core::testing::{ssh_key, user, username};
use basphere_core::validate::{KeyChangeForm, RegistrationForm};
use basphere_core::{Actor, Config, Error, Platform, Store, StoreExt};
use tests::{block_ipam, Backend, BACKENDS};

const WAIT: Duration = Duration::from_secs(60);

struct Rig {
    platform: Arc<Platform>,
    store: Arc<dyn Store>,
    sim: Arc<MockProvisioner>,
    bastion: Arc<RecordingBastion>,
    notifier: Arc<RecordingNotifier>,
    _background: basphere_core::platform::Background,
}

fn rig_with(backend: Backend, dir: &std::path::Path, limits: RegistrationLimits) -> Rig {
    let yaml = "recaptcha: {enabled: false}\nwork: {notification_retry_seconds: 1}\nnotifications: {admin_emails: [ops@example.com]}\n";
    let config = Arc::new(Config { registration: limits, ..Config::from_yaml(yaml).unwrap() });
    let store = backend.open(dir);
    let sim = Arc::new(MockProvisioner::with_default_catalog());
    let bastion = Arc::new(RecordingBastion::new());
    let notifier = Arc::new(RecordingNotifier::new());
    let platform = Platform::builder(
        config.clone(),
        store.clone(),
        block_ipam(config.pools.clone()),
        sim.clone(),
        notifier.clone(),
    )
    .bastion(bastion.clone())
    .build();
    let _background = platform.start_background();
    Rig { platform, store, sim, bastion, notifier, _background }
}

fn rig(backend: Backend, dir: &std::path::Path) -> Rig {
    let generous = RegistrationLimits {
        per_address_per_hour: 1000,
        per_email_per_day: 1000,
        per_day: 10_000,
        ..RegistrationLimits::DEFAULT
    };
    rig_with(backend, dir, generous)
}

fn admin() -> Actor {
    Actor::admin("root", "test")
}

fn from(client: &str) -> Submission {
    Submission { client: client.into(), human_response: None }
}

fn form(name: &str, email: &str, seed: u64) -> RegistrationForm {
    RegistrationForm {
        username: name.into(),
        email: email.into(),
        team: "payments".into(),
        public_key: ssh_key(seed).as_str().into(),
    }
}

impl Rig {
    async fn pending(&self) -> Vec<RegistrationRequest> {
        self.platform.accounts().registrations(&admin(), RequestQuery::default()).await.unwrap().items
    }

    async fn wait(&self, operation: &Operation) -> Operation {
        self.platform.runtime().wait_operation(operation.id, WAIT).await.unwrap()
    }

    /// Waits until `count` notifications were delivered.
    async fn delivered(&self, count: usize) -> Vec<(NotificationEvent, Recipient)> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let events = self.notifier.events();
            if events.len() >= count {
                return events.into_iter().zip(self.notifier.recipients()).collect();
            }
            assert!(tokio::time::Instant::now() < deadline, "{count} notifications expected, got {events:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn audit(&self, action: &str) -> Vec<AuditEvent> {
        let all = self.store.query(|tx| tx.list_audit(&AuditFilter::default())).unwrap();
        all.into_iter().filter(|event| event.action == action).collect()
    }

    fn user(&self, name: &str) -> Option<User> {
        self.store.query(|tx| tx.get_user(&username(name))).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_answers_alike_and_records_only_what_the_rules_allow() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(backend, dir.path());
        rig.platform.accounts().provision(&basphere_core::Actor::system(), user("taken", 7)).await.unwrap();

        assert_eq!(
            rig.platform.accounts().register(&from("192.0.2.1"), form("alice", "alice@example.com", 1)).await.unwrap(),
            SUBMITTED
        );
        // Duplicates: the same username pending, the same email pending (any case), an
        // account's name, an account's key, an account's email (any case). Each gets the same
        // answer and records nothing.
        for duplicate in [
            form("alice", "other@example.com", 2),
            form("alice2", "ALICE@example.com", 3),
            form("taken", "taken2@example.com", 4),
            form("fresh", "fresh@example.com", 7),
            form("second", "TAKEN@Example.com", 8),
        ] {
            let answer = rig.platform.accounts().register(&from("192.0.2.1"), duplicate.clone()).await.unwrap();
            assert_eq!(answer, SUBMITTED, "{backend:?} {duplicate:?}");
        }
        let pending = rig.pending().await;
        assert_eq!(pending.len(), 1, "{backend:?}: {pending:?}");
        assert_eq!((pending[0].username.as_str(), pending[0].team.as_str()), ("alice", "payments"));
        let denied = rig.audit("registration.submit");
        assert_eq!(denied.iter().filter(|e| e.outcome == Outcome::Denied).count(), 5, "{backend:?}");
        assert!(denied.iter().any(|e| e.details["refused"] == "the email is an account's"), "{backend:?}: {denied:?}");
        assert!(denied.iter().all(|e| e.actor == "anonymous" && e.source == "192.0.2.1"));

        // Invalid input is refused with every problem named; nothing is recorded.
        let bad = RegistrationForm {
            username: "Bad Name".into(),
            email: "nope".into(),
            team: String::new(),
            public_key: "ssh-rsa AAAA".into(),
        };
        match rig.platform.accounts().register(&from("192.0.2.1"), bad).await.unwrap_err() {
            Error::InvalidFields(errors) => assert_eq!(errors.len(), 3, "{errors:?}"),
            other => panic!("{other}"),
        }
        assert_eq!(rig.pending().await.len(), 1);

        // Administrators hear of the request; nobody else can list requests.
        let (event, to) = rig.delivered(1).await.remove(0);
        assert!(matches!(event, NotificationEvent::RegistrationSubmitted { .. }), "{event:?}");
        assert!(matches!(to, Recipient::Administrators { ref emails } if emails[0].as_str() == "ops@example.com"));
        let someone = Actor::user(&username("taken"), "test");
        assert_eq!(
            rig.platform.accounts().registrations(&someone, RequestQuery::default()).await.unwrap_err().kind(),
            "forbidden"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_of_one_name_record_one_request() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(backend, dir.path());
        let mut tasks = Vec::new();
        for i in 0..16u64 {
            let platform = rig.platform.clone();
            tasks.push(tokio::spawn(async move {
                platform
                    .accounts()
                    .register(&from(&format!("192.0.2.{i}")), form("race", &format!("race{i}@example.com"), 100 + i))
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), SUBMITTED);
        }
        assert_eq!(rig.pending().await.len(), 1, "{backend:?}: one pending request per username");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_and_refused_submissions_are_answered_after_the_same_time() {
    let dir = tempfile::tempdir().unwrap();
    let limits = RegistrationLimits { answer_after_ms: 300, ..RegistrationLimits::DEFAULT };
    let rig = rig_with(Backend::Memory, dir.path(), limits);
    rig.platform.accounts().provision(&basphere_core::Actor::system(), user("taken", 7)).await.unwrap();
    let key_change = |name: &str, email: &str| KeyChangeForm {
        username: name.into(),
        email: email.into(),
        new_public_key: ssh_key(30).as_str().into(),
        reason: "laptop lost".into(),
    };
    // Recorded, then refused (a taken name; an unknown account): the work differs by a few
    // milliseconds, the answers come no sooner than the configured time, whatever the path.
    let started = std::time::Instant::now();
    rig.platform.accounts().register(&from("192.0.2.1"), form("fresh", "fresh@example.com", 1)).await.unwrap();
    let recorded = started.elapsed();
    let started = std::time::Instant::now();
    rig.platform.accounts().register(&from("192.0.2.1"), form("taken", "other@example.com", 2)).await.unwrap();
    let refused = started.elapsed();
    let started = std::time::Instant::now();
    rig.platform
        .accounts()
        .request_key_change(&from("192.0.2.1"), key_change("taken", "taken@example.com"))
        .await
        .unwrap();
    let key_recorded = started.elapsed();
    let started = std::time::Instant::now();
    rig.platform
        .accounts()
        .request_key_change(&from("192.0.2.1"), key_change("ghost", "ghost@example.com"))
        .await
        .unwrap();
    let key_refused = started.elapsed();
    for (what, took) in
        [("recorded", recorded), ("refused", refused), ("key recorded", key_recorded), ("key refused", key_refused)]
    {
        assert!(took >= Duration::from_millis(300), "{what}: answered after {took:?}");
    }
    assert_eq!(rig.pending().await.len(), 1, "the fresh one is recorded, the taken one is not");
    // Invalid input is answered at once: its answer differs anyway.
    let started = std::time::Instant::now();
    rig.platform.accounts().register(&from("192.0.2.1"), form("Bad Name", "x@example.com", 3)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn abuse_limits_answer_when_to_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let limits =
        RegistrationLimits { per_address_per_hour: 2, per_email_per_day: 1, per_day: 3, ..RegistrationLimits::DEFAULT };
    let rig = rig_with(Backend::Memory, dir.path(), limits);
    rig.platform.accounts().register(&from("192.0.2.1"), form("one", "one@example.com", 1)).await.unwrap();
    // The same email again, from elsewhere: the per-email limit.
    let error =
        rig.platform.accounts().register(&from("192.0.2.2"), form("two", "ONE@example.com", 2)).await.unwrap_err();
    assert!(matches!(error, Error::RateLimited { retry_after_seconds, .. } if retry_after_seconds > 3600), "{error}");
    rig.platform.accounts().register(&from("192.0.2.1"), form("three", "three@example.com", 3)).await.unwrap();
    // A third from 192.0.2.1 within the hour.
    let error =
        rig.platform.accounts().register(&from("192.0.2.1"), form("four", "four@example.com", 4)).await.unwrap_err();
    assert!(
        matches!(&error, Error::RateLimited { message, retry_after_seconds } if message.contains("your address") && *retry_after_seconds <= 3600),
        "{error}"
    );
    // The day's total (one, the refused two, three: the per-day window counted three).
    let error =
        rig.platform.accounts().register(&from("192.0.2.9"), form("five", "five@example.com", 5)).await.unwrap_err();
    assert!(matches!(&error, Error::RateLimited { message, .. } if message.contains("today")), "{error}");
}

#[tokio::test]
async fn public_submissions_are_closed_until_the_bot_check_is_decided() {
    let dir = tempfile::tempdir().unwrap();
    let config = Arc::new(Config::from_yaml("").unwrap());
    let store = Backend::Memory.open(dir.path());
    let platform = Platform::new(
        config.clone(),
        store,
        block_ipam(config.pools.clone()),
        Arc::new(MockProvisioner::with_default_catalog()),
        Arc::new(RecordingNotifier::new()),
    );
    let error =
        platform.accounts().register(&from("192.0.2.1"), form("alice", "alice@example.com", 1)).await.unwrap_err();
    assert_eq!(error.kind(), "forbidden");
    assert!(error.to_string().contains("recaptcha.enabled"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_provisions_the_account_and_finishes_after_a_failure() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(backend, dir.path());
        rig.platform.accounts().register(&from("192.0.2.1"), form("alice", "alice@example.com", 1)).await.unwrap();
        rig.platform.accounts().register(&from("192.0.2.1"), form("bob", "bob@example.com", 2)).await.unwrap();

        // A user cannot approve; an unknown name is not found.
        let alice_actor = Actor::user(&username("alice"), "test");
        assert_eq!(
            rig.platform.accounts().approve_registration(&alice_actor, "alice").await.unwrap_err().kind(),
            "forbidden"
        );
        assert_eq!(
            rig.platform.accounts().approve_registration(&admin(), "nobody").await.unwrap_err().kind(),
            "not-found"
        );

        // The bastion fails the first time: the operation says how to finish.
        rig.bastion.fail_next(1);
        let first = rig.platform.accounts().approve_registration(&admin(), "alice").await.unwrap();
        let first = rig.wait(&first).await;
        assert_eq!(first.state, OperationState::Failed, "{backend:?}");
        let reason = first.error.clone().unwrap();
        assert!(reason.contains("bastion login") && reason.contains("basphere admin user approve alice"), "{reason}");
        let half = rig.user("alice").expect("the account exists at once");
        assert_eq!((half.status, half.uid), (UserStatus::Active, None));

        let again = rig.platform.accounts().approve_registration(&admin(), "alice").await.unwrap();
        let again = rig.wait(&again).await;
        assert_eq!(again.state, OperationState::Succeeded, "{backend:?}: {:?}", again.error);
        let alice = rig.user("alice").unwrap();
        let (uid, key) = rig.bastion.login("alice").expect("the login exists");
        assert_eq!((alice.uid, key.as_str()), (Some(uid), ssh_key(1).as_str()));
        assert!(rig.sim.folders().iter().any(|f| f.ends_with("/alice")), "{:?}", rig.sim.folders());
        let blocks = rig.store.query(|tx| tx.blocks_of(&username("alice"))).unwrap();
        assert_eq!(blocks.len(), 1, "one IP block, however often approval ran");
        // The uid is alice on the socket at once.
        let actor = rig.platform.accounts().identify_uid(uid, 0, "unix").await.unwrap();
        assert_eq!(actor.account, Some(username("alice")));

        let approved = rig
            .platform
            .accounts()
            .registrations(&admin(), RequestQuery { status: Some("approved".into()), ..RequestQuery::default() })
            .await
            .unwrap()
            .items;
        assert_eq!(approved.len(), 1);
        assert_eq!(approved[0].processed_by.as_deref(), Some("root"));
        let delivered = rig.delivered(3).await;
        let (event, to) =
            delivered.iter().find(|(e, _)| matches!(e, NotificationEvent::RegistrationApproved { .. })).unwrap();
        assert!(
            matches!(to, Recipient::Person { email, .. } if email.as_str() == "alice@example.com"),
            "{event:?} {to:?}"
        );

        // Rejection: the reason reaches the applicant; the request is no longer pending.
        let rejected =
            rig.platform.accounts().reject_registration(&admin(), "bob", "unknown team \"x\"").await.unwrap();
        assert_eq!(rejected.status, RequestStatus::Rejected);
        let delivered = rig.delivered(4).await;
        assert!(delivered.iter().any(|(e, _)| matches!(e, NotificationEvent::RegistrationRejected { reason, .. } if reason == "unknown team \"x\"")));
        assert!(rig.pending().await.is_empty());
        assert_eq!(
            rig.platform.accounts().reject_registration(&admin(), "bob", "again").await.unwrap_err().kind(),
            "not-found"
        );
        assert!(rig.user("bob").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_is_welcomed_once_however_often_it_is_approved() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(backend, dir.path());
        rig.platform.accounts().register(&from("192.0.2.1"), form("erin", "erin@example.com", 1)).await.unwrap();
        // Ten administrators approve at once: one approval runs, the others are told it is
        // under way (or, once it finished, answered with it).
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let platform = rig.platform.clone();
            tasks.push(tokio::spawn(async move { platform.accounts().approve_registration(&admin(), "erin").await }));
        }
        let mut started = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(operation) => started.push(operation.id),
                Err(error) => assert_eq!(error.kind(), "conflict", "{backend:?}: {error}"),
            }
        }
        started.dedup();
        assert_eq!(started.len(), 1, "{backend:?}: every approval that was not refused is the one: {started:?}");
        let first = rig.platform.runtime().operation(&admin(), &started[0].to_string()).await.unwrap();
        assert_eq!(rig.wait(&first).await.state, OperationState::Succeeded, "{backend:?}");
        // After it finished: approving again answers the finished approval, and runs nothing.
        for _ in 0..3 {
            let again = rig.platform.accounts().approve_registration(&admin(), "erin").await.unwrap();
            assert_eq!((again.id, again.state), (first.id, OperationState::Succeeded), "{backend:?}");
        }
        let approvals: Vec<_> = rig
            .store
            .query(|tx| tx.list_operations(&Default::default()))
            .unwrap()
            .into_iter()
            .filter(|op| op.kind == OperationKind::ApproveAccount)
            .collect();
        assert_eq!(approvals.len(), 1, "{backend:?}: {approvals:?}");
        // Exactly one welcome (the registration's notice to the administrators is the other).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let delivered = rig.delivered(2).await;
        let welcomes =
            delivered.iter().filter(|(e, _)| matches!(e, NotificationEvent::RegistrationApproved { .. })).count();
        assert_eq!(welcomes, 1, "{backend:?}: {delivered:?}");
        let queued = rig.store.query(|tx| tx.list_outbox(&Default::default())).unwrap();
        let queued_welcomes =
            queued.iter().filter(|m| matches!(m.event, NotificationEvent::RegistrationApproved { .. })).count();
        assert_eq!(queued_welcomes, 1, "{backend:?}: {queued:?}");

        // One account per address: a request whose email became an account's meanwhile (an
        // import, say) is not approved.
        rig.platform.accounts().register(&from("192.0.2.1"), form("frank", "frank@example.com", 2)).await.unwrap();
        let mut other = user("frank2", 3);
        other.email = basphere_core::validate::Email::parse("Frank@example.com").unwrap();
        rig.platform.accounts().provision(&basphere_core::Actor::system(), other).await.unwrap();
        let error = rig.platform.accounts().approve_registration(&admin(), "frank").await.unwrap_err();
        assert_eq!(error.kind(), "conflict", "{backend:?}: {error}");
        assert!(error.to_string().contains("frank2") && error.to_string().contains("email"), "{error}");
        assert!(rig.user("frank").is_none(), "{backend:?}: nothing recorded");
        // An administrator's account takes no address an account has either.
        let taken = basphere_core::platform::NewAccount {
            username: "frank3".into(),
            email: "FRANK@example.com".into(),
            team: "payments".into(),
            ssh_key: ssh_key(4).as_str().into(),
            admin: false,
            uid: None,
        };
        let error = rig.platform.accounts().create(&admin(), taken).await.unwrap_err();
        assert_eq!(error.kind(), "conflict", "{backend:?}: {error}");
        assert!(error.to_string().contains("frank2"), "{error}");
        assert!(rig.user("frank3").is_none(), "{backend:?}: nothing recorded");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_change_needs_the_registered_email_and_replaces_the_key_everywhere() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(backend, dir.path());
        rig.platform.accounts().register(&from("192.0.2.1"), form("alice", "alice@example.com", 1)).await.unwrap();
        let approval = rig.platform.accounts().approve_registration(&admin(), "alice").await.unwrap();
        assert_eq!(rig.wait(&approval).await.state, OperationState::Succeeded);
        rig.platform.accounts().provision(&basphere_core::Actor::system(), user("mallory", 9)).await.unwrap();

        let change = |email: &str, seed: u64| KeyChangeForm {
            username: "alice".into(),
            email: email.into(),
            new_public_key: ssh_key(seed).as_str().into(),
            reason: "laptop lost".into(),
        };
        // The original never compared the email: anyone could take over an account.
        assert_eq!(
            rig.platform
                .accounts()
                .request_key_change(&from("198.51.100.7"), change("mallory@example.com", 20))
                .await
                .unwrap(),
            SUBMITTED
        );
        // A key another account uses is refused too; and a name nobody has.
        rig.platform
            .accounts()
            .request_key_change(&from("198.51.100.7"), change("alice@example.com", 9))
            .await
            .unwrap();
        let ghost = KeyChangeForm { username: "ghost".into(), ..change("ghost@example.com", 21) };
        rig.platform.accounts().request_key_change(&from("198.51.100.7"), ghost).await.unwrap();
        assert!(
            rig.platform.accounts().key_changes(&admin(), RequestQuery::default()).await.unwrap().items.is_empty(),
            "{backend:?}"
        );
        assert_eq!(rig.audit("key_change.submit").iter().filter(|e| e.outcome == Outcome::Denied).count(), 3);

        rig.platform.accounts().request_key_change(&from("192.0.2.1"), change("Alice@Example.com", 22)).await.unwrap();
        let pending = rig.platform.accounts().key_changes(&admin(), RequestQuery::default()).await.unwrap().items;
        assert_eq!(pending.len(), 1);
        let operation = rig.platform.accounts().approve_key_change(&admin(), "alice").await.unwrap();
        assert_eq!(rig.wait(&operation).await.state, OperationState::Succeeded);
        assert_eq!(rig.user("alice").unwrap().ssh_key.as_str(), ssh_key(22).as_str());
        assert_eq!(rig.bastion.login("alice").unwrap().1, ssh_key(22).as_str(), "the bastion has the new key");
        let delivered = rig.delivered(5).await;
        assert!(delivered.iter().any(|(e, _)| matches!(e, NotificationEvent::KeyChangeApproved { .. })));
        assert!(delivered.iter().any(|(e, to)| matches!(e, NotificationEvent::KeyChangeRequested { .. })
            && matches!(to, Recipient::Administrators { .. })));
        // The account's holder hears of the request at the account's own address, once (the
        // refused requests told nobody).
        let told: Vec<_> =
            delivered.iter().filter(|(e, _)| matches!(e, NotificationEvent::KeyChangeRequestReceived { .. })).collect();
        assert_eq!(told.len(), 1, "{backend:?}: {delivered:?}");
        assert!(
            matches!(&told[0].1, Recipient::Person { email, .. } if email.as_str() == "alice@example.com"),
            "{told:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_stops_everything_and_purge_removes_only_the_account_s_own() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(backend, dir.path());
        for (name, seed) in [("alice", 1), ("bob", 2)] {
            rig.platform
                .accounts()
                .register(&from("192.0.2.1"), form(name, &format!("{name}@example.com"), seed))
                .await
                .unwrap();
            let op = rig.platform.accounts().approve_registration(&admin(), name).await.unwrap();
            assert_eq!(rig.wait(&op).await.state, OperationState::Succeeded);
        }
        let (alice_uid, _) = rig.bastion.login("alice").unwrap();
        let alice = Actor::user(&username("alice"), "test");
        let bob = Actor::user(&username("bob"), "test");
        let vms = |name: &str, count: u32| CreateVms {
            name: name.into(),
            os: "ubuntu-24.04".into(),
            spec: "tiny".into(),
            count,
        };
        for (actor, owner) in [(&alice, "alice"), (&bob, "bob")] {
            let outcome = rig.platform.vms().create(actor, &username(owner), vms("web", 2), None).await.unwrap();
            for accepted in &outcome.accepted {
                assert_eq!(rig.wait(&accepted.operation).await.state, OperationState::Succeeded);
            }
        }
        let token = rig
            .platform
            .credentials()
            .create_token(&alice, &username("alice"), "laptop", TokenScope::User, None)
            .await
            .unwrap();

        // Suspended: no socket identity, no token; the VMs stay.
        rig.platform.accounts().set_suspended(&admin(), "alice", true).await.unwrap();
        assert!(rig.platform.accounts().identify_uid(alice_uid, 0, "unix").await.is_err());
        assert!(rig.platform.credentials().authenticate_token(&token.secret).await.is_err());
        assert_eq!(rig.sim.vms().iter().filter(|vm| vm.vsphere_name.starts_with("alice-")).count(), 2);
        rig.platform.accounts().set_suspended(&admin(), "alice", false).await.unwrap();
        assert!(rig.platform.accounts().identify_uid(alice_uid, 0, "unix").await.is_ok());

        // Delete is refused while VMs exist; purge destroys them and frees only alice's.
        let refused = rig.platform.accounts().delete(&admin(), "alice").await.unwrap_err();
        assert!(refused.to_string().contains("owns 2 VM"), "{refused}");
        let bob_leases = rig.store.query(|tx| tx.list_leases(Some(&username("bob")))).unwrap();
        let purge = rig.platform.accounts().purge(&admin(), "alice").await.unwrap();
        let purge = rig.wait(&purge).await;
        assert_eq!(purge.state, OperationState::Succeeded, "{backend:?}: {:?}", purge.error);
        assert!(rig.user("alice").is_none());
        assert!(rig.bastion.login("alice").is_none());
        assert!(rig.sim.vms().iter().all(|vm| !vm.vsphere_name.starts_with("alice-")), "{:?}", rig.sim.vms());
        assert!(rig.store.query(|tx| tx.list_leases(Some(&username("alice")))).unwrap().is_empty());
        assert!(rig.store.query(|tx| tx.blocks_of(&username("alice"))).unwrap().is_empty());
        assert_eq!(
            rig.store.query(|tx| tx.list_leases(Some(&username("bob")))).unwrap(),
            bob_leases,
            "bob's untouched"
        );
        assert!(
            rig.platform.accounts().identify_uid(alice_uid, 0, "unix").await.is_err(),
            "after purge the uid is nobody"
        );
        assert!(rig.platform.credentials().authenticate_token(&token.secret).await.is_err());

        // bob deletes his VMs, then his account can be deleted.
        for vm in ["web-1", "web-2"] {
            let op = rig
                .platform
                .vms()
                .delete(&bob, &username("bob"), &basphere_core::validate::ResourceName::parse(vm).unwrap())
                .await
                .unwrap();
            assert_eq!(rig.wait(&op).await.state, OperationState::Succeeded);
        }
        rig.platform.accounts().delete(&admin(), "bob").await.unwrap();
        assert!(rig.user("bob").is_none());
        assert!(rig.bastion.calls().contains(&"remove_login:bob".to_owned()));
        assert!(rig.store.query(|tx| tx.blocks_of(&username("bob"))).unwrap().is_empty());
    }
}

/// Ten concurrent creates that take an account past 80 % of its VM limit tell it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_crossing_is_notified_once() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(backend, dir.path());
        rig.platform.accounts().provision(&basphere_core::Actor::system(), user("alice", 1)).await.unwrap();
        let limits =
            QuotaOverride { max_vms: Some(10), max_ips: Some(100), max_vcpus: Some(100), ..QuotaOverride::default() };
        rig.platform.accounts().set_quota_override(&admin(), &username("alice"), Some(limits)).await.unwrap();
        let alice = Actor::user(&username("alice"), "test");
        let mut tasks = Vec::new();
        for i in 0..10 {
            let platform = rig.platform.clone();
            let alice = alice.clone();
            tasks.push(tokio::spawn(async move {
                let request =
                    CreateVms { name: format!("web{i}"), os: "ubuntu-24.04".into(), spec: "tiny".into(), count: 1 };
                platform.vms().create(&alice, &username("alice"), request, None).await.unwrap()
            }));
        }
        for task in tasks {
            let outcome = task.await.unwrap();
            assert_eq!(rig.wait(&outcome.accepted[0].operation).await.state, OperationState::Succeeded);
        }
        // Ten VmReady and one crossing.
        let delivered = rig.delivered(11).await;
        let crossings: Vec<_> = delivered
            .iter()
            .filter_map(|(event, _)| match event {
                NotificationEvent::QuotaNearlyUsed { resource, used, limit, .. } => {
                    Some((resource.clone(), *used, *limit))
                }
                _ => None,
            })
            .collect();
        assert_eq!(crossings, [("vms".to_owned(), 8, 10)], "{backend:?}");
        let queued = rig.store.query(|tx| tx.list_outbox(&Default::default())).unwrap();
        let nearly = queued.iter().filter(|m| matches!(m.event, NotificationEvent::QuotaNearlyUsed { .. })).count();
        assert_eq!(nearly, 1, "{backend:?}: one crossing in the outbox, whatever is still to be delivered");
    }
}

/// An administrator's own account is not theirs to suspend, delete or purge.
#[tokio::test]
async fn an_administrator_cannot_remove_the_account_they_act_as() {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig(Backend::Memory, dir.path());
    let mut ops = user("ops", 3);
    ops.role = Role::Admin;
    rig.platform.accounts().provision(&basphere_core::Actor::system(), ops).await.unwrap();
    let actor = Actor::of_account(&username("ops"), Role::Admin, "test");
    for error in [
        rig.platform.accounts().set_suspended(&actor, "ops", true).await.unwrap_err(),
        rig.platform.accounts().delete(&actor, "ops").await.unwrap_err(),
        rig.platform.accounts().purge(&actor, "ops").await.unwrap_err(),
    ] {
        assert_eq!(error.kind(), "conflict", "{error}");
        assert!(error.to_string().contains("acting as"), "{error}");
    }
    assert_eq!(rig.user("ops").unwrap().status, UserStatus::Active);
    // root may.
    rig.platform.accounts().set_suspended(&admin(), "ops", true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_is_for_administrators_audited_once_and_repeatable() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let rig = rig(backend, dir.path());
        let mallory = Actor::user(&username("mallory"), "test");
        let refused = rig.platform.accounts().provision(&mallory, user("eve", 5)).await.unwrap_err();
        assert!(matches!(refused, Error::Forbidden(_)), "{backend:?}: {refused:?}");
        assert!(rig.user("eve").is_none(), "{backend:?}: a refused provision records nothing");
        assert!(rig.audit("user.provision").is_empty(), "{backend:?}");

        let first = rig.platform.accounts().provision(&admin(), user("eve", 5)).await.unwrap();
        let again = rig.platform.accounts().provision(&admin(), user("eve", 5)).await.unwrap();
        assert_eq!(first.username, again.username);
        let audited = rig.audit("user.provision");
        assert_eq!(audited.len(), 1, "{backend:?}: recorded once, repeated without a second event: {audited:?}");
        assert_eq!((audited[0].actor.as_str(), audited[0].resource.as_str()), ("root", "user/eve"), "{backend:?}");
        let blocks = rig.store.query(|tx| tx.list_blocks(None)).unwrap();
        let eves = blocks.iter().filter(|block| block.owner == username("eve")).count();
        assert_eq!(eves, 1, "{backend:?}: the account got its IP block: {blocks:?}");
        assert!(
            rig.sim.folders().iter().any(|f| f.ends_with("/eve")),
            "{backend:?}: and its folder: {:?}",
            rig.sim.folders()
        );
    }
}
