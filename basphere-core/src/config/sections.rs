//! The platform's own sections besides the catalog and the pools: the store, background work,
//! web sessions, the bot check, registration limits, bastion logins, notifications, and what
//! core keeps of the sections other crates own (`vsphere.folder`, `server.workers`).

use std::path::PathBuf;

use super::raw::{RawBastion, RawRecaptcha};
use crate::error::{Error, Result};

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

/// What the platform reads of the `server` section: how many background operations run at once
/// (`server.workers`). The rest of the section (listeners, connections, addresses, the data
/// directory) is the server's own, kept unparsed in [`super::Config::server_section`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Background operations run at once, at most.
    pub workers: usize,
}

pub(super) fn recaptcha(raw: RawRecaptcha) -> Result<RecaptchaConfig> {
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

pub(super) fn bastion_logins(raw: &RawBastion) -> Result<BastionLogins> {
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
pub(super) fn base_folder(section: &serde_yaml::Value) -> Result<String> {
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
