//! Writing files so that a failed or interrupted run leaves nothing half-written: each output
//! goes to a temporary file beside its destination, is flushed to disk, and is renamed into
//! place only when complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{DataError, Result};

/// Writes `path` through `write`, atomically.
pub fn write_atomically<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<&mut File>) -> Result<()>,
{
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".kiln-partial-")
        .tempfile_in(dir)
        .map_err(|e| DataError::io(dir, e))?;
    {
        let file = tmp.as_file_mut();
        let mut w = BufWriter::new(file);
        write(&mut w)?;
        w.flush().map_err(|e| DataError::io(path, e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| DataError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| DataError::io(path, e.error))?;
    Ok(())
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |w| {
        w.write_all(bytes).map_err(|e| DataError::io(path, e))
    })
}
