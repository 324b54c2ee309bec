//! `cargo xtask vcsim`: builds the govmomi vCenter simulator (`basphere_vsphere::vcsim`) and runs
//! it with Basphere's base folder and the default catalog's templates, printing its URL.

use anyhow::{Context, Result};
use basphere_vsphere::vcsim::{self, Vcsim, VcsimOptions};

pub fn run(build_only: bool) -> Result<()> {
    if build_only {
        println!("{}", vcsim::build()?.display());
        return Ok(());
    }
    let config = basphere_core::Config::default();
    let options = VcsimOptions {
        folder: config.vsphere.folder.clone(),
        templates: config.os_images.values().map(|os| os.template.clone()).collect(),
        method_delays: Vec::new(),
    };
    let simulator = Vcsim::start(&options).context("starting vcsim")?;
    println!("vCenter simulator at https://{}/sdk", simulator.server);
    println!("  user {:?}, password {:?}", simulator.user, simulator.password);
    println!(
        "  datacenter DC0, cluster DC0_C0, datastore LocalDS_0, network \"VM Network\", folder DC0/vm/{}",
        options.folder
    );
    println!("  templates: {}", options.templates.join(", "));
    println!("Ctrl-C stops it.");
    let (tx, rx) = std::sync::mpsc::channel();
    ctrlc_channel(tx);
    let _ = rx.recv();
    Ok(())
}

/// Waits for SIGINT or SIGTERM on a thread, so the simulator is dropped (killed) on the way out.
fn ctrlc_channel(tx: std::sync::mpsc::Sender<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    std::thread::spawn(move || {
        runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        let _ = tx.send(());
    });
}
