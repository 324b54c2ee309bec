//! The cloud-init documents: whatever characters a value holds, the documents parse (with
//! serde_yaml, and with PyYAML, which cloud-init itself uses) and say exactly the values given.

use basphere_vsphere::cloud_init::{self, Values};
use serde_json::{json, Value};

/// Every character YAML refuses raw or reads as something else (C0 controls, DEL, C1 controls,
/// NEL, the line and paragraph separators, the byte-order mark, U+FFFE, U+FFFF), YAML's and
/// JSON's syntax, and characters that need no escape at all, at the edges of the ranges YAML
/// allows.
fn awkward() -> String {
    let mut text: String = (0u32..0x20).chain(0x7F..=0xA0).filter_map(char::from_u32).collect();
    text.extend(['\u{2028}', '\u{2029}', '\u{FEFF}', '\u{FFFE}', '\u{FFFF}', '\u{FFFD}', '\u{D7FF}', '\u{E000}']);
    text.extend(['\u{10000}', '\u{10FFFF}', 'é', '😀', '\u{1F}']);
    text.push_str("\" ' \\ \\u0041 # : - ? & * ! | > % @ ` { } [ ] , key: value\n- item\n...\n---\n");
    text
}

fn values_with(field: &str, text: &str) -> Values {
    let mut values = Values {
        instance_id: "alice-web".into(),
        hostname: "web".into(),
        interface: "ens192".into(),
        mtu: 1500,
        address: "10.254.0.33/21".into(),
        gateway: "10.254.0.1".into(),
        dns: vec!["8.8.8.8".into()],
        login: "alice".into(),
        ssh_key: "ssh-ed25519 AAAA alice@laptop".into(),
        marker: "Basphere VM alice-web\n".into(),
    };
    let text = text.to_owned();
    match field {
        "instance_id" => values.instance_id = text,
        "hostname" => values.hostname = text,
        "interface" => values.interface = text,
        "address" => values.address = text,
        "gateway" => values.gateway = text,
        "dns" => values.dns = vec![text.clone(), text],
        "login" => values.login = text,
        "ssh_key" => values.ssh_key = text,
        "marker" => values.marker = text,
        other => panic!("no field {other}"),
    }
    values
}

const FIELDS: [&str; 9] =
    ["instance_id", "hostname", "interface", "address", "gateway", "dns", "login", "ssh_key", "marker"];

/// What the documents must say, as JSON: (metadata, userdata).
fn expected(values: &Values) -> (Value, Value) {
    let mut ethernets = serde_json::Map::new();
    ethernets.insert(
        values.interface.clone(),
        json!({
            "dhcp4": false,
            "mtu": values.mtu,
            "addresses": [values.address],
            "routes": [{"to": "default", "via": values.gateway}],
            "nameservers": {"addresses": values.dns},
        }),
    );
    let metadata = json!({
        "instance-id": values.instance_id,
        "local-hostname": values.hostname,
        "network": {"version": 2, "ethernets": ethernets},
    });
    let userdata = json!({
        "hostname": values.hostname,
        "manage_etc_hosts": true,
        "users": [{
            "name": values.login,
            "sudo": "ALL=(ALL) NOPASSWD:ALL",
            "shell": "/bin/bash",
            "lock_passwd": true,
            "ssh_authorized_keys": [values.ssh_key],
        }],
        "package_update": false,
        "package_upgrade": false,
        "growpart": {"mode": "auto", "devices": ["/"], "ignore_growroot_disabled": false},
        "write_files": [{"path": "/etc/basphere-vm", "permissions": "0644", "content": values.marker}],
        "runcmd": [["sh", "-c", "cat /etc/basphere-vm >> /var/log/basphere-init.log"]],
        "final_message": "Basphere VM is ready after $UPTIME seconds",
    });
    (metadata, userdata)
}

#[test]
fn every_character_in_every_field_parses_with_serde_yaml_and_stays_itself() {
    let text = awkward();
    for field in FIELDS {
        let values = values_with(field, &text);
        let documents = cloud_init::render(&values).unwrap();
        let (metadata, userdata) = expected(&values);
        for (name, document, expected) in
            [("metadata", &documents.metadata, metadata), ("userdata", &documents.userdata, userdata)]
        {
            let parsed: Value = serde_yaml::from_str(document)
                .unwrap_or_else(|error| panic!("{field} breaks the {name}: {error}\n{document}"));
            assert_eq!(parsed, expected, "{field} in the {name}");
        }
        assert!(documents.userdata.starts_with("#cloud-config\n"), "{field}");
    }
}

/// PyYAML, or none outside CI.
fn pyyaml() -> bool {
    let works = std::process::Command::new("python3")
        .args(["-c", "import yaml"])
        .output()
        .map(|output| output.status.success())
        .unwrap_or(false);
    if !works {
        basphere_core::testing::skip_unless_ci("python3 with PyYAML is not installed (.ci/run installs it)");
    }
    works
}

#[test]
fn every_character_in_every_field_parses_with_pyyaml_and_stays_itself() {
    if !pyyaml() {
        return;
    }
    let text = awkward();
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for field in FIELDS {
        let values = values_with(field, &text);
        let documents = cloud_init::render(&values).unwrap();
        for (name, document) in [("metadata", &documents.metadata), ("userdata", &documents.userdata)] {
            let path = dir.path().join(format!("{field}-{name}.yaml"));
            std::fs::write(&path, document).unwrap();
            cases.push((field, name, path, values.clone()));
        }
    }
    // One interpreter reads every document (as bytes, so that nothing is decoded before PyYAML
    // sees it) and prints what it parsed as JSON, one line per document.
    let script = "import json, sys, yaml\n\
                  for path in sys.argv[1:]:\n    \
                      try:\n        print(json.dumps(yaml.safe_load(open(path, 'rb'))))\n    \
                      except yaml.YAMLError as error:\n        print(json.dumps({'error': str(error)}))\n";
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(cases.iter().map(|(_, _, path, _)| path))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> =
        String::from_utf8(output.stdout).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), cases.len());
    for ((field, name, _, values), parsed) in cases.iter().zip(lines) {
        let (metadata, userdata) = expected(values);
        let expected = if *name == "metadata" { metadata } else { userdata };
        assert_eq!(parsed, expected, "PyYAML reads {field} in the {name} differently");
    }
}
