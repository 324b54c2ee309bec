//! Tenant networks' distributed port groups: the distributed switch found by name, port groups
//! found by name and read as plain data (`PortGroupFacts`), made with `AddDVPortgroup_Task`,
//! given the VLAN asked with `ReconfigureDVPortgroup_Task`, destroyed; and the connection that
//! puts a VM's NIC on one (`PortConnection`). Basphere's port groups carry the tenant's
//! description ([`TenantPortGroups::description`]); a port group without it is never touched.

use basphere_core::provisioner::{PortGroupSpec, TenantPortGroups};
use basphere_core::{Error, Result};
use vim_rs::core::pc_retrieve::ObjectRetriever;
use vim_rs::mo::{DistributedVirtualPortgroup, DistributedVirtualSwitch, VmwareDistributedVirtualSwitch};
use vim_rs::types::enums::MoTypesEnum;
use vim_rs::types::struct_enum::StructType;
use vim_rs::types::structs::{
    DvPortgroupConfigSpec, InheritablePolicy, ManagedObjectReference, VMwareDvsPortSetting,
    VmwareDistributedVirtualSwitchVlanIdSpec, VmwareDistributedVirtualSwitchVlanSpec,
};
use vim_rs::types::traits::DvPortSettingTrait;
use vim_rs::vim_retrievable;

use super::machines::empty;
use super::{BoxFuture, VsphereApiProvisioner};

vim_retrievable!(
    struct SwitchRow: DistributedVirtualSwitch {
        name = "name",
        uuid = "uuid",
    }
);

vim_retrievable!(
    struct NameRow: DistributedVirtualPortgroup {
        name = "name",
    }
);

vim_retrievable!(
    struct PortGroupRow: DistributedVirtualPortgroup {
        name = "name",
        key = "key",
        description = "config.description"?,
        config_version = "config.config_version"?,
        port_config = "config.default_port_config"?,
        switch = "config.distributed_virtual_switch"?,
    }
);

/// Ports a port group starts with; it grows by itself (`autoExpand`).
const PORTS: i32 = 8;

/// Attempts at one port group when someone else makes or changes it at the same time.
const ATTEMPTS: u32 = 3;

/// A distributed switch, as plain data.
pub(super) struct SwitchFacts {
    pub(super) moref: ManagedObjectReference,
    pub(super) name: String,
}

/// A distributed port group, as plain data.
#[derive(Clone)]
pub(super) struct PortGroupFacts {
    pub(super) moref: ManagedObjectReference,
    pub(super) name: String,
    /// The key a NIC's connection names it by.
    pub(super) key: String,
    /// Basphere's marker, on Basphere's port groups.
    pub(super) description: Option<String>,
    /// Its ports' VLAN id, when they have one (not a trunk or a private VLAN).
    pub(super) vlan: Option<i32>,
    /// What a reconfigure must name (vCenter refuses one made from an older configuration).
    pub(super) config_version: Option<String>,
    /// The id of its distributed switch.
    pub(super) switch: Option<ManagedObjectReference>,
}

impl PortGroupFacts {
    fn of(row: PortGroupRow) -> PortGroupFacts {
        PortGroupFacts {
            vlan: vlan_of(row.port_config.as_deref()),
            moref: row.id,
            name: row.name,
            key: row.key,
            description: row.description,
            config_version: row.config_version,
            switch: row.switch,
        }
    }
}

/// The connection that puts a NIC on a distributed port group, as plain data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PortConnection {
    /// The port group's name, for messages.
    pub(super) name: String,
    pub(super) switch_uuid: String,
    pub(super) portgroup_key: String,
}

/// The VLAN id of a port group's default port setting, when it is a single VLAN.
fn vlan_of(setting: Option<&dyn DvPortSettingTrait>) -> Option<i32> {
    let setting = setting?.as_any_ref().downcast_ref::<VMwareDvsPortSetting>()?;
    let vlan = setting.vlan.as_deref()?.as_any_ref().downcast_ref::<VmwareDistributedVirtualSwitchVlanIdSpec>()?;
    Some(vlan.vlan_id)
}

/// A port group's whole configuration as Basphere makes it: early binding (a VM keeps its port),
/// a few ports that grow as needed, the tenant's marker and the VLAN. A reconfigure sends it whole
/// too, with the configuration version it changes.
fn port_group_spec(wanted: &PortGroupSpec, description: &str, config_version: Option<String>) -> DvPortgroupConfigSpec {
    let vlan = VmwareDistributedVirtualSwitchVlanIdSpec {
        vmware_distributed_virtual_switch_vlan_spec_: VmwareDistributedVirtualSwitchVlanSpec {
            inheritable_policy_: InheritablePolicy { inherited: false },
        },
        vlan_id: i32::from(wanted.vlan),
    };
    let mut setting: VMwareDvsPortSetting = empty();
    setting.vlan = Some(Box::new(vlan));
    let mut spec: DvPortgroupConfigSpec = empty();
    spec.config_version = config_version;
    spec.name = Some(wanted.name.clone());
    spec.r#type = Some("earlyBinding".to_owned());
    spec.num_ports = Some(PORTS);
    spec.auto_expand = Some(true);
    spec.description = Some(description.to_owned());
    spec.default_port_config = Some(Box::new(setting));
    spec
}

/// Whether `found` is Basphere's port group for this tenant, on `switch`: anything else is never
/// touched, and its name cannot be the tenant's.
fn check_ours(found: &PortGroupFacts, switch: &SwitchFacts, description: &str) -> Result<()> {
    if found.description.as_deref() != Some(description) {
        return Err(Error::already_exists(
            "port group",
            format!("{} (not Basphere's: its description is not {description:?}; left untouched)", found.name),
        ));
    }
    if found.switch.as_ref().is_some_and(|on| on.value != switch.moref.value) {
        return Err(Error::already_exists(
            "port group",
            format!(
                "{} (on another distributed switch than {}, where it is asked for; left untouched)",
                found.name, switch.name
            ),
        ));
    }
    Ok(())
}

impl VsphereApiProvisioner {
    /// The datacenter's network folder, where its switches and port groups are.
    fn network_folder(&self) -> BoxFuture<'_, Result<ManagedObjectReference>> {
        Box::pin(async move { self.require("vsphere.datacenter", &self.path("network")).await })
    }

    /// The distributed switch `name` of the datacenter.
    pub(super) fn switch_named<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<SwitchFacts>>> {
        Box::pin(async move {
            let folder = self.network_folder().await?;
            let switches = self.members(&folder, "DistributedVirtualSwitch").await?;
            if switches.is_empty() {
                return Ok(None);
            }
            let switches = &switches;
            let rows = self
                .read(move |session| {
                    Box::pin(async move {
                        let retriever = ObjectRetriever::new(session.client.clone())?;
                        let rows: Vec<SwitchRow> = retriever.retrieve_objects_from_list(switches).await?;
                        Ok(rows
                            .into_iter()
                            .map(|row| SwitchFacts { moref: row.id, name: row.name })
                            .collect::<Vec<_>>())
                    })
                })
                .await?;
            Ok(rows.into_iter().find(|switch| switch.name == name))
        })
    }

    /// The datacenter's distributed port groups named as in `names` (read in two steps: every
    /// port group's name, then the details of those named).
    pub(super) fn port_groups_named<'a>(&'a self, names: &'a [&'a str]) -> BoxFuture<'a, Result<Vec<PortGroupFacts>>> {
        Box::pin(async move {
            let folder = self.network_folder().await?;
            let all = self.members(&folder, "DistributedVirtualPortgroup").await?;
            if all.is_empty() {
                return Ok(Vec::new());
            }
            let all = &all;
            self.read(move |session| {
                Box::pin(async move {
                    let retriever = ObjectRetriever::new(session.client.clone())?;
                    let named: Vec<NameRow> = retriever.retrieve_objects_from_list(all).await?;
                    let wanted: Vec<ManagedObjectReference> =
                        named.into_iter().filter(|row| names.contains(&row.name.as_str())).map(|row| row.id).collect();
                    if wanted.is_empty() {
                        return Ok(Vec::new());
                    }
                    let rows: Vec<PortGroupRow> = retriever.retrieve_objects_from_list(&wanted).await?;
                    Ok(rows.into_iter().map(PortGroupFacts::of).collect())
                })
            })
            .await
        })
    }

    /// Where a NIC goes to be on the port group `name`; a port group that does not exist is
    /// `NotFound`.
    pub(super) fn port_connection<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<PortConnection>> {
        Box::pin(async move {
            let names = [name];
            let found = self.port_groups_named(&names).await?;
            let port_group = found.into_iter().next().ok_or_else(|| Error::not_found("port group", name))?;
            let switch = port_group.switch.clone().ok_or_else(|| {
                Error::backend(
                    "vsphere-api",
                    basphere_core::error::Message(format!("vCenter names no distributed switch for port group {name}")),
                )
            })?;
            let switch = &switch;
            let uuid = self
                .read(move |session| {
                    Box::pin(async move {
                        let retriever = ObjectRetriever::new(session.client.clone())?;
                        let row = retriever
                            .retrieve_object::<SwitchRow>(switch)
                            .await?
                            .ok_or_else(|| Error::not_found("distributed switch", &switch.value))?;
                        Ok(row.uuid)
                    })
                })
                .await?;
            Ok(PortConnection { name: name.to_owned(), switch_uuid: uuid, portgroup_key: port_group.key })
        })
    }

    /// Makes every port group of `spec` on its switch, or gives the one already there (Basphere's)
    /// the VLAN asked. Every name is checked before anything is made: one that is not
    /// Basphere's is `AlreadyExists`, and nothing is touched.
    pub(super) fn ensure_tenant_port_groups<'a>(&'a self, spec: &'a TenantPortGroups) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let switch = self
                .switch_named(&spec.switch)
                .await?
                .ok_or_else(|| Error::not_found("distributed switch", &spec.switch))?;
            let description = spec.description();
            let names: Vec<&str> = spec.port_groups.iter().map(|wanted| wanted.name.as_str()).collect();
            let found = self.port_groups_named(&names).await?;
            for port_group in &found {
                check_ours(port_group, &switch, &description)?;
            }
            for wanted in &spec.port_groups {
                let current = found.iter().find(|port_group| port_group.name == wanted.name).cloned();
                self.ensure_port_group(&switch, wanted, &description, current).await?;
            }
            Ok(())
        })
    }

    /// One port group: made when `current` is `None`, given the VLAN asked when it has another.
    /// Someone else making it meanwhile (`DuplicateName`) or changing it (`ConcurrentAccess`, a
    /// stale configuration version) sends Basphere back to reading it.
    fn ensure_port_group<'a>(
        &'a self,
        switch: &'a SwitchFacts,
        wanted: &'a PortGroupSpec,
        description: &'a str,
        mut current: Option<PortGroupFacts>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for attempt in 1..=ATTEMPTS {
                let outcome = match &current {
                    None => self.add_port_group(switch, wanted, description).await?,
                    Some(found) => {
                        check_ours(found, switch, description)?;
                        if found.vlan == Some(i32::from(wanted.vlan)) {
                            return Ok(());
                        }
                        tracing::info!(port_group = %wanted.name, from = ?found.vlan, to = wanted.vlan, "giving a tenant port group its VLAN");
                        self.reconfigure_port_group(found, wanted, description).await?
                    }
                };
                let failure = match outcome {
                    Ok(()) => return Ok(()),
                    Err(failure) => failure,
                };
                let raced = matches!(failure.fault, Some(StructType::DuplicateName | StructType::ConcurrentAccess));
                if !raced || attempt == ATTEMPTS {
                    return Err(failure.into_error());
                }
                let names = [wanted.name.as_str()];
                current = self.port_groups_named(&names).await?.into_iter().next();
                if current.is_none() && failure.fault == Some(StructType::DuplicateName) {
                    // The name is another network's (a standard port group), not a distributed one.
                    return Err(Error::already_exists(
                        "port group",
                        format!(
                            "{} (vCenter has another network of that name, not Basphere's; left untouched)",
                            wanted.name
                        ),
                    ));
                }
            }
            unreachable!("the last attempt returns")
        })
    }

    /// `AddDVPortgroup_Task` for one port group. One per task, so that a task's fault (a
    /// `DuplicateName`) is about that one port group; the simulator, given several, keeps those
    /// made before the one that failed only half made.
    fn add_port_group<'a>(
        &'a self,
        switch: &'a SwitchFacts,
        wanted: &'a PortGroupSpec,
        description: &'a str,
    ) -> BoxFuture<'a, Result<std::result::Result<(), super::tasks::TaskFailure>>> {
        Box::pin(async move {
            let specs = [port_group_spec(wanted, description, None)];
            let specs = &specs;
            let outcome = self
                .try_task(move |client| {
                    let id = &switch.moref.value;
                    // Called as the switch's own type: vCenter's are `VmwareDistributedVirtualSwitch`,
                    // the simulator's `DistributedVirtualSwitch`.
                    if switch.moref.r#type == MoTypesEnum::VmwareDistributedVirtualSwitch {
                        let dvs = VmwareDistributedVirtualSwitch::new(client, id);
                        Box::pin(async move { dvs.add_dv_portgroup_task(specs).await })
                    } else {
                        let dvs = DistributedVirtualSwitch::new(client, id);
                        Box::pin(async move { dvs.add_dv_portgroup_task(specs).await })
                    }
                })
                .await?;
            if outcome.is_ok() {
                tracing::info!(port_group = %wanted.name, vlan = wanted.vlan, switch = %switch.name, "made a tenant port group");
            }
            Ok(outcome.map(|_| ()))
        })
    }

    /// `ReconfigureDVPortgroup_Task` giving Basphere's port group the VLAN asked (and its whole
    /// configuration again, from the version read).
    fn reconfigure_port_group<'a>(
        &'a self,
        found: &'a PortGroupFacts,
        wanted: &'a PortGroupSpec,
        description: &'a str,
    ) -> BoxFuture<'a, Result<std::result::Result<(), super::tasks::TaskFailure>>> {
        Box::pin(async move {
            let spec = port_group_spec(wanted, description, found.config_version.clone());
            let spec = &spec;
            let outcome = self
                .try_task(move |client| {
                    let port_group = DistributedVirtualPortgroup::new(client, &found.moref.value);
                    Box::pin(async move { port_group.reconfigure_dv_portgroup_task(spec).await })
                })
                .await?;
            Ok(outcome.map(|_| ()))
        })
    }

    /// Destroys each port group of `spec` that carries the tenant's description; one that is
    /// gone or is not Basphere's is left as it is.
    pub(super) fn remove_tenant_port_groups<'a>(&'a self, spec: &'a TenantPortGroups) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let description = spec.description();
            let names: Vec<&str> = spec.port_groups.iter().map(|wanted| wanted.name.as_str()).collect();
            for port_group in self.port_groups_named(&names).await? {
                if port_group.description.as_deref() != Some(description.as_str()) {
                    tracing::info!(port_group = %port_group.name, "a port group of this name is not Basphere's; left untouched");
                    continue;
                }
                let found = &port_group;
                let outcome = self
                    .try_task(move |client| {
                        let port_group = DistributedVirtualPortgroup::new(client, &found.moref.value);
                        Box::pin(async move { port_group.destroy_task().await })
                    })
                    .await?;
                match outcome {
                    Ok(_) => tracing::info!(port_group = %port_group.name, "destroyed a tenant port group"),
                    // Destroyed by another call meanwhile.
                    Err(failure) if failure.fault == Some(StructType::ManagedObjectNotFound) => {}
                    Err(failure) if failure.fault == Some(StructType::ResourceInUse) => {
                        return Err(Error::Conflict(format!(
                            "the port group {} is in use (a VM's NIC is still on it): {}",
                            port_group.name, failure.reason
                        )))
                    }
                    Err(failure) => return Err(failure.into_error()),
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_group_spec_names_its_vlan_marker_and_binding() {
        let wanted = PortGroupSpec { name: "basphere-dave-lan1".into(), vlan: 2001 };
        let spec = port_group_spec(&wanted, "Basphere tenant network of dave", Some("7".into()));
        assert_eq!(spec.name.as_deref(), Some("basphere-dave-lan1"));
        assert_eq!(spec.description.as_deref(), Some("Basphere tenant network of dave"));
        assert_eq!(
            (spec.r#type.as_deref(), spec.num_ports, spec.auto_expand),
            (Some("earlyBinding"), Some(8), Some(true))
        );
        assert_eq!(spec.config_version.as_deref(), Some("7"));
        assert_eq!(vlan_of(spec.default_port_config.as_deref()), Some(2001));
    }
}
