//! What the tests of the Terraform backend share, here and in the workspace's `tests` crate
//! (behind the `testing` feature): a fake `terraform`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// A fake `terraform` (`fake_terraform.py`, run by this machine's python3) with a small vSphere
/// of its own kept in its state directory: it checks its arguments, working directory and
/// environment, records every call, and misbehaves on request. Its vSphere has the network
/// `VM Network` and the distributed switch `dvs-tenants`, and the VMs, folders and distributed
/// port groups it was asked to make.
pub struct FakeTerraform {
    /// The executable, for `terraform.binary`.
    pub binary: PathBuf,
    /// Its state: the vSphere it keeps (`vsphere/`), the calls (`calls.jsonl`), and the
    /// misbehaviours asked for (`behaviour/`).
    pub state: PathBuf,
}

impl FakeTerraform {
    /// Writes the fake as `binary` (mode 0755), keeping its state in `state`.
    pub fn install(binary: PathBuf, state: PathBuf) -> FakeTerraform {
        // The interpreter itself, not a shim that would add variables of its own.
        let python = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 runs the fake terraform");
        let python = String::from_utf8(python.stdout).expect("a path").trim().to_owned();
        let script = include_str!("fake_terraform.py")
            .replace("@STATE_DIR@", &state.display().to_string())
            .replace("@PYTHON@", &python);
        std::fs::create_dir_all(state.join("behaviour")).expect("the fake's state directory");
        std::fs::write(&binary, script).expect("the fake terraform written");
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("the fake made executable");
        FakeTerraform { binary, state }
    }

    /// Makes the next `times` calls misbehave: fail-apply, hang-apply, half-apply, fail-import,
    /// fail-destroy, delay-apply, delay-destroy.
    pub fn inject(&self, behaviour: &str, times: u32) {
        std::fs::write(self.state.join("behaviour").join(behaviour), times.to_string()).expect("a behaviour written");
    }

    /// Every call so far, in order (none before the first).
    pub fn calls(&self) -> Vec<serde_json::Value> {
        match std::fs::read_to_string(self.state.join("calls.jsonl")) {
            Ok(text) => text.lines().map(|line| serde_json::from_str(line).expect("a call as JSON")).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The VMs its vSphere holds, by name (none before the first).
    pub fn vms(&self) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(self.state.join("vsphere/vms")) {
            Ok(entries) => entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().trim_end_matches(".json").to_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    /// The distributed port groups its vSphere holds, by name: each one's `vlan_id`,
    /// `description`, `switch` and managed object `id`.
    pub fn port_groups(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        let Ok(entries) = std::fs::read_dir(self.state.join("vsphere/port_groups")) else {
            return Default::default();
        };
        entries
            .filter_map(|entry| entry.ok())
            .map(|entry| {
                let text = std::fs::read_to_string(entry.path()).expect("a port group");
                let group: serde_json::Value = serde_json::from_str(&text).expect("a port group as JSON");
                (group["name"].as_str().expect("a name").to_owned(), group)
            })
            .collect()
    }

    /// Puts a distributed port group into its vSphere as someone else made it (on `dvs-tenants`).
    pub fn plant_port_group(&self, name: &str, vlan: u16, description: &str) {
        let dir = self.state.join("vsphere/port_groups");
        std::fs::create_dir_all(&dir).expect("the fake's port groups");
        let group = serde_json::json!({
            "id": format!("dvportgroup-planted-{vlan}"), "name": name, "vlan_id": vlan, "description": description,
            "switch": "dvs-tenants", "switch_uuid": "dvs-uuid-dvs-tenants",
        });
        let file: String = url_escape(name);
        std::fs::write(dir.join(format!("{file}.json")), group.to_string()).expect("a port group planted");
    }
}

/// `name` as the fake names its files (Python's `urllib.parse.quote(name, safe="")`).
fn url_escape(name: &str) -> String {
    name.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
