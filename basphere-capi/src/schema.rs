//! The CRDs of the kinds Basphere renders, and of the Machines it reads (`crds/`, copied
//! unchanged from Cluster API, CAPV and the in-cluster IPAM provider), as validators that are strict the way the API server is with
//! `fieldValidation=Strict`: a field the schema does not know is an error, not silently pruned.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

/// The CRD files, compiled in (as JSON: `build.rs` converts them).
const CRDS: &[&str] = &[
    include_str!(concat!(env!("OUT_DIR"), "/addons.cluster.x-k8s.io_clusterresourcesets.json")),
    include_str!(concat!(env!("OUT_DIR"), "/bootstrap.cluster.x-k8s.io_kubeadmconfigtemplates.json")),
    include_str!(concat!(env!("OUT_DIR"), "/cluster.x-k8s.io_clusters.json")),
    include_str!(concat!(env!("OUT_DIR"), "/cluster.x-k8s.io_machinedeployments.json")),
    include_str!(concat!(env!("OUT_DIR"), "/cluster.x-k8s.io_machines.json")),
    include_str!(concat!(env!("OUT_DIR"), "/controlplane.cluster.x-k8s.io_kubeadmcontrolplanes.json")),
    include_str!(concat!(env!("OUT_DIR"), "/infrastructure.cluster.x-k8s.io_vsphereclusteridentities.json")),
    include_str!(concat!(env!("OUT_DIR"), "/infrastructure.cluster.x-k8s.io_vsphereclusters.json")),
    include_str!(concat!(env!("OUT_DIR"), "/infrastructure.cluster.x-k8s.io_vspheremachinetemplates.json")),
    include_str!(concat!(env!("OUT_DIR"), "/ipam.cluster.x-k8s.io_inclusterippools.json")),
];

/// One kind a CRD defines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrdKind {
    pub group: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    pub versions: Vec<String>,
}

/// The CRDs and their validators by `(apiVersion, kind)`.
///
/// A validator is compiled when a kind's version is first checked: compiled, the schemas of
/// every version of every kind take megabytes, and most versions are never used.
pub struct Schemas {
    pub kinds: Vec<CrdKind>,
    validators: BTreeMap<(String, String), LazyValidator>,
}

/// The schema of one version of one CRD (`CRDS[crd]`, its `version`th), compiled on first use.
struct LazyValidator {
    crd: usize,
    version: usize,
    compiled: OnceLock<jsonschema::Validator>,
}

impl LazyValidator {
    fn get(&self) -> &jsonschema::Validator {
        self.compiled.get_or_init(|| {
            let mut crd: Value = serde_json::from_str(CRDS[self.crd]).expect("the compiled-in CRDs parse");
            let mut schema = crd["spec"]["versions"][self.version]["schema"]["openAPIV3Schema"].take();
            strict(&mut schema, true);
            jsonschema::draft4::new(&schema).expect("the compiled-in CRD schemas compile")
        })
    }
}

/// Refuses unknown fields where the schema does (every object with `properties`, unless it
/// keeps unknown fields).
fn strict(schema: &mut Value, root: bool) {
    if let Value::Object(map) = schema {
        let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if map.contains_key("properties") && !preserve && !map.contains_key("additionalProperties") {
            map.insert("additionalProperties".into(), Value::Bool(false));
        }
        for (key, value) in map.iter_mut() {
            match key.as_str() {
                "properties" => {
                    if let Value::Object(props) = value {
                        for (name, prop) in props.iter_mut() {
                            // The root's metadata is ObjectMeta, checked by the API server itself.
                            if !(root && name == "metadata") {
                                strict(prop, false);
                            }
                        }
                    }
                }
                "items" | "additionalProperties" => strict(value, false),
                "anyOf" | "allOf" | "oneOf" => {
                    if let Value::Array(list) = value {
                        for item in list {
                            strict(item, false);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

impl Schemas {
    pub fn load() -> Schemas {
        Self::load_with_crds().0
    }

    /// The schemas, and the CRD objects themselves as `apiextensions.k8s.io/v1` serves them (in
    /// the order of `kinds`).
    pub fn load_with_crds() -> (Schemas, Vec<Value>) {
        let mut kinds = Vec::new();
        let mut crds = Vec::new();
        let mut validators = BTreeMap::new();
        for (index, text) in CRDS.iter().enumerate() {
            let crd: Value = serde_json::from_str(text).expect("the compiled-in CRDs parse");
            let group = crd["spec"]["group"].as_str().unwrap_or_default().to_owned();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default().to_owned();
            let mut versions = Vec::new();
            for (at, version) in crd["spec"]["versions"].as_array().into_iter().flatten().enumerate() {
                let name = version["name"].as_str().unwrap_or_default().to_owned();
                let lazy = LazyValidator { crd: index, version: at, compiled: OnceLock::new() };
                validators.insert((format!("{group}/{name}"), kind.clone()), lazy);
                versions.push(name);
            }
            kinds.push(CrdKind {
                plural: crd["spec"]["names"]["plural"].as_str().unwrap_or_default().to_owned(),
                namespaced: crd["spec"]["scope"] == "Namespaced",
                group,
                kind,
                versions,
            });
            crds.push(crd);
        }
        (Schemas { kinds, validators }, crds)
    }

    /// The schema's complaints about `object`, or `Err` when no CRD defines its kind.
    pub fn errors(&self, object: &Value) -> Result<Vec<String>, String> {
        let key = (
            object["apiVersion"].as_str().unwrap_or_default().to_owned(),
            object["kind"].as_str().unwrap_or_default().to_owned(),
        );
        let validator = self.validators.get(&key).ok_or_else(|| format!("no CRD for {} {}", key.0, key.1))?.get();
        Ok(validator.iter_errors(object).map(|e| format!("{e} at {}", e.instance_path())).collect())
    }

    /// Every `(apiVersion, kind)` with a schema.
    pub fn versions(&self) -> Vec<(String, String)> {
        self.validators.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_of_every_crd_compiles() {
        let schemas = Schemas::load();
        assert!(schemas.validators.len() >= CRDS.len());
        for (key, lazy) in &schemas.validators {
            // Compiled on first use; every root schema is an object's, so a number is refused.
            assert!(!lazy.get().is_valid(&serde_json::json!(1)), "{key:?}");
        }
    }
}
