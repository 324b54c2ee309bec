//! `vm_backend`, the constructor the server calls: the backend the configuration selects, its
//! sections checked, its credentials read.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use basphere_core::Config;

fn credentials(dir: &Path, user: &str, password: &str) -> std::path::PathBuf {
    let path = dir.join("vsphere.env");
    std::fs::write(&path, format!("VSPHERE_USER={user}\nVSPHERE_PASSWORD={password}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn error_of(yaml: &str, data_dir: &Path) -> String {
    let config = Config::from_yaml(yaml).expect("core accepts it");
    match basphere_vsphere::vm_backend(&config, data_dir) {
        Ok(backend) => panic!("{yaml} should be refused, got {}", backend.backend_name()),
        Err(error) => error.to_string(),
    }
}

#[test]
fn the_configuration_selects_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let backend = basphere_vsphere::vm_backend(&Config::default(), dir.path()).unwrap();
    assert_eq!(backend.backend_name(), "simulated");
    assert!(dir.path().join("simulated-vsphere.jsonl").exists(), "its inventory lives in the data directory");

    let file = credentials(dir.path(), "administrator@vsphere.local", "secret");
    let yaml = format!("backend: {{vm: terraform}}\nvsphere: {{credentials_file: {}}}\n", file.display());
    let backend = basphere_vsphere::vm_backend(&Config::from_yaml(&yaml).unwrap(), dir.path()).unwrap();
    assert_eq!(backend.backend_name(), "terraform");
    assert!(dir.path().join("terraform").is_dir(), "its working directories live in the data directory");

    #[cfg(feature = "vsphere-api")]
    {
        let yaml = format!("backend: {{vm: vsphere-api}}\nvsphere: {{credentials_file: {}}}\n", file.display());
        let backend = basphere_vsphere::vm_backend(&Config::from_yaml(&yaml).unwrap(), dir.path()).unwrap();
        assert_eq!(backend.backend_name(), "vsphere-api");
    }
}

#[test]
fn a_bad_section_or_credentials_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let error = error_of("backend: {vm: openstack}", dir.path());
    assert!(error.contains("invalid backend.vm") && error.contains("vsphere-api"), "{error}");
    let error = error_of("vsphere: {datacentre: DC1}", dir.path());
    assert!(error.contains("invalid vsphere") && error.contains("unknown field `datacentre`"), "{error}");
    let error = error_of("backend: {vm: terraform}", dir.path());
    assert!(error.contains("invalid vsphere.credentials_file") && error.contains("required"), "{error}");

    let missing = dir.path().join("missing.env");
    let error = error_of(
        &format!("backend: {{vm: terraform}}\nvsphere: {{credentials_file: {}}}\n", missing.display()),
        dir.path(),
    );
    assert!(error.contains("invalid vsphere.credentials_file") && error.contains("missing.env"), "{error}");
    let file = credentials(dir.path(), "u", "p");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = error_of(
        &format!("backend: {{vm: terraform}}\nvsphere: {{credentials_file: {}}}\n", file.display()),
        dir.path(),
    );
    assert!(error.contains("chmod 600"), "{error}");
}

/// The server's own path to a wrong password: the constructor with a credentials file the
/// simulator refuses, then the preflight the server runs at start.
#[cfg(feature = "vsphere-api")]
#[tokio::test]
async fn a_wrong_password_names_the_credentials_file() {
    use basphere_vsphere::vcsim::{Vcsim, VcsimOptions};
    let config = Config::default();
    let vcsim = Vcsim::start(&VcsimOptions {
        folder: config.vsphere.folder.clone(),
        templates: config.os_images.values().map(|os| os.template.clone()).collect(),
        method_delays: Vec::new(),
    })
    .expect("vcsim starts");
    let dir = tempfile::tempdir().unwrap();
    let yaml = |file: &Path| {
        format!(
            "backend: {{vm: vsphere-api}}\nvsphere: {{server: \"{}\", datacenter: DC0, cluster: DC0_C0, datastore: \
             LocalDS_0, credentials_file: {}, allow_unverified_ssl: true}}\n",
            vcsim.server,
            file.display()
        )
    };
    let file = credentials(dir.path(), &vcsim.user, "not-the-password");
    let backend = basphere_vsphere::vm_backend(&Config::from_yaml(&yaml(&file)).unwrap(), dir.path()).unwrap();
    let error = backend.preflight().await.expect_err("vCenter refuses the login").to_string();
    for said in
        ["invalid vsphere.credentials_file", &file.display().to_string(), "VSPHERE_PASSWORD", "refused the login"]
    {
        assert!(error.contains(said), "{said:?} in {error}");
    }

    let file = credentials(dir.path(), &vcsim.user, &vcsim.password);
    let backend = basphere_vsphere::vm_backend(&Config::from_yaml(&yaml(&file)).unwrap(), dir.path()).unwrap();
    backend.preflight().await.expect("the right password logs in");
}
