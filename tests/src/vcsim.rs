//! The vCenter simulator for the server's end-to-end tests: started with the default catalog's
//! templates and base folder, a server configuration pointing at it, and a provisioner of our own
//! to look at (and act on) vCenter behind the server's back.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use basphere_core::Config;
use basphere_vsphere::api::{VsphereApiProvisioner, VsphereApiSettings};
use basphere_vsphere::config::{BackendConfig, VsphereConfig};
use basphere_vsphere::credentials::Credentials;
use basphere_vsphere::vcsim::{Vcsim, VcsimOptions};

/// The simulator's inventory names, as a server configuration says them.
fn vsphere_config() -> VsphereConfig {
    let mut vsphere = BackendConfig::default().vsphere;
    vsphere.datacenter = "DC0".into();
    vsphere.cluster = "DC0_C0".into();
    vsphere.datastore = "LocalDS_0".into();
    vsphere.network = "VM Network".into();
    vsphere
}

pub fn start() -> Vcsim {
    let config = Config::default();
    let options = VcsimOptions {
        folder: config.vsphere.folder.clone(),
        templates: config.os_images.values().map(|os| os.template.clone()).collect(),
        method_delays: Vec::new(),
    };
    Vcsim::start(&options).expect("vcsim starts (apt-get install golang-go golang-github-vmware-govmomi-dev)")
}

/// A server configuration on the vsphere-api backend against `vcsim`, with its credentials file
/// (mode 600) written in `dir`.
pub fn server_config(vcsim: &Vcsim, dir: &Path) -> String {
    let credentials = dir.join("vsphere.env");
    std::fs::write(&credentials, format!("VSPHERE_USER={}\nVSPHERE_PASSWORD={}\n", vcsim.user, vcsim.password))
        .unwrap();
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).unwrap();
    let v = vsphere_config();
    // One worker: the simulator shares device objects between a template and its clones, and
    // concurrent clones of one template race inside it (the concurrency is tested in
    // basphere-vsphere with a template per VM).
    format!(
        "server:\n  workers: 1\nbackend:\n  vm: vsphere-api\nvsphere:\n  server: \"{}\"\n  datacenter: {}\n  cluster: {}\n  datastore: {}\n  \
         network: \"{}\"\n  folder: {}\n  credentials_file: {}\n  allow_unverified_ssl: true\n",
        vcsim.server,
        v.datacenter,
        v.cluster,
        v.datastore,
        v.network,
        v.folder,
        credentials.display()
    )
}

/// A provisioner of the test's own on the same vCenter.
pub fn provisioner(vcsim: &Vcsim) -> VsphereApiProvisioner {
    VsphereApiProvisioner::new(VsphereApiSettings {
        server: vcsim.server.clone(),
        credentials: Credentials { user: vcsim.user.clone(), password: vcsim.password.clone() },
        vsphere: vsphere_config(),
        os_images: Config::default().os_images,
        accept_invalid_certs: true,
    })
}
