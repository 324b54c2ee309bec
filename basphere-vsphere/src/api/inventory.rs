//! Reading what vCenter holds: objects found by inventory path, a VM's name, power state,
//! marker and folder, and Basphere's folders listed for reconciliation, each turned into plain
//! data (`VmFacts`, `FolderFacts`) before it leaves the function that read it.

use basphere_core::provisioner::{PowerState, VmRef};
use basphere_core::validate::Username;
use basphere_core::{Error, Result};
use vim_rs::core::pc_retrieve::ObjectRetriever;
use vim_rs::mo::{ContainerView, SearchIndex, ViewManager};
use vim_rs::types::boxed_types::ValueElements;
use vim_rs::types::enums::VirtualMachinePowerStateEnum;
use vim_rs::types::structs::ManagedObjectReference;
use vim_rs::types::vim_any::VimAny;
use vim_rs::vim_retrievable;

use super::{BoxFuture, VsphereApiProvisioner, MARKER};

vim_retrievable!(
    struct VmRow: VirtualMachine {
        name = "name",
        power_state = "runtime.power_state",
        extra = "config.extra_config"?,
        parent = "parent"?,
    }
);

vim_retrievable!(
    struct FolderRow: Folder {
        name = "name",
        parent = "parent"?,
    }
);

/// A VM as Basphere reads it, as plain data.
pub(super) struct VmFacts {
    pub(super) moref: ManagedObjectReference,
    pub(super) name: String,
    pub(super) power: PowerState,
    /// Its `guestinfo.basphere.id`.
    pub(super) marker: Option<String>,
    /// The id of the folder it is in.
    pub(super) parent: Option<String>,
}

impl VmFacts {
    pub(super) fn of(row: VmRow) -> VmFacts {
        VmFacts {
            marker: marker_of(&row),
            power: if row.power_state == VirtualMachinePowerStateEnum::PoweredOn {
                PowerState::On
            } else {
                PowerState::Off
            },
            parent: row.parent.map(|parent| parent.value),
            name: row.name,
            moref: row.id,
        }
    }
}

/// A folder as Basphere reads it.
pub(super) struct FolderFacts {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) parent: Option<String>,
}

/// What is in vCenter at a VM's name.
pub(super) enum Found {
    /// The VM carrying this id.
    Ours(VmFacts),
    /// A VM of the same name without this id: not Basphere's, never touched.
    Foreign,
    Nothing,
}

pub(super) fn marker_of(row: &VmRow) -> Option<String> {
    row.extra.iter().flatten().find(|option| option.key == MARKER).and_then(|option| match &option.value {
        Some(VimAny::Value(ValueElements::PrimitiveString(value))) => Some(value.clone()),
        _ => None,
    })
}

impl VsphereApiProvisioner {
    pub(super) fn find<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Option<ManagedObjectReference>>> {
        self.read(move |session| {
            Box::pin(async move {
                let client = &session.client;
                let index = client.service_content().search_index.clone().expect("vCenter has a SearchIndex");
                Ok(SearchIndex::new(client.clone(), &index.value).find_by_inventory_path(path).await?)
            })
        })
    }

    pub(super) fn require<'a>(&'a self, key: &'a str, path: &'a str) -> BoxFuture<'a, Result<ManagedObjectReference>> {
        Box::pin(async move {
            self.find(path)
                .await?
                .ok_or_else(|| Error::invalid(key, format!("{path} was not found in vCenter {}", self.settings.server)))
        })
    }

    /// The VM's name, power state, marker and folder.
    pub(super) fn vm<'a>(&'a self, vm: &'a ManagedObjectReference) -> BoxFuture<'a, Result<VmFacts>> {
        self.read(move |session| {
            Box::pin(async move {
                let retriever = ObjectRetriever::new(session.client.clone())?;
                let row =
                    retriever.retrieve_object::<VmRow>(vm).await?.ok_or_else(|| Error::not_found("vm", &vm.value))?;
                Ok(VmFacts::of(row))
            })
        })
    }

    /// The objects of one type (`VirtualMachine`, `Folder`) anywhere under `container`. (Asking
    /// for the list first also spares an empty retrieval, which the simulator answers in a form
    /// vim_rs cannot read.)
    pub(super) fn members<'a>(
        &'a self,
        container: &'a ManagedObjectReference,
        kind: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ManagedObjectReference>>> {
        self.read(move |session| {
            Box::pin(async move {
                let client = &session.client;
                let manager = client.service_content().view_manager.clone().expect("vCenter has a ViewManager");
                let view = ViewManager::new(client.clone(), &manager.value)
                    .create_container_view(container, Some(&[kind.to_owned()]), true)
                    .await?;
                let view = ContainerView::new(client.clone(), &view.value);
                let members = view.view().await;
                let _ = view.destroy_view().await;
                Ok(members?.unwrap_or_default())
            })
        })
    }

    /// The VMs and folders listed, read in one session.
    pub(super) fn inventory_of<'a>(
        &'a self,
        vms: &'a [ManagedObjectReference],
        folders: &'a [ManagedObjectReference],
    ) -> BoxFuture<'a, Result<(Vec<VmFacts>, Vec<FolderFacts>)>> {
        self.read(move |session| {
            Box::pin(async move {
                let retriever = ObjectRetriever::new(session.client.clone())?;
                let vm_rows: Vec<VmRow> = retriever.retrieve_objects_from_list(vms).await?;
                let folder_rows: Vec<FolderRow> =
                    if folders.is_empty() { Vec::new() } else { retriever.retrieve_objects_from_list(folders).await? };
                let folders = folder_rows
                    .into_iter()
                    .map(|row| FolderFacts { id: row.id.value, name: row.name, parent: row.parent.map(|p| p.value) })
                    .collect();
                Ok((vm_rows.into_iter().map(VmFacts::of).collect(), folders))
            })
        })
    }

    /// The VM `<owner>-<name>` in the owner's folder.
    pub(super) fn existing<'a>(
        &'a self,
        owner: &'a Username,
        vsphere_name: &'a str,
    ) -> BoxFuture<'a, Result<Option<VmFacts>>> {
        Box::pin(async move {
            match self.find(&format!("{}/{vsphere_name}", self.user_folder_path(owner))).await? {
                Some(moref) => Ok(Some(self.vm(&moref).await?)),
                None => Ok(None),
            }
        })
    }

    /// What is at `vm`'s name: its own VM (carrying its id), someone else's, or nothing.
    pub(super) fn lookup<'a>(&'a self, vm: &'a VmRef) -> BoxFuture<'a, Result<Found>> {
        Box::pin(async move {
            Ok(match self.existing(&vm.owner, &vm.vsphere_name).await? {
                Some(facts) if facts.marker.as_deref() == Some(vm.id.to_string().as_str()) => Found::Ours(facts),
                Some(_) => Found::Foreign,
                None => Found::Nothing,
            })
        })
    }
}
