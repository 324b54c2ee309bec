//! Changing VMs: clones with the cloud-init documents and the marker in `extraConfig`, the
//! reconfigure that gives a VM its spec's CPU, memory and disk, power, and the owners' folders.

use base64::Engine;
use basphere_core::model::VmSpec;
use basphere_core::provisioner::{PowerState, VmRequest};
use basphere_core::{Error, Result};
use vim_rs::core::pc_retrieve::ObjectRetriever;
use vim_rs::mo::{Folder, SearchIndex, VirtualMachine};
use vim_rs::types::boxed_types::ValueElements;
use vim_rs::types::enums::VirtualDeviceConfigSpecOperationEnum;
use vim_rs::types::struct_enum::StructType;
use vim_rs::types::structs::{
    ManagedObjectReference, OptionValue, VirtualDeviceConfigSpec, VirtualDisk, VirtualMachineCloneSpec,
    VirtualMachineConfigSpec, VirtualMachineRelocateSpec,
};
use vim_rs::types::traits::OptionValueTrait;
use vim_rs::types::vim_any::VimAny;
use vim_rs::vim_retrievable;

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

/// The changes that give a VM the spec's CPU, memory and (grown, never shrunk) first disk, and
/// Basphere's annotation.
pub(super) fn hardware_changes(row: HardwareRow, spec: &VmSpec, annotation: &str) -> Option<VirtualMachineConfigSpec> {
    let mut config: VirtualMachineConfigSpec = empty();
    let mut changed = false;
    if row.annotation.as_deref() != Some(annotation) {
        config.annotation = Some(annotation.to_owned());
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
    let wanted_kb = spec.disk_gb as i64 * 1024 * 1024;
    let disk = row.devices.into_iter().flatten().find_map(|device| device.as_any_box().downcast::<VirtualDisk>().ok());
    if let Some(mut disk) = disk {
        let current_kb = disk.capacity_in_bytes.map_or(disk.capacity_in_kb, |bytes| bytes / 1024);
        if current_kb < wanted_kb {
            disk.capacity_in_kb = wanted_kb;
            disk.capacity_in_bytes = Some(wanted_kb * 1024);
            config.device_change = Some(vec![Box::new(VirtualDeviceConfigSpec {
                operation: Some(VirtualDeviceConfigSpecOperationEnum::Edit),
                file_operation: None,
                device: disk,
                profile: None,
                backing: None,
                filter_spec: None,
                change_mode: None,
            })]);
            changed = true;
        }
    }
    changed.then_some(config)
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

    /// Gives the VM the spec's CPU, memory and disk (a reconfigure, only when something differs),
    /// then powers it on. Used after a clone and when adopting an earlier attempt's VM.
    pub(super) fn converge<'a>(
        &'a self,
        vm: &'a ManagedObjectReference,
        request: &'a VmRequest,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let annotation = annotation(request);
            if self.hardware_differs(vm, &request.spec, &annotation).await? {
                if self.vm(vm).await?.power == PowerState::On {
                    self.set_power(vm, false).await?;
                }
                self.reconfigure(vm, &request.spec, &annotation).await?;
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
        spec: &'a VmSpec,
        annotation: &'a str,
    ) -> BoxFuture<'a, Result<bool>> {
        self.read(move |session| {
            Box::pin(async move {
                let retriever = ObjectRetriever::new(session.client.clone())?;
                let row = retriever
                    .retrieve_object::<HardwareRow>(vm)
                    .await?
                    .ok_or_else(|| Error::not_found("vm", &vm.value))?;
                Ok(hardware_changes(row, spec, annotation).is_some())
            })
        })
    }

    /// Reads the VM's hardware again and reconfigures what differs from the spec.
    pub(super) fn reconfigure<'a>(
        &'a self,
        vm: &'a ManagedObjectReference,
        spec: &'a VmSpec,
        annotation: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        let started = self.call(move |session| {
            Box::pin(async move {
                let retriever = ObjectRetriever::new(session.client.clone())?;
                let row = retriever
                    .retrieve_object::<HardwareRow>(vm)
                    .await?
                    .ok_or_else(|| Error::not_found("vm", &vm.value))?;
                let Some(changes) = hardware_changes(row, spec, annotation) else { return Ok(None) };
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
