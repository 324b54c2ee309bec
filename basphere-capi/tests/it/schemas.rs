//! The CRDs' schemas as validators, strict as the API server is with `fieldValidation=Strict`:
//! a field the schema does not know is an error, not silently pruned.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// Validators by `(apiVersion, kind)`.
pub struct Schemas {
    validators: BTreeMap<(String, String), jsonschema::Validator>,
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
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crds");
        let mut validators = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let crd: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let group = crd["spec"]["group"].as_str().unwrap().to_owned();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
            for version in crd["spec"]["versions"].as_array().unwrap() {
                let mut schema = version["schema"]["openAPIV3Schema"].clone();
                strict(&mut schema, true);
                let validator = jsonschema::draft4::new(&schema).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let api_version = format!("{group}/{}", version["name"].as_str().unwrap());
                validators.insert((api_version, kind.clone()), validator);
            }
        }
        Schemas { validators }
    }

    /// The schema's complaints about `object`, or `Err` when no CRD defines its kind.
    pub fn errors(&self, object: &Value) -> Result<Vec<String>, String> {
        let key = (
            object["apiVersion"].as_str().unwrap_or_default().to_owned(),
            object["kind"].as_str().unwrap_or_default().to_owned(),
        );
        let validator = self.validators.get(&key).ok_or_else(|| format!("no CRD for {key:?}"))?;
        Ok(validator.iter_errors(object).map(|e| format!("{} at {}", e, e.instance_path())).collect())
    }

    pub fn kinds(&self) -> Vec<(String, String)> {
        self.validators.keys().cloned().collect()
    }
}
