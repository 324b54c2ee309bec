//! What the Terraform backend writes into a working directory: the static Terraform
//! configuration, the values as `terraform.tfvars.json`, and the cloud-init documents
//! ([`crate::cloud_init`]). Every value reaches Terraform as JSON data, never as HCL text, so no
//! input can change the configuration.

use base64::Engine;
use basphere_core::provisioner::{VmRef, VmRequest};
use basphere_core::validate::Username;
use basphere_core::Result;
use serde_json::{json, Value};

use crate::config::VsphereConfig;

/// The Terraform configuration of one VM (values come from its tfvars).
pub const VM_TF: &str = include_str!("../../templates/vm.tf");
/// The Terraform configuration of one user's folder.
pub const FOLDER_TF: &str = include_str!("../../templates/folder.tf");
/// The state backend of every working directory when the state is in PostgreSQL.
pub const BACKEND_PG_TF: &str = include_str!("../../templates/backend-pg.tf");

/// Everything written for one VM.
#[derive(Clone, Debug, PartialEq)]
pub struct VmFiles {
    pub main_tf: &'static str,
    pub tfvars: Value,
    pub metadata: String,
    pub userdata: String,
}

/// The user folder's path in vSphere: `<base folder>/<owner>`.
pub fn folder_path(vsphere: &VsphereConfig, owner: &Username) -> String {
    format!("{}/{}", vsphere.folder, owner)
}

/// The files of one VM.
pub fn vm(request: &VmRequest, vsphere: &VsphereConfig) -> Result<VmFiles> {
    let crate::cloud_init::Documents { metadata, userdata } = crate::cloud_init::documents(request)?;
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    let tfvars = json!({
        "vsphere_server": vsphere.server,
        "allow_unverified_ssl": vsphere.allow_unverified_ssl,
        "datacenter": vsphere.datacenter,
        "cluster": vsphere.cluster,
        "datastore": vsphere.datastore,
        "network": vsphere.network,
        "template": request.os.template,
        "folder": folder_path(vsphere, &request.owner),
        "vm_name": request.vsphere_name(),
        "num_cpus": request.spec.cpu,
        "memory": request.spec.memory_mb,
        "disk_size": request.spec.disk_gb,
        "guestinfo_metadata": b64(&metadata),
        "guestinfo_userdata": b64(&userdata),
        "basphere_id": request.id.to_string(),
    });
    Ok(VmFiles { main_tf: VM_TF, tfvars, metadata, userdata })
}

/// The values of a VM's configuration rendered for a destroy from its reference alone, where no
/// working directory holds the ones it was created with: its name, folder and marker, which find
/// it, and `template` (one of the configuration's, which Terraform reads as a data source) with
/// the smallest sizes and no cloud-init, which reach nothing (a destroy changes nothing on a VM).
pub fn vm_for_destroy(vm: &VmRef, vsphere: &VsphereConfig, template: &str) -> Result<Value> {
    if template.is_empty() {
        return Err(basphere_core::Error::invalid(
            "templates.os",
            "names no OS template: a destroy without a working directory needs one to render the VM's configuration",
        ));
    }
    Ok(json!({
        "vsphere_server": vsphere.server,
        "allow_unverified_ssl": vsphere.allow_unverified_ssl,
        "datacenter": vsphere.datacenter,
        "cluster": vsphere.cluster,
        "datastore": vsphere.datastore,
        "network": vsphere.network,
        "template": template,
        "folder": folder_path(vsphere, &vm.owner),
        "vm_name": vm.vsphere_name,
        "num_cpus": 1,
        "memory": 1024,
        "disk_size": 1,
        "guestinfo_metadata": "",
        "guestinfo_userdata": "",
        "basphere_id": vm.id.to_string(),
    }))
}

/// The values of one user's folder.
pub fn folder(owner: &Username, vsphere: &VsphereConfig) -> Value {
    json!({
        "vsphere_server": vsphere.server,
        "allow_unverified_ssl": vsphere.allow_unverified_ssl,
        "datacenter": vsphere.datacenter,
        "folder": folder_path(vsphere, owner),
    })
}
