//! The tidy checks: rules about the repository itself, read from `cargo metadata` and the files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

/// Library crates that must depend on `basphere-core` only (among the workspace's crates).
const BACKENDS: &[&str] =
    &["basphere-ipam", "basphere-store", "basphere-vsphere", "basphere-capi", "basphere-import", "basphere-router"];
/// Crates that would mean IO, SQL, HTTP, Kubernetes or process spawning inside core.
const FORBIDDEN_IN_CORE: &[&str] = &[
    "rusqlite",
    "sqlx",
    "axum",
    "hyper",
    "reqwest",
    "tower",
    "tower-http",
    "kube",
    "vim_rs",
    "minijinja",
    "tokio-process",
];
/// The API's wire types: a leaf that clients link, so it depends on no other Basphere crate.
const WIRE: &str = "basphere-api";
/// The CLI is a client of the HTTP API: among Basphere's crates it links the wire types only,
/// never core or a backend.
const CLI: &str = "basphere-cli";
/// Only this crate may speak SQL.
const SQL_CRATES: &[&str] = &["rusqlite", "sqlx", "postgres", "tokio-postgres", "deadpool-postgres"];
/// The store backends: the only crates that know SQL.
const STORE_CRATES: &[&str] = &["basphere-store", "basphere-store-postgres"];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

struct Package {
    name: String,
    manifest: PathBuf,
    /// Normal (non-dev, non-build) dependencies.
    dependencies: Vec<String>,
    /// The features each normal dependency is asked for.
    features: BTreeMap<String, Vec<String>>,
}

fn packages(root: &Path) -> Result<Vec<Package>> {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    anyhow::ensure!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let mut out = Vec::new();
    for package in metadata["packages"].as_array().context("packages")? {
        let normal: Vec<&serde_json::Value> = package["dependencies"]
            .as_array()
            .context("dependencies")?
            .iter()
            .filter(|dep| dep["kind"].is_null())
            .collect();
        let dependencies = normal.iter().filter_map(|dep| dep["name"].as_str().map(str::to_owned)).collect();
        let features = normal
            .iter()
            .filter_map(|dep| {
                let features = dep["features"].as_array()?.iter().filter_map(|f| f.as_str().map(str::to_owned));
                Some((dep["name"].as_str()?.to_owned(), features.collect()))
            })
            .collect();
        out.push(Package {
            name: package["name"].as_str().context("name")?.to_owned(),
            manifest: PathBuf::from(package["manifest_path"].as_str().context("manifest_path")?),
            dependencies,
            features,
        });
    }
    Ok(out)
}

/// Every rule broken, as a readable sentence; empty when the repository is tidy.
pub fn check(root: &Path) -> Result<Vec<String>> {
    let packages = packages(root)?;
    let internal: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let mut problems = Vec::new();
    let by_name: BTreeMap<&str, &Package> = packages.iter().map(|p| (p.name.as_str(), p)).collect();

    if let Some(core) = by_name.get("basphere-core") {
        for dep in &core.dependencies {
            if internal.contains(&dep.as_str()) {
                problems.push(format!("basphere-core depends on {dep}: core depends on no other Basphere crate"));
            }
            if FORBIDDEN_IN_CORE.contains(&dep.as_str()) {
                problems
                    .push(format!("basphere-core depends on {dep}: core does no IO (no SQL, HTTP, kube or processes)"));
            }
        }
    } else {
        problems.push("basphere-core is missing from the workspace".into());
    }
    for backend in BACKENDS {
        let Some(package) = by_name.get(backend) else {
            problems.push(format!("{backend} is missing from the workspace"));
            continue;
        };
        for dep in &package.dependencies {
            if internal.contains(&dep.as_str()) && dep != "basphere-core" {
                problems.push(format!(
                    "{backend} depends on {dep}: a backend depends on basphere-core only, never on another backend"
                ));
            }
        }
    }
    match by_name.get(WIRE) {
        Some(wire) => {
            for dep in wire.dependencies.iter().filter(|dep| internal.contains(&dep.as_str())) {
                problems.push(format!(
                    "{WIRE} depends on {dep}: the wire types depend on no other Basphere crate (clients link them without core)"
                ));
            }
        }
        None => problems.push(format!("{WIRE} is missing from the workspace")),
    }
    if let Some(cli) = by_name.get(CLI) {
        for dep in cli.dependencies.iter().filter(|dep| internal.contains(&dep.as_str()) && dep.as_str() != WIRE) {
            problems.push(format!(
                "{CLI} depends on {dep}: the CLI is a client of the HTTP API and links only {WIRE} among Basphere's crates"
            ));
        }
        if cli.dependencies.iter().any(|dep| dep == "utoipa")
            || cli.features.get(WIRE).is_some_and(|features| features.iter().any(|f| f == "openapi"))
        {
            problems.push(format!(
                "{CLI} compiles utoipa: the OpenAPI schemas are the server's ({WIRE}'s `openapi` feature stays off in the CLI)"
            ));
        }
    }
    for package in &packages {
        for dep in &package.dependencies {
            if SQL_CRATES.contains(&dep.as_str()) && !STORE_CRATES.contains(&package.name.as_str()) {
                problems.push(format!(
                    "{} depends on {dep}: only the store crates ({}) know SQL",
                    package.name,
                    STORE_CRATES.join(", ")
                ));
            }
        }
        let manifest = std::fs::read_to_string(&package.manifest)?;
        if !manifest.contains("[lints]\nworkspace = true") {
            problems.push(format!("{} does not opt into the workspace lints ([lints] workspace = true)", package.name));
        }
    }

    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap_or_default();
    if architecture.is_empty() {
        problems.push("ARCHITECTURE.md is missing".into());
    }
    for package in &packages {
        if !architecture.lines().any(|line| line.trim() == format!("### `{}`", package.name)) {
            problems.push(format!("ARCHITECTURE.md has no codemap heading \"### `{}`\"", package.name));
        }
    }

    for package in &packages {
        let src = package.manifest.parent().expect("manifest dir").join("src");
        for file in rust_files(&src)? {
            let text = std::fs::read_to_string(&file)?;
            if !text.trim_start().starts_with("//!") {
                problems.push(format!(
                    "{} does not start with a //! line saying what it is for",
                    file.strip_prefix(root).unwrap_or(&file).display()
                ));
            }
        }
    }
    problems.extend(codemap_rules(root, &architecture, &packages)?);
    problems.extend(source_rules(root)?);
    problems.extend(size_rules(root, &packages)?);
    Ok(problems)
}

/// The most lines a source file may have (tests and generated data aside): past it, a file
/// holds more than one thing, and a reader cannot see where the next one would go.
const MAX_FILE_LINES: usize = 800;
/// The most public methods one type may have, over all its `impl` blocks.
const MAX_PUBLIC_METHODS: usize = 30;
/// The most fields the façade may have: it composes the resource modules and holds nothing else.
const MAX_FACADE_FIELDS: usize = 8;

/// The top-level modules of a crate: `src/<name>.rs` and `src/<name>/mod.rs`, but the crate
/// roots and test modules.
fn top_level_modules(src: &Path) -> Result<Vec<String>> {
    let mut modules = Vec::new();
    if !src.exists() {
        return Ok(modules);
    }
    for entry in std::fs::read_dir(src)? {
        let path = entry?.path();
        let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let module =
            if path.is_dir() { path.join("mod.rs").exists() } else { path.extension().is_some_and(|e| e == "rs") };
        if module && !["lib", "main", "tests"].contains(&name.as_str()) {
            modules.push(name);
        }
    }
    modules.sort();
    Ok(modules)
}

/// The codemap names every crate's top-level modules, in the crate's own section.
fn codemap_rules(root: &Path, architecture: &str, packages: &[Package]) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for package in packages {
        let heading = format!("### `{}`", package.name);
        let Some(start) = architecture.find(&heading) else { continue };
        let rest = &architecture[start + heading.len()..];
        let section = &rest[..rest.find("\n### ").unwrap_or(rest.len())];
        let src = package.manifest.parent().expect("manifest dir").join("src");
        for module in top_level_modules(&src)? {
            if !section.contains(&format!("`{module}`")) {
                let file = src.join(&module);
                problems.push(format!(
                    "ARCHITECTURE.md's section on {} does not name its module `{module}` ({})",
                    package.name,
                    file.strip_prefix(root).unwrap_or(&file).display()
                ));
            }
        }
    }
    Ok(problems)
}

/// The code of a source file without its unit tests (`#[cfg(test)] mod ...` to the end).
fn without_tests(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod ").map_or(text, |at| &text[..at])
}

/// File sizes, public methods per type, the façade's fields, and errors told by their text.
fn size_rules(root: &Path, packages: &[Package]) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let relative = |file: &Path| file.strip_prefix(root).unwrap_or(file).display().to_string();
    let mut methods: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for package in packages {
        let src = package.manifest.parent().expect("manifest dir").join("src");
        for file in rust_files(&src)? {
            let text = std::fs::read_to_string(&file)?;
            let code = without_tests(&text);
            let lines = code.lines().count();
            if lines > MAX_FILE_LINES {
                problems.push(format!(
                    "{} has {lines} lines of code (tests aside): split it, at most {MAX_FILE_LINES}",
                    relative(&file)
                ));
            }
            let mut current: Option<String> = None;
            for (number, line) in code.lines().enumerate() {
                if let Some(header) = line.strip_prefix("impl") {
                    // `impl Foo {`, `impl<T> Foo<T> {`; trait impls (`impl X for Y`) do not count.
                    let header = header.trim_start_matches(|c: char| c != ' ').trim();
                    current = (!header.contains(" for ") && header.ends_with('{'))
                        .then(|| header.trim_end_matches('{').trim().split('<').next().unwrap_or("").to_owned());
                } else if line.starts_with('}') {
                    current = None;
                } else if let Some(owner) = &current {
                    if line.starts_with("    pub fn ") || line.starts_with("    pub async fn ") {
                        let entry = methods.entry(owner.clone()).or_insert((0, relative(&file)));
                        entry.0 += 1;
                    }
                }
                let code_part = line.split("//").next().unwrap_or("");
                // An assertion on a message tests its wording; anything else decides by it.
                let tells_by_text = code_part.contains(".contains(")
                    && !code_part.contains("assert")
                    && (code_part.contains(concat!("Error", "::"))
                        || code_part.contains(concat!("error.to_string", "()")));
                if tells_by_text {
                    problems.push(format!(
                        "{}:{}: an error is told by its message text; match its variant instead",
                        relative(&file),
                        number + 1
                    ));
                }
            }
        }
    }
    for (owner, (count, file)) in methods {
        if count > MAX_PUBLIC_METHODS {
            problems.push(format!(
                "{owner} ({file}) has {count} public methods: at most {MAX_PUBLIC_METHODS}; give a resource its own type"
            ));
        }
    }
    let facade = root.join("basphere-core/src/platform/mod.rs");
    if let Ok(text) = std::fs::read_to_string(&facade) {
        if let Some(start) = text.find("pub struct Platform {") {
            let body = &text[start..text[start..].find("\n}").map_or(text.len(), |end| start + end)];
            let fields =
                body.lines().skip(1).filter(|l| l.starts_with("    ") && !l.trim_start().starts_with("//")).count();
            if fields > MAX_FACADE_FIELDS {
                problems.push(format!(
                    "Platform has {fields} fields: at most {MAX_FACADE_FIELDS}; it composes the resource modules and holds nothing else"
                ));
            }
        }
    }
    Ok(problems)
}

/// What core's sources must not name: IO of any kind (files, processes, sockets).
const IO_IN_CORE: &[&str] = &[
    "std::fs",
    "std::process",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "std::net::UdpSocket",
    "std::os::unix::net",
    "tokio::fs",
    "tokio::process",
    "tokio::net",
    "File::open",
    "File::create",
];
/// What the server's handlers must not name: they parse, call `Platform`, render.
const STORE_IN_HANDLERS: &[&str] = &[
    "platform.store()",
    "platform().store()",
    "StoreExt",
    "StoreRead",
    "StoreTx",
    "basphere_core::store",
    "SqliteStore",
    "PostgresStore",
];

/// Rules read from the sources themselves.
fn source_rules(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let relative = |file: &Path| file.strip_prefix(root).unwrap_or(file).display().to_string();
    for file in rust_files(&root.join("basphere-core/src"))? {
        let text = std::fs::read_to_string(&file)?;
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in IO_IN_CORE.iter().filter(|word| code.contains(*word)) {
                problems.push(format!("{}:{}: core does no IO, but this names {word}", relative(&file), number + 1));
            }
        }
    }
    for file in rust_files(&root.join("basphere-server/src"))? {
        // The composition root opens the store (`stores`: which one, and moving between them);
        // everything else goes through `Platform`.
        let composition_root = file.ends_with("basphere-server/src/lib.rs")
            || file.ends_with("basphere-server/src/main.rs")
            || file.ends_with("basphere-server/src/stores.rs");
        let text = std::fs::read_to_string(&file)?;
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in STORE_IN_HANDLERS.iter().filter(|word| code.contains(*word)) {
                if composition_root && !word.starts_with("platform") {
                    continue;
                }
                problems.push(format!(
                    "{}:{}: handlers call Platform and never the store, but this names {word}",
                    relative(&file),
                    number + 1
                ));
            }
        }
    }
    Ok(problems)
}

fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    if !dir.exists() {
        return Ok(files);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_is_tidy() {
        let problems = check(&workspace_root()).unwrap();
        assert!(problems.is_empty(), "tidy problems:\n{}", problems.join("\n"));
    }

    #[test]
    fn tidy_notices_broken_rules() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("Cargo.toml"), "[workspace]\nmembers = [\"basphere-core\", \"basphere-ipam\", \"basphere-store\", \"basphere-api\", \"basphere-cli\"]\nresolver = \"2\"\n\n[workspace.lints.rust]\nunsafe_code = \"forbid\"\n").unwrap();
        let crates = [
            ("basphere-core", "", "[lints]\nworkspace = true\n", "//! core\n"),
            (
                "basphere-ipam",
                "basphere-core = { path = \"../basphere-core\" }\n",
                "[lints]\nworkspace = true\n",
                "//! ipam\n",
            ),
            // A backend depending on another backend, without workspace lints or a module doc.
            ("basphere-store", "basphere-ipam = { path = \"../basphere-ipam\" }\n", "", "pub fn f() {}\n"),
            // Wire types that know core, and a CLI that links core beside them.
            (
                "basphere-api",
                "basphere-core = { path = \"../basphere-core\" }\n",
                "[features]\nopenapi = []\n\n[lints]\nworkspace = true\n",
                "//! api\n",
            ),
            (
                "basphere-cli",
                "basphere-api = { path = \"../basphere-api\", features = [\"openapi\"] }\nbasphere-core = { path = \"../basphere-core\" }\n",
                "[lints]\nworkspace = true\n",
                "//! cli\n",
            ),
        ];
        for (name, deps, lints, lib) in crates {
            std::fs::create_dir_all(root.join(name).join("src")).unwrap();
            let manifest = format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n{deps}\n{lints}");
            std::fs::write(root.join(name).join("Cargo.toml"), manifest).unwrap();
            std::fs::write(root.join(name).join("src/lib.rs"), lib).unwrap();
        }
        let text = check(root).unwrap().join("\n");
        assert!(text.contains("basphere-store depends on basphere-ipam"), "{text}");
        assert!(text.contains("basphere-store does not opt into the workspace lints"), "{text}");
        assert!(text.contains("ARCHITECTURE.md is missing"), "{text}");
        assert!(text.contains("basphere-store/src/lib.rs does not start with a //! line"), "{text}");
        assert!(!text.contains("basphere-ipam depends"), "{text}");
        assert!(text.contains("basphere-api depends on basphere-core"), "{text}");
        assert!(text.contains("basphere-cli depends on basphere-core"), "{text}");
        assert!(!text.contains("basphere-cli depends on basphere-api"), "the CLI may link the wire types: {text}");
        assert!(text.contains("basphere-cli compiles utoipa"), "{text}");

        std::fs::write(
            root.join("basphere-core/src/lib.rs"),
            "//! core\nuse std::fs::read;\n// std::process in a comment is fine\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("basphere-server/src")).unwrap();
        std::fs::write(
            root.join("basphere-server/src/api.rs"),
            "//! api\nfn f(s: &S) { s.platform.store().clone(); }\n",
        )
        .unwrap();
        std::fs::write(root.join("basphere-server/src/lib.rs"), "//! root\nuse basphere_store::SqliteStore;\n")
            .unwrap();
        let text = check(root).unwrap().join("\n");
        assert!(text.contains("basphere-core/src/lib.rs:2: core does no IO, but this names std::fs"), "{text}");
        assert!(!text.contains("std::process"), "comments are not code: {text}");
        assert!(text.contains("basphere-server/src/api.rs:2: handlers call Platform"), "{text}");
        assert!(!text.contains("basphere-server/src/lib.rs"), "the composition root opens the store: {text}");

        // A module the codemap does not name, a file too long, a type with too many public
        // methods, an error told by its text, and a façade with too many fields.
        std::fs::write(root.join("ARCHITECTURE.md"), "### `basphere-ipam`\n\nIt has `named`.\n").unwrap();
        std::fs::write(root.join("basphere-ipam/src/named.rs"), "//! named\n").unwrap();
        std::fs::write(root.join("basphere-ipam/src/unnamed.rs"), "//! unnamed\n").unwrap();
        let long = format!("//! long\n{}", "const X: u8 = 0;\n".repeat(MAX_FILE_LINES + 1));
        std::fs::write(root.join("basphere-ipam/src/long.rs"), long).unwrap();
        let methods: String = (0..=MAX_PUBLIC_METHODS).map(|i| format!("    pub fn m{i}(&self) {{}}\n")).collect();
        let wide = format!("//! wide\npub struct Wide;\n\nimpl Wide {{\n{methods}}}\n");
        std::fs::write(root.join("basphere-ipam/src/wide.rs"), wide).unwrap();
        let by_text = "//! by text\nfn f(e: &E) -> bool { matches!(e, Error::Conflict(m) if m.contains(\"claim\")) }\n";
        std::fs::write(root.join("basphere-ipam/src/by_text.rs"), by_text).unwrap();
        let fields: String = (0..=MAX_FACADE_FIELDS).map(|i| format!("    f{i}: u8,\n")).collect();
        std::fs::create_dir_all(root.join("basphere-core/src/platform")).unwrap();
        std::fs::write(
            root.join("basphere-core/src/platform/mod.rs"),
            format!("//! facade\npub struct Platform {{\n{fields}}}\n"),
        )
        .unwrap();
        let text = check(root).unwrap().join("\n");
        assert!(text.contains("does not name its module `unnamed`"), "{text}");
        assert!(!text.contains("`named`"), "{text}");
        assert!(text.contains("basphere-ipam/src/long.rs has 802 lines of code"), "{text}");
        assert!(text.contains("Wide (basphere-ipam/src/wide.rs) has 31 public methods"), "{text}");
        assert!(text.contains("basphere-ipam/src/by_text.rs:2: an error is told by its message text"), "{text}");
        assert!(text.contains("Platform has 9 fields"), "{text}");
    }
}
