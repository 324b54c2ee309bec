//! The configuration model: one YAML file whose keys follow the original's `config.yaml`,
//! `specs.yaml` and `api.yaml`, every default from the product, validated in one place.
//!
//! Raw YAML is read into `Raw*` structs (all optional), then [`Config::from_raw`] fills the
//! defaults and checks every rule; each error names the key and what is accepted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

use ipnetwork::{IpNetworkError, Ipv4Network};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::{ClusterType, NodeSpec, OsImage, Quota, VmSpec};
use crate::validate::EmailDomainAllowList;

/// An IPv4 network written `a.b.c.d/n`, its base address aligned to its prefix (an
/// [`Ipv4Network`] whose address is its network address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr(Ipv4Network);

impl Cidr {
    /// The network's first address.
    pub fn base(&self) -> Ipv4Addr {
        self.0.network()
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix()
    }

    /// Its addresses, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix_len())
    }

    pub fn first(&self) -> u32 {
        u32::from(self.0.network())
    }

    pub fn last(&self) -> u32 {
        u32::from(self.0.broadcast())
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        self.0.contains(address)
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.0.overlaps(other.0)
    }

    pub fn netmask(&self) -> Ipv4Addr {
        self.0.mask()
    }

    pub fn network(&self) -> Ipv4Network {
        self.0
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `a.b.c.d/n` only: neither a bare address nor a netmask after the slash (which
    /// `Ipv4Network` also reads), and the base address aligned.
    fn from_str(value: &str) -> std::result::Result<Self, String> {
        let (base, prefix) =
            value.split_once('/').ok_or_else(|| format!("{value:?} is not a CIDR like 10.254.0.0/21"))?;
        if prefix.contains('.') {
            return Err(format!("{prefix:?} is not a prefix length 0-32"));
        }
        let network = Ipv4Network::from_str(value).map_err(|error| match error {
            IpNetworkError::InvalidAddr(_) => format!("{base:?} is not an IPv4 address"),
            IpNetworkError::InvalidPrefix => format!("{prefix:?} is not a prefix length 0-32"),
            other => format!("{value:?} is not a CIDR like 10.254.0.0/21: {other}"),
        })?;
        if network.ip() != network.network() {
            return Err(format!("{value} is not aligned: the base address must be {}", network.network()));
        }
        Ok(Cidr(network))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base(), self.prefix_len())
    }
}

/// One address pool of the IPAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    pub name: String,
    pub cidr: Cidr,
    pub gateway: Ipv4Addr,
    pub reserved: BTreeSet<Ipv4Addr>,
    pub block_size: u32,
}

impl PoolConfig {
    /// Checks the pool's own rules; `key` is where it was configured, for error messages.
    pub fn validate(&self, key: &str) -> Result<()> {
        let size = self.cidr.size();
        if !self.block_size.is_power_of_two() || self.block_size < 4 || u64::from(self.block_size) > size / 2 {
            return Err(Error::invalid(
                format!("{key}.block_size"),
                format!(
                    "{} is not accepted: use a power of two from 4 up to half the pool ({} addresses in {})",
                    self.block_size, size, self.cidr
                ),
            ));
        }
        if !self.cidr.contains(self.gateway) {
            return Err(Error::invalid(format!("{key}.gateway"), format!("{} is outside {}", self.gateway, self.cidr)));
        }
        if let Some(outside) = self.reserved.iter().find(|address| !self.cidr.contains(**address)) {
            return Err(Error::invalid(format!("{key}.reserved"), format!("{outside} is outside {}", self.cidr)));
        }
        Ok(())
    }

    /// Whether an address may never be leased: network, broadcast, gateway, reserved.
    pub fn is_unleasable(&self, address: Ipv4Addr) -> bool {
        let raw = u32::from(address);
        raw == self.cidr.first()
            || raw == self.cidr.last()
            || address == self.gateway
            || self.reserved.contains(&address)
    }
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub vsphere: VsphereLayout,
    /// OS catalog, ordered by key.
    pub os_images: BTreeMap<String, OsImage>,
    pub vm_specs: BTreeMap<String, VmSpec>,
    pub cluster_types: BTreeMap<String, ClusterType>,
    pub node_specs: BTreeMap<String, NodeSpec>,
    pub kubernetes: KubernetesConfig,
    pub pools: Vec<PoolConfig>,
    pub guest_network: GuestNetworkConfig,
    pub default_quota: Quota,
    pub recaptcha: RecaptchaConfig,
    pub registration: RegistrationLimits,
    pub allowed_email_domains: EmailDomainAllowList,
    pub bastion: BastionConfig,
    pub notifications: NotificationsConfig,
    pub reconcile_interval_seconds: u64,
    /// How long a stopping server waits for running operations.
    pub shutdown_grace_seconds: u64,
    /// The sections only the VM backends read, unparsed.
    pub backend_sections: BackendSections,
    /// Durable background work: operation claims and notification delivery.
    pub work: WorkConfig,
    /// The web pages' sessions (`web.*`).
    pub web: WebConfig,
    /// Where the platform's state lives (`store.*`).
    pub store: StoreConfig,
}

/// The TCP listener's certificate and key (`server.tls.*`), PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Where the platform's state lives (`store.*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// `store.url`: `sqlite:PATH` (the default, `sqlite:<data_dir>/basphere.db`) or a
    /// `postgres://` / `postgresql://` URL.
    pub url: StoreUrl,
    /// `store.password_file`: the database password, in a file only the server's account reads
    /// (PostgreSQL). The environment variable `BASPHERE_STORE_PASSWORD` is the other way.
    pub password_file: Option<PathBuf>,
    /// `store.ca_file`: PEM certificates to trust for TLS to the database (PostgreSQL; TLS is
    /// used as the URL's `sslmode` says).
    pub ca_file: Option<PathBuf>,
    /// `store.pool_size`: connections to the database (PostgreSQL), 1-200.
    pub pool_size: usize,
}

/// The store `store.url` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite file; `None`: `basphere.db` in the data directory.
    Sqlite(Option<PathBuf>),
    /// A PostgreSQL connection URL (without its password).
    Postgres(String),
}

impl StoreUrl {
    /// Parses `store.url`, saying what is accepted.
    pub fn parse(url: &str) -> Result<StoreUrl> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(Error::invalid(
                    "store.url",
                    "sqlite: needs a file, e.g. sqlite:/var/lib/basphere/basphere.db",
                ));
            }
            return Ok(StoreUrl::Sqlite(Some(PathBuf::from(path))));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // user:password@ before the host: a password in the configuration file is refused.
            let rest = url.split_once("://").map_or("", |(_, rest)| rest);
            let authority = rest.split(['/', '?']).next().unwrap_or("");
            if authority.rsplit_once('@').is_some_and(|(user, _)| user.contains(':')) || rest.contains("password=") {
                return Err(Error::invalid(
                    "store.url",
                    "holds a password; put it in the file store.password_file names (mode 600), or in BASPHERE_STORE_PASSWORD",
                ));
            }
            return Ok(StoreUrl::Postgres(url.to_owned()));
        }
        Err(Error::invalid(
            "store.url",
            format!("{url:?} is not accepted: use sqlite:PATH or postgres://USER@HOST:PORT/DATABASE"),
        ))
    }

    /// The backend's name, as `Store::backend_name` says it.
    pub fn backend(&self) -> &'static str {
        match self {
            StoreUrl::Sqlite(_) => "sqlite",
            StoreUrl::Postgres(_) => "postgres",
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { url: StoreUrl::Sqlite(None), password_file: None, ca_file: None, pool_size: 16 }
    }
}

/// Browser sessions (`web.*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebConfig {
    /// A session unused this long ends (`web.session_idle_minutes`).
    pub session_idle_minutes: u64,
    /// A session ends this long after sign-in, however active (`web.session_max_hours`).
    pub session_max_hours: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig { session_idle_minutes: 60, session_max_hours: 12 }
    }
}

/// How background work is shared between processes (`work.*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkConfig {
    /// This server among the replicas sharing one database (`work.instance`); a restarted
    /// instance takes back its own interrupted operations at once, while another replica's are
    /// taken over only when their claim expires. `None`: the server derives one (host and data
    /// directory).
    pub instance: Option<String>,
    /// How long a claim on an operation lasts without renewal (`work.lease_seconds`); the
    /// running process renews it every third of that.
    pub lease_seconds: u64,
    /// Deliveries of one notification before it is dead-lettered (`work.notification_attempts`).
    pub notification_attempts: u32,
    /// The first retry delay of a failed notification, doubled each time up to 30 minutes
    /// (`work.notification_retry_seconds`).
    pub notification_retry_seconds: u64,
}

impl Default for WorkConfig {
    fn default() -> Self {
        WorkConfig { instance: None, lease_seconds: 30, notification_attempts: 12, notification_retry_seconds: 2 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub socket: Option<PathBuf>,
    pub data_dir: PathBuf,
    /// Background operations run at once, at most.
    pub workers: usize,
    pub connections: ConnectionConfig,
    /// Reverse proxies whose `X-Forwarded-For` names the client (`server.trusted_proxies`); from
    /// anyone else the header is ignored, so nobody picks the address their limits count against.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The address browsers use to reach the server (`server.public_url`, e.g.
    /// `https://basphere.example.com`), for the links `basphere web` prints and for `Secure`
    /// cookies when it is https. `None`: the TCP listener's own address.
    pub public_url: Option<String>,
    /// HTTPS on the TCP listener (`server.tls.cert_file`, `server.tls.key_file`: PEM files,
    /// read again on SIGHUP); plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
}

/// What core knows of vSphere: the base folder (`vsphere.folder`) under which every owner's
/// folder lives, where reconciliation reports the VMs Basphere does not know. Everything else in
/// the `vsphere` section (where vCenter is, how to log in, what to clone onto) is the VM backend's
/// own, in [`BackendSections`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VsphereLayout {
    pub folder: String,
}

/// The sections only backends read: `backend`, `vsphere` and `terraform` (the VM backends'), and
/// `management_cluster` (the cluster backend's), kept as YAML (null when absent). Core knows that
/// they exist, not what is in them: the backend crates parse and validate them when the server
/// starts (`basphere_vsphere::vm_backend`, `basphere_capi::cluster_backend`), refusing unknown
/// keys with errors that name them, so a configuration is never half-checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackendSections {
    pub backend: serde_yaml::Value,
    pub vsphere: serde_yaml::Value,
    pub terraform: serde_yaml::Value,
    /// The cluster backend's section (`basphere_capi::cluster_backend` parses it).
    pub management_cluster: serde_yaml::Value,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesConfig {
    pub version: String,
    pub node_template: String,
    /// How long a cluster deletion may wait for Cluster API before it is reported stuck
    /// (`kubernetes.delete_timeout_minutes`).
    pub delete_timeout: std::time::Duration,
}

/// What the guests' cloud-init network configuration gets besides the address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestNetworkConfig {
    pub mtu: u32,
    pub dns: Vec<Ipv4Addr>,
}

/// The bot check on public submissions (registration, key change), form and JSON alike.
///
/// A configuration file must decide (`recaptcha.enabled: true` with a site key and a secret
/// file, or `false`); until it does, public submissions are refused. The embedded defaults
/// (no configuration file: a local trial on loopback) decide `false`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecaptchaConfig {
    /// `recaptcha.enabled` is not set: public submissions are refused.
    Undecided,
    /// `recaptcha.enabled: false`: submissions are accepted without a bot check.
    Off,
    /// reCAPTCHA v2: every submission carries a response token that siteverify must accept.
    On(RecaptchaSettings),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecaptchaSettings {
    /// Public: the web pages embed it.
    pub site_key: String,
    /// A file holding the secret key (never the configuration itself).
    pub secret_file: PathBuf,
    /// The siteverify URL (Google's by default; a compatible verifier's otherwise).
    pub verify_url: String,
    /// The hostname siteverify must report the token was solved on; any when `None`.
    pub hostname: Option<String>,
    pub timeout_seconds: u64,
}

/// Limits on public submissions, per client address, per email address and in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationLimits {
    /// Submissions per client address per hour.
    pub per_address_per_hour: u32,
    /// Submissions naming one email address per day.
    pub per_email_per_day: u32,
    /// Submissions per day in all.
    pub per_day: u32,
    /// Every accepted submission is answered this long after it arrived, whether it was
    /// recorded or refused as a duplicate: the two do different work, and the answer's timing
    /// must not tell which (0: answer as soon as the work is done).
    pub answer_after_ms: u32,
}

impl RegistrationLimits {
    /// The defaults: 10 an hour per address, 3 a day per email, 500 a day, answered after 50 ms
    /// (a submission's work takes a few milliseconds).
    pub const DEFAULT: RegistrationLimits =
        RegistrationLimits { per_address_per_hour: 10, per_email_per_day: 3, per_day: 500, answer_after_ms: 50 };
}

impl Default for RegistrationLimits {
    fn default() -> Self {
        RegistrationLimits::DEFAULT
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BastionConfig {
    pub address: String,
    pub port: u16,
    /// How accounts get their bastion login.
    pub logins: BastionLogins,
}

/// Which bastion logins Basphere makes for approved accounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BastionLogins {
    /// None: the deployment manages logins itself.
    None,
    /// Unix accounts made with useradd on this host (`root` is `/` in production; a directory
    /// with its own `etc/passwd` in tests). With `helper_socket`, the server (unprivileged) asks
    /// the root bastion helper listening there (`basphere-server bastion-helper`) to run them.
    Unix { group: String, shell: PathBuf, home: PathBuf, root: PathBuf, helper_socket: Option<PathBuf> },
}

/// Where notifications go besides the log; the notifier crate parses its own sections.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NotificationsConfig {
    /// Who hears of registrations and key changes waiting for approval.
    pub admin_emails: Vec<crate::validate::Email>,
    /// `notifications.webhook`, unparsed.
    pub webhook: serde_yaml::Value,
    /// `notifications.email`, unparsed.
    pub email: serde_yaml::Value,
}

// ---- raw YAML ---------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    server: RawServer,
    // The backend's sections: kept whole (null when absent), parsed by the backend crate.
    backend: serde_yaml::Value,
    vsphere: serde_yaml::Value,
    templates: RawTemplates,
    network: RawNetwork,
    quotas: RawQuotas,
    vm_specs: Option<BTreeMap<String, RawVmSpec>>,
    cluster_types: Option<BTreeMap<String, RawClusterType>>,
    cluster_node_specs: Option<BTreeMap<String, RawNodeSpec>>,
    cluster_quotas: RawClusterQuotas,
    kubernetes: RawKubernetes,
    // The cluster backend's section: kept whole, parsed by the cluster backend crate.
    management_cluster: serde_yaml::Value,
    recaptcha: RawRecaptcha,
    registration: RawRegistration,
    notifications: RawNotifications,
    validation: RawValidation,
    bastion: RawBastion,
    reconcile: RawReconcile,
    terraform: serde_yaml::Value,
    work: RawWork,
    web: RawWeb,
    store: RawStore,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    url: Option<String>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    pool_size: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawWork {
    instance: Option<String>,
    lease_seconds: Option<u64>,
    notification_attempts: Option<u32>,
    notification_retry_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    shutdown_grace_seconds: Option<u64>,
    host: Option<String>,
    port: Option<u16>,
    socket: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    workers: Option<usize>,
    connections: RawConnections,
    trusted_proxies: Vec<String>,
    public_url: Option<String>,
    tls: Option<RawTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawWeb {
    session_idle_minutes: Option<u64>,
    session_max_hours: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTemplates {
    os: Option<BTreeMap<String, RawOs>>,
    kubernetes: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawOs {
    template: Option<String>,
    /// Accepted for compatibility with the original; the login user is always the owner.
    #[allow(dead_code)]
    default_user: Option<String>,
    description: Option<String>,
    interface: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNetwork {
    cidr: Option<String>,
    gateway: Option<Ipv4Addr>,
    netmask: Option<Ipv4Addr>,
    prefix_length: Option<u8>,
    mtu: Option<u32>,
    dns: Option<Vec<Ipv4Addr>>,
    block_size: Option<u32>,
    reserved: Option<Vec<Ipv4Addr>>,
    pools: Vec<RawPool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPool {
    name: Option<String>,
    cidr: Option<String>,
    gateway: Option<Ipv4Addr>,
    block_size: Option<u32>,
    reserved: Vec<Ipv4Addr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawQuotas {
    default: RawQuota,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawQuota {
    max_vms: Option<u64>,
    max_clusters: Option<u64>,
    max_nodes_per_cluster: Option<u64>,
    max_ips: Option<u64>,
    max_vcpus: Option<u64>,
    max_memory_mb: Option<u64>,
    max_disk_gb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawClusterQuotas {
    default: RawClusterQuota,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawClusterQuota {
    max_clusters: Option<u64>,
    max_nodes_per_cluster: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawVmSpec {
    description: Option<String>,
    cpu: Option<u32>,
    memory_mb: Option<u64>,
    disk_gb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawClusterType {
    description: Option<String>,
    control_plane_count: Option<u32>,
    worker_count: Option<u32>,
    control_plane_spec: Option<String>,
    worker_spec_default: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNodeSpec {
    cpu: Option<u32>,
    memory_mb: Option<u64>,
    disk_gb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawKubernetes {
    version: Option<String>,
    delete_timeout_minutes: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRecaptcha {
    enabled: Option<bool>,
    site_key: Option<String>,
    secret_key: Option<String>,
    secret_file: Option<PathBuf>,
    verify_url: Option<String>,
    hostname: Option<String>,
    timeout_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRegistration {
    per_address_per_hour: Option<u32>,
    per_email_per_day: Option<u32>,
    per_day: Option<u32>,
    answer_after_ms: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNotifications {
    admin_emails: Vec<String>,
    // The notifier's sections: kept whole (null when absent), parsed by the notifier crate.
    webhook: serde_yaml::Value,
    email: serde_yaml::Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawValidation {
    allowed_email_domains: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBastion {
    address: Option<String>,
    port: Option<u16>,
    logins: Option<String>,
    group: Option<String>,
    shell: Option<PathBuf>,
    home: Option<PathBuf>,
    root: Option<PathBuf>,
    helper_socket: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawReconcile {
    interval_seconds: Option<u64>,
}

// ---- defaults ---------------------------------------------------------------------------------

fn default_os_images() -> BTreeMap<String, OsImage> {
    [
        ("ubuntu-24.04", "ubuntu-noble-24.04-cloudimg", "Ubuntu 24.04 LTS (Noble)", "ens192"),
        ("rocky-10.1", "rocky-10-template", "Rocky Linux 10.1", "ens33"),
    ]
    .into_iter()
    .map(|(key, template, description, interface)| {
        (
            key.to_owned(),
            OsImage {
                key: key.into(),
                template: template.into(),
                description: description.into(),
                interface: interface.into(),
            },
        )
    })
    .collect()
}

fn default_vm_specs() -> BTreeMap<String, VmSpec> {
    [
        ("tiny", "Extra-small VM (testing)", 2, 4, 50),
        ("small", "Small VM (development)", 2, 8, 50),
        ("medium", "Medium VM (general workloads)", 4, 16, 100),
        ("large", "Large VM (high performance)", 8, 32, 200),
        ("huge", "Extra-large VM (large workloads)", 16, 64, 200),
    ]
    .into_iter()
    .map(|(key, description, cpu, memory_gb, disk_gb)| {
        (
            key.to_owned(),
            VmSpec { key: key.into(), description: description.into(), cpu, memory_mb: memory_gb * 1024, disk_gb },
        )
    })
    .collect()
}

fn default_cluster_types() -> BTreeMap<String, ClusterType> {
    [
        ("dev", "Development cluster", 1, 2, "medium", "medium"),
        ("standard", "Standard cluster (HA)", 3, 3, "medium", "large"),
    ]
    .into_iter()
    .map(|(key, description, control_plane_count, worker_count, cp, worker)| {
        (
            key.to_owned(),
            ClusterType {
                key: key.into(),
                description: description.into(),
                control_plane_count,
                worker_count,
                control_plane_spec: cp.into(),
                worker_spec_default: worker.into(),
            },
        )
    })
    .collect()
}

fn default_node_specs() -> BTreeMap<String, NodeSpec> {
    [("small", 2, 4, 50), ("medium", 4, 8, 100), ("large", 8, 16, 200)]
        .into_iter()
        .map(|(key, cpu, memory_gb, disk_gb)| {
            (key.to_owned(), NodeSpec { key: key.into(), cpu, memory_mb: memory_gb * 1024, disk_gb })
        })
        .collect()
}

impl Default for Config {
    /// The embedded defaults: a local trial, so public submissions need no bot check.
    fn default() -> Self {
        let raw = RawConfig {
            recaptcha: RawRecaptcha { enabled: Some(false), ..RawRecaptcha::default() },
            ..RawConfig::default()
        };
        Config::from_raw(raw).expect("the built-in defaults are valid")
    }
}

impl Config {
    /// Parses and validates a YAML document.
    pub fn from_yaml(text: &str) -> Result<Config> {
        let deserializer = serde_yaml::Deserializer::from_str(text);
        let raw: RawConfig = match serde_path_to_error::deserialize(deserializer) {
            Ok(raw) => raw,
            Err(error) => {
                let path = error.path().to_string();
                let inner = error.into_inner();
                // An empty document is the all-defaults configuration.
                if text.trim().is_empty() || inner.to_string().contains("EOF while parsing") {
                    RawConfig::default()
                } else {
                    let key = if path == "." { "configuration".to_owned() } else { path };
                    return Err(Error::invalid(key, inner.to_string()));
                }
            }
        };
        Config::from_raw(raw)
    }

    fn from_raw(raw: RawConfig) -> Result<Config> {
        let server = ServerConfig {
            host: raw.server.host.unwrap_or_else(|| "127.0.0.1".into()),
            port: raw.server.port.unwrap_or(8080),
            socket: raw.server.socket,
            data_dir: raw.server.data_dir.unwrap_or_else(|| PathBuf::from(".basphere")),
            workers: raw.server.workers.unwrap_or(16),
            connections: ConnectionConfig::from_raw(raw.server.connections)?,
            trusted_proxies: raw
                .server
                .trusted_proxies
                .iter()
                .map(|address| {
                    address.trim().parse().map_err(|_| {
                        Error::invalid(
                            "server.trusted_proxies",
                            format!("{address:?} is not an IP address (list each proxy's address, e.g. 127.0.0.1)"),
                        )
                    })
                })
                .collect::<Result<_>>()?,
            public_url: raw.server.public_url.map(|url| public_url(&url)).transpose()?,
            tls: match raw.server.tls {
                None => None,
                Some(RawTls { cert_file: Some(cert_file), key_file: Some(key_file) }) => {
                    Some(TlsFiles { cert_file, key_file })
                }
                Some(RawTls { cert_file: None, .. }) => {
                    return Err(Error::invalid(
                        "server.tls.cert_file",
                        "is required with server.tls: the certificate chain, PEM",
                    ))
                }
                Some(RawTls { key_file: None, .. }) => {
                    return Err(Error::invalid(
                        "server.tls.key_file",
                        "is required with server.tls: the private key, PEM",
                    ))
                }
            },
        };
        if server.workers == 0 || server.workers > 1024 {
            return Err(Error::invalid("server.workers", format!("{} is not accepted: use 1-1024", server.workers)));
        }

        let vsphere = VsphereLayout { folder: base_folder(&raw.vsphere)? };

        let os_images = match raw.templates.os {
            None => default_os_images(),
            Some(entries) => {
                let mut images = BTreeMap::new();
                for (key, os) in entries {
                    let at = format!("templates.os.{key}");
                    check_catalog_key(&at, &key)?;
                    let template = os.template.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
                        Error::invalid(
                            format!("{at}.template"),
                            "is required: the name of the vSphere template to clone",
                        )
                    })?;
                    let interface = os.interface.unwrap_or_else(|| "ens192".into());
                    if interface.is_empty()
                        || !interface.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    {
                        return Err(Error::invalid(
                            format!("{at}.interface"),
                            format!("{interface:?} is not an interface name like ens192"),
                        ));
                    }
                    images.insert(
                        key.clone(),
                        OsImage {
                            description: os.description.unwrap_or_else(|| key.clone()),
                            key,
                            template,
                            interface,
                        },
                    );
                }
                if images.is_empty() {
                    return Err(Error::invalid("templates.os", "at least one OS is needed"));
                }
                images
            }
        };

        let vm_specs = match raw.vm_specs {
            None => default_vm_specs(),
            Some(entries) => {
                let mut specs = BTreeMap::new();
                for (key, spec) in entries {
                    let at = format!("vm_specs.{key}");
                    check_catalog_key(&at, &key)?;
                    let spec = VmSpec {
                        description: spec.description.unwrap_or_else(|| key.clone()),
                        cpu: positive(&format!("{at}.cpu"), spec.cpu, 1..=768)?,
                        memory_mb: positive(&format!("{at}.memory_mb"), spec.memory_mb, 256..=24 * 1024 * 1024)?,
                        disk_gb: positive(&format!("{at}.disk_gb"), spec.disk_gb, 1..=62 * 1024)?,
                        key: key.clone(),
                    };
                    specs.insert(key, spec);
                }
                if specs.is_empty() {
                    return Err(Error::invalid("vm_specs", "at least one spec is needed"));
                }
                specs
            }
        };

        let node_specs = match raw.cluster_node_specs {
            None => default_node_specs(),
            Some(entries) => {
                let mut specs = BTreeMap::new();
                for (key, spec) in entries {
                    let at = format!("cluster_node_specs.{key}");
                    check_catalog_key(&at, &key)?;
                    let spec = NodeSpec {
                        cpu: positive(&format!("{at}.cpu"), spec.cpu, 1..=768)?,
                        memory_mb: positive(&format!("{at}.memory_mb"), spec.memory_mb, 1024..=24 * 1024 * 1024)?,
                        disk_gb: positive(&format!("{at}.disk_gb"), spec.disk_gb, 10..=62 * 1024)?,
                        key: key.clone(),
                    };
                    specs.insert(key, spec);
                }
                specs
            }
        };

        let cluster_types = match raw.cluster_types {
            None => default_cluster_types(),
            Some(entries) => {
                let mut types = BTreeMap::new();
                for (key, raw_type) in entries {
                    let at = format!("cluster_types.{key}");
                    check_catalog_key(&at, &key)?;
                    let cluster_type = ClusterType {
                        description: raw_type.description.unwrap_or_else(|| key.clone()),
                        control_plane_count: raw_type.control_plane_count.unwrap_or(1),
                        worker_count: raw_type.worker_count.unwrap_or(2),
                        control_plane_spec: raw_type.control_plane_spec.unwrap_or_else(|| "medium".into()),
                        worker_spec_default: raw_type.worker_spec_default.unwrap_or_else(|| "medium".into()),
                        key: key.clone(),
                    };
                    if cluster_type.control_plane_count.is_multiple_of(2) {
                        return Err(Error::invalid(
                            format!("{at}.control_plane_count"),
                            format!(
                                "{} is not accepted: use an odd number (1, 3, 5) so etcd keeps quorum",
                                cluster_type.control_plane_count
                            ),
                        ));
                    }
                    types.insert(key, cluster_type);
                }
                types
            }
        };
        for (key, cluster_type) in &cluster_types {
            for (field, spec) in [
                ("control_plane_spec", &cluster_type.control_plane_spec),
                ("worker_spec_default", &cluster_type.worker_spec_default),
            ] {
                if !node_specs.contains_key(spec) {
                    return Err(Error::invalid(
                        format!("cluster_types.{key}.{field}"),
                        format!("{spec:?} is not one of the node specs: {}", keys(&node_specs)),
                    ));
                }
            }
        }

        let pools = pools_from(&raw.network)?;
        let guest_network = GuestNetworkConfig {
            mtu: raw.network.mtu.unwrap_or(1500),
            dns: raw.network.dns.unwrap_or_else(|| vec![Ipv4Addr::new(8, 8, 8, 8)]),
        };
        if !(576..=9000).contains(&guest_network.mtu) {
            return Err(Error::invalid(
                "network.mtu",
                format!("{} is not accepted: use 576-9000 (1500, or 1450 on an overlay)", guest_network.mtu),
            ));
        }

        let q = raw.quotas.default;
        let default_quota = Quota {
            max_vms: q.max_vms.unwrap_or(10),
            max_clusters: q.max_clusters.or(raw.cluster_quotas.default.max_clusters).unwrap_or(3),
            max_nodes_per_cluster: q
                .max_nodes_per_cluster
                .or(raw.cluster_quotas.default.max_nodes_per_cluster)
                .unwrap_or(10),
            max_ips: q.max_ips.unwrap_or(u64::from(pools[0].block_size)),
            max_vcpus: q.max_vcpus.unwrap_or(80),
            max_memory_mb: q.max_memory_mb.unwrap_or(320 * 1024),
            max_disk_gb: q.max_disk_gb.unwrap_or(2000),
        };

        let kubernetes = KubernetesConfig {
            version: raw.kubernetes.version.unwrap_or_else(|| "v1.31.4".into()),
            node_template: raw.templates.kubernetes.unwrap_or_else(|| "ubuntu-2204-kube-v1.31.4".into()),
            delete_timeout: std::time::Duration::from_secs_f64(
                60.0 * positive(
                    "kubernetes.delete_timeout_minutes",
                    raw.kubernetes.delete_timeout_minutes.or(Some(30.0)),
                    0.05..=1440.0,
                )?,
            ),
        };
        if !kubernetes.version.starts_with('v') {
            return Err(Error::invalid(
                "kubernetes.version",
                format!("{:?} is not a version like v1.31.4", kubernetes.version),
            ));
        }

        let recaptcha = recaptcha(raw.recaptcha)?;
        let limits = RegistrationLimits::default();
        let registration = RegistrationLimits {
            per_address_per_hour: positive_u32(
                "registration.per_address_per_hour",
                raw.registration.per_address_per_hour.unwrap_or(limits.per_address_per_hour),
            )?,
            per_email_per_day: positive_u32(
                "registration.per_email_per_day",
                raw.registration.per_email_per_day.unwrap_or(limits.per_email_per_day),
            )?,
            per_day: positive_u32("registration.per_day", raw.registration.per_day.unwrap_or(limits.per_day))?,
            answer_after_ms: match raw.registration.answer_after_ms.unwrap_or(limits.answer_after_ms) {
                ms @ 0..=5000 => ms,
                other => {
                    return Err(Error::invalid(
                        "registration.answer_after_ms",
                        format!("{other} is out of range; 0-5000 milliseconds are accepted"),
                    ))
                }
            },
        };
        let notifications = NotificationsConfig {
            admin_emails: raw
                .notifications
                .admin_emails
                .iter()
                .map(|email| {
                    crate::validate::Email::parse(email)
                        .map_err(|error| Error::invalid("notifications.admin_emails", format!("{email:?}: {error}")))
                })
                .collect::<Result<_>>()?,
            webhook: raw.notifications.webhook,
            email: raw.notifications.email,
        };
        let logins = bastion_logins(&raw.bastion)?;

        let defaults = WorkConfig::default();
        let work = WorkConfig {
            instance: match raw.work.instance {
                Some(name) if name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control) => {
                    return Err(Error::invalid(
                        "work.instance",
                        "use 1-200 printable characters, such as the host name",
                    ))
                }
                other => other,
            },
            lease_seconds: positive(
                "work.lease_seconds",
                Some(raw.work.lease_seconds.unwrap_or(defaults.lease_seconds)),
                1..=3600,
            )?,
            notification_attempts: positive(
                "work.notification_attempts",
                Some(raw.work.notification_attempts.unwrap_or(defaults.notification_attempts)),
                1..=100,
            )?,
            notification_retry_seconds: positive(
                "work.notification_retry_seconds",
                Some(raw.work.notification_retry_seconds.unwrap_or(defaults.notification_retry_seconds)),
                1..=3600,
            )?,
        };
        let web_defaults = WebConfig::default();
        let web = WebConfig {
            session_idle_minutes: positive(
                "web.session_idle_minutes",
                Some(raw.web.session_idle_minutes.unwrap_or(web_defaults.session_idle_minutes)),
                1..=1440,
            )?,
            session_max_hours: positive(
                "web.session_max_hours",
                Some(raw.web.session_max_hours.unwrap_or(web_defaults.session_max_hours)),
                1..=720,
            )?,
        };
        let store = StoreConfig {
            url: match &raw.store.url {
                None => StoreUrl::Sqlite(None),
                Some(url) => StoreUrl::parse(url)?,
            },
            password_file: raw.store.password_file,
            ca_file: raw.store.ca_file,
            pool_size: positive("store.pool_size", Some(raw.store.pool_size.unwrap_or(16)), 1..=200)?,
        };
        if matches!(store.url, StoreUrl::Sqlite(_)) && (store.password_file.is_some() || store.ca_file.is_some()) {
            return Err(Error::invalid(
                "store.password_file",
                "store.password_file and store.ca_file are for PostgreSQL; store.url names a SQLite file",
            ));
        }
        let config = Config {
            server,
            work,
            web,
            store,
            vsphere,
            os_images,
            vm_specs,
            cluster_types,
            node_specs,
            kubernetes,
            pools,
            guest_network,
            default_quota,
            recaptcha,
            registration,
            allowed_email_domains: EmailDomainAllowList::parse(&raw.validation.allowed_email_domains)?,
            bastion: BastionConfig {
                address: raw.bastion.address.unwrap_or_else(|| "bastion-server".into()),
                port: raw.bastion.port.unwrap_or(22),
                logins,
            },
            notifications,
            reconcile_interval_seconds: raw.reconcile.interval_seconds.unwrap_or(60),
            shutdown_grace_seconds: raw.server.shutdown_grace_seconds.unwrap_or(30),
            backend_sections: BackendSections {
                backend: raw.backend,
                vsphere: raw.vsphere,
                terraform: raw.terraform,
                management_cluster: raw.management_cluster,
            },
        };
        Ok(config)
    }

    /// The OS image for a key, or an error listing the valid keys.
    pub fn os_image(&self, key: &str) -> Result<&OsImage> {
        self.os_images.get(key).ok_or_else(|| {
            Error::invalid("os", format!("{key:?} is not available; choose one of: {}", keys(&self.os_images)))
        })
    }

    /// The cluster type for a key, or an error listing the valid keys. The roadmap's names
    /// `development` and `production` stand for `dev` and `standard` unless configured
    /// themselves.
    pub fn cluster_type(&self, key: &str) -> Result<&ClusterType> {
        let alias = match key {
            "development" => "dev",
            "production" => "standard",
            other => other,
        };
        self.cluster_types.get(key).or_else(|| self.cluster_types.get(alias)).ok_or_else(|| {
            Error::invalid("type", format!("{key:?} is not available; choose one of: {}", keys(&self.cluster_types)))
        })
    }

    /// The cluster node spec for a key, or an error listing the valid keys.
    pub fn node_spec(&self, key: &str) -> Result<&NodeSpec> {
        self.node_specs.get(key).ok_or_else(|| {
            Error::invalid(
                "worker_spec",
                format!("{key:?} is not available; choose one of: {}", keys(&self.node_specs)),
            )
        })
    }

    /// The VM spec for a key, or an error listing the valid keys.
    pub fn vm_spec(&self, key: &str) -> Result<&VmSpec> {
        self.vm_specs.get(key).ok_or_else(|| {
            Error::invalid("spec", format!("{key:?} is not available; choose one of: {}", keys(&self.vm_specs)))
        })
    }
}

/// `server.public_url`: `http(s)://host[:port]`, without a path (a trailing `/` is dropped).
fn public_url(url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let Some(rest) = rest else {
        return Err(Error::invalid(
            "server.public_url",
            format!("{url:?} is not accepted: use http:// or https:// and the host, e.g. https://basphere.example.com"),
        ));
    };
    if rest.is_empty()
        || rest.contains(['/', '?', '#', '@'])
        || rest.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid(
            "server.public_url",
            format!("{url:?} is not accepted: give the scheme, host and port only (no path, query or user)"),
        ));
    }
    Ok(url.to_owned())
}

fn positive_u32(key: &str, value: u32) -> Result<u32> {
    if value == 0 {
        return Err(Error::invalid(key, "must be 1 or more"));
    }
    Ok(value)
}

fn recaptcha(raw: RawRecaptcha) -> Result<RecaptchaConfig> {
    if raw.secret_key.is_some() {
        return Err(Error::invalid(
            "recaptcha.secret_key",
            "the secret does not belong in the configuration: put it in a file readable only by the server and name it in recaptcha.secret_file",
        ));
    }
    match raw.enabled {
        None => Ok(RecaptchaConfig::Undecided),
        Some(false) => Ok(RecaptchaConfig::Off),
        Some(true) => {
            let site_key = raw.site_key.filter(|key| !key.trim().is_empty()).ok_or_else(|| {
                Error::invalid("recaptcha.site_key", "is required when recaptcha.enabled is true (the pages embed it)")
            })?;
            let secret_file = raw.secret_file.ok_or_else(|| {
                Error::invalid(
                    "recaptcha.secret_file",
                    "is required when recaptcha.enabled is true: a file holding the secret key",
                )
            })?;
            let verify_url = raw.verify_url.unwrap_or_else(|| "https://www.google.com/recaptcha/api/siteverify".into());
            if !(verify_url.starts_with("https://") || verify_url.starts_with("http://")) {
                return Err(Error::invalid("recaptcha.verify_url", format!("{verify_url:?} is not an http(s) URL")));
            }
            let timeout_seconds = raw.timeout_seconds.unwrap_or(5);
            if !(1..=60).contains(&timeout_seconds) {
                return Err(Error::invalid("recaptcha.timeout_seconds", "must be 1-60"));
            }
            Ok(RecaptchaConfig::On(RecaptchaSettings {
                site_key,
                secret_file,
                verify_url,
                hostname: raw.hostname.filter(|name| !name.trim().is_empty()),
                timeout_seconds,
            }))
        }
    }
}

fn bastion_logins(raw: &RawBastion) -> Result<BastionLogins> {
    match raw.logins.as_deref().unwrap_or("none") {
        "none" => Ok(BastionLogins::None),
        "unix" => {
            let group = raw.group.clone().unwrap_or_else(|| "basphere-users".into());
            let valid_group = group.len() <= 32
                && group.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && group.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !valid_group {
                return Err(Error::invalid(
                    "bastion.group",
                    format!("{group:?} is not a group name (up to 32 lowercase letters, digits, '_' and '-')"),
                ));
            }
            let absolute = |key: &str, path: PathBuf| {
                if path.is_absolute() {
                    Ok(path)
                } else {
                    Err(Error::invalid(key, format!("{} is not an absolute path", path.display())))
                }
            };
            Ok(BastionLogins::Unix {
                group,
                shell: absolute("bastion.shell", raw.shell.clone().unwrap_or_else(|| "/bin/bash".into()))?,
                home: absolute("bastion.home", raw.home.clone().unwrap_or_else(|| "/home".into()))?,
                root: absolute("bastion.root", raw.root.clone().unwrap_or_else(|| "/".into()))?,
                helper_socket: raw
                    .helper_socket
                    .clone()
                    .map(|path| absolute("bastion.helper_socket", path))
                    .transpose()?,
            })
        }
        other => Err(Error::invalid("bastion.logins", format!("{other:?} is not one of: none, unix"))),
    }
}

/// `vsphere.folder` out of the `vsphere` section, whose other keys are the backend's.
fn base_folder(section: &serde_yaml::Value) -> Result<String> {
    use serde_yaml::Value;
    let folder = match section {
        Value::Null => None,
        Value::Mapping(settings) => match settings.get("folder") {
            None | Some(Value::Null) => None,
            Some(Value::String(folder)) => Some(folder.clone()),
            Some(_) => return Err(Error::invalid("vsphere.folder", "must be a folder name like basphere-vms")),
        },
        _ => return Err(Error::invalid("vsphere", "must be a mapping of settings (server, datacenter, folder, ...)")),
    };
    let folder = folder.unwrap_or_else(|| "basphere-vms".into());
    if folder.trim().is_empty() || folder.chars().any(char::is_control) {
        return Err(Error::invalid("vsphere.folder", "must be a non-empty name without control characters"));
    }
    Ok(folder)
}

fn keys<V>(map: &BTreeMap<String, V>) -> String {
    map.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
}

fn check_catalog_key(at: &str, key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 63
        && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(at, "a catalog key uses lowercase letters, digits, '-', '.' and '_' (at most 63)"))
    }
}

fn positive<T: Copy + PartialOrd + fmt::Display>(
    key: &str,
    value: Option<T>,
    range: std::ops::RangeInclusive<T>,
) -> Result<T> {
    let value = value.ok_or_else(|| Error::invalid(key, format!("is required ({}-{})", range.start(), range.end())))?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(Error::invalid(key, format!("{value} is not accepted: use {}-{}", range.start(), range.end())))
    }
}

// ---- server.connections -----------------------------------------------------------------------

/// How many connections each listener holds and how long an idle one is kept
/// (`server.connections`). Every open connection costs the server a file descriptor, so the TCP
/// listener is held below the process's open-file limit with room left for the Unix socket and
/// the server's own files: a flood of TCP connections never locks the administrator out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// `max_tcp`: connections held at once on the TCP listener. `None` (the default) takes
    /// `DEFAULT_MAX_TCP` or less, whatever the open-file limit leaves (see [`Self::tcp_limit`]).
    pub max_tcp: Option<usize>,
    /// `max_socket` (default 64): connections held at once on the Unix socket.
    pub max_socket: usize,
    /// `header_read_timeout_seconds` (default 10): a request's head must arrive whole within this
    /// time of the server waiting for it, on a new connection or a kept-alive one between
    /// requests; so a connection that sends nothing is closed after it.
    pub header_read_timeout_seconds: u64,
    /// `idle_timeout_seconds` (default 60): a connection with no request in progress on which no
    /// byte moves either way for this long is closed (a client that stopped reading its answer).
    pub idle_timeout_seconds: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConnections {
    max_tcp: Option<usize>,
    max_socket: Option<usize>,
    header_read_timeout_seconds: Option<u64>,
    idle_timeout_seconds: Option<u64>,
}

impl ConnectionConfig {
    /// The TCP listener's cap when `max_tcp` is not set, if the open-file limit allows it.
    pub const DEFAULT_MAX_TCP: usize = 1024;
    /// File descriptors kept for everything but client connections: the listeners, the database
    /// and its write-ahead log, logs, the VM backend's connections and child processes.
    pub const RESERVED_FILES: u64 = 128;

    fn from_raw(raw: RawConnections) -> Result<ConnectionConfig> {
        let max_tcp = match raw.max_tcp {
            None => None,
            Some(value) => Some(positive("server.connections.max_tcp", Some(value), 1..=1_000_000)?),
        };
        Ok(ConnectionConfig {
            max_tcp,
            max_socket: positive("server.connections.max_socket", Some(raw.max_socket.unwrap_or(64)), 1..=10_000)?,
            header_read_timeout_seconds: positive(
                "server.connections.header_read_timeout_seconds",
                Some(raw.header_read_timeout_seconds.unwrap_or(10)),
                1..=300,
            )?,
            idle_timeout_seconds: positive(
                "server.connections.idle_timeout_seconds",
                Some(raw.idle_timeout_seconds.unwrap_or(60)),
                1..=3600,
            )?,
        })
    }

    /// The TCP listener's cap for a process allowed `open_files` descriptors: what is left after
    /// the socket's connections and `RESERVED_FILES`, at most `max_tcp` (or `DEFAULT_MAX_TCP`
    /// when unset). A configured `max_tcp` that does not fit is an error naming the key.
    pub fn tcp_limit(&self, open_files: u64) -> Result<usize> {
        let room = open_files.saturating_sub(self.max_socket as u64 + Self::RESERVED_FILES);
        let room = usize::try_from(room).unwrap_or(usize::MAX);
        let fits = |cap: usize| (cap as u64) <= room as u64;
        match self.max_tcp {
            Some(cap) if fits(cap) => Ok(cap),
            Some(cap) => Err(Error::invalid(
                "server.connections.max_tcp",
                format!(
                    "{cap} connections do not fit in this process's open-file limit of {open_files}: \
                     use at most {room} (the limit minus server.connections.max_socket and {} for the server's own \
                     files), or raise the limit (LimitNOFILE= in the systemd unit, ulimit -n)",
                    Self::RESERVED_FILES
                ),
            )),
            None if room == 0 => Err(Error::invalid(
                "server.connections.max_socket",
                format!(
                    "the open-file limit of {open_files} leaves no room for TCP connections after {} socket \
                     connections and {} descriptors for the server's own files: raise the limit \
                     (LimitNOFILE= in the systemd unit, ulimit -n) or lower server.connections.max_socket",
                    self.max_socket,
                    Self::RESERVED_FILES
                ),
            )),
            None => Ok(Self::DEFAULT_MAX_TCP.min(room)),
        }
    }
}

#[cfg(test)]
mod connection_tests {
    use super::*;

    #[test]
    fn connection_defaults_and_the_tcp_cap_follow_the_open_file_limit() {
        let connections = Config::default().server.connections;
        assert_eq!(
            connections,
            ConnectionConfig {
                max_tcp: None,
                max_socket: 64,
                header_read_timeout_seconds: 10,
                idle_timeout_seconds: 60
            }
        );
        // Plenty of descriptors: the default cap. Few: what is left after the socket and the reserve.
        assert_eq!(connections.tcp_limit(1_048_576).unwrap(), 1024);
        assert_eq!(connections.tcp_limit(1024).unwrap(), 1024 - 64 - 128);
        assert_eq!(connections.tcp_limit(256).unwrap(), 256 - 64 - 128);
        let error = connections.tcp_limit(150).unwrap_err().to_string();
        assert!(error.contains("server.connections.max_socket") && error.contains("150"), "{error}");

        let set = Config::from_yaml("server: {connections: {max_tcp: 500, max_socket: 10}}").unwrap();
        assert_eq!(set.server.connections.tcp_limit(1_000_000).unwrap(), 500, "a configured cap is kept");
        let error = set.server.connections.tcp_limit(600).unwrap_err().to_string();
        assert!(error.contains("server.connections.max_tcp") && error.contains("at most 462"), "{error}");
    }

    #[test]
    fn connection_settings_errors_name_the_key() {
        let cases = [
            ("server: {connections: {max_tcp: 0}}", "server.connections.max_tcp", "1-1000000"),
            ("server: {connections: {max_socket: 0}}", "server.connections.max_socket", "1-10000"),
            (
                "server: {connections: {header_read_timeout_seconds: 0}}",
                "server.connections.header_read_timeout_seconds",
                "1-300",
            ),
            (
                "server: {connections: {idle_timeout_seconds: 7200}}",
                "server.connections.idle_timeout_seconds",
                "1-3600",
            ),
            ("server: {connections: {max_conns: 5}}", "server.connections", "unknown field `max_conns`"),
        ];
        for (yaml, key, accepted) in cases {
            let error = Config::from_yaml(yaml).map(|_| ()).unwrap_err().to_string();
            assert!(error.contains(key) && error.contains(accepted), "{yaml}: {error}");
        }
    }
}

fn pools_from(network: &RawNetwork) -> Result<Vec<PoolConfig>> {
    let cidr_text = network.cidr.clone().unwrap_or_else(|| "10.254.0.0/21".into());
    let cidr: Cidr = cidr_text.parse().map_err(|message| Error::invalid("network.cidr", message))?;
    if cidr.prefix_len() > 29 {
        return Err(Error::invalid("network.cidr", format!("{cidr} is too small: use a prefix length of 29 or less")));
    }
    if let Some(prefix) = network.prefix_length {
        if prefix != cidr.prefix_len() {
            return Err(Error::invalid(
                "network.prefix_length",
                format!("{prefix} disagrees with network.cidr {cidr}; leave it out or use {}", cidr.prefix_len()),
            ));
        }
    }
    if let Some(netmask) = network.netmask {
        if netmask != cidr.netmask() {
            return Err(Error::invalid(
                "network.netmask",
                format!("{netmask} disagrees with network.cidr {cidr}; leave it out or use {}", cidr.netmask()),
            ));
        }
    }
    let default_pool = PoolConfig {
        name: "default".into(),
        cidr,
        gateway: network.gateway.unwrap_or_else(|| Ipv4Addr::from(cidr.first() + 1)),
        reserved: network.reserved.iter().flatten().copied().collect(),
        block_size: network.block_size.unwrap_or(32),
    };
    default_pool.validate("network")?;
    let mut pools = vec![default_pool];
    for (index, raw) in network.pools.iter().enumerate() {
        let at = format!("network.pools[{index}]");
        let name = raw.name.clone().ok_or_else(|| Error::invalid(format!("{at}.name"), "is required"))?;
        check_catalog_key(&format!("{at}.name"), &name)?;
        if pools.iter().any(|pool| pool.name == name) {
            return Err(Error::invalid(format!("{at}.name"), format!("{name:?} is used by another pool")));
        }
        let cidr: Cidr = raw
            .cidr
            .as_deref()
            .ok_or_else(|| Error::invalid(format!("{at}.cidr"), "is required"))?
            .parse()
            .map_err(|message| Error::invalid(format!("{at}.cidr"), message))?;
        let pool = PoolConfig {
            name,
            cidr,
            gateway: raw.gateway.unwrap_or_else(|| Ipv4Addr::from(cidr.first() + 1)),
            reserved: raw.reserved.iter().copied().collect(),
            block_size: raw.block_size.unwrap_or(pools[0].block_size),
        };
        pool.validate(&at)?;
        if let Some(other) = pools.iter().find(|other| other.cidr.overlaps(&pool.cidr)) {
            return Err(Error::invalid(
                format!("{at}.cidr"),
                format!("{} overlaps pool {:?} ({})", pool.cidr, other.name, other.cidr),
            ));
        }
        pools.push(pool);
    }
    Ok(pools)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_configuration_gives_the_product_defaults() {
        let config = Config::from_yaml("").unwrap();
        // A file must decide on the bot check; the embedded defaults (a local trial) decide off.
        assert_eq!(config.recaptcha, RecaptchaConfig::Undecided);
        assert_eq!(Config::default().recaptcha, RecaptchaConfig::Off);
        assert_eq!(Config { recaptcha: RecaptchaConfig::Off, ..config.clone() }, Config::default());
        assert_eq!(
            config.registration,
            RegistrationLimits { per_address_per_hour: 10, per_email_per_day: 3, per_day: 500, answer_after_ms: 50 }
        );
        assert_eq!(config.bastion.logins, BastionLogins::None);
        assert_eq!(config.server.host, "127.0.0.1", "loopback only by default");
        assert_eq!(config.vsphere.folder, "basphere-vms");
        assert_eq!(config.backend_sections, BackendSections::default(), "no backend section: the backend's defaults");
        assert_eq!(config.os_images["ubuntu-24.04"].template, "ubuntu-noble-24.04-cloudimg");
        assert_eq!(config.os_images["ubuntu-24.04"].interface, "ens192");
        assert_eq!(config.os_images["rocky-10.1"].template, "rocky-10-template");
        assert_eq!(config.os_images["rocky-10.1"].interface, "ens33");
        let specs: Vec<(&str, u32, u64, u64)> =
            config.vm_specs.values().map(|s| (s.key.as_str(), s.cpu, s.memory_mb / 1024, s.disk_gb)).collect();
        assert_eq!(
            specs,
            [
                ("huge", 16, 64, 200),
                ("large", 8, 32, 200),
                ("medium", 4, 16, 100),
                ("small", 2, 8, 50),
                ("tiny", 2, 4, 50)
            ]
        );
        assert_eq!(config.cluster_types["dev"].control_plane_count, 1);
        assert_eq!(config.cluster_types["dev"].worker_count, 2);
        assert_eq!(config.cluster_types["standard"].control_plane_count, 3);
        assert_eq!(config.node_specs["small"].memory_mb, 4096);
        assert_eq!(config.pools[0].cidr.to_string(), "10.254.0.0/21");
        assert_eq!(config.pools[0].gateway, Ipv4Addr::new(10, 254, 0, 1));
        assert_eq!(config.pools[0].block_size, 32);
        assert_eq!(config.default_quota.max_vms, 10);
        assert_eq!(config.default_quota.max_clusters, 3);
        assert_eq!(config.default_quota.max_ips, 32);
        assert_eq!(config.guest_network.mtu, 1500);
    }

    #[test]
    fn original_style_configuration_is_read() {
        let yaml = r#"
vsphere:
  server: vcenter.corp.local
  datacenter: DC1
  cluster: Cluster1
  datastore: datastore1
  network: VM Network
  folder: basphere-vms
templates:
  os:
    ubuntu-24.04:
      template: ubuntu-noble-24.04-cloudimg
      default_user: ubuntu
      description: Ubuntu 24.04 LTS (Noble)
      interface: ens192
network:
  cidr: 10.254.0.0/21
  gateway: 10.254.0.1
  netmask: 255.255.248.0
  prefix_length: 21
  mtu: 1450
  dns: [8.8.8.8, 1.1.1.1]
  block_size: 32
  reserved: [10.254.0.2, 10.254.0.3]
quotas:
  default:
    max_vms: 5
vm_specs:
  small: {description: Small, cpu: 2, memory_mb: 8192, disk_gb: 50}
cluster_quotas:
  default: {max_clusters: 2, max_nodes_per_cluster: 6}
validation:
  allowed_email_domains: [corp.com, "*.corp.com"]
bastion: {address: bastion.corp.com, port: 50022}
"#;
        let config = Config::from_yaml(yaml).unwrap();
        assert_eq!(config.vsphere.folder, "basphere-vms");
        let vsphere = &config.backend_sections.vsphere;
        assert_eq!(vsphere["server"], "vcenter.corp.local", "the rest of the section is the backend's, kept whole");
        assert_eq!(vsphere["network"], "VM Network");
        assert_eq!(config.os_images.len(), 1);
        assert_eq!(config.vm_specs.len(), 1);
        assert_eq!(config.guest_network.mtu, 1450);
        assert_eq!(config.guest_network.dns.len(), 2);
        assert_eq!(config.pools[0].reserved.len(), 2);
        assert_eq!(config.default_quota.max_vms, 5);
        assert_eq!(config.default_quota.max_clusters, 2);
        assert_eq!(config.default_quota.max_nodes_per_cluster, 6);
        assert!(config.allowed_email_domains.allows("team.corp.com"));
        assert_eq!(config.bastion.port, 50022);
    }

    fn error_of(yaml: &str) -> String {
        match Config::from_yaml(yaml) {
            Ok(_) => panic!("{yaml} should be refused"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn errors_name_the_key_and_what_is_accepted() {
        let cases = [
            ("network: {cidr: 10.254.0.5/21}", "network.cidr", "must be 10.254.0.0"),
            ("network: {block_size: 48}", "network.block_size", "power of two"),
            ("network: {cidr: 10.0.0.0/24, block_size: 256}", "network.block_size", "half the pool"),
            ("network: {gateway: 192.168.1.1}", "network.gateway", "outside"),
            ("network: {prefix_length: 24}", "network.prefix_length", "disagrees"),
            ("network: {mtu: 20}", "network.mtu", "576-9000"),
            ("network: {pools: [{name: b, cidr: 10.254.4.0/22}]}", "network.pools[0].cidr", "overlaps"),
            ("vm_specs: {small: {cpu: 0, memory_mb: 1024, disk_gb: 10}}", "vm_specs.small.cpu", "1-768"),
            ("vm_specs: {small: {memory_mb: 1024, disk_gb: 10}}", "vm_specs.small.cpu", "required"),
            ("templates: {os: {ubuntu: {interface: ens192}}}", "templates.os.ubuntu.template", "required"),
            ("cluster_types: {dev: {control_plane_count: 2}}", "cluster_types.dev.control_plane_count", "odd"),
            (
                "cluster_types: {dev: {worker_spec_default: giant}}",
                "cluster_types.dev.worker_spec_default",
                "node specs",
            ),
            ("server: {prot: 80}", "server", "unknown field `prot`"),
            ("work: {lease_seconds: 0}", "work.lease_seconds", "1-3600"),
            ("work: {notification_attempts: 0}", "work.notification_attempts", "1-100"),
            ("work: {instance: \"\"}", "work.instance", "printable"),
            ("vsphere_server: vc.corp.local", "vsphere_server", "unknown field `vsphere_server`, expected one of"),
            ("vsphere: {folder: ''}", "vsphere.folder", "non-empty"),
            ("vsphere: {folder: [a, b]}", "vsphere.folder", "folder name"),
            ("vsphere: [server, folder]", "vsphere", "mapping"),
            ("recaptcha: {enabled: true}", "recaptcha.site_key", "required"),
            ("recaptcha: {enabled: true, site_key: k}", "recaptcha.secret_file", "file holding the secret"),
            ("recaptcha: {enabled: false, secret_key: s}", "recaptcha.secret_key", "recaptcha.secret_file"),
            (
                "recaptcha: {enabled: true, site_key: k, secret_file: /s, verify_url: ftp://x}",
                "recaptcha.verify_url",
                "http",
            ),
            (
                "recaptcha: {enabled: true, site_key: k, secret_file: /s, timeout_seconds: 0}",
                "recaptcha.timeout_seconds",
                "1-60",
            ),
            ("registration: {per_day: 0}", "registration.per_day", "1 or more"),
            ("server: {trusted_proxies: [nginx]}", "server.trusted_proxies", "IP address"),
            ("server: {public_url: basphere.example.com}", "server.public_url", "https://"),
            ("server: {public_url: 'https://b.example.com/x?y'}", "server.public_url", "no path"),
            ("web: {session_idle_minutes: 0}", "web.session_idle_minutes", "1-1440"),
            ("web: {session_max_hours: 1000}", "web.session_max_hours", "1-720"),
            ("notifications: {admin_emails: [nope]}", "notifications.admin_emails", "nope"),
            ("bastion: {logins: ldap}", "bastion.logins", "none, unix"),
            ("bastion: {logins: unix, group: 'Bad Group'}", "bastion.group", "group name"),
            ("bastion: {logins: unix, root: relative/dir}", "bastion.root", "absolute"),
            ("validation: {allowed_email_domains: ['bad domain']}", "validation.allowed_email_domains", "not a domain"),
            ("quotas: {default: {max_vms: -1}}", "quotas.default.max_vms", "invalid"),
        ];
        for (yaml, key, accepted) in cases {
            let error = error_of(yaml);
            assert!(error.contains(key) && error.contains(accepted), "{yaml}: {error}");
        }
    }

    #[test]
    fn registration_bastion_and_notification_settings_are_read() {
        let yaml = "recaptcha: {enabled: true, site_key: site, secret_file: /etc/basphere/recaptcha.secret, hostname: basphere.corp.com}\n\
                    registration: {per_address_per_hour: 2, per_email_per_day: 1, per_day: 50}\n\
                    bastion: {address: bastion.corp.com, logins: unix, group: devs, root: /srv/sandbox}\n\
                    notifications: {admin_emails: [ops@corp.com], webhook: {url: 'http://127.0.0.1:9/hook'}}\n";
        let config = Config::from_yaml(yaml).unwrap();
        assert_eq!(
            config.recaptcha,
            RecaptchaConfig::On(RecaptchaSettings {
                site_key: "site".into(),
                secret_file: "/etc/basphere/recaptcha.secret".into(),
                verify_url: "https://www.google.com/recaptcha/api/siteverify".into(),
                hostname: Some("basphere.corp.com".into()),
                timeout_seconds: 5,
            })
        );
        assert_eq!(
            config.registration,
            RegistrationLimits { per_address_per_hour: 2, per_email_per_day: 1, per_day: 50, answer_after_ms: 50 }
        );
        let answered = |ms: &str| Config::from_yaml(&format!("registration: {{answer_after_ms: {ms}}}\n"));
        assert_eq!(answered("0").unwrap().registration.answer_after_ms, 0, "0: answered when done");
        let error = answered("5001").unwrap_err().to_string();
        assert!(error.contains("registration.answer_after_ms") && error.contains("0-5000"), "{error}");
        assert_eq!(
            config.bastion.logins,
            BastionLogins::Unix {
                group: "devs".into(),
                shell: "/bin/bash".into(),
                home: "/home".into(),
                root: "/srv/sandbox".into(),
                helper_socket: None,
            }
        );
        assert_eq!(config.notifications.admin_emails[0].as_str(), "ops@corp.com");
        assert_eq!(config.notifications.webhook["url"].as_str(), Some("http://127.0.0.1:9/hook"));
        assert_eq!(Config::from_yaml("recaptcha: {enabled: false}").unwrap().recaptcha, RecaptchaConfig::Off);
    }

    #[test]
    fn backend_sections_are_handed_over_unparsed() {
        let yaml = "backend: {vm: terraform, simulated_delays: none}\nterraform: {parallelism: 2, anything: 1}\n\
                    vsphere: {server: vc, folder: vms, typo: x}\n";
        let config = Config::from_yaml(yaml).unwrap();
        let sections = &config.backend_sections;
        assert_eq!(
            (sections.backend["vm"].as_str(), sections.backend["simulated_delays"].as_str()),
            (Some("terraform"), Some("none"))
        );
        assert_eq!(sections.terraform["parallelism"].as_u64(), Some(2));
        assert_eq!(
            sections.terraform["anything"].as_u64(),
            Some(1),
            "the backend crate refuses unknown keys, not core"
        );
        assert_eq!((config.vsphere.folder.as_str(), sections.vsphere["typo"].as_str()), ("vms", Some("x")));
    }

    #[test]
    fn catalog_lookups_list_the_valid_values() {
        let config = Config::default();
        let error = config.os_image("windows").unwrap_err().to_string();
        assert!(error.contains("rocky-10.1, ubuntu-24.04"), "{error}");
        let error = config.vm_spec("gigantic").unwrap_err().to_string();
        assert!(error.contains("huge, large, medium, small, tiny"), "{error}");
    }

    #[test]
    fn pool_rules() {
        let pool = &Config::default().pools[0];
        assert!(pool.is_unleasable(Ipv4Addr::new(10, 254, 0, 0)), "network");
        assert!(pool.is_unleasable(Ipv4Addr::new(10, 254, 7, 255)), "broadcast (original.md §13.2 item 15)");
        assert!(pool.is_unleasable(Ipv4Addr::new(10, 254, 0, 1)), "gateway");
        assert!(!pool.is_unleasable(Ipv4Addr::new(10, 254, 0, 33)));
    }

    #[test]
    fn store_url_names_sqlite_or_postgres_and_never_holds_a_password() {
        let config = Config::from_yaml("").unwrap();
        assert_eq!(config.store, StoreConfig::default());
        assert_eq!(config.store.url, StoreUrl::Sqlite(None), "SQLite in the data directory by default");
        let config = Config::from_yaml("store:\n  url: sqlite:/var/lib/basphere/state.db\n").unwrap();
        assert_eq!(config.store.url, StoreUrl::Sqlite(Some(PathBuf::from("/var/lib/basphere/state.db"))));
        let config = Config::from_yaml(
            "store:\n  url: postgres://basphere@db.corp:5432/basphere?sslmode=require\n  password_file: /etc/basphere/db-password\n  pool_size: 32\n",
        )
        .unwrap();
        assert_eq!(
            config.store.url,
            StoreUrl::Postgres("postgres://basphere@db.corp:5432/basphere?sslmode=require".into())
        );
        assert_eq!(config.store.url.backend(), "postgres");
        assert_eq!(config.store.pool_size, 32);
        for (yaml, key, says) in [
            ("store:\n  url: postgres://basphere:secret@db/basphere\n", "store.url", "password_file"),
            ("store:\n  url: postgresql://db/basphere?password=secret\n", "store.url", "password_file"),
            ("store:\n  url: mysql://db/basphere\n", "store.url", "sqlite:PATH or postgres://"),
            ("store:\n  url: 'sqlite:'\n", "store.url", "needs a file"),
            ("store:\n  pool_size: 0\n", "store.pool_size", ""),
            ("store:\n  password_file: /x\n", "store.password_file", "PostgreSQL"),
            ("store:\n  host: db\n", "store", "unknown field"),
        ] {
            let error = Config::from_yaml(yaml).unwrap_err();
            let text = error.to_string();
            assert!(text.contains(key) && text.contains(says), "{yaml}: {text}");
        }
    }
}
