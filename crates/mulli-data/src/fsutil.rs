//! Durable file writes: temp file + fsync + rename, so a file is either absent or complete.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, io};

/// Write `bytes` to `path` atomically: a reader sees the old file or the whole new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    commit(&tmp, path)
}

/// Rename a fully written temp file into place and fsync the directory.
pub fn commit(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        // Make the rename itself durable; a failure here is not worth failing the write.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// fsync a file written by someone else (a parquet or mp4 writer) before committing it.
pub fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(path))
}

/// The hidden temp name used for `path` while it is being written.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// True if `dir` does not exist or has no entries.
pub fn is_empty_dir(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(crate::DataError::Io {
            path: dir.to_owned(),
            source: e,
        }),
    }
}

/// Open a file the dataset needs; a missing one is reported as such, naming who expects it.
pub fn open_existing(path: &Path, expected_by: &str) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| missing_or_io(path, expected_by, e))
}

/// Read a text file the dataset needs (see [`open_existing`]).
pub fn read_existing(path: &Path, expected_by: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| missing_or_io(path, expected_by, e))
}

fn missing_or_io(path: &Path, expected_by: &str, e: std::io::Error) -> crate::DataError {
    if e.kind() == std::io::ErrorKind::NotFound {
        crate::DataError::Missing {
            path: path.to_owned(),
            expected_by: expected_by.to_owned(),
        }
    } else {
        crate::DataError::Io {
            path: path.to_owned(),
            source: e,
        }
    }
}
