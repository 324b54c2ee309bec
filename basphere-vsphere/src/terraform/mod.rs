//! `TerraformProvisioner`: the original's path, made safe. One working directory per VM and per
//! user folder under the server's data directory, private to the service account (0700, files
//! 0600); the configuration is static and every value arrives as JSON; `terraform` runs with
//! the vCenter credentials in its environment only, under timeouts that kill its process group.
//!
//! The state lives where the configuration says ([`StateBackend`]): in the working directory
//! (one server), or in PostgreSQL through Terraform's `pg` backend, a workspace per VM, where
//! every replica finds it. A destroy that finds no working directory renders one from what it
//! knows and looks the VM up in vCenter by its inventory path and marker; it never reports
//! success for a VM it could not look for.

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

/// Where Terraform keeps the state, resolved for running (the database password read).
#[derive(Clone)]
pub enum StateBackend {
    /// `terraform.tfstate` in each working directory.
    Local,
    /// Terraform's `pg` backend: `conn_str` and `schema` go to `terraform init -backend-config`,
    /// the password to the environment as `PGPASSWORD`; each VM is the workspace `vm-<id>` and
    /// each user folder `folder-<owner>`, chosen with `TF_WORKSPACE`.
    Pg { conn_str: String, schema: String, password: Option<String> },
}

impl std::fmt::Debug for StateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateBackend::Local => f.write_str("Local"),
            StateBackend::Pg { conn_str, schema, password } => f
                .debug_struct("Pg")
                .field("conn_str", conn_str)
                .field("schema", schema)
                .field("password", &password.as_ref().map(|_| "<redacted>"))
                .finish(),
        }
    }
}

/// A working directory and the state workspace it uses.
struct Work {
    dir: PathBuf,
    workspace: String,
}

/// What a look for a VM in vCenter found.
enum Found {
    /// Not in vCenter.
    Nothing,
    /// Imported into the state, carrying this marker.
    Marked(String),
}

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
    /// Where the state lives.
    pub state: StateBackend,
    /// An OS template of the configuration, for a working directory rendered for a destroy from
    /// the VM's reference alone: Terraform reads the template as a data source, and nothing of it
    /// reaches the VM it destroys.
    pub fallback_template: String,
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
        if let StateBackend::Pg { password: Some(password), .. } = &settings.state {
            env.push(("PGPASSWORD".to_owned(), password.clone()));
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

    fn vm_work(&self, owner: &Username, id: uuid::Uuid) -> Work {
        Work { dir: self.vm_dir(owner, id), workspace: format!("vm-{id}") }
    }

    fn folder_work(&self, owner: &Username) -> Work {
        Work { dir: self.folder_dir(owner), workspace: format!("folder-{owner}") }
    }

    /// Runs `terraform <args>` on `work`'s state: its workspace selected by `TF_WORKSPACE` when
    /// the state is in PostgreSQL (never `init`'s: `init` refuses a workspace not made yet).
    async fn run(
        &self,
        work: &Work,
        args: &[&str],
        timeout: Duration,
        log_name: &str,
    ) -> std::result::Result<runner::RunOutput, TerraformError> {
        let env: &[(&str, &str)] = match self.settings.state {
            StateBackend::Local => &[],
            StateBackend::Pg { .. } => &[("TF_WORKSPACE", work.workspace.as_str())],
        };
        self.runner.run_with(&work.dir, env, args, timeout, log_name).await
    }

    /// Runs a command that writes the state. In PostgreSQL the state's lock is shared by every
    /// replica: a replica that takes over an operation from one that died waits (as long as an
    /// apply may take) for the `terraform` the dead one left running, instead of failing at once.
    async fn run_locked(
        &self,
        work: &Work,
        args: &[&str],
        timeout: Duration,
        log_name: &str,
    ) -> std::result::Result<runner::RunOutput, TerraformError> {
        let lock_timeout = format!("-lock-timeout={}s", timeout.as_secs());
        let mut args = args.to_vec();
        if let StateBackend::Pg { .. } = self.settings.state {
            let at = if args.first() == Some(&"state") { 2 } else { 1 };
            args.insert(at.min(args.len()), lock_timeout.as_str());
        }
        self.run(work, &args, timeout, log_name).await
    }

    fn prepare(&self, dir: &Path, main_tf: &str, tfvars: &serde_json::Value, extra: &[(&str, &str)]) -> Result<()> {
        let io = |error: std::io::Error| Error::backend("terraform", error);
        create_private_dir(dir).map_err(io)?;
        write_private(&dir.join("main.tf"), main_tf.as_bytes()).map_err(io)?;
        if let StateBackend::Pg { .. } = self.settings.state {
            write_private(&dir.join("backend.tf"), render::BACKEND_PG_TF.as_bytes()).map_err(io)?;
        }
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

    async fn init(&self, work: &Work) -> Result<()> {
        let dir = &work.dir;
        let initialised = dir.join(".terraform").exists() && dir.join(".terraform.lock.hcl").exists();
        let pg = match &self.settings.state {
            StateBackend::Local if initialised => return Ok(()),
            StateBackend::Local => None,
            StateBackend::Pg { conn_str, schema, .. } => {
                let local = dir.join("terraform.tfstate");
                if std::fs::metadata(&local).is_ok_and(|meta| meta.len() > 0) {
                    return Err(Error::Conflict(format!(
                        "{} holds state kept in the working directory (from before terraform.state_backend: pg); \
                         Basphere does not move it: push it into the VM's workspace by hand (in that directory, \
                         `TF_WORKSPACE={} terraform state push terraform.tfstate` after `terraform init`), move the file \
                         aside, then retry",
                        local.display(),
                        work.workspace
                    )));
                }
                // The backend Terraform records at init: none, or the local one, means init again.
                if initialised && dir.join(".terraform/terraform.tfstate").exists() {
                    return Ok(());
                }
                Some((format!("-backend-config=conn_str={conn_str}"), format!("-backend-config=schema_name={schema}")))
            }
        };
        let mut args = vec!["init", "-input=false", "-no-color"];
        if let Some((conn_str, schema)) = &pg {
            args.extend(["-reconfigure", conn_str.as_str(), schema.as_str()]);
        }
        self.runner.run(dir, &args, self.settings.init_timeout, "init").await?;
        Ok(())
    }

    async fn apply(&self, work: &Work) -> std::result::Result<Vec<String>, TerraformError> {
        let output = self
            .run_locked(
                work,
                &["apply", "-auto-approve", "-input=false", "-no-color"],
                self.settings.apply_timeout,
                "apply",
            )
            .await?;
        Ok(output.log_tail)
    }

    async fn outputs(&self, work: &Work) -> Result<serde_json::Value> {
        let output = self.run(work, &["output", "-json"], Duration::from_secs(60), "output").await?;
        serde_json::from_str(&output.stdout).map_err(|error| Error::backend("terraform", error))
    }

    /// Removes the VM from the state without touching it in vSphere.
    async fn forget_vm(&self, work: &Work) -> Result<()> {
        self.run_locked(work, &["state", "rm", "-no-color", VM_RESOURCE], self.settings.apply_timeout, "state-rm")
            .await?;
        Ok(())
    }

    /// Whether the state holds the VM, and the `guestinfo.basphere.id` it carries there.
    async fn state_marker(&self, work: &Work) -> Result<StateVm> {
        let output = self.run(work, &["show", "-json", "-no-color"], Duration::from_secs(60), "show").await?;
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
    fn inventory_path(&self, owner: &Username, vsphere_name: &str) -> String {
        format!("{}/{vsphere_name}", self.folder_path(owner))
    }

    /// Imports the VM `vm` names from vCenter into `work`'s state, by its inventory path: what it
    /// carries, or that vCenter has no VM there. Any other failure means nobody can tell, and is
    /// an error that says so.
    async fn look_up(&self, vm: &VmRef, work: &Work) -> Result<Found> {
        let path = self.inventory_path(&vm.owner, &vm.vsphere_name);
        let imported = self
            .run_locked(
                work,
                &["import", "-input=false", "-no-color", VM_RESOURCE, &path],
                self.settings.apply_timeout,
                "import",
            )
            .await;
        match imported {
            Ok(_) => {}
            // What the vSphere provider says when no VM is at that path (govmomi's finder).
            Err(TerraformError::Exit { log_tail, .. })
                if log_tail.iter().any(|line| line.contains(&format!("vm '{path}' not found"))) =>
            {
                return Ok(Found::Nothing)
            }
            Err(error) => {
                let log_tail = error.log_tail();
                return Err(Error::Backend {
                    backend: "terraform",
                    source: Box::new(basphere_core::error::Message(format!(
                        "no Terraform state holds VM {} ({}), and looking for it in vCenter at {path} failed ({error}), \
                         so whether it still exists is unknown: the VM and its address are kept. Fix what the log says \
                         (vCenter reachable, vsphere.credentials_file), then delete it again",
                        vm.vsphere_name, vm.id
                    ))),
                    log_tail,
                });
            }
        }
        Ok(match self.state_marker(work).await? {
            StateVm::Marked(marker) => Found::Marked(marker),
            StateVm::Absent => {
                return Err(Error::backend(
                    "terraform",
                    basphere_core::error::Message(format!(
                        "terraform import of {path} succeeded but the state holds no VM afterwards"
                    )),
                ))
            }
        })
    }

    /// Whether this server already destroyed the VM (its working directory is archived).
    fn archived(&self, vm: &VmRef) -> bool {
        let archive = self.settings.work_dir.join("_destroyed").join(vm.owner.as_str());
        let prefix = format!("{}-", vm.id);
        std::fs::read_dir(archive).is_ok_and(|entries| {
            entries.filter_map(|entry| entry.ok()).any(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        })
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
        let work = self.folder_work(owner);
        self.prepare(&work.dir, render::FOLDER_TF, &render::folder(owner, &self.settings.vsphere), &[])?;
        self.init(&work).await?;
        self.apply(&work).await?;
        Ok(())
    }

    async fn create_vm(&self, request: &VmRequest) -> Result<VmHandle> {
        let work = self.vm_work(&request.owner, request.id);
        let dir = &work.dir;
        let files = render::vm(request, &self.settings.vsphere)?;
        let record = serde_json::to_string_pretty(&serde_json::json!({"id": request.id, "owner": request.owner, "name": request.name, "vsphere_name": request.vsphere_name(), "os": request.os.key, "spec": request.spec.key, "ip": request.network.address})).expect("json");
        self.prepare(
            dir,
            files.main_tf,
            &files.tfvars,
            &[("metadata.yaml", &files.metadata), ("userdata.yaml", &files.userdata), ("basphere.json", &record)],
        )?;
        self.init(&work).await?;
        let mut log_tail = match self.apply(&work).await {
            Ok(log) => log,
            Err(TerraformError::Exists { .. }) => {
                // A VM of this name exists but is not in this directory's state: maybe an apply
                // cut off after vSphere made the VM. Import it, and keep it only if it carries
                // this request's marker.
                let path = self.inventory_path(&request.owner, &request.vsphere_name());
                self.run_locked(
                    &work,
                    &["import", "-input=false", "-no-color", VM_RESOURCE, &path],
                    self.settings.apply_timeout,
                    "import",
                )
                .await?;
                let marker = self.outputs(&work).await?["basphere_id"]["value"].as_str().map(str::to_owned);
                if marker.as_deref() != Some(request.id.to_string().as_str()) {
                    self.forget_vm(&work).await?;
                    return Err(crate::foreign_vm(&request.vsphere_name(), &self.folder_path(&request.owner)));
                }
                self.apply(&work).await?
            }
            Err(error) => return Err(error.into()),
        };
        let outputs = self.outputs(&work).await?;
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

    /// Destroys the VM `vm` names, and only if it carries `vm`'s id. The state says where it is:
    /// this server's working directory's, or the VM's workspace in PostgreSQL, which another
    /// replica may have written. Without a working directory here (another replica's create, or
    /// one lost) the destroy renders one from what it knows. When the state holds no VM (a create
    /// cut off before the state was written, a state lost, or a create that never reached
    /// vSphere), the VM is looked up in vCenter by its inventory path and imported: carrying this
    /// id, it is destroyed; carrying another or none, it is not Basphere's and is left alone; not
    /// there, there is nothing to destroy. A look-up that fails is an error, never a success.
    async fn destroy_vm(&self, vm: &VmRef) -> Result<()> {
        let work = self.vm_work(&vm.owner, vm.id);
        if !work.dir.join("main.tf").exists() {
            if self.archived(vm) {
                return Ok(()); // destroyed through this server before
            }
            let tfvars = render::vm_for_destroy(vm, &self.settings.vsphere, &self.settings.fallback_template)?;
            let record = serde_json::to_string_pretty(&serde_json::json!({"id": vm.id, "owner": vm.owner, "vsphere_name": vm.vsphere_name, "rendered_for": "destroy"})).expect("json");
            self.prepare(&work.dir, render::VM_TF, &tfvars, &[("basphere.json", &record)])?;
        }
        self.init(&work).await?;
        let marker = match self.state_marker(&work).await? {
            StateVm::Marked(marker) => Some(marker),
            StateVm::Absent => match self.look_up(vm, &work).await? {
                Found::Nothing => None,
                Found::Marked(marker) => Some(marker),
            },
        };
        match marker {
            None => {}
            Some(marker) if marker == vm.id.to_string() => {
                self.run_locked(
                    &work,
                    &["destroy", "-auto-approve", "-input=false", "-no-color"],
                    self.settings.apply_timeout,
                    "destroy",
                )
                .await?;
            }
            Some(other) => {
                // Someone else's VM of that name (imported and found to be another's, or taken
                // by the name before this VM was made): forget it, never destroy it.
                tracing::warn!(vm = %vm.vsphere_name, id = %vm.id, marker = %other, "the VM of this name is not this one; forgetting it, not destroying it");
                self.forget_vm(&work).await?;
            }
        }
        // Keep the state and logs for the administrator, out of the live tree.
        let archive = self.settings.work_dir.join("_destroyed").join(vm.owner.as_str());
        create_private_dir(&archive).map_err(|error| Error::backend("terraform", error))?;
        let stamp = basphere_core::model::now().format("%Y%m%dT%H%M%SZ");
        std::fs::rename(&work.dir, archive.join(format!("{}-{stamp}", vm.id)))
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
