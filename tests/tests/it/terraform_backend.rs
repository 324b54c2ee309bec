//! The server on the Terraform backend, with a fake `terraform` that keeps a small vSphere of
//! its own and checks what it is given.

use std::os::unix::fs::PermissionsExt;

use basphere_vsphere::testing::FakeTerraform;
use tests::server::Server;

#[test]
fn the_vm_journey_on_the_terraform_backend() {
    let dir = tempfile::tempdir().unwrap();
    let terraform = FakeTerraform::install(dir.path().join("terraform"), dir.path().join("fake-state"));
    let (fake, state) = (&terraform.binary, &terraform.state);
    let credentials = dir.path().join("vsphere.env");
    std::fs::write(
        &credentials,
        "export VSPHERE_USER='administrator@vsphere.local'\nexport VSPHERE_PASSWORD='secret'\n",
    )
    .unwrap();
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = format!(
        "backend:\n  vm: terraform\nvsphere:\n  credentials_file: {}\nterraform:\n  binary: {}\n",
        credentials.display(),
        fake.display()
    );

    let server = Server::start(dir.path(), Some(&config));
    let ready = server.http("GET", "/readyz", None, None);
    assert_eq!((ready.status, ready.json()["vm_backend"].as_str()), (200, Some("terraform")), "{}", ready.body);
    let alice = server.account("alice", 1, false);
    assert!(state.join("vsphere/folders/basphere-vms__alice").exists(), "the account's folder was applied");

    let created = server.http(
        "POST",
        "/api/v1/vms",
        Some(&alice),
        Some(r#"{"name":"web","os":"ubuntu-24.04","spec":"small","count":2}"#),
    );
    assert_eq!(created.status, 202, "{}", created.body);
    server.wait_idle();
    let vms = server.http("GET", "/api/v1/vms", Some(&alice), None).json();
    let states: Vec<&str> = vms["items"].as_array().unwrap().iter().map(|vm| vm["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["running", "running"], "{vms}");
    assert!(state.join("vsphere/vms/alice-web-1.json").exists() && state.join("vsphere/vms/alice-web-2.json").exists());
    let op = server
        .http(
            "GET",
            &format!("/api/v1/operations/{}", created.json()["operations"][0]["id"].as_str().unwrap()),
            Some(&alice),
            None,
        )
        .json();
    assert!(op["log_tail"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().contains("Apply complete")), "{op}");

    // Power changes need the vSphere API backend: the operation fails and says so.
    let stop = server.http("POST", "/api/v1/vms/web-1/stop", Some(&alice), None).json();
    server.wait_idle();
    let stop =
        server.http("GET", &format!("/api/v1/operations/{}", stop["id"].as_str().unwrap()), Some(&alice), None).json();
    assert_eq!(stop["state"], "failed");
    assert!(stop["error"].as_str().unwrap().contains("cannot change a VM's power state"), "{stop}");
    assert_eq!(server.http("GET", "/api/v1/vms/web-1", Some(&alice), None).json()["state"], "running");

    // A failed destroy keeps the VM and its address; the retry removes both.
    std::fs::write(state.join("behaviour/fail-destroy"), "1").unwrap();
    assert_eq!(server.http("DELETE", "/api/v1/vms/web-1", Some(&alice), None).status, 202);
    server.wait_idle();
    let vm = server.http("GET", "/api/v1/vms/web-1", Some(&alice), None).json();
    assert_eq!((vm["state"].as_str(), vm["ip"].as_str()), (Some("failed"), Some("10.254.0.32")), "{vm}");
    assert!(state.join("vsphere/vms/alice-web-1.json").exists());
    assert_eq!(server.http("DELETE", "/api/v1/vms/web-1", Some(&alice), None).status, 202);
    server.wait_idle();
    assert!(!state.join("vsphere/vms/alice-web-1.json").exists());
    let quota = server.http("GET", "/api/v1/quota", Some(&alice), None).json();
    assert_eq!((quota["usage"]["vms"].as_u64(), quota["usage"]["ips"].as_u64()), (Some(1), Some(1)));
}

#[test]
fn a_credentials_file_others_can_read_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("vsphere.env");
    std::fs::write(&credentials, "VSPHERE_USER=a\nVSPHERE_PASSWORD=b\n").unwrap();
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        format!("backend:\n  vm: terraform\nvsphere:\n  credentials_file: {}\n", credentials.display()),
    )
    .unwrap();
    let output = std::process::Command::new(&tests::server::binaries().server)
        .arg("--config")
        .arg(dir.path().join("config.yaml"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("readable by others") && stderr.contains("chmod 600"), "{stderr}");
}
