//! The importer on fixture trees written in the original's exact formats (`tests/fixtures/
//! healthy` and `tests/fixtures/broken`), into a real SQLite store.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use basphere_core::config::Config;
use basphere_core::model::*;
use basphere_core::store::copy::Snapshot;
use basphere_core::store::{Store, StoreExt};
use basphere_core::validate::{ResourceName, SshPublicKey, Username};
use basphere_import::{import, parse_main_tf, suggested_config, Original, Plan};
use basphere_store::SqliteStore;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn store(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir.join("basphere.db")).unwrap()
}

fn config() -> Config {
    Config::from_yaml("").unwrap()
}

fn run(root: &Path, store: &dyn Store, dry_run: bool) -> Plan {
    let original = Original::read(root).unwrap();
    import(&original, &config().pools, store, "root", dry_run).unwrap()
}

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn vm(store: &dyn Store, owner: &str, name: &str) -> Vm {
    store.vm(&user(owner), &ResourceName::parse(name).unwrap()).unwrap()
}

#[test]
fn a_healthy_installation_is_imported_whole_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let root = fixture("healthy");

    let dry = run(&root, &store, true);
    assert!(dry.conflicts.is_empty(), "{}", dry.report("fixture", true));
    assert!(dry.faults.is_empty(), "a healthy tree has no faults: {}", dry.report("fixture", true));
    assert_eq!(Snapshot::read(&store).unwrap(), Snapshot::default(), "a dry run writes nothing");
    let counts = dry.counts();
    assert_eq!(
        (counts["accounts"], counts["vms"], counts["clusters"], counts["ip blocks"], counts["leases"]),
        (2, 3, 1, 2, 6),
        "{counts:?}"
    );
    assert_eq!((counts["registrations"], counts["key changes"], counts["quota overrides"]), (2, 1, 1));

    let done = run(&root, &store, false);
    assert_eq!(done.counts(), counts, "the real run writes what the dry run said");

    // Accounts: uid from /etc/passwd, the first key of authorized_keys, bob's email and team
    // from his approved registration (the original's API approval left them empty).
    let alice = store.user(&user("alice")).unwrap();
    assert_eq!((alice.uid, alice.email.as_str(), alice.team.as_str()), (Some(1001), "alice@example.com", "platform"));
    assert_eq!(alice.created_at.to_rfc3339(), "2025-03-02T09:14:03+00:00");
    let bob = store.user(&user("bob")).unwrap();
    assert_eq!((bob.uid, bob.email.as_str(), bob.team.as_str()), (Some(1002), "bob@example.com", "data"));
    assert!(bob.ssh_key.as_str().ends_with("bob@laptop"), "the first key line, as the original injected it");
    let bob_quota = store.query(|tx| tx.quota_override(&user("bob"))).unwrap().unwrap();
    assert_eq!(bob_quota.max_clusters, Some(5), "max_clusters from bob's metadata");

    // VMs with their vSphere names, OS, spec and sizes; states mapped.
    let web = vm(&store, "alice", "web");
    assert_eq!(
        (web.vsphere_name().as_str(), web.os.as_str(), web.spec.as_str(), web.cpu, web.memory_mb, web.disk_gb),
        ("alice-web", "ubuntu-24.04", "small", 2, 8192, 50)
    );
    assert_eq!((web.state, web.ip), (VmState::Running, Some(Ipv4Addr::new(10, 254, 0, 32))));
    let ci = vm(&store, "bob", "ci");
    assert_eq!(ci.state, VmState::Failed);
    assert!(ci.reason.unwrap().contains("delete it to free its address"));
    let db = vm(&store, "alice", "db");
    assert_eq!((db.cpu, db.memory_mb, db.disk_gb), (4, 16384, 100));

    // IPAM: blocks and leases tied to their resources.
    let blocks = store.query(|tx| tx.list_blocks(None)).unwrap();
    let starts: Vec<(String, String)> = blocks.iter().map(|b| (b.owner.to_string(), b.start.to_string())).collect();
    assert_eq!(starts, [("alice".into(), "10.254.0.32".into()), ("bob".into(), "10.254.0.64".into())]);
    let lease = store.query(|tx| tx.get_lease(None, Ipv4Addr::new(10, 254, 0, 32))).unwrap().unwrap();
    assert_eq!((lease.resource.kind, lease.resource.id), (ResourceKind::Vm, web.id));

    // The cluster, its endpoint and node leases under Basphere's names.
    let cluster =
        store.query(|tx| tx.cluster_by_name(&user("bob"), &ResourceName::parse("dev1").unwrap())).unwrap().unwrap();
    assert_eq!(
        (cluster.state, cluster.control_plane_endpoint),
        (ClusterState::Provisioning, Some(Ipv4Addr::new(10, 254, 0, 65)))
    );
    assert_eq!((cluster.worker_spec.cpu, cluster.control_plane_spec.key.as_str()), (4, "medium"));
    let names: Vec<String> =
        store.query(|tx| tx.leases_of_resource(cluster.id)).unwrap().into_iter().map(|l| l.resource.name).collect();
    assert_eq!(names, ["dev1-vip", "dev1-node-1", "dev1-node-2"]);

    // Requests: carol's pending registration and alice's pending key change.
    let pending = store.query(|tx| tx.list_registrations(&Default::default())).unwrap();
    let states: Vec<(String, RequestStatus)> = pending.iter().map(|r| (r.username.to_string(), r.status)).collect();
    assert_eq!(states, [("bob".into(), RequestStatus::Approved), ("carol".into(), RequestStatus::Pending)]);
    let change = store.query(|tx| tx.list_key_changes(&Default::default())).unwrap();
    assert_eq!((change[0].username.as_str(), change[0].reason.as_str()), ("alice", "new laptop"));

    // The import is audited once.
    let audits = store.query(|tx| tx.list_audit(&Default::default())).unwrap();
    assert_eq!(audits.iter().filter(|e| e.action == "import.original").count(), 1);

    // A second run changes nothing at all.
    let before = Snapshot::read(&store).unwrap();
    let again = run(&root, &store, false);
    assert!(again.is_empty(), "{}", again.report("fixture", false));
    assert_eq!(again.unchanged["accounts"], 2);
    assert_eq!(again.unchanged["vms"], 3);
    assert_eq!(again.unchanged["clusters"], 1);
    assert!(again.report("fixture", false).contains("Nothing to do"));
    assert_eq!(Snapshot::read(&store).unwrap(), before, "idempotent: the store is as the first run left it");
}

#[test]
fn the_broken_installation_is_reported_fault_by_fault_and_repaired_or_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let plan = run(&fixture("broken"), &store, true);
    let report = plan.report("/srv/original", true);
    println!("{report}");
    assert!(plan.conflicts.is_empty(), "{report}");
    let says = |needle: &str| assert!(report.contains(needle), "the report should say {needle:?}:\n{report}");
    says("/var/lib/basphere/terraform/alice/cache/metadata.json: is empty (0 bytes)");
    says("alice/cache: has no readable metadata.json: rebuilt from its main.tf and its lease (4 vCPU, 16384 MB, 100 GB, OS rocky-10.1) and imported as lost");
    says("leases 10.254.0.36 to alice/old (vm), which does not exist (a lease without a VM); not imported, so 10.254.0.36 is free again");
    says("alice/api: has 10.254.0.37 but no lease (a VM without a lease): 10.254.0.37 is leased to it");
    says("leases 10.254.0.32 to bob/tmp although line 2 leases it to alice/web: two leases for one address; line 2 is kept");
    says("dave: has no /var/lib/basphere/users/dave/metadata.json (a user without a record) but holds block 10.254.0.96, VM box; not imported");
    says("erin: uses the same SSH key as alice");
    says("frank: has no email");
    says("/var/lib/basphere/pending/req-deadbeef.json:");
    says("alice/big: has the spec \"xl\", which specs.yaml does not define; sized 12 vCPU, 8192 MB, 50 GB as the original built it");
    assert_eq!(Snapshot::read(&store).unwrap(), Snapshot::default(), "a dry run writes nothing");

    let done = run(&fixture("broken"), &store, false);
    assert_eq!(done.counts(), plan.counts());
    let cache = vm(&store, "alice", "cache");
    assert_eq!(
        (cache.state, cache.ip, cache.os.as_str(), cache.spec.as_str()),
        (VmState::Lost, Some(Ipv4Addr::new(10, 254, 0, 35)), "rocky-10.1", "medium")
    );
    let api = vm(&store, "alice", "api");
    assert_eq!(api.ip, Some(Ipv4Addr::new(10, 254, 0, 37)));
    let held = |address: [u8; 4]| store.query(|tx| tx.get_lease(None, Ipv4Addr::from(address))).unwrap();
    assert_eq!(held([10, 254, 0, 37]).unwrap().resource.id, api.id, "the missing lease is made");
    assert!(held([10, 254, 0, 36]).is_none(), "a lease without a VM frees its address");
    assert_eq!(held([10, 254, 0, 32]).unwrap().owner.as_str(), "alice", "of two leases, the VM's is kept");
    for absent in ["dave", "erin", "frank"] {
        assert!(store.query(|tx| tx.get_user(&user(absent))).unwrap().is_none(), "{absent} is not imported");
    }
    assert!(store.query(|tx| tx.list_blocks(None)).unwrap().iter().all(|b| b.owner.as_str() != "dave"));
    let pending: Vec<String> = store
        .query(|tx| tx.list_registrations(&Default::default()))
        .unwrap()
        .iter()
        .map(|r| r.username.to_string())
        .collect();
    assert!(!pending.contains(&"mallory".to_owned()), "a request with a broken key is not imported");

    // Idempotent on a broken source too.
    let before = Snapshot::read(&store).unwrap();
    assert!(run(&fixture("broken"), &store, false).is_empty());
    assert_eq!(Snapshot::read(&store).unwrap(), before);
}

#[test]
fn a_conflict_stops_the_whole_import_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    // Basphere already has an "alice" who is someone else (another uid, key and email).
    let other = User {
        username: user("alice"),
        email: basphere_core::validate::Email::parse("alice@elsewhere.org").unwrap(),
        team: String::new(),
        ssh_key: SshPublicKey::parse(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINhaTUUNajorz2JHKwj/ZMgXi9krxfcVANuc21v7/Nge someone",
        )
        .unwrap(),
        role: Role::User,
        status: UserStatus::Active,
        uid: Some(2001),
        created_at: now(),
        updated_at: now(),
    };
    store.transact(|tx| tx.insert_user(&other)).unwrap();
    let before = Snapshot::read(&store).unwrap();
    let plan = run(&fixture("healthy"), &store, false);
    let report = plan.report("fixture", false);
    assert!(
        plan.conflicts.iter().any(|c| c.subject == "alice" && c.what.contains("another uid, key and email")),
        "{report}"
    );
    assert!(report.contains("Nothing was written"), "{report}");
    assert_eq!(Snapshot::read(&store).unwrap(), before, "all or nothing: bob and the rest are not written either");

    // A configuration whose blocks are another size is named by its key.
    let small_blocks = Config::from_yaml("network: {block_size: 16}").unwrap();
    let original = Original::read(&fixture("healthy")).unwrap();
    let fresh = SqliteStore::open(dir.path().join("fresh.db")).unwrap();
    let plan = import(&original, &small_blocks.pools, &fresh, "root", false).unwrap();
    assert!(
        plan.conflicts.iter().any(|c| c.what.contains("set network.block_size to 32")),
        "{}",
        plan.report("f", false)
    );
    assert_eq!(Snapshot::read(&fresh).unwrap(), Snapshot::default());
}

#[test]
fn the_original_configuration_becomes_a_basphere_configuration() {
    let original = Original::read(&fixture("healthy")).unwrap();
    let (text, notes) = suggested_config(&original.config);
    let config = Config::from_yaml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.pools[0].cidr.to_string(), "10.254.0.0/21");
    assert_eq!(config.pools[0].block_size, 32);
    assert_eq!(config.vm_specs["medium"].memory_mb, 16384);
    assert_eq!(config.os_images["rocky-10.1"].interface, "ens33");
    assert_eq!((config.server_section["host"].as_str(), config.bastion.port), (Some("127.0.0.1"), 50022));
    assert!(config.allowed_email_domains.allows("example.com"));
    assert!(text.contains("credentials_file: /etc/basphere/vsphere.env"), "{text}");
    assert!(notes.iter().any(|n| n.contains("not carried from config.yaml: paths")), "{notes:?}");
}

#[test]
fn a_main_tf_gives_back_what_sed_rendered() {
    let text =
        std::fs::read_to_string(fixture("broken").join("var/lib/basphere/terraform/alice/cache/main.tf")).unwrap();
    let parsed = parse_main_tf(&text);
    assert_eq!(
        (parsed.num_cpus, parsed.memory, parsed.disk_size, parsed.template.as_deref(), parsed.ip_address),
        (Some(4), Some(16384), Some(100), Some("rocky-10-template"), Some(Ipv4Addr::new(10, 254, 0, 35)))
    );
    assert_eq!(parse_main_tf("nothing here"), Default::default());
}

#[test]
fn a_directory_that_is_not_an_original_installation_is_refused_with_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let error = Original::read(dir.path()).unwrap_err().to_string();
    assert!(error.contains("var/lib/basphere is not a directory: give the original's filesystem root"), "{error}");
}
