//! The configuration's rules, each error naming its key.

use std::net::Ipv4Addr;
use std::path::PathBuf;

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
        [("huge", 16, 64, 200), ("large", 8, 32, 200), ("medium", 4, 16, 100), ("small", 2, 8, 50), ("tiny", 2, 4, 50)]
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
        ("cluster_types: {dev: {worker_spec_default: giant}}", "cluster_types.dev.worker_spec_default", "node specs"),
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
    assert_eq!(sections.terraform["anything"].as_u64(), Some(1), "the backend crate refuses unknown keys, not core");
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

/// The tenant-mode section the networks tests start from.
const TENANT: &str = "networks:\n  mode: tenant\n  vlan_range: 2001-2999\n  distributed_switch: dvs-tenants\n  wan_port_group: control-2000\n  wan: {cidr: 192.0.2.0/24, gateway: 192.0.2.1}\n";

#[test]
fn networks_are_flat_unless_tenant_mode_is_asked_for() {
    assert_eq!(Config::from_yaml("").unwrap().networks, NetworksConfig::Flat);
    assert_eq!(Config::from_yaml("networks: {mode: flat}").unwrap().networks, NetworksConfig::Flat);
    let NetworksConfig::Tenant(tenant) = Config::from_yaml(TENANT).unwrap().networks else {
        panic!("tenant mode asked for")
    };
    assert_eq!(tenant.vlans, 2001..=2999);
    assert_eq!((tenant.distributed_switch.as_str(), tenant.wan_port_group.as_str()), ("dvs-tenants", "control-2000"));
    assert_eq!(tenant.wan.cidr.to_string(), "192.0.2.0/24");
    assert_eq!(tenant.wan.gateway, Some(Ipv4Addr::new(192, 0, 2, 1)));
    let lans: Vec<(&str, String, Ipv4Addr)> =
        tenant.lans.iter().map(|lan| (lan.name.as_str(), lan.cidr.to_string(), lan.gateway)).collect();
    assert_eq!(
        lans,
        [
            ("lan1", "10.0.1.0/24".into(), Ipv4Addr::new(10, 0, 1, 1)),
            ("lan2", "10.0.2.0/24".into(), Ipv4Addr::new(10, 0, 2, 1))
        ],
        "the seed's two LANs by default"
    );
    assert_eq!((tenant.mtu, tenant.router), (1450, RouterKind::Linux));
    assert!(tenant.router_section.is_null());
    assert_eq!(tenant.port_group("alice", "lan1"), "basphere-alice-lan1", "named after the default prefix");

    let own = format!("{TENANT}  lans: [{{name: app, cidr: 172.16.0.0/22, gateway: 172.16.3.254}}]\n  mtu: 9000\n  router: linux\n  linux: {{wan_bridge: br-wan}}\n");
    let own = format!("{own}  port_group_prefix: bsp-prod\n");
    let NetworksConfig::Tenant(tenant) = Config::from_yaml(&own).unwrap().networks else { panic!("tenant mode") };
    assert_eq!(tenant.port_group("bob", "app"), "bsp-prod-bob-app");
    assert_eq!(tenant.lans.len(), 1);
    assert_eq!(tenant.lans[0].gateway, Ipv4Addr::new(172, 16, 3, 254));
    assert_eq!(tenant.mtu, 9000);
    assert_eq!(tenant.router_section["wan_bridge"].as_str(), Some("br-wan"), "kept for the router's crate");
}

#[test]
fn networks_errors_name_the_key() {
    let without = |key: &str| -> String {
        TENANT.lines().filter(|line| !line.trim_start().starts_with(&format!("{key}:"))).collect::<Vec<_>>().join("\n")
    };
    let with = |extra: &str| format!("{TENANT}  {extra}\n");
    let cases: Vec<(String, &str, &str)> = vec![
        ("networks: {mode: vlan}".into(), "networks.mode", "flat, tenant"),
        ("networks: {vlan_range: 2001-2999}".into(), "networks.vlan_range", "only to networks.mode: tenant"),
        ("networks: {mode: flat, linux: {wan_bridge: x}}".into(), "networks.linux", "only to networks.mode: tenant"),
        (without("vlan_range"), "networks.vlan_range", "required"),
        (without("distributed_switch"), "networks.distributed_switch", "required"),
        (without("wan_port_group"), "networks.wan_port_group", "required"),
        (without("wan"), "networks.wan", "required"),
        (TENANT.replace("2001-2999", "0-10"), "networks.vlan_range", "1-4094"),
        (TENANT.replace("2001-2999", "2001-4095"), "networks.vlan_range", "1-4094"),
        (TENANT.replace("2001-2999", "3000-2000"), "networks.vlan_range", "1-4094"),
        (TENANT.replace("2001-2999", "2001-2001"), "networks.vlan_range", "two VLAN ids"),
        (TENANT.replace("2001-2999", "many"), "networks.vlan_range", "like 2001-2999"),
        (TENANT.replace("dvs-tenants", "\"\""), "networks.distributed_switch", "vSphere name"),
        (TENANT.replace("192.0.2.0/24", "192.0.2.5/24"), "networks.wan.cidr", "aligned"),
        (TENANT.replace("gateway: 192.0.2.1", "gateway: 192.0.3.1"), "networks.wan.gateway", "host address"),
        (TENANT.replace("gateway: 192.0.2.1", "gateway: 192.0.2.255"), "networks.wan.gateway", "host address"),
        (with("mtu: 100"), "networks.mtu", "576-9000"),
        (with("port_group_prefix: Basphere"), "networks.port_group_prefix", "lower-case"),
        (with("port_group_prefix: -x"), "networks.port_group_prefix", "inner dashes"),
        ("networks: {port_group_prefix: x}".into(), "networks.port_group_prefix", "only to networks.mode: tenant"),
        (with("router: opnsense"), "networks.router", "accepted: linux"),
        (with("lans: []"), "networks.lans", "1-4"),
        (with("lans: [{name: WAN1, cidr: 10.0.1.0/24}]"), "networks.lans[0].name", "lower-case"),
        (with("lans: [{name: wan, cidr: 10.0.1.0/24}]"), "networks.lans[0].name", "not wan"),
        (
            with("lans: [{name: a, cidr: 10.0.1.0/24}, {name: a, cidr: 10.0.2.0/24}]"),
            "networks.lans[1].name",
            "its own",
        ),
        (
            with("lans: [{name: a, cidr: 10.0.0.0/16}, {name: b, cidr: 10.0.2.0/24}]"),
            "networks.lans[1].cidr",
            "overlaps a",
        ),
        (with("lans: [{name: a, cidr: 10.0.1.0/31}]"), "networks.lans[0].cidr", "/30 or larger"),
        (with("lans: [{name: a, cidr: 10.0.1.0/24, gateway: 10.0.1.0}]"), "networks.lans[0].gateway", "host address"),
        (with("lans: [{name: a, cidr: 192.0.2.0/25}]"), "networks.wan.cidr", "overlaps the LAN a"),
        (with("vlans: 2001-2999"), "networks.vlans", "unknown field"),
    ];
    for (yaml, key, says) in cases {
        let error = error_of(&yaml);
        assert!(error.contains(key) && error.contains(says), "{yaml}\n=> {error}\n(wanted {key}: ...{says}...)");
    }
}
