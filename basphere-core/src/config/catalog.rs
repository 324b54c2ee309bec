//! The catalog: OS images, VM specs, cluster node specs and cluster types, with the product's
//! defaults.

use std::collections::BTreeMap;

use super::raw::{RawClusterType, RawNodeSpec, RawOs, RawVmSpec};
use super::{check_catalog_key, keys, positive};
use crate::error::{Error, Result};
use crate::model::{ClusterType, NodeSpec, OsImage, VmSpec};

pub(super) fn default_os_images() -> BTreeMap<String, OsImage> {
    [
        ("ubuntu-24.04", "ubuntu-noble-24.04-cloudimg", "Ubuntu 24.04 LTS (Noble)", "ens192"),
        ("rocky-10.1", "rocky-10-template", "Rocky Linux 10.1", "ens33"),
    ]
    .into_iter()
    .map(|(key, template, description, interface)| {
        (
            key.to_owned(),
            OsImage {
                key: key.into(),
                template: template.into(),
                description: description.into(),
                interface: interface.into(),
            },
        )
    })
    .collect()
}

pub(super) fn default_vm_specs() -> BTreeMap<String, VmSpec> {
    [
        ("tiny", "Extra-small VM (testing)", 2, 4, 50),
        ("small", "Small VM (development)", 2, 8, 50),
        ("medium", "Medium VM (general workloads)", 4, 16, 100),
        ("large", "Large VM (high performance)", 8, 32, 200),
        ("huge", "Extra-large VM (large workloads)", 16, 64, 200),
    ]
    .into_iter()
    .map(|(key, description, cpu, memory_gb, disk_gb)| {
        (
            key.to_owned(),
            VmSpec { key: key.into(), description: description.into(), cpu, memory_mb: memory_gb * 1024, disk_gb },
        )
    })
    .collect()
}

pub(super) fn default_cluster_types() -> BTreeMap<String, ClusterType> {
    [
        ("dev", "Development cluster", 1, 2, "medium", "medium"),
        ("standard", "Standard cluster (HA)", 3, 3, "medium", "large"),
    ]
    .into_iter()
    .map(|(key, description, control_plane_count, worker_count, cp, worker)| {
        (
            key.to_owned(),
            ClusterType {
                key: key.into(),
                description: description.into(),
                control_plane_count,
                worker_count,
                control_plane_spec: cp.into(),
                worker_spec_default: worker.into(),
            },
        )
    })
    .collect()
}

pub(super) fn default_node_specs() -> BTreeMap<String, NodeSpec> {
    [("small", 2, 4, 50), ("medium", 4, 8, 100), ("large", 8, 16, 200)]
        .into_iter()
        .map(|(key, cpu, memory_gb, disk_gb)| {
            (key.to_owned(), NodeSpec { key: key.into(), cpu, memory_mb: memory_gb * 1024, disk_gb })
        })
        .collect()
}

/// The catalog sections, checked: OS images (`templates.os`), VM specs (`vm_specs`), cluster node
/// specs (`cluster_node_specs`) and cluster types (`cluster_types`, whose specs must exist).
pub(super) struct Catalog {
    pub(super) os_images: BTreeMap<String, OsImage>,
    pub(super) vm_specs: BTreeMap<String, VmSpec>,
    pub(super) node_specs: BTreeMap<String, NodeSpec>,
    pub(super) cluster_types: BTreeMap<String, ClusterType>,
}

pub(super) fn catalog(
    os: Option<BTreeMap<String, RawOs>>,
    vm_specs: Option<BTreeMap<String, RawVmSpec>>,
    cluster_node_specs: Option<BTreeMap<String, RawNodeSpec>>,
    cluster_types: Option<BTreeMap<String, RawClusterType>>,
) -> Result<Catalog> {
    let os_images = match os {
        None => default_os_images(),
        Some(entries) => {
            let mut images = BTreeMap::new();
            for (key, os) in entries {
                let at = format!("templates.os.{key}");
                check_catalog_key(&at, &key)?;
                let template = os.template.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
                    Error::invalid(format!("{at}.template"), "is required: the name of the vSphere template to clone")
                })?;
                let interface = os.interface.unwrap_or_else(|| "ens192".into());
                if interface.is_empty() || !interface.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    return Err(Error::invalid(
                        format!("{at}.interface"),
                        format!("{interface:?} is not an interface name like ens192"),
                    ));
                }
                images.insert(
                    key.clone(),
                    OsImage { description: os.description.unwrap_or_else(|| key.clone()), key, template, interface },
                );
            }
            if images.is_empty() {
                return Err(Error::invalid("templates.os", "at least one OS is needed"));
            }
            images
        }
    };

    let vms = match vm_specs {
        None => default_vm_specs(),
        Some(entries) => {
            let mut specs = BTreeMap::new();
            for (key, spec) in entries {
                let at = format!("vm_specs.{key}");
                check_catalog_key(&at, &key)?;
                let spec = VmSpec {
                    description: spec.description.unwrap_or_else(|| key.clone()),
                    cpu: positive(&format!("{at}.cpu"), spec.cpu, 1..=768)?,
                    memory_mb: positive(&format!("{at}.memory_mb"), spec.memory_mb, 256..=24 * 1024 * 1024)?,
                    disk_gb: positive(&format!("{at}.disk_gb"), spec.disk_gb, 1..=62 * 1024)?,
                    key: key.clone(),
                };
                specs.insert(key, spec);
            }
            if specs.is_empty() {
                return Err(Error::invalid("vm_specs", "at least one spec is needed"));
            }
            specs
        }
    };

    let node_specs = match cluster_node_specs {
        None => default_node_specs(),
        Some(entries) => {
            let mut specs = BTreeMap::new();
            for (key, spec) in entries {
                let at = format!("cluster_node_specs.{key}");
                check_catalog_key(&at, &key)?;
                let spec = NodeSpec {
                    cpu: positive(&format!("{at}.cpu"), spec.cpu, 1..=768)?,
                    memory_mb: positive(&format!("{at}.memory_mb"), spec.memory_mb, 1024..=24 * 1024 * 1024)?,
                    disk_gb: positive(&format!("{at}.disk_gb"), spec.disk_gb, 10..=62 * 1024)?,
                    key: key.clone(),
                };
                specs.insert(key, spec);
            }
            specs
        }
    };

    let types = match cluster_types {
        None => default_cluster_types(),
        Some(entries) => {
            let mut types = BTreeMap::new();
            for (key, raw_type) in entries {
                let at = format!("cluster_types.{key}");
                check_catalog_key(&at, &key)?;
                let cluster_type = ClusterType {
                    description: raw_type.description.unwrap_or_else(|| key.clone()),
                    control_plane_count: raw_type.control_plane_count.unwrap_or(1),
                    worker_count: raw_type.worker_count.unwrap_or(2),
                    control_plane_spec: raw_type.control_plane_spec.unwrap_or_else(|| "medium".into()),
                    worker_spec_default: raw_type.worker_spec_default.unwrap_or_else(|| "medium".into()),
                    key: key.clone(),
                };
                if cluster_type.control_plane_count.is_multiple_of(2) {
                    return Err(Error::invalid(
                        format!("{at}.control_plane_count"),
                        format!(
                            "{} is not accepted: use an odd number (1, 3, 5) so etcd keeps quorum",
                            cluster_type.control_plane_count
                        ),
                    ));
                }
                types.insert(key, cluster_type);
            }
            types
        }
    };
    for (key, cluster_type) in &types {
        for (field, spec) in [
            ("control_plane_spec", &cluster_type.control_plane_spec),
            ("worker_spec_default", &cluster_type.worker_spec_default),
        ] {
            if !node_specs.contains_key(spec) {
                return Err(Error::invalid(
                    format!("cluster_types.{key}.{field}"),
                    format!("{spec:?} is not one of the node specs: {}", keys(&node_specs)),
                ));
            }
        }
    }
    Ok(Catalog { os_images, vm_specs: vms, node_specs, cluster_types: types })
}
