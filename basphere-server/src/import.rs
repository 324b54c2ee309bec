//! `basphere-server import-original DIR`: brings an installation of the original Basphere into
//! the store this configuration names (see `basphere-import` for the rules), and can write the
//! original's configuration as Basphere's.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use basphere_core::config::Config;
use basphere_import::{import, suggested_config, Original};

/// What `import-original` was asked to do.
pub struct ImportOptions<'a> {
    pub root: &'a Path,
    pub dry_run: bool,
    /// Where to write the configuration made from the original's files.
    pub write_config: Option<&'a Path>,
}

/// Runs the import and prints its report; `Ok(false)` when a conflict stopped it (nothing was
/// written).
pub fn import_original(config: &Config, data_dir: &Path, options: &ImportOptions<'_>) -> Result<bool> {
    let original = Original::read(options.root).context("import-original")?;
    if let Some(file) = options.write_config {
        let (text, notes) = suggested_config(&original.config);
        let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(file).with_context(|| {
            format!("--write-config: cannot create {} (an existing file is never replaced)", file.display())
        })?;
        out.write_all(text.as_bytes()).with_context(|| format!("--write-config: writing {}", file.display()))?;
        println!("Wrote the original's configuration as Basphere's to {}:", file.display());
        for note in notes {
            println!("  - {note}");
        }
        println!();
    }
    let store = crate::stores::open(&config.store, data_dir)?;
    let actor = match nix::unistd::getuid().as_raw() {
        0 => "root".to_owned(),
        uid => format!("uid-{uid}"),
    };
    let plan = import(&original, &config.pools, &*store, &actor, options.dry_run)
        .context("import-original: the store refused the import; nothing was written")?;
    print!("{}", plan.report(&options.root.display().to_string(), options.dry_run));
    Ok(plan.conflicts.is_empty())
}
