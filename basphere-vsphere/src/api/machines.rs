//! Changing VMs: clones with the cloud-init documents and the marker in `extraConfig`, the
//! reconfigure that gives a VM its spec's CPU, memory and disk (and, on a tenant LAN, puts its
//! NIC on the LAN's port group), power, and the owners' folders.

use base64::Engine;
use basphere_core::model::VmSpec;
use basphere_core::provisioner::{PowerState, VmRequest};
use basphere_core::{Error, Result};
use vim_rs::core::pc_retrieve::ObjectRetriever;
use vim_rs::mo::{Folder, SearchIndex, VirtualMachine};
use vim_rs::types::boxed_types::ValueElements;
use vim_rs::types::convert::CastFrom;
use vim_rs::types::enums::VirtualDeviceConfigSpecOperationEnum;
use vim_rs::types::struct_enum::StructType;
use vim_rs::types::structs::{
    DistributedVirtualSwitchPortConnection, ManagedObjectReference, OptionValue, VirtualDeviceConfigSpec, VirtualDisk,
    VirtualEthernetCardDistributedVirtualPortBackingInfo, VirtualMachineCloneSpec, VirtualMachineConfigSpec,
    VirtualMachineRelocateSpec,
};
use vim_rs::types::traits::{
    OptionValueTrait, VirtualDeviceConfigSpecTrait, VirtualDeviceTrait, VirtualEthernetCardTrait,
};
use vim_rs::types::vim_any::VimAny;
use vim_rs::vim_retrievable;

use super::networks::PortConnection;
use super::session::fault_is;
use super::{BoxFuture, VsphereApiProvisioner, MARKER};
use crate::cloud_init;

vim_retrievable!(
    struct HardwareRow: VirtualMachine {
        cpu = "config.hardware.num_cpu"?,
        memory_mb = "config.hardware.memory_mb"?,
        devices = "config.hardware.device"?,
        annotation = "config.annotation"?,
    }
);

pub(super) fn option(key: &str, value: String) -> Box<dyn OptionValueTrait> {
    Box::new(OptionValue { key: key.to_owned(), value: Some(VimAny::Value(ValueElements::PrimitiveString(value))) })
}

/// An empty data object: without vim_rs's `defaults` feature, `Default` comes from "{}".
pub(super) fn empty<T: miniserde::Deserialize>() -> T {
    miniserde::json::from_str("{}").expect("every field of the type is optional")
}

/// What `converge` gives a VM, as plain data: the spec's hardware, Basphere's annotation and,
/// on a tenant LAN, the port group its NIC is on.
pub(super) struct Wanted<'a> {
    pub(super) spec: &'a VmSpec,
    pub(super) annotation: String,
    pub(super) port: Option<PortConnection>,
    /// The setting that names the VM's template (`templates.os.<key>.template`), for errors.
    pub(super) template_key: String,
}

/// The changes that give a VM the spec's CPU, memory and (grown, never shrunk) first disk,
/// Basphere's annotation and, when a port group is wanted, its first NIC on that port group. A
/// VM without a NIC cannot be put on one: that is an error naming the port group.
pub(super) fn hardware_changes(row: HardwareRow, wanted: &Wanted<'_>) -> Result<Option<VirtualMachineConfigSpec>> {
    let spec = wanted.spec;
    let mut config: VirtualMachineConfigSpec = empty();
    let mut changed = false;
    if row.annotation.as_deref() != Some(wanted.annotation.as_str()) {
        config.annotation = Some(wanted.annotation.clone());
        changed = true;
    }
    if row.cpu != Some(spec.cpu as i32) {
        config.num_cp_us = Some(spec.cpu as i32);
        changed = true;
    }
    if row.memory_mb != Some(spec.memory_mb as i32) {
        config.memory_mb = Some(spec.memory_mb as i64);
        changed = true;
    }
    let (mut disk, mut nic) = (None, None);
    for device in row.devices.into_iter().flatten() {
        if <dyn VirtualEthernetCardTrait>::from_ref(&*device).is_some() {
            nic = nic.or(Some(device));
        } else if disk.is_none() {
            disk = device.as_any_box().downcast::<VirtualDisk>().ok();
        }
    }
    let mut device_changes: Vec<Box<dyn VirtualDeviceConfigSpecTrait>> = Vec::new();
    let wanted_kb = spec.disk_gb as i64 * 1024 * 1024;
    if let Some(mut disk) = disk {
        let current_kb = disk.capacity_in_bytes.map_or(disk.capacity_in_kb, |bytes| bytes / 1024);
        if current_kb < wanted_kb {
            disk.capacity_in_kb = wanted_kb;
            disk.capacity_in_bytes = Some(wanted_kb * 1024);
            device_changes.push(edit(disk));
        }
    }
    if let Some(port) = &wanted.port {
        let Some(mut nic) = nic else {
            return Err(Error::invalid(
                wanted.template_key.clone(),
                format!("the VM has no network card to put on the port group {}: its template needs one", port.name),
            ));
        };
        if !on_port_group(nic.as_ref(), port) {
            nic.backing = Some(Box::new(VirtualEthernetCardDistributedVirtualPortBackingInfo {
                port: DistributedVirtualSwitchPortConnection {
                    switch_uuid: port.switch_uuid.clone(),
                    portgroup_key: Some(port.portgroup_key.clone()),
                    port_key: None,
                    connection_cookie: None,
                },
            }));
            device_changes.push(edit(nic));
        }
    }
    if !device_changes.is_empty() {
        config.device_change = Some(device_changes);
        changed = true;
    }
    Ok(changed.then_some(config))
}

/// Whether the NIC is connected to the port group.
fn on_port_group(nic: &(dyn VirtualDeviceTrait + 'static), port: &PortConnection) -> bool {
    let backing = nic.backing.as_deref().and_then(|backing| {
        backing.as_any_ref().downcast_ref::<VirtualEthernetCardDistributedVirtualPortBackingInfo>()
    });
    backing.is_some_and(|backing| {
        backing.port.switch_uuid == port.switch_uuid
            && backing.port.portgroup_key.as_deref() == Some(port.portgroup_key.as_str())
    })
}

/// A device change that edits `device`.
fn edit(device: Box<dyn VirtualDeviceTrait>) -> Box<VirtualDeviceConfigSpec> {
    Box::new(VirtualDeviceConfigSpec {
        operation: Some(VirtualDeviceConfigSpecOperationEnum::Edit),
        file_operation: None,
        device,
        profile: None,
        backing: None,
        filter_spec: None,
        change_mode: None,
    })
}

/// The note on every Basphere VM, for vSphere's administrators.
pub(super) fn annotation(request: &VmRequest) -> String {
    format!("Basphere VM {} of {} (basphere-id={})", request.name, request.owner, request.id)
}

impl VsphereApiProvisioner {
    pub(super) fn set_power<'a>(&'a self, vm: &'a ManagedObjectReference, on: bool) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.run_task(move |client| {
                let machine = VirtualMachine::new(client, &vm.value);
                Box::pin(async move {
                    if on {
                        machine.power_on_vm_task(None).await
                    } else {
                        machine.power_off_vm_task().await
                    }
                })
            })
            .await?;
            Ok(())
        })
    }

    /// Gives the VM the spec's CPU, memory and disk and, when `port` is given, puts its NIC on
    /// that port group (a reconfigure, only when something differs), then powers it on. Used
    /// after a clone and when adopting an earlier attempt's VM.
    pub(super) fn converge<'a>(
        &'a self,
        vm: &'a ManagedObjectReference,
        request: &'a VmRequest,
        port: Option<PortConnection>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let wanted = Wanted {
                spec: &request.spec,
                annotation: annotation(request),
                port,
                template_key: format!("templates.os.{}.template", request.os.key),
            };
            if self.hardware_differs(vm, &wanted).await? {
                if self.vm(vm).await?.power == PowerState::On {
                    self.set_power(vm, false).await?;
                }
                self.reconfigure(vm, &wanted).await?;
            }
            if self.vm(vm).await?.power == PowerState::Off {
                self.set_power(vm, true).await?;
            }
            Ok(())
        })
    }

    pub(super) fn hardware_differs<'a>(
        &'a self,
        vm: &'a ManagedObjectReference,
        wanted: &'a Wanted<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        self.read(move |session| {
            Box::pin(async move {
                let retriever = ObjectRetriever::new(session.client.clone())?;
                let row = retriever
                    .retrieve_object::<HardwareRow>(vm)
                    .await?
                    .ok_or_else(|| Error::not_found("vm", &vm.value))?;
                Ok(hardware_changes(row, wanted)?.is_some())
            })
        })
    }

    /// Reads the VM's hardware again and reconfigures what differs from `wanted`.
    pub(super) fn reconfigure<'a>(
        &'a self,
        vm: &'a ManagedObjectReference,
        wanted: &'a Wanted<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        let started = self.call(move |session| {
            Box::pin(async move {
                let retriever = ObjectRetriever::new(session.client.clone())?;
                let row = retriever
                    .retrieve_object::<HardwareRow>(vm)
                    .await?
                    .ok_or_else(|| Error::not_found("vm", &vm.value))?;
                let Some(changes) = hardware_changes(row, wanted)? else { return Ok(None) };
                Ok(Some(VirtualMachine::new(session.client.clone(), &vm.value).reconfig_vm_task(&changes).await?))
            })
        });
        Box::pin(async move {
            if let Some(task) = started.await? {
                self.wait(&task).await?;
            }
            Ok(())
        })
    }

    pub(super) fn create_folder<'a>(
        &'a self,
        parent: &'a ManagedObjectReference,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ManagedObjectReference>> {
        self.call(move |session| {
            Box::pin(async move {
                let client = &session.client;
                match Folder::new(client.clone(), &parent.value).create_folder(name).await {
                    Ok(folder) => Ok(folder),
                    // Made by someone else meanwhile: fine, it exists.
                    Err(error) if fault_is(&error, StructType::DuplicateName) => {
                        let index = client.service_content().search_index.clone().expect("vCenter has a SearchIndex");
                        Ok(SearchIndex::new(client.clone(), &index.value)
                            .find_child(parent, name)
                            .await?
                            .ok_or_else(|| Error::not_found("folder", name))?)
                    }
                    Err(error) => Err(error.into()),
                }
            })
        })
    }

    /// Clones `template` into `folder` as `name`, powered off, with the spec's CPU and memory,
    /// the annotation and the cloud-init documents and marker in `extraConfig`; answers the
    /// new VM.
    pub(super) fn clone_vm<'a>(
        &'a self,
        template: &'a ManagedObjectReference,
        place: &'a Placement,
        request: &'a VmRequest,
    ) -> BoxFuture<'a, Result<ManagedObjectReference>> {
        Box::pin(async move {
            let cloud_init::Documents { metadata, userdata } = cloud_init::documents(request)?;
            let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            let (metadata, userdata, id, name) =
                (b64(&metadata), b64(&userdata), request.id.to_string(), request.vsphere_name());
            let (metadata, userdata, id, name) = (&metadata, &userdata, &id, &name);
            let task = self
                .run_task(move |client| {
                    let spec = clone_spec(place, request, metadata, userdata, id);
                    let template = VirtualMachine::new(client, &template.value);
                    Box::pin(async move { template.clone_vm_task(&place.folder, name, &spec).await })
                })
                .await?;
            self.task_result(&task).await
        })
    }
}

/// Where a clone goes.
pub(super) struct Placement {
    pub(super) folder: ManagedObjectReference,
    pub(super) datastore: ManagedObjectReference,
    pub(super) pool: ManagedObjectReference,
}

/// A clone's spec. Powered on only after `converge` has grown its disk (from the clone's own
/// devices) and checked CPU and memory.
pub(super) fn clone_spec(
    place: &Placement,
    request: &VmRequest,
    metadata: &str,
    userdata: &str,
    id: &str,
) -> VirtualMachineCloneSpec {
    let mut config: VirtualMachineConfigSpec = empty();
    config.num_cp_us = Some(request.spec.cpu as i32);
    config.memory_mb = Some(request.spec.memory_mb as i64);
    config.annotation = Some(annotation(request));
    config.extra_config = Some(vec![
        option("guestinfo.metadata", metadata.to_owned()),
        option("guestinfo.metadata.encoding", "base64".into()),
        option("guestinfo.userdata", userdata.to_owned()),
        option("guestinfo.userdata.encoding", "base64".into()),
        option(MARKER, id.to_owned()),
    ]);
    let mut location: VirtualMachineRelocateSpec = empty();
    location.datastore = Some(place.datastore.clone());
    location.pool = Some(place.pool.clone());
    VirtualMachineCloneSpec {
        location,
        template: false,
        config: Some(config),
        customization: None,
        power_on: false,
        snapshot: None,
        memory: None,
        tpm_provision_policy: None,
    }
}
