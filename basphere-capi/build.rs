//! The CRDs (`crds/*.yaml`, as Cluster API and its providers publish them) converted to JSON at
//! build time: the simulated management cluster reads all of them at every start, and JSON
//! parses several times faster than YAML.

use std::path::Path;

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rerun-if-changed=crds");
    let mut names: Vec<_> = std::fs::read_dir("crds")
        .expect("the crds directory")
        .map(|entry| entry.expect("a crds entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "yaml"))
        .collect();
    names.sort();
    for path in names {
        let text = std::fs::read_to_string(&path).expect("a CRD file");
        let crd: serde_json::Value =
            serde_yaml::from_str(&text).unwrap_or_else(|error| panic!("{} is not YAML: {error}", path.display()));
        let name = path.file_stem().expect("a file name").to_string_lossy().into_owned();
        let json = serde_json::to_string(&crd).expect("a CRD as JSON");
        std::fs::write(Path::new(&out).join(format!("{name}.json")), json).expect("writing a CRD as JSON");
    }
}
