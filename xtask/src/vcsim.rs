//! `cargo xtask vcsim`: builds the govmomi vCenter simulator from Debian's
//! golang-github-vmware-govmomi-dev sources (GOPATH mode, offline) and runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Builds `target/vcsim/vcsim` when it is missing or older than its source; returns its path.
pub fn build(root: &Path) -> Result<PathBuf> {
    let source = root.join("xtask/vcsim/main.go");
    let out_dir = root.join("target/vcsim");
    let binary = out_dir.join("vcsim");
    let fresh = |b: &Path| -> Option<bool> {
        Some(std::fs::metadata(b).ok()?.modified().ok()? >= std::fs::metadata(&source).ok()?.modified().ok()?)
    };
    if fresh(&binary) == Some(true) {
        return Ok(binary);
    }
    if !Path::new("/usr/share/gocode/src/github.com/vmware/govmomi/simulator").exists() {
        bail!("the govmomi sources are missing: apt-get install golang-go golang-github-vmware-govmomi-dev");
    }
    std::fs::create_dir_all(out_dir.join("gopath"))?;
    let gopath = format!("{}:/usr/share/gocode", out_dir.join("gopath").display());
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(&source)
        .env("GOPATH", gopath)
        .env("GO111MODULE", "off")
        .env("GOCACHE", out_dir.join("gocache"))
        .status()
        .context("running go (apt-get install golang-go)")?;
    if !status.success() {
        bail!("building vcsim failed");
    }
    Ok(binary)
}

pub fn run(root: &Path, build_only: bool) -> Result<()> {
    let binary = build(root)?;
    if build_only {
        println!("{}", binary.display());
        return Ok(());
    }
    let status = Command::new(&binary).status()?;
    if !status.success() {
        bail!("vcsim exited with {status}");
    }
    Ok(())
}
