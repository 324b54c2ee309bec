//! Basphere's Kubernetes cluster backend: Cluster API with the vSphere provider (CAPV), kube-vip
//! for the control-plane VIP, and the in-cluster IPAM provider holding exactly the node
//! addresses Basphere leased.
//!
//! `render` makes every object of a cluster for either contract version, `kubevip` the static
//! pod serving the VIP, and `status` reads a cluster's state from its conditions.

pub mod client;
pub mod fake;
pub mod kubevip;
pub mod layout;
pub mod render;
pub mod schema;
pub mod status;

mod config;

use std::path::Path;
use std::sync::Arc;

use basphere_core::cluster_provisioner::{ClusterProvisioner, NoClusters};
use basphere_core::{Config, Result};

pub use client::{CapiProvisioner, VersionChoice};
pub use config::{BackendKind, CapiConfig, VsphereSite};

/// The cluster backend the server runs, and what it keeps running (the simulated management
/// cluster's server, when it is the simulated one).
pub struct ClusterBackend {
    pub provisioner: Arc<dyn ClusterProvisioner>,
    pub simulated: Option<Arc<fake::FakeManagementCluster>>,
    _running: Option<fake::Running>,
}

/// The simulated management cluster's kubeconfig, in the data directory.
pub const SIMULATED_KUBECONFIG: &str = "simulated-management-kubeconfig";

/// Builds the backend `management_cluster.backend` names. The simulated one is a management
/// cluster inside this process, kept in `<data_dir>/simulated-management-cluster.json` and
/// reached over loopback through a kubeconfig, with the same client a real one gets. Loopback
/// is open to every user of the machine, so it takes only requests with its token, made anew at
/// every start and written only to `<data_dir>/simulated-management-kubeconfig` (mode 0600).
/// `site` is what the VM backend's sections say of vSphere, parsed by the VM backend's crate.
pub async fn cluster_backend(config: &Config, site: &VsphereSite, data_dir: &Path) -> Result<ClusterBackend> {
    let settings = CapiConfig::from_config(config, site)?;
    match settings.backend {
        BackendKind::None => Ok(ClusterBackend { provisioner: Arc::new(NoClusters), simulated: None, _running: None }),
        BackendKind::ClusterApi => {
            let provisioner = CapiProvisioner::connect(&settings.kubeconfig, settings.layout, settings.choice).await?;
            Ok(ClusterBackend { provisioner: Arc::new(provisioner), simulated: None, _running: None })
        }
        BackendKind::Simulated => {
            let io = |what: &str, error: std::io::Error| {
                basphere_core::Error::backend("simulated management cluster", format!("{what}: {error}"))
            };
            let fake = fake::FakeManagementCluster::with_journal(
                settings.simulated_step,
                data_dir.join("simulated-management-cluster.json"),
            )
            .map_err(|e| io("reading its journal", e))?;
            fake.install_identity(&settings.layout.identity);
            let (address, running) =
                fake.serve("127.0.0.1:0".parse().expect("a socket address")).await.map_err(|e| io("listening", e))?;
            let path = data_dir.join(SIMULATED_KUBECONFIG);
            let provisioner = fake.connect(address, &path, settings.layout, settings.choice).await?;
            Ok(ClusterBackend { provisioner: Arc::new(provisioner), simulated: Some(fake), _running: Some(running) })
        }
    }
}

/// Writes `text` to `path` readable and writable by this user only: into a new file made with
/// mode 0600, renamed over the old one, so no one ever sees it with wider rights.
pub(crate) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}
