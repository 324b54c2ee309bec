//! The vSphere API backend as the server runs it: `AgentProvisioner` driving the
//! `basphere-vsphere-api` program against the vCenter simulator. The provisioner contract through
//! the pipe, errors that read as the in-process backend's, concurrent calls answered out of
//! order, tenant port groups made and removed, and an agent killed with SIGKILL in the middle of
//! a clone.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use basphere_core::provisioner::{PortGroupSpec, PowerAction, PowerState, Provisioner, TenantPortGroups};
use basphere_core::testing::{self, provisioner::request};
use basphere_vsphere::agent::{self, AgentProvisioner};
use basphere_vsphere::api::VsphereApiProvisioner;
use basphere_vsphere::vcsim::{Vcsim, VcsimOptions};

use crate::vsphere_api::{config, port_group, provisioner_settings, simulator, wrong_template, SWITCH};

fn program() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_basphere-vsphere-api"))
}

fn through_agent(settings: &basphere_vsphere::api::VsphereApiSettings) -> AgentProvisioner {
    AgentProvisioner::new(program(), settings).expect("settings serialise")
}

/// Whether `pid` is a live agent (not a zombie left unreaped).
fn running_agent(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    // The kernel keeps 15 bytes of a command's name.
    let name = status.lines().find_map(|line| line.strip_prefix("Name:")).unwrap_or_default().trim().to_owned();
    let state = status.lines().find_map(|line| line.strip_prefix("State:")).unwrap_or_default().trim().to_owned();
    !name.is_empty() && agent::AGENT.starts_with(&name) && !state.starts_with('Z')
}

#[tokio::test]
async fn passes_the_provisioner_conformance_suite_through_its_agent() {
    let config = config();
    let vcsim = simulator(&config);
    let vsphere = through_agent(&provisioner_settings(&vcsim, &config));
    assert_eq!(vsphere.backend_name(), "vsphere-api");
    assert_eq!(vsphere.agent_pid().await, None, "started by the first call");
    vsphere.preflight().await.expect("preflight passes on the simulator");
    let pid = vsphere.agent_pid().await.expect("an agent runs");
    testing::provisioner::check_all(&vsphere).await;
    assert_eq!(vsphere.agent_pid().await, Some(pid), "one agent served every call");
    assert!(running_agent(pid));
}

/// What the server reports is what the backend in the same process would have said.
#[tokio::test]
async fn its_errors_read_as_the_backend_s_own() {
    let config = config();
    let vcsim = simulator(&config);
    let mut wrong = provisioner_settings(&vcsim, &config);
    wrong.vsphere.datastore = "no-such-datastore".into();
    wrong.credentials.password = "wrong".into();
    wrong.vsphere.credentials_file = Some("/etc/basphere/vsphere.env".into());
    let direct = VsphereApiProvisioner::new(wrong.clone()).preflight().await.expect_err("bad login");
    let piped = through_agent(&wrong).preflight().await.expect_err("bad login");
    assert_eq!((piped.kind(), piped.to_string()), (direct.kind(), direct.to_string()));
    assert!(piped.to_string().contains("invalid vsphere.credentials_file"), "{piped}");

    let mut wrong = provisioner_settings(&vcsim, &config);
    wrong.vsphere.datastore = "no-such-datastore".into();
    let direct = VsphereApiProvisioner::new(wrong.clone()).preflight().await.expect_err("no datastore");
    let piped = through_agent(&wrong).preflight().await.expect_err("no datastore");
    assert_eq!((piped.kind(), piped.to_string()), (direct.kind(), direct.to_string()));

    // A create whose template vanished: the same error, nothing made.
    let vsphere = through_agent(&provisioner_settings(&vcsim, &wrong_template(&config)));
    let mut request = request("alice", "web", [10, 254, 0, 33]);
    request.os = wrong_template(&config).os_images["ubuntu-24.04"].clone();
    vsphere.ensure_folder(&request.owner).await.unwrap();
    let error = vsphere.create_vm(&request).await.expect_err("no template");
    assert!(error.to_string().contains("templates.os.ubuntu-24.04.template"), "{error}");
    assert!(vsphere.inventory().await.unwrap().is_empty());
    let missing = vsphere.power(&request.vm_ref(), PowerAction::Start).await.expect_err("no such VM");
    assert_eq!(missing.kind(), "not-found", "{missing}");
}

/// Tenant port groups through the pipe: made (twice, one result), a VM's NIC put on one, their
/// errors with the kinds the backend gave them (a missing switch, a missing port group, a port
/// group that is not Basphere's), removed (twice).
#[tokio::test]
async fn tenant_port_groups_through_its_agent() {
    let config = config();
    let vcsim = simulator(&config);
    let vsphere = through_agent(&provisioner_settings(&vcsim, &config));
    let admin = crate::vsphere_api::admin(&vcsim).await;
    let spec = TenantPortGroups {
        tenant: "dave".parse().unwrap(),
        switch: SWITCH.into(),
        port_groups: vec![PortGroupSpec { name: "basphere-dave-lan1".into(), vlan: 2001 }],
    };
    vsphere.ensure_port_groups(&spec).await.expect("port groups through the agent");
    vsphere.ensure_port_groups(&spec).await.expect("and again");
    let made = port_group(&admin, "basphere-dave-lan1").await.expect("made");
    assert_eq!(made.description.as_deref(), Some("Basphere tenant network of dave"));

    let mut app = request("dave", "app", [10, 0, 1, 10]);
    app.network.port_group = Some("basphere-dave-lan1".into());
    vsphere.ensure_folder(&app.owner).await.unwrap();
    vsphere.create_vm(&app).await.expect("a VM on the port group");

    let elsewhere = TenantPortGroups { switch: "no-such-switch".into(), ..spec.clone() };
    let error = vsphere.ensure_port_groups(&elsewhere).await.expect_err("no such switch");
    assert_eq!(
        (error.kind(), error.to_string().as_str()),
        ("not-found", "distributed switch not found: no-such-switch")
    );
    let mut astray = request("dave", "astray", [10, 0, 1, 11]);
    astray.network.port_group = Some("basphere-dave-lan9".into());
    let error = vsphere.create_vm(&astray).await.expect_err("no such port group");
    assert_eq!((error.kind(), error.to_string().as_str()), ("not-found", "port group not found: basphere-dave-lan9"));
    let thief = TenantPortGroups { tenant: "erin".parse().unwrap(), ..spec.clone() };
    let error = vsphere.ensure_port_groups(&thief).await.expect_err("dave's port group");
    assert_eq!(error.kind(), "already-exists", "{error}");
    assert!(error.to_string().starts_with("port group already exists: basphere-dave-lan1"), "{error}");

    vsphere.destroy_vm(&app.vm_ref()).await.unwrap();
    vsphere.remove_port_groups(&spec).await.expect("removed through the agent");
    vsphere.remove_port_groups(&spec).await.expect("and again");
    assert!(port_group(&admin, "basphere-dave-lan1").await.is_none(), "gone");
}

/// Calls run at once in the agent: a slow clone does not hold up a power call behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_call_does_not_hold_up_the_others() {
    let config = config();
    let (vcsim, templates) = crate::vsphere_api::simulator_with_templates(&config, 10);
    let vsphere = Arc::new(through_agent(&provisioner_settings(&vcsim, &config)));
    let first = request("alice", "web-1", [10, 254, 0, 40]);
    vsphere.ensure_folder(&first.owner).await.unwrap();
    vsphere.create_vm(&first).await.unwrap();
    // Ten creates and ten power calls on the first VM interleave; every one gets its own answer.
    let creates: Vec<_> = (0..10u8)
        .map(|i| {
            let vsphere = vsphere.clone();
            let mut request = request("alice", &format!("many-{i}"), [10, 254, 0, 50 + i]);
            request.os.template = templates[usize::from(i)].clone();
            tokio::spawn(async move { vsphere.create_vm(&request).await.map(|handle| (request.id, handle)) })
        })
        .collect();
    let powers: Vec<_> = (0..10)
        .map(|_| {
            let vsphere = vsphere.clone();
            let vm = first.vm_ref();
            tokio::spawn(async move { vsphere.power(&vm, PowerAction::Start).await })
        })
        .collect();
    for power in powers {
        assert_eq!(power.await.unwrap().unwrap(), PowerState::On);
    }
    let mut made = Vec::new();
    for create in creates {
        made.push(create.await.unwrap().expect("create"));
    }
    let inventory = vsphere.inventory().await.unwrap();
    assert_eq!(inventory.len(), 11);
    for (id, handle) in made {
        let listed = inventory.iter().find(|vm| vm.basphere_id == Some(id)).expect("listed");
        assert_eq!(listed.backend_id, handle.backend_id, "each answer went to its own call");
    }
}

/// SIGKILL to the agent while it clones: the call fails saying so, the next call starts a new
/// agent, and the create made again adopts the VM instead of making a second one.
#[tokio::test]
async fn an_agent_killed_in_a_clone_fails_that_call_and_the_next_starts_another() {
    let config = config();
    let vcsim = Vcsim::start(&VcsimOptions {
        folder: config.vsphere.folder.clone(),
        templates: config.os_images.values().map(|os| os.template.clone()).collect(),
        method_delays: vec![("CloneVM_Task".into(), 1500)],
    })
    .expect("vcsim starts");
    let vsphere = Arc::new(through_agent(&provisioner_settings(&vcsim, &config)));
    let request = request("alice", "web-1", [10, 254, 0, 40]);
    vsphere.ensure_folder(&request.owner).await.unwrap();
    let first = vsphere.agent_pid().await.expect("an agent runs");

    let clones = || vcsim.calls().iter().filter(|method| *method == "CloneVM_Task").count();
    assert_eq!(clones(), 0);
    let create = {
        let vsphere = vsphere.clone();
        let request = request.clone();
        tokio::spawn(async move { vsphere.create_vm(&request).await })
    };
    // The kill lands while the clone is in flight: vCenter has the request, and answers it 1.5 s
    // after it arrived.
    until(Duration::from_secs(60), "the agent asks vCenter to clone", async || clones() == 1).await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let error = create.await.unwrap().expect_err("the agent died under the call");
    assert_eq!(error.kind(), "backend", "{error}");
    let text = error.to_string();
    assert!(text.contains("ended before it answered") && text.contains("SIGKILL"), "{text}");

    // vCenter goes on with the clone the dead agent asked for; the next call starts another
    // agent, which finds it (once vCenter has made it) and adopts it.
    until(Duration::from_secs(60), "vCenter makes the clone the killed agent asked for", async || {
        vsphere.inventory().await.unwrap().iter().any(|vm| vm.basphere_id == Some(request.id))
    })
    .await;
    assert_eq!(clones(), 1, "nothing cloned again yet");
    let handle = vsphere.create_vm(&request).await.expect("the create made again adopts the clone");
    assert_eq!(clones(), 1, "the create made again adopted the clone instead of cloning again");
    let second = vsphere.agent_pid().await.expect("another agent runs");
    assert_ne!(second, first);
    assert!(running_agent(second) && !running_agent(first), "the dead agent was reaped, another runs");
    let inventory = vsphere.inventory().await.unwrap();
    assert_eq!(inventory.len(), 1, "one VM, not two: {inventory:?}");
    assert_eq!((inventory[0].basphere_id, &inventory[0].backend_id), (Some(request.id), &handle.backend_id));
    vsphere.destroy_vm(&request.vm_ref()).await.unwrap();
    assert!(vsphere.inventory().await.unwrap().is_empty());
}

/// Polls `condition` every 20 ms until it holds; fails naming `what` after `within`.
async fn until(within: Duration, what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "waited {within:?} in vain until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Without its agent, the backend says where it looked and what to do, naming the setting.
#[tokio::test]
async fn a_missing_agent_is_a_clear_error() {
    // Where the package puts it, beside a build's programs, or one level up from a test program.
    let dir = tempfile::tempdir().unwrap();
    let (bin, lib, deps) = (dir.path().join("usr/bin"), dir.path().join("usr/lib/basphere"), dir.path().join("deps"));
    for made in [&bin, &lib, &deps] {
        std::fs::create_dir_all(made).unwrap();
    }
    let error = agent::locate_for(&bin.join("basphere-server")).expect_err("no agent installed");
    let text = error.to_string();
    assert!(text.starts_with("invalid backend.vm:"), "{text}");
    assert!(text.contains(&bin.join("basphere-vsphere-api").display().to_string()), "{text}");
    assert!(text.contains("../lib/basphere/basphere-vsphere-api"), "{text}");
    std::fs::write(lib.join("basphere-vsphere-api"), "").unwrap();
    let found = agent::locate_for(&bin.join("basphere-server")).unwrap();
    assert_eq!(found.canonicalize().unwrap(), lib.join("basphere-vsphere-api").canonicalize().unwrap());
    std::fs::write(bin.join("basphere-vsphere-api"), "").unwrap();
    assert_eq!(agent::locate_for(&bin.join("basphere-server")).unwrap(), bin.join("basphere-vsphere-api"));
    assert!(agent::locate_for(&deps.join("it-0123")).is_err(), "only a test program's own build counts");
    std::fs::write(dir.path().join("basphere-vsphere-api"), "").unwrap();
    assert_eq!(
        agent::locate_for(&deps.join("it-0123")).unwrap().canonicalize().unwrap(),
        dir.path().join("basphere-vsphere-api").canonicalize().unwrap()
    );

    let config = config();
    let settings = basphere_vsphere::api::VsphereApiSettings {
        server: "127.0.0.1:9".into(),
        credentials: basphere_vsphere::credentials::Credentials { user: "u".into(), password: "p".into() },
        vsphere: basphere_vsphere::config::BackendConfig::from_config(&config).unwrap().vsphere,
        os_images: config.os_images.clone(),
        accept_invalid_certs: false,
    };
    let vsphere = AgentProvisioner::new("/nonexistent/basphere-vsphere-api".into(), &settings).unwrap();
    let error = vsphere.preflight().await.expect_err("no such program");
    assert_eq!(error.kind(), "backend");
    assert!(
        error.to_string().contains("cannot start the vSphere API agent /nonexistent/basphere-vsphere-api"),
        "{error}"
    );
}

/// The vCenter sessions open now.
async fn sessions(admin: &Arc<vim_rs::core::client::Client>) -> usize {
    let manager = admin.service_content().session_manager.clone().expect("a session manager");
    vim_rs::mo::SessionManager::new(admin.clone(), &manager.value)
        .session_list()
        .await
        .expect("the session list")
        .unwrap_or_default()
        .len()
}

/// systemd stopping the service sends SIGTERM to the agent too: it logs out of vCenter (leaving
/// no session for vCenter to expire) and ends cleanly; so does one whose server dropped it.
#[tokio::test]
async fn a_stopped_agent_logs_out_and_ends() {
    let config = config();
    let vcsim = simulator(&config);
    let admin = crate::vsphere_api::admin(&vcsim).await;
    let before = sessions(&admin).await;
    let vsphere = through_agent(&provisioner_settings(&vcsim, &config));
    vsphere.preflight().await.unwrap();
    assert_eq!(sessions(&admin).await, before + 1, "the agent logged in");
    let pid = vsphere.agent_pid().await.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    for _ in 0..250 {
        if vsphere.agent_pid().await.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(vsphere.agent_pid().await, None, "the agent ended on SIGTERM");
    assert!(!running_agent(pid));
    assert_eq!(sessions(&admin).await, before, "the agent logged out");

    // The next call starts another; dropping the provisioner ends it the same way.
    vsphere.preflight().await.unwrap();
    assert_eq!(sessions(&admin).await, before + 1);
    let pid = vsphere.agent_pid().await.unwrap();
    drop(vsphere);
    for _ in 0..250 {
        if !running_agent(pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!running_agent(pid), "the agent ended with its provisioner");
    assert_eq!(sessions(&admin).await, before, "the agent logged out");
}
