//! The VM backends' configuration: the `backend`, `vsphere` and `terraform` sections, which core
//! keeps as unparsed YAML ([`BackendSections`]), parsed and checked here when the server starts.
//! As in core, unknown keys are refused and every error names the key and what is accepted.
//! `vsphere.folder` is core's (reconciliation looks there): it arrives validated in
//! [`Config::vsphere`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::credentials::Credentials;
use basphere_core::config::{within, BackendSections, StoreConfig, StoreUrl};
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
    /// Where Terraform keeps each VM's state (`terraform.state_backend`).
    pub state: TerraformState,
}

/// Where Terraform keeps the state of each VM and user folder (`terraform.state_backend`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TerraformState {
    /// `local`: `terraform.tfstate` in the working directory, in this server's data directory.
    /// Only for one server: other replicas cannot see it.
    Local,
    /// `pg`: Terraform's own `pg` backend, one workspace per VM (`vm-<id>`) and per user folder
    /// (`folder-<owner>`) in the schema `schema`, so every replica sharing the database finds
    /// the state any of them wrote, under Terraform's lock.
    Pg {
        /// The `conn_str` given to `terraform init -backend-config` (never with a password: that
        /// reaches Terraform as `PGPASSWORD`, from `store.password_file` or the environment).
        conn_str: String,
        schema: String,
    },
}

/// The default schema of Terraform's pg backend (`terraform.pg_schema`).
pub const DEFAULT_PG_SCHEMA: &str = "basphere_terraform";

/// The three sections, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendConfig {
    pub vm: VmBackendKind,
    pub simulated_delays: SimulatedDelays,
    pub vsphere: VsphereConfig,
    /// The placement keys of `vsphere` as the file sets them, before the VM backends' defaults.
    pub placement: VspherePlacement,
    pub terraform: TerraformConfig,
}

/// The placement keys of the `vsphere` section as the file sets them (`None`: not set), checked
/// with the rest of the section. The server hands them to the cluster backend, which places
/// clusters there unless `management_cluster` says otherwise, with defaults of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VspherePlacement {
    pub server: Option<String>,
    pub datacenter: Option<String>,
    pub cluster: Option<String>,
    pub datastore: Option<String>,
    pub resource_pool: Option<String>,
    pub network: Option<String>,
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
    state_backend: Option<StateBackendKind>,
    pg_schema: Option<String>,
    pg_conn_str: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum StateBackendKind {
    Local,
    Pg,
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

/// Where Terraform's state goes. With a PostgreSQL store several replicas may serve, each with its
/// own data directory: state kept there would be seen by one replica only, and a VM created
/// through one would never be destroyed through another. So PostgreSQL means Terraform's pg
/// backend in the same database (the default), and `local` is refused there.
fn terraform_state(raw: &RawTerraform, store: &StoreConfig) -> Result<TerraformState> {
    let postgres = match &store.url {
        StoreUrl::Postgres(url) => Some(url.as_str()),
        StoreUrl::Sqlite(_) => None,
    };
    let kind =
        raw.state_backend.unwrap_or(if postgres.is_some() { StateBackendKind::Pg } else { StateBackendKind::Local });
    match kind {
        StateBackendKind::Local => {
            if postgres.is_some() {
                return Err(Error::invalid(
                    "terraform.state_backend",
                    "local keeps each VM's Terraform state in this server's data directory, where the other replicas \
                     sharing the PostgreSQL store.url cannot see it (a VM created through one would never be destroyed \
                     through another): use pg, the default with a PostgreSQL store, which keeps it in that database",
                ));
            }
            for (key, set) in
                [("terraform.pg_schema", raw.pg_schema.is_some()), ("terraform.pg_conn_str", raw.pg_conn_str.is_some())]
            {
                if set {
                    return Err(Error::invalid(key, "is only read with terraform.state_backend: pg"));
                }
            }
            Ok(TerraformState::Local)
        }
        StateBackendKind::Pg => {
            let schema = raw.pg_schema.clone().unwrap_or_else(|| DEFAULT_PG_SCHEMA.to_owned());
            let valid = schema.len() <= 63
                && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(Error::invalid(
                    "terraform.pg_schema",
                    format!("{schema:?} is not accepted: use lowercase letters, digits and _ (at most 63, not starting with a digit)"),
                ));
            }
            let conn_str = match (&raw.pg_conn_str, postgres) {
                (Some(conn_str), _) => {
                    let conn_str = conn_str.trim().to_owned();
                    if !(conn_str.starts_with("postgres://") || conn_str.starts_with("postgresql://")) {
                        return Err(Error::invalid("terraform.pg_conn_str", "must be a postgres:// URL"));
                    }
                    if StoreUrl::parse(&conn_str).is_err() {
                        return Err(Error::invalid(
                            "terraform.pg_conn_str",
                            "holds a password; Terraform is given the store's (store.password_file or BASPHERE_STORE_PASSWORD) as PGPASSWORD",
                        ));
                    }
                    conn_str
                }
                (None, Some(url)) => terraform_conn_str(url, store.ca_file.as_deref())
                    .map_err(|why| Error::invalid("terraform.pg_conn_str", why))?,
                (None, None) => {
                    return Err(Error::invalid(
                        "terraform.state_backend",
                        "pg needs a PostgreSQL database: store.url is SQLite; set terraform.pg_conn_str, or use local",
                    ))
                }
            };
            Ok(TerraformState::Pg { conn_str, schema })
        }
    }
}

/// The store's URL as Terraform's PostgreSQL driver (lib/pq) reads it. The two differ in TLS:
/// Basphere's `prefer` (the default) is not lib/pq's, whose default is `require`, even over a
/// Unix socket, where TLS does not exist; and Basphere checks the server's certificate and name
/// (`store.ca_file`, or the system's authorities), which lib/pq does with `verify-full` and
/// `sslrootcert`. So: `disable` stays; `require` and the verifying modes become `verify-full` with
/// the authorities Basphere trusts; no mode or `prefer` over a Unix socket becomes `disable`; and
/// `prefer` or `allow` over TCP, which lib/pq cannot do, is refused with what to set instead.
pub fn terraform_conn_str(url: &str, ca_file: Option<&std::path::Path>) -> std::result::Result<String, String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let authority = base.split_once("://").map_or("", |(_, rest)| rest).split('/').next().unwrap_or("");
    let authority_host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    // A Unix socket's directory: a host that is a path (percent-encoded in the authority).
    let unix_socket = match params.iter().find(|(key, _)| key == "host") {
        Some((_, host)) => host.starts_with('/'),
        None => authority_host.starts_with('/') || authority_host.to_ascii_lowercase().starts_with("%2f"),
    };
    let mode = params.iter().find(|(key, _)| key == "sslmode").map(|(_, value)| value.clone());
    params.retain(|(key, _)| key != "sslmode" && key != "sslrootcert");
    match mode.as_deref() {
        Some("disable") => params.push(("sslmode".into(), "disable".into())),
        Some("require" | "verify-ca" | "verify-full") => {
            let roots = ca_file.map_or_else(|| "/etc/ssl/certs/ca-certificates.crt".to_owned(), |path| path.display().to_string());
            params.push(("sslmode".into(), "verify-full".into()));
            params.push(("sslrootcert".into(), roots));
        }
        None | Some("prefer") if unix_socket => params.push(("sslmode".into(), "disable".into())),
        None | Some("prefer" | "allow") => {
            return Err(format!(
                "store.url's TLS mode ({}) has no equivalent in Terraform's PostgreSQL driver: add sslmode=require (or disable) \
                 to store.url, or set terraform.pg_conn_str",
                mode.as_deref().unwrap_or("prefer, the default")
            ))
        }
        Some(other) => return Err(format!("store.url's sslmode {other:?} is not one Terraform's PostgreSQL driver knows")),
    }
    Ok(format!("{base}?{}", form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish()))
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
        BackendConfig::from_sections(&config.backend_sections, &config.vsphere.folder, &config.store)
    }

    /// `sections` parsed and checked; `folder` is the base folder core validated, `store` the
    /// store core validated (Terraform's state goes where the store's replicas all see it).
    pub fn from_sections(sections: &BackendSections, folder: &str, store: &StoreConfig) -> Result<BackendConfig> {
        let backend: RawBackend = section("backend", &sections.backend)?;
        let raw: RawVsphere = section("vsphere", &sections.vsphere)?;
        let terraform: RawTerraform = section("terraform", &sections.terraform)?;

        let placement = VspherePlacement {
            server: raw.server,
            datacenter: raw.datacenter,
            cluster: raw.cluster,
            datastore: raw.datastore,
            resource_pool: raw.resource_pool,
            network: raw.network,
        };
        let vsphere = VsphereConfig {
            server: placement.server.clone().unwrap_or_else(|| "vcenter.example.local".into()),
            datacenter: placement.datacenter.clone().unwrap_or_else(|| "DC1".into()),
            cluster: placement.cluster.clone().unwrap_or_else(|| "Cluster1".into()),
            datastore: placement.datastore.clone().unwrap_or_else(|| "datastore1".into()),
            // Not set: the cluster's root pool.
            resource_pool: placement.resource_pool.clone().unwrap_or_default(),
            network: placement.network.clone().unwrap_or_else(|| "VM Network".into()),
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

        let state = terraform_state(&terraform, store)?;
        let terraform = TerraformConfig {
            state,
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
            placement,
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
    fn terraform_state_follows_the_store() {
        assert_eq!(parsed("").unwrap().terraform.state, TerraformState::Local, "SQLite: one server, local state");
        let state = |yaml: &str| parsed(yaml).unwrap().terraform.state;
        let pg = |conn_str: &str| TerraformState::Pg { conn_str: conn_str.into(), schema: DEFAULT_PG_SCHEMA.into() };
        // Over a Unix socket lib/pq must be told not to try TLS (its default is require).
        assert_eq!(
            state("store: {url: 'postgresql://basphere@/basphere?host=/run/postgresql&port=5432'}"),
            pg("postgresql://basphere@/basphere?host=%2Frun%2Fpostgresql&port=5432&sslmode=disable")
        );
        // Basphere checks the certificate and the name: so does lib/pq, with the same authorities.
        assert_eq!(
            state("store: {url: 'postgres://basphere@db:5432/basphere?sslmode=require', ca_file: /etc/basphere/db-ca.pem}"),
            pg("postgres://basphere@db:5432/basphere?sslmode=verify-full&sslrootcert=%2Fetc%2Fbasphere%2Fdb-ca.pem")
        );
        assert_eq!(
            state("store: {url: 'postgres://basphere@db/basphere?sslmode=require'}"),
            pg("postgres://basphere@db/basphere?sslmode=verify-full&sslrootcert=%2Fetc%2Fssl%2Fcerts%2Fca-certificates.crt")
        );
        // Any path of an authority file reaches lib/pq whole (percent-encoded).
        assert_eq!(
            state("store: {url: 'postgres://basphere@db/basphere?sslmode=verify-full', ca_file: '/etc/basphere/db ca&1.pem'}"),
            pg("postgres://basphere@db/basphere?sslmode=verify-full&sslrootcert=%2Fetc%2Fbasphere%2Fdb+ca%261.pem")
        );
        assert_eq!(
            state("store: {url: 'postgres://basphere@db/basphere?sslmode=disable&application_name=b'}"),
            pg("postgres://basphere@db/basphere?application_name=b&sslmode=disable")
        );
        assert_eq!(
            state("store: {url: 'postgres://basphere@db/basphere'}\nterraform: {pg_conn_str: 'postgres://tf@db2/tf?sslmode=disable', pg_schema: tf_state}"),
            TerraformState::Pg { conn_str: "postgres://tf@db2/tf?sslmode=disable".into(), schema: "tf_state".into() }
        );
        assert_eq!(
            state("terraform: {state_backend: pg, pg_conn_str: 'postgres://tf@db2/tf?sslmode=disable'}"),
            TerraformState::Pg {
                conn_str: "postgres://tf@db2/tf?sslmode=disable".into(),
                schema: DEFAULT_PG_SCHEMA.into()
            },
            "a SQLite store may keep Terraform's state in a database of its own"
        );
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
            ("terraform: {state_backend: s3}", "terraform.state_backend", "local"),
            ("terraform: {state_backend: pg}", "terraform.state_backend", "store.url is SQLite"),
            ("terraform: {pg_schema: x}", "terraform.pg_schema", "only read with terraform.state_backend: pg"),
            (
                "store: {url: 'postgres://basphere@db/basphere?sslmode=require'}\nterraform: {state_backend: local}",
                "terraform.state_backend",
                "other replicas",
            ),
            (
                "store: {url: 'postgres://basphere@db/basphere'}\nterraform: {pg_schema: Bad-Name}",
                "terraform.pg_schema",
                "lowercase",
            ),
            ("store: {url: 'postgres://basphere@db/basphere'}", "terraform.pg_conn_str", "sslmode=require"),
            (
                "store: {url: 'postgres://basphere@db/basphere'}\nterraform: {pg_conn_str: 'postgres://u:pw@db/tf'}",
                "terraform.pg_conn_str",
                "password",
            ),
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
