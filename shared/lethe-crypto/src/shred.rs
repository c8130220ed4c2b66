//! Destroying a secret file: overwrite in place, sync, unlink, sync the directory.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::{CryptoError, Result};

/// Overwrites a file's bytes in place with zeros, syncs them to disk, then removes the file and
/// syncs its directory. On an in-place filesystem (ext4, xfs) the old bytes are gone from the file
/// system's blocks; on copy-on-write filesystems or flash with wear levelling they may survive at
/// the device level — see the threat model in ARCHITECTURE.md.
///
/// # Errors
/// Any IO error, with the path.
pub fn destroy_file(path: &Path) -> Result<()> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CryptoError::io(path)(e)),
    };
    {
        let mut f = OpenOptions::new().write(true).open(path).map_err(CryptoError::io(path))?;
        f.seek(SeekFrom::Start(0)).map_err(CryptoError::io(path))?;
        let zeros = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX).min(1 << 20)];
        let mut left = len;
        while left > 0 {
            let n = zeros.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            f.write_all(&zeros[..n]).map_err(CryptoError::io(path))?;
            left -= n as u64;
        }
        f.sync_all().map_err(CryptoError::io(path))?;
    }
    std::fs::remove_file(path).map_err(CryptoError::io(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Syncs a directory so that a rename or unlink in it is durable.
///
/// # Errors
/// Any IO error, with the path.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(CryptoError::io(dir))
}

/// Writes a file atomically: temp file (readable by its owner only), fsync, rename, fsync the
/// directory. For secrets and for what is sealed under them.
///
/// # Errors
/// Any IO error, with the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        owner_only(&mut options);
        let mut f = options.open(&tmp).map_err(CryptoError::io(&tmp))?;
        f.write_all(bytes).map_err(CryptoError::io(&tmp))?;
        f.sync_all().map_err(CryptoError::io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(CryptoError::io(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Mode 0600 from the file's creation on, so its bytes are never readable by others.
#[cfg(unix)]
fn owner_only(options: &mut OpenOptions) {
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
}

#[cfg(not(unix))]
fn owner_only(_options: &mut OpenOptions) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destroyed_file_is_gone_and_missing_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        std::fs::write(&p, b"very secret bytes").unwrap();
        destroy_file(&p).unwrap();
        assert!(!p.exists());
        destroy_file(&p).unwrap();
    }
}
