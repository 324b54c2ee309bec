//! Reading an installation of the original, leniently: every file the original writes, in its
//! exact format (`users/<u>/metadata.json`, `pending/*.json`, `terraform/<u>/<vm>/metadata.json`,
//! `clusters/<u>/<c>/metadata.json`, `ipam/{allocations,leases}.tsv`, `/etc/basphere/*.yaml`,
//! `/etc/passwd` and the logins' `authorized_keys`). What cannot be read is kept as a fault with
//! the file named; nothing here decides what to import.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;

use crate::Fault;

/// Where the original keeps its data, below the root.
pub const DATA_DIR: &str = "var/lib/basphere";
/// Where the original keeps its configuration, below the root.
pub const CONFIG_DIR: &str = "etc/basphere";

/// Everything read from an original installation.
#[derive(Debug, Default)]
pub struct Original {
    pub root: PathBuf,
    pub users: Vec<SourceUser>,
    pub registrations: Vec<(PathBuf, RegistrationJson)>,
    pub key_changes: Vec<(PathBuf, KeyChangeJson)>,
    pub vms: Vec<SourceVm>,
    pub clusters: Vec<SourceCluster>,
    pub allocations: Vec<AllocationRow>,
    pub leases: Vec<LeaseRow>,
    /// `/etc/passwd` by login name.
    pub passwd: BTreeMap<String, PasswdEntry>,
    /// Members of the original's `basphere-users` group (its logins).
    pub group_members: Vec<String>,
    pub config: OriginalConfig,
    /// Lines of `/var/log/basphere/audit.log` (kept in place, not imported).
    pub audit_lines: usize,
    /// What could not be read.
    pub faults: Vec<Fault>,
}

/// `config.yaml`, `specs.yaml` and `api.yaml`, as parsed YAML (absent files are `None`).
#[derive(Debug, Default)]
pub struct OriginalConfig {
    pub config: Option<serde_yaml::Value>,
    pub specs: Option<serde_yaml::Value>,
    pub api: Option<serde_yaml::Value>,
}

impl OriginalConfig {
    fn get<'a>(value: &'a Option<serde_yaml::Value>, path: &[&str]) -> Option<&'a serde_yaml::Value> {
        let mut at = value.as_ref()?;
        for key in path {
            at = at.get(*key)?;
        }
        Some(at)
    }

    /// A key of `config.yaml`.
    pub fn config_key(&self, path: &[&str]) -> Option<&serde_yaml::Value> {
        Self::get(&self.config, path)
    }

    /// A key of `specs.yaml`.
    pub fn specs_key(&self, path: &[&str]) -> Option<&serde_yaml::Value> {
        Self::get(&self.specs, path)
    }

    /// A key of `api.yaml`.
    pub fn api_key(&self, path: &[&str]) -> Option<&serde_yaml::Value> {
        Self::get(&self.api, path)
    }

    /// `network.block_size` as the original read it (default 32).
    pub fn block_size(&self) -> u32 {
        self.config_key(&["network", "block_size"]).and_then(|v| v.as_u64()).map_or(32, |v| v as u32)
    }

    /// A VM size by spec name from `specs.yaml` `vm_specs`, with the original's fallback of
    /// 2 vCPU / 4096 MB / 50 GB for a name it does not know (the original never checked it).
    pub fn vm_size(&self, spec: &str) -> Option<(u32, u64, u64)> {
        let entry = self.specs_key(&["vm_specs", spec])?;
        let number = |key: &str, default: u64| entry.get(key).and_then(|v| v.as_u64()).unwrap_or(default);
        Some((number("cpu", 2) as u32, number("memory_mb", 4096), number("disk_gb", 50)))
    }

    /// A cluster node size from `specs.yaml` `cluster_node_specs` (original's defaults 2/4096/50).
    pub fn node_size(&self, spec: &str) -> (u32, u64, u64) {
        let entry = self.specs_key(&["cluster_node_specs", spec]);
        let number =
            |key: &str, default: u64| entry.and_then(|e| e.get(key)).and_then(|v| v.as_u64()).unwrap_or(default);
        (number("cpu", 2) as u32, number("memory_mb", 4096), number("disk_gb", 50))
    }

    /// The control-plane node spec of a cluster type (default `medium`).
    pub fn control_plane_spec(&self, cluster_type: &str) -> String {
        self.specs_key(&["cluster_types", cluster_type, "control_plane_spec"])
            .and_then(|v| v.as_str())
            .unwrap_or("medium")
            .to_owned()
    }

    /// The OS key whose template is `template`.
    pub fn os_for_template(&self, template: &str) -> Option<String> {
        let os = self.config_key(&["templates", "os"])?.as_mapping()?;
        os.iter().find_map(|(key, entry)| {
            (entry.get("template").and_then(|t| t.as_str()) == Some(template))
                .then(|| key.as_str().map(str::to_owned))?
        })
    }
}

/// A line of `/etc/passwd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    pub uid: u32,
    pub home: String,
}

/// `users/<u>/metadata.json`, written by a heredoc (no escaping), so read leniently.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UserJson {
    pub username: Option<String>,
    pub email: Option<String>,
    pub team: Option<String>,
    pub created_at: Option<String>,
    pub status: Option<String>,
    pub ip_block: Option<String>,
    pub max_clusters: Option<serde_json::Value>,
}

/// One user directory.
#[derive(Debug)]
pub struct SourceUser {
    /// The directory's name: the login.
    pub name: String,
    pub file: PathBuf,
    /// `None` when the file is empty or not JSON (a fault is recorded).
    pub metadata: Option<UserJson>,
    /// The first key line of the login's `authorized_keys`, if any.
    pub authorized_key: Option<String>,
    pub key_file: PathBuf,
    pub modified: Option<SystemTime>,
}

/// `pending/<id>.json` (Go `json.MarshalIndent`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RegistrationJson {
    pub id: String,
    pub username: String,
    pub email: String,
    pub team: String,
    pub public_key: String,
    pub status: String,
    pub created_at: String,
    pub processed_by: String,
    pub processed_at: String,
    pub reject_reason: String,
}

/// `pending/key-changes/<id>.json`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct KeyChangeJson {
    pub id: String,
    pub username: String,
    pub email: String,
    pub new_public_key: String,
    pub reason: String,
    pub status: String,
    pub created_at: String,
    pub processed_by: String,
    pub processed_at: String,
    pub reject_reason: String,
}

/// `terraform/<u>/<vm>/metadata.json`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct VmJson {
    pub name: String,
    pub vsphere_vm_name: String,
    pub owner: String,
    pub os: String,
    pub spec: String,
    pub ip_address: String,
    pub created_at: String,
    pub status: String,
}

/// What a VM's `main.tf` says, for a VM whose metadata is lost: the sed-rendered defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MainTf {
    pub num_cpus: Option<u32>,
    pub memory: Option<u64>,
    pub disk_size: Option<u64>,
    pub template: Option<String>,
    pub ip_address: Option<Ipv4Addr>,
}

/// One VM directory.
#[derive(Debug)]
pub struct SourceVm {
    pub owner: String,
    pub name: String,
    pub dir: PathBuf,
    /// `None` when `metadata.json` is missing, empty or not JSON.
    pub metadata: Option<VmJson>,
    pub main_tf: Option<MainTf>,
    /// When the directory's files were written (a stable stand-in for a lost `created_at`).
    pub modified: Option<SystemTime>,
}

/// `clusters/<u>/<c>/metadata.json`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ClusterJson {
    pub name: String,
    pub owner: String,
    #[serde(rename = "type")]
    pub cluster_type: String,
    pub k8s_version: String,
    pub control_plane_count: u32,
    pub worker_count: u32,
    pub worker_spec: String,
    pub control_plane_ip: String,
    pub worker_ips: Vec<String>,
    pub status: String,
    pub created_at: String,
}

/// One cluster directory.
#[derive(Debug)]
pub struct SourceCluster {
    pub owner: String,
    pub name: String,
    pub file: PathBuf,
    pub metadata: Option<ClusterJson>,
}

/// A row of `ipam/allocations.tsv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocationRow {
    pub line: usize,
    pub user: String,
    pub start: Ipv4Addr,
    pub allocated_at: Option<DateTime<Utc>>,
}

/// A row of `ipam/leases.tsv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRow {
    pub line: usize,
    pub address: Ipv4Addr,
    pub user: String,
    pub resource: String,
    /// `vm`, `cluster-cp` or `cluster-worker`.
    pub kind: String,
    pub allocated_at: Option<DateTime<Utc>>,
}

/// Parses the original's times: RFC 3339 (Go's `RFC3339Nano`, `date -u +%Y-%m-%dT%H:%M:%SZ`).
pub fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S").ok().map(|t| t.and_utc()))
        .or_else(|| NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S").ok().map(|t| t.and_utc()))
}

impl Original {
    /// Reads the original installation whose filesystem root is `root` (`/` on the original's
    /// own host, or a copy of its `/etc/basphere`, `/var/lib/basphere`, `/etc/passwd`,
    /// `/etc/group` and the logins' `~/.ssh/authorized_keys`).
    pub fn read(root: &Path) -> std::io::Result<Original> {
        let data = root.join(DATA_DIR);
        if !data.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "{} is not a directory: give the original's filesystem root (the directory holding {DATA_DIR} and {CONFIG_DIR}; `/` on its own host)",
                    data.display()
                ),
            ));
        }
        let mut original = Original { root: root.to_owned(), ..Original::default() };
        original.read_config();
        original.read_passwd();
        original.read_users();
        original.read_requests();
        original.read_vms();
        original.read_clusters();
        original.read_ipam();
        original.audit_lines = fs::read_to_string(root.join("var/log/basphere/audit.log"))
            .map(|text| text.lines().filter(|l| !l.trim().is_empty()).count())
            .unwrap_or(0);
        Ok(original)
    }

    fn fault(&mut self, subject: impl Into<String>, what: impl Into<String>) {
        self.faults.push(Fault::new(subject, what));
    }

    /// A path relative to the root, as reports name it.
    pub fn rel(&self, path: &Path) -> String {
        format!("/{}", path.strip_prefix(&self.root).unwrap_or(path).display())
    }

    fn read_config(&mut self) {
        let dir = self.root.join(CONFIG_DIR);
        let mut read = |name: &str| -> Option<serde_yaml::Value> {
            let path = dir.join(name);
            let text = fs::read_to_string(&path).ok()?;
            match serde_yaml::from_str::<serde_yaml::Value>(&text) {
                Ok(value) => Some(value),
                Err(error) => {
                    let subject = format!("/{CONFIG_DIR}/{name}");
                    self.faults
                        .push(Fault::new(subject, format!("is not YAML ({error}); its settings are not carried over")));
                    None
                }
            }
        };
        let config = read("config.yaml");
        let specs = read("specs.yaml");
        let api = read("api.yaml");
        self.config = OriginalConfig { config, specs, api };
    }

    fn read_passwd(&mut self) {
        if let Ok(text) = fs::read_to_string(self.root.join("etc/passwd")) {
            for line in text.lines().filter(|line| !line.starts_with(['#', '+', '-'])) {
                let fields: Vec<&str> = line.split(':').collect();
                if let [name, _, uid, _, _, home, _] = fields.as_slice() {
                    if let Ok(uid) = uid.parse() {
                        self.passwd.insert((*name).to_owned(), PasswdEntry { uid, home: (*home).to_owned() });
                    }
                }
            }
        }
        if let Ok(text) = fs::read_to_string(self.root.join("etc/group")) {
            if let Some(line) = text.lines().find(|line| line.starts_with("basphere-users:")) {
                let members = line.rsplit(':').next().unwrap_or_default();
                self.group_members =
                    members.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_owned).collect();
            }
        }
    }

    /// The first key line of a login's `authorized_keys` (what the original injected into VMs).
    fn authorized_key(&self, login: &str) -> (PathBuf, Option<String>) {
        let home = self.passwd.get(login).map_or_else(|| format!("/home/{login}"), |entry| entry.home.clone());
        let file = self.root.join(home.trim_start_matches('/')).join(".ssh/authorized_keys");
        let key = fs::read_to_string(&file).ok().and_then(|text| {
            text.lines().map(str::trim).find(|line| !line.is_empty() && !line.starts_with('#')).map(str::to_owned)
        });
        (file, key)
    }

    fn read_users(&mut self) {
        for (name, dir) in subdirectories(&self.root.join(DATA_DIR).join("users")) {
            let file = dir.join("metadata.json");
            let modified = fs::metadata(&file).and_then(|m| m.modified()).ok();
            let metadata = match fs::read_to_string(&file) {
                Err(_) => {
                    self.fault(self.rel(&file), "is missing");
                    None
                }
                Ok(text) if text.trim().is_empty() => {
                    self.fault(self.rel(&file), "is empty (0 bytes)");
                    None
                }
                Ok(text) => match serde_json::from_str::<UserJson>(&text) {
                    Ok(json) => Some(json),
                    Err(error) => {
                        self.fault(self.rel(&file), format!("is not JSON ({error})"));
                        None
                    }
                },
            };
            let (key_file, authorized_key) = self.authorized_key(&name);
            self.users.push(SourceUser { name, file, metadata, authorized_key, key_file, modified });
        }
    }

    fn read_requests(&mut self) {
        let pending = self.root.join(DATA_DIR).join("pending");
        for file in json_files(&pending) {
            match read_json::<RegistrationJson>(&file) {
                Ok(json) => self.registrations.push((file, json)),
                Err(what) => self.fault(self.rel(&file), what),
            }
        }
        for file in json_files(&pending.join("key-changes")) {
            match read_json::<KeyChangeJson>(&file) {
                Ok(json) => self.key_changes.push((file, json)),
                Err(what) => self.fault(self.rel(&file), what),
            }
        }
    }

    fn read_vms(&mut self) {
        for (owner, user_dir) in subdirectories(&self.root.join(DATA_DIR).join("terraform")) {
            for (name, dir) in subdirectories(&user_dir) {
                if name == "_folder" || name.starts_with('.') {
                    continue;
                }
                let file = dir.join("metadata.json");
                let metadata = match read_json::<VmJson>(&file) {
                    Ok(json) => Some(json),
                    Err(what) => {
                        self.fault(self.rel(&file), what);
                        None
                    }
                };
                let main_tf = fs::read_to_string(dir.join("main.tf")).ok().map(|text| parse_main_tf(&text));
                let modified = ["main.tf", "metadata.json"]
                    .iter()
                    .filter_map(|f| fs::metadata(dir.join(f)).and_then(|m| m.modified()).ok())
                    .min();
                self.vms.push(SourceVm { owner: owner.clone(), name, dir, metadata, main_tf, modified });
            }
        }
    }

    fn read_clusters(&mut self) {
        for (owner, user_dir) in subdirectories(&self.root.join(DATA_DIR).join("clusters")) {
            for (name, dir) in subdirectories(&user_dir) {
                let file = dir.join("metadata.json");
                let metadata = match read_json::<ClusterJson>(&file) {
                    Ok(json) => Some(json),
                    Err(what) => {
                        self.fault(self.rel(&file), what);
                        None
                    }
                };
                self.clusters.push(SourceCluster { owner: owner.clone(), name, file, metadata });
            }
        }
    }

    fn read_ipam(&mut self) {
        let ipam = self.root.join(DATA_DIR).join("ipam");
        let allocations = ipam.join("allocations.tsv");
        for (line, fields) in tsv_rows(&allocations) {
            match fields.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                [user, start, at, ..] if start.parse::<Ipv4Addr>().is_ok() => self.allocations.push(AllocationRow {
                    line,
                    user: (*user).to_owned(),
                    start: start.parse().expect("checked"),
                    allocated_at: parse_time(at),
                }),
                _ => self.fault(
                    format!("{}:{line}", self.rel(&allocations)),
                    "is not `user<TAB>block_start<TAB>allocated_at`; skipped",
                ),
            }
        }
        let leases = ipam.join("leases.tsv");
        for (line, fields) in tsv_rows(&leases) {
            match fields.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                [address, user, resource, kind, at, ..] if address.parse::<Ipv4Addr>().is_ok() => {
                    self.leases.push(LeaseRow {
                        line,
                        address: address.parse().expect("checked"),
                        user: (*user).to_owned(),
                        resource: (*resource).to_owned(),
                        kind: (*kind).to_owned(),
                        allocated_at: parse_time(at),
                    })
                }
                _ => self.fault(
                    format!("{}:{line}", self.rel(&leases)),
                    "is not `ip<TAB>user<TAB>resource<TAB>type<TAB>allocated_at`; skipped",
                ),
            }
        }
    }
}

/// Subdirectories by name, sorted.
fn subdirectories(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| Some((entry.file_name().into_string().ok()?, entry.path())))
        .collect();
    found.sort();
    found
}

/// `*.json` files directly in `dir`, sorted.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    found.sort();
    found
}

/// A JSON file, or what is wrong with it.
fn read_json<T: for<'de> Deserialize<'de>>(file: &Path) -> Result<T, String> {
    let text = fs::read_to_string(file).map_err(|_| "is missing".to_owned())?;
    if text.trim().is_empty() {
        return Err("is empty (0 bytes)".to_owned());
    }
    serde_json::from_str(&text).map_err(|error| format!("is not valid JSON ({error})"))
}

/// Tab-separated rows with their 1-based line numbers; `#` header and blank lines skipped.
fn tsv_rows(file: &Path) -> Vec<(usize, Vec<String>)> {
    let Ok(text) = fs::read_to_string(file) else { return Vec::new() };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|(index, line)| (index + 1, line.split('\t').map(|field| field.trim().to_owned()).collect()))
        .collect()
}

/// The defaults sed baked into a VM's `main.tf`: `variable "num_cpus" { default = 4 }` and so on.
pub fn parse_main_tf(text: &str) -> MainTf {
    let default_of = |variable: &str| -> Option<String> {
        let start = text.find(&format!("variable \"{variable}\""))?;
        let block = &text[start..];
        let block = &block[..block.find('}').unwrap_or(block.len())];
        let value = block.split("default").nth(1)?;
        let value = value.trim_start().strip_prefix('=')?.lines().next()?.trim();
        Some(value.trim_matches('"').to_owned())
    };
    MainTf {
        num_cpus: default_of("num_cpus").and_then(|v| v.parse().ok()),
        memory: default_of("memory").and_then(|v| v.parse().ok()),
        disk_size: default_of("disk_size").and_then(|v| v.parse().ok()),
        template: default_of("template").filter(|v| !v.is_empty()),
        ip_address: default_of("ip_address").and_then(|v| v.parse().ok()),
    }
}
