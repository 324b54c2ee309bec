//! The simulated vCenter: `basphere_core::mock::MockProvisioner` with its inventory journaled to
//! a file (`simulated-vsphere.jsonl`), one JSON change per line, synced before the call returns.
//! Reopening replays the journal and compacts it, so the inventory survives restarts and crashes
//! exactly as far as each change was written.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use basphere_core::config::Config;
use basphere_core::mock::{InventoryChange, MockDelays, MockProvisioner};
use basphere_core::{Error, Result};

/// What can go wrong with the journal.
#[derive(Debug, thiserror::Error)]
pub enum SimulatedError {
    #[error("cannot use the simulated vSphere inventory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("line {line} of {path} is not an inventory change: {source}")]
    Corrupt { path: PathBuf, line: usize, source: serde_json::Error },
}

impl From<SimulatedError> for Error {
    fn from(error: SimulatedError) -> Self {
        Error::backend("simulated", error)
    }
}

/// Opens (or creates) the simulated vCenter kept in `path`, with the catalog's templates, the
/// configured base folder and, in tenant mode, the configured distributed switch.
pub fn open(path: &Path, config: &Config, delays: MockDelays) -> Result<Arc<MockProvisioner>> {
    let io = |source| SimulatedError::Io { path: path.to_path_buf(), source };
    let templates: Vec<String> = config.os_images.values().map(|os| os.template.clone()).collect();
    let mut torn = false;
    let mut changes_len = 0;
    // Whether the journal was written when each VM kept Basphere's whole request: rewritten
    // once, as each VM is kept now. Such lines come first, so the first line of a VM Basphere
    // cloned tells (a VM planted by a test has no clone either way).
    let mut earlier_format = None;
    let mut replayed = MockProvisioner::new(&config.vsphere.folder, templates).with_delays(delays);
    // The simulated vCenter has the distributed switch tenant networks are configured with.
    if let basphere_core::config::NetworksConfig::Tenant(tenant) = &config.networks {
        replayed = replayed.with_switch(&tenant.distributed_switch);
    }
    if path.exists() {
        // Each change is applied as it is read: the journal is never held whole in memory.
        let mut file = BufReader::new(File::open(path).map_err(io)?);
        let mut line = Vec::new();
        let mut index = 0;
        loop {
            line.clear();
            if file.read_until(b'\n', &mut line).map_err(io)? == 0 {
                break;
            }
            index += 1;
            if line.trim_ascii().is_empty() {
                continue;
            }
            match serde_json::from_slice::<InventoryChange>(&line) {
                Ok(change) => {
                    if earlier_format.is_none()
                        && matches!(&change, InventoryChange::Upsert { vm } if vm.clone.is_some())
                    {
                        earlier_format = Some(line.windows(EARLIER.len()).any(|window| window == EARLIER));
                    }
                    replayed.replay([change]);
                    changes_len += 1;
                }
                // A torn last line is a change that was never completed.
                Err(_) if file.fill_buf().map_err(io)?.is_empty() => {
                    torn = true;
                    break;
                }
                Err(source) => {
                    return Err(SimulatedError::Corrupt { path: path.to_path_buf(), line: index, source }.into())
                }
            }
        }
    }
    // A last change written whole but without its line end (the process died between the two)
    // would run into the next change appended: rewrite the journal now.
    if !torn && path.exists() && !ends_with_line_end(path).map_err(io)? {
        torn = true;
    }
    // Compact when the journal has grown well past the inventory it describes: rewrite it as
    // the current inventory, then append from there.
    let live = replayed.folders().len() + replayed.vm_count() + replayed.port_groups().len();
    if torn || changes_len > 2 * live + 1000 || earlier_format == Some(true) || !path.exists() {
        let compacted = path.with_extension("jsonl.tmp");
        {
            let mut out = std::io::BufWriter::new(File::create(&compacted).map_err(io)?);
            for folder in replayed.folders() {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&InventoryChange::Folder { path: folder }).expect("serializable")
                )
                .map_err(io)?;
            }
            for port_group in replayed.port_groups() {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&InventoryChange::PortGroup { port_group }).expect("serializable")
                )
                .map_err(io)?;
            }
            for vm in replayed.vms() {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&InventoryChange::Upsert { vm: Box::new(vm) }).expect("serializable")
                )
                .map_err(io)?;
            }
            out.flush().map_err(io)?;
            out.get_ref().sync_all().map_err(io)?;
        }
        std::fs::rename(&compacted, path).map_err(io)?;
    }
    let journal = Mutex::new(OpenOptions::new().append(true).open(path).map_err(io)?);
    let journal_path = path.to_path_buf();
    let observer = Arc::new(move |change: &InventoryChange| {
        // One write for the change and its line end, so a process killed while writing leaves at
        // most a torn last line, never a change without its line end.
        let mut line = serde_json::to_vec(change).expect("serializable");
        line.push(b'\n');
        let mut file = journal.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(error) = file.write_all(&line).and_then(|()| file.sync_data()) {
            tracing::error!(path = %journal_path.display(), %error, "the simulated vSphere journal could not be written");
        }
    });
    Ok(Arc::new(replayed.with_observer(observer)))
}

/// What a VM's line held when each VM kept Basphere's whole request.
const EARLIER: &[u8] = b"\"request\":{";

/// Whether the file is empty or its last byte ends a line.
fn ends_with_line_end(path: &Path) -> std::io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    std::io::Read::read_exact(&mut file, &mut last)?;
    Ok(last[0] == b'\n')
}
