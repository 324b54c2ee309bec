//! `TerraformProvisioner`: the original's path, made safe. One working directory per VM, per
//! user folder and per tenant network (its distributed port groups) under the server's data
//! directory, private to the service account (0700, files 0600); the configuration is static and
//! every value arrives as JSON; `terraform` runs with the vCenter credentials in its environment
//! only, under timeouts that kill its process group.
//!
//! The state lives where the configuration says ([`StateBackend`]): in the working directory
//! (one server), or in PostgreSQL through Terraform's `pg` backend, a workspace per VM, where
//! every replica finds it. A destroy that finds no working directory renders one from what it
//! knows and looks the VM up in vCenter by its inventory path and marker; it never reports
//! success for a VM it could not look for. Port groups are found the same way, by their inventory
//! path, and told Basphere's by their description ([`TenantPortGroups::description`]).

pub mod render;
pub mod runner;

use std::collections::BTreeMap;
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
/// The port groups' resource type in `templates/port_groups.tf` (`lan`, one instance per name).
const PORT_GROUP_TYPE: &str = "vsphere_distributed_port_group";

/// Where Terraform keeps the state, resolved for running (the database password read).
#[derive(Clone)]
pub enum StateBackend {
    /// `terraform.tfstate` in each working directory.
    Local,
    /// Terraform's `pg` backend: `conn_str` and `schema` go to `terraform init -backend-config`,
    /// the password to the environment as `PGPASSWORD`; each VM is the workspace `vm-<id>`, each
    /// user folder `folder-<owner>` and each tenant network `network-<tenant>`, chosen with
    /// `TF_WORKSPACE`.
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

/// A port group in a working directory's state.
struct HeldPortGroup {
    /// Its managed object id.
    id: String,
    /// Its description as the state holds it (empty when it has none).
    description: String,
}

/// What a look for a port group in vCenter found.
enum FoundPortGroup {
    /// Nothing at its inventory path.
    Nothing,
    /// A distributed port group, imported into the state.
    Imported,
    /// Another kind of network of that name (a standard switch's port group): never Basphere's.
    Other,
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

    /// `<work>/<tenant>/_network`: the tenant network's port groups.
    pub fn network_dir(&self, tenant: &Username) -> PathBuf {
        self.settings.work_dir.join(tenant.as_str()).join("_network")
    }

    fn folder_work(&self, owner: &Username) -> Work {
        Work { dir: self.folder_dir(owner), workspace: format!("folder-{owner}") }
    }

    fn network_work(&self, tenant: &Username) -> Work {
        Work { dir: self.network_dir(tenant), workspace: format!("network-{tenant}") }
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

    /// The resources `work`'s state holds, as `terraform show -json` gives them.
    async fn state_resources(&self, work: &Work) -> Result<Vec<serde_json::Value>> {
        let output = self.run(work, &["show", "-json", "-no-color"], Duration::from_secs(60), "show").await?;
        let state: serde_json::Value =
            serde_json::from_str(&output.stdout).map_err(|error| Error::backend("terraform", error))?;
        Ok(state["values"]["root_module"]["resources"].as_array().cloned().unwrap_or_default())
    }

    /// Whether the state holds the VM, and the `guestinfo.basphere.id` it carries there.
    async fn state_marker(&self, work: &Work) -> Result<StateVm> {
        let resources = self.state_resources(work).await?;
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

    /// Moves a working directory to `_destroyed/<owner>/<name>`: its state and logs stay for the
    /// administrator, out of the live tree.
    fn archive(&self, dir: &Path, owner: &Username, name: &str) -> Result<()> {
        let archive = self.settings.work_dir.join("_destroyed").join(owner.as_str());
        create_private_dir(&archive).map_err(|error| Error::backend("terraform", error))?;
        std::fs::rename(dir, archive.join(name)).map_err(|error| Error::backend("terraform", error))
    }

    /// A port group's inventory path, `/<datacenter>/network/<name>`: how the vSphere provider
    /// imports a distributed port group.
    fn port_group_path(&self, name: &str) -> String {
        format!("/{}/network/{name}", self.settings.vsphere.datacenter)
    }

    /// The port groups `work`'s state holds, by name.
    async fn state_port_groups(&self, work: &Work) -> Result<BTreeMap<String, HeldPortGroup>> {
        let resources = self.state_resources(work).await?;
        Ok(resources
            .iter()
            .filter(|resource| resource["mode"] == "managed" && resource["type"] == PORT_GROUP_TYPE)
            .filter_map(|resource| {
                let name = resource["index"].as_str()?.to_owned();
                let value = |key: &str| resource["values"][key].as_str().unwrap_or_default().to_owned();
                Some((name, HeldPortGroup { id: value("id"), description: value("description") }))
            })
            .collect())
    }

    /// Runs `terraform <args>` (an apply or a destroy) on `work`'s port groups. When it fails
    /// because vCenter no longer has port groups the state holds (destroyed outside Terraform:
    /// the provider reads each by its id, and that read fails), those are forgotten and it runs
    /// once more: gone is what a removal wants, and what an apply makes again. The outer error is
    /// Basphere's own (the state could not be read or changed), the inner one the run's.
    async fn run_port_groups(
        &self,
        work: &Work,
        args: &[&str],
        log_name: &str,
    ) -> Result<std::result::Result<(), TerraformError>> {
        let error = match self.run_locked(work, args, self.settings.apply_timeout, log_name).await {
            Ok(_) => return Ok(Ok(())),
            Err(error) => error,
        };
        // The provider's words, and vCenter's (a ManagedObjectNotFound fault): only a port group
        // vCenter says is deleted is forgotten, never one that could not be read.
        if !error.says("has already been deleted") {
            return Ok(Err(error));
        }
        let log_tail = error.log_tail();
        let gone = |id: &str| {
            let read = format!("could not find portgroup \"{id}\"");
            log_tail.iter().any(|line| line.contains(&read) && line.contains("has already been deleted"))
        };
        let gone: Vec<String> = self
            .state_port_groups(work)
            .await?
            .into_iter()
            .filter(|(_, held)| !held.id.is_empty() && gone(&held.id))
            .map(|(name, _)| name)
            .collect();
        if gone.is_empty() {
            return Ok(Err(error));
        }
        tracing::warn!(port_groups = ?gone, dir = %work.dir.display(), "port groups of the state are gone from vCenter; forgetting them");
        self.forget_port_groups(work, &gone).await?;
        Ok(self.run_locked(work, args, self.settings.apply_timeout, log_name).await.map(|_| ()))
    }

    /// Imports the port group `name` from vCenter into `work`'s state, by its inventory path.
    /// Any failure but "nothing there" means nobody can tell whether it exists, or whose it is,
    /// and is an error that says so and what was left undone (`undone`).
    async fn look_up_port_group(&self, work: &Work, name: &str, undone: &str) -> Result<FoundPortGroup> {
        let path = self.port_group_path(name);
        let address = render::port_group_address(name);
        let imported = self
            .run_locked(
                work,
                &["import", "-input=false", "-no-color", &address, &path],
                self.settings.apply_timeout,
                "import",
            )
            .await;
        match imported {
            Ok(_) => Ok(FoundPortGroup::Imported),
            // What the vSphere provider says when no network is at that path (govmomi's finder),
            // and when the network there is not a distributed port group.
            Err(error) if error.says(&format!("network '{path}' not found")) => Ok(FoundPortGroup::Nothing),
            Err(error) if error.says("is not a portgroup") => Ok(FoundPortGroup::Other),
            Err(error) => {
                let log_tail = error.log_tail();
                Err(Error::Backend {
                    backend: "terraform",
                    source: Box::new(basphere_core::error::Message(format!(
                        "looking for port group {name} in vCenter at {path} failed ({error}), so whether it exists, \
                         and whose it is, is unknown: {undone}. Fix what the log says (vCenter reachable, \
                         vsphere.credentials_file), then retry"
                    ))),
                    log_tail,
                })
            }
        }
    }

    /// Removes port groups from `work`'s state without touching them in vSphere.
    async fn forget_port_groups(&self, work: &Work, names: &[String]) -> Result<()> {
        let addresses: Vec<String> = names.iter().map(|name| render::port_group_address(name)).collect();
        let mut args = vec!["state", "rm", "-no-color"];
        args.extend(addresses.iter().map(String::as_str));
        self.run_locked(work, &args, self.settings.apply_timeout, "state-rm").await?;
        Ok(())
    }

    /// Sorts the port groups of `spec`'s network into Basphere's and others'. With `look_up`,
    /// each one of `spec` the state does not hold is first looked up in vCenter and imported.
    /// Every port group the state holds without the tenant's description is someone else's:
    /// it is forgotten (removed from the state, untouched in vSphere), so that no apply or
    /// destroy ever reaches it. Returns the names of Basphere's port groups the state holds,
    /// and the names of the others found.
    async fn sort_port_groups(
        &self,
        work: &Work,
        spec: &TenantPortGroups,
        look_up: bool,
        undone: &str,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let mut held = self.state_port_groups(work).await?;
        let mut others = Vec::new();
        if look_up {
            let mut imported = false;
            for group in spec.port_groups.iter().filter(|group| !held.contains_key(&group.name)) {
                match self.look_up_port_group(work, &group.name, undone).await? {
                    FoundPortGroup::Nothing => {}
                    FoundPortGroup::Imported => imported = true,
                    FoundPortGroup::Other => others.push(group.name.clone()),
                }
            }
            if imported {
                held = self.state_port_groups(work).await?;
            }
        }
        let description = spec.description();
        let (ours, foreign): (Vec<_>, Vec<_>) =
            held.into_iter().partition(|(_, found)| found.description == description);
        let foreign: Vec<String> = foreign.into_iter().map(|(name, _)| name).collect();
        if !foreign.is_empty() {
            tracing::warn!(tenant = %spec.tenant, port_groups = ?foreign, "port groups without the tenant's description are not Basphere's; forgetting them, not changing them");
            self.forget_port_groups(work, &foreign).await?;
        }
        others.extend(foreign);
        Ok((ours.into_iter().map(|(name, _)| name).collect(), others))
    }

    /// The error of port groups of `spec`'s names that are someone else's.
    fn foreign_port_groups(&self, spec: &TenantPortGroups, names: &[String]) -> Error {
        let (them, are) = if names.len() == 1 { ("it", "is") } else { ("them", "are") };
        Error::AlreadyExists {
            kind: "port group",
            name: format!(
                "{} in vCenter (datacenter {}), and {are} not Basphere's (without the description {:?}); Basphere \
                 changed none of {them}: choose another networks.port_group_prefix, or ask the vSphere administrators to \
                 rename or remove {them}",
                names.join(", "),
                self.settings.vsphere.datacenter,
                spec.description()
            ),
        }
    }

    /// `error` of a run on `spec`'s port groups as the contract names it: a switch that is not
    /// there is `NotFound`.
    fn port_groups_failed(&self, spec: &TenantPortGroups, error: TerraformError) -> Error {
        // What the vSphere provider says when the switch is not there (govmomi's finder).
        if error.says(&format!("network '{}' not found", spec.switch)) {
            return Error::not_found(
                "distributed switch",
                format!(
                    "{} in vCenter (datacenter {}): networks.distributed_switch must name a distributed switch there",
                    spec.switch, self.settings.vsphere.datacenter
                ),
            );
        }
        error.into()
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
            // What the vSphere provider says when no network of that name is there.
            Err(error)
                if request
                    .network
                    .port_group
                    .as_ref()
                    .is_some_and(|port_group| error.says(&format!("network '{port_group}' not found"))) =>
            {
                let port_group = request.network.port_group.as_deref().unwrap_or_default();
                return Err(Error::not_found(
                    "port group",
                    format!(
                        "{port_group} in vCenter (datacenter {}): the VM's tenant network has no port group there; \
                         Basphere made no VM",
                        self.settings.vsphere.datacenter
                    ),
                ));
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
        let stamp = basphere_core::model::now().format("%Y%m%dT%H%M%SZ");
        self.archive(&work.dir, &vm.owner, &format!("{}-{stamp}", vm.id))
    }

    /// Makes the tenant's port groups in its network's working directory. A name the apply finds
    /// taken in vCenter is looked up by its inventory path and imported: carrying the tenant's
    /// description, it is Basphere's (an apply cut off after vSphere made it) and is given the
    /// VLAN id asked; otherwise it is forgotten, left untouched, and the call is `AlreadyExists`.
    /// The spec is all of the tenant's port groups: one the state holds that the spec no longer
    /// names is destroyed by the apply.
    async fn ensure_port_groups(&self, spec: &TenantPortGroups) -> Result<()> {
        let work = self.network_work(&spec.tenant);
        self.prepare(&work.dir, render::PORT_GROUPS_TF, &render::port_groups(spec, &self.settings.vsphere)?, &[])?;
        self.init(&work).await?;
        // One imported and found to be someone else's by a call cut off before it forgot it:
        // no apply ever reaches it.
        let (_, foreign) = self.sort_port_groups(&work, spec, false, "").await?;
        if !foreign.is_empty() {
            return Err(self.foreign_port_groups(spec, &foreign));
        }
        let apply = ["apply", "-auto-approve", "-input=false", "-no-color"];
        match self.run_port_groups(&work, &apply, "apply").await? {
            Ok(()) => return Ok(()),
            // A name taken in vCenter by a port group the state does not hold.
            Err(TerraformError::Exists { .. }) => {}
            Err(error) => return Err(self.port_groups_failed(spec, error)),
        }
        let (_, foreign) =
            self.sort_port_groups(&work, spec, true, "the port groups of that name were not changed").await?;
        if !foreign.is_empty() {
            return Err(self.foreign_port_groups(spec, &foreign));
        }
        self.run_port_groups(&work, &apply, "apply").await?.map_err(|error| self.port_groups_failed(spec, error))
    }

    /// Destroys the tenant's port groups that carry its description. The state says which:
    /// this server's working directory's, or the network's workspace in PostgreSQL. Each one of
    /// the spec the state does not hold (no working directory here, a state lost, an apply cut
    /// off) is looked up in vCenter by its inventory path: not there, there is nothing to
    /// destroy; without the description it is forgotten and left alone. A look-up that fails is
    /// an error, never a success. The working directory is archived afterwards.
    async fn remove_port_groups(&self, spec: &TenantPortGroups) -> Result<()> {
        let work = self.network_work(&spec.tenant);
        // Rendered again even where it exists: a name is imported only if the configuration has it.
        self.prepare(&work.dir, render::PORT_GROUPS_TF, &render::port_groups(spec, &self.settings.vsphere)?, &[])?;
        self.init(&work).await?;
        let (ours, _) = self.sort_port_groups(&work, spec, true, "no port group was destroyed").await?;
        if !ours.is_empty() {
            self.run_port_groups(&work, &["destroy", "-auto-approve", "-input=false", "-no-color"], "destroy")
                .await?
                .map_err(|error| self.port_groups_failed(spec, error))?;
        }
        let stamp = basphere_core::model::now().format("%Y%m%dT%H%M%S%.6fZ");
        self.archive(&work.dir, &spec.tenant, &format!("network-{stamp}"))
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
