//! The original's `config.yaml`, `specs.yaml` and `api.yaml` as one Basphere configuration: the
//! keys Basphere shares with the original are carried, the rest are named in the notes.

use serde_yaml::{Mapping, Value};

use crate::source::OriginalConfig;

/// Copies `keys` of `from` (when present) into `to`.
fn carry(to: &mut Mapping, from: Option<&Value>, keys: &[&str]) {
    let Some(from) = from else { return };
    for key in keys {
        if let Some(value) = from.get(*key) {
            if !value.is_null() {
                to.insert(Value::from(*key), value.clone());
            }
        }
    }
}

fn section(config: &mut Mapping, name: &str, body: Mapping) {
    if !body.is_empty() {
        config.insert(Value::from(name), Value::Mapping(body));
    }
}

/// The Basphere configuration that says what the original's files said, and notes on what it
/// could not carry. Review it, then install it as `/etc/basphere/basphere.yaml`.
pub fn suggested_config(original: &OriginalConfig) -> (String, Vec<String>) {
    let mut notes = Vec::new();
    let mut config = Mapping::new();
    let c = |path: &[&str]| original.config_key(path);
    let a = |path: &[&str]| original.api_key(path);
    let s = |path: &[&str]| original.specs_key(path);

    let mut server = Mapping::new();
    carry(&mut server, a(&["server"]), &["host", "port"]);
    section(&mut config, "server", server);

    let mut vsphere = Mapping::new();
    carry(
        &mut vsphere,
        c(&["vsphere"]),
        &["server", "datacenter", "cluster", "datastore", "resource_pool", "network", "folder"],
    );
    if !vsphere.is_empty() {
        vsphere.insert("credentials_file".into(), "/etc/basphere/vsphere.env".into());
        notes.push("vsphere.credentials_file names the original's vsphere.env, which Basphere reads as it is (keep it mode 600, readable by the basphere user)".to_owned());
    }
    section(&mut config, "vsphere", vsphere);

    let mut templates = Mapping::new();
    carry(&mut templates, c(&["templates"]), &["os", "kubernetes"]);
    section(&mut config, "templates", templates);

    let mut network = Mapping::new();
    carry(
        &mut network,
        c(&["network"]),
        &["cidr", "gateway", "netmask", "prefix_length", "mtu", "dns", "block_size", "reserved"],
    );
    section(&mut config, "network", network);

    let mut quota = Mapping::new();
    carry(&mut quota, c(&["quotas", "default"]), &["max_vms", "max_clusters", "max_ips"]);
    if !quota.is_empty() {
        let mut quotas = Mapping::new();
        quotas.insert("default".into(), Value::Mapping(quota));
        section(&mut config, "quotas", quotas);
    }

    for key in ["vm_specs", "cluster_types", "cluster_node_specs"] {
        if let Some(value) = s(&[key]) {
            config.insert(key.into(), value.clone());
        }
    }
    let mut cluster_quota = Mapping::new();
    carry(&mut cluster_quota, s(&["cluster_quotas", "default"]), &["max_clusters", "max_nodes_per_cluster"]);
    if !cluster_quota.is_empty() {
        let mut quotas = Mapping::new();
        quotas.insert("default".into(), Value::Mapping(cluster_quota));
        section(&mut config, "cluster_quotas", quotas);
    }

    let mut management = Mapping::new();
    carry(&mut management, c(&["management_cluster"]), &["kubeconfig", "namespace_prefix"]);
    section(&mut config, "management_cluster", management);

    let mut recaptcha = Mapping::new();
    carry(&mut recaptcha, a(&["recaptcha"]), &["enabled", "site_key"]);
    if a(&["recaptcha", "secret_key"]).and_then(Value::as_str).is_some_and(|k| !k.is_empty()) {
        recaptcha.insert("secret_file".into(), "/etc/basphere/recaptcha-secret".into());
        notes.push("recaptcha.secret_key is not kept in the configuration: write it to /etc/basphere/recaptcha-secret (mode 600), which recaptcha.secret_file names".to_owned());
    }
    section(&mut config, "recaptcha", recaptcha);

    let mut validation = Mapping::new();
    carry(&mut validation, a(&["validation"]), &["allowed_email_domains"]);
    section(&mut config, "validation", validation);

    let mut bastion = Mapping::new();
    carry(&mut bastion, a(&["bastion"]), &["address", "port"]);
    if original.config.is_some() {
        bastion.insert("logins".into(), "unix".into());
        notes.push("bastion.logins is unix: Basphere makes and removes the bastion logins as the original's `basphere-admin user add` did".to_owned());
    }
    section(&mut config, "bastion", bastion);

    for (file, dropped) in [
        (
            "config.yaml",
            vec![
                "paths (Basphere's data directory is server.data_dir)",
                "logging (BASPHERE_LOG)",
                "api.url (the CLI finds the server's socket)",
            ],
        ),
        ("specs.yaml", vec!["cluster_specs and defaults (the original never read them)"]),
        ("api.yaml", vec!["storage.pending_dir (requests live in Basphere's store)", "provisioner.admin_script"]),
    ] {
        let present = match file {
            "config.yaml" => original.config.is_some(),
            "specs.yaml" => original.specs.is_some(),
            _ => original.api.is_some(),
        };
        if present {
            notes.push(format!("not carried from {file}: {}", dropped.join("; ")));
        }
    }
    let body = if config.is_empty() {
        String::new()
    } else {
        serde_yaml::to_string(&Value::Mapping(config)).unwrap_or_default()
    };
    let text = format!(
        "# Basphere configuration made from the original's /etc/basphere/{{config,specs,api}}.yaml\n# by `basphere-server import-original --write-config`. Review it before use.\n{body}"
    );
    (text, notes)
}
