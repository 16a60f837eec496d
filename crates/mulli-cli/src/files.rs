//! Writing output files without silently replacing what is already there.

use std::path::Path;

use anyhow::{Context, Result};

/// Write `bytes` to `path`; an existing file is an error unless `force` is set.
pub fn write_new(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    if !force && path.exists() {
        anyhow::bail!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        );
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The dataset write mode the `--force` / `--append` flags ask for.
pub fn write_mode(force: bool, append: bool) -> mulli_data::WriteMode {
    if force {
        mulli_data::WriteMode::Overwrite
    } else if append {
        mulli_data::WriteMode::Append
    } else {
        mulli_data::WriteMode::Create
    }
}
