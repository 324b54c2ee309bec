//! The `Store` conformance suite.

use std::net::Ipv4Addr;
use std::sync::Arc;

use uuid::Uuid;

use super::{ssh_key, user, username};
use crate::error::Error;
use crate::model::*;
use crate::store::*;
use crate::validate::{Email, ResourceName, Username};

/// Runs every check against a fresh, empty store.
pub fn check_all(make: &dyn Fn() -> Arc<dyn Store>) {
    check_users(&*make());
    check_requests(&*make());
    check_tokens(&*make());
    check_vms(&*make());
    check_clusters(&*make());
    check_operations_and_audit(&*make());
    check_quota_and_usage(&*make());
    check_blocks_and_leases(&*make());
    check_idempotency(&*make());
    check_rollback(&*make());
    check_concurrent_writers(make());
}

fn expect_kind<T: std::fmt::Debug>(result: crate::Result<T>, kind: &str, what: &str) {
    match result {
        Err(error) => assert_eq!(error.kind(), kind, "{what}: {error}"),
        Ok(value) => panic!("{what}: expected a {kind} error, got {value:?}"),
    }
}

pub fn vm(owner: &Username, name: &str) -> Vm {
    let at = now();
    Vm {
        id: Uuid::now_v7(),
        owner: owner.clone(),
        name: ResourceName::parse(name).expect("valid"),
        os: "ubuntu-24.04".into(),
        spec: "small".into(),
        cpu: 2,
        memory_mb: 8192,
        disk_gb: 50,
        ip: None,
        state: VmState::Pending,
        reason: None,
        backend_id: None,
        created_at: at,
        updated_at: at,
    }
}

fn block(owner: &Username, start: [u8; 4], size: u32) -> IpBlock {
    IpBlock { pool: "default".into(), start: Ipv4Addr::from(start), size, owner: owner.clone(), allocated_at: now() }
}

fn lease(owner: &Username, address: [u8; 4], resource: Uuid) -> Lease {
    Lease {
        address: Ipv4Addr::from(address),
        pool: "default".into(),
        owner: owner.clone(),
        resource: ResourceRef { kind: ResourceKind::Vm, id: resource, name: "web".into() },
        state: LeaseState::Reserved,
        created_at: now(),
    }
}

pub fn check_users(store: &dyn Store) {
    let alice = user("alice", 1);
    store.transact(|tx| tx.insert_user(&alice)).unwrap();
    assert_eq!(store.user(&alice.username).unwrap(), alice, "a user reads back exactly");
    expect_kind(store.transact(|tx| tx.insert_user(&alice)), "already-exists", "same username");

    let mut thief = user("mallory", 2);
    thief.ssh_key = alice.ssh_key.clone();
    expect_kind(
        store.transact(|tx| tx.insert_user(&thief)),
        "already-exists",
        "an SSH key already used by another account",
    );
    assert_eq!(
        store.query(|tx| tx.user_by_key_fingerprint(alice.ssh_key.fingerprint())).unwrap().unwrap().username,
        alice.username
    );

    let mut bob = user("bob", 3);
    bob.uid = Some(1001);
    store.transact(|tx| tx.insert_user(&bob)).unwrap();
    assert_eq!(store.query(|tx| tx.user_by_uid(1001)).unwrap().unwrap().username, bob.username);
    let mut carol = user("carol", 4);
    carol.uid = Some(1001);
    expect_kind(store.transact(|tx| tx.insert_user(&carol)), "already-exists", "a uid used by another account");

    let mut changed = alice.clone();
    changed.status = UserStatus::Suspended;
    changed.ssh_key = ssh_key(99);
    changed.updated_at = now();
    store.transact(|tx| tx.update_user(&changed)).unwrap();
    assert_eq!(store.user(&alice.username).unwrap(), changed);
    expect_kind(store.transact(|tx| tx.update_user(&user("nobody1", 5))), "not-found", "update of an unknown user");

    let names: Vec<String> =
        store.query(|tx| tx.list_users()).unwrap().into_iter().map(|u| u.username.to_string()).collect();
    assert_eq!(names, ["alice", "bob"], "users listed by name");
    assert!(store.query(|tx| tx.get_user(&username("ghost"))).unwrap().is_none());

    store.transact(|tx| tx.delete_user(&bob.username)).unwrap();
    assert!(store.query(|tx| tx.get_user(&bob.username)).unwrap().is_none());
    expect_kind(store.transact(|tx| tx.delete_user(&bob.username)), "not-found", "delete of a deleted user");
}

pub fn check_requests(store: &dyn Store) {
    let at = now();
    let registration = |name: &str, email: &str, seed: u64| RegistrationRequest {
        id: Uuid::now_v7(),
        username: username(name),
        email: Email::parse(email).unwrap(),
        team: String::new(),
        ssh_key: ssh_key(seed),
        status: RequestStatus::Pending,
        created_at: at,
        processed_by: None,
        processed_at: None,
        reject_reason: None,
    };
    let first = registration("dave", "dave@example.com", 10);
    store.transact(|tx| tx.insert_registration(&first)).unwrap();
    assert_eq!(store.query(|tx| tx.get_registration(first.id)).unwrap().unwrap(), first);
    expect_kind(
        store.transact(|tx| tx.insert_registration(&registration("dave", "other@example.com", 11))),
        "already-exists",
        "a second pending request for a username",
    );
    expect_kind(
        store.transact(|tx| tx.insert_registration(&registration("erin", "DAVE@example.com", 12))),
        "already-exists",
        "a second pending request for an email",
    );

    let mut rejected = first.clone();
    rejected.status = RequestStatus::Rejected;
    rejected.processed_by = Some(username("admin-one"));
    rejected.processed_at = Some(now());
    rejected.reject_reason = Some("unknown team".into());
    store.transact(|tx| tx.update_registration(&rejected)).unwrap();
    let again = registration("dave", "dave@example.com", 10);
    store.transact(|tx| tx.insert_registration(&again)).unwrap();
    let pending = store.query(|tx| tx.list_registrations(Some(RequestStatus::Pending))).unwrap();
    assert_eq!(pending, vec![again.clone()], "a rejected request does not block a new one");
    let all = store.query(|tx| tx.list_registrations(None)).unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [again.id, first.id], "newest first");

    let key_change = |name: &str| KeyChangeRequest {
        id: Uuid::now_v7(),
        username: username(name),
        email: Email::parse("dave@example.com").unwrap(),
        new_ssh_key: ssh_key(20),
        reason: "lost laptop".into(),
        status: RequestStatus::Pending,
        created_at: now(),
        processed_by: None,
        processed_at: None,
        reject_reason: None,
    };
    let change = key_change("dave");
    store.transact(|tx| tx.insert_key_change(&change)).unwrap();
    assert_eq!(store.query(|tx| tx.get_key_change(change.id)).unwrap().unwrap(), change);
    expect_kind(
        store.transact(|tx| tx.insert_key_change(&key_change("dave"))),
        "already-exists",
        "one pending key change per user",
    );
    let mut approved = change.clone();
    approved.status = RequestStatus::Approved;
    store.transact(|tx| tx.update_key_change(&approved)).unwrap();
    assert!(store.query(|tx| tx.list_key_changes(Some(RequestStatus::Pending))).unwrap().is_empty());
    assert_eq!(store.query(|tx| tx.list_key_changes(None)).unwrap(), vec![approved]);
    expect_kind(
        store.transact(|tx| tx.update_key_change(&key_change("zed"))),
        "not-found",
        "update of an unknown key change",
    );
}

pub fn check_tokens(store: &dyn Store) {
    let alice = user("alice", 1);
    store.transact(|tx| tx.insert_user(&alice)).unwrap();
    let token = ApiToken {
        id: Uuid::now_v7(),
        owner: alice.username.clone(),
        name: "laptop".into(),
        scope: TokenScope::User,
        secret_hash: ApiToken::hash_secret("bsp_one"),
        created_at: now(),
        expires_at: Some(now() + chrono::Duration::days(30)),
        revoked_at: None,
        last_used_at: None,
    };
    store.transact(|tx| tx.insert_token(&token)).unwrap();
    assert_eq!(store.query(|tx| tx.token_by_hash(&token.secret_hash)).unwrap().unwrap(), token);
    let mut duplicate = token.clone();
    duplicate.id = Uuid::now_v7();
    expect_kind(store.transact(|tx| tx.insert_token(&duplicate)), "already-exists", "a duplicate secret hash");
    let mut orphan = token.clone();
    orphan.id = Uuid::now_v7();
    orphan.owner = username("ghost");
    orphan.secret_hash = ApiToken::hash_secret("bsp_two");
    expect_kind(store.transact(|tx| tx.insert_token(&orphan)), "not-found", "a token of an unknown user");

    let mut revoked = token.clone();
    revoked.revoked_at = Some(now());
    store.transact(|tx| tx.update_token(&revoked)).unwrap();
    assert_eq!(store.query(|tx| tx.get_token(token.id)).unwrap().unwrap(), revoked);
    assert_eq!(store.query(|tx| tx.list_tokens(&alice.username)).unwrap().len(), 1);

    store.transact(|tx| tx.delete_user(&alice.username)).unwrap();
    assert!(store.query(|tx| tx.get_token(token.id)).unwrap().is_none(), "tokens go with their account");
}

pub fn check_vms(store: &dyn Store) {
    let alice = user("alice", 1);
    let bob = user("bob", 2);
    store
        .transact(|tx| {
            tx.insert_user(&alice)?;
            tx.insert_user(&bob)
        })
        .unwrap();
    let web = vm(&alice.username, "web");
    store.transact(|tx| tx.insert_vm(&web)).unwrap();
    assert_eq!(store.query(|tx| tx.get_vm(web.id)).unwrap().unwrap(), web);
    assert_eq!(store.vm(&alice.username, &web.name).unwrap(), web);
    expect_kind(
        store.transact(|tx| tx.insert_vm(&vm(&alice.username, "web"))),
        "already-exists",
        "a name is unique per owner",
    );
    store.transact(|tx| tx.insert_vm(&vm(&bob.username, "web"))).unwrap();

    let mut deleted = web.clone();
    deleted.state = VmState::Deleted;
    store.transact(|tx| tx.update_vm(&deleted)).unwrap();
    assert!(
        store.query(|tx| tx.vm_by_name(&alice.username, &web.name)).unwrap().is_none(),
        "a deleted VM frees its name"
    );
    let reborn = vm(&alice.username, "web");
    store.transact(|tx| tx.insert_vm(&reborn)).unwrap();
    let mut undelete = deleted.clone();
    undelete.state = VmState::Running;
    expect_kind(
        store.transact(|tx| tx.update_vm(&undelete)),
        "already-exists",
        "reviving a deleted VM whose name is taken",
    );

    for index in 0..5 {
        store.transact(|tx| tx.insert_vm(&vm(&alice.username, &format!("db-{index}")))).unwrap();
    }
    let mine = store
        .query(|tx| tx.list_vms(&VmFilter { owner: Some(alice.username.clone()), ..VmFilter::default() }))
        .unwrap();
    assert_eq!(mine.len(), 6, "live VMs of alice");
    assert!(mine.windows(2).all(|pair| pair[0].id < pair[1].id), "ordered by id");
    let with_history = store
        .query(|tx| {
            tx.list_vms(&VmFilter { owner: Some(alice.username.clone()), include_deleted: true, ..VmFilter::default() })
        })
        .unwrap();
    assert_eq!(with_history.len(), 7);
    let first_page = store.query(|tx| tx.list_vms(&VmFilter { limit: Some(4), ..VmFilter::default() })).unwrap();
    let second_page = store
        .query(|tx| {
            tx.list_vms(&VmFilter { limit: Some(4), after: first_page.last().map(|v| v.id), ..VmFilter::default() })
        })
        .unwrap();
    assert_eq!(first_page.len() + second_page.len(), 7, "pagination covers every live VM once");
    assert!(second_page.iter().all(|v| !first_page.contains(v)));
    let pending =
        store.query(|tx| tx.list_vms(&VmFilter { state: Some(VmState::Pending), ..VmFilter::default() })).unwrap();
    assert_eq!(pending.len(), 7);
    expect_kind(
        store.transact(|tx| tx.update_vm(&vm(&alice.username, "ghost"))),
        "not-found",
        "update of an unknown VM",
    );
    expect_kind(store.transact(|tx| tx.delete_user(&alice.username)), "conflict", "deleting a user who owns VMs");
}

pub fn check_clusters(store: &dyn Store) {
    let alice = user("alice", 1);
    store.transact(|tx| tx.insert_user(&alice)).unwrap();
    let at = now();
    let cluster = Cluster {
        id: Uuid::now_v7(),
        owner: alice.username.clone(),
        name: ResourceName::parse("dev").unwrap(),
        cluster_type: "dev".into(),
        kubernetes_version: "v1.31.4".into(),
        control_plane_count: 1,
        worker_count: 2,
        worker_spec: "medium".into(),
        control_plane_endpoint: Some(Ipv4Addr::new(10, 254, 0, 40)),
        state: ClusterState::Pending,
        reason: None,
        created_at: at,
        updated_at: at,
    };
    store.transact(|tx| tx.insert_cluster(&cluster)).unwrap();
    assert_eq!(store.query(|tx| tx.get_cluster(cluster.id)).unwrap().unwrap(), cluster);
    assert_eq!(store.query(|tx| tx.cluster_by_name(&alice.username, &cluster.name)).unwrap().unwrap(), cluster);
    let mut twin = cluster.clone();
    twin.id = Uuid::now_v7();
    expect_kind(store.transact(|tx| tx.insert_cluster(&twin)), "already-exists", "cluster names are unique per owner");
    let mut ready = cluster.clone();
    ready.state = ClusterState::Ready;
    store.transact(|tx| tx.update_cluster(&ready)).unwrap();
    assert_eq!(store.query(|tx| tx.list_clusters(&ClusterFilter::default())).unwrap(), vec![ready.clone()]);
    assert_eq!(store.query(|tx| tx.usage(&alice.username)).unwrap().clusters, 1);
    let mut gone = ready;
    gone.state = ClusterState::Deleted;
    store.transact(|tx| tx.update_cluster(&gone)).unwrap();
    assert!(store.query(|tx| tx.list_clusters(&ClusterFilter::default())).unwrap().is_empty());
    assert_eq!(store.query(|tx| tx.usage(&alice.username)).unwrap().clusters, 0);
}

pub fn check_operations_and_audit(store: &dyn Store) {
    let alice = username("alice");
    let web = Uuid::now_v7();
    let mut first = Operation::new(
        OperationKind::CreateVm,
        alice.clone(),
        ResourceRef { kind: ResourceKind::Vm, id: web, name: "web".into() },
        "alice",
        &["reserve address", "provision"],
    );
    store.transact(|tx| tx.insert_operation(&first)).unwrap();
    assert_eq!(store.operation(first.id).unwrap(), first);
    expect_kind(store.transact(|tx| tx.insert_operation(&first)), "already-exists", "operation ids are unique");
    first.start_step("provision");
    first.append_log(["line one".to_string(), "line \"two\"\n".to_string()]);
    store.transact(|tx| tx.update_operation(&first)).unwrap();
    assert_eq!(store.operation(first.id).unwrap(), first, "steps and log tail read back");

    let second = Operation::new(
        OperationKind::DeleteVm,
        username("bob"),
        ResourceRef { kind: ResourceKind::Vm, id: Uuid::now_v7(), name: "db".into() },
        "admin",
        &["destroy"],
    );
    store.transact(|tx| tx.insert_operation(&second)).unwrap();
    let unfinished = store
        .query(|tx| tx.list_operations(&OperationFilter { unfinished: true, ..OperationFilter::default() }))
        .unwrap();
    assert_eq!(unfinished.len(), 2);
    first.fail("backend failed");
    store.transact(|tx| tx.update_operation(&first)).unwrap();
    let unfinished = store
        .query(|tx| tx.list_operations(&OperationFilter { unfinished: true, ..OperationFilter::default() }))
        .unwrap();
    assert_eq!(unfinished, vec![second.clone()]);
    let of_web = store
        .query(|tx| tx.list_operations(&OperationFilter { resource: Some(web), ..OperationFilter::default() }))
        .unwrap();
    assert_eq!(of_web, vec![first.clone()]);
    let of_alice = store
        .query(|tx| tx.list_operations(&OperationFilter { owner: Some(alice.clone()), ..OperationFilter::default() }))
        .unwrap();
    assert_eq!(of_alice.len(), 1);
    expect_kind(
        store.transact(|tx| {
            tx.update_operation(&Operation::new(
                OperationKind::StartVm,
                alice.clone(),
                first.resource.clone(),
                "x",
                &[],
            ))
        }),
        "not-found",
        "update of an unknown operation",
    );

    let events: Vec<AuditEvent> = (0..5)
        .map(|index| {
            AuditEvent::new(
                if index % 2 == 0 { "alice" } else { "bob" },
                "vm.create",
                &format!("vm/alice/web-{index}"),
                "unix:uid=1001",
                Outcome::Success,
                serde_json::json!({"index": index, "quote": "\"'"}),
            )
        })
        .collect();
    store.transact(|tx| events.iter().try_for_each(|event| tx.append_audit(event))).unwrap();
    assert_eq!(store.query(|tx| tx.list_audit(&AuditFilter::default())).unwrap(), events);
    let by_alice = store
        .query(|tx| tx.list_audit(&AuditFilter { actor: Some("alice".into()), ..AuditFilter::default() }))
        .unwrap();
    assert_eq!(by_alice.len(), 3);
    let after = store
        .query(|tx| tx.list_audit(&AuditFilter { after: Some(events[2].id), limit: Some(1), ..AuditFilter::default() }))
        .unwrap();
    assert_eq!(after, vec![events[3].clone()]);
}

pub fn check_quota_and_usage(store: &dyn Store) {
    let alice = user("alice", 1);
    store.transact(|tx| tx.insert_user(&alice)).unwrap();
    let owner = alice.username.clone();
    assert_eq!(store.query(|tx| tx.quota_override(&owner)).unwrap(), None);
    let quota = QuotaOverride { max_vms: Some(20), max_ips: Some(64), ..QuotaOverride::default() };
    store.transact(|tx| tx.set_quota_override(&owner, Some(&quota))).unwrap();
    assert_eq!(store.query(|tx| tx.quota_override(&owner)).unwrap(), Some(quota));
    store.transact(|tx| tx.set_quota_override(&owner, None)).unwrap();
    assert_eq!(store.query(|tx| tx.quota_override(&owner)).unwrap(), None);
    expect_kind(
        store.transact(|tx| tx.set_quota_override(&username("ghost"), Some(&quota))),
        "not-found",
        "override for an unknown user",
    );

    store.transact(|tx| tx.insert_block(&block(&owner, [10, 254, 0, 32], 32))).unwrap();
    let mut vms = Vec::new();
    for index in 0..3 {
        let mut record = vm(&owner, &format!("app-{index}"));
        record.cpu = 4;
        record.memory_mb = 16384;
        record.disk_gb = 100;
        store
            .transact(|tx| {
                tx.insert_vm(&record)?;
                tx.insert_lease(&lease(&owner, [10, 254, 0, 33 + index], record.id))
            })
            .unwrap();
        vms.push(record);
    }
    let mut deleted = vms[0].clone();
    deleted.state = VmState::Deleted;
    store.transact(|tx| tx.update_vm(&deleted)).unwrap();
    let usage = store.query(|tx| tx.usage(&owner)).unwrap();
    assert_eq!(
        usage,
        Usage { vms: 2, clusters: 0, ips: 3, vcpus: 8, memory_mb: 32768, disk_gb: 200 },
        "usage counts live records and every lease"
    );
    assert_eq!(store.query(|tx| tx.usage(&username("ghost"))).unwrap(), Usage::default());
}

pub fn check_blocks_and_leases(store: &dyn Store) {
    let alice = user("alice", 1);
    let bob = user("bob", 2);
    store
        .transact(|tx| {
            tx.insert_user(&alice)?;
            tx.insert_user(&bob)
        })
        .unwrap();
    let (a, b) = (alice.username.clone(), bob.username.clone());
    let a_block = block(&a, [10, 254, 0, 64], 32);
    let b_block = block(&b, [10, 254, 0, 32], 32);
    store
        .transact(|tx| {
            tx.insert_block(&a_block)?;
            tx.insert_block(&b_block)
        })
        .unwrap();
    expect_kind(
        store.transact(|tx| tx.insert_block(&block(&b, [10, 254, 0, 64], 32))),
        "conflict",
        "the same block twice",
    );
    expect_kind(
        store.transact(|tx| tx.insert_block(&block(&b, [10, 254, 0, 0], 128))),
        "conflict",
        "a larger block overlapping others",
    );
    expect_kind(
        store.transact(|tx| tx.insert_block(&block(&b, [10, 254, 0, 80], 16))),
        "conflict",
        "a smaller block inside another",
    );
    assert_eq!(
        store.query(|tx| tx.list_blocks(None)).unwrap(),
        vec![b_block.clone(), a_block.clone()],
        "blocks ordered by address"
    );
    assert_eq!(store.query(|tx| tx.list_blocks(Some("other"))).unwrap(), vec![]);
    assert_eq!(store.query(|tx| tx.blocks_of(&a)).unwrap(), vec![a_block.clone()]);

    let resource = Uuid::now_v7();
    let first = lease(&a, [10, 254, 0, 65], resource);
    store.transact(|tx| tx.insert_lease(&first)).unwrap();
    assert_eq!(store.query(|tx| tx.get_lease(first.address)).unwrap().unwrap(), first);
    let mut stolen = lease(&b, [10, 254, 0, 65], Uuid::now_v7());
    stolen.resource.name = "other".into();
    expect_kind(store.transact(|tx| tx.insert_lease(&stolen)), "already-exists", "an address is leased at most once");
    store.transact(|tx| tx.insert_lease(&lease(&a, [10, 254, 0, 70], resource))).unwrap();
    store.transact(|tx| tx.insert_lease(&lease(&b, [10, 254, 0, 33], Uuid::now_v7()))).unwrap();

    let occupancy = store.query(|tx| tx.occupancy(&a_block)).unwrap();
    assert_eq!((occupancy.len(), occupancy.count()), (32, 2));
    assert!(occupancy.contains(1) && occupancy.contains(6) && !occupancy.contains(0));
    assert_eq!(store.query(|tx| tx.leases_of_resource(resource)).unwrap().len(), 2);
    let listed: Vec<Ipv4Addr> =
        store.query(|tx| tx.list_leases(None)).unwrap().into_iter().map(|l| l.address).collect();
    assert_eq!(
        listed,
        [Ipv4Addr::new(10, 254, 0, 33), Ipv4Addr::new(10, 254, 0, 65), Ipv4Addr::new(10, 254, 0, 70)],
        "leases ordered by address"
    );
    assert_eq!(store.query(|tx| tx.list_leases(Some(&a))).unwrap().len(), 2);

    store.transact(|tx| tx.set_lease_state(first.address, LeaseState::Active)).unwrap();
    assert_eq!(store.query(|tx| tx.get_lease(first.address)).unwrap().unwrap().state, LeaseState::Active);
    expect_kind(
        store.transact(|tx| tx.set_lease_state(Ipv4Addr::new(10, 254, 0, 99), LeaseState::Active)),
        "not-found",
        "state of an unleased address",
    );

    expect_kind(store.transact(|tx| tx.delete_block(a_block.start)), "conflict", "a block with leases");
    store.transact(|tx| tx.delete_lease(first.address)).unwrap();
    expect_kind(store.transact(|tx| tx.delete_lease(first.address)), "not-found", "release of an unleased address");
    let occupancy = store.query(|tx| tx.occupancy(&a_block)).unwrap();
    assert_eq!(occupancy.count(), 1, "a released address is free again");
    store.transact(|tx| tx.delete_lease(Ipv4Addr::new(10, 254, 0, 70))).unwrap();
    store.transact(|tx| tx.delete_block(a_block.start)).unwrap();
    expect_kind(store.transact(|tx| tx.delete_block(a_block.start)), "not-found", "a deleted block");
    expect_kind(store.transact(|tx| tx.delete_user(&b)), "conflict", "deleting a user who holds addresses");

    expect_kind(
        store.transact(|tx| tx.insert_block(&block(&username("ghost"), [10, 254, 1, 0], 32))),
        "not-found",
        "a block for an unknown user",
    );
    expect_kind(
        store.transact(|tx| tx.insert_lease(&lease(&username("ghost"), [10, 254, 1, 1], Uuid::now_v7()))),
        "not-found",
        "a lease for an unknown user",
    );

    // A block inserted over existing leases sees them.
    store.transact(|tx| tx.insert_lease(&lease(&a, [10, 254, 0, 66], resource))).unwrap();
    store.transact(|tx| tx.insert_block(&a_block)).unwrap();
    assert!(store.query(|tx| tx.occupancy(&a_block)).unwrap().contains(2));
}

pub fn check_idempotency(store: &dyn Store) {
    let alice = username("alice");
    let record = IdempotencyRecord {
        owner: alice.clone(),
        key: "retry-1".into(),
        request_hash: "abc".into(),
        operations: vec![Uuid::now_v7(), Uuid::now_v7()],
        created_at: now(),
    };
    assert_eq!(store.query(|tx| tx.get_idempotency(&alice, "retry-1")).unwrap(), None);
    store.transact(|tx| tx.insert_idempotency(&record)).unwrap();
    assert_eq!(store.query(|tx| tx.get_idempotency(&alice, "retry-1")).unwrap(), Some(record.clone()));
    expect_kind(store.transact(|tx| tx.insert_idempotency(&record)), "already-exists", "a key is used once per owner");
    let bobs = IdempotencyRecord { owner: username("bob"), ..record };
    store.transact(|tx| tx.insert_idempotency(&bobs)).expect("keys are per owner");
}

/// A failed transaction leaves nothing behind, whatever it wrote before failing.
pub fn check_rollback(store: &dyn Store) {
    let alice = user("alice", 1);
    store.transact(|tx| tx.insert_user(&alice)).unwrap();
    let owner = alice.username.clone();
    let before = snapshot(store, &owner);
    let record = vm(&owner, "web");
    let result: crate::Result<()> = store.transact(|tx| {
        tx.insert_block(&block(&owner, [10, 254, 0, 32], 32))?;
        tx.insert_lease(&lease(&owner, [10, 254, 0, 33], record.id))?;
        tx.insert_vm(&record)?;
        let mut changed = alice.clone();
        changed.team = "changed".into();
        tx.update_user(&changed)?;
        tx.set_quota_override(&owner, Some(&QuotaOverride { max_vms: Some(1), ..QuotaOverride::default() }))?;
        tx.append_audit(&AuditEvent::new(
            "alice",
            "vm.create",
            "vm/alice/web",
            "test",
            Outcome::Success,
            serde_json::Value::Null,
        ))?;
        tx.insert_operation(&Operation::new(
            OperationKind::CreateVm,
            owner.clone(),
            ResourceRef { kind: ResourceKind::Vm, id: record.id, name: "web".into() },
            "alice",
            &[],
        ))?;
        Err(Error::Conflict("abandon".into()))
    });
    expect_kind(result, "conflict", "the closure's own error is returned");
    assert_eq!(snapshot(store, &owner), before, "nothing of a failed transaction remains");

    // A constraint violation half-way also rolls back the earlier writes.
    let result = store.transact(|tx| {
        tx.insert_vm(&vm(&owner, "one"))?;
        tx.insert_vm(&vm(&owner, "one"))
    });
    expect_kind(result, "already-exists", "duplicate inside one transaction");
    assert!(store.query(|tx| tx.list_vms(&VmFilter::default())).unwrap().is_empty());
}

type Snapshot = (Vec<User>, Vec<Vm>, Vec<IpBlock>, Vec<Lease>, Option<QuotaOverride>, usize, usize);

fn snapshot(store: &dyn Store, owner: &Username) -> Snapshot {
    store
        .query(|tx| {
            Ok((
                tx.list_users()?,
                tx.list_vms(&VmFilter { include_deleted: true, ..VmFilter::default() })?,
                tx.list_blocks(None)?,
                tx.list_leases(None)?,
                tx.quota_override(owner)?,
                tx.list_audit(&AuditFilter::default())?.len(),
                tx.list_operations(&OperationFilter::default())?.len(),
            ))
        })
        .unwrap()
}

/// Writers are serialised: read-check-write inside one transaction never loses an update.
pub fn check_concurrent_writers(store: Arc<dyn Store>) {
    let alice = user("alice", 1);
    store.transact(|tx| tx.insert_user(&alice)).unwrap();
    let owner = alice.username.clone();
    let limit = 10;
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let (store, owner) = (store.clone(), owner.clone());
            std::thread::spawn(move || {
                let mut created = 0;
                for index in 0..5 {
                    let record = vm(&owner, &format!("t{thread}-{index}"));
                    let result = store.transact(|tx| {
                        if tx.usage(&owner)?.vms >= limit {
                            return Err(Error::QuotaExceeded {
                                resource: "vms",
                                used: limit,
                                requested: limit + 1,
                                limit,
                            });
                        }
                        tx.insert_vm(&record)
                    });
                    match result {
                        Ok(()) => created += 1,
                        Err(Error::QuotaExceeded { .. }) => {}
                        Err(other) => panic!("unexpected {other}"),
                    }
                }
                created
            })
        })
        .collect();
    let created: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert_eq!(created, limit, "exactly the limit was created");
    assert_eq!(store.query(|tx| tx.usage(&owner)).unwrap().vms, limit);
}
