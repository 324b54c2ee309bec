//! VM backends for vSphere, and the one constructor the server calls, [`vm_backend`].
//!
//! - [`config`]: the `backend`, `vsphere` and `terraform` configuration sections, parsed here.
//! - [`simulated`]: a simulated vCenter whose inventory lives in its own journal file, apart from
//!   Basphere's store, as a real vCenter's would. The server's embedded default.
//! - [`terraform`]: `TerraformProvisioner`, the original's path made safe.
//! - [`api`] (feature `vsphere-api`): `VsphereApiProvisioner` through the vSphere API with
//!   `vim_rs`, no Terraform. It runs in its own program, `basphere-vsphere-api` (this crate's
//!   binary), which the server drives through [`agent`]: the server never links `vim_rs`.
//! - [`cloud_init`] and [`credentials`]: what both real backends share, the VM's cloud-init
//!   documents and the vCenter account.
//! - [`vcsim`]: the govmomi vCenter simulator as a child process, for tests and benchmarks.
//!
//! Every VM is `<owner>-<name>` in the owner's folder `<vsphere.folder>/<owner>` (for example
//! `basphere-vms/alice/alice-web`), and carries its Basphere id in `guestinfo.basphere.id`.

pub mod agent;
#[cfg(feature = "vsphere-api")]
pub mod api;
pub mod cloud_init;
pub mod config;
pub mod credentials;
pub mod simulated;
pub mod terraform;
#[cfg(feature = "testing")]
pub mod testing;
pub mod vcsim;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use basphere_core::mock::MockDelays;
use basphere_core::{Config, Provisioner, Result};

use crate::config::{BackendConfig, SimulatedDelays, VmBackendKind};
use crate::credentials::Credentials;

/// The error of a create whose name is taken in vCenter, in the owner's `folder`, by a VM that
/// does not carry this VM's id: Basphere made nothing, and leaves that VM alone.
pub(crate) fn foreign_vm(vsphere_name: &str, folder: &str) -> basphere_core::Error {
    basphere_core::Error::AlreadyExists {
        kind: "VM",
        name: format!(
            "{vsphere_name} in vCenter (folder {folder}), and it is not Basphere's (it does not carry this VM's \
             guestinfo.basphere.id); Basphere made no VM and left that one untouched: choose another name, or ask the \
             vSphere administrators to rename or remove it"
        ),
    }
}

/// The password of the PostgreSQL store, which Terraform's pg backend is given as `PGPASSWORD`:
/// from `store.password_file` (readable by the server's account only) or from
/// `BASPHERE_STORE_PASSWORD`, as the server reads it for its store; none when neither is set.
fn store_password(store: &basphere_core::config::StoreConfig) -> Result<Option<String>> {
    use std::os::unix::fs::MetadataExt;
    let invalid = |why: String| basphere_core::Error::invalid("store.password_file", why);
    if let Some(file) = &store.password_file {
        let metadata =
            std::fs::metadata(file).map_err(|error| invalid(format!("cannot read {}: {error}", file.display())))?;
        if metadata.mode() & 0o077 != 0 {
            return Err(invalid(format!(
                "{} is readable by other accounts (mode {:o}); chmod 600 it",
                file.display(),
                metadata.mode() & 0o777
            )));
        }
        let text = std::fs::read_to_string(file)
            .map_err(|error| invalid(format!("cannot read {}: {error}", file.display())))?;
        let password = text.trim_end_matches(['\n', '\r']).to_owned();
        if password.is_empty() {
            return Err(invalid(format!("{} is empty", file.display())));
        }
        return Ok(Some(password));
    }
    Ok(std::env::var("BASPHERE_STORE_PASSWORD").ok().filter(|password| !password.is_empty()))
}

/// The VM backend `config` selects (`backend.vm`), with its sections parsed and checked and its
/// credentials read; its state (the simulated inventory, Terraform's working directories) lives
/// under `data_dir`.
pub fn vm_backend(config: &Config, data_dir: &Path) -> Result<Arc<dyn Provisioner>> {
    open_vm_backend(BackendConfig::from_config(config)?, config, data_dir)
}

/// The VM backend `backend` (the sections of `config` already parsed, [`BackendConfig::from_config`])
/// selects, with its credentials read; as [`vm_backend`].
pub fn open_vm_backend(backend: BackendConfig, config: &Config, data_dir: &Path) -> Result<Arc<dyn Provisioner>> {
    let credentials = || match &backend.vsphere.credentials_file {
        Some(path) => Credentials::from_file(path),
        // `BackendConfig` requires the file for every backend but the simulated one.
        None => Err(basphere_core::Error::invalid("vsphere.credentials_file", "is required")),
    };
    match backend.vm {
        VmBackendKind::Simulated => {
            let delays = match backend.simulated_delays {
                SimulatedDelays::Realistic => MockDelays::realistic(),
                SimulatedDelays::None => MockDelays::default(),
            };
            Ok(simulated::open(&data_dir.join("simulated-vsphere.jsonl"), config, delays)?)
        }
        VmBackendKind::Terraform => {
            let settings = terraform::TerraformSettings {
                binary: backend.terraform.binary.clone(),
                work_dir: data_dir.join("terraform"),
                credentials: credentials()?,
                plugin_cache_dir: backend.terraform.plugin_cache_dir.clone(),
                cli_config_file: backend.terraform.cli_config_file.clone(),
                init_timeout: Duration::from_secs(backend.terraform.init_timeout_seconds),
                apply_timeout: Duration::from_secs(backend.terraform.apply_timeout_seconds),
                parallelism: backend.terraform.parallelism,
                state: match &backend.terraform.state {
                    config::TerraformState::Local => terraform::StateBackend::Local,
                    config::TerraformState::Pg { conn_str, schema } => terraform::StateBackend::Pg {
                        conn_str: conn_str.clone(),
                        schema: schema.clone(),
                        password: store_password(&config.store)?,
                    },
                },
                fallback_template: config.os_images.values().next().map(|os| os.template.clone()).unwrap_or_default(),
                vsphere: backend.vsphere,
            };
            Ok(Arc::new(terraform::TerraformProvisioner::new(settings)?))
        }
        VmBackendKind::VsphereApi => {
            let settings = config::VsphereApiSettings {
                server: backend.vsphere.server.clone(),
                credentials: credentials()?,
                accept_invalid_certs: backend.vsphere.allow_unverified_ssl,
                vsphere: backend.vsphere,
                os_images: config.os_images.clone(),
            };
            Ok(Arc::new(agent::AgentProvisioner::new(agent::locate()?, &settings)?))
        }
    }
}
