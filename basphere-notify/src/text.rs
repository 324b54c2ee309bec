//! What people read: a plain-text message (subject and body) for every notification event,
//! written for the person it goes to, saying what happened and what to do next.
//!
//! Names in events are validated, but reasons are free text written by administrators or taken
//! from backend errors, so every field is treated as untrusted: anything that lands in a subject
//! is flattened to one line of printable characters ([`one_line`]), and a reason is kept on lines
//! of its own, indented under a `Reason:` label, so it can never pass for instructions or headers.

use std::fmt::Write as _;

use basphere_core::config::{Cidr, Config};
use basphere_core::model::NotificationEvent;
use basphere_core::notifier::Recipient;

/// Every subject starts with this, so mail filters can sort Basphere's messages.
pub const SUBJECT_PREFIX: &str = "[Basphere]";

/// A subject longer than this (in characters) is cut: headers stay short whatever a field holds.
const MAX_SUBJECT_CHARS: usize = 200;

/// A notification as people read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// One line, no control characters.
    pub subject: String,
    /// Plain text, lines separated by `\n`.
    pub body: String,
}

/// What the texts need to know of the deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextSettings {
    /// The bastion's host name or address (`bastion.address`).
    pub bastion_address: String,
    /// The bastion's SSH port (`bastion.port`).
    pub bastion_port: u16,
    /// The networks VMs get their addresses from (`network.cidr` and `network.pools`).
    pub vm_networks: Vec<Cidr>,
    /// The OS image the first-steps example creates.
    pub example_os: String,
    /// The VM size the first-steps example creates.
    pub example_spec: String,
}

impl TextSettings {
    /// The settings of a configuration: its bastion, its pools, and an OS image and VM size
    /// from its catalog for the first-steps example (`ubuntu-24.04` and `small` when offered).
    pub fn from_config(config: &Config) -> Self {
        let pick = |keys: Vec<&String>, preferred: &str| {
            if keys.is_empty() || keys.iter().any(|key| *key == preferred) {
                preferred.to_owned()
            } else {
                keys[0].clone()
            }
        };
        TextSettings {
            bastion_address: config.bastion.address.clone(),
            bastion_port: config.bastion.port,
            vm_networks: config.pools.iter().map(|pool| pool.cidr).collect(),
            example_os: pick(config.os_images.keys().collect(), "ubuntu-24.04"),
            example_spec: pick(config.vm_specs.keys().collect(), "small"),
        }
    }

    /// The command that logs `user` in to the bastion: `ssh [-p PORT] USER@BASTION`.
    pub fn ssh_command(&self, user: &str) -> String {
        if self.bastion_port == 22 {
            format!("ssh {user}@{}", self.bastion_address)
        } else {
            format!("ssh -p {} {user}@{}", self.bastion_port, self.bastion_address)
        }
    }

    /// The `Host` patterns of `~/.ssh/config` that match exactly the VM networks' addresses.
    pub fn vm_host_patterns(&self) -> Vec<String> {
        let mut patterns = Vec::new();
        for cidr in &self.vm_networks {
            for pattern in host_patterns(cidr) {
                if !patterns.contains(&pattern) {
                    patterns.push(pattern);
                }
            }
        }
        patterns
    }

    /// The `~/.ssh/config` lines for `user`: the bastion, and the VM networks through it.
    pub fn ssh_config(&self, user: &str) -> String {
        let mut config = format!(
            "Host bastion\n    HostName {}\n    User {user}\n    Port {}\n    ServerAliveInterval 30\n    ServerAliveCountMax 3\n",
            self.bastion_address, self.bastion_port
        );
        let patterns = self.vm_host_patterns();
        if !patterns.is_empty() {
            let _ = write!(config, "\nHost {}\n    User {user}\n    ProxyJump bastion\n", patterns.join(" "));
        }
        config
    }
}

/// SSH `Host` patterns (`*` any run of characters, `?` one character) matching exactly the
/// addresses of `cidr`, written as dotted decimals.
///
/// Whole octets become `*`; a partly fixed octet becomes a few patterns for its range of values
/// (`10.254.0.0/21` is `10.254.0.*` to `10.254.7.*`; `10.128.0.0/9` is `10.1??.*` and `10.2??.*`
/// with `10.128.*` and `10.129.*`, and so on), so no address outside the network matches.
pub fn host_patterns(cidr: &Cidr) -> Vec<String> {
    let octets = cidr.base().octets();
    let prefix = usize::from(cidr.prefix_len().min(32));
    let fixed = prefix / 8;
    let head: Vec<String> = octets[..fixed].iter().map(u8::to_string).collect();
    if prefix % 8 == 0 {
        return match fixed {
            0 => vec!["*".to_owned()],
            4 => vec![head.join(".")],
            _ => vec![format!("{}.*", head.join("."))],
        };
    }
    let low = octets[fixed];
    let high = low | (0xffu8 >> (prefix % 8));
    let tail = if fixed < 3 { ".*" } else { "" };
    octet_globs(low, high)
        .into_iter()
        .map(|glob| {
            let mut parts = head.clone();
            parts.push(glob);
            format!("{}{tail}", parts.join("."))
        })
        .collect()
}

/// The fewest globs matching the decimal numbers `low..=high` of an octet and no other octet:
/// `?` (0-9), `??` (10-99), `1??` (100-199), `2??` (200-255), `N?` (N0-N9) or the number itself.
fn octet_globs(low: u8, high: u8) -> Vec<String> {
    let (high, mut value) = (u16::from(high), u16::from(low));
    let mut globs = Vec::new();
    while value <= high {
        let (glob, width) = match value {
            0 if high >= 9 => ("?".to_owned(), 10),
            10 if high >= 99 => ("??".to_owned(), 90),
            100 if high >= 199 => ("1??".to_owned(), 100),
            200 if high == 255 => ("2??".to_owned(), 56),
            250 if high == 255 => ("25?".to_owned(), 6),
            v if v >= 10 && v % 10 == 0 && v + 9 <= high => (format!("{}?", v / 10), 10),
            v => (v.to_string(), 1),
        };
        globs.push(glob);
        value += width;
    }
    globs
}

/// `text` as one line of printable characters: line breaks and other control characters become
/// spaces, runs of spaces one space, and it is cut to `max` characters. For subjects and
/// anything else that goes into a header.
pub fn one_line(text: &str, max: usize) -> String {
    let mut line = String::with_capacity(text.len().min(max));
    let mut count = 0;
    for c in text.chars().map(|c| if c.is_control() { ' ' } else { c }) {
        if c == ' ' && (line.is_empty() || line.ends_with(' ')) {
            continue;
        }
        if count == max {
            line.pop();
            line.push('…');
            break;
        }
        line.push(c);
        count += 1;
    }
    line.trim_end().to_owned()
}

/// A free-text field as an indented block of its own lines: `\r\n` and `\r` end lines too,
/// other control characters are dropped, and an empty text says so.
fn indented(text: &str) -> String {
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<String> = normalized
        .lines()
        .map(|line| line.chars().filter(|c| !c.is_control() || *c == '\t').collect::<String>())
        .map(|line| line.trim_end().to_owned())
        .collect();
    let first = lines.iter().position(|line| !line.is_empty());
    let last = lines.iter().rposition(|line| !line.is_empty());
    match (first, last) {
        (Some(first), Some(last)) => block(&lines[first..=last].join("\n")),
        _ => "    (no reason was given)\n".to_owned(),
    }
}

/// `text` indented as a block (commands and configuration to copy).
fn block(text: &str) -> String {
    text.lines().map(|line| if line.is_empty() { "\n".to_owned() } else { format!("    {line}\n") }).collect()
}

fn quota_resource(resource: &str) -> String {
    match resource {
        "vms" => "VMs".to_owned(),
        "ips" => "IP addresses".to_owned(),
        "vcpus" => "vCPUs".to_owned(),
        other => one_line(other, 40),
    }
}

fn greeting(recipient: &Recipient) -> String {
    match recipient {
        Recipient::Person { username, .. } | Recipient::Gone { username } => format!("Hello {username},\n\n"),
        Recipient::Administrators { .. } => "Hello,\n\n".to_owned(),
    }
}

const SIGNATURE: &str = "\n-- \nBasphere (this message was sent automatically)\n";

/// The message for `event`, written for `recipient`.
pub fn render(event: &NotificationEvent, recipient: &Recipient, settings: &TextSettings) -> Message {
    use NotificationEvent as E;
    let (subject, text) = match event {
        E::RegistrationSubmitted { username, email } => (
            format!("Registration waiting for approval: {username}"),
            format!(
                "{username} <{email}> asked for a Basphere account.\n\n\
                 To look at the request:\n\n{}\n\
                 To approve it (the account gets its IP block, vSphere folder and bastion login):\n\n{}\n\
                 To reject it (the applicant is told the reason):\n\n{}",
                block(&format!("basphere admin user pending {username}")),
                block(&format!("basphere admin user approve {username} --wait")),
                block(&format!("basphere admin user reject {username} --reason \"...\"")),
            ),
        ),
        E::RegistrationApproved { username, .. } => (
            format!("Your account {username} is ready"),
            format!(
                "your Basphere account {username} was approved. Log in to the bastion with the SSH key \
                 you registered:\n\n{}\n\
                 To reach the bastion and your VMs by name from your own machine, add this to \
                 ~/.ssh/config:\n\n{}\n\
                 Then `ssh bastion` logs you in, and `ssh ADDRESS` reaches one of your VMs through the \
                 bastion.\n\n\
                 On the bastion, create your first VM and look at your quota:\n\n{}\n\
                 `basphere catalog` lists the OS images and sizes, `basphere --help` everything else. \
                 To use Basphere from your own machine too, create an API token on the bastion \
                 (`basphere token create laptop`; its secret is shown once) and use it there with \
                 BASPHERE_SERVER and BASPHERE_TOKEN.\n",
                block(&settings.ssh_command(username.as_str())),
                block(&settings.ssh_config(username.as_str())),
                block(&format!(
                    "basphere vm create web --os {} --spec {} --wait\nbasphere quota",
                    settings.example_os, settings.example_spec
                )),
            ),
        ),
        E::RegistrationRejected { username, reason, .. } => (
            format!("Your registration as {username} was not approved"),
            format!(
                "your request for the Basphere account {username} was rejected.\n\nReason:\n{}\n\
                 If you can fix what the reason says, you may register again; otherwise, ask your \
                 Basphere administrators.\n",
                indented(reason)
            ),
        ),
        E::KeyChangeRequested { username } => (
            format!("SSH key change waiting for approval: {username}"),
            format!(
                "{username} asked for the account's SSH key to be replaced.\n\n\
                 To look at the request (check that it really comes from {username}):\n\n{}\n\
                 To approve it (the new key replaces the old one, on the bastion too):\n\n{}\n\
                 To reject it (the user is told the reason):\n\n{}",
                block(&format!("basphere admin key pending {username}")),
                block(&format!("basphere admin key approve {username} --wait")),
                block(&format!("basphere admin key reject {username} --reason \"...\"")),
            ),
        ),
        E::KeyChangeRequestReceived { username, .. } => (
            "A new SSH key was asked for on your account".to_owned(),
            format!(
                "someone asked for the SSH key of your Basphere account {username} to be replaced by \
                 another. An administrator reviews the request; you will hear when it is approved or \
                 rejected, and until then your current key keeps working.\n\n\
                 If this was not you, tell your Basphere administrators at once, so that they reject \
                 the request: whoever holds the new key would log in as you.\n"
            ),
        ),
        E::KeyChangeApproved { username, .. } => (
            "Your new SSH key is active".to_owned(),
            format!(
                "your request to replace the SSH key of the Basphere account {username} was approved: \
                 the new key now logs you in to the bastion, and the old one no longer does.\n\n{}\n\
                 If you did not ask for this, tell your Basphere administrators at once.\n",
                block(&settings.ssh_command(username.as_str()))
            ),
        ),
        E::KeyChangeRejected { username, reason, .. } => (
            "Your SSH key change was not approved".to_owned(),
            format!(
                "your request to replace the SSH key of the Basphere account {username} was rejected; \
                 your current key still works.\n\nReason:\n{}\n\
                 If you can fix what the reason says, you may ask again; otherwise, ask your Basphere \
                 administrators. If you did not ask for a new key, tell them too: someone else did.\n",
                indented(reason)
            ),
        ),
        E::VmReady { owner, name, ip } => (
            format!("VM {name} is ready"),
            match ip {
                Some(ip) => format!(
                    "your VM {name} is running at {ip}. Log in to it from the bastion (or from your own \
                     machine with the ~/.ssh/config of your welcome message):\n\n{}\n\
                     `basphere vm show {name}` shows its details.\n",
                    block(&format!("ssh {owner}@{ip}"))
                ),
                None => format!(
                    "your VM {name} is running. It has no address yet: `basphere vm show {name}` shows \
                     it once it has one.\n"
                ),
            },
        ),
        E::VmFailed { name, reason, .. } => (
            format!("VM {name} could not be created"),
            format!(
                "creating your VM {name} failed.\n\nReason:\n{}\n\
                 `basphere vm show {name}` shows what is left of it; `basphere vm delete {name}` removes \
                 the record so you can try again. If it fails again, send this message to your Basphere \
                 administrators.\n",
                indented(reason)
            ),
        ),
        E::ClusterReady { name, .. } => (
            format!("Kubernetes cluster {name} is ready"),
            format!("your Kubernetes cluster {name} is ready to use.\n"),
        ),
        E::ClusterFailed { name, reason, .. } => (
            format!("Kubernetes cluster {name} could not be created"),
            format!(
                "creating your Kubernetes cluster {name} failed.\n\nReason:\n{}\n\
                 Delete it and try again; if it fails again, send this message to your Basphere \
                 administrators.\n",
                indented(reason)
            ),
        ),
        E::QuotaNearlyUsed { resource, used, limit, .. } => {
            let what = quota_resource(resource);
            let percent = if *limit == 0 { 100 } else { used.saturating_mul(100) / limit };
            (
                format!("You have used {used} of {limit} {what}"),
                format!(
                    "you are using {used} of the {limit} {what} your quota allows ({percent}%). Once it is \
                     used up, new requests are refused.\n\n\
                     See where you stand, and delete what you no longer need:\n\n{}\n\
                     If you need more, ask your Basphere administrators to raise your quota.\n",
                    block("basphere quota\nbasphere vm list\nbasphere vm delete NAME")
                ),
            )
        }
        // Events added to core later still reach people, in a generic form.
        other => (format!("Notification: {}", other.name()), format!("Basphere reports: {}.\n", other.name())),
    };
    let subject = one_line(&format!("{SUBJECT_PREFIX} {subject}"), MAX_SUBJECT_CHARS);
    let mut body = greeting(recipient);
    body.push_str(&text);
    body.push_str(SIGNATURE);
    Message { subject, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn host_patterns_follow_octet_boundaries() {
        assert_eq!(host_patterns(&cidr("10.0.0.0/8")), ["10.*"]);
        assert_eq!(host_patterns(&cidr("10.254.0.0/16")), ["10.254.*"]);
        assert_eq!(host_patterns(&cidr("192.168.7.0/24")), ["192.168.7.*"]);
        assert_eq!(host_patterns(&cidr("192.168.7.9/32")), ["192.168.7.9"]);
        assert_eq!(host_patterns(&cidr("0.0.0.0/0")), ["*"]);
        assert_eq!(host_patterns(&cidr("10.254.0.0/22")), ["10.254.0.*", "10.254.1.*", "10.254.2.*", "10.254.3.*"]);
        assert_eq!(
            host_patterns(&cidr("10.254.16.0/20")),
            ["10.254.16.*", "10.254.17.*", "10.254.18.*", "10.254.19.*", "10.254.2?.*", "10.254.30.*", "10.254.31.*"]
        );
        assert_eq!(
            host_patterns(&cidr("10.128.0.0/9")),
            [
                "10.128.*", "10.129.*", "10.13?.*", "10.14?.*", "10.15?.*", "10.16?.*", "10.17?.*", "10.18?.*",
                "10.19?.*", "10.2??.*"
            ]
        );
        assert_eq!(
            host_patterns(&cidr("10.0.0.0/9")),
            [
                "10.?.*", "10.??.*", "10.10?.*", "10.11?.*", "10.120.*", "10.121.*", "10.122.*", "10.123.*",
                "10.124.*", "10.125.*", "10.126.*", "10.127.*"
            ]
        );
        assert_eq!(host_patterns(&cidr("10.1.2.248/29")), ["10.1.2.248", "10.1.2.249", "10.1.2.25?"]);
        assert_eq!(host_patterns(&cidr("10.1.2.8/30")), ["10.1.2.8", "10.1.2.9", "10.1.2.10", "10.1.2.11"]);
        assert_eq!(host_patterns(&cidr("10.1.2.240/28")), ["10.1.2.24?", "10.1.2.25?"]);
    }

    /// Whether an SSH `Host` pattern matches `text` (`*` any run, `?` one character).
    fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
        match (pattern.first(), text.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                glob_matches(&pattern[1..], text) || (!text.is_empty() && glob_matches(pattern, &text[1..]))
            }
            (Some(b'?'), Some(_)) => glob_matches(&pattern[1..], &text[1..]),
            (Some(p), Some(t)) if p == t => glob_matches(&pattern[1..], &text[1..]),
            _ => false,
        }
    }

    #[test]
    fn every_octet_range_is_matched_exactly() {
        for low in 0..=255u8 {
            for high in low..=255u8 {
                let globs = octet_globs(low, high);
                for value in 0..=255u8 {
                    let text = value.to_string();
                    let matched = globs.iter().any(|glob| glob_matches(glob.as_bytes(), text.as_bytes()));
                    assert_eq!(matched, (low..=high).contains(&value), "{low}-{high} {globs:?} on {value}");
                }
            }
        }
        // And whole patterns, on addresses around a network's edges.
        let network = cidr("10.254.8.0/21");
        let patterns = host_patterns(&network);
        for third in 0..=255u8 {
            for last in [0u8, 7, 255] {
                let address = std::net::Ipv4Addr::new(10, 254, third, last);
                let matched = patterns.iter().any(|p| glob_matches(p.as_bytes(), address.to_string().as_bytes()));
                assert_eq!(matched, network.contains(address), "{address} {patterns:?}");
            }
        }
    }

    #[test]
    fn one_line_flattens_and_cuts() {
        assert_eq!(one_line("a\r\nBcc: x@evil\n", 100), "a Bcc: x@evil");
        assert_eq!(one_line("  a \t b\u{7}c ", 100), "a b c");
        assert_eq!(one_line("abcdef", 3), "ab…");
    }

    #[test]
    fn reasons_are_indented_blocks() {
        assert_eq!(indented("first\r\nsecond\rthird\u{0}"), "    first\n    second\n    third\n");
        assert_eq!(indented("\n\n  \n"), "    (no reason was given)\n");
    }
}
