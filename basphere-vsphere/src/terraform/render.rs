//! What the Terraform backend writes into a working directory: the static Terraform
//! configuration, the values as `terraform.tfvars.json`, and the cloud-init documents rendered
//! with minijinja. Every value reaches Terraform as JSON and cloud-init as a JSON-quoted YAML
//! scalar, so no input can change either configuration.

use base64::Engine;
use basphere_core::config::VsphereConfig;
use basphere_core::provisioner::VmRequest;
use basphere_core::validate::Username;
use basphere_core::{Error, Result};
use serde_json::{json, Value};

/// The Terraform configuration of one VM (values come from its tfvars).
pub const VM_TF: &str = include_str!("../../templates/vm.tf");
/// The Terraform configuration of one user's folder.
pub const FOLDER_TF: &str = include_str!("../../templates/folder.tf");
const METADATA: &str = include_str!("../../templates/metadata.yaml");
const USERDATA: &str = include_str!("../../templates/userdata.yaml");

/// Everything written for one VM.
#[derive(Clone, Debug, PartialEq)]
pub struct VmFiles {
    pub main_tf: &'static str,
    pub tfvars: Value,
    pub metadata: String,
    pub userdata: String,
}

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template("metadata.yaml", METADATA).expect("metadata template");
    env.add_template("userdata.yaml", USERDATA).expect("userdata template");
    env
}

fn render(name: &str, context: &Value) -> Result<String> {
    let env = environment();
    let template = env.get_template(name).map_err(|error| Error::backend("terraform", error))?;
    template.render(context).map_err(|error| Error::backend("terraform", error))
}

/// The user folder's path in vSphere: `<base folder>/<owner>`.
pub fn folder_path(vsphere: &VsphereConfig, owner: &Username) -> String {
    format!("{}/{}", vsphere.folder, owner)
}

/// The cloud-init metadata and userdata of a VM.
pub fn cloud_init(request: &VmRequest) -> Result<(String, String)> {
    let network = &request.network;
    let context = json!({
        "instance_id": request.vsphere_name(),
        "hostname": request.name.as_str(),
        "interface": network.interface,
        "mtu": network.mtu,
        "address": format!("{}/{}", network.address, network.prefix_len),
        "gateway": network.gateway.to_string(),
        "dns": network.dns.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "login": request.owner.as_str(),
        "ssh_key": request.ssh_key.as_str(),
        "marker": format!("Basphere VM {} ({}) initialized\nOwner: {}\nIP: {}\nBasphere id: {}\n", request.vsphere_name(), request.name, request.owner, network.address, request.id),
    });
    Ok((render("metadata.yaml", &context)?, render("userdata.yaml", &context)?))
}

/// The files of one VM.
pub fn vm(request: &VmRequest, vsphere: &VsphereConfig) -> Result<VmFiles> {
    let (metadata, userdata) = cloud_init(request)?;
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

/// The values of one user's folder.
pub fn folder(owner: &Username, vsphere: &VsphereConfig) -> Value {
    json!({
        "vsphere_server": vsphere.server,
        "allow_unverified_ssl": vsphere.allow_unverified_ssl,
        "datacenter": vsphere.datacenter,
        "folder": folder_path(vsphere, owner),
    })
}
