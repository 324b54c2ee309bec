//! `TerraformProvisioner`: the original's path, made safe. One working directory per VM and per
//! user folder under the server's data directory, private to the service account (0700, files
//! 0600); the configuration is static and every value arrives as JSON; `terraform` runs with
//! the vCenter credentials in its environment only, under timeouts that kill its process group.

pub mod render;
pub mod runner;

use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use basphere_core::provisioner::*;
use basphere_core::validate::Username;
use basphere_core::{Error, Result};
use tokio::sync::Semaphore;

use runner::Runner;
pub use runner::TerraformError;

use crate::config::VsphereConfig;
use crate::credentials::Credentials;

/// The VM's resource in `templates/vm.tf`.
const VM_RESOURCE: &str = "vsphere_virtual_machine.vm";
/// The `extra_config` key that says whose VM it is.
const MARKER: &str = "guestinfo.basphere.id";

/// The VM in a working directory's state.
enum StateVm {
    Absent,
    /// In the state, carrying this marker (empty when it carries none).
    Marked(String),
}

/// How the Terraform backend runs.
#[derive(Clone, Debug)]
pub struct TerraformSettings {
    pub binary: PathBuf,
    /// Root of the working directories (`<data dir>/terraform`).
    pub work_dir: PathBuf,
    pub vsphere: VsphereConfig,
    pub credentials: Credentials,
    /// `TF_PLUGIN_CACHE_DIR`: providers downloaded once, shared by every run.
    pub plugin_cache_dir: Option<PathBuf>,
    /// `TF_CLI_CONFIG_FILE`: e.g. a provider mirror for sites without internet.
    pub cli_config_file: Option<PathBuf>,
    pub init_timeout: Duration,
    pub apply_timeout: Duration,
    /// Terraform runs at once, at most.
    pub parallelism: usize,
}

/// The Terraform VM backend.
pub struct TerraformProvisioner {
    settings: TerraformSettings,
    runner: Runner,
}

/// Creates a directory (and its parents) private to the service account.
pub(crate) fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

impl TerraformProvisioner {
    pub fn new(settings: TerraformSettings) -> Result<Self> {
        create_private_dir(&settings.work_dir).map_err(|error| Error::backend("terraform", error))?;
        let mut env = vec![
            ("VSPHERE_USER".to_owned(), settings.credentials.user.clone()),
            ("VSPHERE_PASSWORD".to_owned(), settings.credentials.password.clone()),
            ("TF_IN_AUTOMATION".to_owned(), "1".to_owned()),
            ("TF_INPUT".to_owned(), "0".to_owned()),
            ("CHECKPOINT_DISABLE".to_owned(), "1".to_owned()),
            ("HOME".to_owned(), settings.work_dir.display().to_string()),
        ];
        if let Some(cache) = &settings.plugin_cache_dir {
            env.push(("TF_PLUGIN_CACHE_DIR".to_owned(), cache.display().to_string()));
        }
        if let Some(config) = &settings.cli_config_file {
            env.push(("TF_CLI_CONFIG_FILE".to_owned(), config.display().to_string()));
        }
        let runner = Runner {
            binary: settings.binary.clone(),
            env,
            permits: Arc::new(Semaphore::new(settings.parallelism.max(1))),
        };
        Ok(TerraformProvisioner { settings, runner })
    }

    /// `<work>/<owner>/<vm id>`: by id, so a name used again later gets a fresh directory.
    pub fn vm_dir(&self, owner: &Username, id: uuid::Uuid) -> PathBuf {
        self.settings.work_dir.join(owner.as_str()).join(id.to_string())
    }

    pub fn folder_dir(&self, owner: &Username) -> PathBuf {
        self.settings.work_dir.join(owner.as_str()).join("_folder")
    }

    fn prepare(&self, dir: &Path, main_tf: &str, tfvars: &serde_json::Value, extra: &[(&str, &str)]) -> Result<()> {
        let io = |error: std::io::Error| Error::backend("terraform", error);
        create_private_dir(dir).map_err(io)?;
        write_private(&dir.join("main.tf"), main_tf.as_bytes()).map_err(io)?;
        write_private(
            &dir.join("terraform.tfvars.json"),
            serde_json::to_string_pretty(tfvars).expect("json").as_bytes(),
        )
        .map_err(io)?;
        for (name, contents) in extra {
            write_private(&dir.join(name), contents.as_bytes()).map_err(io)?;
        }
        Ok(())
    }

    async fn init(&self, dir: &Path) -> Result<()> {
        if dir.join(".terraform").exists() && dir.join(".terraform.lock.hcl").exists() {
            return Ok(());
        }
        self.runner.run(dir, &["init", "-input=false", "-no-color"], self.settings.init_timeout, "init").await?;
        Ok(())
    }

    async fn apply(&self, dir: &Path) -> Result<Vec<String>> {
        let output = self
            .runner
            .run(dir, &["apply", "-auto-approve", "-input=false", "-no-color"], self.settings.apply_timeout, "apply")
            .await?;
        Ok(output.log_tail)
    }

    async fn outputs(&self, dir: &Path) -> Result<serde_json::Value> {
        let output = self.runner.run(dir, &["output", "-json"], Duration::from_secs(60), "output").await?;
        serde_json::from_str(&output.stdout).map_err(|error| Error::backend("terraform", error))
    }

    /// Removes the VM from the state without touching it in vSphere.
    async fn forget_vm(&self, dir: &Path) -> Result<()> {
        self.runner.run(dir, &["state", "rm", "-no-color", VM_RESOURCE], Duration::from_secs(60), "state-rm").await?;
        Ok(())
    }

    /// Whether the state holds the VM, and the `guestinfo.basphere.id` it carries there.
    async fn state_marker(&self, dir: &Path) -> Result<StateVm> {
        let output = self.runner.run(dir, &["show", "-json", "-no-color"], Duration::from_secs(60), "show").await?;
        let state: serde_json::Value =
            serde_json::from_str(&output.stdout).map_err(|error| Error::backend("terraform", error))?;
        let resources = state["values"]["root_module"]["resources"].as_array().cloned().unwrap_or_default();
        Ok(match resources.iter().find(|resource| resource["address"] == VM_RESOURCE) {
            None => StateVm::Absent,
            Some(resource) => {
                StateVm::Marked(resource["values"]["extra_config"][MARKER].as_str().unwrap_or_default().to_owned())
            }
        })
    }

    /// The owner's folder as an inventory path, `/<datacenter>/vm/<base folder>/<owner>`.
    fn folder_path(&self, owner: &Username) -> String {
        format!("/{}/vm/{}/{owner}", self.settings.vsphere.datacenter, self.settings.vsphere.folder)
    }

    /// The vSphere inventory path of a VM, for `terraform import`.
    fn inventory_path(&self, request: &VmRequest) -> String {
        format!("{}/{}", self.folder_path(&request.owner), request.vsphere_name())
    }
}

#[async_trait]
impl Provisioner for TerraformProvisioner {
    fn backend_name(&self) -> &'static str {
        "terraform"
    }

    async fn preflight(&self) -> Result<()> {
        let meta = std::fs::metadata(&self.settings.work_dir).map_err(|error| Error::backend("terraform", error))?;
        if meta.mode() & 0o022 != 0 {
            return Err(Error::Conflict(format!(
                "{} is writable by others (mode {:o}): Terraform would run code they put there",
                self.settings.work_dir.display(),
                meta.mode() & 0o777
            )));
        }
        let probe = self.settings.work_dir.join(".preflight");
        create_private_dir(&probe).map_err(|error| Error::backend("terraform", error))?;
        self.runner.run(&probe, &["version"], Duration::from_secs(30), "version").await?;
        Ok(())
    }

    async fn ensure_folder(&self, owner: &Username) -> Result<()> {
        let dir = self.folder_dir(owner);
        self.prepare(&dir, render::FOLDER_TF, &render::folder(owner, &self.settings.vsphere), &[])?;
        self.init(&dir).await?;
        self.apply(&dir).await?;
        Ok(())
    }

    async fn create_vm(&self, request: &VmRequest) -> Result<VmHandle> {
        let dir = self.vm_dir(&request.owner, request.id);
        let files = render::vm(request, &self.settings.vsphere)?;
        let record = serde_json::to_string_pretty(&serde_json::json!({"id": request.id, "owner": request.owner, "name": request.name, "vsphere_name": request.vsphere_name(), "os": request.os.key, "spec": request.spec.key, "ip": request.network.address})).expect("json");
        self.prepare(
            &dir,
            files.main_tf,
            &files.tfvars,
            &[("metadata.yaml", &files.metadata), ("userdata.yaml", &files.userdata), ("basphere.json", &record)],
        )?;
        self.init(&dir).await?;
        let mut log_tail = match self.apply(&dir).await {
            Ok(log) => log,
            Err(Error::Backend { log_tail, .. }) if log_tail.iter().any(|line| line.contains("already exists")) => {
                // A VM of this name exists but is not in this directory's state: maybe an apply
                // cut off after vSphere made the VM. Import it, and keep it only if it carries
                // this request's marker.
                let path = self.inventory_path(request);
                self.runner
                    .run(
                        &dir,
                        &["import", "-input=false", "-no-color", VM_RESOURCE, &path],
                        self.settings.apply_timeout,
                        "import",
                    )
                    .await?;
                let marker = self.outputs(&dir).await?["basphere_id"]["value"].as_str().map(str::to_owned);
                if marker.as_deref() != Some(request.id.to_string().as_str()) {
                    self.forget_vm(&dir).await?;
                    return Err(crate::foreign_vm(&request.vsphere_name(), &self.folder_path(&request.owner)));
                }
                self.apply(&dir).await?
            }
            Err(error) => return Err(error),
        };
        let outputs = self.outputs(&dir).await?;
        let backend_id = outputs["vm_moid"]["value"]
            .as_str()
            .or_else(|| outputs["vm_id"]["value"].as_str())
            .unwrap_or_default()
            .to_owned();
        if backend_id.is_empty() {
            return Err(Error::backend(
                "terraform",
                basphere_core::error::Message(format!("terraform output has no vm_moid or vm_id: {outputs}")),
            ));
        }
        log_tail.push(format!("working directory {}", dir.display()));
        Ok(VmHandle { backend_id, power: PowerState::On, log_tail })
    }

    /// Destroys the VM this directory's state holds, and only if it carries `vm`'s id. A state
    /// without it (a create that failed before vSphere made anything, or found the name taken by
    /// a VM that is not Basphere's) has nothing of Basphere's to destroy: the destroy succeeds
    /// without running `terraform destroy`, which touches nothing and needs no vCenter object.
    async fn destroy_vm(&self, vm: &VmRef) -> Result<()> {
        let dir = self.vm_dir(&vm.owner, vm.id);
        if !dir.join("main.tf").exists() {
            return Ok(()); // never applied here, or already destroyed and archived
        }
        self.init(&dir).await?;
        match self.state_marker(&dir).await? {
            StateVm::Absent => {}
            StateVm::Marked(marker) if marker == vm.id.to_string() => {
                self.runner
                    .run(
                        &dir,
                        &["destroy", "-auto-approve", "-input=false", "-no-color"],
                        self.settings.apply_timeout,
                        "destroy",
                    )
                    .await?;
            }
            StateVm::Marked(other) => {
                // Imported, then found to be someone else's, and the process stopped before
                // forgetting it: forget it now, never destroy it.
                tracing::warn!(vm = %vm.vsphere_name, id = %vm.id, marker = %other, "the state holds a VM that is not this one; forgetting it, not destroying it");
                self.forget_vm(&dir).await?;
            }
        }
        // Keep the state and logs for the administrator, out of the live tree.
        let archive = self.settings.work_dir.join("_destroyed").join(vm.owner.as_str());
        create_private_dir(&archive).map_err(|error| Error::backend("terraform", error))?;
        let stamp = basphere_core::model::now().format("%Y%m%dT%H%M%SZ");
        std::fs::rename(&dir, archive.join(format!("{}-{stamp}", vm.id)))
            .map_err(|error| Error::backend("terraform", error))?;
        Ok(())
    }

    async fn power(&self, _vm: &VmRef, _action: PowerAction) -> Result<PowerState> {
        Err(Error::NotSupported("the terraform backend cannot change a VM's power state; use the vsphere-api backend for start, stop and reboot".into()))
    }

    async fn inventory(&self) -> Result<Vec<InventoryVm>> {
        Err(Error::NotSupported(
            "the terraform backend cannot list vSphere's inventory; reconciliation needs the vsphere-api backend"
                .into(),
        ))
    }
}
