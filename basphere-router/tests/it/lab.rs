//! A small network of namespaces for one test: a "host" namespace holding the WAN bridge (as the
//! router host would), an "outside" namespace on the WAN, "VMs" on a tenant's LAN bridge, and
//! listeners that say who they are and whom they see. Everything is removed on drop, by name and
//! process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use basphere_router::{LinuxRouter, LinuxRouterSettings};

/// The outside host's address on the WAN.
pub const OUTSIDE: &str = "192.0.2.100";

/// Whether this machine can run the tests (root, `ip`, `nft`, `ping`, `python3`); the reason
/// when not.
pub fn missing() -> Option<String> {
    if !nix_uid_is_root() {
        return Some("the tenant router tests need root (network namespaces)".into());
    }
    for tool in ["ip", "nft", "ping", "python3"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output();
        if !found.is_ok_and(|output| output.status.success()) {
            return Some(format!("the tenant router tests need `{tool}`"));
        }
    }
    None
}

fn nix_uid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| status.lines().find(|line| line.starts_with("Uid:")).map(str::to_owned))
        .is_some_and(|line| line.split_whitespace().nth(1) == Some("0"))
}

/// Whether this kernel makes VLAN (802.1Q) interfaces: tried on a veth in a namespace of its own.
pub fn vlans_supported() -> bool {
    let probe = format!("bt{}vlan-probe", std::process::id() % 100_000);
    run(&["ip", "netns", "add", &probe]);
    let _ = succeeds(&["ip", "-n", &probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1"]);
    let supported =
        succeeds(&["ip", "-n", &probe, "link", "add", "link", "p0", "name", "p0.5", "type", "vlan", "id", "5"]);
    run(&["ip", "netns", "del", &probe]);
    supported
}

/// Runs `words`, failing the test when it fails.
pub fn run(words: &[&str]) -> String {
    let output = Command::new(words[0]).args(&words[1..]).output().expect("the command starts");
    assert!(output.status.success(), "{words:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether `words` succeeds.
pub fn succeeds(words: &[&str]) -> bool {
    Command::new(words[0])
        .args(&words[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Every namespace whose name starts with `prefix`.
pub fn namespaces(prefix: &str) -> Vec<String> {
    run(&["ip", "netns", "list"])
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

pub struct Lab {
    pub prefix: String,
    pub host: String,
    pub outside: String,
    /// The distributed switch's side of the router host's trunk: VMs on a VLAN hang off it.
    pub switch: String,
    vms: AtomicU32,
    listeners: std::sync::Mutex<Vec<Child>>,
}

impl Lab {
    /// The host namespace with the WAN bridge `wan` (192.0.2.0/24) and the outside namespace on
    /// it at [`OUTSIDE`].
    pub fn new(test: &str) -> Lab {
        let prefix = format!("bt{}{test}-", std::process::id() % 100_000);
        for stale in namespaces(&prefix) {
            run(&["ip", "netns", "del", &stale]);
        }
        let (host, outside, switch) = (format!("{prefix}host"), format!("{prefix}out"), format!("{prefix}sw"));
        let lab = Lab {
            prefix,
            host: host.clone(),
            outside: outside.clone(),
            switch: switch.clone(),
            vms: AtomicU32::new(0),
            listeners: Default::default(),
        };
        run(&["ip", "netns", "add", &host]);
        run(&["ip", "-n", &host, "link", "add", "wan", "type", "bridge"]);
        run(&["ip", "-n", &host, "link", "set", "wan", "up"]);
        run(&["ip", "netns", "add", &outside]);
        run(&["ip", "-n", &host, "link", "add", "out", "type", "veth", "peer", "name", "eth0", "netns", &outside]);
        run(&["ip", "-n", &host, "link", "set", "out", "master", "wan", "up"]);
        run(&["ip", "-n", &outside, "addr", "add", &format!("{OUTSIDE}/24"), "dev", "eth0"]);
        run(&["ip", "-n", &outside, "link", "set", "eth0", "up"]);
        run(&["ip", "-n", &outside, "link", "set", "lo", "up"]);
        // The trunk: tagged frames between the router host and the switch.
        run(&["ip", "netns", "add", &switch]);
        run(&["ip", "-n", &host, "link", "add", "trunk", "type", "veth", "peer", "name", "trunk", "netns", &switch]);
        run(&["ip", "-n", &host, "link", "set", "trunk", "up"]);
        run(&["ip", "-n", &switch, "link", "set", "trunk", "up"]);
        lab
    }

    /// The router under test, making its namespaces as `<prefix>r-<tenant>`.
    pub fn router(&self) -> LinuxRouter {
        LinuxRouter::new(LinuxRouterSettings {
            namespace_prefix: format!("{}r-", self.prefix),
            host_namespace: Some(self.host.clone()),
            wan_bridge: "wan".into(),
            trunk: None,
            timeout: Duration::from_secs(20),
        })
        .expect("valid settings")
    }

    /// The router under test with the lab's trunk (`trunk` in the host namespace).
    pub fn router_on_trunk(&self) -> LinuxRouter {
        LinuxRouter::new(LinuxRouterSettings {
            namespace_prefix: format!("{}r-", self.prefix),
            host_namespace: Some(self.host.clone()),
            wan_bridge: "wan".into(),
            trunk: Some("trunk".into()),
            timeout: Duration::from_secs(20),
        })
        .expect("valid settings")
    }

    /// A "VM" of the tenant whose router namespace is `router_ns`: a namespace with `eth0` on the
    /// LAN bridge `lan`, at `address`/24, MTU 1450, its default route through `gateway`.
    pub fn vm(&self, router_ns: &str, name: &str, lan: &str, address: &str, gateway: &str) -> String {
        let vm = format!("{}v-{name}", self.prefix);
        let port = format!("v{}", self.vms.fetch_add(1, Ordering::SeqCst));
        run(&["ip", "netns", "add", &vm]);
        run(&["ip", "-n", router_ns, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &vm]);
        run(&["ip", "-n", router_ns, "link", "set", &port, "mtu", "1450", "master", lan, "up"]);
        run(&["ip", "-n", &vm, "link", "set", "lo", "up"]);
        run(&["ip", "-n", &vm, "link", "set", "eth0", "mtu", "1450", "up"]);
        run(&["ip", "-n", &vm, "addr", "add", &format!("{address}/24"), "dev", "eth0"]);
        run(&["ip", "-n", &vm, "route", "add", "default", "via", gateway]);
        vm
    }

    /// A "VM" on the port group of VLAN `vlan`: a namespace whose `eth0` is that VLAN of the
    /// switch's side of the trunk, at `address`/24, MTU 1450, its default route through `gateway`.
    pub fn vlan_vm(&self, name: &str, vlan: u16, address: &str, gateway: &str) -> String {
        let vm = format!("{}v-{name}", self.prefix);
        run(&["ip", "netns", "add", &vm]);
        let id = vlan.to_string();
        run(&[
            "ip",
            "-n",
            &self.switch,
            "link",
            "add",
            "link",
            "trunk",
            "name",
            "eth0",
            "netns",
            &vm,
            "type",
            "vlan",
            "id",
            &id,
        ]);
        run(&["ip", "-n", &vm, "link", "set", "lo", "up"]);
        run(&["ip", "-n", &vm, "link", "set", "eth0", "mtu", "1450", "up"]);
        run(&["ip", "-n", &vm, "addr", "add", &format!("{address}/24"), "dev", "eth0"]);
        run(&["ip", "-n", &vm, "route", "add", "default", "via", gateway]);
        vm
    }

    /// A TCP listener in `namespace` on `port` answering every connection with
    /// `<label> <peer address>`; stopped with the lab.
    pub fn listen(&self, namespace: &str, port: u16, label: &str) {
        const SERVER: &str = "import socket, sys\n\
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
            s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(16); print('ready', flush=True)\n\
            while True:\n    c, peer = s.accept(); c.sendall(f'{sys.argv[2]} {peer[0]}\\n'.encode()); c.close()\n";
        let mut child = Command::new("ip")
            .args(["netns", "exec", namespace, "python3", "-c", SERVER, &port.to_string(), label])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the listener starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("the listener says ready");
        assert_eq!(line.trim(), "ready", "listener in {namespace}");
        self.listeners.lock().unwrap().push(child);
    }

    /// What the listener at `address:port` answers a connection from `namespace` (within 2 s),
    /// or `None` when nothing answers.
    pub fn connect(&self, namespace: &str, address: &str, port: u16) -> Option<String> {
        const CLIENT: &str = "import socket, sys\n\
            c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)\n\
            print(c.makefile().readline().strip())\n";
        let output = Command::new("ip")
            .args(["netns", "exec", namespace, "python3", "-c", CLIENT, address, &port.to_string()])
            .stderr(Stdio::null())
            .output()
            .expect("the client starts");
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Whether one ping of `size` bytes (not fragmented, when `size` is given) from `namespace`
    /// reaches `address` within a second.
    pub fn ping(&self, namespace: &str, address: &str, size: Option<u16>) -> bool {
        let mut words = vec!["ip", "netns", "exec", namespace, "ping", "-n", "-c", "1", "-W", "1"];
        let size = size.map(|size| size.to_string());
        if let Some(size) = &size {
            words.extend(["-M", "do", "-s", size.as_str()]);
        }
        words.push(address);
        succeeds(&words)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for mut child in self.listeners.lock().unwrap().drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for namespace in namespaces(&self.prefix) {
            let _ = Command::new("ip").args(["netns", "del", &namespace]).status();
        }
    }
}
