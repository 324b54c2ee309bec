//! `networks.linux`: where the `linux` router makes its namespaces and what it joins them to,
//! every key checked and named in errors.

use std::time::Duration;

use basphere_core::error::{Error, Result};
use serde::Deserialize;

use crate::LinuxRouterSettings;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLinux {
    namespace_prefix: Option<String>,
    host_namespace: Option<String>,
    wan_bridge: Option<String>,
    trunk: Option<String>,
    timeout_seconds: Option<u64>,
}

impl LinuxRouterSettings {
    /// The prefix of every namespace the router makes, unless `networks.linux.namespace_prefix`
    /// says otherwise.
    pub const DEFAULT_PREFIX: &'static str = "bsp-";
    /// The WAN bridge of the router host, unless `networks.linux.wan_bridge` says otherwise.
    pub const DEFAULT_WAN_BRIDGE: &'static str = "br-wan";

    /// The settings from the `networks.linux` section as written (null when absent: every
    /// default). Unknown keys and bad values are errors naming the key.
    pub fn from_section(section: &serde_yaml::Value) -> Result<Self> {
        let raw: RawLinux = if section.is_null() {
            RawLinux::default()
        } else {
            serde_yaml::from_value(section.clone())
                .map_err(|error| Error::invalid("networks.linux", error.to_string()))?
        };
        let timeout = match raw.timeout_seconds {
            None => Duration::from_secs(10),
            Some(seconds @ 1..=300) => Duration::from_secs(seconds),
            Some(other) => {
                return Err(Error::invalid(
                    "networks.linux.timeout_seconds",
                    format!("{other} is not 1 to 300 seconds"),
                ))
            }
        };
        let host_namespace = match raw.host_namespace {
            Some(name) if name.is_empty() || name.contains('/') || name.len() > 64 => {
                return Err(Error::invalid(
                    "networks.linux.host_namespace",
                    format!("{name:?} is not a namespace name (1 to 64 characters, no /)"),
                ))
            }
            other => other,
        };
        Ok(LinuxRouterSettings {
            namespace_prefix: raw.namespace_prefix.unwrap_or_else(|| Self::DEFAULT_PREFIX.into()),
            host_namespace,
            wan_bridge: raw.wan_bridge.unwrap_or_else(|| Self::DEFAULT_WAN_BRIDGE.into()),
            trunk: raw.trunk,
            timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LinuxRouter;

    fn parse(yaml: &str) -> Result<LinuxRouter> {
        LinuxRouter::new(LinuxRouterSettings::from_section(&serde_yaml::from_str(yaml).unwrap())?)
    }

    #[test]
    fn every_key_has_a_default_and_a_bad_value_is_named() {
        let router = parse("null").unwrap();
        assert_eq!(router.namespace(&basphere_core::testing::username("alice")), "bsp-alice");
        let custom =
            parse("{namespace_prefix: t-, wan_bridge: wan0, timeout_seconds: 30, host_namespace: edge, trunk: bond0}");
        assert_eq!(custom.unwrap().namespace(&basphere_core::testing::username("bob")), "t-bob");
        for (yaml, key) in [
            ("{wan_bridge: a-very-long-bridge-name}", "networks.linux.wan_bridge"),
            ("{namespace_prefix: 'a b'}", "networks.linux.namespace_prefix"),
            ("{timeout_seconds: 0}", "networks.linux.timeout_seconds"),
            ("{host_namespace: 'a/b'}", "networks.linux.host_namespace"),
            ("{trunk: 'eth0.2000 and more'}", "networks.linux.trunk"),
            ("{bridge: wan}", "networks.linux"),
        ] {
            let error = parse(yaml).err().unwrap_or_else(|| panic!("{yaml} must be refused"));
            assert!(error.to_string().contains(key), "{yaml}: {error}");
        }
    }
}
