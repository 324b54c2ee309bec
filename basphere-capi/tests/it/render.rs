//! Every rendered object validates against the CRD schema of its kind and version.

use std::collections::BTreeSet;

use basphere_capi::render::{cluster_objects, ApiVersion, ApiVersions, Names};
use serde_json::{json, Value};

use super::{layout, request};
use basphere_capi::schema::Schemas;

const V1: ApiVersion = ApiVersion::V1beta1;
const V2: ApiVersion = ApiVersion::V1beta2;

fn versions(cluster_api: ApiVersion, vsphere: ApiVersion, pool_reuse_grace: bool) -> ApiVersions {
    ApiVersions { cluster_api, vsphere, pool_reuse_grace }
}

/// Every combination a management cluster may serve: both contracts, Cluster API ahead of CAPV,
/// and an IPAM provider without the reuse grace period.
fn all_versions() -> Vec<ApiVersions> {
    vec![
        versions(V1, V1, true),
        versions(V2, V2, true),
        versions(V2, V1, true),
        versions(V2, V2, false),
        versions(V1, V1, false),
    ]
}

/// The API server's own checks of what no CRD describes: names, labels, core kinds.
fn check_basics(object: &Value) {
    let name = object["metadata"]["name"].as_str().unwrap();
    assert!(
        !name.is_empty()
            && name.len() <= 253
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'),
        "{name} is not a DNS subdomain"
    );
    for (key, value) in object["metadata"]["labels"].as_object().into_iter().flatten() {
        let value = value.as_str().unwrap();
        assert!(value.len() <= 63, "label {key}={value} is too long");
        assert!(value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "label {key}={value}");
    }
    if object["kind"] == "Secret" {
        assert_eq!(
            object["type"], "addons.cluster.x-k8s.io/resource-set",
            "a resource set takes only its own Secret type"
        );
    }
}

/// The webhooks' rules Basphere's objects must meet (CAPV's and the IPAM provider's).
fn check_webhook_rules(object: &Value) {
    match object["kind"].as_str().unwrap() {
        "VSphereMachineTemplate" => {
            let spec = &object["spec"]["template"]["spec"];
            assert!(spec.get("providerID").is_none(), "no providerID in a template");
            for device in spec["network"]["devices"].as_array().unwrap() {
                assert!(device.get("ipAddrs").is_none(), "no fixed addresses in a template");
            }
        }
        "InClusterIPPool" => {
            let spec = &object["spec"];
            let prefix = spec["prefix"].as_u64().unwrap() as u32;
            let gateway: std::net::Ipv4Addr = spec["gateway"].as_str().unwrap().parse().unwrap();
            let mask = u32::MAX << (32 - prefix);
            for address in spec["addresses"].as_array().unwrap() {
                let address: std::net::Ipv4Addr = address.as_str().unwrap().parse().unwrap();
                assert_eq!(u32::from(address) & mask, u32::from(gateway) & mask, "{address} outside the prefix");
            }
        }
        "KubeadmControlPlane" | "KubeadmConfigTemplate" => {
            // The CRD's CEL rule: extra argument names are unique.
            let text = object.to_string();
            assert!(text.matches("\"cloud-provider\"").count() <= 3, "{text}");
        }
        _ => {}
    }
}

/// A tenant's cluster: its nodes on the tenant LAN's port group with the LAN's MTU, its pool
/// in the LAN's subnet behind the tenant router; every object still valid in both contracts.
#[test]
fn a_tenant_cluster_is_on_its_lan_port_group_with_its_mtu() {
    use basphere_core::cluster_provisioner::ClusterLan;
    let schemas = Schemas::load();
    let mut request = request(1, 2, "small");
    request.endpoint = std::net::Ipv4Addr::new(10, 0, 1, 2);
    request.node_addresses = (3..8).map(|i| std::net::Ipv4Addr::new(10, 0, 1, i)).collect();
    request.prefix_len = 24;
    request.gateway = std::net::Ipv4Addr::new(10, 0, 1, 1);
    request.lan = Some(ClusterLan { port_group: "basphere-alice-lan1".into(), mtu: 1450 });
    for versions in all_versions() {
        let objects = cluster_objects(&layout(), versions, &request);
        let templates: Vec<&serde_json::Value> =
            objects.iter().filter(|object| object["kind"] == "VSphereMachineTemplate").collect();
        assert_eq!(templates.len(), 2, "control plane and workers");
        for template in templates {
            let device = &template["spec"]["template"]["spec"]["network"]["devices"][0];
            assert_eq!(device["networkName"], "basphere-alice-lan1", "{device}");
            assert_eq!(device["mtu"], 1450, "{device}");
        }
        let pool = objects.iter().find(|object| object["kind"] == "InClusterIPPool").expect("a pool");
        assert_eq!(pool["spec"]["gateway"], "10.0.1.1");
        assert_eq!(pool["spec"]["prefix"], 24);
        for object in &objects {
            check_basics(object);
            if object["apiVersion"] == "v1" {
                continue;
            }
            let errors = schemas.errors(object).unwrap();
            assert!(errors.is_empty(), "{} {}: {errors:#?}", object["apiVersion"], object["kind"]);
        }
    }
    // In flat mode nothing of it: the configured network, no MTU.
    let first = all_versions().into_iter().next().unwrap();
    let flat = cluster_objects(&layout(), first, &super::request(1, 2, "small"));
    let template = flat.iter().find(|object| object["kind"] == "VSphereMachineTemplate").unwrap();
    let device = &template["spec"]["template"]["spec"]["network"]["devices"][0];
    assert_eq!(device["networkName"], layout().network.as_str());
    assert!(device.get("mtu").is_none(), "{device}");
}

#[test]
fn every_object_validates_against_its_crd_for_every_type_spec_and_version() {
    let schemas = Schemas::load();
    let mut seen = BTreeSet::new();
    for (control_plane, workers) in [(1, 2), (3, 3)] {
        for worker_spec in ["small", "medium", "large"] {
            for versions in all_versions() {
                let mut layout = layout();
                for addons in [true, false] {
                    if !addons {
                        layout.addons.clear();
                    }
                    let request = request(control_plane, workers, worker_spec);
                    let objects = cluster_objects(&layout, versions, &request);
                    for object in &objects {
                        check_basics(object);
                        check_webhook_rules(object);
                        if object["apiVersion"] == "v1" {
                            continue;
                        }
                        let errors = schemas.errors(object).unwrap();
                        assert!(errors.is_empty(), "{} {}: {errors:#?}", object["apiVersion"], object["kind"]);
                        seen.insert((
                            object["apiVersion"].as_str().unwrap().to_owned(),
                            object["kind"].as_str().unwrap().to_owned(),
                        ));
                    }
                }
            }
        }
    }
    // Both contract versions of every kind Basphere renders were checked.
    for kind in [
        "Cluster",
        "MachineDeployment",
        "KubeadmControlPlane",
        "KubeadmConfigTemplate",
        "VSphereCluster",
        "VSphereMachineTemplate",
        "ClusterResourceSet",
    ] {
        for version in ["v1beta1", "v1beta2"] {
            assert!(
                seen.iter().any(|(v, k)| k == kind && v.ends_with(version)),
                "{kind} {version} never rendered: {seen:?}"
            );
        }
    }
    assert!(seen.contains(&("ipam.cluster.x-k8s.io/v1alpha2".to_owned(), "InClusterIPPool".to_owned())));
}

#[test]
fn the_schema_check_refuses_what_the_api_server_refuses() {
    let schemas = Schemas::load();
    let objects = cluster_objects(&layout(), versions(V2, V2, true), &request(1, 2, "small"));
    let find = |kind: &str| objects.iter().find(|o| o["kind"] == kind).unwrap().clone();

    let mut misspelt = find("VSphereMachineTemplate");
    misspelt["spec"]["template"]["spec"]["numCpus"] = json!(4);
    assert!(!schemas.errors(&misspelt).unwrap().is_empty(), "an unknown field is refused, not pruned");

    let mut one_cpu = find("VSphereMachineTemplate");
    one_cpu["spec"]["template"]["spec"]["numCPUs"] = json!(1);
    assert!(!schemas.errors(&one_cpu).unwrap().is_empty(), "v1beta2 wants 2 CPUs at least");

    let mut empty = find("KubeadmControlPlane");
    empty["spec"]["kubeadmConfigSpec"]["users"] = json!([]);
    assert!(!schemas.errors(&empty).unwrap().is_empty(), "v1beta2 refuses empty lists");

    let mut v1_ref = find("Cluster");
    v1_ref["spec"]["controlPlaneRef"] =
        json!({"apiVersion": "controlplane.cluster.x-k8s.io/v1beta2", "kind": "KubeadmControlPlane", "name": "dev"});
    assert!(!schemas.errors(&v1_ref).unwrap().is_empty(), "v1beta2 references carry an apiGroup, not an apiVersion");

    let mut grace = find("InClusterIPPool");
    grace["apiVersion"] = json!("ipam.cluster.x-k8s.io/v1alpha1");
    assert!(!schemas.errors(&grace).unwrap().is_empty(), "the reuse grace period is a v1alpha2 field");
    assert!(schemas.versions().len() >= 17, "{:?}", schemas.versions());
}

#[test]
fn the_pool_holds_exactly_the_leased_node_addresses_and_never_the_vip() {
    let request = request(3, 3, "large");
    let objects = cluster_objects(&layout(), versions(V2, V2, true), &request);
    let pool = objects.iter().find(|o| o["kind"] == "InClusterIPPool").unwrap();
    let addresses: Vec<String> = serde_json::from_value(pool["spec"]["addresses"].clone()).unwrap();
    let leased: Vec<String> = request.node_addresses.iter().map(ToString::to_string).collect();
    assert_eq!(addresses, leased);
    assert_eq!(addresses.len(), 3 + 3 + 2, "every node and the surge");
    assert!(!addresses.contains(&request.endpoint.to_string()));
    assert_eq!(pool["spec"]["addressReuseGracePeriodSeconds"], 60);
    let vsphere_cluster = objects.iter().find(|o| o["kind"] == "VSphereCluster").unwrap();
    assert_eq!(vsphere_cluster["spec"]["controlPlaneEndpoint"], json!({"host": "10.254.0.40", "port": 6443}));
    assert_eq!(
        vsphere_cluster["spec"]["identityRef"],
        json!({"kind": "VSphereClusterIdentity", "name": "basphere-vsphere"})
    );
    // No credentials anywhere in the owner's namespace.
    let all = serde_json::to_string(&objects).unwrap();
    assert!(!all.contains("password") && !all.contains("username:"), "{all}");
    let names = Names::of(&layout(), &request);
    assert!(objects.iter().all(|o| o["metadata"]["namespace"] == names.namespace.as_str()));
}

#[test]
fn a_new_size_makes_a_new_machine_template_and_the_same_size_the_same() {
    let layout = layout();
    let template = |spec: &str| {
        let objects = cluster_objects(&layout, versions(V2, V2, true), &request(1, 2, spec));
        objects
            .iter()
            .filter(|o| o["kind"] == "VSphereMachineTemplate")
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(template("small"), template("small"));
    assert_eq!(template("small")[0], template("large")[0], "the control plane's size did not change");
    assert_ne!(template("small")[1], template("large")[1]);
    assert!(template("small")[1].starts_with("dev-md-"));
}

#[test]
fn kube_vip_serves_the_vip_with_super_admin_conf_only_on_the_init_node() {
    let objects = cluster_objects(&layout(), versions(V2, V2, true), &request(3, 3, "medium"));
    let kcp = objects.iter().find(|o| o["kind"] == "KubeadmControlPlane").unwrap();
    let files = kcp["spec"]["kubeadmConfigSpec"]["files"].as_array().unwrap();
    let manifest = files.iter().find(|f| f["path"] == "/etc/kubernetes/manifests/kube-vip.yaml").unwrap();
    let pod: Value = serde_yaml::from_str(manifest["content"].as_str().unwrap()).unwrap();
    let env: Vec<(String, String)> = pod["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e["value"].as_str().unwrap().to_owned()))
        .collect();
    assert!(env.contains(&("address".into(), "10.254.0.40".into())));
    assert!(env.contains(&("cp_enable".into(), "true".into())));
    assert!(pod["spec"].get("hostAliases").is_none(), "hostAliases break static pods from 1.29");
    assert_eq!(pod["spec"]["volumes"][1]["hostPath"]["path"], "/etc/kube-vip.hosts");
    let hosts = files.iter().find(|f| f["path"] == "/etc/kube-vip.hosts").unwrap();
    assert!(hosts["content"].as_str().unwrap().contains("kubernetes"));
    let prepare = files.iter().find(|f| f["path"].as_str().unwrap().starts_with("/etc/pre-kubeadm-commands/")).unwrap();
    let script = prepare["content"].as_str().unwrap();
    assert!(script.contains("super-admin.conf") && script.contains("/run/kubeadm/kubeadm.yaml"), "{script}");
    assert!(!script.contains("-lt 31"), "still needed on 1.31 and later");
    let commands = kcp["spec"]["kubeadmConfigSpec"]["preKubeadmCommands"].to_string();
    assert!(commands.contains("/etc/pre-kubeadm-commands"), "{commands}");
    // Workers run no kube-vip.
    let workers = objects.iter().find(|o| o["kind"] == "KubeadmConfigTemplate").unwrap();
    assert!(!workers.to_string().contains("kube-vip"));
}

#[test]
fn user_values_stay_values() {
    // What a hostile admin file or a future field could carry: YAML and JSON breakers.
    let mut layout = layout();
    layout.vip_interface = Some("eth0\"\n  evil: true\n---\nkind: Secret".into());
    layout.addons.insert("evil".into(), "\"}]}\n---\napiVersion: v1\nkind: Secret\n".into());
    let request = request(1, 2, "small");
    let objects = cluster_objects(&layout, versions(V2, V2, true), &request);
    let kcp = objects.iter().find(|o| o["kind"] == "KubeadmControlPlane").unwrap();
    let manifest = kcp["spec"]["kubeadmConfigSpec"]["files"][0]["content"].as_str().unwrap();
    let pods: Vec<Value> = serde_yaml::Deserializer::from_str(manifest).map(|d| Value::deserialize_from(d)).collect();
    assert_eq!(pods.len(), 1, "one document: {manifest}");
    let interface = pods[0]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "vip_interface")
        .unwrap();
    assert_eq!(interface["value"], layout.vip_interface.clone().unwrap().as_str());
    let secret = objects.iter().find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == "dev-addons-evil").unwrap();
    assert_eq!(secret["stringData"]["evil.yaml"], layout.addons["evil"].as_str());
    // The owner's key lands as one list item, whole.
    let users = &kcp["spec"]["kubeadmConfigSpec"]["users"][0];
    assert_eq!(users["name"], "alice");
    assert_eq!(users["sshAuthorizedKeys"], json!([request.ssh_key.as_str()]));
}

trait FromDeserializer {
    fn deserialize_from(d: serde_yaml::Deserializer<'_>) -> Value;
}

impl FromDeserializer for Value {
    fn deserialize_from(d: serde_yaml::Deserializer<'_>) -> Value {
        serde::Deserialize::deserialize(d).unwrap()
    }
}

#[test]
fn snapshots_of_a_dev_cluster_in_both_contract_versions() {
    let mut layout = layout();
    layout.addons.retain(|k, _| k == "cpi");
    for (label, versions) in [("v1beta1", versions(V1, V1, false)), ("v1beta2", versions(V2, V2, true))] {
        let objects = cluster_objects(&layout, versions, &request(1, 2, "medium"));
        insta::assert_json_snapshot!(format!("dev_cluster_{label}"), objects);
    }
}

/// A DNS-1123 label's shape, of any length.
fn label_shaped(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Kubernetes' `IsDNS1123Label`.
fn dns_label(name: &str) -> bool {
    name.len() <= 63 && label_shaped(name)
}

/// Kubernetes' `IsDNS1123Subdomain`: label-shaped parts joined by dots, at most 253 characters.
fn dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(label_shaped)
}

/// Kubernetes' `IsValidLabelValue`.
fn label_value(value: &str) -> bool {
    let alphanumeric = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && (value.is_empty() || (alphanumeric(value.as_bytes().first()) && alphanumeric(value.as_bytes().last())))
}

/// Every `labels` and `matchLabels` map anywhere in `value`, with where it is.
fn label_maps<'a>(value: &'a Value, at: String, found: &mut Vec<(String, &'a serde_json::Map<String, Value>)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let here = format!("{at}.{key}");
                match (key.as_str(), inner) {
                    ("labels" | "matchLabels", Value::Object(labels)) => found.push((here, labels)),
                    _ => label_maps(inner, here, found),
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                label_maps(item, format!("{at}[{index}]"), found);
            }
        }
        _ => {}
    }
}

/// The longest names Basphere accepts (cluster, owner, namespace prefix, add-on) go through every
/// object: each name is what Kubernetes and Cluster API's webhooks take, and so is each label.
#[test]
fn the_longest_accepted_names_make_objects_kubernetes_and_cluster_api_accept() {
    use basphere_core::validate::{ResourceName, CLUSTER_NAME_MAX_LEN};
    let cluster_name = format!("dev-{}", "a".repeat(CLUSTER_NAME_MAX_LEN - 4));
    let mut request = request(3, 3, "large");
    request.name = ResourceName::cluster(&cluster_name).unwrap();
    // Usernames take at most 32 characters, namespace prefixes 31, add-on names 40.
    request.owner = basphere_core::testing::username(&format!("o{}", "w".repeat(31)));
    assert!(basphere_core::validate::Username::parse(&format!("o{}", "w".repeat(32))).is_err());
    let mut layout = layout();
    layout.namespace_prefix = format!("p{}-", "x".repeat(29));
    assert_eq!(layout.namespace_prefix.len(), 31);
    layout.addons.insert("a".repeat(40), "kind: ConfigMap\n".into());
    let schemas = Schemas::load();

    for versions in all_versions() {
        let mut objects = cluster_objects(&layout, versions, &request);
        objects.push(basphere_capi::render::namespace(&layout, request.owner.as_str()));
        let names = Names::of(&layout, &request);
        for object in &objects {
            let kind = object["kind"].as_str().unwrap();
            let name = object["metadata"]["name"].as_str().unwrap();
            assert!(dns_subdomain(name), "{kind} {name} is not a DNS subdomain");
            let addon_secret = kind == "Secret" && name.starts_with(&format!("{}-", names.addons));
            // Every name Basphere derives is a DNS label too (the add-on Secrets take the
            // add-on's name, up to 40 characters, and are DNS subdomains).
            assert!(addon_secret || dns_label(name), "{kind} {name} ({} characters) is not a DNS label", name.len());
            if kind == "Namespace" {
                assert!(dns_label(name), "the namespace {name} is not a DNS label");
            } else {
                let namespace = object["metadata"]["namespace"].as_str().unwrap();
                assert!(dns_label(namespace), "namespace {namespace} of {kind} {name}");
            }
            // Cluster API copies these names into labels (cluster-name, deployment-name,
            // control-plane-name), and its webhooks refuse names that are not label values.
            if matches!(kind, "Cluster" | "MachineDeployment" | "KubeadmControlPlane") {
                assert!(label_value(name), "{kind} {name} ({} characters) is not a label value", name.len());
            }
            let mut maps = Vec::new();
            label_maps(object, String::new(), &mut maps);
            assert!(!maps.is_empty() || kind == "Namespace", "{kind} has labels");
            for (at, labels) in maps {
                for (key, value) in labels {
                    let value = value.as_str().unwrap();
                    assert!(label_value(value), "{kind} {name}{at}: {key}={value} is not a label value");
                }
            }
            if object["apiVersion"] != "v1" {
                let errors = schemas.errors(object).unwrap();
                assert!(errors.is_empty(), "{kind} {name}: {errors:#?}");
            }
        }
        // What Cluster API makes from these names: the kubeconfig Secret, the certificates.
        for suffix in ["kubeconfig", "ca", "etcd", "sa", "proxy"] {
            let secret = format!("{}-{suffix}", names.cluster);
            assert!(dns_label(&secret), "{secret}");
        }
        assert!(objects.iter().any(|o| o["kind"] == "MachineDeployment" && o["metadata"]["name"] == names.workers));
    }
}
