//! The cloud-init documents of a VM (`metadata.yaml` and `userdata.yaml`), shared by both vSphere
//! backends: Terraform writes them into `extra_config`, the vSphere API backend into the clone
//! spec's `extraConfig`, base64-encoded either way.
//!
//! Every value reaches a document through one formatter, as a YAML double-quoted scalar (or a
//! flow sequence of them): JSON's quoting, which YAML reads, plus `\u` escapes for the characters
//! JSON leaves raw but YAML refuses in a document (DEL, the C1 controls, U+FFFE, U+FFFF) or
//! reads as something else (NEL, U+2028 and U+2029 as line breaks, a byte-order mark). So no
//! value, a key comment included, can change a document's structure or make it unparsable, and
//! a template cannot forget to quote.

use basphere_core::provisioner::VmRequest;
use basphere_core::{Error, Result};
use serde::Serialize;

const METADATA: &str = include_str!("../templates/metadata.yaml");
const USERDATA: &str = include_str!("../templates/userdata.yaml");

/// What the documents say, as plain values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Values {
    pub instance_id: String,
    pub hostname: String,
    pub interface: String,
    pub mtu: u32,
    /// `address/prefix length`.
    pub address: String,
    pub gateway: String,
    pub dns: Vec<String>,
    /// The login user: the VM's owner.
    pub login: String,
    pub ssh_key: String,
    /// The text of `/etc/basphere-vm`.
    pub marker: String,
}

impl Values {
    pub fn of(request: &VmRequest) -> Values {
        let network = &request.network;
        Values {
            instance_id: request.vsphere_name(),
            hostname: request.name.as_str().to_owned(),
            interface: network.interface.clone(),
            mtu: network.mtu,
            address: format!("{}/{}", network.address, network.prefix_len),
            gateway: network.gateway.to_string(),
            dns: network.dns.iter().map(ToString::to_string).collect(),
            login: request.owner.as_str().to_owned(),
            ssh_key: request.ssh_key.as_str().to_owned(),
            marker: format!(
                "Basphere VM {} ({}) initialized\nOwner: {}\nIP: {}\nBasphere id: {}\n",
                request.vsphere_name(),
                request.name,
                request.owner,
                network.address,
                request.id
            ),
        }
    }
}

/// A VM's two documents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Documents {
    pub metadata: String,
    pub userdata: String,
}

/// The documents of a VM.
pub fn documents(request: &VmRequest) -> Result<Documents> {
    render(&Values::of(request))
}

/// The documents saying `values`.
pub fn render(values: &Values) -> Result<Documents> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_formatter(|out, _state, value| {
        let json = serde_json::to_string(value).map_err(|error| {
            minijinja::Error::new(minijinja::ErrorKind::BadSerialization, "a value is not plain data")
                .with_source(error)
        })?;
        out.write_str(&yaml_safe(&json)).map_err(minijinja::Error::from)
    });
    let render = |name: &str, source: &str| {
        env.render_str(source, values).map_err(|error| {
            Error::backend("cloud-init", basphere_core::error::Message(format!("rendering {name}: {error}")))
        })
    };
    Ok(Documents { metadata: render("metadata.yaml", METADATA)?, userdata: render("userdata.yaml", USERDATA)? })
}

/// Whether YAML needs `c` escaped: it is outside YAML's printable set (tab, LF, CR, U+0020-U+007E,
/// U+00A0-U+D7FF, U+E000-U+FFFD, U+10000 and up; NEL is left out, as YAML 1.1 reads it as a
/// line break), or it is a line or paragraph separator, or a byte-order mark.
fn needs_escape(c: char) -> bool {
    let printable = matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
        || c >= '\u{10000}';
    !printable || matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}')
}

/// JSON text with every character [`needs_escape`] written as `\uXXXX`. Such characters can only
/// be inside JSON strings (JSON's own syntax is ASCII), where `\u` is an escape YAML reads the
/// same way; all of them are in the Basic Multilingual Plane.
fn yaml_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if needs_escape(c) {
            out.push_str(&format!("\\u{:04X}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_yaml_refuses_or_misreads_is_escaped_and_nothing_else() {
        for c in ['\u{7F}', '\u{80}', '\u{85}', '\u{9F}', '\u{2028}', '\u{2029}', '\u{FEFF}', '\u{FFFE}', '\u{FFFF}'] {
            assert!(needs_escape(c), "{:04X}", u32::from(c));
        }
        for c in ['\t', '\n', 'a', '~', '\u{A0}', 'é', '\u{D7FF}', '\u{E000}', '\u{FFFD}', '😀'] {
            assert!(!needs_escape(c), "{:04X}", u32::from(c));
        }
        assert_eq!(yaml_safe("\"a\u{FFFE}b\u{85}\""), "\"a\\uFFFEb\\u0085\"");
    }
}
