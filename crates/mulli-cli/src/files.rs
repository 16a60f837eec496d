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

/// Copy the directory tree `from` to `to`, which must not exist yet; files are copied
/// byte for byte (a dataset stays exactly what it was, unlike a decode–encode merge).
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        anyhow::bail!("{} already exists; not copying over it", to.display());
    }
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry.with_context(|| format!("reading {}", from.display()))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", src.display()))?;
        if kind.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)
                .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_dir_copies_a_tree_and_never_over_an_existing_one() {
        let tmp = tempfile::tempdir().unwrap();
        let from = tmp.path().join("a");
        std::fs::create_dir_all(from.join("meta/episodes")).unwrap();
        std::fs::write(from.join("meta/info.json"), b"{}").unwrap();
        std::fs::write(from.join("meta/episodes/0.bin"), [0u8, 1, 2, 255]).unwrap();
        let to = tmp.path().join("b");
        copy_dir(&from, &to).unwrap();
        assert_eq!(std::fs::read(to.join("meta/info.json")).unwrap(), b"{}");
        assert_eq!(
            std::fs::read(to.join("meta/episodes/0.bin")).unwrap(),
            [0u8, 1, 2, 255]
        );
        let e = copy_dir(&from, &to).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
        let e = format!(
            "{:#}",
            copy_dir(&tmp.path().join("none"), &tmp.path().join("c")).unwrap_err()
        );
        assert!(e.contains("none"), "{e}");
    }
}
