//! The configuration model: one YAML file whose keys follow the original's `config.yaml`,
//! `specs.yaml` and `api.yaml`, every default from the product, validated by the owner of each
//! section.
//!
//! Raw YAML is read into `Raw*` structs (`raw`, all optional, unknown keys refused), then
//! `Config::from_raw` fills the defaults and checks every rule of the platform's sections
//! (`catalog`, `network`, `sections`); each error names the key and what is accepted. The
//! sections other crates own are kept as YAML for them to parse: the backends'
//! ([`BackendSections`]) and the server's (`server`, but `server.workers`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::{ClusterType, NodeSpec, OsImage, Quota, VmSpec};
use crate::validate::EmailDomainAllowList;

mod catalog;
mod network;
mod networks;
mod raw;
mod sections;
#[cfg(test)]
mod tests;

use catalog::{catalog, Catalog};
use network::pools_from;
pub use network::{Cidr, GuestNetworkConfig, PoolConfig};
pub use networks::{LanNetwork, NetworksConfig, RouterKind, TenantNetworks, WanNetwork};
use raw::*;
use sections::{base_folder, bastion_logins, recaptcha};
pub use sections::{
    BackendSections, BastionConfig, BastionLogins, KubernetesConfig, NotificationsConfig, RecaptchaConfig,
    RecaptchaSettings, RegistrationLimits, ServerConfig, StoreConfig, StoreUrl, VsphereLayout, WebConfig, WorkConfig,
};

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
    /// Flat, or a network per tenant (`networks.*`).
    pub networks: NetworksConfig,
    pub default_quota: Quota,
    pub recaptcha: RecaptchaConfig,
    pub registration: RegistrationLimits,
    pub allowed_email_domains: EmailDomainAllowList,
    pub bastion: BastionConfig,
    pub notifications: NotificationsConfig,
    pub reconcile_interval_seconds: u64,
    /// The sections only the VM backends read, unparsed.
    pub backend_sections: BackendSections,
    /// Durable background work: operation claims and notification delivery.
    pub work: WorkConfig,
    /// The web pages' sessions (`web.*`).
    pub web: WebConfig,
    /// Where the platform's state lives (`store.*`).
    pub store: StoreConfig,
    /// The `server` section as written (null when absent): the server's own settings, which it
    /// parses and checks (`basphere_server::config`); core reads only `server.workers`.
    pub server_section: serde_yaml::Value,
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
        let server = ServerConfig { workers: server_workers(&raw.server)? };

        let vsphere = VsphereLayout { folder: base_folder(&raw.vsphere)? };
        let Catalog { os_images, vm_specs, node_specs, cluster_types } =
            catalog(raw.templates.os, raw.vm_specs, raw.cluster_node_specs, raw.cluster_types)?;

        let pools = pools_from(&raw.network)?;
        let networks = networks::networks(raw.networks)?;
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
            networks,
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
            server_section: raw.server,
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

/// `server.workers`, the one key of the `server` section the platform reads; the server parses
/// the section whole, refusing unknown keys.
fn server_workers(section: &serde_yaml::Value) -> Result<usize> {
    #[derive(Default, Deserialize)]
    #[serde(default)]
    struct Workers {
        workers: Option<usize>,
    }
    let raw: Workers = match section {
        serde_yaml::Value::Null => Workers::default(),
        serde_yaml::Value::Mapping(_) => serde_path_to_error::deserialize(section).map_err(|error| {
            let path = error.path().to_string();
            let key = if path == "." { "server".to_owned() } else { format!("server.{path}") };
            Error::invalid(key, error.into_inner().to_string())
        })?,
        _ => return Err(Error::invalid("server", "must be a mapping of settings (host, port, workers, ...)")),
    };
    let workers = raw.workers.unwrap_or(16);
    if workers == 0 || workers > 1024 {
        return Err(Error::invalid("server.workers", format!("{workers} is not accepted: use 1-1024")));
    }
    Ok(workers)
}

fn positive_u32(key: &str, value: u32) -> Result<u32> {
    if value == 0 {
        return Err(Error::invalid(key, "must be 1 or more"));
    }
    Ok(value)
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
    within(key, value, range)
}

/// `value` if `range` holds it, else an error naming `key` and the range accepted: the one check
/// of a number from configuration, for every crate that parses a section of its own.
pub fn within<T: Copy + PartialOrd + fmt::Display>(
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
