//! The VM backends' configuration: the `backend`, `vsphere` and `terraform` sections, which core
//! keeps as unparsed YAML ([`BackendSections`]), parsed and checked here when the server starts.
//! As in core, unknown keys are refused and every error names the key and what is accepted.
//! `vsphere.folder` is core's (reconciliation looks there): it arrives validated in
//! [`Config::vsphere`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::credentials::Credentials;
use basphere_core::config::BackendSections;
use basphere_core::model::OsImage;
use basphere_core::{Config, Error, Result};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;

/// Which VM backend the server runs (`backend.vm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmBackendKind {
    /// A simulated vCenter with its own journal in the data directory: the default.
    Simulated,
    Terraform,
    VsphereApi,
}

impl VmBackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VmBackendKind::Simulated => "simulated",
            VmBackendKind::Terraform => "terraform",
            VmBackendKind::VsphereApi => "vsphere-api",
        }
    }
}

/// Task times of the simulated backend (`backend.simulated_delays`): `realistic` (seconds, like a
/// vCenter) or `none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimulatedDelays {
    Realistic,
    None,
}

/// Where vCenter is, how to log in, and what to clone onto (`vsphere.*`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct VsphereConfig {
    /// `host[:port]` of vCenter.
    pub server: String,
    pub datacenter: String,
    pub cluster: String,
    pub datastore: String,
    /// An inventory path; empty means the cluster's root pool.
    pub resource_pool: String,
    pub network: String,
    /// The base folder: each owner's VMs are `<owner>-<name>` in `<folder>/<owner>`.
    pub folder: String,
    /// The file with `VSPHERE_USER`/`VSPHERE_PASSWORD`; must not be group- or world-readable.
    pub credentials_file: Option<PathBuf>,
    pub allow_unverified_ssl: bool,
}

/// Where the vCenter is, how to reach it and what to find there.
/// Serialised only to hand them to the vSphere API agent (`crate::agent`) over its standard input.
#[derive(Clone, Debug, serde::Serialize, Deserialize)]
pub struct VsphereApiSettings {
    /// `host[:port]` of the vCenter (the SDK is at `https://<server>/sdk`).
    pub server: String,
    pub credentials: Credentials,
    pub vsphere: VsphereConfig,
    /// The OS catalog, whose templates preflight looks for.
    pub os_images: BTreeMap<String, OsImage>,
    /// Accept a self-signed certificate (`vsphere.allow_unverified_ssl`).
    pub accept_invalid_certs: bool,
}

/// How the Terraform backend runs `terraform` (`terraform.*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerraformConfig {
    pub binary: PathBuf,
    /// Shared provider cache (`TF_PLUGIN_CACHE_DIR`), so providers are fetched once.
    pub plugin_cache_dir: Option<PathBuf>,
    /// A CLI configuration (`TF_CLI_CONFIG_FILE`), e.g. a provider mirror for offline sites.
    pub cli_config_file: Option<PathBuf>,
    pub init_timeout_seconds: u64,
    pub apply_timeout_seconds: u64,
    pub parallelism: usize,
}

/// The three sections, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendConfig {
    pub vm: VmBackendKind,
    pub simulated_delays: SimulatedDelays,
    pub vsphere: VsphereConfig,
    pub terraform: TerraformConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBackend {
    vm: Option<VmBackendKind>,
    simulated_delays: Option<SimulatedDelays>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawVsphere {
    server: Option<String>,
    datacenter: Option<String>,
    cluster: Option<String>,
    datastore: Option<String>,
    resource_pool: Option<String>,
    network: Option<String>,
    /// Core's, checked there; named here so that it is a known key.
    #[allow(dead_code)]
    folder: Option<IgnoredAny>,
    credentials_file: Option<PathBuf>,
    allow_unverified_ssl: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTerraform {
    binary: Option<PathBuf>,
    plugin_cache_dir: Option<PathBuf>,
    cli_config_file: Option<PathBuf>,
    init_timeout_seconds: Option<u64>,
    apply_timeout_seconds: Option<u64>,
    parallelism: Option<usize>,
}

/// One section read into its raw form; an absent (null) section is all defaults.
fn section<T: DeserializeOwned + Default>(name: &str, value: &serde_yaml::Value) -> Result<T> {
    if value.is_null() {
        return Ok(T::default());
    }
    if !value.is_mapping() {
        return Err(Error::invalid(name, format!("must be a mapping of settings (`{name}:` then `key: value` lines)")));
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let key = if path == "." { name.to_owned() } else { format!("{name}.{path}") };
        Error::invalid(key, error.into_inner().to_string())
    })
}

fn within<T: Copy + PartialOrd + std::fmt::Display>(
    key: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(Error::invalid(key, format!("{value} is not accepted: use {}-{}", range.start(), range.end())))
    }
}

impl Default for BackendConfig {
    /// What an empty configuration gives: the simulated backend.
    fn default() -> Self {
        BackendConfig::from_config(&Config::default()).expect("the built-in defaults are valid")
    }
}

impl BackendConfig {
    /// The backend sections of a configuration, parsed and checked.
    pub fn from_config(config: &Config) -> Result<BackendConfig> {
        BackendConfig::from_sections(&config.backend_sections, &config.vsphere.folder)
    }

    /// `sections` parsed and checked; `folder` is the base folder core validated.
    pub fn from_sections(sections: &BackendSections, folder: &str) -> Result<BackendConfig> {
        let backend: RawBackend = section("backend", &sections.backend)?;
        let raw: RawVsphere = section("vsphere", &sections.vsphere)?;
        let terraform: RawTerraform = section("terraform", &sections.terraform)?;

        let vsphere = VsphereConfig {
            server: raw.server.unwrap_or_else(|| "vcenter.example.local".into()),
            datacenter: raw.datacenter.unwrap_or_else(|| "DC1".into()),
            cluster: raw.cluster.unwrap_or_else(|| "Cluster1".into()),
            datastore: raw.datastore.unwrap_or_else(|| "datastore1".into()),
            resource_pool: raw.resource_pool.unwrap_or_default(),
            network: raw.network.unwrap_or_else(|| "VM Network".into()),
            folder: folder.to_owned(),
            credentials_file: raw.credentials_file,
            allow_unverified_ssl: raw.allow_unverified_ssl.unwrap_or(false),
        };
        for (key, value) in [
            ("vsphere.datacenter", &vsphere.datacenter),
            ("vsphere.datastore", &vsphere.datastore),
            ("vsphere.network", &vsphere.network),
        ] {
            if value.trim().is_empty() || value.chars().any(char::is_control) {
                return Err(Error::invalid(key, "must be a non-empty name without control characters"));
            }
        }

        let terraform = TerraformConfig {
            binary: terraform.binary.unwrap_or_else(|| PathBuf::from("terraform")),
            plugin_cache_dir: terraform.plugin_cache_dir,
            cli_config_file: terraform.cli_config_file,
            init_timeout_seconds: within(
                "terraform.init_timeout_seconds",
                terraform.init_timeout_seconds.unwrap_or(600),
                10..=86_400,
            )?,
            apply_timeout_seconds: within(
                "terraform.apply_timeout_seconds",
                terraform.apply_timeout_seconds.unwrap_or(1800),
                10..=86_400,
            )?,
            parallelism: within("terraform.parallelism", terraform.parallelism.unwrap_or(4), 1..=64)?,
        };

        let vm = backend.vm.unwrap_or(VmBackendKind::Simulated);
        if vm != VmBackendKind::Simulated && vsphere.credentials_file.is_none() {
            return Err(Error::invalid(
                "vsphere.credentials_file",
                format!(
                    "is required for backend.vm: {} (a file with VSPHERE_USER and VSPHERE_PASSWORD, mode 600)",
                    vm.as_str()
                ),
            ));
        }
        Ok(BackendConfig {
            vm,
            simulated_delays: backend.simulated_delays.unwrap_or(SimulatedDelays::Realistic),
            vsphere,
            terraform,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(yaml: &str) -> Result<BackendConfig> {
        BackendConfig::from_config(&Config::from_yaml(yaml)?)
    }

    #[test]
    fn no_sections_give_the_simulated_backend_and_the_defaults() {
        let config = BackendConfig::default();
        assert_eq!(config, parsed("").unwrap());
        assert_eq!(config.vm, VmBackendKind::Simulated);
        assert_eq!(config.simulated_delays, SimulatedDelays::Realistic);
        assert_eq!(config.vsphere.server, "vcenter.example.local");
        assert_eq!((config.vsphere.datacenter.as_str(), config.vsphere.folder.as_str()), ("DC1", "basphere-vms"));
        assert_eq!(config.vsphere.credentials_file, None);
        assert!(!config.vsphere.allow_unverified_ssl);
        assert_eq!(config.terraform.binary, PathBuf::from("terraform"));
        assert_eq!(
            (
                config.terraform.init_timeout_seconds,
                config.terraform.apply_timeout_seconds,
                config.terraform.parallelism
            ),
            (600, 1800, 4)
        );
    }

    #[test]
    fn the_sections_are_read() {
        let yaml = r#"
backend: {vm: vsphere-api, simulated_delays: none}
vsphere:
  server: vcenter.corp.local
  datacenter: DC1
  cluster: Cluster1
  datastore: datastore1
  resource_pool: /DC1/host/Cluster1/Resources/basphere
  network: VM Network
  folder: basphere-vms
  credentials_file: /etc/basphere/vsphere.env
  allow_unverified_ssl: true
terraform: {binary: /usr/local/bin/terraform, parallelism: 8, apply_timeout_seconds: 3600}
"#;
        let config = parsed(yaml).unwrap();
        assert_eq!((config.vm, config.simulated_delays), (VmBackendKind::VsphereApi, SimulatedDelays::None));
        assert_eq!(config.vsphere.server, "vcenter.corp.local");
        assert_eq!(config.vsphere.resource_pool, "/DC1/host/Cluster1/Resources/basphere");
        assert_eq!(config.vsphere.credentials_file, Some(PathBuf::from("/etc/basphere/vsphere.env")));
        assert!(config.vsphere.allow_unverified_ssl);
        assert_eq!((config.terraform.parallelism, config.terraform.apply_timeout_seconds), (8, 3600));
        assert_eq!(config.terraform.binary, PathBuf::from("/usr/local/bin/terraform"));
    }

    #[test]
    fn errors_name_the_key_and_what_is_accepted() {
        let cases = [
            ("backend: {vm: openstack}", "backend.vm", "simulated"),
            ("backend: {vm: terraform}", "vsphere.credentials_file", "required"),
            ("backend: {vm: vsphere-api}", "vsphere.credentials_file", "required for backend.vm: vsphere-api"),
            ("backend: {simulated_delays: slow}", "backend.simulated_delays", "realistic"),
            ("backend: {vms: terraform}", "backend.vms", "unknown field `vms`, expected `vm` or `simulated_delays`"),
            ("backend: terraform", "backend", "mapping"),
            ("terraform: {parallelism: 0}", "terraform.parallelism", "1-64"),
            ("terraform: {init_timeout_seconds: 5}", "terraform.init_timeout_seconds", "10-86400"),
            ("terraform: {apply_timeout_seconds: 100000}", "terraform.apply_timeout_seconds", "10-86400"),
            ("terraform: {binry: /bin/terraform}", "terraform.binry", "unknown field `binry`"),
            ("vsphere: {datacenter: ''}", "vsphere.datacenter", "non-empty"),
            ("vsphere: {network: \"a\\tb\"}", "vsphere.network", "control characters"),
            ("vsphere: {servr: vc}", "vsphere.servr", "unknown field `servr`"),
            ("vsphere: {allow_unverified_ssl: perhaps}", "vsphere.allow_unverified_ssl", "boolean"),
        ];
        for (yaml, key, accepted) in cases {
            let error = match parsed(yaml) {
                Ok(config) => panic!("{yaml} should be refused: {config:?}"),
                Err(error) => error.to_string(),
            };
            assert!(error.contains(&format!("invalid {key}:")) && error.contains(accepted), "{yaml}: {error}");
        }
    }
}
