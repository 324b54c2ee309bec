//! What the Terraform backend writes into a working directory: the static Terraform
//! configuration, the values as `terraform.tfvars.json`, and the cloud-init documents
//! ([`crate::cloud_init`]). Every value reaches Terraform as JSON data, never as HCL text, so no
//! input can change the configuration.

use base64::Engine;
use basphere_core::provisioner::{TenantPortGroups, VmRef, VmRequest};
use basphere_core::validate::Username;
use basphere_core::Result;
use serde_json::{json, Value};

use crate::config::VsphereConfig;

/// The Terraform configuration of one VM (values come from its tfvars).
pub const VM_TF: &str = include_str!("../../templates/vm.tf");
/// The Terraform configuration of one user's folder.
pub const FOLDER_TF: &str = include_str!("../../templates/folder.tf");
/// The Terraform configuration of one tenant network's distributed port groups.
pub const PORT_GROUPS_TF: &str = include_str!("../../templates/port_groups.tf");
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
        // A VM on a tenant LAN is on its port group; any other on the configured network.
        "network": request.network.port_group.as_deref().unwrap_or(&vsphere.network),
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

/// The values of one tenant network's port groups: the switch, the tenant's description (the
/// marker that tells Basphere's port groups from others of the same name) and each port group's
/// VLAN id by its name. Two port groups of one name are refused: one would hide the other.
pub fn port_groups(spec: &TenantPortGroups, vsphere: &VsphereConfig) -> Result<Value> {
    let mut groups = serde_json::Map::new();
    for group in &spec.port_groups {
        if groups.insert(group.name.clone(), json!(group.vlan)).is_some() {
            return Err(basphere_core::Error::invalid(
                "port groups",
                format!(
                    "{} is named twice in {}'s network: each port group needs a name of its own",
                    group.name, spec.tenant
                ),
            ));
        }
    }
    Ok(json!({
        "vsphere_server": vsphere.server,
        "allow_unverified_ssl": vsphere.allow_unverified_ssl,
        "datacenter": vsphere.datacenter,
        "switch": spec.switch,
        "description": spec.description(),
        "port_groups": groups,
    }))
}

/// The address of one port group in `templates/port_groups.tf`'s state,
/// `vsphere_distributed_port_group.lan["<name>"]`, for `terraform import` and `terraform state rm`:
/// the name as an HCL quoted string, escaped as Terraform itself prints it, so that any name (a
/// quote, a `${`, a newline) names its own instance and nothing else.
pub fn port_group_address(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            // Template sequences are doubled: `$${` and `%%{` are a literal `${` and `%{`.
            '$' | '%' if chars.peek() == Some(&'{') => {
                quoted.push(c);
                quoted.push(c);
            }
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    format!("vsphere_distributed_port_group.lan[\"{quoted}\"]")
}
