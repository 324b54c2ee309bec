//! The `management_cluster` section (core hands it over unparsed), with the placement keys the
//! clusters share with the VM backends: the `vsphere` section is the VM backend's, parsed and
//! checked there; the server hands this crate its values as a [`VsphereSite`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use basphere_core::config::Config;
use basphere_core::{Error, Result};
use serde::Deserialize;

use crate::client::VersionChoice;
use crate::render::{ApiVersion, Layout};

/// Which cluster backend the server runs (`management_cluster.backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// A simulated management cluster inside the server, reached through the same client.
    Simulated,
    /// A real management cluster, through `management_cluster.kubeconfig`.
    ClusterApi,
    /// No clusters: requests for them say so.
    None,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSection {
    backend: Option<BackendKind>,
    kubeconfig: Option<PathBuf>,
    namespace_prefix: Option<String>,
    api_version: Option<String>,
    identity: Option<String>,
    thumbprint: Option<String>,
    folder: Option<String>,
    datacenter: Option<String>,
    datastore: Option<String>,
    resource_pool: Option<String>,
    network: Option<String>,
    storage_policy: Option<String>,
    pod_cidr: Option<String>,
    service_cidr: Option<String>,
    kube_vip_image: Option<String>,
    vip_interface: Option<String>,
    addons: Option<Vec<PathBuf>>,
    address_reuse_grace_seconds: Option<u32>,
    simulated_step_seconds: Option<f64>,
}

/// What the cluster backend takes from the VM backend's configuration (the `backend` and
/// `vsphere` sections, which the VM backend's crate parses and checks; the server hands the
/// values over): whether the VMs are simulated, and the vSphere placement keys as the file sets
/// them (`None`: not set), where clusters go unless `management_cluster` says otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VsphereSite {
    /// `backend.vm` is `simulated` (or not set): clusters are then simulated too, unless
    /// `management_cluster.backend` says otherwise.
    pub simulated_vms: bool,
    /// `vsphere.server`, `host[:port]` of vCenter.
    pub server: Option<String>,
    /// `vsphere.datacenter`.
    pub datacenter: Option<String>,
    /// `vsphere.cluster`: its root pool is the default resource pool.
    pub cluster: Option<String>,
    /// `vsphere.datastore`.
    pub datastore: Option<String>,
    /// `vsphere.resource_pool`, an inventory path.
    pub resource_pool: Option<String>,
    /// `vsphere.network`.
    pub network: Option<String>,
}

impl Default for VsphereSite {
    /// What a configuration without the `backend` and `vsphere` sections gives: simulated VMs,
    /// nothing placed.
    fn default() -> Self {
        VsphereSite {
            simulated_vms: true,
            server: None,
            datacenter: None,
            cluster: None,
            datastore: None,
            resource_pool: None,
            network: None,
        }
    }
}

/// The parsed section.
#[derive(Clone, Debug)]
pub struct CapiConfig {
    pub backend: BackendKind,
    pub kubeconfig: PathBuf,
    pub choice: VersionChoice,
    pub layout: Layout,
    pub simulated_step: Duration,
}

fn invalid(key: &str, message: impl Into<String>) -> Error {
    Error::invalid(format!("management_cluster.{key}"), message.into())
}

fn dns_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-')
}

/// An IPv4 network written `a.b.c.d/n` (a prefix length, not a netmask, after the slash).
fn cidr(key: &str, value: String) -> Result<String> {
    let ok = value.split_once('/').is_some_and(|(_, prefix)| !prefix.contains('.'))
        && value.parse::<ipnetwork::Ipv4Network>().is_ok();
    if ok {
        Ok(value)
    } else {
        Err(invalid(key, format!("{value:?} is not an IPv4 CIDR like 192.168.0.0/16")))
    }
}

impl CapiConfig {
    /// The `management_cluster` section of `config`, with the placement `site` gives where the
    /// section leaves it out.
    pub fn from_config(config: &Config, site: &VsphereSite) -> Result<CapiConfig> {
        let sections = &config.backend_sections;
        let raw: RawSection = if sections.management_cluster.is_null() {
            RawSection::default()
        } else {
            serde_yaml::from_value(sections.management_cluster.clone())
                .map_err(|error| Error::invalid("management_cluster", error.to_string()))?
        };
        let vsphere = site.clone();
        // A site with real VMs gets real clusters only when it asks for them.
        let backend =
            raw.backend.unwrap_or(if site.simulated_vms { BackendKind::Simulated } else { BackendKind::None });

        let namespace_prefix = raw.namespace_prefix.unwrap_or_else(|| "user-".into());
        if namespace_prefix.len() > 31 || !(dns_label(&format!("{namespace_prefix}a"))) {
            return Err(invalid(
                "namespace_prefix",
                format!(
                    "{namespace_prefix:?} is not accepted: use up to 31 lowercase letters, digits and hyphens \
                     (an owner's namespace is the prefix and a username of up to 32 characters, and a namespace \
                     name has at most 63)"
                ),
            ));
        }
        let choice = match raw.api_version.as_deref().unwrap_or("auto") {
            "auto" => VersionChoice::Auto,
            "v1beta1" => VersionChoice::Fixed(ApiVersion::V1beta1),
            "v1beta2" => VersionChoice::Fixed(ApiVersion::V1beta2),
            other => {
                return Err(invalid("api_version", format!("{other:?} is not accepted: use auto, v1beta1 or v1beta2")))
            }
        };
        let identity = raw.identity.unwrap_or_else(|| "basphere-vsphere".into());
        if !dns_label(&identity) {
            return Err(invalid("identity", format!("{identity:?} is not a Kubernetes object name")));
        }
        let mut addons = BTreeMap::new();
        for path in raw.addons.into_iter().flatten() {
            let name = path.file_stem().and_then(|s| s.to_str()).map(str::to_lowercase).unwrap_or_else(String::new);
            if !dns_label(&name) || name.len() > 40 {
                return Err(invalid(
                    "addons",
                    format!("{}: name the file like calico.yaml (letters, digits, hyphens)", path.display()),
                ));
            }
            let manifest = std::fs::read_to_string(&path)
                .map_err(|error| invalid("addons", format!("{} cannot be read: {error}", path.display())))?;
            if manifest.len() > 900 * 1024 {
                return Err(invalid(
                    "addons",
                    format!("{} is larger than a Secret may hold (900 KiB here)", path.display()),
                ));
            }
            if addons.insert(name.clone(), manifest).is_some() {
                return Err(invalid("addons", format!("two add-ons are named {name}")));
            }
        }
        let pick = |key: &str, own: Option<String>, shared: Option<String>, fallback: &str| -> Result<String> {
            match own.or(shared) {
                Some(value) if !value.trim().is_empty() => Ok(value),
                Some(_) => Err(invalid(key, "must not be empty")),
                None if backend == BackendKind::ClusterApi && fallback.is_empty() => {
                    Err(invalid(key, format!("is required (or set vsphere.{key})")))
                }
                None => Ok(fallback.to_owned()),
            }
        };
        let datacenter = pick("datacenter", raw.datacenter, vsphere.datacenter, "DC0")?;
        let cluster_resources =
            vsphere.cluster.as_ref().map(|cluster| format!("/{datacenter}/host/{cluster}/Resources"));
        let layout = Layout {
            namespace_prefix,
            identity,
            server: pick("server", None, vsphere.server, "vcenter.simulated")?,
            thumbprint: raw.thumbprint.filter(|t| !t.trim().is_empty()),
            datastore: pick("datastore", raw.datastore, vsphere.datastore, "LocalDS_0")?,
            resource_pool: pick(
                "resource_pool",
                raw.resource_pool,
                vsphere.resource_pool.or(cluster_resources),
                "/DC0/host/DC0_C0/Resources",
            )?,
            network: pick("network", raw.network, vsphere.network, "VM Network")?,
            folder: raw.folder.unwrap_or_else(|| format!("{}-clusters", config.vsphere.folder)),
            datacenter,
            storage_policy: raw.storage_policy.filter(|p| !p.trim().is_empty()),
            pod_cidr: cidr("pod_cidr", raw.pod_cidr.unwrap_or_else(|| "192.168.0.0/16".into()))?,
            service_cidr: cidr("service_cidr", raw.service_cidr.unwrap_or_else(|| "10.128.0.0/12".into()))?,
            kube_vip_image: raw.kube_vip_image.unwrap_or_else(|| "ghcr.io/kube-vip/kube-vip:v0.8.9".into()),
            vip_interface: raw.vip_interface.filter(|i| !i.trim().is_empty()),
            addons,
            address_reuse_grace_seconds: raw.address_reuse_grace_seconds.unwrap_or(60),
        };
        let step = raw.simulated_step_seconds.unwrap_or(2.0);
        if !(0.01..=600.0).contains(&step) {
            return Err(invalid("simulated_step_seconds", format!("{step} is not accepted: use 0.01-600")));
        }
        Ok(CapiConfig {
            backend,
            kubeconfig: raw.kubeconfig.unwrap_or_else(|| PathBuf::from("/etc/basphere/management-kubeconfig")),
            choice,
            layout,
            simulated_step: Duration::from_secs_f64(step),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_prefix(prefix: &str) -> Result<CapiConfig> {
        let yaml = format!("recaptcha:\n  enabled: false\nmanagement_cluster:\n  namespace_prefix: {prefix:?}\n");
        CapiConfig::from_config(&Config::from_yaml(&yaml).expect("a valid configuration"), &VsphereSite::default())
    }

    #[test]
    fn the_longest_namespace_prefix_and_username_make_a_namespace_name() {
        let longest = format!("team-{}-", "x".repeat(25));
        assert_eq!(longest.len(), 31);
        let layout = with_prefix(&longest).unwrap().layout;
        let username = basphere_core::validate::Username::parse(&format!("u{}", "x".repeat(31))).unwrap();
        let namespace = format!("{}{username}", layout.namespace_prefix);
        assert!(namespace.len() <= 63 && dns_label(&namespace), "{namespace}");
        for refused in [format!("{longest}y"), "User-".to_owned(), "-user".to_owned()] {
            let error = with_prefix(&refused).unwrap_err().to_string();
            assert!(error.contains("management_cluster.namespace_prefix") && error.contains("up to 31"), "{error}");
        }
    }
}
