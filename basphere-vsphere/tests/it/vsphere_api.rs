//! `VsphereApiProvisioner` against the govmomi vCenter simulator (built from Debian's sources and
//! started per test): the provisioner contract, 20 concurrent lifecycles, preflight errors, a wrong
//! password, a VM deleted behind Basphere's back, adoption after a crash, a name taken by a VM
//! that is not Basphere's, a lost session, a dropped connection, tenant port groups (their VLAN
//! and marker as vCenter holds them, a VM's NIC on one, a port group of the name that is not
//! Basphere's, concurrent makers).

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine;
use basphere_core::provisioner::{PortGroupSpec, PowerAction, PowerState, Provisioner, TenantPortGroups, VmRequest};
use basphere_core::testing::{self, provisioner::request};
use basphere_core::{Config, Error};
use basphere_vsphere::api::{VsphereApiProvisioner, VsphereApiSettings};
use basphere_vsphere::config::BackendConfig;
use basphere_vsphere::credentials::Credentials;
use basphere_vsphere::vcsim::{Vcsim, VcsimOptions};
use vim_rs::core::client::{ClientBuilder, TransportMode};
use vim_rs::core::pc_retrieve::ObjectRetriever;
use vim_rs::mo::{DistributedVirtualSwitch, SearchIndex, VirtualMachine, VmwareDistributedVirtualSwitch};
use vim_rs::types::boxed_types::ValueElements;
use vim_rs::types::convert::CastFrom;
use vim_rs::types::enums::MoTypesEnum;
use vim_rs::types::structs::{
    DvPortgroupConfigSpec, InheritablePolicy, ManagedObjectReference, VMwareDvsPortSetting, VirtualDisk,
    VirtualEthernetCardDistributedVirtualPortBackingInfo, VirtualMachineCloneSpec,
    VmwareDistributedVirtualSwitchVlanIdSpec, VmwareDistributedVirtualSwitchVlanSpec,
};
use vim_rs::types::traits::VirtualEthernetCardTrait;
use vim_rs::types::vim_any::VimAny;
use vim_rs::vim_retrievable;

vim_retrievable!(
    struct Observed: VirtualMachine {
        name = "name",
        power_state = "runtime.power_state",
        cpu = "config.hardware.num_cpu",
        memory_mb = "config.hardware.memory_mb",
        devices = "config.hardware.device"?,
        extra = "config.extra_config"?,
        annotation = "config.annotation"?,
    }
);

/// The default catalog and base folder.
pub(crate) fn config() -> Config {
    Config::default()
}

pub(crate) fn simulator(config: &Config) -> Vcsim {
    let options = VcsimOptions {
        folder: config.vsphere.folder.clone(),
        templates: config.os_images.values().map(|os| os.template.clone()).collect(),
        method_delays: Vec::new(),
    };
    Vcsim::start(&options).expect("vcsim starts (apt-get install golang-go golang-github-vmware-govmomi-dev)")
}

/// A simulator that also holds `count` more templates, `template-0` on: one per VM cloned
/// concurrently, since the simulator's concurrent clones of one template collide on its disk
/// files (FileNotFound); a real vCenter copies.
pub(crate) fn simulator_with_templates(config: &Config, count: usize) -> (Vcsim, Vec<String>) {
    let templates: Vec<String> = (0..count).map(|i| format!("template-{i}")).collect();
    let vcsim = Vcsim::start(&VcsimOptions {
        folder: config.vsphere.folder.clone(),
        templates: config.os_images.values().map(|os| os.template.clone()).chain(templates.iter().cloned()).collect(),
        method_delays: Vec::new(),
    })
    .expect("vcsim starts");
    (vcsim, templates)
}

fn provisioner(vcsim: &Vcsim, config: &Config) -> VsphereApiProvisioner {
    VsphereApiProvisioner::new(provisioner_settings(vcsim, config))
}

/// An independent client, playing the admin (or another tool) acting on vCenter directly.
pub(crate) async fn admin(vcsim: &Vcsim) -> Arc<vim_rs::core::client::Client> {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .danger_accept_invalid_certs(true)
        .danger_accept_invalid_hostnames(true)
        .build()
        .unwrap();
    ClientBuilder::new(&vcsim.server, http)
        .basic_authn(&vcsim.user, &vcsim.password)
        .transport(TransportMode::Soap)
        .build()
        .await
        .unwrap()
}

async fn find(client: &Arc<vim_rs::core::client::Client>, path: &str) -> Option<String> {
    let index = client.service_content().search_index.clone().unwrap();
    SearchIndex::new(client.clone(), &index.value).find_by_inventory_path(path).await.unwrap().map(|vm| vm.value)
}

async fn observe(client: &Arc<vim_rs::core::client::Client>, request: &VmRequest) -> Option<Observed> {
    let path = format!("DC0/vm/basphere-vms/{}/{}", request.owner, request.vsphere_name());
    let id = find(client, &path).await?;
    let retriever = ObjectRetriever::new(client.clone()).unwrap();
    let moref = vim_rs::types::structs::ManagedObjectReference {
        r#type: vim_rs::types::enums::MoTypesEnum::VirtualMachine,
        value: id,
    };
    retriever.retrieve_object::<Observed>(&moref).await.unwrap()
}

fn extra(observed: &Observed, key: &str) -> Option<String> {
    observed.extra.iter().flatten().find(|option| option.key == key).and_then(|option| match &option.value {
        Some(VimAny::Value(ValueElements::PrimitiveString(value))) => Some(value.clone()),
        _ => None,
    })
}

/// The connection of the VM's first NIC to a distributed port group: (switch uuid, port group
/// key), or `None` when the NIC is on another kind of network.
fn nic_port(observed: &Observed) -> Option<(String, Option<String>)> {
    let nic = observed
        .devices
        .iter()
        .flatten()
        .find(|device| <dyn VirtualEthernetCardTrait>::from_ref(&***device).is_some())
        .expect("the VM has a NIC");
    let backing = nic.backing.as_deref()?;
    let port = backing.as_any_ref().downcast_ref::<VirtualEthernetCardDistributedVirtualPortBackingInfo>()?;
    Some((port.port.switch_uuid.clone(), port.port.portgroup_key.clone()))
}

fn disk_kb(observed: Observed) -> i64 {
    let disk = observed
        .devices
        .into_iter()
        .flatten()
        .find_map(|device| device.as_any_box().downcast::<VirtualDisk>().ok())
        .expect("the VM has a disk");
    disk.capacity_in_bytes.map_or(disk.capacity_in_kb, |bytes| bytes / 1024)
}

fn powered_on(observed: &Observed) -> bool {
    observed.power_state == vim_rs::types::enums::VirtualMachinePowerStateEnum::PoweredOn
}

#[tokio::test]
async fn passes_the_provisioner_conformance_suite() {
    let config = config();
    let vcsim = simulator(&config);
    testing::provisioner::check_all(&provisioner(&vcsim, &config)).await;
}

/// One template per VM: the simulator (govmomi 0.24) shares device objects between a template
/// and its clones, so concurrent clones of one template racing with disk edits break inside the
/// simulator (FileNotFound, vanished disks); a real vCenter copies. Everything of Basphere's still
/// runs twenty at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_vms_live_and_die_concurrently() {
    let config = config();
    let (vcsim, templates) = simulator_with_templates(&config, 20);
    let vsphere = Arc::new(provisioner(&vcsim, &config));
    vsphere.preflight().await.expect("preflight passes on the simulator");
    let owners = ["alice", "bob", "carol", "dave"];
    let requests: Vec<VmRequest> = (0..20u8)
        .map(|i| {
            let mut request = request(owners[usize::from(i) % 4], &format!("vm{i}"), [10, 254, 1, 10 + i]);
            if i % 2 == 1 {
                request.os = config.os_images["rocky-10.1"].clone();
                request.network.interface = request.os.interface.clone();
                request.spec = config.vm_specs["large"].clone();
            }
            request.os.template = templates[usize::from(i)].clone();
            request
        })
        .collect();
    for owner in owners {
        vsphere.ensure_folder(&owner.parse().unwrap()).await.unwrap();
    }
    let created = futures_join(requests.iter().map(|request| {
        let vsphere = vsphere.clone();
        let request = request.clone();
        async move { vsphere.create_vm(&request).await }
    }))
    .await;
    let ids: BTreeSet<String> = created.into_iter().map(|handle| handle.expect("create").backend_id).collect();
    assert_eq!(ids.len(), 20, "twenty distinct VMs");

    // Every VM is where it belongs, sized, marked, configured for cloud-init and powered on.
    let admin = admin(&vcsim).await;
    for request in &requests {
        let observed = observe(&admin, request).await.unwrap_or_else(|| panic!("{} exists", request.vsphere_name()));
        assert!(powered_on(&observed), "{} is on", observed.name);
        assert_eq!(observed.cpu, Some(request.spec.cpu as i32));
        assert_eq!(observed.memory_mb, Some(request.spec.memory_mb as i32));
        assert_eq!(extra(&observed, "guestinfo.basphere.id"), Some(request.id.to_string()));
        assert_eq!(extra(&observed, "guestinfo.userdata.encoding").as_deref(), Some("base64"));
        let metadata = base64::engine::general_purpose::STANDARD
            .decode(extra(&observed, "guestinfo.metadata").expect("metadata"))
            .unwrap();
        let metadata = String::from_utf8(metadata).unwrap();
        assert!(metadata.contains(&request.network.address.to_string()), "{metadata}");
        assert!(metadata.contains(&request.os.interface), "{metadata}");
        assert!(observed.annotation.as_deref().unwrap_or_default().contains(&request.id.to_string()));
        assert_eq!(disk_kb(observed), request.spec.disk_gb as i64 * 1024 * 1024, "disk of {}", request.name);
    }
    let inventory = vsphere.inventory().await.unwrap();
    let listed: BTreeSet<_> = inventory.iter().filter_map(|vm| vm.basphere_id).collect();
    assert_eq!(listed, requests.iter().map(|request| request.id).collect());
    for vm in &inventory {
        let owner = vm.vsphere_name.split('-').next().unwrap();
        assert_eq!(vm.folder, format!("basphere-vms/{owner}"));
    }

    // Power operations, concurrently.
    let results = futures_join(requests.iter().map(|request| {
        let vsphere = vsphere.clone();
        let vm = request.vm_ref();
        async move {
            assert_eq!(vsphere.power(&vm, PowerAction::Stop).await?, PowerState::Off);
            assert!(matches!(vsphere.power(&vm, PowerAction::Reboot).await, Err(Error::Conflict(_))));
            assert_eq!(vsphere.power(&vm, PowerAction::Start).await?, PowerState::On);
            assert_eq!(vsphere.power(&vm, PowerAction::Reboot).await?, PowerState::On);
            Ok::<_, Error>(())
        }
    }))
    .await;
    results.into_iter().for_each(|result| result.expect("power operations"));
    assert!(vsphere.inventory().await.unwrap().iter().all(|vm| vm.power == PowerState::On));

    let destroyed = futures_join(requests.iter().map(|request| {
        let vsphere = vsphere.clone();
        let vm = request.vm_ref();
        async move { vsphere.destroy_vm(&vm).await }
    }))
    .await;
    destroyed.into_iter().for_each(|result| result.expect("destroy"));
    assert!(vsphere.inventory().await.unwrap().is_empty());
    for request in &requests {
        assert!(observe(&admin, request).await.is_none());
    }
}

/// Runs futures concurrently on the runtime and collects their results in order.
async fn futures_join<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.expect("task"));
    }
    results
}

#[tokio::test]
async fn preflight_names_every_missing_object() {
    let config = config();
    let vcsim = simulator(&config);
    let mut wrong = provisioner_settings(&vcsim, &config);
    wrong.vsphere.datastore = "no-such-datastore".into();
    wrong.os_images.get_mut("rocky-10.1").unwrap().template = "no-such-template".into();
    let error = VsphereApiProvisioner::new(wrong).preflight().await.expect_err("preflight fails").to_string();
    assert!(error.contains("vsphere.datastore (DC0/datastore/no-such-datastore)"), "{error}");
    assert!(error.contains("templates.os.rocky-10.1.template (DC0/vm/no-such-template)"), "{error}");
    assert!(!error.contains("ubuntu"), "the present template is not named: {error}");
    assert!(!error.contains("vsphere.network"), "the present network is not named: {error}");

    let mut wrong = provisioner_settings(&vcsim, &config);
    wrong.vsphere.cluster = "nope".into();
    wrong.vsphere.folder = "missing-folder".into();
    wrong.vsphere.network = "Other Network".into();
    let error = VsphereApiProvisioner::new(wrong).preflight().await.expect_err("preflight fails").to_string();
    for key in ["vsphere.cluster", "vsphere.resource_pool", "vsphere.network", "vsphere.folder"] {
        assert!(error.contains(key), "{key} in {error}");
    }

    // A create whose template vanished says which setting names it, and makes nothing.
    let vsphere = provisioner(&vcsim, &wrong_template(&config));
    let mut request = request("alice", "web", [10, 254, 0, 33]);
    request.os = wrong_template(&config).os_images["ubuntu-24.04"].clone();
    vsphere.ensure_folder(&request.owner).await.unwrap();
    let error = vsphere.create_vm(&request).await.expect_err("no template").to_string();
    assert!(error.contains("templates.os.ubuntu-24.04.template"), "{error}");
    assert!(vsphere.inventory().await.unwrap().is_empty());

    // A wrong password is a clear error, not a hang, naming the file and what to check.
    let mut bad = provisioner_settings(&vcsim, &config);
    bad.credentials.password = "wrong".into();
    bad.vsphere.credentials_file = Some("/etc/basphere/vsphere.env".into());
    let error = VsphereApiProvisioner::new(bad).preflight().await.expect_err("bad login");
    assert_eq!(error.kind(), "invalid-input", "{error}");
    let text = error.to_string();
    for said in [
        "invalid vsphere.credentials_file",
        "refused the login of \"basphere@vsphere.local\"",
        "/etc/basphere/vsphere.env",
        "VSPHERE_USER and VSPHERE_PASSWORD",
    ] {
        assert!(text.contains(said), "{said:?} in {text}");
    }
    assert!(!text.contains("MethodFault") && !text.contains("_typeName"), "{text}");
}

/// Polls `done` every 20 ms for up to 10 s.
pub(crate) async fn until<F, Fut>(done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if done().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the simulator did not get there in 10 s");
}

pub(crate) fn wrong_template(config: &Config) -> Config {
    let mut wrong = config.clone();
    wrong.os_images.get_mut("ubuntu-24.04").unwrap().template = "gone-template".into();
    wrong
}

/// Settings for the simulator's inventory (`DC0`, ...), with `config`'s catalog and base folder.
pub(crate) fn provisioner_settings(vcsim: &Vcsim, config: &Config) -> VsphereApiSettings {
    let mut vsphere = BackendConfig::from_config(config).unwrap().vsphere;
    vsphere.server = vcsim.server.clone();
    vsphere.datacenter = "DC0".into();
    vsphere.cluster = "DC0_C0".into();
    vsphere.datastore = "LocalDS_0".into();
    vsphere.network = "VM Network".into();
    VsphereApiSettings {
        server: vcsim.server.clone(),
        credentials: Credentials { user: vcsim.user.clone(), password: vcsim.password.clone() },
        vsphere,
        os_images: config.os_images.clone(),
        accept_invalid_certs: true,
    }
}

#[tokio::test]
async fn a_vm_deleted_behind_baspheres_back() {
    let config = config();
    let vcsim = simulator(&config);
    let vsphere = provisioner(&vcsim, &config);
    let web = request("alice", "web", [10, 254, 0, 33]);
    let db = request("alice", "db", [10, 254, 0, 34]);
    vsphere.ensure_folder(&web.owner).await.unwrap();
    vsphere.create_vm(&web).await.unwrap();
    vsphere.create_vm(&db).await.unwrap();

    // An admin powers off and destroys alice-web directly in vCenter.
    let admin = admin(&vcsim).await;
    let id = find(&admin, "DC0/vm/basphere-vms/alice/alice-web").await.unwrap();
    let machine = VirtualMachine::new(admin.clone(), &id);
    machine.power_off_vm_task().await.unwrap();
    until(|| async { !powered_on(&observe(&admin, &web).await.unwrap()) }).await;
    machine.destroy_task().await.unwrap();
    until(|| async { observe(&admin, &web).await.is_none() }).await;

    let inventory = vsphere.inventory().await.unwrap();
    assert_eq!(inventory.iter().map(|vm| vm.vsphere_name.as_str()).collect::<Vec<_>>(), ["alice-db"]);
    assert!(matches!(vsphere.power(&web.vm_ref(), PowerAction::Start).await, Err(Error::NotFound { .. })));
    vsphere.destroy_vm(&web.vm_ref()).await.expect("destroying a VM that is already gone succeeds");
    vsphere.destroy_vm(&db.vm_ref()).await.unwrap();
    assert!(vsphere.inventory().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_retried_create_adopts_its_vm_and_a_stranger_is_left_alone() {
    let config = config();
    let vcsim = simulator(&config);
    let vsphere = provisioner(&vcsim, &config);
    let web = request("alice", "web", [10, 254, 0, 33]);
    vsphere.ensure_folder(&web.owner).await.unwrap();
    let first = vsphere.create_vm(&web).await.unwrap();

    // A crash after the clone left it powered off; the retry adopts, powers on, duplicates nothing.
    vsphere.power(&web.vm_ref(), PowerAction::Stop).await.unwrap();
    let again = provisioner(&vcsim, &config).create_vm(&web).await.unwrap();
    assert_eq!(again.backend_id, first.backend_id);
    assert!(again.log_tail.iter().any(|line| line.contains("adopted")), "{:?}", again.log_tail);
    let inventory = vsphere.inventory().await.unwrap();
    assert_eq!(inventory.len(), 1);
    assert_eq!(inventory[0].power, PowerState::On);

    // Another VM of the same name but without this id: refused, and left untouched; the other
    // record's destroy has nothing of its own to remove.
    let mut stranger = web.clone();
    stranger.id = uuid::Uuid::new_v4();
    assert!(matches!(vsphere.create_vm(&stranger).await, Err(Error::AlreadyExists { .. })));
    vsphere.destroy_vm(&stranger.vm_ref()).await.expect("nothing of the stranger's exists");
    assert!(matches!(vsphere.power(&stranger.vm_ref(), PowerAction::Stop).await, Err(Error::Conflict(_))));
    let inventory = vsphere.inventory().await.unwrap();
    assert_eq!(inventory.len(), 1);
    assert_eq!((inventory[0].basphere_id, inventory[0].power), (Some(web.id), PowerState::On));
}

/// Someone made a VM in the owner's folder under the name Basphere would give hers.
#[tokio::test]
async fn a_name_taken_by_a_vm_that_is_not_basphere_s_fails_the_create_and_is_never_touched() {
    let config = config();
    let vcsim = simulator(&config);
    let vsphere = provisioner(&vcsim, &config);
    let web = request("alice", "web", [10, 254, 0, 33]);
    vsphere.ensure_folder(&web.owner).await.unwrap();
    let admin = admin(&vcsim).await;
    let folder = ManagedObjectReference {
        r#type: MoTypesEnum::Folder,
        value: find(&admin, "DC0/vm/basphere-vms/alice").await.expect("alice's folder"),
    };
    let template = find(&admin, &format!("DC0/vm/{}", web.os.template)).await.expect("the template");
    let moref = |kind, value: String| ManagedObjectReference { r#type: kind, value };
    let mut location: vim_rs::types::structs::VirtualMachineRelocateSpec = miniserde::json::from_str("{}").unwrap();
    location.pool = Some(moref(MoTypesEnum::ResourcePool, find(&admin, "DC0/host/DC0_C0/Resources").await.unwrap()));
    location.datastore = Some(moref(MoTypesEnum::Datastore, find(&admin, "DC0/datastore/LocalDS_0").await.unwrap()));
    let spec = VirtualMachineCloneSpec {
        location,
        template: false,
        config: None,
        customization: None,
        power_on: false,
        snapshot: None,
        memory: None,
        tpm_provision_policy: None,
    };
    VirtualMachine::new(admin.clone(), &template).clone_vm_task(&folder, "alice-web", &spec).await.unwrap();
    until(|| async { find(&admin, "DC0/vm/basphere-vms/alice/alice-web").await.is_some() }).await;
    let foreign = find(&admin, "DC0/vm/basphere-vms/alice/alice-web").await.unwrap();
    VirtualMachine::new(admin.clone(), &foreign).power_on_vm_task(None).await.unwrap();
    until(|| async { observe(&admin, &web).await.is_some_and(|vm| powered_on(&vm)) }).await;

    let error = vsphere.create_vm(&web).await.expect_err("the name is taken");
    assert_eq!(error.kind(), "already-exists", "{error}");
    let text = error.to_string();
    for said in ["alice-web in vCenter (folder DC0/vm/basphere-vms/alice)", "not Basphere's", "made no VM", "untouched"]
    {
        assert!(text.contains(said), "{said:?} in {text}");
    }
    assert!(!text.contains("partial"), "{text}");

    // Deleting the failed record: nothing of Basphere's exists, so it succeeds, and the other VM
    // stays as it was.
    vsphere.destroy_vm(&web.vm_ref()).await.expect("nothing to destroy");
    vsphere.destroy_vm(&web.vm_ref()).await.expect("and again");
    assert_eq!(find(&admin, "DC0/vm/basphere-vms/alice/alice-web").await, Some(foreign));
    let observed = observe(&admin, &web).await.expect("the other VM is still there");
    assert!(powered_on(&observed), "and still on");
    assert_eq!(extra(&observed, "guestinfo.basphere.id"), None);
    assert!(matches!(vsphere.power(&web.vm_ref(), PowerAction::Stop).await, Err(Error::Conflict(_))));
    assert!(powered_on(&observe(&admin, &web).await.unwrap()));
    let inventory = vsphere.inventory().await.unwrap();
    assert_eq!(
        inventory.iter().map(|vm| (vm.vsphere_name.as_str(), vm.basphere_id)).collect::<Vec<_>>(),
        [("alice-web", None)]
    );

    // The same VM imported from the original Basphere: adopting marks it as this record's, and
    // from then on Basphere manages it (and no other record may adopt it).
    vsphere.adopt(&web.vm_ref()).await.expect("an unmarked VM is adopted");
    vsphere.adopt(&web.vm_ref()).await.expect("adopting again changes nothing");
    let observed = observe(&admin, &web).await.unwrap();
    assert_eq!(extra(&observed, "guestinfo.basphere.id"), Some(web.id.to_string()));
    assert!(matches!(vsphere.adopt(&stranger_of(&web).vm_ref()).await, Err(Error::Conflict(_))));
    assert_eq!(vsphere.power(&web.vm_ref(), PowerAction::Stop).await.unwrap(), PowerState::Off);
    vsphere.destroy_vm(&web.vm_ref()).await.unwrap();
    assert_eq!(find(&admin, "DC0/vm/basphere-vms/alice/alice-web").await, None, "destroyed once adopted");
    let missing = vsphere.adopt(&web.vm_ref()).await.unwrap_err();
    assert_eq!(missing.kind(), "not-found", "{missing}");
}

fn stranger_of(request: &VmRequest) -> VmRequest {
    let mut stranger = request.clone();
    stranger.id = uuid::Uuid::new_v4();
    stranger
}

#[tokio::test]
async fn a_session_vcenter_forgot_is_replaced() {
    let config = config();
    let vcsim = simulator(&config);
    let vsphere = provisioner(&vcsim, &config);
    vsphere.preflight().await.unwrap();
    // Every session ends on vCenter's side (an expiry, or a vCenter restart).
    let admin = admin(&vcsim).await;
    let manager = admin.service_content().session_manager.clone().unwrap();
    let manager = vim_rs::mo::SessionManager::new(admin.clone(), &manager.value);
    let own = manager.current_session().await.unwrap().expect("the admin's session").key;
    let others: Vec<String> = manager
        .session_list()
        .await
        .unwrap()
        .into_iter()
        .flatten()
        .map(|session| session.key)
        .filter(|key| *key != own)
        .collect();
    assert!(!others.is_empty(), "Basphere's session is listed");
    manager.terminate_session(&others).await.expect("the simulator terminates sessions");
    let web = request("alice", "web", [10, 254, 0, 33]);
    vsphere.ensure_folder(&web.owner).await.expect("logged in again");
    vsphere.create_vm(&web).await.expect("the new session works");
}

/// A TCP proxy in front of the simulator that, when told, closes the next connections on which
/// the client speaks, without forwarding a byte: a request lost with its connection, as when a
/// proxy in front of vCenter drops a keep-alive connection.
struct DroppingProxy {
    address: String,
    to_drop: Arc<std::sync::atomic::AtomicUsize>,
    dropped: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl DroppingProxy {
    async fn start(upstream: &str) -> DroppingProxy {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (to_drop, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let upstream = upstream.to_owned();
        let (to_drop_, dropped_) = (to_drop.clone(), dropped.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                let (to_drop, dropped) = (to_drop_.clone(), dropped_.clone());
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let answers = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    });
                    let mut buffer = vec![0u8; 64 * 1024];
                    loop {
                        let read = match client_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(read) => read,
                        };
                        let drop_it = to_drop
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1))
                            .is_ok();
                        if drop_it {
                            dropped.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        if server_write.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                    }
                    // Both directions end with the connection.
                    answers.abort();
                });
            }
        });
        DroppingProxy { address, to_drop, dropped, task }
    }

    fn drop_next(&self, connections: usize) {
        self.to_drop.store(connections, std::sync::atomic::Ordering::SeqCst);
    }

    fn dropped(&self) -> usize {
        self.dropped.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for DroppingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_read_is_made_again_when_its_connection_drops() {
    let config = config();
    let vcsim = simulator(&config);
    let proxy = DroppingProxy::start(&vcsim.server).await;
    let vsphere = VsphereApiProvisioner::new(VsphereApiSettings {
        server: proxy.address.clone(),
        ..provisioner_settings(&vcsim, &config)
    });
    vsphere.preflight().await.expect("preflight through the proxy");
    let request = request("alice", "web-1", [10, 254, 0, 40]);
    vsphere.ensure_folder(&request.owner).await.unwrap();
    vsphere.create_vm(&request).await.unwrap();

    // Two lost reads in a row are made again, unseen by the caller.
    proxy.drop_next(2);
    let inventory = vsphere.inventory().await.expect("the inventory is read again after two dropped connections");
    assert_eq!(proxy.dropped(), 2);
    assert_eq!(inventory.iter().map(|vm| vm.vsphere_name.as_str()).collect::<Vec<_>>(), ["alice-web-1"]);

    // A third is an error that says what happened.
    proxy.drop_next(3);
    let error = vsphere.inventory().await.expect_err("three dropped connections in a row fail the read");
    assert_eq!(proxy.dropped(), 5);
    assert_eq!(error.kind(), "backend", "{error}");
    assert!(error.to_string().contains("error sending request"), "{error}");

    // The connection is back: everything works, nothing was duplicated.
    assert_eq!(vsphere.inventory().await.unwrap().len(), 1);
    vsphere.destroy_vm(&request.vm_ref()).await.unwrap();
    assert!(vsphere.inventory().await.unwrap().is_empty());
}

/// The distributed switch of the simulator's default inventory (on every host of `DC0`).
pub(crate) const SWITCH: &str = "DVS0";

// A port group's configuration, read field by field: the simulator's reconfigure replaces the
// whole configuration with the spec, so after it `config.policy` (which Basphere leaves as it is,
// as a real vCenter does for what a spec leaves unset) is missing, and vim_rs cannot read
// `config` whole.
vim_retrievable!(
    struct PortGroupSeen: DistributedVirtualPortgroup {
        name = "name",
        key = "key",
        kind = "config.r#type"?,
        description = "config.description"?,
        port_config = "config.default_port_config"?,
        switch = "config.distributed_virtual_switch"?,
    }
);

vim_retrievable!(
    struct SwitchSeen: DistributedVirtualSwitch {
        name = "name",
        uuid = "uuid",
    }
);

/// Every distributed port group of `DC0`, as vCenter holds it.
pub(crate) async fn port_groups(client: &Arc<vim_rs::core::client::Client>) -> Vec<PortGroupSeen> {
    let folder =
        ManagedObjectReference { r#type: MoTypesEnum::Folder, value: find(client, "DC0/network").await.unwrap() };
    ObjectRetriever::new(client.clone()).unwrap().retrieve_objects_from_container(&folder).await.unwrap()
}

/// The port group `name`, if there is one.
pub(crate) async fn port_group(client: &Arc<vim_rs::core::client::Client>, name: &str) -> Option<PortGroupSeen> {
    port_groups(client).await.into_iter().find(|seen| seen.name == name)
}

/// The VLAN id of a port group's default port setting.
fn vlan(seen: &PortGroupSeen) -> Option<i32> {
    let setting = seen.port_config.as_deref()?.as_any_ref().downcast_ref::<VMwareDvsPortSetting>()?;
    let vlan = setting.vlan.as_deref()?.as_any_ref().downcast_ref::<VmwareDistributedVirtualSwitchVlanIdSpec>()?;
    Some(vlan.vlan_id)
}

/// The simulator's switch: its reference and uuid.
async fn switch(client: &Arc<vim_rs::core::client::Client>) -> (ManagedObjectReference, String) {
    let folder =
        ManagedObjectReference { r#type: MoTypesEnum::Folder, value: find(client, "DC0/network").await.unwrap() };
    let switches: Vec<SwitchSeen> =
        ObjectRetriever::new(client.clone()).unwrap().retrieve_objects_from_container(&folder).await.unwrap();
    let switch = switches.into_iter().find(|seen| seen.name == SWITCH).expect("the simulator's distributed switch");
    (switch.id, switch.uuid)
}

/// A port group made the way a vSphere administrator would, without Basphere's marker.
async fn plant_port_group(client: &Arc<vim_rs::core::client::Client>, name: &str, vlan_id: i32) {
    let (switch, _) = switch(client).await;
    let mut setting: VMwareDvsPortSetting = miniserde::json::from_str("{}").unwrap();
    setting.vlan = Some(Box::new(VmwareDistributedVirtualSwitchVlanIdSpec {
        vmware_distributed_virtual_switch_vlan_spec_: VmwareDistributedVirtualSwitchVlanSpec {
            inheritable_policy_: InheritablePolicy { inherited: false },
        },
        vlan_id,
    }));
    let mut spec: DvPortgroupConfigSpec = miniserde::json::from_str("{}").unwrap();
    spec.name = Some(name.to_owned());
    spec.r#type = Some("earlyBinding".into());
    spec.num_ports = Some(4);
    spec.default_port_config = Some(Box::new(setting));
    let specs = [spec];
    if switch.r#type == MoTypesEnum::VmwareDistributedVirtualSwitch {
        VmwareDistributedVirtualSwitch::new(client.clone(), &switch.value).add_dv_portgroup_task(&specs).await.unwrap();
    } else {
        DistributedVirtualSwitch::new(client.clone(), &switch.value).add_dv_portgroup_task(&specs).await.unwrap();
    }
    until(|| async { port_group(client, name).await.is_some() }).await;
}

fn tenant(name: &str, lans: &[(&str, u16)]) -> TenantPortGroups {
    TenantPortGroups {
        tenant: name.parse().unwrap(),
        switch: SWITCH.into(),
        port_groups: lans
            .iter()
            .map(|(lan, vlan)| PortGroupSpec { name: format!("basphere-{name}-{lan}"), vlan: *vlan })
            .collect(),
    }
}

fn count(vcsim: &Vcsim, method: &str) -> usize {
    vcsim.calls().iter().filter(|called| *called == method).count()
}

#[tokio::test]
async fn tenant_port_groups_pass_the_conformance_check() {
    let config = config();
    let vcsim = simulator(&config);
    let vsphere = provisioner(&vcsim, &config);
    testing::provisioner::check_port_groups(&vsphere, SWITCH).await;
    // Nothing of dave's is left: his port groups, his VM.
    let admin = admin(&vcsim).await;
    let left: Vec<String> =
        port_groups(&admin).await.into_iter().map(|seen| seen.name).filter(|name| name.contains("dave")).collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(vsphere.inventory().await.unwrap().is_empty());
}

/// What vCenter holds after `ensure_port_groups`: each port group with its VLAN id and the
/// tenant's marker on the switch; a VM on a tenant LAN has its NIC on the LAN's port group; a
/// changed VLAN is given to the port group; removal leaves nothing of the tenant's.
#[tokio::test]
async fn tenant_port_groups_in_vcenter_and_a_vm_on_one() {
    let config = config();
    let vcsim = simulator(&config);
    let vsphere = provisioner(&vcsim, &config);
    let admin = admin(&vcsim).await;
    let (switch_ref, switch_uuid) = switch(&admin).await;
    let erin = tenant("erin", &[("lan1", 2101), ("lan2", 2102)]);
    vsphere.ensure_port_groups(&erin).await.expect("port groups");
    for wanted in &erin.port_groups {
        let seen = port_group(&admin, &wanted.name).await.unwrap_or_else(|| panic!("{} is made", wanted.name));
        assert_eq!(vlan(&seen), Some(i32::from(wanted.vlan)), "{}", wanted.name);
        assert_eq!(seen.description.as_deref(), Some("Basphere tenant network of erin"));
        assert_eq!(seen.switch.as_ref().map(|on| on.value.as_str()), Some(switch_ref.value.as_str()));
        assert_eq!(seen.kind.as_deref(), Some("earlyBinding"));
    }
    let made = count(&vcsim, "AddDVPortgroup_Task");
    assert_eq!(made, 2, "one task per port group");
    vsphere.ensure_port_groups(&erin).await.expect("again");
    assert_eq!(count(&vcsim, "AddDVPortgroup_Task"), made, "a second call makes nothing");
    assert_eq!(count(&vcsim, "ReconfigureDVPortgroup_Task"), 0, "and changes nothing");

    // A VM on lan1: its NIC is on lan1's port group.
    let mut web = request("erin", "web", [10, 0, 1, 10]);
    web.network.port_group = Some("basphere-erin-lan1".into());
    vsphere.ensure_folder(&web.owner).await.unwrap();
    let handle = vsphere.create_vm(&web).await.expect("a VM on a tenant LAN");
    assert!(handle.log_tail[0].contains("put it on the port group basphere-erin-lan1"), "{:?}", handle.log_tail);
    let lan1 = port_group(&admin, "basphere-erin-lan1").await.unwrap();
    let observed = observe(&admin, &web).await.expect("the VM");
    assert_eq!(nic_port(&observed), Some((switch_uuid.clone(), Some(lan1.key.clone()))));
    assert!(powered_on(&observed));
    // A retried create adopts it and changes nothing more.
    let reconfigures = count(&vcsim, "ReconfigVM_Task");
    vsphere.create_vm(&web).await.expect("adopted");
    assert_eq!(count(&vcsim, "ReconfigVM_Task"), reconfigures, "its NIC is already on the port group");
    assert_eq!(nic_port(&observe(&admin, &web).await.unwrap()), Some((switch_uuid.clone(), Some(lan1.key.clone()))));

    // Another VLAN for lan2 (a changed vlan_range, say): the port group is reconfigured, still
    // Basphere's. (The simulator takes the reconfigure whole and does not check the
    // configuration version; a real vCenter does, and Basphere sends the one it read.)
    let moved = tenant("erin", &[("lan1", 2101), ("lan2", 2112)]);
    vsphere.ensure_port_groups(&moved).await.expect("a new VLAN");
    assert_eq!(count(&vcsim, "ReconfigureDVPortgroup_Task"), 1);
    assert_eq!(count(&vcsim, "AddDVPortgroup_Task"), made);
    let lan2 = port_group(&admin, "basphere-erin-lan2").await.unwrap();
    assert_eq!(vlan(&lan2), Some(2112));
    assert_eq!(lan2.description.as_deref(), Some("Basphere tenant network of erin"));
    assert_eq!(vlan(&port_group(&admin, "basphere-erin-lan1").await.unwrap()), Some(2101), "lan1 untouched");

    // A VM onto a port group that does not exist: NotFound, nothing cloned.
    let clones = count(&vcsim, "CloneVM_Task");
    let mut astray = request("erin", "astray", [10, 0, 1, 11]);
    astray.network.port_group = Some("basphere-erin-lan9".into());
    let error = vsphere.create_vm(&astray).await.expect_err("no such port group");
    assert_eq!(error.to_string(), "port group not found: basphere-erin-lan9");
    assert_eq!(count(&vcsim, "CloneVM_Task"), clones, "nothing cloned");

    // A missing switch is NotFound, naming it.
    let elsewhere = TenantPortGroups { switch: "no-such-switch".into(), ..erin.clone() };
    let error = vsphere.ensure_port_groups(&elsewhere).await.expect_err("no such switch");
    assert_eq!(error.to_string(), "distributed switch not found: no-such-switch");

    vsphere.destroy_vm(&web.vm_ref()).await.unwrap();
    vsphere.remove_port_groups(&moved).await.expect("remove");
    let left: Vec<String> =
        port_groups(&admin).await.into_iter().map(|seen| seen.name).filter(|name| name.contains("erin")).collect();
    assert!(left.is_empty(), "nothing of erin's is left: {left:?}");
    vsphere.remove_port_groups(&moved).await.expect("removing port groups that are gone succeeds");
    assert!(port_group(&admin, "DC0_DVPG0").await.is_some(), "the simulator's own port group stays");
}

/// A port group of a tenant's name that Basphere did not make: `AlreadyExists`, and neither it
/// nor the tenant's other port group is touched or made; removal leaves it.
#[tokio::test]
async fn a_port_group_of_the_name_that_is_not_basphere_s_is_never_touched() {
    let config = config();
    let vcsim = simulator(&config);
    let vsphere = provisioner(&vcsim, &config);
    let admin = admin(&vcsim).await;
    plant_port_group(&admin, "basphere-frank-lan2", 3000).await;
    let planted = count(&vcsim, "AddDVPortgroup_Task");
    let frank = tenant("frank", &[("lan1", 2201), ("lan2", 2202)]);

    let error = vsphere.ensure_port_groups(&frank).await.expect_err("the name is taken");
    assert_eq!(error.kind(), "already-exists", "{error}");
    let text = error.to_string();
    for said in [
        "port group already exists: basphere-frank-lan2",
        "not Basphere's",
        "Basphere tenant network of frank",
        "untouched",
    ] {
        assert!(text.contains(said), "{said:?} in {text}");
    }
    assert_eq!(count(&vcsim, "AddDVPortgroup_Task"), planted, "every name is checked before anything is made");
    assert_eq!(count(&vcsim, "ReconfigureDVPortgroup_Task"), 0);
    assert!(port_group(&admin, "basphere-frank-lan1").await.is_none());
    let foreign = port_group(&admin, "basphere-frank-lan2").await.unwrap();
    assert_eq!((vlan(&foreign), foreign.description.as_deref()), (Some(3000), None));

    vsphere.remove_port_groups(&frank).await.expect("nothing of Basphere's to remove");
    let foreign = port_group(&admin, "basphere-frank-lan2").await.expect("the other port group stays");
    assert_eq!((vlan(&foreign), foreign.description.as_deref()), (Some(3000), None));
    assert!(!vcsim.calls().iter().any(|called| called == "Destroy_Task"), "nothing destroyed");

    // Another tenant's port group is not this one's either.
    let grace = tenant("grace", &[("lan1", 2301)]);
    vsphere.ensure_port_groups(&grace).await.unwrap();
    let thief = TenantPortGroups { tenant: "heidi".parse().unwrap(), ..grace.clone() };
    let error = vsphere.ensure_port_groups(&thief).await.expect_err("grace's port group");
    assert_eq!(error.kind(), "already-exists", "{error}");
    vsphere.remove_port_groups(&thief).await.unwrap();
    let kept = port_group(&admin, "basphere-grace-lan1").await.expect("grace's port group stays");
    assert_eq!(kept.description.as_deref(), Some("Basphere tenant network of grace"));
}

/// Two calls making the same port groups at once (two replicas, a retried operation): the
/// simulator holds each AddDVPortgroup_Task long enough that both have read before either
/// makes; one gets DuplicateName, reads again and finds the other's, which is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_make_each_port_group_once() {
    let config = config();
    let vcsim = Vcsim::start(&VcsimOptions {
        folder: config.vsphere.folder.clone(),
        templates: config.os_images.values().map(|os| os.template.clone()).collect(),
        method_delays: vec![("AddDVPortgroup_Task".into(), 300)],
    })
    .expect("vcsim starts");
    let ivan = tenant("ivan", &[("lan1", 2401), ("lan2", 2402)]);
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let vsphere = provisioner(&vcsim, &config);
            let ivan = ivan.clone();
            tokio::spawn(async move { vsphere.ensure_port_groups(&ivan).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().expect("both calls succeed");
    }
    assert!(count(&vcsim, "AddDVPortgroup_Task") > 2, "the calls raced: both tried to make a port group");
    let admin = admin(&vcsim).await;
    let seen = port_groups(&admin).await;
    for wanted in &ivan.port_groups {
        let copies: Vec<_> = seen.iter().filter(|seen| seen.name == wanted.name).collect();
        assert_eq!(copies.len(), 1, "{} made once", wanted.name);
        assert_eq!(vlan(copies[0]), Some(i32::from(wanted.vlan)));
    }
}
