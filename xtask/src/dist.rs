//! `cargo xtask dist`: the Debian package. Both binaries (and the vSphere API backend's agent in
//! `/usr/lib/basphere/`, where the server looks for it), the original's command names as links
//! to the CLI, the commented configuration (a conffile), the two systemd units, shell
//! completions and man pages generated from the binaries' own clap definitions, the operator
//! guide, and the maintainer scripts; built with `dpkg-deb`. The binaries are stripped whole;
//! their symbols and line tables go into a second package, `basphere-dbgsym`, under
//! `/usr/lib/debug/.build-id/`, where a Rust backtrace finds them by the binary's build id.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::tidy::workspace_root;

/// The vSphere API backend's agent (`basphere_vsphere::agent`).
const AGENT: &str = "basphere-vsphere-api";

/// What to build.
pub struct DistOptions {
    /// Package the debug binaries the test build made, instead of building release ones.
    pub debug: bool,
    /// The package version (default: the workspace's).
    pub version: Option<String>,
    pub out: Option<PathBuf>,
}

fn run(command: &mut Command) -> Result<Vec<u8>> {
    let output = command.output().with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(output.stdout)
}

fn write(path: &Path, content: impl AsRef<[u8]>, mode: u32) -> Result<()> {
    fs::create_dir_all(path.parent().expect("a parent"))?;
    fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn gzip(path: &Path, content: &[u8]) -> Result<()> {
    write(path, content, 0o644)?;
    run(Command::new("gzip").args(["-9", "-n", "-f"]).arg(path))?;
    Ok(())
}

/// Builds the package; returns the path of the `.deb`.
pub fn build(options: &DistOptions) -> Result<PathBuf> {
    let root = workspace_root();
    let profile = if options.debug { "debug" } else { "dist" };
    if !options.debug {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&root)
            .args([
                "build",
                "--profile",
                "dist",
                "--locked",
                "-p",
                "basphere-server",
                "-p",
                "basphere-cli",
                "-p",
                "basphere-vsphere",
                "-p",
                "basphere-router",
            ])
            .arg("--bins")
            .status()?;
        if !status.success() {
            bail!("the build (profile dist) failed");
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let bin = target.join(profile);
    // Each program and where it is installed.
    let programs = [
        ("basphere", "usr/bin"),
        ("basphere-server", "usr/bin"),
        (AGENT, "usr/lib/basphere"),
        // The tenant routers' helper, for a router host (the forced command of the server's key).
        ("basphere-router-helper", "usr/lib/basphere"),
    ];
    for (name, _) in programs {
        if !bin.join(name).is_file() {
            bail!("{} is missing: build it first (cargo build --workspace --all-targets)", bin.join(name).display());
        }
    }
    let version = options.version.clone().unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());
    let arch = String::from_utf8(run(Command::new("dpkg").arg("--print-architecture"))?)?.trim().to_owned();
    let out = options.out.clone().unwrap_or_else(|| root.join("target/dist"));
    let stage = out.join(format!("basphere_{version}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage)?;
    }
    let debug_stage = out.join(format!("basphere-dbgsym_{version}_{arch}"));
    if debug_stage.exists() {
        fs::remove_dir_all(&debug_stage)?;
    }
    let packaging = root.join("packaging");

    // Binaries and the original's names.
    for (name, dir) in programs {
        let target = stage.join(dir).join(name);
        fs::create_dir_all(target.parent().expect("a directory"))?;
        fs::copy(bin.join(name), &target)?;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755))?;
        // Symbols and line tables to the debug package (binutils), then out of the binary.
        let id = build_id(&target)?;
        let debug = debug_stage.join(debug_file(&id));
        fs::create_dir_all(debug.parent().expect("a .build-id directory"))?;
        run(Command::new("objcopy")
            .args(["--only-keep-debug", "--compress-debug-sections=zlib"])
            .arg(&target)
            .arg(&debug))?;
        fs::set_permissions(&debug, fs::Permissions::from_mode(0o644))?;
        run(Command::new("strip").arg("--strip-all").arg(&target))?;
    }
    // The original's command names, as links to `basphere` (which behaves as the original's
    // command of the name it is invoked by); the CLI says which names it answers to.
    let names = String::from_utf8(run(Command::new(bin.join("basphere")).arg("original-names"))?)?;
    for name in names.lines() {
        std::os::unix::fs::symlink("basphere", stage.join("usr/bin").join(name))?;
    }

    // Configuration, units, documentation.
    write(&stage.join("etc/basphere/basphere.yaml"), fs::read(packaging.join("basphere.yaml"))?, 0o640)?;
    for unit in ["basphere-server.service", "basphere-bastion-helper.service"] {
        write(&stage.join("lib/systemd/system").join(unit), fs::read(packaging.join(unit))?, 0o644)?;
    }
    let doc = stage.join("usr/share/doc/basphere");
    write(&doc.join("copyright"), fs::read(packaging.join("debian/copyright"))?, 0o644)?;
    write(&doc.join("operator-guide.md"), fs::read(root.join("docs/operator-guide.md"))?, 0o644)?;

    // Completions and man pages, from the binaries themselves.
    for (binary, name) in [("basphere", "basphere"), ("basphere-server", "basphere-server")] {
        let exe = bin.join(binary);
        let completion = |shell: &str| run(Command::new(&exe).args(["completion", shell]));
        write(&stage.join("usr/share/bash-completion/completions").join(name), completion("bash")?, 0o644)?;
        write(&stage.join("usr/share/zsh/vendor-completions").join(format!("_{name}")), completion("zsh")?, 0o644)?;
        write(
            &stage.join("usr/share/fish/vendor_completions.d").join(format!("{name}.fish")),
            completion("fish")?,
            0o644,
        )?;
        let page = run(Command::new(&exe).arg("manpage"))?;
        gzip(&stage.join("usr/share/man/man1").join(format!("{name}.1")), &page)?;
    }

    // Maintainer scripts and control.
    for script in ["postinst", "prerm", "postrm"] {
        write(&stage.join("DEBIAN").join(script), fs::read(packaging.join("debian").join(script))?, 0o755)?;
    }
    write(&stage.join("DEBIAN/conffiles"), "/etc/basphere/basphere.yaml\n", 0o644)?;
    let installed_kb = installed_size(&stage)?;
    let control = format!(
        "Package: basphere\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: Basphere <basphere@localhost>\n\
         Installed-Size: {installed_kb}\n\
         Depends: libc6 (>= 2.34), passwd, ca-certificates\n\
         Recommends: openssh-server\n\
         Section: admin\n\
         Priority: optional\n\
         Description: self-service VMs and Kubernetes clusters on your own vSphere\n \
         Developers register, an administrator approves, and then developers create VMs and\n \
         Kubernetes clusters themselves, inside quotas, with static addresses from Basphere's\n \
         own IPAM, through a CLI (also under the original Basphere's command names), an HTTP\n \
         API and web pages.\n"
    );
    write(&stage.join("DEBIAN/control"), control, 0o644)?;

    let debug_kb = installed_size(&debug_stage)?;
    let debug_control = format!(
        "Package: basphere-dbgsym\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: Basphere <basphere@localhost>\n\
         Installed-Size: {debug_kb}\n\
         Depends: basphere (= {version})\n\
         Section: debug\n\
         Priority: optional\n\
         Description: debug symbols for basphere\n \
         The symbols and line tables of basphere and basphere-server, found by the binaries'\n \
         build ids: with this package installed, a backtrace names functions, files and lines.\n"
    );
    write(&debug_stage.join("DEBIAN/control"), debug_control, 0o644)?;

    let deb = out.join(format!("basphere_{version}_{arch}.deb"));
    let debug_deb = out.join(format!("basphere-dbgsym_{version}_{arch}.deb"));
    // A release package is compressed hard; a test package (--debug) quickly.
    let compression: &[&str] = if options.debug { &["-Zgzip", "-z1"] } else { &["-Zxz", "-z6"] };
    for (stage, deb) in [(&stage, &deb), (&debug_stage, &debug_deb)] {
        run(Command::new("dpkg-deb").arg("--root-owner-group").args(compression).arg("--build").arg(stage).arg(deb))?;
        fs::remove_dir_all(stage)?;
    }
    Ok(deb)
}

fn installed_size(stage: &Path) -> Result<String> {
    Ok(String::from_utf8(run(Command::new("du").args(["-sk", "--exclude=DEBIAN"]).arg(stage))?)?
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .to_owned())
}

/// The GNU build id of an ELF binary, in hex (binutils' `readelf -n`).
fn build_id(binary: &Path) -> Result<String> {
    let notes = String::from_utf8(run(Command::new("readelf").arg("-n").arg(binary))?)?;
    notes
        .lines()
        .find_map(|line| line.trim().strip_prefix("Build ID:"))
        .map(|id| id.trim().to_owned())
        .filter(|id| id.len() > 2 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .with_context(|| format!("{} has no build id (the linker's --build-id)", binary.display()))
}

/// Where the debug information of the binary with build id `id` goes, as GDB and Rust's
/// backtraces look for it: `usr/lib/debug/.build-id/<first two digits>/<the rest>.debug`.
fn debug_file(id: &str) -> PathBuf {
    PathBuf::from("usr/lib/debug/.build-id").join(&id[..2]).join(format!("{}.debug", &id[2..]))
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_files_are_found_under_the_build_id() {
        assert_eq!(
            super::debug_file("79b8951a72bd2023c6473470e308f00dc3a5735a"),
            std::path::Path::new("usr/lib/debug/.build-id/79/b8951a72bd2023c6473470e308f00dc3a5735a.debug")
        );
    }
}
