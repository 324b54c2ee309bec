//! The validation rules of the product, implemented once and used by every layer.
//!
//! Each rule is a parse-don't-validate newtype: a [`Username`], [`ResourceName`], [`Email`] or
//! [`SshPublicKey`] can only be built through its parser, so holding one proves it is valid.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Names that can never be Basphere accounts: system accounts, service names and names that
/// would be confusing in the bastion's `/etc/passwd` or in the admin tooling.
pub const RESERVED_USERNAMES: &[&str] = &[
    "adm",
    "admin",
    "administrator",
    "api",
    "apt",
    "backup",
    "basphere",
    "basphere-admin",
    "basphere-users",
    "bin",
    "daemon",
    "dnsmasq",
    "docker",
    "ftp",
    "games",
    "gnats",
    "guest",
    "halt",
    "irc",
    "kube",
    "kubernetes",
    "list",
    "lp",
    "lxd",
    "mail",
    "man",
    "messagebus",
    "mysql",
    "news",
    "nginx",
    "nobody",
    "nogroup",
    "ntp",
    "operator",
    "polkitd",
    "postfix",
    "postgres",
    "proxy",
    "redis",
    "rocky",
    "root",
    "shutdown",
    "sshd",
    "staff",
    "sudo",
    "support",
    "sync",
    "sys",
    "syslog",
    "system",
    "tcpdump",
    "tss",
    "ubuntu",
    "uucp",
    "uuidd",
    "vcsa",
    "wheel",
    "www",
    "www-data",
];

/// Prefixes reserved for system accounts (`systemd-network`, ...).
const RESERVED_USERNAME_PREFIXES: &[&str] = &["systemd-", "basphere-"];

/// The rule for usernames, as errors and forms state it.
pub const USERNAME_RULE: &str = "3-32 characters: a lowercase letter first, then lowercase letters, \
     digits and single hyphens, not ending in a hyphen";
/// The rule for VM and cluster names, as errors and forms state it.
pub const RESOURCE_NAME_RULE: &str = "1-63 characters: a lowercase letter first, then lowercase \
     letters, digits and single hyphens, not ending in a hyphen";

/// The longest cluster name. Cluster API names a cluster's objects after it, and Kubernetes
/// takes at most 63 characters in a label value or a DNS label: the MachineDeployment
/// (`<name>-md`) is also a label value (Cluster API's webhook refuses a longer one), and the
/// longest name Basphere derives, the machine templates' `<name>-cp-<8 hex digits>`, adds 12.
/// With this limit every object name Basphere renders for a cluster is a DNS label.
pub const CLUSTER_NAME_MAX_LEN: usize = 51;
/// The rule for cluster names, as errors state it.
pub const CLUSTER_NAME_RULE: &str = "1-51 characters: a lowercase letter first, then lowercase \
     letters, digits and single hyphens, not ending in a hyphen";

/// Checks the shared DNS-label-like shape used by usernames and resource names.
fn check_label(value: &str, min: usize, max: usize) -> bool {
    let bytes = value.as_bytes();
    if bytes.len() < min || bytes.len() > max {
        return false;
    }
    if !bytes[0].is_ascii_lowercase() || bytes[bytes.len() - 1] == b'-' {
        return false;
    }
    let mut previous_hyphen = false;
    for &b in bytes {
        let hyphen = b == b'-';
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || hyphen) || (hyphen && previous_hyphen) {
            return false;
        }
        previous_hyphen = hyphen;
    }
    true
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::parse(s)
            }
        }
        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

/// A Basphere account name, also the bastion login and the owner part of vSphere names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);
string_newtype!(Username);

impl Username {
    /// A name for a new account: its form, and not one of the system's reserved names.
    pub fn parse(value: &str) -> Result<Self> {
        let name = Self::stored(value)?;
        if RESERVED_USERNAMES.contains(&value)
            || RESERVED_USERNAME_PREFIXES.iter().any(|prefix| value.starts_with(prefix))
        {
            return Err(Error::invalid("username", format!("{value:?} is reserved for the system")));
        }
        Ok(name)
    }

    /// A name read back from a store. Its form is checked, so a damaged record shows; the
    /// reserved names are not: they are a rule for new accounts, and an account made before a
    /// name joined the list must still read.
    pub fn stored(value: &str) -> Result<Self> {
        if !check_label(value, 3, 32) {
            return Err(Error::invalid("username", format!("{value:?} is not valid: {USERNAME_RULE}")));
        }
        Ok(Username(value.to_owned()))
    }
}

/// The name of a VM or cluster: a DNS label, unique per owner, also the VM's hostname.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourceName(String);
string_newtype!(ResourceName);

impl ResourceName {
    pub const MAX_LEN: usize = 63;

    pub fn parse(value: &str) -> Result<Self> {
        if !check_label(value, 1, Self::MAX_LEN) {
            return Err(Error::invalid("name", format!("{value:?} is not valid: {RESOURCE_NAME_RULE}")));
        }
        Ok(ResourceName(value.to_owned()))
    }

    /// The name of a new cluster: a resource name of at most [`CLUSTER_NAME_MAX_LEN`]
    /// characters, so that the names Cluster API derives from it fit.
    pub fn cluster(value: &str) -> Result<Self> {
        if value.len() > CLUSTER_NAME_MAX_LEN && check_label(value, 1, Self::MAX_LEN) {
            return Err(Error::invalid(
                "name",
                format!(
                    "{value:?} has {} characters: a cluster name has at most {CLUSTER_NAME_MAX_LEN} \
                     characters, so that the names of its Cluster API objects fit in the 63 Kubernetes takes",
                    value.len()
                ),
            ));
        }
        if !check_label(value, 1, CLUSTER_NAME_MAX_LEN) {
            return Err(Error::invalid(
                "name",
                format!("{:?} is not a valid cluster name: {CLUSTER_NAME_RULE}", truncate(value, 80)),
            ));
        }
        Ok(ResourceName(value.to_owned()))
    }

    /// The names of a batch: the name itself for one, `<name>-1 .. <name>-N` for several.
    pub fn batch(&self, count: u32) -> Result<Vec<ResourceName>> {
        if count <= 1 {
            return Ok(vec![self.clone()]);
        }
        (1..=count).map(|index| ResourceName::parse(&format!("{}-{index}", self.0))).collect()
    }
}

/// An email address: syntactically valid, at most 254 bytes, domain stored in lowercase.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);
string_newtype!(Email);

impl Email {
    pub fn parse(value: &str) -> Result<Self> {
        let invalid = |why: &str| Error::invalid("email", format!("{value:?} is not a valid email address: {why}"));
        let value = value.trim();
        if value.is_empty() {
            return Err(invalid("it is empty"));
        }
        if value.len() > 254 {
            return Err(invalid("it is longer than 254 characters"));
        }
        let (local, domain) = match value.split_once('@') {
            Some((local, domain)) if !domain.contains('@') => (local, domain),
            _ => return Err(invalid("it needs exactly one @")),
        };
        if local.is_empty() || local.len() > 64 {
            return Err(invalid("the part before @ must be 1-64 characters"));
        }
        let local_ok = local.split('.').all(|atom| {
            !atom.is_empty() && atom.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b))
        });
        if !local_ok {
            return Err(invalid("the part before @ has a character that is not allowed"));
        }
        let domain = domain.to_ascii_lowercase();
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
        if !domain_ok {
            return Err(invalid("the domain must look like example.com"));
        }
        Ok(Email(format!("{local}@{domain}")))
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, domain)| domain).unwrap_or("")
    }

    /// Whether two addresses name the same mailbox (case-insensitive, as users expect).
    pub fn matches(&self, other: &Email) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

/// An allow-list of email domains: `example.com` matches exactly, `*.example.com` matches any
/// subdomain (but not `example.com` itself). An empty list allows every domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmailDomainAllowList {
    exact: Vec<String>,
    suffixes: Vec<String>,
}

impl EmailDomainAllowList {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self> {
        let mut list = EmailDomainAllowList::default();
        for entry in entries {
            let entry = entry.as_ref().trim().to_ascii_lowercase();
            let (wildcard, domain) = match entry.strip_prefix("*.") {
                Some(rest) => (true, rest.to_owned()),
                None => (false, entry.clone()),
            };
            // Reuse the email rule for the domain part.
            Email::parse(&format!("x@{domain}")).map_err(|_| {
                Error::invalid(
                    "validation.allowed_email_domains",
                    format!("{entry:?} is not a domain; use example.com or *.example.com"),
                )
            })?;
            if wildcard {
                list.suffixes.push(format!(".{domain}"));
            } else {
                list.exact.push(domain);
            }
        }
        Ok(list)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty()
    }

    /// Checks an address; the error never reveals the list itself.
    pub fn check(&self, email: &Email) -> Result<()> {
        if self.allows(email.domain()) {
            Ok(())
        } else {
            Err(Error::invalid(
                "email",
                format!("the email domain {:?} is not accepted here; use your organisation's address", email.domain()),
            ))
        }
    }

    pub fn allows(&self, domain: &str) -> bool {
        let domain = domain.to_ascii_lowercase();
        self.is_empty()
            || self.exact.contains(&domain)
            || self.suffixes.iter().any(|suffix| domain.ends_with(suffix.as_str()))
    }
}

/// A parsed, normalised SSH public key: one key on one line, no options, a modern algorithm.
/// Deserialised from its line as [`SshPublicKey::parse`] parses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct SshPublicKey {
    openssh: String,
    fingerprint: String,
    algorithm: String,
}

impl<'de> Deserialize<'de> for SshPublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let line = String::deserialize(deserializer)?;
        SshPublicKey::parse(&line).map_err(serde::de::Error::custom)
    }
}

const SSH_KEY_RULE: &str = "paste exactly one public key line, such as the content of \
     ~/.ssh/id_ed25519.pub (accepted: ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa of at \
     least 2048 bits, sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com)";

impl SshPublicKey {
    /// Longest accepted input; an RSA 16384-bit key line is about 2.8 KB.
    pub const MAX_LEN: usize = 8192;

    pub fn parse(value: &str) -> Result<Self> {
        let invalid = |why: String| Error::invalid("ssh public key", format!("{why}; {SSH_KEY_RULE}"));
        let value = value.trim();
        if value.is_empty() {
            return Err(invalid("the key is empty".into()));
        }
        if value.len() > Self::MAX_LEN {
            return Err(invalid(format!("the key is longer than {} characters", Self::MAX_LEN)));
        }
        // Before the line check: a pasted private key spans lines too, and must be named.
        if value.contains("PRIVATE KEY") {
            return Err(invalid("this is a private key: never share it, send the .pub file instead".into()));
        }
        if value.contains(['\n', '\r']) {
            return Err(invalid("the key spans several lines (only one key is accepted)".into()));
        }
        let first = value.split_ascii_whitespace().next().unwrap_or_default();
        let known = [
            "ssh-ed25519",
            "ssh-rsa",
            "ecdsa-sha2-nistp256",
            "ecdsa-sha2-nistp384",
            "ecdsa-sha2-nistp521",
            "sk-ssh-ed25519@openssh.com",
            "sk-ecdsa-sha2-nistp256@openssh.com",
            "ssh-dss",
        ];
        if !known.contains(&first) {
            if value.split_ascii_whitespace().skip(1).any(|token| known.contains(&token)) {
                return Err(invalid("authorized_keys options before the key are not accepted".into()));
            }
            return Err(invalid(format!("{:?} is not a known key type", truncate(first, 40))));
        }
        if first == "ssh-dss" {
            return Err(invalid("DSA keys are no longer secure and are not accepted".into()));
        }
        // What follows the key data is its comment; a second key there (two lines joined, or
        // two keys pasted together) would be kept as that comment and never work.
        let looks_like_key_data = |token: &str| {
            token.len() >= 60
                && token.starts_with("AAAA")
                && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        };
        if value.split_ascii_whitespace().skip(2).any(|token| known.contains(&token) || looks_like_key_data(token)) {
            return Err(invalid("the field holds more than one key: paste one key".into()));
        }
        let key = ssh_key::PublicKey::from_openssh(value)
            .map_err(|error| invalid(format!("the key could not be parsed ({error})")))?;
        if let ssh_key::public::KeyData::Rsa(rsa) = key.key_data() {
            let bits = mpint_bits(rsa.n.as_bytes());
            if bits < 2048 {
                return Err(invalid(format!("this RSA key has {bits} bits, at least 2048 are needed")));
            }
        }
        if !key.comment().chars().all(is_printable) || key.comment().len() > 256 {
            return Err(invalid("the key comment must be printable text of at most 256 characters".into()));
        }
        let openssh = key.to_openssh().map_err(|error| invalid(format!("the key could not be encoded ({error})")))?;
        let fingerprint = key.fingerprint(ssh_key::HashAlg::Sha256).to_string();
        Ok(SshPublicKey { openssh, fingerprint, algorithm: key.algorithm().as_str().to_owned() })
    }

    /// The normalised `algorithm base64 [comment]` line.
    pub fn as_str(&self) -> &str {
        &self.openssh
    }

    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }
}

impl fmt::Display for SshPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.openssh)
    }
}

impl From<SshPublicKey> for String {
    fn from(value: SshPublicKey) -> String {
        value.openssh
    }
}

/// Bit length of a big-endian unsigned integer (an SSH mpint may carry a leading zero byte).
fn mpint_bits(bytes: &[u8]) -> usize {
    let bytes = match bytes.iter().position(|&b| b != 0) {
        Some(first) => &bytes[first..],
        None => return 0,
    };
    bytes.len() * 8 - bytes[0].leading_zeros() as usize
}

fn truncate(value: &str, max: usize) -> &str {
    match value.char_indices().nth(max) {
        Some((index, _)) => &value[..index],
        None => value,
    }
}

/// Free text (team, reason): trimmed, bounded, printable.
pub fn free_text(field: &str, value: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(Error::invalid(field, format!("at most {max} characters are accepted")));
    }
    if let Some(bad) = value.chars().find(|&c| !is_printable(c)) {
        return Err(Error::invalid(
            field,
            format!(
                "{} is not accepted: one line of text without control characters, line or paragraph \
                 separators (U+2028/U+2029), bidirectional controls (U+200E/U+200F, U+202A-U+202E, \
                 U+2066-U+2069, U+061C) or the non-characters U+FFFE/U+FFFF",
                describe_char(bad)
            ),
        ));
    }
    Ok(value.to_owned())
}

/// Whether `c` may appear in one-line text that reaches a rendered file (cloud-init YAML, HCL,
/// logs) or another person's screen: no control characters (C0, DEL, C1, line breaks), no
/// Unicode line or paragraph separators, no bidirectional controls (which reorder what a reader
/// sees: an administrator must read a reason as it was written), and nothing outside YAML's
/// printable set (U+FFFE and U+FFFF; surrogates cannot occur in Rust strings).
pub fn is_printable(c: char) -> bool {
    !c.is_control()
        && !matches!(
            c,
            '\u{FFFE}'
                | '\u{FFFF}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{061C}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// A character named so that a reader can find it: `U+2028`, or `'x'` for a visible one.
fn describe_char(c: char) -> String {
    if c.is_control() || !is_printable(c) {
        format!("the character U+{:04X}", c as u32)
    } else {
        format!("the character {c:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = include_str!("../testdata/ssh/ed25519.pub");
    const RSA_2048: &str = include_str!("../testdata/ssh/rsa-2048.pub");
    const RSA_4096: &str = include_str!("../testdata/ssh/rsa-4096.pub");
    const RSA_1024: &str = include_str!("../testdata/ssh/rsa-1024.pub");
    const DSA: &str = include_str!("../testdata/ssh/dsa.pub");
    const ECDSA: [&str; 3] = [
        include_str!("../testdata/ssh/ecdsa-256.pub"),
        include_str!("../testdata/ssh/ecdsa-384.pub"),
        include_str!("../testdata/ssh/ecdsa-521.pub"),
    ];

    /// Read back from JSON, a key is what parsing its line gives; a bad line is refused with
    /// the parser's reason.
    #[test]
    fn keys_read_back_are_parsed_keys() {
        let json = |line: &str| serde_json::to_string(line).unwrap();
        let read = |line: &str| serde_json::from_str::<SshPublicKey>(&json(line));
        assert_eq!(read(ED25519).unwrap(), SshPublicKey::parse(ED25519).unwrap());
        assert_eq!(read(RSA_2048).unwrap(), SshPublicKey::parse(RSA_2048).unwrap());
        let refused = read("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==").unwrap_err().to_string();
        assert!(refused.contains("could not be parsed"), "{refused}");
    }

    // The original's TestIsValidUsername cases (original.md §12.1), under the unified rule.
    #[test]
    fn usernames_from_the_original_suite() {
        for valid in ["john", "john123", "john-doe", "abc", "a2345678901234567890", &"a".repeat(32)] {
            assert!(Username::parse(valid).is_ok(), "{valid} should be valid");
        }
        for invalid in
            ["ab", &"a".repeat(33), "", "John", "john_doe", "john doe", "john@doe", "김철수", "-john", "john-", "-"]
        {
            assert!(Username::parse(invalid).is_err(), "{invalid} should be invalid");
        }
    }

    // original.md §13.2 item 14: the API accepted `1abc` and `a--b`, approval then refused them.
    #[test]
    fn username_rule_is_one_rule_leading_digit_and_double_hyphen_refused() {
        for name in ["1abc", "a--b", "9lives"] {
            let error = Username::parse(name).unwrap_err();
            assert_eq!(error.kind(), "invalid-input");
            assert!(error.to_string().contains("lowercase letter first"), "{error}");
        }
    }

    #[test]
    fn reserved_usernames_are_refused() {
        for name in ["root", "admin", "basphere", "daemon", "nobody", "systemd-network", "basphere-ops"] {
            let error = Username::parse(name).unwrap_err().to_string();
            assert!(error.contains("reserved"), "{name}: {error}");
            // Read back from a store, a name is only checked for its form.
            assert_eq!(Username::stored(name).expect("stored").as_str(), name);
        }
        for damaged in ["", "Root", "a b", "x", "-abc"] {
            assert!(Username::stored(damaged).is_err(), "{damaged:?}");
        }
    }

    // original.md §12.2 TestIsValidVMName, plus §13.2 item 14 (30 vs 63, `--`).
    #[test]
    fn resource_names() {
        for valid in ["a", "web", "web-1", &"a".repeat(30), &"a".repeat(31), &"a".repeat(63)] {
            assert!(ResourceName::parse(valid).is_ok(), "{valid}");
        }
        for invalid in [
            "",
            &"a".repeat(64),
            "Web",
            "web_1",
            "web 1",
            "web@1",
            "web.1",
            "웹",
            "-web",
            "web-",
            "web--server",
            "1web",
            "../etc",
            "a/b",
        ] {
            assert!(ResourceName::parse(invalid).is_err(), "{invalid}");
        }
    }

    #[test]
    fn cluster_names_leave_room_for_the_names_cluster_api_derives() {
        let longest = format!("dev-{}", "a".repeat(CLUSTER_NAME_MAX_LEN - 4));
        assert!(ResourceName::cluster(&longest).is_ok(), "{longest}");
        assert!(ResourceName::cluster("dev").is_ok());
        for too_long in [&"a".repeat(CLUSTER_NAME_MAX_LEN + 1), &"a".repeat(63)] {
            let error = ResourceName::cluster(too_long).unwrap_err().to_string();
            assert!(error.contains(&format!("at most {CLUSTER_NAME_MAX_LEN} characters")), "{error}");
            assert!(ResourceName::parse(too_long).is_ok(), "a VM may still have such a name");
        }
        for invalid in ["", &"a".repeat(64), &"a".repeat(10_000), "Dev", "dev-", "dev--1", "1dev", "dev.1"] {
            let error = ResourceName::cluster(invalid).unwrap_err().to_string();
            assert!(error.contains(CLUSTER_NAME_RULE), "{error}");
            assert!(error.len() < 400, "{error}");
        }
    }

    #[test]
    fn batch_names_are_one_based_and_validated() {
        let name = ResourceName::parse("web").unwrap();
        let names: Vec<String> = name.batch(3).unwrap().into_iter().map(String::from).collect();
        assert_eq!(names, ["web-1", "web-2", "web-3"]);
        assert_eq!(name.batch(1).unwrap(), vec![name.clone()]);
        let long = ResourceName::parse(&"a".repeat(62)).unwrap();
        assert!(long.batch(2).is_err(), "the suffix must fit in 63 characters");
    }

    // original.md §12.1 TestIsValidEmail.
    #[test]
    fn emails_from_the_original_suite() {
        for valid in ["user@example.com", "user@mail.example.com", "user+tag@example.com", "first.last@example.com"] {
            assert!(Email::parse(valid).is_ok(), "{valid}");
        }
        for invalid in [
            "userexample.com",
            "user@",
            "@example.com",
            "user@@example.com",
            "a@b@example.com",
            "user@example",
            "",
            "user@.com",
            "us\"er@example.com",
            "user@exa mple.com",
            "user..x@example.com",
            &format!("{}@example.com", "a".repeat(65)),
        ] {
            assert!(Email::parse(invalid).is_err(), "{invalid}");
        }
        assert_eq!(Email::parse("Alice@Example.COM").unwrap().as_str(), "Alice@example.com");
    }

    #[test]
    fn email_domain_allow_list() {
        let list = EmailDomainAllowList::parse(&["example.com", "*.corp.example.org"]).unwrap();
        let check = |email: &str| list.check(&Email::parse(email).unwrap()).is_ok();
        assert!(check("a@example.com"));
        assert!(check("a@EXAMPLE.com"));
        assert!(!check("a@sub.example.com"));
        assert!(check("a@team.corp.example.org"));
        assert!(!check("a@corp.example.org"));
        assert!(!check("a@evilcorp.example.org"));
        assert!(!check("a@other.com"));
        let error = list.check(&Email::parse("a@other.com").unwrap()).unwrap_err().to_string();
        assert!(!error.contains("example.com"), "the allow-list must not leak: {error}");
        assert!(EmailDomainAllowList::parse(&Vec::<String>::new()).unwrap().allows("any.org"));
        assert!(EmailDomainAllowList::parse(&["not a domain"]).is_err());
    }

    #[test]
    fn ssh_keys_of_every_accepted_type_parse_with_fingerprint() {
        for key in [ED25519, RSA_2048, RSA_4096, ECDSA[0], ECDSA[1], ECDSA[2]] {
            let parsed = SshPublicKey::parse(key).unwrap_or_else(|error| panic!("{key}: {error}"));
            assert!(parsed.fingerprint().starts_with("SHA256:"));
            assert_eq!(parsed.as_str(), key.trim());
        }
        // CRLF and surrounding whitespace are normalised (original TestSanitizeSSHKey).
        let parsed = SshPublicKey::parse(&format!("  {}\r\n", ED25519.trim())).unwrap();
        assert_eq!(parsed.as_str(), ED25519.trim());
    }

    #[test]
    fn fido_keys_are_accepted() {
        let ed = ssh_key::public::Ed25519PublicKey([7; 32]);
        let sk = ssh_key::public::SkEd25519::new(ed, "ssh:".to_string());
        let key = ssh_key::PublicKey::new(ssh_key::public::KeyData::SkEd25519(sk), "yubikey");
        let parsed = SshPublicKey::parse(&key.to_openssh().unwrap()).unwrap();
        assert_eq!(parsed.algorithm(), "sk-ssh-ed25519@openssh.com");
    }

    /// `algorithm base64` of a key line, without its comment.
    fn ed_key_only(line: &str) -> String {
        line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }

    // original.md §12.1 TestIsValidSSHPublicKey invalid cases, plus §13.1 item 13.
    #[test]
    fn ssh_keys_that_are_refused() {
        let ed = ED25519.trim();
        let cases = [
            ("", "empty"),
            ("random text", "not a known key type"),
            ("ssh-ed25519", "could not be parsed"),
            ("ssh-invalid AAAA", "not a known key type"),
            ("-----BEGIN OPENSSH PRIVATE KEY-----", "private key"),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----",
                "private key",
            ),
            ("ssh-rsaXYZ AAAA", "not a known key type"),
            (&*format!("{ed}\n{ed}"), "several lines"),
            (&*format!("command=\"/bin/sh\" {ed}"), "options"),
            (&*format!("from=\"10.0.0.1\" {ed}"), "options"),
            (DSA, "DSA"),
            (RSA_1024, "1024 bits"),
            ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==", "could not be parsed"),
            (&*format!("ssh-ed25519 {}", "A".repeat(9000)), "longer than"),
            // Characters YAML does not allow would break the rendered cloud-init.
            (&*format!("{} alice{}laptop", ed_key_only(ed), "\u{FFFE}"), "printable"),
            (&*format!("{} alice{}", ed_key_only(ed), "\u{FFFF}"), "printable"),
            (&*format!("{} alice{}laptop", ed_key_only(ed), "\u{85}"), "printable"),
            (&*format!("{} alice{}laptop", ed_key_only(ed), "\u{2028}"), "printable"),
            (&*format!("{} alice{}laptop", ed_key_only(ed), "\u{202E}"), "printable"),
            // Two keys in one field: the second would be kept as the first one's comment.
            (&*format!("{} {} user@laptop", ed_key_only(ed), ed_key_only(RSA_2048.trim())), "more than one key"),
            (&*format!("{} {ed}", ed_key_only(RSA_2048.trim())), "more than one key"),
            (&*format!("{} {}", ed_key_only(ed), ed_key_only(ed).split(' ').nth(1).unwrap()), "more than one key"),
        ];
        for (key, expected) in cases {
            let error = SshPublicKey::parse(key).unwrap_err().to_string();
            assert!(error.contains(expected), "{key:.40}: {error}");
        }
    }

    #[test]
    fn free_text_is_bounded_and_printable() {
        assert_eq!(free_text("team", "  DevOps팀 ", 64).unwrap(), "DevOps팀");
        assert!(free_text("team", "a\nb", 64).is_err());
        for bad in ['\u{FFFE}', '\u{FFFF}', '\u{7F}', '\u{85}', '\u{0}', '\u{1B}'] {
            let error = free_text("team", &format!("a{bad}b"), 64).unwrap_err().to_string();
            assert!(error.contains("team") && error.contains("not accepted"), "{bad:?}: {error}");
        }
        assert!(free_text("team", &"a".repeat(65), 64).is_err());
    }

    #[test]
    fn free_text_refuses_separators_and_bidirectional_controls() {
        let refused = [
            '\u{2028}', '\u{2029}', '\u{200E}', '\u{200F}', '\u{061C}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
            '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        ];
        for bad in refused {
            let error = free_text("reason", &format!("laptop{bad}lost"), 500).unwrap_err().to_string();
            let code = format!("U+{:04X}", bad as u32);
            assert!(error.contains("reason") && error.contains(&code), "{bad:?}: {error}");
        }
        // Their neighbours, and text in other scripts, are text.
        for fine in ["\u{2027}", "\u{202F}", "\u{2065}\u{206A}", "팀 DevOps", "عربي", "ZWJ\u{200D}"] {
            assert!(free_text("team", fine, 64).is_ok(), "{fine:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn resource_name_rule_matches_a_regex_reference(name in "[a-z0-9-]{0,70}") {
            let reference = !name.is_empty() && name.len() <= 63
                && name.as_bytes()[0].is_ascii_lowercase()
                && !name.ends_with('-') && !name.contains("--");
            proptest::prop_assert_eq!(ResourceName::parse(&name).is_ok(), reference);
        }

        #[test]
        fn parsers_never_panic(input in "\\PC{0,80}") {
            let _ = Username::parse(&input);
            let _ = ResourceName::parse(&input);
            let _ = Email::parse(&input);
            let _ = SshPublicKey::parse(&input);
        }
    }
}

/// Every problem found in a submitted form, one per field, so a user can fix them all at once.
#[derive(Debug, Default)]
pub struct FieldErrors(pub Vec<Error>);

impl FieldErrors {
    fn check<T>(&mut self, result: Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.0.push(error);
                None
            }
        }
    }

    fn required(&mut self, field: &str, value: &str, what: &str) -> bool {
        if value.trim().is_empty() {
            self.0.push(Error::invalid(field, format!("{what} is required")));
            false
        } else {
            true
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems as `field: message` lines.
    pub fn messages(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

/// A registration as submitted through the public page or JSON endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistrationForm {
    pub username: String,
    pub email: String,
    pub team: String,
    pub public_key: String,
}

/// A registration whose every field passed its rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidRegistration {
    pub username: Username,
    pub email: Email,
    pub team: String,
    pub ssh_key: SshPublicKey,
}

impl RegistrationForm {
    /// Checks every field and reports every problem; the allow-list is never revealed.
    pub fn validate(
        &self,
        allowed_domains: &EmailDomainAllowList,
    ) -> std::result::Result<ValidRegistration, FieldErrors> {
        let mut errors = FieldErrors::default();
        let username = errors
            .required("username", &self.username, "a username")
            .then(|| errors.check(Username::parse(self.username.trim())))
            .flatten();
        let email = errors
            .required("email", &self.email, "an email address")
            .then(|| errors.check(Email::parse(&self.email)))
            .flatten();
        let email = email.and_then(|email| errors.check(allowed_domains.check(&email)).map(|()| email));
        let team = errors.check(free_text("team", &self.team, 64));
        let ssh_key = errors
            .required("ssh public key", &self.public_key, "an SSH public key")
            .then(|| errors.check(SshPublicKey::parse(&self.public_key)))
            .flatten();
        match (username, email, team, ssh_key) {
            (Some(username), Some(email), Some(team), Some(ssh_key)) if errors.is_empty() => {
                Ok(ValidRegistration { username, email, team, ssh_key })
            }
            _ => Err(errors),
        }
    }
}

/// A request to replace an account's SSH key, as submitted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyChangeForm {
    pub username: String,
    pub email: String,
    pub new_public_key: String,
    pub reason: String,
}

/// A key change whose every field passed its rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidKeyChange {
    pub username: Username,
    pub email: Email,
    pub new_ssh_key: SshPublicKey,
    pub reason: String,
}

impl KeyChangeForm {
    pub fn validate(&self) -> std::result::Result<ValidKeyChange, FieldErrors> {
        let mut errors = FieldErrors::default();
        let username = errors
            .required("username", &self.username, "a username")
            .then(|| errors.check(Username::parse(self.username.trim())))
            .flatten();
        let email = errors
            .required("email", &self.email, "the registered email address")
            .then(|| errors.check(Email::parse(&self.email)))
            .flatten();
        let new_ssh_key = errors
            .required("ssh public key", &self.new_public_key, "the new SSH public key")
            .then(|| errors.check(SshPublicKey::parse(&self.new_public_key)))
            .flatten();
        let reason = errors.check(free_text("reason", &self.reason, 500));
        match (username, email, new_ssh_key, reason) {
            (Some(username), Some(email), Some(new_ssh_key), Some(reason)) if errors.is_empty() => {
                Ok(ValidKeyChange { username, email, new_ssh_key, reason })
            }
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod form_tests {
    use super::*;

    const KEY: &str = include_str!("../testdata/ssh/ed25519.pub");

    fn form() -> RegistrationForm {
        RegistrationForm {
            username: "john".into(),
            email: "john@example.com".into(),
            team: "DevOps".into(),
            public_key: KEY.into(),
        }
    }

    // original.md §12.1 TestRegisterInput_Validate: per-field errors, multiple errors, CRLF.
    #[test]
    fn registration_form_reports_every_problem() {
        let open = EmailDomainAllowList::default();
        assert!(form().validate(&open).is_ok());
        for (mutate, field) in [
            (Box::new(|f: &mut RegistrationForm| f.username.clear()) as Box<dyn Fn(&mut RegistrationForm)>, "username"),
            (Box::new(|f: &mut RegistrationForm| f.email = "bad".into()), "email"),
            (Box::new(|f: &mut RegistrationForm| f.public_key = "ssh-rsa".into()), "ssh public key"),
            (Box::new(|f: &mut RegistrationForm| f.team = "a\nb".into()), "team"),
        ] {
            let mut bad = form();
            mutate(&mut bad);
            let errors = bad.validate(&open).unwrap_err();
            assert_eq!(errors.0.len(), 1, "{field}: {:?}", errors.messages());
            assert!(errors.messages()[0].contains(field), "{:?}", errors.messages());
        }
        let all_bad =
            RegistrationForm { username: "X".into(), email: "".into(), team: String::new(), public_key: "nope".into() };
        assert_eq!(all_bad.validate(&open).unwrap_err().0.len(), 3, "every field's problem at once");
        let crlf = RegistrationForm { public_key: format!("{}\r\n", KEY.trim()), ..form() };
        assert_eq!(crlf.validate(&open).unwrap().ssh_key.as_str(), KEY.trim());
        let corp = EmailDomainAllowList::parse(&["corp.com"]).unwrap();
        let errors = form().validate(&corp).unwrap_err().messages().join(" ");
        assert!(errors.contains("not accepted") && !errors.contains("corp.com"), "{errors}");
    }

    // original.md §12.1 TestKeyChangeInput_Validate: three errors when every field is empty.
    #[test]
    fn key_change_form_reports_every_problem() {
        let empty = KeyChangeForm::default();
        assert_eq!(empty.validate().unwrap_err().0.len(), 3);
        let ok = KeyChangeForm {
            username: "john".into(),
            email: "john@example.com".into(),
            new_public_key: KEY.into(),
            reason: "lost laptop".into(),
        };
        assert_eq!(ok.validate().unwrap().reason, "lost laptop");
        let bad = KeyChangeForm { email: "john@".into(), ..ok };
        assert_eq!(bad.validate().unwrap_err().0.len(), 1);
    }
}

/// At most 64 characters of something a caller sent, for messages and the audit log.
pub fn bounded(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX {
        value.to_owned()
    } else {
        let cut: String = value.chars().take(MAX).collect();
        format!("{cut}... ({} characters)", value.chars().count())
    }
}
