//! Conformance suites, one per trait, run by every backend's tests; and the fixtures they use.
//!
//! Each suite is the `# Contract` section of its trait written as code: a backend passes when
//! every `check_*` function returns without panicking.

pub mod bastion;
pub mod clusters;
pub mod human;
pub mod ipam;
pub mod notifier;
pub mod provisioner;
pub mod router;
pub mod store;

use crate::model::*;
use crate::validate::{Email, SshPublicKey, Username};

/// Whether the tests run under CI: the variable `CI` is set, whatever its value.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// The one rule for a test that needs something the host lacks (a program, a Python module,
/// root): under CI (`CI` set, whatever its value) the test fails, saying what is missing; elsewhere
/// this prints a note to stderr (past libtest's capture) and returns, and the caller skips.
#[track_caller]
pub fn skip_unless_ci(missing: &str) {
    assert!(!under_ci(), "{missing} (CI is set, so this test fails instead of skipping)");
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "note: test skipped: {missing}");
}

/// A real SSH key, distinct for every `seed` (an ed25519 key built from the seed's bytes).
pub fn ssh_key(seed: u64) -> SshPublicKey {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[31] = 0x42;
    let key = ssh_key::PublicKey::new(
        ssh_key::public::KeyData::Ed25519(ssh_key::public::Ed25519PublicKey(bytes)),
        format!("test-{seed}"),
    );
    SshPublicKey::parse(&key.to_openssh().expect("encodes")).expect("a valid key")
}

/// The ed25519 public key of `basphere-core/testdata/ssh/ed25519.pub` (a key made by ssh-keygen).
pub const ED25519_FIXTURE: &str = include_str!("../../testdata/ssh/ed25519.pub");

pub fn username(name: &str) -> Username {
    Username::parse(name).expect("a valid username")
}

/// An active account named `name` with a key derived from `seed`.
pub fn user(name: &str, seed: u64) -> User {
    let at = now();
    User {
        username: username(name),
        email: Email::parse(&format!("{name}@example.com")).expect("valid"),
        team: "platform".into(),
        ssh_key: ssh_key(seed),
        role: Role::User,
        status: UserStatus::Active,
        uid: None,
        created_at: at,
        updated_at: at,
    }
}

/// `networks.mode: tenant` with the seed's two LANs, MTU 1450, the WAN 192.0.2.0/24 (gateway
/// .1) and the VLAN ids `vlans`.
pub fn tenant_networks(vlans: std::ops::RangeInclusive<u16>) -> crate::config::TenantNetworks {
    use crate::config::{LanNetwork, RouterKind, TenantNetworks, WanNetwork};
    let lan = |name: &str, third: u8| LanNetwork {
        name: name.into(),
        cidr: format!("10.0.{third}.0/24").parse().expect("a CIDR"),
        gateway: std::net::Ipv4Addr::new(10, 0, third, 1),
    };
    TenantNetworks {
        vlans,
        distributed_switch: "dvs-tenants".into(),
        wan_port_group: "pg-wan".into(),
        port_group_prefix: "basphere".into(),
        wan: WanNetwork {
            cidr: "192.0.2.0/24".parse().expect("a CIDR"),
            gateway: Some(std::net::Ipv4Addr::new(192, 0, 2, 1)),
        },
        lans: vec![lan("lan1", 1), lan("lan2", 2)],
        mtu: 1450,
        router: RouterKind::Linux,
        router_section: serde_yaml::Value::Null,
    }
}
