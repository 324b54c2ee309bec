//! Shared helpers: configurations, secret files, events.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use basphere_core::config::Config;
use basphere_core::model::NotificationEvent;
use basphere_core::notifier::Recipient;
use basphere_core::validate::{Email, ResourceName, Username};

/// A configuration from YAML, which must be valid for core.
pub fn config(yaml: &str) -> Config {
    Config::from_yaml(yaml).unwrap_or_else(|error| panic!("{yaml}: {error}"))
}

/// Writes `content` to `dir/name` with `mode`.
pub fn secret_file(dir: &Path, name: &str, content: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

pub fn alice() -> Recipient {
    Recipient::Person { username: username("alice"), email: email("alice@example.com") }
}

pub fn username(name: &str) -> Username {
    Username::parse(name).unwrap()
}

pub fn email(address: &str) -> Email {
    Email::parse(address).unwrap()
}

pub fn vm_failed(reason: &str) -> NotificationEvent {
    NotificationEvent::VmFailed {
        owner: username("alice"),
        name: ResourceName::parse("web").unwrap(),
        reason: reason.into(),
    }
}

/// The error of a result that must have failed, as text.
pub fn error_text<T>(result: basphere_core::error::Result<T>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(error) => error.to_string(),
    }
}
